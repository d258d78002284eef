//! The dynamic-pool registry (pg_doorman's case, seed 002): one pool per key
//! (a user), created on its first login.
//!
//! A pool is registered *before* its first connect, so concurrent first
//! logins share it (registering after the connect built two pools for one
//! key). It is not eligible for GC until that first connect commits (GC used
//! to see an initializing pool's size of 0 and remove it). A failed first
//! connect removes it, so the next login starts clean.
//!
//! Like the pool, the registry is sans-IO: it names pools, and the caller
//! owns them, runs their first connect, and reports each pool's gauges to GC.

use std::collections::BTreeMap;
use std::fmt;

use crate::mutation::{Active, Mutation};
use crate::stats::Stats;

/// A registry key: the user (or user and database) a dynamic pool serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Key(pub u32);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

/// A dynamic pool, named by the registry; ids are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct PoolId(pub u64);

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// What a login gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Login {
    /// The key's pool, first connect committed.
    Ready(PoolId),
    /// The key's pool, first connect still in flight: use it, it serves this
    /// login when a connection lands.
    Initializing(PoolId),
    /// A new pool, registered: make it, run its first connect, then
    /// [`commit`](Registry::commit) or [`abandon`](Registry::abandon).
    Created(PoolId),
}

impl Login {
    pub fn pool(self) -> PoolId {
        match self {
            Login::Ready(p) | Login::Initializing(p) | Login::Created(p) => p,
        }
    }
}

/// A registry call that does not fit its state: a caller's mistake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The pool is not waiting for its first connect (never created, already
    /// committed, abandoned or collected).
    #[error("pool {0} is not initializing")]
    NotInitializing(PoolId),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    pool: PoolId,
    committed: bool,
}

/// The registry: keys to pools.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: BTreeMap<Key, Entry>,
    /// Created pools whose first connect has not committed, by id.
    initializing: BTreeMap<PoolId, Key>,
    next_pool: u64,
    mutation: Active,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Put one of the seed reports' bugs back. Only with `mutations`.
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&mut self, mutation: Option<Mutation>) {
        self.mutation.set(mutation);
    }

    /// The pool registered for `key`, if any, and whether it committed.
    pub fn pool(&self, key: Key) -> Option<(PoolId, bool)> {
        self.entries.get(&key).map(|e| (e.pool, e.committed))
    }

    /// Every registered pool: key, pool, committed.
    pub fn pools(&self) -> impl Iterator<Item = (Key, PoolId, bool)> + '_ {
        self.entries.iter().map(|(&k, e)| (k, e.pool, e.committed))
    }

    /// Write the registry's state to `sink` for a canonical hash. Pool ids
    /// are hashed as they are: pools are never forgotten by the world that
    /// owns them, so the ids name the same pools in every state that could
    /// meet; the id counter is left out.
    pub fn hash_state(&self, sink: &mut dyn crate::StateSink) {
        sink.word(self.entries.len() as u64);
        for (key, e) in &self.entries {
            sink.word(u64::from(key.0));
            sink.word(e.pool.0);
            sink.word(u64::from(e.committed));
        }
        sink.word(self.initializing.len() as u64);
        for (pool, key) in &self.initializing {
            sink.word(pool.0);
            sink.word(u64::from(key.0));
        }
    }

    /// A login for `key`: its pool, or a new one registered now.
    pub fn login(&mut self, key: Key) -> Login {
        if let Some(e) = self.entries.get(&key) {
            return match e.committed {
                true => Login::Ready(e.pool),
                false => Login::Initializing(e.pool),
            };
        }
        let pool = PoolId(self.next_pool);
        self.next_pool += 1;
        self.initializing.insert(pool, key);
        // pg_doorman's reverted 089fc22 delayed the insert until after the
        // first connect, so a concurrent first login found no pool and
        // built its own.
        if !self.mutation.is(Mutation::RegisterAfterConnect) {
            self.entries.insert(
                key,
                Entry {
                    pool,
                    committed: false,
                },
            );
        }
        Login::Created(pool)
    }

    /// The first connect of `pool` succeeded: from now on GC may collect it.
    pub fn commit(&mut self, pool: PoolId) -> Result<(), RegistryError> {
        let key = self
            .initializing
            .remove(&pool)
            .ok_or(RegistryError::NotInitializing(pool))?;
        // (The commit acknowledged, the entry left as it was.)
        let committed = !self.mutation.is(Mutation::CommitNotRecorded);
        self.entries.insert(key, Entry { pool, committed });
        Ok(())
    }

    /// The first connect of `pool` failed: forget it, so the next login for
    /// its key starts clean. The caller closes the pool.
    pub fn abandon(&mut self, pool: PoolId) -> Result<(), RegistryError> {
        let key = self
            .initializing
            .remove(&pool)
            .ok_or(RegistryError::NotInitializing(pool))?;
        if self.entries.get(&key).is_some_and(|e| e.pool == pool) {
            self.entries.remove(&key);
        }
        Ok(())
    }

    /// Sweep: remove every pool that is idle by its `stats` (nothing held,
    /// nobody waiting) and whose first connect committed. Returns the removed
    /// pools; the caller closes them.
    pub fn gc(&mut self, stats: impl Fn(PoolId) -> Stats) -> Vec<PoolId> {
        let mut removed = Vec::new();
        let mutation = self.mutation;
        self.entries.retain(|_, e| {
            let s = stats(e.pool);
            let collect = if mutation.is(Mutation::GcRemovesInitializing) {
                // pg_doorman before #255: `pool_state().size == 0` alone; an
                // initializing pool's first connect is not in its size.
                s.idle + s.borrowed == 0
            } else if mutation.is(Mutation::GcKeepsIdle) {
                // (The sweep looked, and kept everything.)
                false
            } else if mutation.is(Mutation::GcRemovesBusy) {
                // pg_doorman #209: only idle connections were looked at, so a
                // pool lending every connection looked empty.
                e.committed && s.idle == 0
            } else {
                e.committed && s.held == 0 && s.waiters == 0
            };
            if collect {
                removed.push(e.pool);
            }
            !collect
        });
        for pool in &removed {
            self.initializing.remove(pool);
        }
        removed
    }
}
