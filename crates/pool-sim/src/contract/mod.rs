//! The pool's contract: what a pool owes, by when, and why it may act,
//! checked from the world's own ground truth and the pool's config, never
//! from the pool's self-report alone.
//!
//! One file per family, each opening with its rules in plain words:
//!
//! | file | rules |
//! |---|---|
//! | `conns.rs` | the pool's view of every connection, its gauges and counters, and its own self-check, against ground truth |
//! | `waiters.rs` | every waiter answered by its deadline, in arrival order, never asleep beside an idle connection; every reject has its reason |
//! | `connects.rs` | enough connects for the waiters and no more (no lost wakeup, no storm); hung connects aborted; a failed connect reaches the oldest waiter at once |
//! | `capacity.rs` | never over capacity by the pool's own act; a shrink converges once its borrowers are back |
//! | `close.rs` | Close rejects, aborts and disconnects at once, completes as soon as nothing is held and by its deadline, never before |
//! | `floor.rs` | floor and timers: idle connections reaped after their timeout and only above the floor; no connection used past its lifetime; the floor refilled after an outage; the footprint drains |
//! | `settings.rs` | a grant carries the requested setting; a reopen keeps its connection's setting |
//! | `registry.rs` | one pool per key; GC spares a pool that is initializing or in use; an orphaned process lets go of its sessions |
//!
//! The checks run at three moments, and each rule at the earliest one that
//! can see it:
//! - **as a command is issued** ([`World::check_command`]): its reason,
//!   against the state just before it (why it may act);
//! - **at the end of a drain** ([`World::check_drain`]): what one input or
//!   one timer firing owed at once (a failed connect told, FIFO kept);
//! - **at the end of a step** (`World::check_state`): the state itself, and
//!   the earliest thing each pool owes with its deadline ([`Owed`]). A pool
//!   whose truth changed is checked in full and its next deadline worked
//!   out; every other pool only compares that deadline with the clock, so
//!   time passing costs one comparison per pool.
//!
//! Zero means disabled everywhere (a timer of 0 never fires, a `min_idle` of
//! 0 keeps no floor), and the rules hold the pool to it: a disconnect for a
//! disabled timer has no reason. A capacity of 0 means zero.

mod capacity;
mod close;
mod connects;
mod conns;
mod floor;
mod registry;
mod settings;
mod waiters;

use pool_core::{
    AbortReason, Command, ConnId, DisconnectReason, Input, RejectReason, RequestId, Setting, Stats,
    Time,
};

use crate::invariant::{Invariant, Violation};
use crate::pool::SimPool;
use crate::trace::Event;
use crate::world::{Census, Phase, PoolSlot, Service, World};

pub(crate) use conns::tally;

/// What the contract keeps per pool.
#[derive(Clone, Debug, Default)]
pub(crate) struct PoolContract {
    /// The world's own count of what the pool was told and did.
    pub(crate) ledger: Ledger,
    /// The drain in progress.
    pub(crate) drain: DrainNote,
    /// The earliest thing the pool owes: the first instant at which it is
    /// late, and what. Worked out when the pool's truth changes.
    pub(crate) owed: Option<(Time, Owed)>,
    /// In the liveness phase: since when the idle floor has been short.
    pub(crate) floor_short_since: Option<Time>,
    /// The reconnect backoff a connect failure started: until then the
    /// floor is not refilled (a success ends it early).
    pub(crate) backoff_until: Option<Time>,
}

/// What one drain (one input, or one timer firing) has done so far, for the
/// rules that say "at once".
#[derive(Clone, Debug, Default)]
pub(crate) struct DrainNote {
    /// Connect failures the pool learned of in this drain (a failed
    /// handshake, a close while connecting, its own connect timeout) and has
    /// not yet passed to a waiter.
    pub(crate) failures: u32,
    /// The youngest request granted in this drain.
    pub(crate) youngest_granted: Option<RequestId>,
    /// Connections retired at their lifetime in this drain and not yet
    /// replaced, with their settings: a refill stands in for one of them.
    pub(crate) retired: Vec<(ConnId, Option<Setting>)>,
}

