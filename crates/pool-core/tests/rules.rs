//! The reference pool's behaviour, one test (or more) per numbered rule of
//! DESIGN.md section 3, plus the timers, controls, defaults and counters.
//!
//! Every test drives the pool through its public API only and checks the
//! exact commands it emits (drained in order) and/or its `stats()`.

use pool_core::{
    AbortReason, AcquireError, CancelError, CloseError, Command, Config, ConnId, ConnState,
    DisconnectReason, Input, InputError, Lifecycle, Pool, RejectReason, RequestId, ReturnError,
    Setting, Stats, Time,
};

// ----- helpers -----

const A: Option<Setting> = Some(Setting(1));
const B: Option<Setting> = Some(Setting(2));
const C: Option<Setting> = Some(Setting(3));

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

fn c(n: u64) -> ConnId {
    ConnId(n)
}

fn r(n: u64) -> RequestId {
    RequestId(n)
}

/// Every command the pool has queued, in order.
fn drain(pool: &mut Pool) -> Vec<Command> {
    std::iter::from_fn(|| pool.poll_command()).collect()
}

fn conns(pool: &Pool) -> Vec<(ConnId, ConnState)> {
    pool.conns().collect()
}

fn open(conn: u64, setting: Option<Setting>) -> Command {
    Command::Open {
        conn: c(conn),
        setting,
        replaces: None,
    }
}

fn reopen(conn: u64, setting: Option<Setting>, replaces: u64) -> Command {
    Command::Open {
        conn: c(conn),
        setting,
        replaces: Some(c(replaces)),
    }
}

/// A grant of a connection that already carries the wanted setting.
fn grant(request: u64, conn: u64, setting: Option<Setting>) -> Command {
    Command::Grant {
        request: r(request),
        conn: c(conn),
        setting,
        apply_setting: false,
        validate: false,
    }
}

/// A grant of a connection whose setting the shell must change first.
fn grant_applying(request: u64, conn: u64, setting: Option<Setting>) -> Command {
    Command::Grant {
        request: r(request),
        conn: c(conn),
        setting,
        apply_setting: true,
        validate: false,
    }
}

fn reject(request: u64, reason: RejectReason) -> Command {
    Command::Reject {
        request: r(request),
        reason,
    }
}

fn disconnect(conn: u64, reason: DisconnectReason) -> Command {
    Command::Disconnect {
        conn: c(conn),
        reason,
    }
}

fn abort(conn: u64, reason: AbortReason) -> Command {
    Command::Abort {
        conn: c(conn),
        reason,
    }
}

fn acquire(pool: &mut Pool, now: u64, request: u64, setting: Option<Setting>) {
    pool.handle_acquire(t(now), r(request), setting, None)
        .expect("fresh request id");
}

fn release(pool: &mut Pool, now: u64, conn: ConnId) {
    pool.handle_recycle(t(now), conn).expect("conn is borrowed");
}

/// Acquire `request` and, if the pool opens a connection for it, connect
/// it; the request must then be granted. Returns the granted connection.
fn checkout(pool: &mut Pool, now: u64, request: u64, setting: Option<Setting>) -> ConnId {
    acquire(pool, now, request, setting);
    let mut cmds = drain(pool);
    if let [Command::Open { conn, .. }] = cmds[..] {
        pool.handle_connected(t(now), conn);
        cmds = drain(pool);
    }
    match cmds[..] {
        [
            Command::Grant {
                request: got, conn, ..
            },
        ] if got == r(request) => conn,
        _ => panic!("request {request} was not granted at once: {cmds:?}"),
    }
}

/// A pool of `max_size` holding one idle connection per setting, c0 first
/// (the least recently returned).
fn idle_pool(max_size: usize, settings: &[Option<Setting>]) -> Pool {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(max_size));
    let taken: Vec<ConnId> = settings
        .iter()
        .zip(0..)
        .map(|(&setting, i)| checkout(&mut pool, 0, i, setting))
        .collect();
    for conn in taken {
        release(&mut pool, 0, conn);
    }
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().idle, settings.len());
    pool
}

/// A pool of one with an idle floor of one, whose only conn c0 (connected
/// at 0) has been handed out with `setting`; the retired conn is needed.
fn floor_pool_with_borrowed(config: Config, setting: Option<Setting>) -> Pool {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 1,
            ..config
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_connected(t(0), c(0));
    acquire(&mut pool, 0, 0, setting);
    assert_eq!(drain(&mut pool), vec![grant_applying(0, 0, setting)]);
    pool
}

/// Everything the caller can observe about the pool without changing it.
fn snapshot(pool: &Pool) -> (Stats, Vec<(ConnId, ConnState)>, Option<Time>) {
    (pool.stats(), conns(pool), pool.poll_timeout())
}

// ----- rule 1: no Open or Grant beyond capacity -----

#[test]
fn rule_01_open_never_exceeds_capacity() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    for i in 0..4 {
        acquire(&mut pool, 0, i, None);
    }
    assert_eq!(drain(&mut pool), vec![open(0, None), open(1, None)]);
    let s = pool.stats();
    assert_eq!((s.held, s.opening, s.waiters), (2, 2, 4));

    pool.handle_connected(t(1), c(0));
    pool.handle_connected(t(1), c(1));
    // Connects free no slot: the two later waiters get no Open.
    assert_eq!(drain(&mut pool), vec![grant(0, 0, None), grant(1, 1, None)]);
    let s = pool.stats();
    assert_eq!((s.held, s.borrowed, s.waiters, s.opened), (2, 2, 2, 2));
}

#[test]
fn rule_01_min_idle_is_capped_by_capacity() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 5,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None), open(1, None)]);
    pool.handle_connected(t(0), c(0));
    pool.handle_connected(t(0), c(1));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().held, 2);
}

// ----- rule 2: FIFO waiters, setting preference -----

