//! The registry and processes: pools that come and go.
//!
//! Rules:
//! - **duplicate-pool**: at most one pool in service per registry key: a
//!   first login registers its pool before its first connect, so a
//!   concurrent first login finds it.
//! - **gc-removed-initializing**: the registry's GC removes only a pool
//!   whose first connect committed, that holds no connection and that no
//!   request waits on; a login is never handed a pool that is gone.
//! - **footprint**: and a GC sweep removes every such pool it finds (a
//!   registry that keeps idle pools leaks them).
//! - **footprint**: an orphaned process is gone, with its sessions, within
//!   one watchdog interval plus the liveness bound.

use pool_core::{Key, PoolId, RequestId};

use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::World;

impl<P: SimPool> World<P> {
    /// A first login made `px` for `key`; `twin` is a pool already in
    /// service for it. Whether the login may go on.
    pub(crate) fn check_one_pool_per_key(
        &mut self,
        px: u32,
        key: Key,
        client: u32,
        twin: Option<usize>,
    ) -> bool {
        self.counters.count(Invariant::DuplicatePool);
        let Some(twin) = twin else {
            return true;
        };
        let detail =
            format!("login of client {client} made P{px} for {key}, which P{twin} already serves");
        self.violate(Invariant::DuplicatePool, detail);
        false
    }

    /// The registry handed `id` to a login, but the world has no pool in
    /// service for it.
    pub(crate) fn handed_a_gone_pool(&mut self, id: PoolId, key: Key, client: u32) {
        let detail =
            format!("the registry handed {id} for {key} to client {client}, but that pool is gone");
        self.violate(Invariant::GcRemovedInitializing, detail);
    }

    /// GC removed `id` (the world's `px`); `first_connect` is the login
    /// whose first connect is still in flight, if any. Whether it may go.
    pub(crate) fn check_collectable(
        &mut self,
        px: u32,
        id: PoolId,
        first_connect: Option<RequestId>,
    ) -> bool {
        self.counters.count(Invariant::GcRemovedInitializing);
        let slot = &self.pools[px as usize];
        let held = slot.census().held();
        let why = if let Some(request) = first_connect {
            format!("while its first connect, for {request}, is in flight")
        } else if let Some(request) = slot.waiting.keys().next() {
            format!("while {request} waits on it: that login fails because its pool vanished")
        } else if held > 0 {
            format!("while it holds {held} connection(s)")
        } else {
            return true;
        };
        self.violate(
            Invariant::GcRemovedInitializing,
            format!("GC removed {id} (P{px}) {why}"),
        );
        false
    }

    /// After a GC sweep: `px`, committed and kept, is not idle.
    pub(crate) fn check_swept(&mut self, px: u32) {
        self.counters.count(Invariant::Footprint);
        let slot = &self.pools[px as usize];
        if slot.census().held() == 0 && slot.waiting.is_empty() && slot.validating.is_empty() {
            let detail = format!("GC kept P{px}, committed and idle: nothing held, nobody waiting");
            self.violate(Invariant::Footprint, detail);
        }
    }

    /// An orphaned process must be gone, its sessions with it, within one
    /// watchdog interval (plus the bound).
    pub(super) fn check_orphans(&mut self) {
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
}