/// What a transport signal meant to the pool, by ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    Connected,
    /// A connect failed: an error, or a close while connecting.
    ConnectFailed,
    /// An idle or borrowed connection closed.
    ClosedByServer,
    /// For a connection the pool is rid of, or not in the matching state.
    Stale,
}

/// The world's own counts of a pool's life, to hold its counters to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    opened: u64,
    reopened: u64,
    connected: u64,
    connect_failures: u64,
    aborted: u64,
    disconnected: u64,
    closed_by_server: u64,
    granted: u64,
    rejected: u64,
    timed_out: u64,
    cancelled: u64,
    tainted: u64,
    detached: u64,
    stale_events: u64,
    validations: u64,
    invalidated: u64,
    /// By reason, in the order of `DisconnectReason`, `AbortReason` and
    /// `RejectReason` (for scenario files' assertions).
    disconnected_by: [u64; 5],
    aborted_by: [u64; 3],
    rejected_by: [u64; 3],
}

impl Ledger {
    /// Every count, by the name scenario files assert it under.
    pub(crate) fn named(&self) -> [(&'static str, u64); 27] {
        let [dis_idle, dis_lifetime, dis_tainted, dis_over, dis_closing] = self.disconnected_by;
        let [ab_timeout, ab_over, ab_closing] = self.aborted_by;
        let [rej_timeout, rej_failed, rej_closed] = self.rejected_by;
        [
            ("opened", self.opened),
            ("reopened", self.reopened),
            ("connected", self.connected),
            ("connect_failures", self.connect_failures),
            ("aborted", self.aborted),
            ("aborted_connect_timeout", ab_timeout),
            ("aborted_over_capacity", ab_over),
            ("aborted_closing", ab_closing),
            ("disconnected", self.disconnected),
            ("disconnected_idle_timeout", dis_idle),
            ("disconnected_lifetime", dis_lifetime),
            ("disconnected_tainted", dis_tainted),
            ("disconnected_over_capacity", dis_over),
            ("disconnected_closing", dis_closing),
            ("closed_by_server", self.closed_by_server),
            ("granted", self.granted),
            ("rejected", self.rejected),
            ("rejected_timeout", rej_timeout),
            ("rejected_connect_failed", rej_failed),
            ("rejected_closed", rej_closed),
            ("cancelled", self.cancelled),
            ("tainted", self.tainted),
            ("detached", self.detached),
            ("stale", self.stale_events),
            ("timed_out", self.timed_out),
            ("validations", self.validations),
            ("invalidated", self.invalidated),
        ]
    }

    /// Each count beside the pool's own, by name.
    fn against(&self, s: &Stats) -> [(&'static str, u64, u64); 17] {
        [
            ("opened", self.opened, s.opened),
            ("reopened", self.reopened, s.reopened),
            ("connected", self.connected, s.connected),
            (
                "connect_failures",
                self.connect_failures,
                s.connect_failures,
            ),
            ("aborted", self.aborted, s.aborted),
            ("disconnected", self.disconnected, s.disconnected),
            (
                "closed_by_server",
                self.closed_by_server,
                s.closed_by_server,
            ),
            ("granted", self.granted, s.granted),
            ("rejected", self.rejected, s.rejected),
            ("timed_out", self.timed_out, s.timed_out),
            ("cancelled", self.cancelled, s.cancelled),
            ("tainted", self.tainted, s.tainted),
            ("detached", self.detached, s.detached),
            ("stale_events", self.stale_events, s.stale_events),
            ("validations", self.validations, s.validations),
            ("invalidated", self.invalidated, s.invalidated),
            // The world never names a connection the pool did not issue.
            ("unknown_events", 0, s.unknown_events),
        ]
    }
}

impl PoolContract {
    /// An input is on its way to the pool.
    pub(crate) fn note_input(&mut self, input: &Input) {
        let l = &mut self.ledger;
        match input {
            Input::Cancel { .. } => l.cancelled += 1,
            Input::Taint { .. } => l.tainted += 1,
            Input::Detach { .. } => l.detached += 1,
            Input::Validated { ok: false, .. } => l.invalidated += 1,
            _ => {}
        }
    }

    /// A connect failed at `now`: the backoff starts, unless one runs.
    fn failed(&mut self, now: Time, backoff_ms: u64) {
        self.drain.failures += 1;
        if backoff_ms > 0 && self.backoff_until.is_none_or(|until| until <= now) {
            self.backoff_until = Some(now.plus_ms(backoff_ms));
        }
    }

    /// A transport signal is on its way to the pool.
    pub(crate) fn note_heard(&mut self, heard: Heard, now: Time, backoff_ms: u64) {
        let l = &mut self.ledger;
        match heard {
            Heard::Connected => {
                l.connected += 1;
                self.backoff_until = None;
            }
            Heard::ConnectFailed => {
                l.connect_failures += 1;
                self.failed(now, backoff_ms);
            }
            Heard::ClosedByServer => l.closed_by_server += 1,
            Heard::Stale => l.stale_events += 1,
        }
    }

    /// The pool issued a command (already judged).
    pub(crate) fn note_command(&mut self, command: &Command, now: Time, backoff_ms: u64) {
        let l = &mut self.ledger;
        match *command {
            Command::Open { replaces, .. } => {
                l.opened += 1;
                l.reopened += u64::from(replaces.is_some());
            }
            Command::Abort { reason, .. } => {
                l.aborted += 1;
                l.aborted_by[match reason {
                    AbortReason::ConnectTimeout => 0,
                    AbortReason::OverCapacity => 1,
                    AbortReason::Closing => 2,
                }] += 1;
                if reason == AbortReason::ConnectTimeout {
                    l.connect_failures += 1;
                    self.failed(now, backoff_ms);
                }
            }
            Command::Disconnect { reason, .. } => {
                l.disconnected += 1;
                l.disconnected_by[match reason {
                    DisconnectReason::IdleTimeout => 0,
                    DisconnectReason::Lifetime => 1,
                    DisconnectReason::Tainted => 2,
                    DisconnectReason::OverCapacity => 3,
                    DisconnectReason::Closing => 4,
                }] += 1;
            }
            Command::Grant {
                request, validate, ..
            } => {
                l.granted += 1;
                l.validations += u64::from(validate);
                let youngest = &mut self.drain.youngest_granted;
                *youngest = Some(youngest.map_or(request, |r| r.max(request)));
            }
            Command::Reject { reason, .. } => {
                l.rejected += 1;
                l.rejected_by[match reason {
                    RejectReason::Timeout => 0,
                    RejectReason::ConnectFailed => 1,
                    RejectReason::Closed => 2,
                }] += 1;
                l.timed_out += u64::from(reason == RejectReason::Timeout);
                if reason == RejectReason::ConnectFailed {
                    self.drain.failures = self.drain.failures.saturating_sub(1);
                }
            }
            Command::CloseComplete { .. } => {}
        }
    }
}

/// Something a pool owes, with what is needed to say so.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Owed {
    /// Answer `request` by `deadline` (waiter-stalled).
    Answer { request: RequestId, deadline: Time },
    /// Abort the connect of `conn`, due at `deadline` (connect-stalled).
    Abort { conn: ConnId, deadline: Time },
    /// Complete Close by `deadline` (close-stalled).
    CompleteClose { deadline: Time },
    /// Retire `conn`, expired at `expired_at` (expired-conn).
    Retire { conn: ConnId, expired_at: Time },
    /// Reap idle connections down to `floor` (idle-not-reaped).
    Reap { idle: usize, floor: usize },
    /// Fit the capacity, every borrower of the shrink back since `since`
    /// (capacity-stalled).
    Shrink { since: Time },
    /// Refill the floor, short since `since` (floor-not-restored).
    Refill {
        since: Time,
        have: usize,
        floor: usize,
    },
}

impl Owed {
    fn invariant(self) -> Invariant {
        match self {
            Owed::Answer { .. } => Invariant::WaiterStalled,
            Owed::Abort { .. } => Invariant::ConnectStalled,
            Owed::CompleteClose { .. } => Invariant::CloseStalled,
            Owed::Retire { .. } => Invariant::ExpiredConn,
            Owed::Reap { .. } => Invariant::IdleNotReaped,
            Owed::Shrink { .. } => Invariant::CapacityStalled,
            Owed::Refill { .. } => Invariant::FloorNotRestored,
        }
    }