#[test]
fn rule_02_waiters_served_fifo() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    for i in 1..=3 {
        acquire(&mut pool, i, i, None);
    }
    assert_eq!(drain(&mut pool), vec![]);
    for i in 1..=3 {
        release(&mut pool, 10 * i, c0);
        assert_eq!(drain(&mut pool), vec![grant(i, 0, None)]);
    }
    release(&mut pool, 40, c0);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.conn_state(c0), Some(ConnState::Idle));
}

#[test]
fn rule_02_waiters_served_fifo_across_settings() {
    // The oldest waiter wants a setting no connection has: a returned
    // connection still goes to it (re-applying the setting) rather than to a
    // younger waiter whose setting matches.
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, A);
    acquire(&mut pool, 2, 2, None);
    assert_eq!(drain(&mut pool), vec![]);

    release(&mut pool, 3, c0);
    assert_eq!(drain(&mut pool), vec![grant_applying(1, 0, A)]);
    release(&mut pool, 4, c0);
    assert_eq!(drain(&mut pool), vec![grant_applying(2, 0, None)]);
}

#[test]
fn rule_02_connects_finishing_out_of_order_serve_oldest_waiter_first() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    acquire(&mut pool, 0, 0, A);
    acquire(&mut pool, 0, 1, B);
    // Each connect is opened with the setting of the waiter it is for.
    assert_eq!(drain(&mut pool), vec![open(0, A), open(1, B)]);

    pool.handle_connected(t(1), c(1));
    assert_eq!(drain(&mut pool), vec![grant_applying(0, 1, A)]);
    pool.handle_connected(t(2), c(0));
    assert_eq!(drain(&mut pool), vec![grant_applying(1, 0, B)]);
}

#[test]
fn rule_02_idle_conn_with_wanted_setting_preferred() {
    // c0: none, c1: A, c2: B; c2 is the most recently returned.
    let mut pool = idle_pool(3, &[None, A, B]);

    acquire(&mut pool, 10, 10, A);
    assert_eq!(drain(&mut pool), vec![grant(10, 1, A)]);
    // No idle conn has C: the most recently returned one is re-set.
    acquire(&mut pool, 11, 11, C);
    assert_eq!(drain(&mut pool), vec![grant_applying(11, 2, C)]);
    acquire(&mut pool, 12, 12, None);
    assert_eq!(drain(&mut pool), vec![grant(12, 0, None)]);
    assert_eq!(pool.stats().opened, 3);
}

// ----- rule 3: every freed slot or yielded conn re-runs serving -----

#[test]
fn rule_03_release_serves_waiter() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, None);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().waiters, 1);

    release(&mut pool, 2, c0);
    assert_eq!(drain(&mut pool), vec![grant(1, 0, None)]);
    let s = pool.stats();
    assert_eq!((s.waiters, s.borrowed, s.idle, s.opened), (0, 1, 0, 1));
}

#[test]
fn rule_03_connect_error_reaches_waiter_promptly() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            reconnect_backoff_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    acquire(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    assert_eq!(drain(&mut pool), vec![open(0, None)]);

    // The oldest waiter hears of the failure at once, and the next waiter
    // gets a new connect at once: backoff only delays the idle floor.
    pool.handle_connect_failed(t(5), c(0));
    assert_eq!(
        drain(&mut pool),
        vec![reject(0, RejectReason::ConnectFailed), open(1, None)]
    );
    let s = pool.stats();
    assert_eq!((s.connect_failures, s.rejected, s.waiters), (1, 1, 1));
}

#[test]
fn rule_03_connect_error_with_connect_still_in_flight_opens_nothing_more() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    acquire(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    assert_eq!(drain(&mut pool), vec![open(0, None), open(1, None)]);

    pool.handle_connect_failed(t(1), c(0));
    // r1 is still covered by c1's connect.
    assert_eq!(
        drain(&mut pool),
        vec![reject(0, RejectReason::ConnectFailed)]
    );
    pool.handle_connected(t(2), c(1));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, None)]);
}

#[test]
fn rule_03_conn_closed_while_borrowed_serves_waiter_on_return() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, None);
    pool.handle_closed(t(2), c0);
    // The slot is still held by the borrower.
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().held, 1);
    assert_eq!(pool.stats().closed_by_server, 1);

    // Already closed by the server: no Disconnect, but the slot serves r1.
    release(&mut pool, 3, c0);
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    assert_eq!(pool.stats().disconnected, 0);
}

#[test]
fn rule_03_server_close_of_idle_conn_refills_min_idle() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 1,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_connected(t(0), c(0));
    assert_eq!(drain(&mut pool), vec![]);

    pool.handle_closed(t(1), c(0));
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    let s = pool.stats();
    assert_eq!((s.closed_by_server, s.disconnected, s.held), (1, 0, 1));
}

#[test]
fn rule_03_waiter_deadline_rejects_with_timeout() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    pool.handle_acquire(t(0), r(1), None, Some(t(500))).unwrap();
    assert_eq!(pool.poll_timeout(), Some(t(500)));
    pool.handle_timeout(t(499));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(500));
    assert_eq!(drain(&mut pool), vec![reject(1, RejectReason::Timeout)]);
    let s = pool.stats();
    assert_eq!((s.rejected, s.timed_out, s.waiters), (1, 1, 0));

    // The timed-out waiter is gone: the conn goes idle.
    release(&mut pool, 600, c0);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().idle, 1);
}

// ----- rule 4: stale and unknown transport events -----

#[test]
fn rule_04_stale_connected_after_closed_is_ignored_and_counted() {
    // Bun: FIN with ReadyForQuery, on_close first, deferred on_connect after.
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    acquire(&mut pool, 0, 0, None);
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_closed(t(1), c(0));
    assert_eq!(
        drain(&mut pool),
        vec![reject(0, RejectReason::ConnectFailed)]
    );

    let before = pool.stats();
    pool.handle_connected(t(1), c(0));
    // Nothing at all: no ghost idle conn, no command.
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(
        pool.stats(),
        Stats {
            stale_events: before.stale_events + 1,
            ..before
        }
    );
    assert_eq!(conns(&pool), vec![]);

    // The next acquire opens a new conn instead of granting the ghost.
    acquire(&mut pool, 2, 1, None);
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
}

