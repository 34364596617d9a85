//! AFL entry point for [`berth_fuzz::dokku_parse`].
fn main() {
    afl::fuzz!(|data: &[u8]| berth_fuzz::dokku_parse(data));
}
