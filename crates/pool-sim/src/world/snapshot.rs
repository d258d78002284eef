//! Snapshots and canonical hashes of a world, for the explorer: a world is
//! a value that can be copied (branched into every transition it can take)
//! and hashed so that equivalent states meet in the visited set.
//!
//! Equivalent: the same up to the names history gave things. Connection and
//! request ids are generations, so they are renamed by rank among the ids
//! the state still names (per pool for connections, which every pool
//! numbers from c0); times are taken relative to now; clients in the same
//! state (the same process, nothing held) are interchangeable, so clients
//! are hashed sorted by their state and named by their place in that order.
//! Counters that only grow (the ledger, the stats' counters, the id and
//! signal counters) are left out: the contract holds the pool's counters to
//! the world's own at every step, so they cannot tell two unviolated states
//! apart in any way a check could see.

use pool_core::{ConnId, RequestId, StateSink, Time};

use super::{
    ClientState, Owner, Phase, PoolSlot, Service, Session, SignalKind, View, Waiting, World,
};
use crate::contract::Owed;
use crate::pool::SimPool;
use crate::trace::Trace;

/// How a state hash names things (the explorer's `--no-renumber` and
/// `--no-symmetry` turn these off, to measure what they buy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canonical {
    /// Rename ids by rank and take times relative to now.
    pub renumber: bool,
    /// Hash clients as interchangeable where their state allows.
    pub symmetry: bool,
}

impl Default for Canonical {
    fn default() -> Self {
        Canonical {
            renumber: true,
            symmetry: true,
        }
    }
}

/// Buffers for `World::state_hash_with`, kept between calls.
#[derive(Debug, Default)]
pub struct HashScratch {
    conns: Vec<Vec<ConnId>>,
    requests: Vec<RequestId>,
    signatures: Vec<[u64; 7]>,
    order: Vec<usize>,
    place: Vec<u64>,
}

/// Two independent 64-bit lanes: a 128-bit key makes a collision (two
/// different states taken for one, and a branch never explored) negligible
/// at the millions of states a small world has.
struct Sink {
    a: u64,
    b: u64,
    now: u64,
    renumber: bool,
    /// Each pool's connection ids that the state names, sorted.
    conns: Vec<Vec<ConnId>>,
    /// The pool whose connections are being named.
    pool: usize,
    /// Every request id the state names, sorted.
    requests: Vec<RequestId>,
}

/// Marks a name that is not among the ranked ones (only a pool whose view
/// disagrees with the truth names such a thing): hashed as it is.
const UNRANKED: u64 = 1 << 63;

impl Sink {
    fn rank_conn(&self, pool: usize, conn: ConnId) -> u64 {
        if !self.renumber {
            return conn.0;
        }
        match self.conns.get(pool).map(|c| c.binary_search(&conn)) {
            Some(Ok(i)) => i as u64,
            _ => UNRANKED | conn.0,
        }
    }

    fn rank_request(&self, request: RequestId) -> u64 {
        if !self.renumber {
            return request.0;
        }
        match self.requests.binary_search(&request) {
            Ok(i) => i as u64,
            Err(_) => UNRANKED | request.0,
        }
    }

    fn pool_conn(&mut self, pool: usize, conn: ConnId) {
        let rank = self.rank_conn(pool, conn);
        self.word(rank);
    }

    fn finish(&self) -> u128 {
        (u128::from(mix64(self.a)) << 64) | u128::from(mix64(self.b))
    }
}

