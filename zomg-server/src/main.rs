//! The `zomg-server` binary.

fn main() {}
