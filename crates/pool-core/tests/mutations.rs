//! Each mutation puts one seed report's bug back (DESIGN.md section 7). One
//! test per mutation runs the same input sequence without and with it and
//! checks the exact difference: the bug, and nothing else.
#![cfg(feature = "mutations")]

use pool_core::{
    Command, Config, ConnId, ConnState, DisconnectReason, Key, Lifecycle, Login, Mutation, Pool,
    PoolId, Registry, RegistryError, RejectReason, RequestId, ReturnError, Setting, Stats, Time,
    UnknownMutation, Watchdog, WatchdogAction,
};

// ----- helpers -----

const A: Option<Setting> = Some(Setting(1));

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn c(n: u64) -> ConnId {
    ConnId(n)
}

fn r(n: u64) -> RequestId {
    RequestId(n)
}

/// Run `scenario` without `mutation`, then with it: (without, with).
fn both<T>(mutation: Mutation, scenario: impl Fn(Option<Mutation>) -> T) -> (T, T) {
    (scenario(None), scenario(Some(mutation)))
}

/// A pool of `config` running `mutation`, its first commands drained.
fn pool(config: Config, mutation: Option<Mutation>) -> (Pool, Vec<Command>) {
    let mut pool = Pool::new(Time::ZERO, config);
    pool.set_mutation(mutation);
    let cmds = drain(&mut pool);
    (pool, cmds)
}

fn drain(pool: &mut Pool) -> Vec<Command> {
    std::iter::from_fn(|| pool.poll_command()).collect()
}

fn conns(pool: &Pool) -> Vec<(ConnId, ConnState)> {
    pool.conns().collect()
}

fn acquire(pool: &mut Pool, now: u64, request: u64, setting: Option<Setting>) {
    pool.handle_acquire(t(now), r(request), setting, None)
        .expect("fresh request id");
}

fn open(conn: u64, setting: Option<Setting>, replaces: Option<u64>) -> Command {
    Command::Open {
        conn: c(conn),
        setting,
        replaces: replaces.map(c),
    }
}

fn grant(request: u64, conn: u64, setting: Option<Setting>, apply_setting: bool) -> Command {
    Command::Grant {
        request: r(request),
        conn: c(conn),
        setting,
        apply_setting,
        validate: false,
    }
}

fn disconnect(conn: u64, reason: DisconnectReason) -> Command {
    Command::Disconnect {
        conn: c(conn),
        reason,
    }
}

/// The gauges of `stats` that a test compares: (held, opening, idle,
/// borrowed, waiters).
fn gauges(s: &Stats) -> (usize, usize, usize, usize, usize) {
    (s.held, s.opening, s.idle, s.borrowed, s.waiters)
}

// ----- names -----

#[test]
fn mutations_are_available_in_this_build() {
    assert!(Mutation::available());
}

#[test]
fn names_round_trip_through_from_str() {
    for m in Mutation::ALL {
        assert_eq!(m.name().parse::<Mutation>(), Ok(m));
        assert_eq!(m.to_string(), m.name());
    }
}

#[test]
fn an_unknown_name_lists_every_name() {
    let err = "accept-stale".parse::<Mutation>().unwrap_err();
    assert_eq!(err, UnknownMutation("accept-stale".to_owned()));
    let message = err.to_string();
    assert!(
        message.starts_with(
            "unknown mutation `accept-stale`; expected one of: accept-stale-connect, \
             detach-keeps-slot, handoff-while-over-capacity,"
        ),
        "{message}"
    );
    for m in Mutation::ALL {
        assert!(message.contains(m.name()), "{message} lacks {m}");
    }
}

// ----- the pool's mutations -----

/// Bun: a `Connected` after `Closed` for an opening conn.
#[test]
fn accept_stale_connect() {
    let (without, with) = both(Mutation::AcceptStaleConnect, |m| {
        let (mut pool, _) = pool(Config::without_timers(1), m);
        acquire(&mut pool, 0, 0, None);
        assert_eq!(drain(&mut pool), [open(0, None, None)]);
        pool.handle_closed(t(1), c(0));
        assert_eq!(
            drain(&mut pool),
            [Command::Reject {
                request: r(0),
                reason: RejectReason::ConnectFailed
            }]
        );
        pool.handle_connected(t(2), c(0));
        let s = pool.stats();
        (drain(&mut pool), conns(&pool), gauges(&s), s.stale_events)
    });
    assert_eq!(without, (vec![], vec![], (0, 0, 0, 0, 0), 1));
    // The dead conn is back in the pool, idle: a ghost.
    assert_eq!(
        with,
        (vec![], vec![(c(0), ConnState::Idle)], (1, 0, 1, 0, 0), 0)
    );
}

