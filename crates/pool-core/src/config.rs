//! Pool configuration, with defaults like the mainstream pools.

/// How the pool sizes itself and when its timers fire.
///
/// Every `*_ms` timer is disabled by zero. Defaults follow HikariCP and pgx:
/// at most 10 connections, no idle floor, idle connections closed after
/// 10 minutes, every connection retired after 30 minutes, acquires given up
/// after 30 seconds, connections idle over a second validated (pgx's ping)
/// before they are handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Config {
    /// The initial capacity: the most connections held (opening, idle or
    /// borrowed) at once. `SetCapacity` changes it at run time.
    pub max_size: usize,
    /// Idle connections the pool keeps open (capped by the capacity); idle
    /// timeouts close connections only down to this floor.
    pub min_idle: usize,
    /// An idle connection above `min_idle` is closed after this long.
    pub idle_timeout_ms: u64,
    /// A connection is replaced (keeping its setting) after this long since
    /// it connected: at once when idle, on return when borrowed.
    pub max_lifetime_ms: u64,
    /// An acquire without its own deadline is rejected after this long.
    pub acquire_timeout_ms: u64,
    /// An open that has not connected after this long is aborted.
    pub connect_timeout_ms: u64,
    /// After a failed connect, refilling `min_idle` waits this long (waiters
    /// still get new connects at once, so a connect error reaches them).
    pub reconnect_backoff_ms: u64,
    /// A connection idle at least this long is validated (a ping) before it
    /// is handed out, so one the server closed while it sat idle is caught
    /// before a caller gets it (pgx pings connections idle over a second;
    /// HikariCP validates past 500 ms; bb8 and deadpool check every one).
    pub validate_idle_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_size: 10,
            min_idle: 0,
            idle_timeout_ms: 600_000,
            max_lifetime_ms: 1_800_000,
            acquire_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 1_000,
            validate_idle_ms: 1_000,
        }
    }
}

impl Config {
    /// `max_size` connections and every timer disabled: nothing happens
    /// that the caller did not ask for. Tests and models start from it.
    pub fn without_timers(max_size: usize) -> Self {
        Config {
            max_size,
            min_idle: 0,
            idle_timeout_ms: 0,
            max_lifetime_ms: 0,
            acquire_timeout_ms: 0,
            connect_timeout_ms: 0,
            reconnect_backoff_ms: 0,
            validate_idle_ms: 0,
        }
    }
}

/// A timer value from the config: zero means disabled.
pub(crate) fn enabled(ms: u64) -> Option<u64> {
    (ms > 0).then_some(ms)
}
