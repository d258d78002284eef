//! Connects: as many as the waiters and the floor need, no fewer, no more;
//! none hangs past its timeout; a failure is passed on at once.
//!
//! Rules:
//! - **uncovered-waiter**: while requests wait on an open pool and capacity
//!   is free, at least as many connects are in flight as there are waiters.
//!   A freed slot that wakes nobody (a broken connection returned, a failed
//!   connect, a lost notification) is caught at the step it happens, not
//!   when a waiter times out later.
//! - **unjustified-open**: an `Open` answers a need: with it, the connects
//!   in flight do not exceed the larger of the waiters and the idle floor's
//!   shortfall (`min(min_idle, capacity)` minus the idle connections). A
//!   reopen refills the floor, so it is held to the same bound. More is a
//!   connect storm (a leftover notification, a retry per wakeup). And one
//!   beyond the waiters (a floor refill, a reopen) waits out the reconnect
//!   backoff a connect failure started (`reconnect_backoff_ms`; a success
//!   ends it): a failing server is not hammered to keep an idle floor.
//! - **connect-stalled**: with `connect_timeout_ms` set, no connect stays
//!   pending past it (plus the slack): a hung connect is aborted and frees
//!   its slot.
//! - **unjustified-disconnect**: `Abort` only for a connect in flight;
//!   `ConnectTimeout` only when the timeout is enabled and has passed.
//! - **connect-error-lost**: a connect failure the pool learns of (an error,
//!   a close during the handshake, its own connect timeout) reaches the
//!   oldest waiter at once, as `ConnectFailed`, in the same drain: a waiter
//!   does not sit out its timeout for an error that concerned it.

use pool_core::{AbortReason, ConnId, Time};

use super::{Owed, late_after};
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, Qualified, View, World};

impl<P: SimPool> World<P> {
    /// Is this connect needed? `census` is the truth before it.
    pub(super) fn check_open_needed(&mut self, px: u32, conn: ConnId, census: &Census) {
        self.counters.count(Invariant::UnjustifiedOpen);
        let slot = &self.pools[px as usize];
        let waiters = slot.waiting.len();
        let floor = slot.floor(self.pool_config.min_idle);
        let shortfall = floor.saturating_sub(census.pooled);
        let need = waiters.max(shortfall);
        if census.opening + 1 > need {
            let detail = format!(
                "P{px} opens {conn}, making {} connects in flight for {waiters} waiter(s) and an idle floor short by {shortfall}",
                census.opening + 1
            );
            return self.violate(Invariant::UnjustifiedOpen, detail);
        }
        if census.opening + 1 > waiters
            && let Some(until) = slot.contract.backoff_until
            && self.now < until
        {
            let detail = format!(
                "P{px} opens {conn} for its idle floor during the reconnect backoff, which runs until {until}"
            );
            self.violate(Invariant::UnjustifiedOpen, detail);
        }
    }

    /// Why abort this connect?
    pub(super) fn check_abort(&mut self, px: u32, conn: ConnId, reason: AbortReason) {
        self.counters.count(Invariant::UnjustifiedDisconnect);
        let named = Qualified(px, conn);
        let Some(truth) = self.pools[px as usize].conns.get(&conn) else {
            return;
        };
        if truth.view != View::Opening {
            let detail = format!(
                "P{px} aborts {named} ({reason:?}), but it is not connecting: it is {:?}",
                truth.view
            );
            return self.violate(Invariant::UnjustifiedDisconnect, detail);
        }
        if reason != AbortReason::ConnectTimeout {
            return;
        }
        let timeout = self.pool_config.connect_timeout_ms;
        let due = truth.opened_at.plus_ms(timeout);
        let why = if timeout == 0 {
            "but connect_timeout_ms is 0 (disabled)".to_owned()
        } else if self.now < due {
            format!("before its connect timeout, due at {due}")
        } else {
            return;
        };
        let detail = format!("P{px} aborts {named} for its connect timeout {why}");
        self.violate(Invariant::UnjustifiedDisconnect, detail);
    }

    /// At the end of a step: waiters have connects in flight while there is
    /// room for them.
    pub(super) fn check_waiters_covered(&mut self, px: usize, census: &Census) {
        self.counters.count(Invariant::UncoveredWaiter);
        let slot = &self.pools[px];
        let waiters = slot.waiting.len();
        if slot.closing() || waiters <= census.opening || census.held() >= slot.capacity {
            return;
        }
        let oldest = slot.waiting.keys().next().expect("waiters > 0");
        let detail = format!(
            "{waiters} request(s) wait on P{px} (oldest {oldest}) with {} connect(s) in flight and {} of capacity {} free",
            census.opening,
            slot.capacity - census.held(),
            slot.capacity
        );
        self.violate(Invariant::UncoveredWaiter, detail);
    }

    /// At the end of a drain: every connect failure learned in it reached a
    /// waiter, if any waits.
    pub(super) fn check_failures_told(&mut self, px: u32) {
        let slot = &self.pools[px as usize];
        let failures = slot.contract.drain.failures;
        if failures == 0 {
            return;
        }
        self.counters.count(Invariant::ConnectErrorLost);
        if let Some(&oldest) = slot.waiting.keys().next() {
            let detail = format!(
                "{failures} connect failure(s) on P{px} reached no waiter, while {oldest} waits"
            );
            self.violate(Invariant::ConnectErrorLost, detail);
        }
    }

    /// The earliest connect timeout.
    pub(super) fn owed_aborts(&mut self, px: usize) -> Option<(Time, Owed)> {
        let timeout = self.pool_config.connect_timeout_ms;
        if timeout == 0 {
            return None;
        }
        let slack = self.config.slack_ms;
        self.pools[px]
            .conns
            .iter()
            .filter(|(_, c)| c.view == View::Opening)
            .map(|(&conn, c)| (c.opened_at.plus_ms(timeout), conn))
            .min()
            .map(|(deadline, conn)| (late_after(deadline, slack), Owed::Abort { conn, deadline }))
    }
}
