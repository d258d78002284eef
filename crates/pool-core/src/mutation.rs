//! The real bugs, put back on purpose: each mutation re-introduces one bug
//! (from a seed report, or a class of `BUG-CLASSES.md` as it happened in a
//! real pool) at the decision point where it would live, so the simulator
//! can prove it finds it.
//!
//! The names always exist (tools list them); the mutated behaviour is only
//! compiled with the `mutations` feature, which is off by default. Without
//! it `mutated` is a constant `false` and every mutated branch is dead code.

use std::fmt;
use std::str::FromStr;

/// Declares every mutation once: its variant, its name (as the tools take
/// it), where the bug comes from, and what it does.
macro_rules! mutations {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $name:literal, $origin:literal; )+) => {
        /// A real pool's bug, re-introduced at the decision point where it
        /// would live.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Mutation {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Mutation {
            /// Every mutation, in declaration order.
            pub const ALL: [Mutation; [$($name),+].len()] = [$(Mutation::$variant),+];

            pub const fn name(self) -> &'static str {
                match self {
                    $(Mutation::$variant => $name,)+
                }
            }

            /// Where the bug comes from: a seed report, or a class of
            /// `BUG-CLASSES.md` and the pool it happened in.
            pub const fn origin(self) -> &'static str {
                match self {
                    $(Mutation::$variant => $origin,)+
                }
            }
        }
    };
}

