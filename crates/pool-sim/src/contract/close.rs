//! Close: everything stops at once, and the pool reports done exactly when
//! it is.
//!
//! Rules:
//! - **open-after-close**: no `Open` once Close began (a reopen, a refill, a
//!   `SetCapacity` that revives the pool); Close never completes while a
//!   connect is in flight (a connect outlives Close).
//! - **close-incomplete**: at the end of every step after Close began, no
//!   request waits (every waiter was rejected with `Closed`, and so is every
//!   later acquire), no connect is in flight (each was aborted at once), and
//!   no connection is idle (each idle one was disconnected at once, and each
//!   returned one is disconnected as it comes back, also after completion).
//! - **close-early**: `CloseComplete` comes before its deadline only once
//!   nothing is held; and then its `leaked` count is what is still borrowed
//!   (**accounting**).
//! - **close-stalled**: Close completes by its deadline (plus the slack),
//!   and at the latest at the end of the step in which nothing is held any
//!   more.
//! - **accounting**: the pool reports its lifecycle (open, closing, closed)
//!   as the truth has it.
//! - **unjustified-disconnect**: `Closing` (a disconnect or an abort) only
//!   once Close began.

use pool_core::{ConnId, Lifecycle, Time};

use super::{Owed, late_after};
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, Qualified, View, World};

impl<P: SimPool> World<P> {
    pub(super) fn check_open_after_close(&mut self, px: u32, conn: ConnId) {
        self.counters.count(Invariant::OpenAfterClose);
        if let Some(close) = self.pools[px as usize].close {
            let detail = format!(
                "P{px} opens {conn} after close began at {}",
                close.issued_at
            );
            self.violate(Invariant::OpenAfterClose, detail);
        }
    }

    /// `Closing` only once Close began.
    pub(super) fn check_closing_reason(&mut self, px: u32, conn: ConnId) {
        if !self.pools[px as usize].closing() {
            let detail = format!(
                "P{px} closes {} for Closing, but nobody closed the pool",
                Qualified(px, conn)
            );
            self.violate(Invariant::UnjustifiedDisconnect, detail);
        }
    }

    pub(super) fn check_close_complete(&mut self, px: u32, leaked: usize, census: &Census) {
        self.counters.count(Invariant::Accounting);
        let now = self.now;
        let slot = &self.pools[px as usize];
        let Some(close) = slot.close.filter(|c| c.completed_at.is_none()) else {
            let detail = format!("P{px} reports close-complete without a close in progress");
            return self.violate(Invariant::Accounting, detail);
        };
        self.counters.count(Invariant::OpenAfterClose);
        let opening = slot
            .conns
            .iter()
            .find(|(_, c)| c.view == View::Opening)
            .map(|(&id, _)| id);
        if let Some(conn) = opening {
            let detail = format!(
                "P{px} completed close while {conn} is still connecting: a connect outlives Close"
            );
            return self.violate(Invariant::OpenAfterClose, detail);
        }
        self.counters.count(Invariant::CloseEarly);
        let before_deadline = close.deadline.is_none_or(|d| now < d);
        if before_deadline && census.held() > 0 {
            let until = match close.deadline {
                Some(d) => format!("before its deadline {d}"),
                None => "without a deadline".to_owned(),
            };
            let detail = format!(
                "P{px} completed close {until} while it still holds {} ({} borrowed)",
                census.held(),
                census.borrowed
            );
            return self.violate(Invariant::CloseEarly, detail);
        }
        if leaked != census.borrowed {
            let detail = format!(
                "P{px} reports {leaked} leaked at close-complete, but {} are borrowed",
                census.borrowed
            );
            self.violate(Invariant::Accounting, detail);
        }
    }

    /// At the end of a step: Close's immediate work is done, and it is
    /// complete if nothing is held.
    pub(super) fn check_close_progress(&mut self, px: usize, census: &Census) {
        self.check_close_progress_of(px, census);
        // The pool says where it is in its life as the truth has it.
        let slot = &self.pools[px];
        let lifecycle = match slot.close {
            None => Lifecycle::Open,
            Some(c) if c.completed_at.is_none() => Lifecycle::Closing,
            Some(_) => Lifecycle::Closed,
        };
        let reported = slot.pool.stats().lifecycle;
        if reported != lifecycle {
            let detail =
                format!("P{px} reports itself {reported:?}, ground truth is {lifecycle:?}");
            self.violate(Invariant::Accounting, detail);
        }
    }

    fn check_close_progress_of(&mut self, px: usize, census: &Census) {
        let slot = &self.pools[px];
        let Some(close) = slot.close else {
            return;
        };
        self.counters.count(Invariant::CloseIncomplete);
        let left = if let Some(&request) = slot.waiting.keys().next() {
            Some(format!("{request} still waits"))
        } else if census.opening > 0 {
            Some(format!("{} connect(s) still in flight", census.opening))
        } else if census.pooled > 0 {
            Some(format!("{} connection(s) still idle", census.pooled))
        } else {
            None
        };
        if let Some(left) = left {
            let detail = format!("P{px}'s close began at {}, yet {left}", close.issued_at);
            return self.violate(Invariant::CloseIncomplete, detail);
        }
        self.counters.count(Invariant::CloseStalled);
        if close.completed_at.is_none() && census.held() == 0 {
            let detail = format!(
                "P{px}'s close issued at {} is not complete though nothing is held",
                close.issued_at
            );
            self.violate(Invariant::CloseStalled, detail);
        }
    }

    /// The close deadline, while Close is in progress.
    pub(super) fn owed_close(&mut self, px: usize) -> Option<(Time, Owed)> {
        let close = self.pools[px].close?;
        if close.completed_at.is_some() {
            return None;
        }
        let deadline = close.deadline?;
        Some((
            late_after(deadline, self.config.slack_ms),
            Owed::CompleteClose { deadline },
        ))
    }
}
