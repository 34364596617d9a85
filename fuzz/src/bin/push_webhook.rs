//! AFL entry point for [`berth_fuzz::push_webhook`].
fn main() {
    afl::fuzz!(|data: &[u8]| berth_fuzz::push_webhook(data));
}