    fn describe(self, px: usize, capacity: usize) -> String {
        match self {
            Owed::Answer { request, deadline } => {
                format!("{request} still waits on P{px}; its deadline was {deadline}")
            }
            Owed::Abort { conn, deadline } => format!(
                "P{px}'s connect of {conn} is still pending; its connect timeout was due at {deadline}"
            ),
            Owed::CompleteClose { deadline } => {
                format!("P{px}'s close is not complete; its deadline was {deadline}")
            }
            Owed::Retire { conn, expired_at } => format!(
                "P{px} keeps {conn} idle past its max lifetime, which ended at {expired_at}"
            ),
            Owed::Reap { idle, floor } => format!(
                "P{px} keeps {idle} idle connection(s) with a floor of {floor}, more than were idle for less than the idle timeout"
            ),
            Owed::Shrink { since } => format!(
                "P{px} still holds more than its capacity {capacity}, though every borrower since the shrink was back at {since}"
            ),
            Owed::Refill { since, have, floor } => format!(
                "P{px}'s idle floor is {floor} but it has {have} idle or connecting, short since {since} with the server accepting"
            ),
        }
    }
}

/// The earlier of two things owed.
fn earliest(a: Option<(Time, Owed)>, b: Option<(Time, Owed)>) -> Option<(Time, Owed)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The first instant at which a deadline, plus `slack`, is missed.
fn late_after(deadline: Time, slack: u64) -> Time {
    deadline.plus_ms(slack).plus_ms(1)
}

impl<P: SimPool> World<P> {
    pub(crate) fn violate(&mut self, invariant: Invariant, detail: String) {
        if self.violation.is_some() {
            return;
        }
        self.trace.push(self.now, Event::Violation(invariant));
        self.violation = Some(Violation {
            invariant,
            at: self.now,
            detail,
        });
    }