mutations! {
    // ----- the seed reports -----
    /// Bun (seed 001): `#onConnected` accepted a `Connected` that arrived
    /// after `#onClose`, re-adding a dead connection to the ready set.
    AcceptStaleConnect = "accept-stale-connect", "seed 001 Bun.SQL";
    /// Hatchet (seed 000): the LISTEN conn was taken with `Conn()` instead of
    /// `Hijack()`, so every detach kept its slot.
    DetachKeepsSlot = "detach-keeps-slot", "seed 000 Hatchet";
    /// Vitess (seed 003, change 1): a conn returned while the pool is over
    /// capacity was handed to the next waiter instead of being closed.
    HandoffWhileOverCapacity = "handoff-while-over-capacity", "seed 003 Vitess smartconnpool";
    /// Vitess (seed 003, changes 2 and 3): a reopen ignored Close and opened
    /// a connection after shutdown began.
    ReopenIgnoresClose = "reopen-ignores-close", "seed 003 Vitess smartconnpool";
    /// Vitess (seed 003, change 4): `connReopen` read the Setting after the
    /// replace, so a reopened conn silently lost its setting.
    ReopenDropsSetting = "reopen-drops-setting", "seed 003 Vitess smartconnpool";
    /// pg_doorman (seed 002): GC removed a pool whose first connect was still
    /// in flight (it only looked at the pool's established size).
    GcRemovesInitializing = "gc-removes-initializing", "seed 002 pg_doorman";
    /// pg_doorman (seed 002, reverted attempt 089fc22): the pool was
    /// registered only after its first connect, so two concurrent first
    /// logins built two pools for one key.
    RegisterAfterConnect = "register-after-connect", "seed 002 pg_doorman";
    /// postgres-mcp (seed 004): an orphaned process had no watchdog and kept
    /// its pool open for good.
    OrphanKeepsPool = "orphan-keeps-pool", "seed 004 postgres-mcp";

    // ----- 5: a freed slot wakes nobody -----
    /// A connection returned broken frees its slot, but nobody is woken: no
    /// replacement is opened for the waiters.
    TaintWakesNobody = "taint-wakes-nobody", "class 5: bb8 #167";
    // ----- 6: lost wakeup -----
    /// A healthy return goes back to the idle set without looking at the
    /// waiters.
    ReleaseWakesNobody = "release-wakes-nobody", "class 6: bb8 #122, HikariCP #452";
    /// A new acquire joins the wait list without taking the idle connection
    /// that is there (it opens a connect instead).
    AcquireSkipsIdle = "acquire-skips-idle", "class 6: vitess #17662";
    // ----- 7: a failed connect signals nobody -----
    /// A failed connect rejects the oldest waiter but opens nothing for the
    /// others, whose connect it was counted as.
    FailedConnectWakesNobody = "failed-connect-wakes-nobody", "class 7: puddle 1.1.3";
    /// A connect aborted at its timeout frees its slot silently: no waiter
    /// is told, nothing is reopened.
    ConnectTimeoutWakesNobody = "connect-timeout-wakes-nobody", "class 7: deadpool pool_drained";
    // ----- 8: extra connects -----
    /// Every wakeup opens a connect per waiter, whatever is already in
    /// flight.
    OpenPerWakeup = "open-per-wakeup", "class 8: bb8 f02f40f";
    /// Every connection retired at its lifetime is reopened, needed or not.
    ReopenIgnoresFloor = "reopen-ignores-floor", "class 8: vitess #20122 (item 3)";
    /// A lifetime reopen dials during the reconnect backoff.
    ReopenIgnoresBackoff = "reopen-ignores-backoff", "class 3/8: sqlx #3513 connect storm";
    /// A failed connect starts no backoff: the floor is refilled at once,
    /// again and again, against a failing server.
    BackoffNeverStarts = "backoff-never-starts", "class 3: sqlx #3513 connect storm";
    // ----- 9: fill or replacement past max -----
    /// Filling the idle floor does not count the borrowed connections
    /// against the capacity.
    FloorFillIgnoresCapacity = "floor-fill-ignores-capacity", "class 9: pgx #1660, deadpool #92";
    /// A lifetime reopen does not check the capacity.
    ReopenIgnoresCapacity = "reopen-ignores-capacity", "class 9: puddle 2.2.1";
    // ----- 10: lifetime not enforced on busy connections -----
    /// A connection whose lifetime ends while borrowed is not marked: it
    /// goes back to the idle set on return.
    LifetimeSparesBorrowed = "lifetime-spares-borrowed", "class 10: bb8 8210b0e";
    /// A return does not look at the lifetime.
    RecycleIgnoresExpiry = "recycle-ignores-expiry", "class 10: pgx #2560";
    /// Connections retire at half their lifetime.
    EarlyRetirement = "early-retirement", "class 10/11: pgx #2562";
    // ----- 11: zero read as "expire now" -----
    /// `idle_timeout_ms = 0` arms an idle timer that fires at once.
    ZeroIdleTimeoutExpires = "zero-idle-timeout-expires", "class 11: pg_doorman idle_timeout=0";
    /// `max_lifetime_ms = 0` retires every connection at once.
    ZeroLifetimeExpires = "zero-lifetime-expires", "class 11: pgx a7cbe744";
    /// `connect_timeout_ms = 0` aborts every connect at once.
    ZeroConnectTimeoutExpires = "zero-connect-timeout-expires", "class 11: pgx a7cbe744";
    /// `acquire_timeout_ms = 0` times every waiter out at once.
    ZeroAcquireTimeoutExpires = "zero-acquire-timeout-expires", "class 11: pgx a7cbe744";
    // ----- 12: the reaper kills a connection in use -----
    /// The lifetime timer disconnects a borrowed connection.
    LifetimeReapsBorrowed = "lifetime-reaps-borrowed", "class 12: bun #30646";
    /// A shrink closes borrowed connections too.
    ShrinkReapsBorrowed = "shrink-reaps-borrowed", "class 12: bun #30646";
    /// The idle timer reaps below the floor.
    IdleReapsFloor = "idle-reaps-floor", "class 12/29: psycopg_pool #370";
    /// A new connection gets no idle timer.
    ConnectSkipsIdleTimer = "connect-skips-idle-timer", "class 29: bun #17178";
    /// A returned connection gets no idle timer.
    RecycleSkipsIdleTimer = "recycle-skips-idle-timer", "class 29: HikariCP #1256";
    // ----- 13: the idle worker and a get race over one connection -----
    /// A lifetime reopen emits the disconnect but leaves the connection in
    /// the idle set.
    ReopenLeavesIdle = "reopen-leaves-idle", "class 13: vitess #18967";
    /// A `Connected` reported twice puts the connection back in the idle
    /// set, even from a client's hands.
    DuplicateConnectedReadmits = "duplicate-connected-readmits", "class 13: a connect callback run twice";
    // ----- 14: a hung connect holds capacity -----
    /// No connect timer is armed: a hung connect holds its slot forever.
    ConnectTimeoutUnarmed = "connect-timeout-unarmed", "class 14: vitess #20080";
    /// A lifetime reopen dials without a connect timer.
    ReopenWithoutTimeout = "reopen-without-timeout", "class 14: vitess #20079";
    // ----- 15: a waiter past its deadline -----
    /// A waiter's timer is armed 10 ms after its deadline.
    WaiterDeadlineLate = "waiter-deadline-late", "class 15: vitess #20310";
    /// Only the first waiter in line gets a deadline timer.
    QueuedWaiterUnarmed = "queued-waiter-unarmed", "class 15: vitess #20308";
    // ----- 16 to 20: Close -----
    /// Close leaves in-flight connects running.
    CloseSparesConnects = "close-spares-connects", "class 16: vitess #21189, pgdog #512";
    /// Close completes once nothing is idle or connecting, borrowed or not.
    CloseCompletesEarly = "close-completes-early", "class 17: sqlx #3217";
    /// A taint during Close completes it, borrowed connections or not.
    TaintCompletesClose = "taint-completes-close", "class 17: sqlx #3217";
    /// A connection returned during Close goes back to the idle set.
    CloseRecyclesToIdle = "close-recycles-to-idle", "class 17: sqlx #3217";
    /// Close leaves its waiters waiting.
    CloseKeepsWaiters = "close-keeps-waiters", "class 18: vitess #20122";
    /// `SetCapacity` after Close reopens the pool.
    SetCapacityRevivesClosed = "set-capacity-revives-closed", "class 19: vitess #20158";
    /// Close arms no deadline timer.
    CloseDeadlineUnarmed = "close-deadline-unarmed", "class 20: bun #32095";
    /// A close deadline of now (a zero timeout) is read as none.
    ZeroCloseTimeoutAsNone = "zero-close-timeout-as-none", "class 20: bun #32038";
    // ----- 21: an exit path that bypasses release -----
    /// A tainted connection is never let go: its slot stays borrowed.
    TaintKeepsSlot = "taint-keeps-slot", "class 21: bun #32099";
    /// A connection the server closed while borrowed keeps its slot when
    /// returned.
    BrokenReturnKeepsSlot = "broken-return-keeps-slot", "class 21: hatchet #4486";
    // ----- 24: resize counters -----
    /// A shrink's count of connections to retire survives a grow.
    ResizeDebtOutlivesGrow = "resize-debt-outlives-grow", "class 24: deadpool #380";
    // ----- 25, 26: settings -----
    /// A connection retired at its lifetime is not reopened: the floor's
    /// refill opens a clean one in its place.
    LifetimeRefillDropsSetting = "lifetime-refill-drops-setting", "class 25: vitess #20122 (item 4)";
    /// A connection expired on return is reopened without its setting.
    RecycleReopenDropsSetting = "recycle-reopen-drops-setting", "class 25: vitess #11256";
    /// A grant to a request that wants a clean session skips the reset.
    GrantSkipsReset = "grant-skips-reset", "class 26: pgbouncer #418, pgcat #427";
    /// Serving prefers a waiter whose setting matches an idle connection.
    ServePrefersSettingMatch = "serve-prefers-setting-match", "class 26/32: pgcat #444";
    // ----- 27, 28: registry and quotas -----
    /// GC collects a committed pool with nothing idle, though it lends
    /// connections or has waiters.
    GcRemovesBusy = "gc-removes-busy", "class 27: pg_doorman #255";
    /// A GC sweep collects nothing: idle pools pile up.
    GcKeepsIdle = "gc-keeps-idle", "class 27: pg_doorman's idle dynamic pools";
    /// A first connect's commit is acknowledged but not recorded: the
    /// pool is never eligible for GC.
    CommitNotRecorded = "commit-not-recorded", "class 27: pg_doorman 089fc22's registry";
    /// A capacity of 0 is read as unlimited.
    ZeroCapacityUnlimited = "zero-capacity-unlimited", "class 28: pg_doorman #139";
    // ----- 29: the floor after an outage -----
    /// The end of the reconnect backoff refills nothing.
    BackoffNeverRefills = "backoff-never-refills", "class 29: psycopg_pool #1315";
    /// The idle floor is refilled only while someone waits.
    FloorRefillWaitsForAcquire = "floor-refill-waits-for-acquire", "class 29: HikariCP #1111";
    // ----- 30: a connect error the waiter never hears -----
    /// A failed connect tells no waiter: they sit out their timeouts.
    ConnectErrorSwallowed = "connect-error-swallowed", "class 30: bb8 #141";
    /// A close during the handshake is taken as an idle close: no waiter is
    /// told of the failed connect.
    HandshakeCloseSwallowed = "handshake-close-swallowed", "class 30: sqlx #4396";
    // ----- dead connections handed out -----
    /// No connection is ever validated before it is handed out.
    SkipValidation = "skip-validation", "issue 10: bb8 test_on_check_out = false";
    /// A grant that applies a setting skips the validation.
    ValidationSkippedOnApply = "validation-skipped-on-apply", "issue 10: a check skipped on one path";
    /// A request whose connection failed its check waits again at the back.
    InvalidRequeuesAtBack = "invalid-requeues-at-back", "class 32: sqlx #622";
    // ----- 32 and friends: fairness, reasons -----
    /// The newest waiter is served first.
    NewestWaiterFirst = "newest-waiter-first", "class 32: sqlx #622";
    /// A return to a full pool is disconnected (`>=` for `>`).
    RecycleDisconnectsWhenFull = "recycle-disconnects-when-full", "issue 8: a flipped comparison";
    /// Every acquire is rejected as closed while the pool is open.
    AcquireRejectsWhileOpen = "acquire-rejects-while-open", "issue 8: a flipped comparison";
}

