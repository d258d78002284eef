//! The dynamic-pool registry's contract (DESIGN.md section 3, pg_doorman's
//! case, seed 002): one pool per key, registered before its first connect,
//! not collectable until that connect commits, forgotten when it fails.

use pool_core::{Key, Login, PoolId, Registry, RegistryError, Stats};

// ----- helpers -----

const K1: Key = Key(1);
const K2: Key = Key(2);

fn p(n: u64) -> PoolId {
    PoolId(n)
}

/// A pool's gauges: `held` slots of which `idle` idle and `borrowed`
/// borrowed (the rest opening), with `waiters` waiting.
fn stats(held: usize, idle: usize, borrowed: usize, waiters: usize) -> Stats {
    Stats {
        held,
        opening: held - idle - borrowed,
        idle,
        borrowed,
        waiters,
        ..Stats::default()
    }
}

/// Nothing held, nobody waiting.
fn empty(_: PoolId) -> Stats {
    stats(0, 0, 0, 0)
}

fn pools(registry: &Registry) -> Vec<(Key, PoolId, bool)> {
    registry.pools().collect()
}

/// A registry with `key`'s pool created and committed; returns its id.
fn committed(registry: &mut Registry, key: Key) -> PoolId {
    let Login::Created(pool) = registry.login(key) else {
        panic!("{key} already had a pool");
    };
    registry.commit(pool).expect("pool is initializing");
    pool
}

// ----- one pool per key -----

#[test]
fn each_key_gets_its_own_pool() {
    let mut registry = Registry::new();
    assert_eq!(registry.login(K1), Login::Created(p(0)));
    assert_eq!(registry.login(K2), Login::Created(p(1)));
    assert_eq!(registry.pool(K1), Some((p(0), false)));
    assert_eq!(registry.pool(K2), Some((p(1), false)));
    assert_eq!(registry.pool(Key(3)), None);
    assert_eq!(pools(&registry), [(K1, p(0), false), (K2, p(1), false)]);
}

#[test]
fn concurrent_first_logins_share_the_initializing_pool() {
    let mut registry = Registry::new();
    assert_eq!(registry.login(K1), Login::Created(p(0)));
    assert_eq!(registry.login(K1), Login::Initializing(p(0)));
    assert_eq!(registry.login(K1), Login::Initializing(p(0)));
    assert_eq!(pools(&registry), [(K1, p(0), false)]);
}

#[test]
fn commit_makes_later_logins_ready() {
    let mut registry = Registry::new();
    registry.login(K1);
    registry.login(K1);
    assert_eq!(registry.commit(p(0)), Ok(()));
    assert_eq!(registry.login(K1), Login::Ready(p(0)));
    assert_eq!(registry.pool(K1), Some((p(0), true)));
    assert_eq!(pools(&registry), [(K1, p(0), true)]);
}

#[test]
fn abandon_forgets_the_pool_so_the_next_login_starts_clean() {
    let mut registry = Registry::new();
    registry.login(K1);
    registry.login(K1);
    assert_eq!(registry.abandon(p(0)), Ok(()));
    assert_eq!(registry.pool(K1), None);
    assert_eq!(pools(&registry), []);
    assert_eq!(registry.login(K1), Login::Created(p(1)));
    assert_eq!(registry.login(K1), Login::Initializing(p(1)));
}

#[test]
fn abandon_leaves_other_keys_alone() {
    let mut registry = Registry::new();
    let ready = committed(&mut registry, K1);
    registry.login(K2);
    assert_eq!(registry.abandon(p(1)), Ok(()));
    assert_eq!(pools(&registry), [(K1, ready, true)]);
}

// ----- GC -----

#[test]
fn gc_never_removes_an_initializing_pool() {
    let mut registry = Registry::new();
    registry.login(K1);
    // Even with gauges showing nothing at all (the first connect not counted).
    assert_eq!(registry.gc(empty), []);
    // Or only the first connect in flight.
    assert_eq!(registry.gc(|_| stats(1, 0, 0, 0)), []);
    assert_eq!(pools(&registry), [(K1, p(0), false)]);
    assert_eq!(registry.login(K1), Login::Initializing(p(0)));
    // And it can still commit.
    assert_eq!(registry.commit(p(0)), Ok(()));
}