    /// Judge a command against the state just before it: why may the pool
    /// do this now? The first rule broken is reported.
    pub(crate) fn check_command(&mut self, px: u32, command: &Command) {
        let census = self.pools[px as usize].census();
        match *command {
            Command::Open {
                conn,
                setting,
                replaces,
            } => {
                self.check_open_after_close(px, conn);
                self.check_open_capacity(px, conn, &census);
                self.check_reopen_setting(px, conn, setting, replaces, &census);
                self.check_open_needed(px, conn, &census);
                self.check_new_id(px, conn);
            }
            Command::Abort { conn, reason } => {
                if self.check_closable(px, conn, command) {
                    self.check_abort_reason(px, conn, reason, &census);
                }
            }
            Command::Disconnect { conn, reason } => {
                if self.check_closable(px, conn, command) {
                    self.check_disconnect_reason(px, conn, reason, &census);
                }
            }
            Command::Grant {
                request,
                conn,
                setting,
                apply_setting,
                validate,
            } => {
                self.check_grant_target(px, request, conn);
                self.check_grant_validated(px, request, conn, validate);
                self.check_grant_lifetime(px, request, conn);
                self.check_grant_setting(px, request, conn, setting, apply_setting);
            }
            Command::Reject { request, reason } => {
                self.check_reject(px, request, reason, &census);
            }
            Command::CloseComplete { leaked } => {
                self.check_close_complete(px, leaked, &census);
            }
        }
    }

    /// Why abort this connect?
    fn check_abort_reason(&mut self, px: u32, conn: ConnId, reason: AbortReason, census: &Census) {
        self.check_abort(px, conn, reason);
        match reason {
            AbortReason::ConnectTimeout => {} // checked with the abort itself
            AbortReason::OverCapacity => self.check_over_capacity_reason(px, conn, census),
            AbortReason::Closing => self.check_closing_reason(px, conn),
        }
    }

    /// Why disconnect this connection?
    fn check_disconnect_reason(
        &mut self,
        px: u32,
        conn: ConnId,
        reason: DisconnectReason,
        census: &Census,
    ) {
        self.counters.count(Invariant::UnjustifiedDisconnect);
        match reason {
            DisconnectReason::IdleTimeout => self.check_idle_timeout_reason(px, conn, census),
            DisconnectReason::Lifetime => {
                self.check_lifetime_reason(px, conn);
                let slot = &mut self.pools[px as usize];
                if let Some(truth) = slot.conns.get(&conn) {
                    slot.contract.drain.retired.push((conn, truth.setting));
                }
            }
            DisconnectReason::Tainted => self.check_tainted_reason(px, conn),
            DisconnectReason::OverCapacity => self.check_over_capacity_reason(px, conn, census),
            DisconnectReason::Closing => self.check_closing_reason(px, conn),
        }
    }