impl Mutation {
    /// Whether this build can apply mutations (the `mutations` feature).
    pub const fn available() -> bool {
        cfg!(feature = "mutations")
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mutation name that is not one of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown mutation `{0}`; expected one of: {names}", names = Mutation::ALL.map(|m| m.name()).join(", "))]
pub struct UnknownMutation(pub String);

impl FromStr for Mutation {
    type Err = UnknownMutation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMutation(s.to_owned()))
    }
}

/// The mutation a state machine runs with; zero-sized without the feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Active {
    #[cfg(feature = "mutations")]
    mutation: Option<Mutation>,
    /// `resize-debt-outlives-grow`: connections a shrink still means to
    /// retire on return. The reference pool has no such count: it compares
    /// held with the capacity.
    #[cfg(feature = "mutations")]
    resize_debt: usize,
}

impl Active {
    /// Whether `mutation` is on. Always `false` without the feature.
    #[inline(always)]
    pub(crate) fn is(self, mutation: Mutation) -> bool {
        #[cfg(feature = "mutations")]
        {
            self.mutation == Some(mutation)
        }
        #[cfg(not(feature = "mutations"))]
        {
            let _ = mutation;
            false
        }
    }

    #[cfg(feature = "mutations")]
    pub(crate) fn set(&mut self, mutation: Option<Mutation>) {
        self.mutation = mutation;
    }

    /// What the mutation keeps beyond its name, for a canonical state hash
    /// (0 without the feature).
    pub(crate) fn state_word(self) -> u64 {
        #[cfg(feature = "mutations")]
        {
            self.resize_debt as u64
        }
        #[cfg(not(feature = "mutations"))]
        {
            0
        }
    }

    /// A shrink by `n`: with `resize-debt-outlives-grow`, `n` more returns
    /// are to be retired, whatever the capacity does next.
    #[inline(always)]
    pub(crate) fn add_resize_debt(&mut self, n: usize) {
        #[cfg(feature = "mutations")]
        if self.is(Mutation::ResizeDebtOutlivesGrow) {
            self.resize_debt += n;
        }
        #[cfg(not(feature = "mutations"))]
        let _ = n;
    }

    /// Whether a return is to be retired for an old shrink's debt (and pay
    /// one off). Always `false` without the mutation.
    #[inline(always)]
    pub(crate) fn take_resize_debt(&mut self) -> bool {
        #[cfg(feature = "mutations")]
        if self.resize_debt > 0 {
            self.resize_debt -= 1;
            return true;
        }
        false
    }
}