/// Hatchet: detaching a borrowed conn, with a waiter for its slot.
#[test]
fn detach_keeps_slot() {
    let (without, with) = both(Mutation::DetachKeepsSlot, |m| {
        let (mut pool, _) = pool(Config::without_timers(1), m);
        acquire(&mut pool, 0, 0, None);
        pool.handle_connected(t(0), c(0));
        acquire(&mut pool, 0, 1, None);
        assert_eq!(
            drain(&mut pool),
            [open(0, None, None), grant(0, 0, None, false)]
        );
        pool.handle_detach(t(1), c(0)).expect("c0 is borrowed");
        let cmds = drain(&mut pool);
        let s = pool.stats();
        let again = pool.handle_detach(t(2), c(0));
        (cmds, gauges(&s), s.detached, again)
    });
    // The slot is freed at once and the waiter gets a connect; c0 is gone.
    let gone = Err(ReturnError::NotBorrowed {
        conn: c(0),
        state: None,
    });
    assert_eq!(
        without,
        (vec![open(1, None, None)], (1, 1, 0, 0, 1), 1, gone)
    );
    // The slot stays held by c0, the waiter starves, and c0 detaches twice.
    assert_eq!(with, (vec![], (1, 0, 0, 1, 1), 1, Ok(())));
}

/// Vitess (1): a release while over capacity, with a waiter.
#[test]
fn handoff_while_over_capacity() {
    let (without, with) = both(Mutation::HandoffWhileOverCapacity, |m| {
        let (mut pool, _) = pool(Config::without_timers(2), m);
        acquire(&mut pool, 0, 0, None);
        acquire(&mut pool, 0, 1, None);
        pool.handle_connected(t(0), c(0));
        pool.handle_connected(t(0), c(1));
        acquire(&mut pool, 0, 2, None);
        pool.handle_set_capacity(t(1), 1);
        assert_eq!(
            drain(&mut pool),
            [
                open(0, None, None),
                open(1, None, None),
                grant(0, 0, None, false),
                grant(1, 1, None, false),
            ]
        );
        pool.handle_recycle(t(2), c(0)).expect("c0 is borrowed");
        (drain(&mut pool), gauges(&pool.stats()))
    });
    // Down to capacity: c0 is closed and the waiter keeps waiting.
    assert_eq!(
        without,
        (
            vec![disconnect(0, DisconnectReason::OverCapacity)],
            (1, 0, 0, 1, 1)
        )
    );
    // Still two held for a capacity of one.
    assert_eq!(with, (vec![grant(2, 0, None, false)], (2, 0, 0, 2, 0)));
}

/// Vitess (2, 3): a conn past its max lifetime comes back during Close, with
/// an idle floor to refill.
#[test]
fn reopen_ignores_close() {
    let (without, with) = both(Mutation::ReopenIgnoresClose, |m| {
        let config = Config {
            min_idle: 1,
            max_lifetime_ms: 100,
            ..Config::without_timers(1)
        };
        let (mut pool, cmds) = pool(config, m);
        assert_eq!(cmds, [open(0, None, None)]);
        pool.handle_connected(t(0), c(0));
        acquire(&mut pool, 0, 0, None);
        pool.handle_close(t(50), None).expect("open");
        assert_eq!(drain(&mut pool), [grant(0, 0, None, false)]);
        pool.handle_recycle(t(200), c(0)).expect("c0 is borrowed");
        let s = pool.stats();
        (drain(&mut pool), s.lifecycle, gauges(&s), s.reopened)
    });
    let retire = disconnect(0, DisconnectReason::Lifetime);
    assert_eq!(
        without,
        (
            vec![retire.clone(), Command::CloseComplete { leaked: 0 }],
            Lifecycle::Closed,
            (0, 0, 0, 0, 0),
            0
        )
    );
    // An Open after Close began, and Close waits on it.
    assert_eq!(
        with,
        (
            vec![retire, open(1, None, Some(0))],
            Lifecycle::Closing,
            (1, 1, 0, 0, 0),
            1
        )
    );
}

