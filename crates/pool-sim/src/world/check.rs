//! The checks that compare states: every connection the pool reports
//! against ground truth, the pool's gauges, and the liveness bounds. (Checks
//! that can only be made as a command is issued live with the commands.)

use pool_core::{ConnId, ConnState};

use super::{Census, ConnTruth, Session, ShrinkWatch, View, World};
use crate::invariant::{Invariant, Violation};
use crate::pool::SimPool;
use crate::trace::Event;

impl<P: SimPool> World<P> {
    pub(super) fn count(&mut self, invariant: Invariant) {
        self.counters.checks[invariant.index()] += 1;
    }

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

    /// The checks that compare states: each connection the pool reports
    /// against ground truth, the gauges, and the liveness bounds.
    pub(super) fn check_state(&mut self) {
        if self.violation.is_some() {
            return;
        }
        let census = self.check_conns();
        if self.violation.is_some() {
            return;
        }
        self.check_gauges(&census);
        if self.violation.is_some() {
            return;
        }
        self.count(Invariant::IdleWhileWaiting);
        if census.pooled > 0
            && census.held() <= self.capacity
            && self.close.is_none()
            && let Some(&request) = self.waiting.keys().next()
        {
            let detail = format!(
                "{request} waits while {} idle connection(s) sit in the pool ({} held, capacity {})",
                census.pooled,
                census.held(),
                self.capacity
            );
            return self.violate(Invariant::IdleWhileWaiting, detail);
        }
        self.check_liveness(&census);
    }

    /// Merge the pool's connections with ground truth, by id.
    fn check_conns(&mut self) -> Census {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.pool.conns(&mut scratch);
        scratch.sort_unstable();
        self.count(Invariant::GhostIdle);
        self.count(Invariant::LostConnection);
        let mut census = Census::default();
        let mut problem: Option<(Invariant, String)> = None;
        let mut reported = scratch.iter().peekable();
        for (&id, truth) in &self.conns {
            tally(&mut census, truth);
            // Connections the pool reports that the truth no longer has.
            while let Some(&&(pid, pstate)) = reported.peek() {
                if pid >= id {
                    break;
                }
                reported.next();
                problem = problem.or_else(|| unknown_conn(pid, pstate));
            }
            let state = match reported.peek() {
                Some(&&(pid, pstate)) if pid == id => {
                    reported.next();
                    Some(pstate)
                }
                _ => None,
            };
            problem = problem.or_else(|| compare(id, state, truth));
        }
        for &(pid, pstate) in reported {
            problem = problem.or_else(|| unknown_conn(pid, pstate));
        }
        self.scratch = scratch;
        if let Some((invariant, detail)) = problem {
            self.violate(invariant, detail);
        }
        census
    }

    fn check_gauges(&mut self, census: &Census) {
        self.count(Invariant::Accounting);
        let stats = self.pool.stats();
        let truth = [
            ("opening", census.opening, stats.opening),
            ("idle", census.pooled, stats.idle),
            ("borrowed", census.borrowed, stats.borrowed),
            ("held", census.held(), stats.held),
            ("waiters", self.waiting.len(), stats.waiters),
        ];
        if let Some((name, want, got)) = truth.into_iter().find(|(_, want, got)| want != got) {
            self.violate(
                Invariant::Accounting,
                format!("the pool reports {name}={got}, ground truth is {want}"),
            );
        }
    }

    fn check_liveness(&mut self, census: &Census) {
        let bound = self.config.liveness_bound_ms;
        let now = self.now;

        self.count(Invariant::WaiterStalled);
        if let Some(&(deadline, request)) = self.deadlines.first()
            && now > deadline.plus_ms(bound)
        {
            return self.violate(
                Invariant::WaiterStalled,
                format!("{request} still waits; its deadline was {deadline}"),
            );
        }

        if let Some(close) = &mut self.close {
            self.counters.checks[Invariant::CloseStalled.index()] += 1;
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
                            "close issued at {} is not complete; its deadline was {d}",
                            close.issued_at
                        ),
                        _ => format!(
                            "close issued at {} is not complete though nothing is held",
                            close.issued_at
                        ),
                    };
                    return self.violate(Invariant::CloseStalled, detail);
                }
            }
            return;
        }

        self.count(Invariant::CapacityStalled);
        if census.held() > self.capacity {
            let borrowed = &self.conns;
            let watch = self.shrink.get_or_insert_with(|| ShrinkWatch {
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
                    self.violate(
                        Invariant::CapacityStalled,
                        format!(
                            "{} held with capacity {} although every borrower since the shrink has returned",
                            census.held(),
                            self.capacity
                        ),
                    );
                }
            }
        } else {
            self.shrink = None;
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
fn unknown_conn(conn: ConnId, state: ConnState) -> Option<(Invariant, String)> {
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
    conn: ConnId,
    state: Option<ConnState>,
    truth: &ConnTruth,
) -> Option<(Invariant, String)> {
    use ConnState as S;
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
