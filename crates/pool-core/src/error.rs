//! Errors: a caller's mistake is an error value, never a panic and never a
//! state change. Each operation has its own enum, whose variants say what the
//! caller got wrong.

use crate::pool::ConnState;
use crate::types::{ConnId, RequestId};

/// `Acquire` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcquireError {
    /// Another waiting request already has this id; pick a fresh one.
    #[error("request {0} is already waiting")]
    DuplicateRequest(RequestId),
}

/// `Cancel` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// The request is not waiting: it was granted (release the connection),
    /// rejected, cancelled already, or never made.
    #[error("request {0} is not waiting")]
    NotWaiting(RequestId),
}

/// `Recycle`, `Taint`, `Detach` or `Validated` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReturnError {
    /// The connection is not borrowed: it is `state` in the pool (or unknown
    /// to it), so the caller does not hold it.
    #[error("connection {conn} is not borrowed (it is {state:?})")]
    NotBorrowed {
        conn: ConnId,
        state: Option<ConnState>,
    },
    /// `Validated` for a connection that was not granted with `validate`
    /// (or was already reported, or returned).
    #[error("connection {conn} is not awaiting validation")]
    NotValidating { conn: ConnId },
}

/// `Close` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// Close was already called; wait for its `CloseComplete`.
    #[error("the pool is already closing or closed")]
    AlreadyClosing,
}

/// Any input refused, from `Pool::handle`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Acquire(#[from] AcquireError),
    #[error(transparent)]
    Cancel(#[from] CancelError),
    #[error(transparent)]
    Return(#[from] ReturnError),
    #[error(transparent)]
    Close(#[from] CloseError),
}
