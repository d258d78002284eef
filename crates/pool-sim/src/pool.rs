//! The sans-IO contract the simulator drives. The reference core implements
//! it; so can any pool state machine a user wants to put under the simulator.

use pool_core::{Command, ConnId, ConnState, Input, InputError, Pool, Stats, Time};

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
    /// The pool's gauges. Only `held`, `opening`, `idle`, `borrowed` and
    /// `waiters` are checked; the counters are reported.
    fn stats(&self) -> Stats;
    /// Every connection the pool tracks, with its state, in any order.
    fn conns(&self, out: &mut Vec<(ConnId, ConnState)>);
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
}