#[test]
fn rule_04_second_closed_is_ignored_and_counted() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    pool.handle_closed(t(1), c0);
    pool.handle_closed(t(2), c0);
    assert_eq!(drain(&mut pool), vec![]);
    let s = pool.stats();
    assert_eq!((s.closed_by_server, s.stale_events), (1, 1));
    assert_eq!(pool.conn_state(c0), Some(ConnState::Borrowed));

    // An idle conn closed twice: dropped once, then counted.
    let c1 = checkout(&mut pool, 3, 1, None);
    release(&mut pool, 4, c1);
    pool.handle_closed(t(5), c1);
    assert_eq!(drain(&mut pool), vec![]);
    let before = pool.stats();
    assert_eq!((before.closed_by_server, before.held), (2, 1));
    pool.handle_closed(t(6), c1);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(
        pool.stats(),
        Stats {
            stale_events: before.stale_events + 1,
            ..before
        }
    );
}

#[test]
fn rule_04_unknown_ids_are_ignored_and_counted() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    let before = snapshot(&pool);
    pool.handle_connected(t(1), c(7));
    pool.handle_connect_failed(t(1), c(7));
    pool.handle_closed(t(1), c(7));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(
        snapshot(&pool),
        (
            Stats {
                unknown_events: 3,
                ..before.0
            },
            vec![(c0, ConnState::Borrowed)],
            None
        )
    );
}

#[test]
fn rule_04_events_in_the_wrong_state_are_ignored_and_counted() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    let c1 = checkout(&mut pool, 0, 1, None);
    release(&mut pool, 1, c1);
    let before = snapshot(&pool);

    // A second Connected, and a ConnectFailed, for live conns.
    pool.handle_connected(t(2), c0);
    pool.handle_connected(t(2), c1);
    pool.handle_connect_failed(t(2), c0);
    pool.handle_connect_failed(t(2), c1);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(
        snapshot(&pool),
        (
            Stats {
                stale_events: 4,
                ..before.0
            },
            before.1,
            before.2
        )
    );
}

// ----- rule 5: over capacity, a returned conn is disconnected -----

#[test]
fn rule_05_returned_conn_disconnected_while_over_capacity() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    let c1 = checkout(&mut pool, 0, 1, None);
    acquire(&mut pool, 1, 2, None);
    pool.handle_set_capacity(t(2), 1);
    // Nothing idle or opening to shed: borrowed conns wait for their return.
    assert_eq!(drain(&mut pool), vec![]);
    let s = pool.stats();
    assert_eq!((s.capacity, s.held, s.waiters), (1, 2, 1));

    // Vitess: not handed waiter-to-waiter while over capacity.
    release(&mut pool, 3, c0);
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::OverCapacity)]
    );
    assert_eq!(pool.stats().held, 1);

    // At capacity again: the next return serves the waiter.
    release(&mut pool, 4, c1);
    assert_eq!(drain(&mut pool), vec![grant(2, 1, None)]);
}

#[test]
fn rule_05_expired_conn_not_reopened_while_over_capacity() {
    // The idle floor would want the retired conn replaced, but the pool is
    // over capacity.
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 2,
            max_lifetime_ms: 1_000,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None), open(1, None)]);
    pool.handle_connected(t(0), c(0));
    pool.handle_connected(t(0), c(1));
    acquire(&mut pool, 0, 0, A);
    acquire(&mut pool, 0, 1, None);
    assert_eq!(
        drain(&mut pool),
        vec![grant_applying(0, 1, A), grant(1, 0, None)]
    );
    pool.handle_set_capacity(t(10), 1);
    assert_eq!(drain(&mut pool), vec![]);
    release(&mut pool, 1_000, c(1));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(1, DisconnectReason::Lifetime)]
    );
    let s = pool.stats();
    assert_eq!((s.held, s.reopened, s.opened), (1, 0, 2));
}

// ----- rule 6: Close -----

#[test]
fn rule_06_close_rejects_waiters_aborts_connects_disconnects_idle() {
    // Waiters and idle conns never coexist between inputs, so the waiters
    // have their own test below; here: one borrowed, one idle, one opening.
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(3));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    acquire(&mut pool, 0, 2, None);
    pool.handle_cancel(t(0), r(1)).unwrap();
    pool.handle_cancel(t(0), r(2)).unwrap();
    pool.handle_connected(t(1), c(1));
    assert_eq!(drain(&mut pool), vec![open(1, None), open(2, None)]);
    assert_eq!(
        conns(&pool),
        vec![
            (c0, ConnState::Borrowed),
            (c(1), ConnState::Idle),
            (c(2), ConnState::Opening)
        ]
    );

    pool.handle_close(t(2), None).unwrap();
    assert_eq!(
        drain(&mut pool),
        vec![
            abort(2, AbortReason::Closing),
            disconnect(1, DisconnectReason::Closing)
        ]
    );
    let s = pool.stats();
    assert_eq!(
        (s.lifecycle, s.held, s.borrowed),
        (Lifecycle::Closing, 1, 1)
    );

    // The borrowed conn is disconnected when it comes back, and then Close
    // completes with nothing leaked.
    release(&mut pool, 3, c0);
    assert_eq!(
        drain(&mut pool),
        vec![
            disconnect(0, DisconnectReason::Closing),
            Command::CloseComplete { leaked: 0 }
        ]
    );
    assert_eq!(pool.stats().lifecycle, Lifecycle::Closed);
    assert_eq!(pool.stats().held, 0);
}

