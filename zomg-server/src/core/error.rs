//! The error type of `core`: what went wrong, sorted by who can fix it.
//!
//! `Invalid`, `NotFound` and `Conflict` carry a code and a message for the client.
//! `Internal` keeps the detail for the server log apart from the text sent to clients.

use crate::runtime::RuntimeError;
use crate::storage::StorageError;
use crate::store::StoreError;

/// A failed core operation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is wrong (HTTP 400).
    #[error("{message}")]
    Invalid {
        /// Machine-readable code.
        code: &'static str,
        /// What was wrong, naming the input.
        message: String,
    },
    /// Something named does not exist (HTTP 404).
    #[error("{message}")]
    NotFound {
        /// Machine-readable code.
        code: &'static str,
        /// What is missing.
        message: String,
    },
    /// The request conflicts with the current state (HTTP 409).
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// The server failed (HTTP 500). `public` goes to the client, `detail` to the log.
    #[error("{public}: {detail}")]
    Internal {
        /// What failed, for the client.
        public: String,
        /// Why, for the server log.
        detail: String,
    },
}

impl CoreError {
    /// A 400 with the generic `invalid_request` code.
    pub fn invalid(message: impl Into<String>) -> Self {
        CoreError::Invalid {
            code: "invalid_request",
            message: message.into(),
        }
    }

    /// A 404 for a missing box.
    pub fn box_not_found(project: &str, name: &str) -> Self {
        CoreError::NotFound {
            code: "box_not_found",
            message: format!("box \"{name}\" not found in project \"{project}\""),
        }
    }

    /// A 500 whose detail is `err` and whose public text is `public`.
    pub fn internal(public: impl Into<String>, err: impl std::fmt::Display) -> Self {
        CoreError::Internal {
            public: public.into(),
            detail: err.to_string(),
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Invalid { code, .. }
            | CoreError::NotFound { code, .. }
            | CoreError::Conflict { code, .. } => code,
            CoreError::Internal { .. } => "internal",
        }
    }

    /// The text for the client.
    pub fn public_message(&self) -> String {
        match self {
            CoreError::Invalid { message, .. }
            | CoreError::NotFound { message, .. }
            | CoreError::Conflict { message, .. } => message.clone(),
            CoreError::Internal { public, .. } => format!("{public} (details in the server log)"),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::internal("metadata store failed", e)
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        CoreError::internal("storage failed", e)
    }
}

impl From<RuntimeError> for CoreError {
    fn from(e: RuntimeError) -> Self {
        CoreError::internal("runtime failed", e)
    }
}

/// Result alias for core operations.
pub type CoreResult<T> = Result<T, CoreError>;
