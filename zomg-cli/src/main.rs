//! The `zomg` command-line interface.

fn main() {}
