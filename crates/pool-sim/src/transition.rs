//! The one transition vocabulary: every way the world can move, as data.
//!
//! The seeded simulator draws these, scenario files store them, and proptest
//! and cargo-fuzz generate them. Every value is valid: entities are named by
//! index into the current candidates, taken modulo their count, so any
//! sequence means something (a transition with no candidate is skipped) and
//! shrinking a sequence keeps its meaning.

use arbitrary::Arbitrary;
use pool_core::Time;
use serde::{Deserialize, Serialize};

/// One world transition at a virtual time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Step {
    /// Virtual time; never earlier than the step before.
    pub at: Time,
    pub transition: Transition,
}

/// A world transition. Candidates are listed in a fixed order: clients by
/// number; connect attempts and open sessions by connection id; signals in
/// the order they arrived.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Arbitrary)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Transition {
    // ----- clients (`client` is taken modulo the number of clients) -----
    /// An idle client asks for a connection; `timeout_ms` unset means the
    /// pool's acquire timeout.
    Acquire {
        client: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        setting: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u32>,
    },
    /// A waiting client gives up.
    Cancel { client: u32 },
    /// A client returns its connection healthy.
    Release { client: u32 },
    /// A client returns its connection broken.
    Taint { client: u32 },
    /// A client takes its connection out of the pool for good (LISTEN).
    Detach { client: u32 },
    /// A client closes the connection it detached.
    Unlisten { client: u32 },

    // ----- backend (`attempt`: a pending connect; `session`: an open one) -----
    /// The handshake completes.
    ConnectOk { attempt: u32 },
    /// The connect fails.
    ConnectFail { attempt: u32 },
    /// The handshake completes and the server closes the connection in the
    /// same I/O tick (ReadyForQuery, then an admin-shutdown error and FIN):
    /// both `Connected` and `Closed` wait to be delivered (Bun, seed 001).
    ReadyThenFin { attempt: u32 },
    /// The server terminates one session (idle timeout, pg_terminate_backend).
    Kill { session: u32 },
    /// The server terminates every session.
    KillAll,

    // ----- delivery -----
    /// The pool hears of one pending backend signal (`signal` indexes the
    /// signals not yet delivered, oldest first).
    Deliver { signal: u32 },
    /// The transport reports a pending signal a second time (an error and
    /// then EOF both report one close; a callback that fires twice): a copy
    /// joins the queue. A ping's answer is not repeated.
    Echo { signal: u32 },

    // ----- control (`pool` indexes the pools in service) -----
    SetCapacity {
        capacity: u32,
        #[serde(default, skip_serializing_if = "is_zero")]
        pool: u32,
    },
    /// Close a pool; `timeout_ms` unset means no deadline.
    Close {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u32>,
        #[serde(default, skip_serializing_if = "is_zero")]
        pool: u32,
    },

    // ----- the registry (worlds with `keys > 0`) -----
    /// An idle client logs in to `key`: the registry gives it the key's
    /// pool (made now, on a first login), and it acquires from it.
    Login {
        client: u32,
        key: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u32>,
    },
    /// The registry's GC sweep.
    Gc,

    // ----- processes (`process` is taken modulo the number of processes) -----
    /// The process's parent (its client) is killed: the process is orphaned.
    Orphan { process: u32 },
    /// A new process starts in the place of an orphaned one.
    Spawn { process: u32 },

    /// Nothing happens; time passes (and the pool's timers fire).
    Wait,
}

impl Transition {
    /// The kebab-case name, as written in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Acquire { .. } => "acquire",
            Transition::Cancel { .. } => "cancel",
            Transition::Release { .. } => "release",
            Transition::Taint { .. } => "taint",
            Transition::Detach { .. } => "detach",
            Transition::Unlisten { .. } => "unlisten",
            Transition::ConnectOk { .. } => "connect-ok",
            Transition::ConnectFail { .. } => "connect-fail",
            Transition::ReadyThenFin { .. } => "ready-then-fin",
            Transition::Kill { .. } => "kill",
            Transition::KillAll => "kill-all",
            Transition::Deliver { .. } => "deliver",
            Transition::Echo { .. } => "echo",
            Transition::SetCapacity { .. } => "set-capacity",
            Transition::Close { .. } => "close",
            Transition::Login { .. } => "login",
            Transition::Gc => "gc",
            Transition::Orphan { .. } => "orphan",
            Transition::Spawn { .. } => "spawn",
            Transition::Wait => "wait",
        }
    }
}

/// The keys a scenario file may give each transition, besides `do` and
/// `at_ms`. serde takes any extra key on a variant without fields (`{ do =
/// "kill-all", session = 0 }`); scenario files are held to this list, so a
/// misplaced key is an error, not a silent no-op.
pub fn fields(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "acquire" => &["client", "setting", "timeout_ms"],
        "cancel" | "release" | "taint" | "detach" | "unlisten" => &["client"],
        "connect-ok" | "connect-fail" | "ready-then-fin" => &["attempt"],
        "kill" => &["session"],
        "deliver" | "echo" => &["signal"],
        "set-capacity" => &["capacity", "pool"],
        "close" => &["timeout_ms", "pool"],
        "login" => &["client", "key", "timeout_ms"],
        "orphan" | "spawn" => &["process"],
        "kill-all" | "gc" | "wait" => &[],
        _ => return None,
    })
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