impl StateSink for Sink {
    fn word(&mut self, word: u64) {
        // FxHash's step on one lane, a different multiplier and rotation on
        // the other; both are finished with a full avalanche.
        self.a = (self.a.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
        self.b = (self.b ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(23);
    }

    fn time(&mut self, time: Time) {
        let t = time.as_millis();
        let word = if self.renumber {
            t.wrapping_sub(self.now)
        } else {
            t
        };
        self.word(word);
    }

    fn conn(&mut self, conn: ConnId) {
        self.pool_conn(self.pool, conn);
    }

    fn request(&mut self, request: RequestId) {
        let rank = self.rank_request(request);
        self.word(rank);
    }
}

/// splitmix64's finalizer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn setting_word(setting: Option<pool_core::Setting>) -> u64 {
    setting.map_or(u64::MAX, |s| u64::from(s.0))
}

impl<P: SimPool> World<P> {
    /// A copy of the world to branch from, or `None` if its pools cannot be
    /// copied (`SimPool::snapshot`). The copy starts a fresh trace (the
    /// explorer replays the path it reports, with its trace) and keeps no
    /// notices; everything else is the same, the counters included.
    pub fn snapshot(&self) -> Option<World<P>> {
        let mut pools = Vec::with_capacity(self.pools.len());
        for slot in &self.pools {
            pools.push(PoolSlot {
                pool: slot.pool.snapshot()?,
                owner: slot.owner,
                service: slot.service,
                capacity: slot.capacity,
                close: slot.close,
                conns: slot.conns.clone(),
                waiting: slot.waiting.clone(),
                validating: slot.validating.clone(),
                shrink: slot.shrink.clone(),
                retired: slot.retired.clone(),
                counted: slot.counted,
                contract: slot.contract.clone(),
            });
        }
        Some(World {
            make: self.make.clone(),
            pool_config: self.pool_config.clone(),
            config: self.config.clone(),
            mutation: self.mutation,
            now: self.now,
            phase: self.phase,
            pools,
            processes: self.processes.clone(),
            current: self.current.clone(),
            registry: self.registry.clone(),
            deferred: self.deferred.clone(),
            dirty: self.dirty.clone(),
            inbox: self.inbox.clone(),
            queued_by_step: self.queued_by_step.clone(),
            next_signal: self.next_signal,
            clients: self.clients.clone(),
            next_request: self.next_request,
            notices: Vec::new(),
            server_full_since_heal: self.server_full_since_heal,
            trace: Trace::new(self.trace.keep()),
            counters: self.counters.clone(),
            violation: self.violation.clone(),
            command_log: None,
            scratch: Vec::new(),
        })
    }

    /// The earliest instant at which a pool in service is late for what it
    /// owes (the contract's next deadline): the explorer moves time there
    /// as it does to the next timer, or a pool that never acts would never
    /// be seen to be late.
    pub fn next_owed(&self) -> Option<Time> {
        self.pools
            .iter()
            .filter(|p| p.service != Service::Exited)
            .filter_map(|p| p.contract.owed.map(|(at, _)| at))
            .min()
    }

    /// Forget the notices (the explorer plans by enumeration, not by them).
    pub fn clear_notices(&mut self) {
        self.notices.clear();
    }

    /// A hash of the state, equal for equivalent states (see the module
    /// doc), or `None` if a pool cannot hash its own (`SimPool::hash_state`).
    pub fn state_hash(&self, canonical: Canonical) -> Option<u128> {
        self.state_hash_with(canonical, &mut HashScratch::default())
    }

    /// `state_hash`, reusing `scratch`'s buffers (the explorer hashes
    /// millions of states: their allocations were a good part of its time).
    pub fn state_hash_with(&self, canonical: Canonical, scratch: &mut HashScratch) -> Option<u128> {
        let mut sink = Sink {
            a: 0,
            b: 0,
            now: self.now.as_millis(),
            renumber: canonical.renumber,
            conns: std::mem::take(&mut scratch.conns),
            pool: 0,
            requests: std::mem::take(&mut scratch.requests),
        };
        sink.requests.clear();
        let hash = self.hash_into(canonical, &mut sink, scratch);
        scratch.conns = std::mem::take(&mut sink.conns);
        scratch.requests = std::mem::take(&mut sink.requests);
        hash
    }