/// Vitess (4): an idle conn with a setting retires at its max lifetime, with
/// an idle floor to refill.
#[test]
fn reopen_drops_setting() {
    let (without, with) = both(Mutation::ReopenDropsSetting, |m| {
        let config = Config {
            min_idle: 1,
            max_lifetime_ms: 100,
            ..Config::without_timers(1)
        };
        let (mut pool, cmds) = pool(config, m);
        assert_eq!(cmds, [open(0, None, None)]);
        pool.handle_connected(t(0), c(0));
        acquire(&mut pool, 0, 0, A);
        pool.handle_recycle(t(10), c(0)).expect("c0 is borrowed");
        assert_eq!(drain(&mut pool), [grant(0, 0, A, true)]);
        assert_eq!(pool.poll_timeout(), Some(t(100)));
        pool.handle_timeout(t(100));
        (drain(&mut pool), pool.stats().reopened)
    });
    let retire = disconnect(0, DisconnectReason::Lifetime);
    assert_eq!(without, (vec![retire.clone(), open(1, A, Some(0))], 1));
    assert_eq!(with, (vec![retire, open(1, None, Some(0))], 1));
}

// ----- the registry's mutations -----

fn registry(mutation: Option<Mutation>) -> Registry {
    let mut registry = Registry::new();
    registry.set_mutation(mutation);
    registry
}

/// pg_doorman: a GC sweep while a pool's first connect is in flight.
#[test]
fn gc_removes_initializing() {
    let (without, with) = both(Mutation::GcRemovesInitializing, |m| {
        let mut registry = registry(m);
        assert_eq!(registry.login(Key(1)), Login::Created(PoolId(0)));
        // The first connect is opening: held, but neither idle nor borrowed.
        let removed = registry.gc(|_| Stats {
            held: 1,
            opening: 1,
            idle: 0,
            borrowed: 0,
            waiters: 0,
            ..Stats::default()
        });
        let commit = registry.commit(PoolId(0));
        (removed, commit, registry.login(Key(1)))
    });
    assert_eq!(without, (vec![], Ok(()), Login::Ready(PoolId(0))));
    // The pool is gone mid-connect: its commit fails and the next login
    // builds another.
    assert_eq!(
        with,
        (
            vec![PoolId(0)],
            Err(RegistryError::NotInitializing(PoolId(0))),
            Login::Created(PoolId(1))
        )
    );
}

/// pg_doorman's reverted 089fc22: two concurrent first logins for one key.
#[test]
fn register_after_connect() {
    let (without, with) = both(Mutation::RegisterAfterConnect, |m| {
        let mut registry = registry(m);
        let logins = [registry.login(Key(1)), registry.login(Key(1))];
        (logins, registry.pools().collect::<Vec<_>>())
    });
    assert_eq!(
        without,
        (
            [Login::Created(PoolId(0)), Login::Initializing(PoolId(0))],
            vec![(Key(1), PoolId(0), false)]
        )
    );
    // Two pools for one key, neither registered yet.
    assert_eq!(
        with,
        (
            [Login::Created(PoolId(0)), Login::Created(PoolId(1))],
            vec![]
        )
    );
}

// ----- the watchdog's mutation -----

/// postgres-mcp: the process is orphaned.
#[test]
fn orphan_keeps_pool() {
    let (without, with) = both(Mutation::OrphanKeepsPool, |m| {
        let mut w = Watchdog::new(t(0), 100);
        w.set_mutation(m);
        w.handle_orphaned(t(150));
        let due = w.poll_timeout();
        (due, w.handle_timeout(t(200)), w.poll_timeout())
    });
    assert_eq!(
        without,
        (Some(t(200)), Some(WatchdogAction::ClosePool), None)
    );
    // The check runs but nothing closes the pool.
    assert_eq!(with, (Some(t(200)), None, None));
}

/// Every seed report's mutation has its test above, named after it. (The
/// mutations of the bug classes are proven by `cargo xtask hunt`, which CI
/// runs: each is caught by the simulator within 10,000 seeds.)
#[test]
fn every_seed_report_mutation_is_covered() {
    let tested = [
        "accept-stale-connect",
        "detach-keeps-slot",
        "handoff-while-over-capacity",
        "reopen-ignores-close",
        "reopen-drops-setting",
        "gc-removes-initializing",
        "register-after-connect",
        "orphan-keeps-pool",
    ];
    let seed_reports: Vec<&str> = Mutation::ALL
        .iter()
        .filter(|m| m.origin().starts_with("seed "))
        .map(|m| m.name())
        .collect();
    assert_eq!(seed_reports, tested);
}
