//! Floor and timers: idle connections go when they have idled long enough
//! and not below the floor; no connection is used past its lifetime; the
//! floor comes back after an outage; an idle pool's footprint drains.
//!
//! Rules:
//! - **unjustified-disconnect**: `IdleTimeout` only when `idle_timeout_ms`
//!   is set, the connection has been idle that long, and the pool holds
//!   more idle connections than its floor (`min(min_idle, capacity)`);
//!   `Lifetime` only when `max_lifetime_ms` is set and has passed since the
//!   pool was told the connection connected. Zero means disabled: a timer of
//!   0 never expires anything.
//! - **idle-not-reaped**: with `idle_timeout_ms` set, the idle connections
//!   above the floor are never more than those idle for less than the idle
//!   timeout (plus the slack): every excess connection has its timer.
//! - **expired-conn**: with `max_lifetime_ms` set, no connection is granted
//!   after its lifetime ended; one that expires while borrowed is not
//!   returned to the idle set (it retires on return); an idle one is
//!   retired within the slack of its expiry.
//! - **floor-not-restored**: with faults healed and the server accepting
//!   connects, idle plus connecting connections reach
//!   `min(min_idle, capacity - borrowed)` within the reconnect backoff plus
//!   the liveness bound of falling short.
//! - **footprint**: when the liveness phase ends quiet, an idle pool keeps
//!   no more server sessions than its floor (none once closed), if its idle
//!   timeout lets it drain at all.

use pool_core::{ConnId, RequestId, Time};

use super::{Owed, late_after};
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, Qualified, View, World};

impl<P: SimPool> World<P> {
    /// `IdleTimeout`: enabled, idle long enough, above the floor.
    pub(super) fn check_idle_timeout_reason(&mut self, px: u32, conn: ConnId, census: &Census) {
        let timeout = self.pool_config.idle_timeout_ms;
        let slot = &self.pools[px as usize];
        let floor = slot.floor(self.pool_config.min_idle);
        let Some(truth) = slot.conns.get(&conn) else {
            return;
        };
        let due = truth.pooled_since.plus_ms(timeout);
        let why = if timeout == 0 {
            "but idle_timeout_ms is 0 (disabled)".to_owned()
        } else if truth.view != View::Pooled {
            format!("but it is {:?}, not idle", truth.view)
        } else if self.now < due {
            format!(
                "but it has been idle only since {}; its idle timeout is due at {due}",
                truth.pooled_since
            )
        } else if census.pooled <= floor {
            format!(
                "but only {} are idle, within the floor of {floor}",
                census.pooled
            )
        } else {
            return;
        };
        let detail = format!("P{px} closes {} for idling, {why}", Qualified(px, conn));
        self.violate(Invariant::UnjustifiedDisconnect, detail);
    }

    /// `Lifetime`: enabled and past.
    pub(super) fn check_lifetime_reason(&mut self, px: u32, conn: ConnId) {
        let lifetime = self.pool_config.max_lifetime_ms;
        let Some(truth) = self.pools[px as usize].conns.get(&conn) else {
            return;
        };
        let why = match truth.connected_at {
            _ if lifetime == 0 => "but max_lifetime_ms is 0 (disabled)".to_owned(),
            None => "but it never connected".to_owned(),
            Some(at) if self.now < at.plus_ms(lifetime) => format!(
                "but it connected at {at}; its lifetime ends at {}",
                at.plus_ms(lifetime)
            ),
            Some(_) => return,
        };
        let detail = format!(
            "P{px} retires {} at its max lifetime, {why}",
            Qualified(px, conn)
        );
        self.violate(Invariant::UnjustifiedDisconnect, detail);
    }

    /// No grant of an expired connection.
    pub(super) fn check_grant_lifetime(&mut self, px: u32, request: RequestId, conn: ConnId) {
        self.counters.count(Invariant::ExpiredConn);
        if let Some(expired_at) = self.expiry(px as usize, conn)
            && self.now > expired_at
        {
            let detail = format!(
                "P{px} grants {} to {request}, but its max lifetime ended at {expired_at}",
                Qualified(px, conn)
            );
            self.violate(Invariant::ExpiredConn, detail);
        }
    }

