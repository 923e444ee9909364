//! Integration tests of `zomg-sdk` through its public API only.

mod client;
mod tls;
mod volumes;
