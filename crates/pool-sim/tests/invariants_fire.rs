//! Every checker can fail: for each invariant, a deliberately wrong pool (the
//! reference core behind a small wrapper that breaks one thing) trips it on a
//! short scenario, and the same scenario passes against the reference core.

use std::collections::VecDeque;
use std::path::Path;

use pool_core::{
    Command, Config, ConnId, ConnState, DisconnectReason, Input, InputError, Pool, RejectReason,
    RequestId, Setting, Stats, Time,
};
use pool_sim::run::{Options, Outcome, run_scenario, run_steps};
use pool_sim::{Invariant, Scenario, SimPool};

/// One way to be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// Every `Open` comes with a second one.
    DoubleOpen,
    /// `Closed` from the transport is ignored: the dead conn stays idle.
    IgnoreClosed,
    /// A new acquire that has to wait is granted the last granted conn.
    RegrantLast,
    /// The `Disconnect` of a tainted conn is never emitted.
    DropTaintDisconnect,
    /// `Detach` never reaches the pool: the slot stays held (seed 000).
    DetachKeepsSlot,
    /// An `Open` right after `Close`.
    OpenAfterClose,
    /// Grants hand out a clean conn whatever setting was asked for.
    GrantDropsSetting,
    /// Every grant is followed by a disconnect of the granted conn.
    DisconnectAfterGrant,
    /// An acquire that arrives while a conn is idle is left waiting (it is
    /// never looked at).
    SleepWhileIdle,
    /// `CloseComplete` is never emitted.
    NeverCompleteClose,
    /// Timers never fire.
    NoTimers,
    /// Acquires after the first are rejected at once.
    RejectAfterFirst,
    /// A conn returned while over capacity goes to the oldest waiter
    /// (Vitess before its fix, seed 003).
    Handoff,
    /// An acquire that arrives while another request waits is kept asleep
    /// (never told to the pool, so no connect is opened for it).
    SleepBehindWaiter,
    /// A grant meant for the oldest waiter goes to the newest.
    GrantNewest,
    /// A waiter's `ConnectFailed` is never delivered.
    HideConnectFailure,
    /// A healthy return is handled as a taint.
    RetireOnReturn,
    /// `Close` never reaches the pool.
    IgnoreClose,
    /// `Close` reports complete at once, whatever is borrowed.
    CompleteCloseAtOnce,
    /// The pool's own consistency check fails once a grant was made.
    SelfCheckFails,
    /// Its `granted` counter misses every other grant.
    MiscountGrants,
    /// Grants never ask for validation.
    NeverValidate,
    /// The reference core, registry and watchdog with a seed report's bug
    /// put back (for what lives outside the pool: the registry).
    Mutated(pool_core::Mutation),
}

/// The reference pool behind a wrapper that has `bug`.
struct Faulty {
    inner: Pool,
    bug: Bug,
    out: VecDeque<Command>,
    /// Waiting requests and their settings, oldest first.
    waiting: VecDeque<(RequestId, Option<Setting>)>,
    last_grant: Option<ConnId>,
    acquires: u64,
    /// Acquires the wrapper keeps waiting without telling the pool.
    asleep: usize,
}

impl Faulty {
    fn new(now: Time, config: Config, bug: Bug) -> Faulty {
        let mut faulty = Faulty {
            inner: Pool::new(now, config),
            bug,
            out: VecDeque::new(),
            waiting: VecDeque::new(),
            last_grant: None,
            acquires: 0,
            asleep: 0,
        };
        faulty.pull();
        faulty
    }

