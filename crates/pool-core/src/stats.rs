//! What a person debugging a pool wants to see: gauges of what is held now
//! and counters of what happened since the pool was made.

/// Where the pool is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Lifecycle {
    #[default]
    Open,
    /// `Close` was called; waiting for borrowed connections or the deadline.
    Closing,
    /// `CloseComplete` was emitted.
    Closed,
}

/// A snapshot of the pool, from `Pool::stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    pub lifecycle: Lifecycle,
    /// The current capacity (the config's `max_size` until `SetCapacity`).
    pub capacity: usize,
    /// `opening + idle + borrowed`: the slots in use.
    pub held: usize,
    pub opening: usize,
    pub idle: usize,
    pub borrowed: usize,
    /// Acquires waiting for a connection.
    pub waiters: usize,
    /// Connections detached so far (they no longer hold a slot).
    pub detached: u64,
    /// `Open` commands emitted.
    pub opened: u64,
    /// Connects that succeeded.
    pub connected: u64,
    /// Connects that failed, including those closed during the handshake.
    pub connect_failures: u64,
    /// Connects aborted, by connect timeout, shrink or close.
    pub aborted: u64,
    /// `Disconnect` commands emitted.
    pub disconnected: u64,
    /// Connections the transport reported closed while idle or borrowed.
    pub closed_by_server: u64,
    pub granted: u64,
    /// Grants that asked the shell to validate first.
    pub validations: u64,
    /// Of those, the ones the shell found dead.
    pub invalidated: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    pub tainted: u64,
    /// Connections replaced (setting kept) at their max lifetime, to keep
    /// the idle floor.
    pub reopened: u64,
    /// Transport events for a connection not in the matching state (a late
    /// `Connected` after `Closed`, a second `Closed`, ...), ignored.
    pub stale_events: u64,
    /// Transport events for an id the pool never issued, ignored.
    pub unknown_events: u64,
}
