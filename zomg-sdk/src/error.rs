//! The SDK's error type.
//!
//! API failures carry the server's typed body ([`ApiError`]); callers test them with
//! predicates (`err.is_not_found()`, `err.code() == Some("box_running")`) rather than by
//! matching message text.

use crate::names::NameError;
use crate::refs::RefError;
use crate::types::ErrorBody;

/// A non-2xx answer from the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status code.
    pub status: u16,
    /// The machine-readable code, e.g. `box_running`.
    pub code: String,
    /// The human-readable message, e.g. `box is running`.
    pub message: String,
}

impl ApiError {
    /// Builds an error from a status and the server's JSON body.
    pub fn from_body(status: u16, body: ErrorBody) -> Self {
        Self {
            status,
            code: body.error,
            message: body.message,
        }
    }
}

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The server could not be reached at all.
    #[error(
        "cannot reach the zomg server at {url}: {reason} (set --url, ZOMG_URL or a profile to use another server)"
    )]
    Unreachable {
        /// The URL that was tried.
        url: String,
        /// Why the connection failed.
        reason: String,
    },
    /// Transport failure after the connection was made.
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL that was requested.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// A name or ref broke its rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A box ref or box path broke its rule.
    #[error(transparent)]
    Ref(#[from] RefError),
    /// Invalid input that is not a name (a ref, a flag value, a setting).
    #[error("{0}")]
    Invalid(String),
    /// The client could not be configured (URL, token, profile, TLS).
    #[error("{0}")]
    Config(String),
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A wait ran out of time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The timeout.
        seconds: u64,
    },
    /// An exec or console session broke off before the command's exit status arrived (the
    /// connection dropped, or the server closed it early).
    #[error("exec session at {url} ended without an exit status: {reason}")]
    SessionLost {
        /// The session's WebSocket URL.
        url: String,
        /// What ended it: the server's close reason or the transport error.
        reason: String,
    },
    /// An operation failed and so did the cleanup after it (deleting an ephemeral box);
    /// both are kept, the original first.
    #[error("{error}; cleaning up failed too: {cleanup}")]
    Cleanup {
        /// The original failure.
        #[source]
        error: Box<dyn std::error::Error + Send + Sync>,
        /// What went wrong while cleaning up.
        cleanup: Box<Error>,
    },
    /// The server sent something the SDK does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// The API error, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// The API error code (`box_running`, `not_found`, ...), if this is an API error.
    pub fn code(&self) -> Option<&str> {
        self.api().map(|e| e.code.as_str())
    }

    /// The HTTP status, if this is an API error.
    pub fn status(&self) -> Option<u16> {
        self.api().map(|e| e.status)
    }

    /// The server answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The server answered 409.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The server answered 400.
    pub fn is_invalid(&self) -> bool {
        self.status() == Some(400)
    }

    /// The server answered 401 or 403.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates() {
        let e: Error = ApiError {
            status: 409,
            code: "box_running".into(),
            message: "box is running".into(),
        }
        .into();
        assert!(e.is_conflict());
        assert!(!e.is_not_found());
        assert_eq!(e.code(), Some("box_running"));
        assert_eq!(e.to_string(), "box is running");
        let n: Error = ApiError {
            status: 404,
            code: "not_found".into(),
            message: "box \"x\" not found".into(),
        }
        .into();
        assert!(n.is_not_found());
        let i = Error::Invalid("bad".into());
        assert_eq!(i.code(), None);
    }
}
