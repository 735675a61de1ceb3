//! The storage layer's errors, and their mapping onto openraft's `StorageError`.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use crate::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled database at {path}: {source}")]
    Sled {
        path: String,
        #[source]
        source: sled::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
}

impl StoreError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        StoreError::Io { context: context.into(), source }
    }
    pub fn corrupt(what: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into(), detail: detail.into() }
    }
}

/// Builds openraft's storage error for `subject` and `verb` out of any error.
pub(crate) fn sto_err<E: std::error::Error + 'static>(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &E,
) -> openraft::StorageError<NodeId> {
    openraft::StorageError::IO { source: StorageIOError::new(subject, verb, AnyError::new(e)) }
}
