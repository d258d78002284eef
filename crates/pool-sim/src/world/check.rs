//! The checks that compare states: every connection the pool reports
//! against ground truth, the pool's gauges, and the liveness bounds. (Checks
//! that can only be made as a command is issued live with the commands.)

use pool_core::{ConnId, ConnState};

use super::{Census, ConnTruth, Phase, Qualified, Service, Session, ShrinkWatch, View, World};
use crate::invariant::{Invariant, Violation};
use crate::pool::SimPool;
use crate::trace::Event;

impl<P: SimPool> World<P> {
    pub(super) fn violate(&mut self, invariant: Invariant, detail: String) {
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

    /// The checks that compare states, for every pool in the world: each
    /// connection the pool reports against ground truth, the gauges, and the
    /// liveness bounds; then the orphaned processes.
    /// Pools that changed get every check; every pool gets the liveness
    /// bounds (time moves for all of them).
    pub(super) fn check_state(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &px in &dirty {
            if self.violation.is_some() {
                return;
            }
            if self.pools[px as usize].service != Service::Exited {
                self.check_pool(px as usize);
            }
        }
        dirty.clear();
        self.dirty = dirty;
        for px in 0..self.pools.len() {
            if self.violation.is_some() {
                return;
            }
            let slot = &self.pools[px];
            if slot.service != Service::Exited {
                let census = slot.counted;
                self.check_liveness(px, &census);
            }
        }
        if self.violation.is_none() {
            self.check_orphans();
        }
    }

    fn check_pool(&mut self, px: usize) {
        let census = self.check_conns(px);
        self.pools[px].counted = census;
        if self.violation.is_some() {
            return;
        }
        self.check_gauges(px, &census);
        if self.violation.is_some() {
            return;
        }
        self.counters.count(Invariant::IdleWhileWaiting);
        let slot = &self.pools[px];
        if census.pooled > 0
            && census.held() <= slot.capacity
            && slot.close.is_none()
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

    /// Merge the pool's connections with ground truth, by id.
    fn check_conns(&mut self, px: usize) -> Census {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let slot = &self.pools[px];
        slot.pool.conns(&mut scratch);
        scratch.sort_unstable();
        let mut census = Census::default();
        let mut problem: Option<(Invariant, String)> = None;
        let mut reported = scratch.iter().peekable();
        let pool = px as u32;
        for (&id, truth) in &slot.conns {
            tally(&mut census, truth);
            // Connections the pool reports that the truth no longer has.
            while let Some(&&(pid, pstate)) = reported.peek() {
                if pid >= id {
                    break;
                }
                reported.next();
                problem = problem.or_else(|| unknown_conn(pool, pid, pstate));
            }
            let state = match reported.peek() {
                Some(&&(pid, pstate)) if pid == id => {
                    reported.next();
                    Some(pstate)
                }
                _ => None,
            };
            problem = problem.or_else(|| compare(pool, id, state, truth));
        }
        for &(pid, pstate) in reported {
            problem = problem.or_else(|| unknown_conn(pool, pid, pstate));
        }
        self.scratch = scratch;
        self.counters.count(Invariant::GhostIdle);
        self.counters.count(Invariant::LostConnection);
        if let Some((invariant, detail)) = problem {
            self.violate(invariant, detail);
        }
        census
    }

    fn check_gauges(&mut self, px: usize, census: &Census) {
        self.counters.count(Invariant::Accounting);
        let slot = &self.pools[px];
        let stats = slot.pool.gauges();
        let truth = [
            ("opening", census.opening, stats.opening),
            ("idle", census.pooled, stats.idle),
            ("borrowed", census.borrowed, stats.borrowed),
            ("held", census.held(), stats.held),
            ("waiters", slot.waiting.len(), stats.waiters),
        ];
        if let Some((name, want, got)) = truth.into_iter().find(|(_, want, got)| want != got) {
            self.violate(
                Invariant::Accounting,
                format!("P{px} reports {name}={got}, ground truth is {want}"),
            );
        }
    }

    fn check_liveness(&mut self, px: usize, census: &Census) {
        let bound = self.config.liveness_bound_ms;
        let now = self.now;

        self.counters.count(Invariant::WaiterStalled);
        let slot = &mut self.pools[px];
        if let Some(&(deadline, request)) = slot.deadlines.first()
            && now > deadline.plus_ms(bound)
        {
            let detail = format!("{request} still waits on P{px}; its deadline was {deadline}");
            return self.violate(Invariant::WaiterStalled, detail);
        }

        if let Some(close) = &mut slot.close {
            self.counters.count(Invariant::CloseStalled);
            if close.completed_at.is_none() {
                if census.held() == 0 {
                    close.idle_since.get_or_insert(now);
                } else {
                    close.idle_since = None;
                }
                let late = close.deadline.is_some_and(|d| now > d.plus_ms(bound));
                let idle_too_long = close.idle_since.is_some_and(|t| now > t.plus_ms(bound));
                if late || idle_too_long {
                    let detail = match close.deadline {
                        Some(d) if late => format!(
                            "P{px}'s close issued at {} is not complete; its deadline was {d}",
                            close.issued_at
                        ),
                        _ => format!(
                            "P{px}'s close issued at {} is not complete though nothing is held",
                            close.issued_at
                        ),
                    };
                    return self.violate(Invariant::CloseStalled, detail);
                }
            }
            return;
        }

        self.counters.count(Invariant::CapacityStalled);
        if census.held() > slot.capacity {
            let borrowed = &slot.conns;
            let watch = slot.shrink.get_or_insert_with(|| ShrinkWatch {
                outstanding: borrowed
                    .iter()
                    .filter(|(_, c)| matches!(c.view, View::Borrowed { .. }))
                    .map(|(&id, _)| id)
                    .collect(),
                all_back_at: None,
            });
            if watch.outstanding.is_empty() {
                let since = *watch.all_back_at.get_or_insert(now);
                if now > since.plus_ms(bound) {
                    let detail = format!(
                        "P{px} holds {} with capacity {} although every borrower since the shrink has returned",
                        census.held(),
                        slot.capacity
                    );
                    self.violate(Invariant::CapacityStalled, detail);
                }
            }
        } else {
            slot.shrink = None;
        }
    }

    /// An orphaned process must be gone, its sessions with it, within one
    /// watchdog interval (plus the bound).
    fn check_orphans(&mut self) {
        let grace = self.config.watchdog_interval_ms + self.config.liveness_bound_ms;
        for p in &self.processes {
            let Some(orphaned_at) = p.orphaned_at else {
                continue;
            };
            if p.exited_at.is_some() {
                continue;
            }
            self.counters.count(Invariant::Footprint);
            let sessions = self.pools[p.pool as usize].counted.sessions;
            if self.now > orphaned_at.plus_ms(grace) && sessions > 0 {
                let detail = format!(
                    "process P{} was orphaned at {orphaned_at} and still holds {sessions} server session(s)",
                    p.pool
                );
                return self.violate(Invariant::Footprint, detail);
            }
        }
    }

    /// The end of the run: the checks that need the liveness phase to be
    /// over (requests left waiting, the idle footprint). `quiet`: the phase
    /// went quiet and ran past every bound; if it was cut at its horizon
    /// instead, only the continuous checks apply.
    pub fn finish(&mut self, quiet: bool) {
        if self.violation.is_some() {
            return;
        }
        self.dirty = (0..self.pools.len() as u32).collect();
        self.check_state();
        if self.violation.is_some() || !quiet || !matches!(self.phase, Phase::Liveness { .. }) {
            return;
        }
        // check_state just refreshed every pool's census: no recount.
        let open_sessions = self.open_session_count();
        let limit = self.config.role_conn_limit as usize;
        for px in 0..self.pools.len() {
            let slot = &self.pools[px];
            if slot.service == Service::Exited {
                continue;
            }
            let census = slot.counted;
            // Faults are healed and capacity is free, yet requests still wait.
            self.counters.count(Invariant::Starved);
            let room = limit == 0 || open_sessions < limit;
            if let Some(&request) = slot.waiting.keys().next()
                && slot.close.is_none()
                && census.borrowed < slot.capacity
                && room
            {
                let detail = format!(
                    "{request} still waits on P{px} at the end of the liveness phase with {} of capacity {} borrowed",
                    census.borrowed, slot.capacity
                );
                return self.violate(Invariant::Starved, detail);
            }
            self.counters.count(Invariant::Footprint);
            let closed = slot.close.is_some_and(|c| c.completed_at.is_some());
            let drains = closed || self.pool_config.idle_timeout_ms > 0;
            let floor = if closed {
                0
            } else {
                self.pool_config.min_idle.min(slot.capacity)
            };
            if drains && census.sessions > floor {
                let detail = format!(
                    "P{px} still has {} server sessions after the liveness phase; its floor is {floor}",
                    census.sessions
                );
                return self.violate(Invariant::Footprint, detail);
            }
        }
    }
}

pub(super) fn tally(census: &mut Census, c: &ConnTruth) {
    match c.view {
        View::Opening => census.opening += 1,
        View::Pooled => census.pooled += 1,
        View::Borrowed { .. } => census.borrowed += 1,
        View::Detached { .. } | View::Condemned => {}
    }
    let live = matches!(c.session, Session::Connecting | Session::Open);
    if live && !matches!(c.view, View::Detached { .. }) {
        census.sessions += 1;
    }
    if c.session == Session::Open {
        census.open_sessions += 1;
    }
}

/// The pool reports a connection the truth does not have.
fn unknown_conn(pool: u32, conn: ConnId, state: ConnState) -> Option<(Invariant, String)> {
    let conn = Qualified(pool, conn);
    Some(match state {
        ConnState::Idle => (
            Invariant::GhostIdle,
            format!("the pool holds {conn} as idle, but it is dead or was never connected"),
        ),
        _ => (
            Invariant::Accounting,
            format!("the pool tracks {conn} as {state:?}, but it has let go of it"),
        ),
    })
}

/// The pool's state for a connection against its ground truth.
fn compare(
    pool: u32,
    conn: ConnId,
    state: Option<ConnState>,
    truth: &ConnTruth,
) -> Option<(Invariant, String)> {
    use ConnState as S;
    let conn = Qualified(pool, conn);
    let bad = |invariant: Invariant, what: &str| {
        Some((
            invariant,
            format!("{conn}: the pool has it {state:?}, {what}"),
        ))
    };
    match (state, truth.view) {
        (Some(S::Opening), View::Opening)
        | (Some(S::Idle), View::Pooled)
        | (Some(S::Borrowed), View::Borrowed { .. })
        | (None, View::Detached { .. }) => None,
        (Some(S::Idle), View::Opening) => {
            bad(Invariant::GhostIdle, "but it was never reported connected")
        }
        (Some(S::Idle), View::Condemned) => bad(Invariant::GhostIdle, "but it was returned broken"),
        (None, View::Condemned) if truth.session == Session::Closed => None,
        (None, View::Condemned) => bad(
            Invariant::LostConnection,
            "but it was returned broken and never disconnected: its session stays open",
        ),
        (None, view) => bad(
            Invariant::LostConnection,
            &format!("but by the protocol it is {view:?}"),
        ),
        (Some(_), View::Detached { client }) => bad(
            Invariant::Accounting,
            &format!("but client {client} detached it: a slot held for nothing"),
        ),
        (Some(_), view) => bad(
            Invariant::Accounting,
            &format!("but by the protocol it is {view:?}"),
        ),
    }
}
