//! Processes and the registry: pools that come and go. A process owns one
//! pool and can be orphaned, when its watchdog should close the pool and the
//! process exit (postgres-mcp, seed 004). A registry makes a pool on a key's
//! first login, commits it when that login's connect lands, and collects idle
//! pools (pg_doorman, seed 002).

use std::collections::{BTreeMap, BTreeSet};

use pool_core::{Input, Key, Login, Mutation, PoolId, Registry, RequestId, Watchdog};

use super::{Census, ClientState, Notice, Owner, PoolSlot, Process, Service, World};
use crate::pool::SimPool;
use crate::trace::{Target, WorldEvent};

/// The registry and what the world knows about its pools.
#[derive(Clone, Debug)]
pub(super) struct RegistryTruth {
    registry: Registry,
    /// The world's index of each registry pool.
    pools: BTreeMap<PoolId, u32>,
    /// Pools whose first connect is in flight, and the login running it.
    first_connect: BTreeMap<u32, RequestId>,
    /// Pools whose first connect landed (the registry committed them), by
    /// the world's count: GC owes them a sweep once they are idle.
    committed: BTreeSet<u32>,
}

impl RegistryTruth {
    /// Write the registry and the world's knowledge of it to `sink`, for a
    /// canonical hash.
    pub(super) fn hash_state(&self, sink: &mut dyn pool_core::StateSink) {
        self.registry.hash_state(sink);
        sink.word(self.pools.len() as u64);
        for (id, &px) in &self.pools {
            sink.word(id.0);
            sink.word(u64::from(px));
        }
        sink.word(self.first_connect.len() as u64);
        for (&px, &request) in &self.first_connect {
            sink.word(u64::from(px));
            sink.request(request);
        }
        sink.word(self.committed.len() as u64);
        for &px in &self.committed {
            sink.word(u64::from(px));
        }
    }

    /// The requests the registry's truth names (for renaming).
    pub(super) fn requests(&self) -> impl Iterator<Item = pool_core::RequestId> + '_ {
        self.first_connect.values().copied()
    }

    pub(super) fn new(mutation: Option<Mutation>) -> RegistryTruth {
        #[cfg_attr(not(feature = "mutations"), allow(unused_mut))]
        let mut registry = Registry::new();
        #[cfg(feature = "mutations")]
        registry.set_mutation(mutation);
        #[cfg(not(feature = "mutations"))]
        let _ = mutation;
        RegistryTruth {
            registry,
            pools: BTreeMap::new(),
            first_connect: BTreeMap::new(),
            committed: BTreeSet::new(),
        }
    }
}

/// Work that must wait until the pool being drained is done.
#[derive(Clone, Copy, Debug)]
pub(super) enum Deferred {
    /// The registry dropped the pool: close it now.
    Drop(u32),
    /// The process's pool closed after orphaning: the process exits.
    Exit(usize),
}

impl<P: SimPool> World<P> {
    /// Start a process in `slot` with a fresh pool.
    pub(super) fn start_process(&mut self, slot: u32) {
        let index = self.processes.len();
        let px = self.add_pool(Owner::Process(index as u32));
        #[cfg_attr(not(feature = "mutations"), allow(unused_mut))]
        let mut watchdog = Watchdog::new(self.now, self.config.watchdog_interval_ms);
        #[cfg(feature = "mutations")]
        watchdog.set_mutation(self.mutation);
        self.processes.push(Process {
            slot,
            pool: px,
            orphaned_at: None,
            exited_at: None,
            watchdog,
        });
        match self.current.get_mut(slot as usize) {
            Some(current) => *current = index,
            None => self.current.push(index),
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            if i as u32 % self.config.processes == slot && c.state == ClientState::Idle {
                c.pool = Some(px);
            }
        }
        // A pool may act on creation (filling min_idle).
        self.settle(px);
    }

    fn add_pool(&mut self, owner: Owner) -> u32 {
        let pool = (self.make.borrow_mut())(self.now, &self.pool_config);
        let px = self.pools.len() as u32;
        self.pools
            .push(PoolSlot::new(pool, owner, self.pool_config.max_size));
        px
    }

    /// The pool an idle client's next acquire goes to.
    pub(super) fn pool_of(&self, client: u32) -> Option<u32> {
        match self.registry {
            Some(_) => self.clients[client as usize].pool,
            None => {
                let slot = client % self.config.processes;
                Some(self.processes[self.current[slot as usize]].pool)
            }
        }
    }

