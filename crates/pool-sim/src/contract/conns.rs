//! Connections: the pool's view of each one against ground truth.
//!
//! Rules:
//! - **ghost-idle**: the pool never holds as idle, nor grants, a connection
//!   it was told is dead (closed, failed, returned tainted) or was never
//!   told is connected.
//! - **double-grant**: a connection is never granted while a client has it
//!   (borrowed or detached).
//! - **lost-connection**: the pool keeps track of every connection it holds
//!   by the protocol (opening, idle, borrowed, tainted and not yet
//!   disconnected), and grants only to a request that is waiting.
//! - **busy-disconnected**: the pool never disconnects or aborts a
//!   connection a client is using.
//! - **accounting**: the pool's per-connection states, gauges (opening,
//!   idle, borrowed, held, waiters) and counters (opened, connected,
//!   granted, rejected by reason, cancelled, tainted, detached, stale events
//!   ...) agree with the world's own count; it reuses no id; it answers only
//!   waiting requests; and it accepts every input that is valid by ground
//!   truth. A connection returned tainted is disconnected as `Tainted`, and
//!   only such a one (**unjustified-disconnect** otherwise).
//! - **unvalidated-grant**: with `validate_idle_ms` set, a connection idle
//!   at least that long is not granted without validation if the server has
//!   closed it (a kill the pool has not heard of yet): the ping is what
//!   catches it. (A connection granted dead before its validation is due is
//!   the ordinary race the client meets and taints.)
//! - **self-check**: the pool's own consistency check, if it has one,
//!   passes after every input and timer firing.

use pool_core::{Command, ConnId, ConnState, RequestId};

use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, ConnTruth, Qualified, Session, View, World};

impl<P: SimPool> World<P> {
    /// Merge the pool's connections with ground truth, by id; the census
    /// of the truth.
    pub(super) fn check_conns(&mut self, px: usize) -> Census {
        self.counters.count(Invariant::GhostIdle);
        self.counters.count(Invariant::LostConnection);
        let (census, problem) = self.view_problem(px);
        if let Some((invariant, detail)) = problem {
            self.violate(invariant, detail);
        }
        census
    }

    /// The census of the truth, and the first connection on which the
    /// pool's view disagrees with it.
    fn view_problem(&mut self, px: usize) -> (Census, Option<(Invariant, String)>) {
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
        (census, problem)
    }

    /// The pool's stats against ground truth: its gauges (its lifecycle is
    /// the close family's), and its counters if it keeps them.
    pub(super) fn check_stats(&mut self, px: usize, census: &Census) {
        self.counters.count(Invariant::Accounting);
        let slot = &self.pools[px];
        let stats = slot.pool.stats();
        let gauges = [
            ("capacity", slot.capacity, stats.capacity),
            ("opening", census.opening, stats.opening),
            ("idle", census.pooled, stats.idle),
            ("borrowed", census.borrowed, stats.borrowed),
            ("held", census.held(), stats.held),
            ("waiters", slot.waiting.len(), stats.waiters),
        ];
        if let Some((name, want, got)) = gauges.into_iter().find(|(_, want, got)| want != got) {
            let detail = format!("P{px} reports {name}={got}, ground truth is {want}");
            return self.violate(Invariant::Accounting, detail);
        }
        if !slot.pool.reports_counters() {
            return;
        }
        let mismatch = slot
            .contract
            .ledger
            .against(&stats)
            .into_iter()
            .find(|(_, world, pool)| world != pool);
        if let Some((name, world, pool)) = mismatch {
            self.violate(
                Invariant::Accounting,
                format!("P{px} counts {name}={pool}, the world counted {world}"),
            );
        }
    }

    /// The pool's own consistency check.
    pub(super) fn check_self(&mut self, px: usize) {
        self.counters.count(Invariant::SelfCheck);
        if let Err(problem) = self.pools[px].pool.check_consistency() {
            self.violate(
                Invariant::SelfCheck,
                format!("P{px}'s own consistency check failed: {problem}"),
            );
        }
    }