#[test]
fn rule_06_close_rejects_every_waiter() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            acquire_timeout_ms: 5_000,
            ..Config::without_timers(2)
        },
    );
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    acquire(&mut pool, 0, 2, None);
    assert_eq!(drain(&mut pool), vec![open(1, None)]);

    pool.handle_close(t(1), None).unwrap();
    assert_eq!(
        drain(&mut pool),
        vec![
            reject(1, RejectReason::Closed),
            reject(2, RejectReason::Closed),
            abort(1, AbortReason::Closing),
        ]
    );
    // Their deadlines are disarmed: no later Timeout rejects.
    assert_eq!(pool.poll_timeout(), None);
    pool.handle_timeout(t(10_000));
    assert_eq!(drain(&mut pool), vec![]);
    let s = pool.stats();
    assert_eq!((s.rejected, s.timed_out, s.waiters), (2, 0, 0));
    pool.handle_taint(t(10_001), c0).unwrap();
    assert_eq!(
        drain(&mut pool),
        vec![
            disconnect(0, DisconnectReason::Tainted),
            Command::CloseComplete { leaked: 0 }
        ]
    );
}

#[test]
fn rule_06_close_with_nothing_held_completes_at_once() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    pool.handle_close(t(0), Some(t(1_000))).unwrap();
    assert_eq!(drain(&mut pool), vec![Command::CloseComplete { leaked: 0 }]);
    assert_eq!(pool.stats().lifecycle, Lifecycle::Closed);
    assert_eq!(pool.poll_timeout(), None);
}

#[test]
fn rule_06_close_completes_at_deadline_reporting_leaks() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(3));
    let c0 = checkout(&mut pool, 0, 0, None);
    let c1 = checkout(&mut pool, 0, 1, None);
    let c2 = checkout(&mut pool, 0, 2, None);
    pool.handle_close(t(100), Some(t(5_000))).unwrap();
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), Some(t(5_000)));

    release(&mut pool, 4_000, c0);
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Closing)]
    );
    pool.handle_timeout(t(4_999));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(5_000));
    assert_eq!(drain(&mut pool), vec![Command::CloseComplete { leaked: 2 }]);
    assert_eq!(pool.stats().lifecycle, Lifecycle::Closed);

    // Leaked conns are still disconnected when they come back, and Close
    // does not complete twice.
    release(&mut pool, 6_000, c1);
    pool.handle_detach(t(6_000), c2).unwrap();
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(1, DisconnectReason::Closing)]
    );
    let s = pool.stats();
    assert_eq!((s.held, s.detached), (0, 1));
}

#[test]
fn rule_06_no_open_after_close() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 1,
            max_lifetime_ms: 1_000,
            reconnect_backoff_ms: 500,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_connected(t(0), c(0));
    acquire(&mut pool, 0, 0, None);
    // The grant leaves the idle floor empty: refill it.
    assert_eq!(drain(&mut pool), vec![grant(0, 0, None), open(1, None)]);
    // A failed refill arms the backoff timer.
    pool.handle_connect_failed(t(10), c(1));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), Some(t(510)));

    pool.handle_close(t(20), None).unwrap();
    assert_eq!(drain(&mut pool), vec![]);
    let opened = pool.stats().opened;

    // Neither the backoff timer, nor the lifetime of the borrowed conn, nor
    // its return, nor a capacity change, nor a late Connected opens anything.
    pool.handle_timeout(t(600));
    pool.handle_timeout(t(1_000));
    pool.handle_set_capacity(t(1_050), 5);
    pool.handle_connected(t(1_060), c(1));
    assert_eq!(drain(&mut pool), vec![]);
    release(&mut pool, 1_100, c(0));
    assert_eq!(
        drain(&mut pool),
        vec![
            disconnect(0, DisconnectReason::Lifetime),
            Command::CloseComplete { leaked: 0 }
        ]
    );
    let s = pool.stats();
    assert_eq!((s.opened, s.reopened, s.capacity), (opened, 0, 2));
}

#[test]
fn rule_06_acquire_after_close_is_rejected() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    pool.handle_close(t(1), None).unwrap();
    acquire(&mut pool, 2, 1, None);
    assert_eq!(drain(&mut pool), vec![reject(1, RejectReason::Closed)]);
    release(&mut pool, 3, c0);
    assert_eq!(
        drain(&mut pool),
        vec![
            disconnect(0, DisconnectReason::Closing),
            Command::CloseComplete { leaked: 0 }
        ]
    );
    acquire(&mut pool, 4, 2, None);
    assert_eq!(drain(&mut pool), vec![reject(2, RejectReason::Closed)]);
    let s = pool.stats();
    assert_eq!((s.rejected, s.waiters, s.opened), (2, 0, 1));
}

#[test]
fn rule_06_set_capacity_after_close_does_nothing() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let _c0 = checkout(&mut pool, 0, 0, None);
    pool.handle_close(t(1), None).unwrap();
    let before = snapshot(&pool);
    pool.handle_set_capacity(t(2), 0);
    pool.handle_set_capacity(t(2), 9);
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(snapshot(&pool), before);
    assert_eq!(pool.stats().capacity, 2);
}

// ----- rule 7: idle timeout, max lifetime -----

#[test]
fn rule_07_idle_timeout_closes_down_to_min_idle() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 1,
            idle_timeout_ms: 1_000,
            ..Config::without_timers(3)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_connected(t(0), c(0));
    acquire(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    pool.handle_connected(t(0), c(1));
    pool.handle_connected(t(0), c(2));
    assert_eq!(
        drain(&mut pool),
        vec![
            grant(0, 0, None),
            open(1, None),
            grant(1, 1, None),
            open(2, None)
        ]
    );
    release(&mut pool, 100, c(0));
    release(&mut pool, 200, c(1));
    assert_eq!(pool.stats().idle, 3);
    assert_eq!(pool.poll_timeout(), Some(t(1_000)));

    pool.handle_timeout(t(1_000));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(2, DisconnectReason::IdleTimeout)]
    );
    pool.handle_timeout(t(1_100));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::IdleTimeout)]
    );
    // The last idle conn is the floor: kept, with no timer left to wake for.
    pool.handle_timeout(t(1_200));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), None);
    pool.handle_timeout(t(60_000));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(conns(&pool), vec![(c(1), ConnState::Idle)]);
    assert_eq!(pool.stats().disconnected, 2);
}