    /// Move the inner pool's commands out, breaking them as the bug says.
    fn pull(&mut self) {
        while let Some(command) = self.inner.poll_command() {
            let command = match (self.bug, command) {
                (
                    Bug::GrantNewest,
                    Command::Grant {
                        conn,
                        setting,
                        apply_setting,
                        validate,
                        ..
                    },
                ) if self.waiting.len() > 1 => {
                    let (request, _) = *self.waiting.back().expect("two wait");
                    Command::Grant {
                        request,
                        conn,
                        setting,
                        apply_setting,
                        validate,
                    }
                }
                (
                    Bug::NeverValidate,
                    Command::Grant {
                        request,
                        conn,
                        setting,
                        apply_setting,
                        ..
                    },
                ) => Command::Grant {
                    request,
                    conn,
                    setting,
                    apply_setting,
                    validate: false,
                },
                (
                    Bug::HideConnectFailure,
                    Command::Reject {
                        reason: RejectReason::ConnectFailed,
                        ..
                    },
                ) => continue,
                (_, command) => command,
            };
            match command {
                Command::Grant { request, conn, .. } => {
                    self.waiting.retain(|(r, _)| *r != request);
                    self.last_grant = Some(conn);
                }
                Command::Reject { request, .. } => self.waiting.retain(|(r, _)| *r != request),
                _ => {}
            }
            match (self.bug, &command) {
                (Bug::DoubleOpen, Command::Open { conn, setting, .. }) => {
                    let extra = Command::Open {
                        conn: ConnId(conn.0 + 1_000),
                        setting: *setting,
                        replaces: None,
                    };
                    self.out.push_back(command.clone());
                    self.out.push_back(extra);
                }
                (
                    Bug::DropTaintDisconnect,
                    Command::Disconnect {
                        reason: DisconnectReason::Tainted,
                        ..
                    },
                ) => {}
                (
                    Bug::GrantDropsSetting,
                    Command::Grant {
                        request,
                        conn,
                        setting: Some(_),
                        ..
                    },
                ) => self.out.push_back(Command::Grant {
                    request: *request,
                    conn: *conn,
                    setting: None,
                    apply_setting: true,
                    validate: false,
                }),
                (Bug::DisconnectAfterGrant, Command::Grant { conn, .. }) => {
                    let conn = *conn;
                    self.out.push_back(command.clone());
                    self.out.push_back(Command::Disconnect {
                        conn,
                        reason: DisconnectReason::IdleTimeout,
                    });
                }
                (Bug::NeverCompleteClose, Command::CloseComplete { .. }) => {}
                _ => self.out.push_back(command),
            }
        }
    }
}

