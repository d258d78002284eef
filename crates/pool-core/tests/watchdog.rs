//! The orphan watchdog (postgres-mcp's fix, seed 004): once the process is
//! orphaned, the next check on the interval grid asks to close the pool,
//! once.

use pool_core::{Time, Watchdog, WatchdogAction};

fn t(ms: u64) -> Time {
    Time::from_millis(ms)
}

/// A watchdog started at 1000ms, checking every 100ms.
fn watchdog() -> Watchdog {
    Watchdog::new(t(1000), 100)
}

/// When a watchdog started at 1000ms and orphaned at `orphaned` is due.
fn due_after_orphaned(orphaned: u64) -> Option<Time> {
    let mut w = watchdog();
    w.handle_orphaned(t(orphaned));
    w.poll_timeout()
}

#[test]
fn no_timer_before_orphaning() {
    let mut w = watchdog();
    assert_eq!(w.poll_timeout(), None);
    for now in [1000, 1100, 5000] {
        assert_eq!(w.handle_timeout(t(now)), None);
        assert_eq!(w.poll_timeout(), None);
    }
}

#[test]
fn orphaning_is_seen_at_the_first_check_at_or_after_it() {
    // (orphaned at, due): checks run at 1100, 1200, ... (not at the start).
    for (orphaned, due) in [
        (1000, 1100), // at the start: the first check
        (1001, 1100),
        (1099, 1100),
        (1100, 1100), // exactly on the grid: that check sees it
        (1101, 1200),
        (1300, 1300),
        (1350, 1400),
        (500, 1100), // before the start (a clock the caller set late)
    ] {
        assert_eq!(
            due_after_orphaned(orphaned),
            Some(t(due)),
            "orphaned at {orphaned}"
        );
    }
}

#[test]
fn fires_close_pool_when_due() {
    for orphaned in [1000, 1100, 1250] {
        let mut w = watchdog();
        w.handle_orphaned(t(orphaned));
        let due = w.poll_timeout().expect("orphaned");
        assert_eq!(w.handle_timeout(due), Some(WatchdogAction::ClosePool));
    }
}

#[test]
fn fires_once_only() {
    let mut w = watchdog();
    w.handle_orphaned(t(1150));
    assert_eq!(w.handle_timeout(t(1200)), Some(WatchdogAction::ClosePool));
    assert_eq!(w.poll_timeout(), None);
    assert_eq!(w.handle_timeout(t(1200)), None);
    assert_eq!(w.handle_timeout(t(9000)), None);
    // Orphaned again after firing: nothing more.
    w.handle_orphaned(t(1300));
    assert_eq!(w.poll_timeout(), None);
    assert_eq!(w.handle_timeout(t(9000)), None);
}

#[test]
fn a_late_check_still_fires_once() {
    let mut w = watchdog();
    w.handle_orphaned(t(1150));
    assert_eq!(w.handle_timeout(t(5000)), Some(WatchdogAction::ClosePool));
    assert_eq!(w.handle_timeout(t(5000)), None);
}

#[test]
fn a_second_orphaning_does_nothing() {
    let mut w = watchdog();
    w.handle_orphaned(t(1150));
    w.handle_orphaned(t(1350));
    assert_eq!(w.poll_timeout(), Some(t(1200)));
    w.handle_orphaned(t(1000));
    assert_eq!(w.poll_timeout(), Some(t(1200)));
    assert_eq!(w.handle_timeout(t(1200)), Some(WatchdogAction::ClosePool));
}

#[test]
fn a_check_before_due_does_nothing_and_keeps_it_due() {
    let mut w = watchdog();
    w.handle_orphaned(t(1150));
    assert_eq!(w.handle_timeout(t(1150)), None);
    assert_eq!(w.handle_timeout(t(1199)), None);
    assert_eq!(w.poll_timeout(), Some(t(1200)));
    assert_eq!(w.handle_timeout(t(1200)), Some(WatchdogAction::ClosePool));
}

#[test]
fn a_zero_interval_checks_every_millisecond() {
    let mut w = Watchdog::new(t(1000), 0);
    w.handle_orphaned(t(1000));
    assert_eq!(w.poll_timeout(), Some(t(1001)));
    w = Watchdog::new(t(1000), 0);
    w.handle_orphaned(t(1234));
    assert_eq!(w.poll_timeout(), Some(t(1234)));
}
