//! Integration tests of `zomg-sdk` through its public API only.

mod client;
mod ephemeral;
mod exec;
mod exec_http;
mod tls;
mod volumes;