impl SimPool for Faulty {
    fn handle(&mut self, now: Time, input: Input) -> Result<(), InputError> {
        match (self.bug, &input) {
            (Bug::IgnoreClosed, Input::Closed { .. }) => return Ok(()),
            (Bug::SleepWhileIdle, Input::Acquire { .. }) if self.inner.stats().idle > 0 => {
                self.asleep += 1;
                return Ok(());
            }
            (Bug::SleepBehindWaiter, Input::Acquire { .. }) if self.inner.stats().waiters > 0 => {
                self.asleep += 1;
                return Ok(());
            }
            (Bug::RetireOnReturn, Input::Recycle { conn }) => {
                let conn = *conn;
                self.inner.handle(now, Input::Taint { conn })?;
                self.pull();
                return Ok(());
            }
            (Bug::IgnoreClose, Input::Close { .. }) => return Ok(()),
            (Bug::CompleteCloseAtOnce, Input::Close { .. }) => {
                let leaked = self.inner.stats().borrowed;
                self.out.push_back(Command::CloseComplete { leaked });
            }
            (Bug::DetachKeepsSlot, Input::Detach { .. }) => return Ok(()),
            (Bug::RejectAfterFirst, Input::Acquire { request, .. }) if self.acquires > 0 => {
                self.out.push_back(Command::Reject {
                    request: *request,
                    reason: RejectReason::ConnectFailed,
                });
                return Ok(());
            }
            (Bug::Handoff, Input::Recycle { conn }) => {
                let stats = self.inner.stats();
                if stats.held > stats.capacity
                    && let Some((request, setting)) = self.waiting.pop_front()
                {
                    // The pool forgets the waiter; the conn goes straight on.
                    self.inner.handle(now, Input::Cancel { request })?;
                    self.out.push_back(Command::Grant {
                        request,
                        conn: *conn,
                        setting,
                        apply_setting: true,
                        validate: false,
                    });
                    return Ok(());
                }
            }
            _ => {}
        }
        if let Input::Acquire {
            request, setting, ..
        } = input
        {
            self.acquires += 1;
            self.waiting.push_back((request, setting));
        }
        if let Input::Cancel { request } = input {
            self.waiting.retain(|(r, _)| *r != request);
        }
        let is_close = matches!(input, Input::Close { .. });
        let acquire = match input {
            Input::Acquire { request, .. } => Some(request),
            _ => None,
        };
        self.inner.handle(now, input)?;
        self.pull();
        if self.bug == Bug::OpenAfterClose && is_close {
            self.out.push_back(Command::Open {
                conn: ConnId(9_999),
                setting: None,
                replaces: None,
            });
        }
        if self.bug == Bug::RegrantLast
            && let (Some(request), Some(conn)) = (acquire, self.last_grant)
            && self.waiting.iter().any(|(r, _)| *r == request)
        {
            self.out.push_back(Command::Grant {
                request,
                conn,
                setting: None,
                apply_setting: false,
                validate: false,
            });
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Time) {
        if self.bug != Bug::NoTimers {
            self.inner.handle_timeout(now);
            self.pull();
        }
    }

    fn poll_command(&mut self) -> Option<Command> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Time> {
        match self.bug {
            Bug::NoTimers => None,
            _ => self.inner.poll_timeout(),
        }
    }

    fn stats(&self) -> Stats {
        let mut stats = self.inner.stats();
        stats.waiters += self.asleep;
        if self.bug == Bug::MiscountGrants {
            stats.granted /= 2;
        }
        stats
    }

    fn conns(&self, out: &mut Vec<(ConnId, ConnState)>) {
        out.extend(self.inner.conns());
    }

    /// The wrapper's own commands (a second `Open`, a rewritten grant) are
    /// not in the inner pool's counters: only the bug that is about the
    /// counters reports them.
    fn reports_counters(&self) -> bool {
        self.bug == Bug::MiscountGrants
    }

    fn check_consistency(&self) -> Result<(), String> {
        if self.bug == Bug::SelfCheckFails && self.last_grant.is_some() {
            return Err("the books do not balance after a grant".to_owned());
        }
        self.inner.check_consistency()
    }
}

/// A scenario from its `[pool]`, `[world]` and steps, written as in files.
fn scenario(pool: &str, world: &str, steps: &str) -> Scenario {
    let text = format!(
        "name = \"test\"\nexpect = \"pass\"\n[pool]\n{pool}\n[world]\n{world}\n[script]\nsteps = [\n{steps}\n]\n"
    );
    Scenario::parse(Path::new("test.toml"), &text).expect("the test scenario parses")
}

/// Timers off unless a test turns one on.
const QUIET: &str = "idle_timeout_ms = 0\nmax_lifetime_ms = 0\nacquire_timeout_ms = 0\nconnect_timeout_ms = 0\nvalidate_idle_ms = 0\n";

/// Checkout: client 0 acquires, the connect succeeds, the grant lands.
const CHECKOUT: &str = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 1, do = "connect-ok", attempt = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },
"#;

/// The scenario passes on the reference core and trips `invariant` with
/// `bug`.
fn assert_fires(bug: Bug, invariant: Invariant, scenario: &Scenario) {
    let reference = run_steps(
        Box::new(|now, config: &Config| Pool::new(now, config.clone())),
        scenario,
        Options::default(),
    );
    assert_eq!(
        reference.outcome,
        Outcome::Pass,
        "the scenario must pass on the reference core; trace tail:\n{}",
        reference.tail.join("\n")
    );
    let faulty = Box::new(move |now, config: &Config| Faulty::new(now, config.clone(), bug));
    let report = run_steps(faulty, scenario, Options::default());
    assert_eq!(
        report.outcome.invariant(),
        Some(invariant),
        "{bug:?} should trip {invariant}; got {:?}; trace tail:\n{}",
        report.outcome,
        report.tail.join("\n")
    );
}