    /// A disconnect or abort hits a connection the pool holds, not one a
    /// client uses nor one it was already rid of. Whether its reason can be
    /// judged (the truth still has it).
    pub(super) fn check_closable(&mut self, px: u32, conn: ConnId, command: &Command) -> bool {
        self.counters.count(Invariant::BusyDisconnected);
        let named = Qualified(px, conn);
        let (invariant, detail) = match self.pools[px as usize].conns.get(&conn).map(|c| c.view) {
            Some(View::Borrowed { client } | View::Detached { client }) => (
                Invariant::BusyDisconnected,
                format!("`{command}` closes {named}, which client {client} is using"),
            ),
            Some(_) => return true,
            // Gone by the truth in this very drain (returned with its session
            // already closed): closing it again is harmless, and nothing is
            // left to judge its reason by.
            None if self.pools[px as usize]
                .retired
                .iter()
                .any(|&(id, _)| id == conn) =>
            {
                return false;
            }
            // Gone before: the pool was rid of it, yet still held it.
            None => (
                Invariant::GhostIdle,
                format!("`{command}`: the pool was rid of {named} before, yet held it still"),
            ),
        };
        self.violate(invariant, detail);
        false
    }

    /// `Tainted` only for a connection its client returned broken.
    pub(super) fn check_tainted_reason(&mut self, px: u32, conn: ConnId) {
        let view = self.pools[px as usize].conns.get(&conn).map(|c| c.view);
        if matches!(view, Some(view) if view != View::Condemned) {
            let detail = format!(
                "P{px} disconnects {} as tainted, but it is {view:?}: nobody returned it broken",
                Qualified(px, conn)
            );
            self.violate(Invariant::UnjustifiedDisconnect, detail);
        }
    }

    /// A new connection's id is not one still in use.
    pub(super) fn check_new_id(&mut self, px: u32, conn: ConnId) {
        self.counters.count(Invariant::Accounting);
        if self.pools[px as usize].conns.contains_key(&conn) {
            let detail = format!("P{px} opens {conn}, an id still in use");
            self.violate(Invariant::Accounting, detail);
        }
    }

    /// A grant goes to a waiting request and hands out a pooled connection.
    pub(super) fn check_grant_target(&mut self, px: u32, request: RequestId, conn: ConnId) {
        self.counters.count(Invariant::LostConnection);
        let slot = &self.pools[px as usize];
        if !slot.waiting.contains_key(&request) {
            let detail =
                format!("P{px} grants {conn} to {request}, which is not waiting: nobody gets it");
            return self.violate(Invariant::LostConnection, detail);
        }
        self.counters.count(Invariant::DoubleGrant);
        self.counters.count(Invariant::GhostIdle);
        let named = Qualified(px, conn);
        let problem = match slot.conns.get(&conn).map(|c| c.view) {
            Some(View::Pooled) => return,
            Some(View::Borrowed { client: other } | View::Detached { client: other }) => (
                Invariant::DoubleGrant,
                format!("granted {named} to {request}, but client {other} has it"),
            ),
            Some(View::Opening) => (
                Invariant::GhostIdle,
                format!("granted {named} to {request} before it was reported connected"),
            ),
            Some(View::Condemned) | None => (
                Invariant::GhostIdle,
                format!("granted {named} to {request}, but the pool was told it is dead"),
            ),
        };
        self.violate(problem.0, problem.1);
    }

    /// A dead connection is not handed out when its validation was due.
    pub(super) fn check_grant_validated(
        &mut self,
        px: u32,
        request: RequestId,
        conn: ConnId,
        validate: bool,
    ) {
        let due_after = self.pool_config.validate_idle_ms;
        if validate || due_after == 0 {
            return;
        }
        self.counters.count(Invariant::UnvalidatedGrant);
        let now = self.now;
        let Some(truth) = self.pools[px as usize].conns.get(&conn) else {
            return;
        };
        // Due once it has idled `due_after` (measured with the deadline's
        // arithmetic, not the pool's: the check must not share its mistake).
        let due_at = truth.pooled_since.plus_ms(due_after);
        if truth.session == Session::Closed && truth.view == View::Pooled && now >= due_at {
            let detail = format!(
                "P{px} grants {} to {request} unvalidated, idle since {} (validate_idle_ms = {due_after}, due at {due_at}); the server had closed it",
                Qualified(px, conn),
                truth.pooled_since
            );
            self.violate(Invariant::UnvalidatedGrant, detail);
        }
    }

    /// A reject answers a waiting request.
    pub(super) fn check_rejected_is_waiting(&mut self, px: u32, request: RequestId) -> bool {
        self.counters.count(Invariant::Accounting);
        if self.pools[px as usize].waiting.contains_key(&request) {
            return true;
        }
        let detail = format!("P{px} rejects {request}, which is not waiting");
        self.violate(Invariant::Accounting, detail);
        false
    }
}

/// Count one connection's truth into a census.
pub(crate) fn tally(census: &mut Census, c: &ConnTruth) {
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
