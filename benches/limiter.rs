//! Limiter benches (filled in by the strategies work).
fn main() {}
