//! loom models of the shell's shared state: every interleaving of two
//! threads racing on the core behind its lock and the waiter hand-off slots.
//! Run with `cargo xtask loom` (release, `--cfg loom`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use pool_core::{Config, ConnId, Stats, Time};
use pool_tokio::shared::{Shared, Slot, SlotState, Work};

const T: Time = Time::ZERO;

/// A pool of `max` connections with every timer off; transports are numbers.
fn shared(max: usize) -> Arc<Shared<u64>> {
    let (shared, work) = Shared::new(T, Config::without_timers(max));
    assert!(work.is_empty());
    Arc::new(shared)
}

/// Borrow a connection: acquire, connect it, take the grant.
fn borrow(shared: &Shared<u64>) -> ConnId {
    let (slot, _, work) = shared.acquire(T, None, None);
    let conn = match work.as_slice() {
        [Work::Open { conn, .. }] => *conn,
        other => panic!("expected one open, got {other:?}"),
    };
    assert!(shared.connected(T, conn, conn.0).is_empty());
    match slot.poll(None) {
        Some(SlotState::Granted { conn: c, .. }) => assert_eq!(c, conn),
        other => panic!("expected a grant, got {other:?}"),
    }
    conn
}

/// What a finished model must show: the bookkeeping is consistent.
fn consistent(shared: &Shared<u64>) -> Stats {
    shared.check().expect("the core and the shell agree");
    shared.stats()
}

fn granted(slot: &Slot<u64>) -> Option<ConnId> {
    match slot.poll(None) {
        Some(SlotState::Granted { conn, .. }) => Some(conn),
        _ => None,
    }
}

/// A release grants the conn to a waiting `get` while that `get` is being
/// dropped. Whichever wins, the conn is not lost: it ends idle, held by
/// nobody. (Without the cancel-safety step it stays "borrowed" forever.)
#[test]
fn a_grant_racing_a_dropped_get() {
    loom::model(|| {
        let shared = shared(1);
        let c0 = borrow(&shared);
        let (slot, request, work) = shared.acquire(T, None, None);
        assert!(work.is_empty(), "the pool is full: the get waits");
        let slot = Arc::new(slot);

        let s = shared.clone();
        let release = thread::spawn(move || s.release(T, c0, c0.0));
        let (s, sl) = (shared.clone(), slot.clone());
        let drop_get = thread::spawn(move || s.abandon(T, request, &sl));
        release.join().unwrap();
        drop_get.join().unwrap();

        let stats = consistent(&shared);
        assert_eq!(
            (stats.borrowed, stats.idle),
            (0, 1),
            "the conn is lost: {stats:?}"
        );
    });
}

/// A release races Close: the conn is closed exactly once and Close
/// completes with nothing leaked.
#[test]
fn a_release_racing_close() {
    loom::model(|| {
        let shared = shared(1);
        let c0 = borrow(&shared);

        let s = shared.clone();
        let release = thread::spawn(move || s.release(T, c0, c0.0));
        let s = shared.clone();
        let close = thread::spawn(move || s.close(T, None));
        let mut work = release.join().unwrap();
        work.extend(close.join().unwrap());

        let closed: Vec<ConnId> = work
            .iter()
            .filter_map(|w| match w {
                Work::Close { conn, .. } => Some(*conn),
                _ => None,
            })
            .collect();
        assert_eq!(closed, vec![c0], "closed exactly once");
        let stats = consistent(&shared);
        assert_eq!(stats.held, 0);
        assert_eq!(stats.lifecycle, pool_core::Lifecycle::Closed);
    });
}

/// One conn is detached while another is released with a get waiting: the
/// waiter gets the released conn, the detached one frees its slot once.
#[test]
fn a_detach_racing_a_release() {
    loom::model(|| {
        let shared = shared(2);
        let c0 = borrow(&shared);
        let c1 = borrow(&shared);
        let (slot, _, work) = shared.acquire(T, None, None);
        assert!(work.is_empty());

        let s = shared.clone();
        let detach = thread::spawn(move || s.detach(T, c0));
        let s = shared.clone();
        let release = thread::spawn(move || s.release(T, c1, c1.0));
        detach.join().unwrap();
        release.join().unwrap();

        assert_eq!(granted(&slot), Some(c1));
        let stats = consistent(&shared);
        assert_eq!(stats.detached, 1);
        assert_eq!(stats.borrowed, 1, "only the waiter's conn is borrowed");
        assert!(stats.held <= 2);
    });
}

/// Two releases race for one waiter: it gets exactly one conn, the other
/// goes idle.
#[test]
fn two_releases_racing_one_waiter() {
    loom::model(|| {
        let shared = shared(2);
        let c0 = borrow(&shared);
        let c1 = borrow(&shared);
        let (slot, _, work) = shared.acquire(T, None, None);
        assert!(work.is_empty());

        let s = shared.clone();
        let first = thread::spawn(move || s.release(T, c0, c0.0));
        let s = shared.clone();
        let second = thread::spawn(move || s.release(T, c1, c1.0));
        first.join().unwrap();
        second.join().unwrap();

        let got = granted(&slot).expect("the waiter is served");
        assert!(got == c0 || got == c1);
        let stats = consistent(&shared);
        assert_eq!((stats.borrowed, stats.idle), (1, 1));
    });
}