    fn hash_into(
        &self,
        canonical: Canonical,
        sink: &mut Sink,
        scratch: &mut HashScratch,
    ) -> Option<u128> {
        // The names the state uses, to rank (each pool's list reused).
        sink.conns.resize_with(self.pools.len(), Vec::new);
        sink.conns.truncate(self.pools.len());
        for (px, slot) in self.pools.iter().enumerate() {
            let mut ids = std::mem::take(&mut sink.conns[px]);
            ids.clear();
            ids.extend(slot.conns.keys().copied());
            ids.extend(slot.validating.keys().copied());
            ids.extend(slot.retired.iter().map(|&(c, _)| c));
            if let Some(watch) = &slot.shrink {
                ids.extend(watch.outstanding.iter().copied());
            }
            ids.extend(
                self.inbox
                    .iter()
                    .filter(|q| q.signal.pool as usize == px)
                    .map(|q| q.signal.conn),
            );
            if let Some((_, Owed::Abort { conn, .. } | Owed::Retire { conn, .. })) =
                slot.contract.owed
            {
                ids.push(conn);
            }
            ids.sort_unstable();
            ids.dedup();
            sink.conns[px] = ids;
            sink.requests.extend(slot.waiting.keys().copied());
            sink.requests
                .extend(slot.validating.values().map(|&(r, _)| r));
            if let Some((_, Owed::Answer { request, .. })) = slot.contract.owed {
                sink.requests.push(request);
            }
        }
        for c in &self.clients {
            if let ClientState::Waiting { request } = c.state {
                sink.requests.push(request);
            }
        }
        if let Some(registry) = &self.registry {
            sink.requests.extend(registry.requests());
        }
        sink.requests.sort_unstable();
        sink.requests.dedup();

        // Each client's own state, with canonical names: with symmetry,
        // clients are ordered by it and named by their place.
        let processes = self.config.processes.max(1);
        let now = sink.now;
        let rel = |t: Time| {
            if canonical.renumber {
                t.as_millis().wrapping_sub(now)
            } else {
                t.as_millis()
            }
        };
        let signatures = &mut scratch.signatures;
        signatures.clear();
        signatures.extend(self.clients.iter().enumerate().map(|(i, c)| {
            let pool = c.pool.unwrap_or(0) as usize;
            let (tag, name, since) = match c.state {
                ClientState::Idle => (0, 0, 0),
                ClientState::Waiting { request } => (1, sink.rank_request(request), 0),
                ClientState::Holding { conn, since } => (2, sink.rank_conn(pool, conn), rel(since)),
                ClientState::Listening { conn } => (3, sink.rank_conn(pool, conn), 0),
            };
            [
                i as u64 % u64::from(processes),
                tag,
                name,
                u64::from(c.probe) | u64::from(c.orphaned) << 1,
                c.pool.map_or(u64::MAX, u64::from),
                since,
                if canonical.symmetry { 0 } else { i as u64 },
            ]
        }));
        let order = &mut scratch.order;
        order.clear();
        order.extend(0..self.clients.len());
        if canonical.symmetry {
            order.sort_by_key(|&i| signatures[i]);
        }
        let place = &mut scratch.place;
        place.clear();
        place.resize(self.clients.len(), 0);
        for (at, &i) in order.iter().enumerate() {
            place[i] = at as u64;
        }
        let place = &*place;
        let client = |c: u32| place.get(c as usize).copied().unwrap_or(u64::MAX);

        sink.word(match self.phase {
            Phase::Safety => 0,
            Phase::Liveness { .. } => 1,
        });
        if let Phase::Liveness { since } = self.phase {
            sink.time(since);
        }
        sink.word(self.pools.len() as u64);
        for (px, slot) in self.pools.iter().enumerate() {
            sink.pool = px;
            match slot.owner {
                Owner::Process(p) => sink.word(u64::from(p)),
                Owner::Registry { key, id } => {
                    sink.word(UNRANKED | u64::from(key.0));
                    sink.word(id.0);
                }
            }
            sink.word(match slot.service {
                Service::Serving => 0,
                Service::Dropped => 1,
                Service::Exited => 2,
            });
            sink.word(slot.capacity as u64);
            match slot.close {
                None => sink.word(0),
                Some(close) => {
                    sink.word(1);
                    sink.time(close.issued_at);
                    sink.opt_time(close.deadline);
                    sink.opt_time(close.completed_at);
                }
            }
            sink.word(slot.conns.len() as u64);
            for (&id, truth) in &slot.conns {
                sink.conn(id);
                let (tag, who) = match truth.view {
                    View::Opening => (0, 0),
                    View::Pooled => (1, 0),
                    View::Borrowed { client: c } => (2, client(c)),
                    View::Detached { client: c } => (3, client(c)),
                    View::Condemned => (4, 0),
                };
                sink.word(tag);
                sink.word(who);
                sink.word(match truth.session {
                    Session::Connecting => 0,
                    Session::Open => 1,
                    Session::Closed => 2,
                });
                sink.word(setting_word(truth.setting));
                sink.word(u64::from(truth.closure_known));
                sink.time(truth.opened_at);
                sink.opt_time(truth.connected_at);
                sink.time(truth.pooled_since);
                // `last_active` is left out: only the seeded generator reads
                // it (the server's idle-session timeout), never a check.
            }
            let waiting = |sink: &mut Sink, w: &Waiting| {
                sink.word(client(w.client));
                sink.word(setting_word(w.setting));
                sink.opt_time(w.deadline);
                sink.opt_time(w.answer_by);
            };
            sink.word(slot.waiting.len() as u64);
            for (&request, w) in &slot.waiting {
                sink.request(request);
                waiting(sink, w);
            }
            sink.word(slot.validating.len() as u64);
            for (&conn, (request, w)) in &slot.validating {
                sink.conn(conn);
                sink.request(*request);
                waiting(sink, w);
            }
            match &slot.shrink {
                None => sink.word(0),
                Some(watch) => {
                    sink.word(1 + watch.outstanding.len() as u64);
                    for &conn in &watch.outstanding {
                        sink.conn(conn);
                    }
                    sink.opt_time(watch.all_back_at);
                }
            }
            sink.word(slot.retired.len() as u64);
            for &(conn, setting) in &slot.retired {
                sink.conn(conn);
                sink.word(setting_word(setting));
            }
            let contract = &slot.contract;
            match contract.owed {
                None => sink.word(0),
                Some((at, owed)) => {
                    sink.time(at);
                    match owed {
                        Owed::Answer { request, deadline } => {
                            sink.word(1);
                            sink.request(request);
                            sink.time(deadline);
                        }
                        Owed::Abort { conn, deadline } => {
                            sink.word(2);
                            sink.conn(conn);
                            sink.time(deadline);
                        }
                        Owed::CompleteClose { deadline } => {
                            sink.word(3);
                            sink.time(deadline);
                        }
                        Owed::Retire { conn, expired_at } => {
                            sink.word(4);
                            sink.conn(conn);
                            sink.time(expired_at);
                        }
                        Owed::Reap { idle, floor } => {
                            sink.word(5);
                            sink.word(idle as u64);
                            sink.word(floor as u64);
                        }
                        Owed::Shrink { since } => {
                            sink.word(6);
                            sink.time(since);
                        }
                        Owed::Refill { since, have, floor } => {
                            sink.word(7);
                            sink.time(since);
                            sink.word(have as u64);
                            sink.word(floor as u64);
                        }
                    }
                }
            }
            sink.opt_time(contract.floor_short_since);
            sink.opt_time(contract.backoff_until);
            if !slot.pool.hash_state(sink) {
                return None;
            }
        }
        sink.word(self.processes.len() as u64);
        for p in &self.processes {
            sink.word(u64::from(p.slot));
            sink.word(u64::from(p.pool));
            sink.opt_time(p.orphaned_at);
            sink.opt_time(p.exited_at);
            p.watchdog.hash_state(self.now, sink);
        }
        sink.word(self.current.len() as u64);
        for &c in &self.current {
            sink.word(c as u64);
        }
        if let Some(registry) = &self.registry {
            sink.word(1);
            registry.hash_state(sink);
        }
        sink.word(self.inbox.len() as u64);
        for q in &self.inbox {
            let s = q.signal;
            sink.word(match s.kind {
                SignalKind::Connected => 0,
                SignalKind::ConnectFailed => 1,
                SignalKind::Closed => 2,
                SignalKind::Validated { ok } => 3 + u64::from(ok),
            });
            sink.word(u64::from(s.pool));
            sink.pool_conn(s.pool as usize, s.conn);
        }
        sink.word(self.clients.len() as u64);
        for &i in order.iter() {
            for w in signatures[i] {
                sink.word(w);
            }
        }
        sink.word(u64::from(self.server_full_since_heal));
        sink.word(self.deferred.len() as u64);
        sink.word(self.dirty.len() as u64);
        sink.word(u64::from(self.violation.is_some()));
        Some(sink.finish())
    }
}