#[test]
fn rule_07_idle_timeout_restarts_on_each_return() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            idle_timeout_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    let c0 = checkout(&mut pool, 0, 0, None);
    release(&mut pool, 0, c0);
    let c0 = checkout(&mut pool, 900, 1, None);
    release(&mut pool, 950, c0);
    pool.handle_timeout(t(1_000));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_950));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::IdleTimeout)]
    );
}

#[test]
fn rule_07_max_lifetime_reopen_keeps_setting() {
    let config = Config {
        max_lifetime_ms: 1_000,
        ..Config::without_timers(1)
    };
    let mut pool = floor_pool_with_borrowed(config, A);
    release(&mut pool, 10, c(0));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), Some(t(1_000)));
    pool.handle_timeout(t(999));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_000));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Lifetime), reopen(1, A, 0)]
    );
    assert_eq!(pool.stats().reopened, 1);

    pool.handle_connected(t(1_010), c(1));
    acquire(&mut pool, 1_020, 1, A);
    assert_eq!(drain(&mut pool), vec![grant(1, 1, A)]);
}

#[test]
fn rule_07_max_lifetime_without_floor_retires_without_reopen() {
    // Seed 004: reopening every retired conn would keep an idle pool at its
    // high-water mark when max_lifetime < idle_timeout; only the floor is
    // refilled.
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            max_lifetime_ms: 1_000,
            idle_timeout_ms: 5_000,
            ..Config::without_timers(2)
        },
    );
    let c0 = checkout(&mut pool, 0, 0, A);
    release(&mut pool, 10, c0);
    pool.handle_timeout(t(1_000));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Lifetime)]
    );
    let s = pool.stats();
    assert_eq!((s.held, s.reopened, s.opened), (0, 0, 1));
    assert_eq!(pool.poll_timeout(), None);
}

#[test]
fn rule_07_borrowed_conn_never_disconnected_by_timer() {
    let config = Config {
        idle_timeout_ms: 100,
        max_lifetime_ms: 1_000,
        ..Config::without_timers(1)
    };
    let mut pool = floor_pool_with_borrowed(config, A);
    let c0 = c(0);
    pool.handle_timeout(t(1_000));
    pool.handle_timeout(t(50_000));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.conn_state(c0), Some(ConnState::Borrowed));
    assert_eq!(pool.stats().disconnected, 0);

    // It retires on return, replaced with its setting.
    release(&mut pool, 50_000, c0);
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Lifetime), reopen(1, A, 0)]
    );
}

#[test]
fn rule_07_conn_past_lifetime_retires_on_return_before_its_timer_fires() {
    let config = Config {
        max_lifetime_ms: 1_000,
        ..Config::without_timers(1)
    };
    let mut pool = floor_pool_with_borrowed(config, B);
    let c0 = c(0);
    // No handle_timeout: the release itself sees the lifetime has passed.
    release(&mut pool, 1_500, c0);
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Lifetime), reopen(1, B, 0)]
    );
}

#[test]
fn rule_07_zero_disables_timers() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    // No connect, acquire, idle or lifetime timer.
    assert_eq!(pool.poll_timeout(), None);
    release(&mut pool, 1, c0);
    assert_eq!(drain(&mut pool), vec![grant(1, 0, None)]);
    release(&mut pool, 2, c0);
    assert_eq!(pool.poll_timeout(), None);

    pool.handle_timeout(t(u64::MAX));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(
        conns(&pool),
        vec![(c0, ConnState::Idle), (c(1), ConnState::Opening)]
    );
}

// ----- rule 8: Detach -----

#[test]
fn rule_08_detach_frees_slot_once() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, None);
    assert_eq!(drain(&mut pool), vec![]);

    // The slot is free at once: the waiter gets a connect.
    pool.handle_detach(t(2), c0).unwrap();
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    let s = pool.stats();
    assert_eq!((s.detached, s.held, s.borrowed, s.opening), (1, 1, 0, 1));
    assert_eq!(pool.conn_state(c0), None);

    // ... and only once: a second detach, a release and a server close of
    // the detached conn free nothing more.
    assert_eq!(
        pool.handle_detach(t(3), c0),
        Err(ReturnError::NotBorrowed {
            conn: c0,
            state: None
        })
    );
    assert!(pool.handle_recycle(t(3), c0).is_err());
    pool.handle_closed(t(4), c0);
    assert_eq!(drain(&mut pool), vec![]);
    let s = pool.stats();
    assert_eq!((s.detached, s.held, s.stale_events), (1, 1, 1));

    pool.handle_connected(t(5), c(1));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, None)]);
}

// ----- rule 9: Taint -----

#[test]
fn rule_09_taint_disconnects_and_replaces_for_waiter() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, A);
    acquire(&mut pool, 1, 1, B);
    assert_eq!(drain(&mut pool), vec![]);

    pool.handle_taint(t(2), c0).unwrap();
    // The Disconnect that frees the slot precedes the Open that reuses it.
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Tainted), open(1, B)]
    );
    assert_eq!(pool.stats().tainted, 1);
    pool.handle_connected(t(3), c(1));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, B)]);
}

#[test]
fn rule_09_taint_without_waiter_only_disconnects() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(2));
    let c0 = checkout(&mut pool, 0, 0, None);
    pool.handle_taint(t(1), c0).unwrap();
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Tainted)]
    );
    let s = pool.stats();
    assert_eq!((s.held, s.tainted, s.disconnected), (0, 1, 1));
}