/// The same, for a mutation of the reference core (needs the `mutations`
/// feature, which `cargo test --workspace` turns on through the xtask).
fn assert_mutation_fires(mutation: pool_core::Mutation, invariant: Invariant, scenario: &Scenario) {
    let clean = run_scenario(scenario, Options::default());
    assert_eq!(clean.outcome, Outcome::Pass, "{}", clean.tail.join("\n"));
    let options = Options {
        mutation: Some(mutation),
        ..Options::default()
    };
    let report = run_scenario(scenario, options);
    assert_eq!(
        report.outcome.invariant(),
        Some(invariant),
        "{mutation} should trip {invariant}; got {:?}; trace tail:\n{}",
        report.outcome,
        report.tail.join("\n")
    );
}

/// The faulty pool and the scenario that make `invariant` fire. The match
/// has no wildcard: a new invariant does not compile until it has a case.
fn case(invariant: Invariant) -> (Bug, Scenario) {
    let one = format!("max_size = 1\n{QUIET}");
    let two = format!("max_size = 2\n{QUIET}");
    let then = |more: &str| format!("{CHECKOUT}\n{more}");
    match invariant {
        Invariant::OverCapacity => (Bug::DoubleOpen, scenario(&one, "clients = 1", CHECKOUT)),
        Invariant::GhostIdle => {
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 3, do = "kill", session = 0 },
  { at_ms = 3, do = "deliver", signal = 0 },"#,
            );
            (Bug::IgnoreClosed, scenario(&one, "clients = 1", &steps))
        }
        Invariant::DoubleGrant => {
            let steps = then(r#"  { at_ms = 2, do = "acquire", client = 1 },"#);
            (Bug::RegrantLast, scenario(&one, "clients = 2", &steps))
        }
        Invariant::LostConnection => {
            let steps = then(r#"  { at_ms = 2, do = "taint", client = 0 },"#);
            (
                Bug::DropTaintDisconnect,
                scenario(&one, "clients = 1", &steps),
            )
        }
        Invariant::Accounting => {
            let steps = then(r#"  { at_ms = 2, do = "detach", client = 0 },"#);
            (Bug::DetachKeepsSlot, scenario(&one, "clients = 1", &steps))
        }
        Invariant::OpenAfterClose => {
            let steps = r#"  { at_ms = 0, do = "close", timeout_ms = 100 },"#;
            (Bug::OpenAfterClose, scenario(&one, "clients = 1", steps))
        }
        Invariant::SettingLost => {
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0, setting = 1 },
  { at_ms = 1, do = "connect-ok", attempt = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },"#;
            (Bug::GrantDropsSetting, scenario(&one, "clients = 1", steps))
        }
        Invariant::BusyDisconnected => (
            Bug::DisconnectAfterGrant,
            scenario(&one, "clients = 1", CHECKOUT),
        ),
        Invariant::IdleWhileWaiting => {
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 3, do = "acquire", client = 0 },"#,
            );
            (Bug::SleepWhileIdle, scenario(&one, "clients = 1", &steps))
        }
        Invariant::DuplicatePool => {
            // Two first logins for one key, both while the first connect is
            // in flight: one pool must serve both.
            let steps = r#"
  { at_ms = 0, do = "login", client = 0, key = 0 },
  { at_ms = 1, do = "login", client = 1, key = 0 },"#;
            let bug = Bug::Mutated(pool_core::Mutation::RegisterAfterConnect);
            (bug, scenario(&one, "clients = 2\nkeys = 1", steps))
        }
        Invariant::GcRemovedInitializing => {
            // GC sweeps while the key's first connect is in flight.
            let steps = r#"
  { at_ms = 0, do = "login", client = 0, key = 0 },
  { at_ms = 1, do = "gc" },"#;
            let bug = Bug::Mutated(pool_core::Mutation::GcRemovesInitializing);
            (bug, scenario(&one, "clients = 1\nkeys = 1", steps))
        }
        Invariant::CloseStalled => {
            let steps = r#"  { at_ms = 0, do = "close", timeout_ms = 100 },"#;
            (
                Bug::NeverCompleteClose,
                scenario(&one, "clients = 1", steps),
            )
        }
        Invariant::UncoveredWaiter => {
            // The second acquire never reaches the pool: two wait, one
            // connect is in flight, and a slot is free.
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 0, do = "acquire", client = 1 },"#;
            (Bug::SleepBehindWaiter, scenario(&two, "clients = 2", steps))
        }
        Invariant::QueueJumped => {
            let steps = then(
                r#"  { at_ms = 2, do = "acquire", client = 1 },
  { at_ms = 3, do = "acquire", client = 2 },
  { at_ms = 4, do = "release", client = 0 },"#,
            );
            (Bug::GrantNewest, scenario(&one, "clients = 3", &steps))
        }
        Invariant::ConnectErrorLost => {
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 1, do = "connect-fail", attempt = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },"#;
            (
                Bug::HideConnectFailure,
                scenario(&one, "clients = 1", steps),
            )
        }
        Invariant::UnjustifiedOpen => {
            // Room for the extra connect: nothing asked for it.
            (Bug::DoubleOpen, scenario(&two, "clients = 1", CHECKOUT))
        }
        Invariant::UnjustifiedReject => {
            // A second acquire is rejected for a connect failure that
            // never happened.
            let steps = then(r#"  { at_ms = 2, do = "acquire", client = 1 },"#);
            (Bug::RejectAfterFirst, scenario(&two, "clients = 2", &steps))
        }
        Invariant::UnjustifiedDisconnect => {
            let steps = then(r#"  { at_ms = 2, do = "release", client = 0 },"#);
            (Bug::RetireOnReturn, scenario(&one, "clients = 1", &steps))
        }
        Invariant::ExpiredConn => {
            // Returned idle, the conn outlives its lifetime: no timer fires.
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 200, do = "wait" },"#,
            );
            let pool = format!(
                "max_size = 1
min_idle = 1
{QUIET}"
            )
            .replace("max_lifetime_ms = 0", "max_lifetime_ms = 100");
            (Bug::NoTimers, scenario(&pool, "clients = 1", &steps))
        }
        Invariant::CloseIncomplete => {
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 3, do = "close", timeout_ms = 100 },"#,
            );
            (Bug::IgnoreClose, scenario(&one, "clients = 1", &steps))
        }
        Invariant::CloseEarly => {
            let steps = then(r#"  { at_ms = 2, do = "close", timeout_ms = 100 },"#);
            (
                Bug::CompleteCloseAtOnce,
                scenario(&one, "clients = 1", &steps),
            )
        }
        Invariant::UnvalidatedGrant => {
            // c0 idles 200 ms, the server kills it unseen; the next grant
            // of it must be validated.
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 3, do = "kill", conn = "c0" },
  { at_ms = 200, do = "acquire", client = 0 },"#,
            );
            let pool = one.replace("validate_idle_ms = 0", "validate_idle_ms = 100");
            (Bug::NeverValidate, scenario(&pool, "clients = 1", &steps))
        }
        Invariant::SelfCheck => (Bug::SelfCheckFails, scenario(&one, "clients = 1", CHECKOUT)),
        Invariant::ConnectStalled => {
            // The connect hangs; no timer aborts it.
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 200, do = "wait" },"#;
            let pool = one.replace("connect_timeout_ms = 0", "connect_timeout_ms = 100");
            (Bug::NoTimers, scenario(&pool, "clients = 1", steps))
        }
        Invariant::IdleNotReaped => {
            let steps = then(
                r#"  { at_ms = 2, do = "release", client = 0 },
  { at_ms = 300, do = "wait" },"#,
            );
            let pool = one.replace("idle_timeout_ms = 0", "idle_timeout_ms = 100");
            (Bug::NoTimers, scenario(&pool, "clients = 1", &steps))
        }
        Invariant::FloorNotRestored => {
            // The floor's first connect fails; the backoff's end never
            // comes, so nothing refills the floor once the server is back.
            let steps = r#"
  { at_ms = 1, do = "connect-fail", attempt = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },"#;
            let pool = format!(
                "max_size = 1
min_idle = 1
reconnect_backoff_ms = 100
{QUIET}"
            );
            (Bug::NoTimers, scenario(&pool, "clients = 1", steps))
        }
        Invariant::WaiterStalled => {
            // Capacity 0: the acquire can only end at its deadline.
            let steps = r#"  { at_ms = 0, do = "acquire", client = 0, timeout_ms = 100 },"#;
            let pool = format!("max_size = 0\n{QUIET}");
            (Bug::NoTimers, scenario(&pool, "clients = 1", steps))
        }
        Invariant::Starved => {
            // A waiter without a deadline behind a connect that hangs, and
            // no timer to abort it. With a slack too large for the deadline
            // rules to speak, the liveness phase reaches its horizon with
            // the request still waiting.
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 10, do = "wait" },"#;
            let pool = one.replace("connect_timeout_ms = 0", "connect_timeout_ms = 100");
            let world = "clients = 1\nslack_ms = 1000000000";
            (Bug::NoTimers, scenario(&pool, world, steps))
        }
        Invariant::CapacityStalled => {
            // Two conns borrowed, two waiters queued, capacity cut to 1: the
            // returns must shrink the pool, not feed the waiters.
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 0, do = "acquire", client = 1 },
  { at_ms = 1, do = "connect-ok", attempt = 0 },
  { at_ms = 1, do = "connect-ok", attempt = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },
  { at_ms = 1, do = "deliver", signal = 0 },
  { at_ms = 2, do = "acquire", client = 2 },
  { at_ms = 2, do = "acquire", client = 3 },
  { at_ms = 3, do = "set-capacity", capacity = 1 },
  { at_ms = 4, do = "release", client = 0 },
  { at_ms = 5, do = "release", client = 1 },
  { at_ms = 2000, do = "wait" },"#;
            let pool = format!("max_size = 2\n{QUIET}");
            (Bug::Handoff, scenario(&pool, "clients = 4", steps))
        }
        Invariant::Footprint => {
            // An orphaned process whose pool keeps its floor connection.
            let steps = r#"
  { at_ms = 0, do = "acquire", client = 0 },
  { at_ms = 0, do = "orphan", process = 0 },
  { at_ms = 1955, do = "wait" },"#;
            let pool = format!("max_size = 1\nmin_idle = 1\n{QUIET}")
                .replace("idle_timeout_ms = 0", "idle_timeout_ms = 20");
            let bug = Bug::Mutated(pool_core::Mutation::OrphanKeepsPool);
            (bug, scenario(&pool, "clients = 1", steps))
        }
    }
}

