//! Which server to talk to, and how: URL, token and profile resolution (SPEC §2).
//!
//! Resolution is a pure function of (flags, environment, setup config) so every precedence
//! step is testable without touching the process environment.

use std::net::IpAddr;

use url::Url;

/// A resolved server target: everything [`crate::Client::new`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL of the server (`http://127.0.0.1:7070`, `https://api.example.com`).
    pub url: Url,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// The selected profile name, if one was selected.
    pub profile: Option<String>,
    /// SSH host for `zomg ssh`.
    pub ssh_host: Option<String>,
    /// Skip TLS certificate verification.
    pub insecure: bool,
    /// Connect to this address instead of resolving the URL's host (TLS/SNI still use the
    /// host name).
    pub ip: Option<IpAddr>,
}

/// The local server's default address, used when nothing else names a server.
pub const DEFAULT_LOCAL_URL: &str = "http://127.0.0.1:7070";
