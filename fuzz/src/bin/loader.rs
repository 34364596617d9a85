//! AFL entry point for [`berth_fuzz::loader`].
fn main() {
    afl::fuzz!(|data: &[u8]| berth_fuzz::loader(data));
}