#[test]
fn rule_09_taint_of_conn_closed_by_server_is_not_disconnected_again() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, None);
    pool.handle_closed(t(2), c0);
    pool.handle_taint(t(3), c0).unwrap();
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    let s = pool.stats();
    assert_eq!((s.tainted, s.disconnected, s.held), (1, 0, 1));
}

// ----- rule 10: caller mistakes -----

#[test]
fn rule_10_caller_mistake_is_error_without_state_change() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            connect_timeout_ms: 1_000,
            idle_timeout_ms: 2_000,
            ..Config::without_timers(3)
        },
    );
    // c0 borrowed, c1 idle, c2 opening.
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    acquire(&mut pool, 0, 2, None);
    pool.handle_cancel(t(0), r(1)).unwrap();
    pool.handle_cancel(t(0), r(2)).unwrap();
    pool.handle_connected(t(0), c(1));
    drain(&mut pool);
    let before = snapshot(&pool);
    assert_eq!(before.1.len(), 3);

    let not_borrowed = |conn, state| ReturnError::NotBorrowed { conn, state };
    let now = t(500);
    assert_eq!(
        pool.handle_recycle(now, c(1)),
        Err(not_borrowed(c(1), Some(ConnState::Idle)))
    );
    assert_eq!(
        pool.handle_recycle(now, c(2)),
        Err(not_borrowed(c(2), Some(ConnState::Opening)))
    );
    assert_eq!(
        pool.handle_recycle(now, c(9)),
        Err(not_borrowed(c(9), None))
    );
    assert_eq!(
        pool.handle_taint(now, c(1)),
        Err(not_borrowed(c(1), Some(ConnState::Idle)))
    );
    assert_eq!(
        pool.handle_detach(now, c(2)),
        Err(not_borrowed(c(2), Some(ConnState::Opening)))
    );
    assert_eq!(
        pool.handle_cancel(now, r(1)),
        Err(CancelError::NotWaiting(r(1)))
    );
    assert_eq!(
        pool.handle(now, Input::Taint { conn: c(9) }),
        Err(InputError::Return(not_borrowed(c(9), None)))
    );
    assert_eq!(
        pool.handle(now, Input::Cancel { request: r(0) }),
        Err(InputError::Cancel(CancelError::NotWaiting(r(0))))
    );
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(snapshot(&pool), before);

    // The pool still works: c0 comes back normally.
    release(&mut pool, 600, c0);
    assert_eq!(pool.stats().idle, 2);
}

#[test]
fn rule_10_duplicate_acquire_and_second_close_are_errors_without_state_change() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            acquire_timeout_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    let c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    let before = snapshot(&pool);
    assert_eq!(
        pool.handle_acquire(t(10), r(1), A, Some(t(50))),
        Err(AcquireError::DuplicateRequest(r(1)))
    );
    assert_eq!(
        pool.handle(
            t(10),
            Input::Acquire {
                request: r(1),
                setting: None,
                deadline: None
            }
        ),
        Err(InputError::Acquire(AcquireError::DuplicateRequest(r(1))))
    );
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(snapshot(&pool), before);

    pool.handle_close(t(20), Some(t(100))).unwrap();
    assert_eq!(drain(&mut pool), vec![reject(1, RejectReason::Closed)]);
    let before = snapshot(&pool);
    assert_eq!(
        pool.handle_close(t(30), None),
        Err(CloseError::AlreadyClosing)
    );
    assert_eq!(
        pool.handle(t(30), Input::Close { deadline: None }),
        Err(InputError::Close(CloseError::AlreadyClosing))
    );
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(snapshot(&pool), before);

    // The first Close's deadline still stands.
    pool.handle_timeout(t(100));
    assert_eq!(drain(&mut pool), vec![Command::CloseComplete { leaked: 1 }]);
    release(&mut pool, 200, c0);
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::Closing)]
    );
}

#[test]
fn rule_10_refused_input_does_not_move_the_clock() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            acquire_timeout_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    let _c0 = checkout(&mut pool, 0, 0, None);
    assert!(pool.handle_recycle(t(60_000), c(9)).is_err());
    assert!(pool.handle_detach(t(60_000), c(9)).is_err());
    assert!(pool.handle_cancel(t(60_000), r(9)).is_err());
    // The refused inputs' `now` was not taken in: the deadline counts from 10.
    acquire(&mut pool, 10, 1, None);
    assert_eq!(pool.poll_timeout(), Some(t(1_010)));
}

// ----- connect timeout, cancel, capacity changes -----

#[test]
fn connect_timeout_aborts_and_rejects_oldest_waiter() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            connect_timeout_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    acquire(&mut pool, 0, 0, None);
    acquire(&mut pool, 0, 1, None);
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    assert_eq!(pool.poll_timeout(), Some(t(1_000)));

    pool.handle_timeout(t(999));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_000));
    assert_eq!(
        drain(&mut pool),
        vec![
            abort(0, AbortReason::ConnectTimeout),
            reject(0, RejectReason::ConnectFailed),
            open(1, None)
        ]
    );
    assert_eq!(pool.poll_timeout(), Some(t(2_000)));
    let s = pool.stats();
    assert_eq!((s.aborted, s.connect_failures, s.held), (1, 1, 1));

    // The aborted connect finishing late is stale.
    pool.handle_connected(t(1_500), c(0));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_connected(t(1_600), c(1));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, None)]);
    assert_eq!(pool.poll_timeout(), None);
}

#[test]
fn reconnect_backoff_delays_floor_refill_not_waiters() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            min_idle: 1,
            reconnect_backoff_ms: 1_000,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_connect_failed(t(0), c(0));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), Some(t(1_000)));

    acquire(&mut pool, 10, 0, None);
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    pool.handle_cancel(t(20), r(0)).unwrap();
    pool.handle_connect_failed(t(20), c(1));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_000));
    assert_eq!(drain(&mut pool), vec![open(2, None)]);
    // A successful connect ends the backoff.
    pool.handle_connected(t(1_001), c(2));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.poll_timeout(), None);
}