    /// Whether `client`'s process is orphaned.
    pub fn client_orphaned(&self, client: u32) -> bool {
        self.registry.is_none() && {
            let slot = client % self.config.processes;
            self.processes[self.current[slot as usize]]
                .orphaned_at
                .is_some()
        }
    }

    pub(super) fn login(
        &mut self,
        client: u32,
        key: u32,
        timeout_ms: Option<u32>,
    ) -> (Target, Option<(u32, Input)>) {
        let keys = self.config.keys;
        if self.registry.is_none() {
            return (Target::Skipped("no registry (keys = 0)"), None);
        }
        let Some(client) = self.client_index(client) else {
            return (Target::Skipped("no clients"), None);
        };
        if self.clients[client as usize].state != ClientState::Idle {
            return (Target::Skipped("client is busy"), None);
        }
        let key = Key(key % keys);
        let login = self
            .registry
            .as_mut()
            .expect("checked above")
            .registry
            .login(key);
        self.world_event(WorldEvent::Login { client, key, login });
        let truth = self.registry.as_mut().expect("checked above");
        let px = match login {
            Login::Created(id) => {
                // One pool per key: no other pool in service for this key.
                let twin = self.pools.iter().position(|p| {
                    p.service == Service::Serving
                        && matches!(p.owner, Owner::Registry { key: k, .. } if k == key)
                });
                let px = self.add_pool(Owner::Registry { key, id });
                let truth = self.registry.as_mut().expect("checked above");
                truth.pools.insert(id, px);
                if !self.check_one_pool_per_key(px, key, client, twin) {
                    return (Target::Pool(px), None);
                }
                px
            }
            Login::Ready(id) | Login::Initializing(id) => match truth.pools.get(&id).copied() {
                Some(px) if self.pools[px as usize].service == Service::Serving => px,
                _ => {
                    self.handed_a_gone_pool(id, key, client);
                    return (Target::Skipped("pool is gone"), None);
                }
            },
        };
        let (target, input) = self.wait_on(client, px, None, timeout_ms);
        if let (Login::Created(_), Input::Acquire { request, .. }) = (login, &input) {
            let truth = self.registry.as_mut().expect("checked above");
            truth.first_connect.insert(px, *request);
        }
        (target, Some((px, input)))
    }

    /// A login's acquire ended; if it ran its pool's first connect, the
    /// registry commits the pool (granted) or abandons it (rejected).
    pub(super) fn first_connect_landed(&mut self, px: u32, request: RequestId, granted: bool) {
        let Some(truth) = self.registry.as_mut() else {
            return;
        };
        if truth.first_connect.get(&px) != Some(&request) {
            return;
        }
        truth.first_connect.remove(&px);
        let Owner::Registry { id, .. } = self.pools[px as usize].owner else {
            return;
        };
        // Only a pool the registry still holds as initializing can land
        // (a collected one was dropped already).
        let result = if granted {
            truth.registry.commit(id)
        } else {
            truth.registry.abandon(id)
        };
        if result.is_err() {
            return;
        }
        if granted {
            truth.committed.insert(px);
            self.world_event(WorldEvent::Committed { pool: id });
        } else {
            self.world_event(WorldEvent::Abandoned { pool: id });
            self.deferred.push(Deferred::Drop(px));
        }
    }

    pub(super) fn gc(&mut self) -> (Target, Option<(u32, Input)>) {
        let Some(truth) = self.registry.as_mut() else {
            return (Target::Skipped("no registry (keys = 0)"), None);
        };
        let pools = &self.pools;
        let index = &truth.pools;
        let removed = truth.registry.gc(|id| {
            index
                .get(&id)
                .map(|&px| pools[px as usize].pool.stats())
                .unwrap_or_default()
        });
        for id in removed {
            self.world_event(WorldEvent::Collected { pool: id });
            let truth = self.registry.as_ref().expect("checked above");
            let Some(&px) = truth.pools.get(&id) else {
                continue;
            };
            let first_connect = truth.first_connect.get(&px).copied();
            if !self.check_collectable(px, id, first_connect) {
                return (Target::World, None);
            }
            self.deferred.push(Deferred::Drop(px));
            self.registry
                .as_mut()
                .expect("checked above")
                .committed
                .remove(&px);
        }
        // And it swept every pool it owed a sweep.
        let truth = self.registry.as_ref().expect("checked above");
        let kept: Vec<u32> = truth
            .committed
            .iter()
            .copied()
            .filter(|&px| {
                let slot = &self.pools[px as usize];
                slot.service == Service::Serving
                    && !self
                        .deferred
                        .iter()
                        .any(|d| matches!(d, Deferred::Drop(p) if *p == px))
            })
            .collect();
        for px in kept {
            self.check_swept(px);
        }
        (Target::World, None)
    }