    /// When `conn`'s max lifetime ends, if it has one.
    fn expiry(&self, px: usize, conn: ConnId) -> Option<Time> {
        let lifetime = self.pool_config.max_lifetime_ms;
        let truth = self.pools[px].conns.get(&conn)?;
        (lifetime > 0)
            .then_some(truth.connected_at?)
            .map(|at| at.plus_ms(lifetime))
    }

    /// Idle connections past their lifetime: at once if it ended before
    /// they came back, else within the slack of its end.
    pub(super) fn owed_retirements(&mut self, px: usize) -> Option<(Time, Owed)> {
        let lifetime = self.pool_config.max_lifetime_ms;
        if lifetime == 0 {
            return None;
        }
        self.counters.count(Invariant::ExpiredConn);
        let slack = self.config.slack_ms;
        self.pools[px]
            .conns
            .iter()
            .filter(|(_, c)| c.view == View::Pooled)
            .filter_map(|(&conn, c)| {
                let expired_at = c.connected_at?.plus_ms(lifetime);
                let due = if c.pooled_since > expired_at {
                    c.pooled_since
                } else {
                    late_after(expired_at, slack)
                };
                Some((due, Owed::Retire { conn, expired_at }))
            })
            .min_by_key(|&(due, _)| due)
    }

    /// The idle connections above the floor: each needs a pending idle
    /// timeout. Late once fewer are idle for less than the timeout than
    /// there are above the floor.
    pub(super) fn owed_reaps(&mut self, px: usize, census: &Census) -> Option<(Time, Owed)> {
        let timeout = self.pool_config.idle_timeout_ms;
        let slot = &self.pools[px];
        let floor = slot.floor(self.pool_config.min_idle);
        if timeout == 0 || slot.closing() || census.pooled <= floor {
            return None;
        }
        self.counters.count(Invariant::IdleNotReaped);
        let excess = census.pooled - floor;
        let mut deadlines: Vec<Time> = slot
            .conns
            .values()
            .filter(|c| c.view == View::Pooled)
            .map(|c| c.pooled_since.plus_ms(timeout))
            .collect();
        // The excess-th latest deadline: once it has passed (plus the
        // slack), fewer than `excess` connections are still fresh.
        deadlines.sort_unstable_by(|a, b| b.cmp(a));
        let deadline = deadlines[excess - 1];
        Some((
            late_after(deadline, self.config.slack_ms),
            Owed::Reap {
                idle: census.pooled,
                floor,
            },
        ))
    }

    /// In the liveness phase, the floor refilled within the backoff plus
    /// the bound of falling short.
    pub(super) fn owed_floor(&mut self, px: usize, census: &Census) -> Option<(Time, Owed)> {
        let now = self.now;
        let min_idle = self.pool_config.min_idle;
        let wait = self.pool_config.reconnect_backoff_ms + self.config.liveness_bound_ms;
        let accepting = self.healed() && !self.server_full_since_heal;
        let slot = &mut self.pools[px];
        let floor = min_idle.min(slot.capacity.saturating_sub(census.borrowed));
        let have = census.pooled + census.opening;
        if !accepting || slot.closing() || have >= floor {
            slot.contract.floor_short_since = None;
            return None;
        }
        self.counters.count(Invariant::FloorNotRestored);
        let since = *slot.contract.floor_short_since.get_or_insert(now);
        Some((
            since.plus_ms(wait).plus_ms(1),
            Owed::Refill { since, have, floor },
        ))
    }

    /// When the liveness phase ended quiet: the footprint drained.
    pub(super) fn check_footprint(&mut self, px: usize) {
        self.counters.count(Invariant::Footprint);
        let slot = &self.pools[px];
        let census = slot.counted;
        let closed = slot.close.is_some_and(|c| c.completed_at.is_some());
        let drains = closed || self.pool_config.idle_timeout_ms > 0;
        let floor = if closed {
            0
        } else {
            slot.floor(self.pool_config.min_idle)
        };
        if drains && census.sessions > floor {
            let detail = format!(
                "P{px} still has {} server sessions after the liveness phase; its floor is {floor}",
                census.sessions
            );
            self.violate(Invariant::Footprint, detail);
        }
    }
}