#[test]
fn every_invariant_fires_on_a_faulty_pool_and_not_on_the_reference_core() {
    for invariant in Invariant::ALL {
        match case(invariant) {
            (Bug::Mutated(_), _) => {} // below
            (bug, scenario) => assert_fires(bug, invariant, &scenario),
        }
    }
}

/// The pool's counters are held to the world's own count, not only its
/// gauges: a pool whose gauges are right but which miscounts its grants is
/// caught.
#[test]
fn a_miscounted_counter_is_accounting() {
    let pool = format!("max_size = 1\n{QUIET}");
    let steps = format!(
        "{CHECKOUT}\n  {{ at_ms = 2, do = \"release\", client = 0 }},\n  {{ at_ms = 3, do = \"acquire\", client = 0 }},"
    );
    assert_fires(
        Bug::MiscountGrants,
        Invariant::Accounting,
        &scenario(&pool, "clients = 1", &steps),
    );
}

/// The invariants only a mutation of the reference core shows (the
/// registry's, the orphan watchdog's) fire under it.
#[test]
#[cfg_attr(
    not(feature = "mutations"),
    ignore = "needs the mutations feature (cargo test --workspace has it)"
)]
fn invariants_of_the_registry_and_watchdog_fire_under_their_mutations() {
    let mut ran = 0;
    for invariant in Invariant::ALL {
        if let (Bug::Mutated(mutation), scenario) = case(invariant) {
            assert_mutation_fires(mutation, invariant, &scenario);
            ran += 1;
        }
    }
    assert_eq!(ran, 3, "duplicate-pool, gc-removed-initializing, footprint");
}
