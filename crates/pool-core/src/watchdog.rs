//! The orphan watchdog of a process that owns a pool (postgres-mcp's fix,
//! seed 004): a stdio server whose client was killed never sees EOF on
//! stdin, so it would live on, holding its pool's connections, until the
//! role's connection limit is exhausted. The watchdog checks every
//! `interval_ms` whether the process was orphaned (reparented), and if so
//! asks for the pool to be closed, once.
//!
//! Sans-IO: the orphaning is an input, the check is a timer on the interval
//! grid, and closing the pool is the caller's job.

use crate::mutation::{Active, Mutation};
use crate::types::Time;

/// The orphan watchdog.
#[derive(Clone, Debug)]
pub struct Watchdog {
    started: Time,
    interval_ms: u64,
    /// The check that will see the orphaning.
    due: Option<Time>,
    fired: bool,
    mutation: Active,
}

/// What the watchdog wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchdogAction {
    /// The process is orphaned: close its pool (and exit).
    ClosePool,
}

impl Watchdog {
    /// A watchdog started at `now`, checking every `interval_ms` (at least 1).
    pub fn new(now: Time, interval_ms: u64) -> Watchdog {
        Watchdog {
            started: now,
            interval_ms: interval_ms.max(1),
            due: None,
            fired: false,
            mutation: Active::default(),
        }
    }

    /// Put the seed report's bug back. Only with `mutations`.
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&mut self, mutation: Option<Mutation>) {
        self.mutation.set(mutation);
    }

    /// The process was orphaned at `now` (its parent exited). The next check
    /// on the interval grid will see it.
    pub fn handle_orphaned(&mut self, now: Time) {
        if self.due.is_some() || self.fired {
            return;
        }
        let elapsed = now.millis_since(self.started);
        let checks = elapsed.div_ceil(self.interval_ms).max(1);
        self.due = Some(self.started.plus_ms(checks * self.interval_ms));
    }

    /// Write the watchdog's state to `sink` for a canonical hash. Its
    /// start only places the interval grid, so only where `now` falls on
    /// the grid is hashed: a watchdog started one interval earlier acts
    /// the same.
    pub fn hash_state(&self, now: Time, sink: &mut dyn crate::StateSink) {
        sink.word(now.millis_since(self.started) % self.interval_ms);
        sink.opt_time(self.due);
        sink.word(u64::from(self.fired));
    }

    /// When the watchdog next wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.due
    }

    /// A check at `now`: `ClosePool` once the orphaning is seen.
    pub fn handle_timeout(&mut self, now: Time) -> Option<WatchdogAction> {
        self.due.filter(|&due| due <= now)?;
        self.due = None;
        self.fired = true;
        if self.mutation.is(Mutation::OrphanKeepsPool) {
            // postgres-mcp before #177: no watchdog; an orphan keeps its pool.
            return None;
        }
        Some(WatchdogAction::ClosePool)
    }
}
