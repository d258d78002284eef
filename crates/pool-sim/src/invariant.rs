//! The invariants' stable names and kinds, and the violation a checker reports.

use std::fmt;
use std::str::FromStr;

use pool_core::{Mutation, Time};

/// A property the simulator checks. The names are stable: outputs, scenario
/// files' `expect` and the tests use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// An `Open` made held (opening + idle + borrowed) exceed the capacity.
    OverCapacity,
    /// The pool holds as idle, or grants, a connection it has been told is
    /// dead (closed, failed, tainted) or was never told is connected.
    GhostIdle,
    /// A connection granted while already borrowed or detached.
    DoubleGrant,
    /// A connection the pool holds by the protocol (opening, idle, borrowed,
    /// or tainted and awaiting disconnect) that it no longer tracks; or a
    /// grant to a request that is not waiting.
    LostConnection,
    /// The pool's gauges or per-connection states disagree with ground truth
    /// (a slot held for nothing), or it refused a valid input.
    Accounting,
    /// An `Open` after `Close` began.
    OpenAfterClose,
    /// A reopen did not keep the connection's setting, or a grant handed a
    /// connection without the requested setting.
    SettingLost,
    /// The pool disconnected a borrowed or detached connection.
    BusyDisconnected,
    /// A request waits while an idle connection sits in the pool and the
    /// pool is within capacity: a waiter sleeps though it could be served.
    IdleWhileWaiting,
    /// Two pools in service for one registry key.
    DuplicatePool,
    /// The registry's GC removed a pool whose first connect had not
    /// committed, or one that holds connections or that a login still waits
    /// on (the login fails because its pool vanished).
    GcRemovedInitializing,
    /// Requests wait and capacity is free, yet fewer connects are in flight
    /// than waiters: a lost wakeup, caught when it happens.
    UncoveredWaiter,
    /// A connection granted to a younger waiter while an older one (which
    /// any connection can serve) still waits.
    QueueJumped,
    /// A connect failed while requests waited, and the oldest of them was
    /// not told at once.
    ConnectErrorLost,
    /// An `Open` that no waiter, floor or reopen needed (a connect storm).
    UnjustifiedOpen,
    /// A `Reject` whose reason does not hold: `Timeout` before the deadline,
    /// `Closed` while open, `ConnectFailed` with no failed connect.
    UnjustifiedReject,
    /// A `Disconnect` or `Abort` whose reason does not hold: an idle or
    /// lifetime timeout that is disabled or not yet due (or reaps the idle
    /// floor), over capacity while within it, closing while open, tainted
    /// when it was not, a connect timeout not yet due.
    UnjustifiedDisconnect,
    /// A connection granted past its max lifetime, returned to the idle set
    /// past it, or left idle past it (plus the slack).
    ExpiredConn,
    /// After `Close` began: a request left waiting (or an acquire not
    /// rejected), a connect left in flight, or a connection left idle.
    CloseIncomplete,
    /// `CloseComplete` before its deadline while a connection is still
    /// borrowed.
    CloseEarly,
    /// A connection the server had closed was granted without validation,
    /// though it had been idle for `validate_idle_ms`.
    UnvalidatedGrant,
    /// The pool's own consistency check (`SimPool::check_consistency`)
    /// failed.
    SelfCheck,
    /// Close not complete by its deadline (plus the slack), or not complete
    /// at the end of a step in which nothing is held any more.
    CloseStalled,
    /// An acquire unresolved past its deadline (plus the slack).
    WaiterStalled,
    /// A connect still pending past the connect timeout (plus the slack):
    /// a hung connect holds its slot.
    ConnectStalled,
    /// More idle connections above the floor than there are connections
    /// idle for less than the idle timeout (plus the slack).
    IdleNotReaped,
    /// Faults healed and the server accepting, yet the `min_idle` floor is
    /// not refilled within the backoff plus the liveness bound.
    FloorNotRestored,
    /// Faults healed and capacity free, yet a probe acquire failed or
    /// requests still wait when the liveness phase ends.
    Starved,
    /// Held stays above capacity after every borrower of the shrink returned.
    CapacityStalled,
    /// An idle pool keeps more server sessions than its floor after the
    /// liveness phase, or an orphaned process keeps any past its watchdog.
    Footprint,
}