#[test]
fn gc_keeps_a_committed_pool_that_holds_or_has_waiters() {
    let mut registry = Registry::new();
    committed(&mut registry, K1);
    for busy in [
        stats(1, 1, 0, 0), // one idle
        stats(1, 0, 1, 0), // one borrowed
        stats(1, 0, 0, 0), // one opening
        stats(0, 0, 0, 1), // nothing held, one waiting
    ] {
        assert_eq!(registry.gc(|_| busy.clone()), [], "{busy:?}");
        assert_eq!(pools(&registry), [(K1, p(0), true)], "{busy:?}");
    }
}

#[test]
fn gc_removes_a_committed_idle_pool_and_returns_it() {
    let mut registry = Registry::new();
    committed(&mut registry, K1);
    assert_eq!(registry.gc(empty), [p(0)]);
    assert_eq!(registry.pool(K1), None);
    assert_eq!(pools(&registry), []);
    // Its id is not initializing: it cannot be committed or abandoned.
    assert_eq!(
        registry.commit(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(
        registry.abandon(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(registry.login(K1), Login::Created(p(1)));
}

#[test]
fn gc_sweeps_only_the_eligible_pools_and_asks_each_by_its_id() {
    let mut registry = Registry::new();
    let idle = committed(&mut registry, Key(1)); // p0: collected
    let busy = committed(&mut registry, Key(2)); // p1: holds a conn
    registry.login(Key(3)); // p2: initializing
    let also_idle = committed(&mut registry, Key(4)); // p3: collected
    let gauges = |pool| match pool == busy {
        true => stats(2, 1, 1, 0),
        false => stats(0, 0, 0, 0),
    };
    assert_eq!(registry.gc(gauges), [idle, also_idle]);
    assert_eq!(
        pools(&registry),
        [(Key(2), busy, true), (Key(3), p(2), false)]
    );
    // A second sweep finds nothing new.
    assert_eq!(registry.gc(gauges), []);
}

// ----- errors -----

#[test]
fn commit_or_abandon_of_an_unknown_pool_is_an_error_and_changes_nothing() {
    let mut registry = Registry::new();
    registry.login(K1);
    let before = pools(&registry);
    assert_eq!(
        registry.commit(p(7)),
        Err(RegistryError::NotInitializing(p(7)))
    );
    assert_eq!(
        registry.abandon(p(7)),
        Err(RegistryError::NotInitializing(p(7)))
    );
    assert_eq!(pools(&registry), before);
    // The next id is still the next one: the errors took none.
    assert_eq!(registry.login(K2), Login::Created(p(1)));
}

#[test]
fn commit_or_abandon_of_a_committed_pool_is_an_error_and_changes_nothing() {
    let mut registry = Registry::new();
    committed(&mut registry, K1);
    assert_eq!(
        registry.commit(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(
        registry.abandon(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(pools(&registry), [(K1, p(0), true)]);
    assert_eq!(registry.login(K1), Login::Ready(p(0)));
}

#[test]
fn commit_or_abandon_of_an_abandoned_pool_is_an_error_and_changes_nothing() {
    let mut registry = Registry::new();
    registry.login(K1);
    registry.abandon(p(0)).expect("pool is initializing");
    // The key's new pool is untouched by the old id's calls.
    assert_eq!(registry.login(K1), Login::Created(p(1)));
    assert_eq!(
        registry.commit(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(
        registry.abandon(p(0)),
        Err(RegistryError::NotInitializing(p(0)))
    );
    assert_eq!(pools(&registry), [(K1, p(1), false)]);
    assert_eq!(registry.login(K1), Login::Initializing(p(1)));
}

#[test]
fn registry_error_names_the_pool() {
    assert_eq!(
        RegistryError::NotInitializing(p(3)).to_string(),
        "pool p3 is not initializing"
    );
}

// ----- ids -----

#[test]
fn pool_ids_are_never_reused() {
    let mut registry = Registry::new();
    let mut ids = Vec::new();
    // Created, abandoned, created again.
    ids.push(registry.login(K1).pool());
    registry.abandon(ids[0]).expect("initializing");
    ids.push(registry.login(K1).pool());
    // Committed, collected, created again.
    registry.commit(ids[1]).expect("initializing");
    assert_eq!(registry.gc(empty), [ids[1]]);
    ids.push(registry.login(K1).pool());
    // Another key.
    ids.push(registry.login(K2).pool());
    assert_eq!(ids, [p(0), p(1), p(2), p(3)]);
}

#[test]
fn login_pool_returns_the_id_of_every_variant() {
    assert_eq!(Login::Ready(p(1)).pool(), p(1));
    assert_eq!(Login::Initializing(p(2)).pool(), p(2));
    assert_eq!(Login::Created(p(3)).pool(), p(3));
}
