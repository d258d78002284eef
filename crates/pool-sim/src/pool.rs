//! The sans-IO contract the simulator drives. The reference core implements
//! it; so can any pool state machine a user wants to put under the simulator.

use pool_core::{Command, ConnId, ConnState, Input, InputError, Pool, StateSink, Stats, Time};

/// A pool the simulator can drive: inputs in, commands out, timers on
/// request, and enough self-report for the checkers to compare with ground
/// truth.
///
/// Contract (the same as `pool_core::Pool`): after every `handle` or
/// `handle_timeout` the simulator drains `poll_command` until `None`, then
/// calls `handle_timeout` once `poll_timeout` has come.
pub trait SimPool {
    /// One input at `now`. An error means the pool refused it; the simulator
    /// only sends inputs that are valid by its ground truth, so an error is
    /// reported as an `accounting` violation.
    fn handle(&mut self, now: Time, input: Input) -> Result<(), InputError>;
    /// Fire the timers due at `now`.
    fn handle_timeout(&mut self, now: Time);
    /// The next command, in decision order.
    fn poll_command(&mut self) -> Option<Command>;
    /// When the pool next wants `handle_timeout`.
    fn poll_timeout(&self) -> Option<Time>;
    /// The pool's stats: its gauges (lifecycle, capacity, held, opening,
    /// idle, borrowed, waiters), compared with ground truth after every
    /// input and timer firing, and its counters (see `reports_counters`).
    /// Called often: keep it cheap.
    fn stats(&self) -> Stats;
    /// Every connection the pool tracks, with its state, in any order.
    fn conns(&self, out: &mut Vec<(ConnId, ConnState)>);
    /// Whether `stats` keeps the counters (opened, granted, rejected,
    /// timed_out, ...). If so, the contract holds them to the world's own
    /// counts after every step (`accounting`); a pool that keeps none
    /// returns `false`, and only its gauges are compared.
    fn reports_counters(&self) -> bool {
        true
    }
    /// The pool's own consistency check, called after every input and
    /// timer firing; an `Err` is reported as the `self-check` invariant.
    /// The default has nothing to check.
    fn check_consistency(&self) -> Result<(), String> {
        Ok(())
    }

    // ----- optional: exploration (`cargo xtask explore`) -----

    /// A copy of the pool, for an explorer that branches a world into
    /// every transition it can take. `None` (the default): the pool cannot
    /// be explored, and `explore` says so. A pool that returns a copy must
    /// also implement `hash_state`.
    fn snapshot(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Write everything the pool's future behaviour depends on to `sink`,
    /// naming connections, requests and times through it (it renames them
    /// canonically, so equivalent states meet). Leave out what only grows
    /// (id counters, the stats' counters). Returns `false` (the default)
    /// when the pool cannot: the explorer will not guess at a pool's state.
    fn hash_state(&self, sink: &mut dyn StateSink) -> bool {
        let _ = sink;
        false
    }
}

impl SimPool for Pool {
    fn handle(&mut self, now: Time, input: Input) -> Result<(), InputError> {
        Pool::handle(self, now, input)
    }

    fn handle_timeout(&mut self, now: Time) {
        Pool::handle_timeout(self, now)
    }

    fn poll_command(&mut self) -> Option<Command> {
        Pool::poll_command(self)
    }

    fn poll_timeout(&self) -> Option<Time> {
        Pool::poll_timeout(self)
    }

    fn stats(&self) -> Stats {
        Pool::stats(self)
    }

    fn conns(&self, out: &mut Vec<(ConnId, ConnState)>) {
        out.extend(Pool::conns(self));
    }

    fn check_consistency(&self) -> Result<(), String> {
        Pool::check_consistency(self)
    }

    fn snapshot(&self) -> Option<Self> {
        Some(self.clone())
    }

    fn hash_state(&self, sink: &mut dyn StateSink) -> bool {
        Pool::hash_state(self, sink);
        true
    }
}