/// Safety: a bad state was reached. Liveness: a good state was not reached
/// in bounded (virtual) time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Safety,
    Liveness,
}

impl Invariant {
    pub const ALL: [Invariant; 30] = [
        Invariant::OverCapacity,
        Invariant::GhostIdle,
        Invariant::DoubleGrant,
        Invariant::LostConnection,
        Invariant::Accounting,
        Invariant::OpenAfterClose,
        Invariant::SettingLost,
        Invariant::BusyDisconnected,
        Invariant::IdleWhileWaiting,
        Invariant::DuplicatePool,
        Invariant::GcRemovedInitializing,
        Invariant::UncoveredWaiter,
        Invariant::QueueJumped,
        Invariant::ConnectErrorLost,
        Invariant::UnjustifiedOpen,
        Invariant::UnjustifiedReject,
        Invariant::UnjustifiedDisconnect,
        Invariant::ExpiredConn,
        Invariant::CloseIncomplete,
        Invariant::CloseEarly,
        Invariant::UnvalidatedGrant,
        Invariant::SelfCheck,
        Invariant::CloseStalled,
        Invariant::WaiterStalled,
        Invariant::ConnectStalled,
        Invariant::IdleNotReaped,
        Invariant::FloorNotRestored,
        Invariant::Starved,
        Invariant::CapacityStalled,
        Invariant::Footprint,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Invariant::OverCapacity => "over-capacity",
            Invariant::GhostIdle => "ghost-idle",
            Invariant::DoubleGrant => "double-grant",
            Invariant::LostConnection => "lost-connection",
            Invariant::Accounting => "accounting",
            Invariant::OpenAfterClose => "open-after-close",
            Invariant::SettingLost => "setting-lost",
            Invariant::BusyDisconnected => "busy-disconnected",
            Invariant::IdleWhileWaiting => "idle-while-waiting",
            Invariant::DuplicatePool => "duplicate-pool",
            Invariant::GcRemovedInitializing => "gc-removed-initializing",
            Invariant::UncoveredWaiter => "uncovered-waiter",
            Invariant::QueueJumped => "queue-jumped",
            Invariant::ConnectErrorLost => "connect-error-lost",
            Invariant::UnjustifiedOpen => "unjustified-open",
            Invariant::UnjustifiedReject => "unjustified-reject",
            Invariant::UnjustifiedDisconnect => "unjustified-disconnect",
            Invariant::ExpiredConn => "expired-conn",
            Invariant::CloseIncomplete => "close-incomplete",
            Invariant::CloseEarly => "close-early",
            Invariant::UnvalidatedGrant => "unvalidated-grant",
            Invariant::SelfCheck => "self-check",
            Invariant::CloseStalled => "close-stalled",
            Invariant::WaiterStalled => "waiter-stalled",
            Invariant::ConnectStalled => "connect-stalled",
            Invariant::IdleNotReaped => "idle-not-reaped",
            Invariant::FloorNotRestored => "floor-not-restored",
            Invariant::Starved => "starved",
            Invariant::CapacityStalled => "capacity-stalled",
            Invariant::Footprint => "footprint",
        }
    }

    pub const fn kind(self) -> Kind {
        match self {
            Invariant::CloseStalled
            | Invariant::WaiterStalled
            | Invariant::ConnectStalled
            | Invariant::IdleNotReaped
            | Invariant::FloorNotRestored
            | Invariant::Starved
            | Invariant::CapacityStalled
            | Invariant::Footprint => Kind::Liveness,
            _ => Kind::Safety,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The invariants that catch `mutation`: the properties its bug
    /// breaks. Any of them, and only them, may be the first to fire when it
    /// is put back (`cargo xtask hunt` holds each mutation to this).
    pub const fn catching(mutation: Mutation) -> &'static [Invariant] {
        use Invariant as I;
        use Mutation as M;
        match mutation {
            M::AcceptStaleConnect | M::ReopenLeavesIdle => &[I::GhostIdle],
            // A connection a client holds, made idle again: the pool's view
            // disagrees with the truth, or it grants it twice.
            M::DuplicateConnectedReadmits => &[I::Accounting, I::DoubleGrant],
            M::DetachKeepsSlot => &[I::Accounting, I::Starved],
            M::TaintKeepsSlot | M::BrokenReturnKeepsSlot => &[I::Accounting],
            M::HandoffWhileOverCapacity => &[I::CapacityStalled, I::CloseStalled],
            M::ReopenIgnoresClose => &[I::CloseStalled, I::OpenAfterClose],
            M::ReopenDropsSetting
            | M::RecycleReopenDropsSetting
            | M::LifetimeRefillDropsSetting
            | M::GrantSkipsReset => &[I::SettingLost],
            M::GcRemovesInitializing | M::GcRemovesBusy => &[I::GcRemovedInitializing],
            M::RegisterAfterConnect => &[I::DuplicatePool],
            M::OrphanKeepsPool | M::GcKeepsIdle | M::CommitNotRecorded => &[I::Footprint],
            M::TaintWakesNobody | M::FailedConnectWakesNobody => &[I::UncoveredWaiter],
            M::ReleaseWakesNobody | M::AcquireSkipsIdle => &[I::IdleWhileWaiting],
            M::ConnectTimeoutWakesNobody => &[I::ConnectErrorLost, I::UncoveredWaiter],
            M::ConnectErrorSwallowed => &[I::ConnectErrorLost],
            // The failure swallowed is also a backoff not started: the
            // floor is refilled against a server that just failed.
            M::HandshakeCloseSwallowed => &[I::ConnectErrorLost, I::UnjustifiedOpen],
            M::OpenPerWakeup
            | M::ReopenIgnoresFloor
            | M::ReopenIgnoresBackoff
            | M::BackoffNeverStarts => &[I::UnjustifiedOpen],
            M::FloorFillIgnoresCapacity | M::ReopenIgnoresCapacity | M::ZeroCapacityUnlimited => {
                &[I::OverCapacity]
            }
            M::LifetimeSparesBorrowed | M::RecycleIgnoresExpiry => &[I::ExpiredConn],
            M::EarlyRetirement
            | M::ZeroIdleTimeoutExpires
            | M::ZeroLifetimeExpires
            | M::ZeroConnectTimeoutExpires
            | M::IdleReapsFloor
            | M::ResizeDebtOutlivesGrow
            | M::RecycleDisconnectsWhenFull => &[I::UnjustifiedDisconnect],
            M::ZeroAcquireTimeoutExpires | M::AcquireRejectsWhileOpen => &[I::UnjustifiedReject],
            M::LifetimeReapsBorrowed | M::ShrinkReapsBorrowed => &[I::BusyDisconnected],
            M::RecycleSkipsIdleTimer | M::ConnectSkipsIdleTimer => &[I::IdleNotReaped],
            M::ConnectTimeoutUnarmed | M::ReopenWithoutTimeout => &[I::ConnectStalled],
            M::WaiterDeadlineLate | M::QueuedWaiterUnarmed => &[I::WaiterStalled],
            M::CloseSparesConnects | M::CloseRecyclesToIdle | M::CloseKeepsWaiters => {
                &[I::CloseIncomplete]
            }
            M::CloseCompletesEarly | M::TaintCompletesClose => &[I::CloseEarly],
            // A closed pool stays closed: it neither reopens, nor reports
            // itself open or resized.
            M::SetCapacityRevivesClosed => &[
                I::Accounting,
                I::OpenAfterClose,
                I::CloseStalled,
                I::CloseIncomplete,
            ],
            M::CloseDeadlineUnarmed | M::ZeroCloseTimeoutAsNone => &[I::CloseStalled],
            M::ServePrefersSettingMatch | M::NewestWaiterFirst | M::InvalidRequeuesAtBack => {
                &[I::QueueJumped]
            }
            M::SkipValidation | M::ValidationSkippedOnApply => &[I::UnvalidatedGrant],
            M::BackoffNeverRefills | M::FloorRefillWaitsForAcquire => &[I::FloorNotRestored],
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An invariant name that is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown invariant `{0}`; expected one of: {names}", names = Invariant::ALL.map(|i| i.name()).join(", "))]
pub struct UnknownInvariant(pub String);

impl FromStr for Invariant {
    type Err = UnknownInvariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Invariant::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| UnknownInvariant(s.to_owned()))
    }
}

/// A broken invariant: which, when (virtual time), and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub at: Time,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at t={}: {}",
            self.invariant, self.at, self.detail
        )
    }
}
