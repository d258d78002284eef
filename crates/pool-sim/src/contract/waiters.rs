//! Waiters: every acquire is answered, in time, in order, for a reason.
//!
//! Rules:
//! - **waiter-stalled**: a request with a deadline (its own, else the
//!   pool's `acquire_timeout_ms`) is granted or rejected by that deadline,
//!   plus the slack (a request back from a validation that found its
//!   connection dead after its deadline: at once). One without a deadline
//!   is held to the rules below.
//! - **idle-while-waiting**: no request waits while an idle connection sits
//!   in a pool that is open and within capacity (a lost wakeup between
//!   "check idle" and "join the wait list").
//! - **queue-jumped**: waiters are served in arrival order: at the end of a
//!   drain, no request granted in it is younger than one still waiting. Any
//!   idle connection can serve any waiter (a setting is applied on grant),
//!   so every older waiter could have been served.
//! - **unjustified-reject**: `Timeout` only at or after the request's
//!   deadline (never for one without); `Closed` only once Close began;
//!   `ConnectFailed` only for a connect failure the pool learned of in the
//!   same drain and has not yet passed on, and only to the oldest waiter.
//! - **starved**: with faults healed, a probe acquire is never rejected
//!   (except by Close, or while the server itself is full); and when the
//!   liveness phase ends, quiet or at its horizon, no request still waits on
//!   an open pool that has capacity.

use pool_core::{RejectReason, RequestId, Time};

use super::{Owed, late_after};
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, World};

impl<P: SimPool> World<P> {
    /// Why this reject, now?
    pub(super) fn check_reject(
        &mut self,
        px: u32,
        request: RequestId,
        reason: RejectReason,
        census: &Census,
    ) {
        if !self.check_rejected_is_waiting(px, request) {
            return;
        }
        self.counters.count(Invariant::UnjustifiedReject);
        let now = self.now;
        let slot = &self.pools[px as usize];
        let waiting = slot.waiting[&request];
        let unjustified = match reason {
            RejectReason::Timeout => match waiting.deadline {
                None => Some("with Timeout, but it has no deadline".to_owned()),
                Some(d) if now < d => Some(format!("with Timeout before its deadline {d}")),
                Some(_) => None,
            },
            RejectReason::Closed if !slot.closing() => {
                Some("with Closed while the pool is open".to_owned())
            }
            RejectReason::ConnectFailed if slot.contract.drain.failures == 0 => {
                Some("with ConnectFailed, but no connect failed".to_owned())
            }
            _ => None,
        };
        if let Some(why) = unjustified {
            return self.violate(
                Invariant::UnjustifiedReject,
                format!("P{px} rejects {request} {why}"),
            );
        }
        if reason == RejectReason::ConnectFailed {
            // The failure goes to the oldest waiter.
            self.counters.count(Invariant::ConnectErrorLost);
            let oldest = *slot.waiting.keys().next().expect("request is waiting");
            if oldest != request {
                let detail = format!(
                    "P{px} passes a connect failure to {request} while {oldest}, older, waits"
                );
                return self.violate(Invariant::ConnectErrorLost, detail);
            }
        }
        // A liveness probe must succeed once faults are healed.
        if self.clients[waiting.client as usize].probe {
            self.counters.count(Invariant::Starved);
            if reason != RejectReason::Closed && !self.server_full_since_heal {
                let detail = format!(
                    "probe {request} rejected ({reason:?}) with faults healed and {} of P{px}'s capacity {} free",
                    slot.capacity.saturating_sub(census.borrowed),
                    slot.capacity
                );
                self.violate(Invariant::Starved, detail);
            }
        }
    }

    /// At the end of a drain: nobody it granted overtook an older waiter.
    pub(super) fn check_grant_order(&mut self, px: u32) {
        let slot = &self.pools[px as usize];
        let Some(youngest) = slot.contract.drain.youngest_granted else {
            return;
        };
        self.counters.count(Invariant::QueueJumped);
        if let Some(&oldest) = slot.waiting.keys().next()
            && oldest < youngest
        {
            let detail = format!("P{px} granted {youngest} while {oldest}, older, still waits");
            self.violate(Invariant::QueueJumped, detail);
        }
    }

    pub(super) fn check_idle_while_waiting(&mut self, px: usize, census: &Census) {
        self.counters.count(Invariant::IdleWhileWaiting);
        let slot = &self.pools[px];
        if census.pooled > 0
            && census.held() <= slot.capacity
            && !slot.closing()
            && let Some(&request) = slot.waiting.keys().next()
        {
            let detail = format!(
                "{request} waits on P{px} while {} idle connection(s) sit in it ({} held, capacity {})",
                census.pooled,
                census.held(),
                slot.capacity
            );
            self.violate(Invariant::IdleWhileWaiting, detail);
        }
    }

    /// The earliest waiter deadline.
    pub(super) fn owed_answers(&mut self, px: usize) -> Option<(Time, Owed)> {
        let slack = self.config.slack_ms;
        self.pools[px]
            .waiting
            .iter()
            .filter_map(|(&request, w)| w.answer_by.map(|d| (d, request)))
            .min()
            .map(|(deadline, request)| {
                (
                    late_after(deadline, slack),
                    Owed::Answer { request, deadline },
                )
            })
    }

    /// When the liveness phase ends: nobody still waits on a pool that
    /// could serve them.
    pub(super) fn check_none_left_waiting(&mut self, px: usize, quiet: bool) {
        self.counters.count(Invariant::Starved);
        let slot = &self.pools[px];
        let Some(&request) = slot.waiting.keys().next() else {
            return;
        };
        if slot.closing() || slot.capacity == 0 || self.server_full_since_heal {
            return;
        }
        let how = if quiet {
            "at the end of the liveness phase"
        } else {
            "when the liveness phase reached its horizon"
        };
        let detail = format!(
            "{request} still waits on P{px} {how}, with capacity {} and the server accepting",
            slot.capacity
        );
        self.violate(Invariant::Starved, detail);
    }
}