#[test]
fn cancel_removes_waiter_silently() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            acquire_timeout_ms: 1_000,
            ..Config::without_timers(1)
        },
    );
    acquire(&mut pool, 0, 0, None);
    assert_eq!(drain(&mut pool), vec![open(0, None)]);
    pool.handle_cancel(t(1), r(0)).unwrap();
    assert_eq!(drain(&mut pool), vec![]);
    let s = pool.stats();
    assert_eq!((s.cancelled, s.waiters, s.rejected), (1, 0, 0));
    // Its deadline is disarmed.
    assert_eq!(pool.poll_timeout(), None);
    assert_eq!(
        pool.handle_cancel(t(2), r(0)),
        Err(CancelError::NotWaiting(r(0)))
    );

    // The connect made for it still lands, as an idle conn.
    pool.handle_connected(t(3), c(0));
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(conns(&pool), vec![(c(0), ConnState::Idle)]);
}

#[test]
fn cancel_keeps_fifo_for_the_others() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let c0 = checkout(&mut pool, 0, 0, None);
    for i in 1..=3 {
        acquire(&mut pool, i, i, None);
    }
    pool.handle_cancel(t(4), r(2)).unwrap();
    release(&mut pool, 5, c0);
    assert_eq!(drain(&mut pool), vec![grant(1, 0, None)]);
    release(&mut pool, 6, c0);
    assert_eq!(drain(&mut pool), vec![grant(3, 0, None)]);
}

#[test]
fn set_capacity_grow_serves_waiters_at_once() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    let _c0 = checkout(&mut pool, 0, 0, None);
    acquire(&mut pool, 1, 1, A);
    acquire(&mut pool, 1, 2, B);
    acquire(&mut pool, 1, 3, C);
    assert_eq!(drain(&mut pool), vec![]);

    pool.handle_set_capacity(t(2), 3);
    assert_eq!(drain(&mut pool), vec![open(1, A), open(2, B)]);
    assert_eq!(pool.stats().capacity, 3);
    assert_eq!(pool.stats().held, 3);
    pool.handle_connected(t(3), c(1));
    pool.handle_connected(t(3), c(2));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, A), grant(2, 2, B)]);
}

#[test]
fn set_capacity_shrink_disconnects_idle_then_aborts_connects() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(4));
    for i in 0..4 {
        acquire(&mut pool, 0, i, None);
    }
    for i in 0..4 {
        pool.handle_cancel(t(0), r(i)).unwrap();
    }
    pool.handle_connected(t(1), c(0));
    pool.handle_connected(t(2), c(1));
    assert_eq!(
        drain(&mut pool),
        vec![open(0, None), open(1, None), open(2, None), open(3, None)]
    );

    // Oldest idle first, then the newest connects.
    pool.handle_set_capacity(t(3), 1);
    assert_eq!(
        drain(&mut pool),
        vec![
            disconnect(0, DisconnectReason::OverCapacity),
            disconnect(1, DisconnectReason::OverCapacity),
            abort(3, AbortReason::OverCapacity),
        ]
    );
    assert_eq!(conns(&pool), vec![(c(2), ConnState::Opening)]);
    let s = pool.stats();
    assert_eq!(
        (s.capacity, s.held, s.aborted, s.disconnected),
        (1, 1, 1, 2)
    );
}

// ----- defaults -----

#[test]
fn defaults_follow_mainstream_pools() {
    let config = Config::default();
    assert_eq!(
        config,
        Config {
            max_size: 10,
            min_idle: 0,
            idle_timeout_ms: 600_000,
            max_lifetime_ms: 1_800_000,
            acquire_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            reconnect_backoff_ms: 1_000,
            validate_idle_ms: 1_000,
        }
    );

    let mut pool = Pool::new(Time::ZERO, config);
    // min_idle 0: nothing opened up front.
    assert_eq!(drain(&mut pool), vec![]);
    assert_eq!(pool.stats().capacity, 10);

    // At most 10 conns.
    for i in 0..11 {
        acquire(&mut pool, 0, i, None);
    }
    assert_eq!(
        drain(&mut pool),
        (0..10).map(|i| open(i, None)).collect::<Vec<_>>()
    );
    // Connect timeout 10 s.
    assert_eq!(pool.poll_timeout(), Some(t(10_000)));
    for i in 0..10 {
        pool.handle_connected(t(1), c(i));
    }
    assert_eq!(
        drain(&mut pool),
        (0..10).map(|i| grant(i, i, None)).collect::<Vec<_>>()
    );

    // Acquire timeout 30 s.
    assert_eq!(pool.poll_timeout(), Some(t(30_000)));
    pool.handle_timeout(t(29_999));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(30_000));
    assert_eq!(drain(&mut pool), vec![reject(10, RejectReason::Timeout)]);

    // Idle timeout 10 min.
    release(&mut pool, 100_000, c(0));
    assert_eq!(pool.poll_timeout(), Some(t(700_000)));
    pool.handle_timeout(t(699_999));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(700_000));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(0, DisconnectReason::IdleTimeout)]
    );

    // Max lifetime 30 min (c1 connected at 1); min_idle 0: not reopened.
    release(&mut pool, 1_800_000, c(1));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_800_000));
    assert_eq!(drain(&mut pool), vec![]);
    pool.handle_timeout(t(1_800_001));
    assert_eq!(
        drain(&mut pool),
        vec![disconnect(1, DisconnectReason::Lifetime)]
    );
}

// ----- stats -----