    pub(super) fn orphan(&mut self, process: u32) -> (Target, Option<(u32, Input)>) {
        if self.registry.is_some() {
            return (Target::Skipped("the pooler has no parent to lose"), None);
        }
        let slot = process % self.config.processes;
        let index = self.current[slot as usize];
        let now = self.now;
        let p = &mut self.processes[index];
        if p.orphaned_at.is_some() {
            return (Target::Skipped("process is already orphaned"), None);
        }
        p.orphaned_at = Some(now);
        p.watchdog.handle_orphaned(now);
        let px = p.pool;
        self.fault("orphan");
        self.notice(Notice::Orphaned { slot });
        self.world_event(WorldEvent::Orphaned {
            process: index as u32,
            pool: px,
        });
        (Target::Pool(px), None)
    }

    pub(super) fn spawn(&mut self, process: u32) -> (Target, Option<(u32, Input)>) {
        if self.registry.is_some() {
            return (Target::Skipped("the pooler is one process"), None);
        }
        let slot = process % self.config.processes;
        let index = self.current[slot as usize];
        if self.processes[index].orphaned_at.is_none() {
            return (Target::Skipped("the process is running"), None);
        }
        self.start_process(slot);
        let index = self.processes.len() - 1;
        let px = self.processes[index].pool;
        self.world_event(WorldEvent::Spawned {
            process: index as u32,
            pool: px,
        });
        (Target::Pool(px), None)
    }

    /// A watchdog's check is due.
    pub(super) fn watchdog_check(&mut self, process: usize) {
        let now = self.now;
        let p = &mut self.processes[process];
        let action = p.watchdog.handle_timeout(now);
        let px = p.pool;
        self.world_event(WorldEvent::WatchdogChecked {
            process: process as u32,
            close: action.is_some(),
        });
        if action.is_some() && self.pools[px as usize].close.is_none() {
            // Close the pool at once, then exit (postgres-mcp's watchdog
            // closes the pool and hard-exits).
            let input = self.begin_close(px, Some(now));
            self.send(px, input);
        } else if action.is_some() {
            self.exit_process(process);
        }
    }

    /// Pool `px` completed its close.
    pub(super) fn closed(&mut self, px: u32) {
        if let Owner::Process(index) = self.pools[px as usize].owner
            && self.processes[index as usize].orphaned_at.is_some()
        {
            self.deferred.push(Deferred::Exit(index as usize));
        }
    }

    /// Run the work deferred while a pool was being drained.
    pub(super) fn run_deferred(&mut self) {
        while self.violation.is_none() {
            let Some(work) = self.deferred.pop() else {
                break;
            };
            match work {
                Deferred::Drop(px) => self.drop_pool(px),
                Deferred::Exit(index) => self.exit_process(index),
            }
        }
    }

    fn drop_pool(&mut self, px: u32) {
        let slot = &mut self.pools[px as usize];
        if slot.service != Service::Serving {
            return;
        }
        slot.service = Service::Dropped;
        if slot.close.is_none() {
            let input = self.begin_close(px, Some(self.now));
            self.send(px, input);
        }
    }

    /// The process is gone: the OS closes every socket it had.
    fn exit_process(&mut self, index: usize) {
        let now = self.now;
        let p = &mut self.processes[index];
        if p.exited_at.is_some() {
            return;
        }
        p.exited_at = Some(now);
        let px = p.pool;
        let slot = &mut self.pools[px as usize];
        slot.service = Service::Exited;
        let sessions = slot.conns.len() as u32;
        slot.conns.clear();
        slot.waiting.clear();
        slot.validating.clear();
        slot.shrink = None;
        slot.retired.clear();
        // Not checked any more, but counted over every pool (the role limit).
        slot.counted = Census::default();
        for client in 0..self.clients.len() as u32 {
            let c = &self.clients[client as usize];
            if c.pool == Some(px) && c.state != ClientState::Idle {
                self.set_client_idle(client);
            }
        }
        self.world_event(WorldEvent::Exited {
            process: index as u32,
            pool: px,
            sessions,
        });
    }
}
