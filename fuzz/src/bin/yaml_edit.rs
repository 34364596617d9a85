//! AFL entry point for [`berth_fuzz::yaml_edit`].
fn main() {
    afl::fuzz!(|data: &[u8]| berth_fuzz::yaml_edit(data));
}
