//! The pool's vocabulary: the inputs it handles and the commands it emits.

use std::fmt;

use crate::types::{ConnId, RequestId, Setting, Time};

/// An event for the pool: from the caller (acquire, return, control) or from
/// the transport (a connect finished, a connection closed).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Input {
    /// A caller wants a connection with `setting`; it is answered by `Grant`
    /// or `Reject`. Without a deadline the config's acquire timeout applies.
    Acquire {
        request: RequestId,
        setting: Option<Setting>,
        deadline: Option<Time>,
    },
    /// The caller gave up on a waiting request; nothing is emitted for it.
    Cancel { request: RequestId },
    /// A borrowed connection comes back healthy, to be used again (Vitess'
    /// word; the client's verb, in scenario files, is `release`).
    Recycle { conn: ConnId },
    /// A borrowed connection comes back broken: the pool disconnects it.
    Taint { conn: ConnId },
    /// A borrowed connection leaves the pool for good (pgx's `Hijack`): its
    /// slot is freed now, the caller closes it.
    Detach { conn: ConnId },
    /// An `Open` finished its handshake.
    Connected { conn: ConnId },
    /// An `Open` failed.
    ConnectFailed { conn: ConnId },
    /// The transport or the server closed a connection.
    Closed { conn: ConnId },
    /// The shell validated a connection granted with `validate` (a ping):
    /// `ok`, the grant stands; not ok, the connection is dead (the shell
    /// drops it) and its request waits again, first in line.
    Validated { conn: ConnId, ok: bool },
    /// Grow or shrink the pool.
    SetCapacity { capacity: usize },
    /// Close the pool; it reports `CloseComplete` when nothing is held or at
    /// the deadline, whichever comes first.
    Close { deadline: Option<Time> },
}

/// Work for the shell, drained with `Pool::poll_command` in the order the
/// pool decided it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Command {
    /// Start connecting `conn`, with `setting` applied. `replaces` names the
    /// connection this one stands in for when it is a reopen.
    Open {
        conn: ConnId,
        setting: Option<Setting>,
        replaces: Option<ConnId>,
    },
    /// Cancel the in-flight connect of `conn`; close it if it did connect.
    Abort { conn: ConnId, reason: AbortReason },
    /// Close the live connection `conn`.
    Disconnect {
        conn: ConnId,
        reason: DisconnectReason,
    },
    /// Hand `conn` to `request`. When `validate` is set (it has been idle
    /// for `validate_idle_ms`), the shell first checks it is alive and
    /// reports `Validated`; when `apply_setting` is set the shell then
    /// applies `setting` (`None`: resets the session to a clean state).
    Grant {
        request: RequestId,
        conn: ConnId,
        setting: Option<Setting>,
        apply_setting: bool,
        validate: bool,
    },
    /// `request` will not get a connection.
    Reject {
        request: RequestId,
        reason: RejectReason,
    },
    /// Close finished; `leaked` connections were still borrowed at the
    /// deadline (they are disconnected when they come back).
    CloseComplete { leaked: usize },
}

/// Why an acquire was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RejectReason {
    /// Its deadline passed.
    Timeout,
    /// A connect failed or timed out while it was the oldest waiter.
    ConnectFailed,
    /// The pool is closing or closed.
    Closed,
}

/// Why a connect was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum AbortReason {
    ConnectTimeout,
    OverCapacity,
    Closing,
}

/// Why a connection was disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum DisconnectReason {
    IdleTimeout,
    Lifetime,
    Tainted,
    OverCapacity,
    Closing,
}

// One-line renderings for traces and logs: `grant r7 c3 s1 apply`.

struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Acquire {
                request,
                setting,
                deadline,
            } => write!(
                f,
                "acquire {request} setting={} deadline={}",
                Opt(*setting),
                Opt(*deadline)
            ),
            Input::Cancel { request } => write!(f, "cancel {request}"),
            Input::Recycle { conn } => write!(f, "recycle {conn}"),
            Input::Taint { conn } => write!(f, "taint {conn}"),
            Input::Detach { conn } => write!(f, "detach {conn}"),
            Input::Connected { conn } => write!(f, "connected {conn}"),
            Input::ConnectFailed { conn } => write!(f, "connect-failed {conn}"),
            Input::Closed { conn } => write!(f, "closed {conn}"),
            Input::Validated { conn, ok } => {
                write!(f, "validated {conn} {}", if *ok { "ok" } else { "dead" })
            }
            Input::SetCapacity { capacity } => write!(f, "set-capacity {capacity}"),
            Input::Close { deadline } => write!(f, "close deadline={}", Opt(*deadline)),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Open {
                conn,
                setting,
                replaces,
            } => {
                write!(f, "open {conn} setting={}", Opt(*setting))?;
                match replaces {
                    Some(old) => write!(f, " replaces={old}"),
                    None => Ok(()),
                }
            }
            Command::Abort { conn, reason } => write!(f, "abort {conn} ({reason:?})"),
            Command::Disconnect { conn, reason } => write!(f, "disconnect {conn} ({reason:?})"),
            Command::Grant {
                request,
                conn,
                setting,
                apply_setting,
                validate,
            } => {
                write!(f, "grant {request} {conn} setting={}", Opt(*setting))?;
                if *validate {
                    f.write_str(" (validate)")?;
                }
                if *apply_setting {
                    f.write_str(" (apply)")?;
                }
                Ok(())
            }
            Command::Reject { request, reason } => write!(f, "reject {request} ({reason:?})"),
            Command::CloseComplete { leaked } => write!(f, "close-complete leaked={leaked}"),
        }
    }
}