    /// The end of a drain: what one input or timer firing owed at once.
    pub(crate) fn check_drain(&mut self, px: u32) {
        self.check_failures_told(px);
        self.check_grant_order(px);
        self.pools[px as usize].contract.drain = DrainNote::default();
    }

    /// The checks of the end of a step, for every pool in the world: pools
    /// whose truth changed get every check and their next deadline worked
    /// out; every pool's deadline is compared with the clock; then the
    /// orphaned processes.
    pub(crate) fn check_state(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &px in &dirty {
            if self.violation.is_some() {
                break;
            }
            if self.pools[px as usize].service != Service::Exited {
                self.check_pool(px as usize);
            }
        }
        dirty.clear();
        self.dirty = dirty;
        let now = self.now;
        for px in 0..self.pools.len() {
            if self.violation.is_some() {
                return;
            }
            let slot = &self.pools[px];
            if slot.service == Service::Exited {
                continue;
            }
            self.counters.count(Invariant::WaiterStalled);
            if let Some((at, owed)) = slot.contract.owed
                && now >= at
            {
                let detail = owed.describe(px, slot.capacity);
                self.violate(owed.invariant(), detail);
            }
        }
        if self.violation.is_none() {
            self.check_orphans();
        }
    }

    /// Every state check of one pool, then what it owes next.
    fn check_pool(&mut self, px: usize) {
        let census = self.check_conns(px);
        self.pools[px].counted = census;
        self.check_stats(px, &census);
        self.check_idle_while_waiting(px, &census);
        self.check_waiters_covered(px, &census);
        self.check_close_progress(px, &census);
        self.check_self(px);
        if self.violation.is_some() {
            return;
        }
        let owed = [
            self.owed_answers(px),
            self.owed_aborts(px),
            self.owed_close(px),
            self.owed_retirements(px),
            self.owed_reaps(px, &census),
            self.owed_shrink(px, &census),
            self.owed_floor(px, &census),
        ]
        .into_iter()
        .fold(None, earliest);
        self.pools[px].contract.owed = owed;
    }

    /// Whether the run is in its healed phase.
    fn healed(&self) -> bool {
        matches!(self.phase, Phase::Liveness { .. })
    }

    /// The end of the run: the checks that need the liveness phase to be
    /// over (requests left waiting, the idle footprint), as far as the way
    /// the phase ended lets them judge (see [`PhaseEnd`]).
    pub fn finish(&mut self, end: PhaseEnd) {
        if self.violation.is_some() {
            return;
        }
        self.dirty = (0..self.pools.len() as u32).collect();
        self.check_state();
        if self.violation.is_some() || !self.healed() {
            return;
        }
        if end == PhaseEnd::StepLimit {
            return;
        }
        let quiet = end == PhaseEnd::Quiet;
        for px in 0..self.pools.len() {
            if self.pools[px].service == Service::Exited {
                continue;
            }
            self.check_none_left_waiting(px, quiet);
            if quiet {
                self.check_footprint(px);
            }
        }
    }
}

/// How the liveness phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseEnd {
    /// The world went quiet and the phase ran past every bound: a request
    /// still waiting is starvation, and the idle footprint is judged.
    Quiet,
    /// The world never went quiet, and the phase ran at least one full round
    /// of the pool's timeouts past the heal: a request still waiting is
    /// starvation; the footprint is not judged (work was still going on).
    Horizon,
    /// The step budget ran out within that first round: nothing owed at the
    /// end is overdue yet, so neither is judged. (Owed deadlines met or
    /// missed along the way were judged as they fell due.)
    StepLimit,
}

impl<P> PoolSlot<P> {
    /// The idle floor this pool keeps: `min_idle`, capped by the capacity.
    pub(crate) fn floor(&self, min_idle: usize) -> usize {
        min_idle.min(self.capacity)
    }

    /// Whether `Close` has begun for this pool.
    pub(crate) fn closing(&self) -> bool {
        self.close.is_some()
    }
}
