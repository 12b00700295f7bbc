//! `hub` binary.
fn main() {}