#[test]
fn stats_count_every_outcome() {
    let mut pool = Pool::new(
        Time::ZERO,
        Config {
            acquire_timeout_ms: 1_000,
            ..Config::without_timers(2)
        },
    );
    assert_eq!(
        pool.stats(),
        Stats {
            capacity: 2,
            ..Stats::default()
        }
    );

    let c0 = checkout(&mut pool, 0, 0, None); // opened 1, connected 1, granted 1
    acquire(&mut pool, 0, 1, None); // opened 2
    pool.handle_connect_failed(t(1), c(1)); // connect_failures 1, rejected 1
    acquire(&mut pool, 2, 2, None); // opened 3
    pool.handle_cancel(t(2), r(2)).unwrap(); // cancelled 1
    pool.handle_connected(t(3), c(2)); // connected 2, c2 idle
    acquire(&mut pool, 4, 3, None); // granted 2 (c2)
    acquire(&mut pool, 4, 4, None); // waits
    pool.handle_timeout(t(1_004)); // rejected 2, timed_out 1
    pool.handle_taint(t(1_005), c(2)).unwrap(); // tainted 1, disconnected 1
    pool.handle_closed(t(1_006), c0); // closed_by_server 1
    release(&mut pool, 1_007, c0); // dropped without a Disconnect
    pool.handle_connected(t(1_008), c(1)); // stale 1
    pool.handle_closed(t(1_009), c(99)); // unknown 1
    drain(&mut pool);
    let c3 = checkout(&mut pool, 1_010, 5, None); // opened 4, connected 3, granted 3
    pool.handle_detach(t(1_011), c3).unwrap(); // detached 1
    pool.handle_set_capacity(t(1_012), 3);
    acquire(&mut pool, 1_013, 6, None); // opened 5
    pool.handle_set_capacity(t(1_014), 0); // aborted 1; r6 keeps waiting
    drain(&mut pool);
    assert_eq!(
        pool.stats(),
        Stats {
            lifecycle: Lifecycle::Open,
            capacity: 0,
            held: 0,
            opening: 0,
            idle: 0,
            borrowed: 0,
            waiters: 1,
            detached: 1,
            opened: 5,
            connected: 3,
            connect_failures: 1,
            aborted: 1,
            disconnected: 1,
            closed_by_server: 1,
            granted: 3,
            validations: 0,
            invalidated: 0,
            rejected: 2,
            timed_out: 1,
            cancelled: 1,
            tainted: 1,
            reopened: 0,
            stale_events: 1,
            unknown_events: 1,
        }
    );

    pool.handle_close(t(1_015), None).unwrap(); // rejected 3
    assert_eq!(
        drain(&mut pool),
        vec![
            reject(6, RejectReason::Closed),
            Command::CloseComplete { leaked: 0 }
        ]
    );
    let s = pool.stats();
    assert_eq!(
        (s.lifecycle, s.rejected, s.waiters),
        (Lifecycle::Closed, 3, 0)
    );
}

// ----- validation before hand-out -----

fn validating(max_size: usize) -> Pool {
    Pool::new(
        Time::ZERO,
        Config {
            validate_idle_ms: 100,
            ..Config::without_timers(max_size)
        },
    )
}

/// A pool with c0 connected at 1 ms, borrowed by r0 and returned at 2 ms.
fn with_idle_c0(max_size: usize) -> Pool {
    let mut pool = validating(max_size);
    acquire(&mut pool, 0, 0, None);
    pool.handle_connected(t(1), c(0));
    release(&mut pool, 2, c(0));
    drain(&mut pool);
    pool
}

#[test]
fn a_connection_idle_past_validate_idle_ms_is_validated_before_it_is_handed_out() {
    let mut pool = with_idle_c0(1);
    // Idle 50 ms: handed out as it is.
    acquire(&mut pool, 52, 1, None);
    assert_eq!(drain(&mut pool), vec![grant(1, 0, None)]);
    release(&mut pool, 53, c(0));
    // Idle 100 ms: the shell validates it first.
    acquire(&mut pool, 153, 2, None);
    let Some(Command::Grant { validate, .. }) = drain(&mut pool).pop() else {
        panic!("a grant");
    };
    assert!(validate);
    assert_eq!(pool.stats().validations, 1);
    // Alive: the grant stands.
    pool.handle_validated(t(154), c(0), true).unwrap();
    assert_eq!(pool.conn_state(c(0)), Some(ConnState::Borrowed));
    pool.check_consistency().unwrap();
}

#[test]
fn a_dead_connection_found_by_validation_is_dropped_and_its_waiter_goes_first() {
    let mut pool = with_idle_c0(1);
    acquire(&mut pool, 200, 1, None); // granted c0, to validate
    drain(&mut pool);
    acquire(&mut pool, 201, 2, None); // waits behind it (no room)
    assert_eq!(drain(&mut pool), vec![]);
    // c0 is dead: forgotten, nothing to disconnect; r1 waits again, before
    // r2, and a replacement is opened for it.
    pool.handle_validated(t(202), c(0), false).unwrap();
    assert_eq!(drain(&mut pool), vec![open(1, None)]);
    assert_eq!(pool.conn_state(c(0)), None);
    assert_eq!(pool.stats().invalidated, 1);
    pool.handle_connected(t(203), c(1));
    assert_eq!(drain(&mut pool), vec![grant(1, 1, None)]);
    pool.check_consistency().unwrap();
}

#[test]
fn a_validation_report_for_a_connection_not_being_validated_is_refused() {
    let mut pool = with_idle_c0(1);
    let before = pool.stats();
    assert!(pool.handle_validated(t(3), c(0), false).is_err());
    assert_eq!(pool.stats(), before);
    assert_eq!(drain(&mut pool), vec![]);
}

#[test]
fn zero_validate_idle_ms_never_validates() {
    let mut pool = Pool::new(Time::ZERO, Config::without_timers(1));
    acquire(&mut pool, 0, 0, None);
    pool.handle_connected(t(1), c(0));
    release(&mut pool, 2, c(0));
    drain(&mut pool);
    acquire(&mut pool, 1_000_000, 1, None);
    assert_eq!(drain(&mut pool), vec![grant(1, 0, None)]);
}
