//! AFL entry point for [`berth_fuzz::webhook`].
fn main() {
    afl::fuzz!(|data: &[u8]| berth_fuzz::webhook(data));
}
