//! The real bugs, put back on purpose: each mutation re-introduces one bug
//! from a seed report at the exact decision point where its fix lives, so the
//! simulator can prove it finds it.
//!
//! The names always exist (tools list them); the mutated behaviour is only
//! compiled with the `mutations` feature, which is off by default. Without
//! it `mutated` is a constant `false` and every mutated branch is dead code.

use std::fmt;
use std::str::FromStr;

/// A bug from a seed report, re-introduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// Bun (seed 001): `#onConnected` accepted a `Connected` that arrived
    /// after `#onClose`, re-adding a dead connection to the ready set.
    AcceptStaleConnect,
    /// Hatchet (seed 000): the LISTEN conn was taken with `Conn()` instead of
    /// `Hijack()`, so every detach kept its slot.
    DetachKeepsSlot,
    /// Vitess (seed 003, change 1): a conn returned while the pool is over
    /// capacity was handed to the next waiter instead of being closed.
    HandoffWhileOverCapacity,
    /// Vitess (seed 003, changes 2 and 3): a reopen ignored Close and opened
    /// a connection after shutdown began.
    ReopenIgnoresClose,
    /// Vitess (seed 003, change 4): `connReopen` read the Setting after the
    /// replace, so a reopened conn silently lost its setting.
    ReopenDropsSetting,
    /// pg_doorman (seed 002): GC removed a pool whose first connect was still
    /// in flight (it only looked at the pool's established size).
    GcRemovesInitializing,
    /// pg_doorman (seed 002, reverted attempt 089fc22): the pool was
    /// registered only after its first connect, so two concurrent first
    /// logins built two pools for one key.
    RegisterAfterConnect,
    /// postgres-mcp (seed 004): an orphaned process had no watchdog and kept
    /// its pool open for good.
    OrphanKeepsPool,
}

impl Mutation {
    pub const ALL: [Mutation; 8] = [
        Mutation::AcceptStaleConnect,
        Mutation::DetachKeepsSlot,
        Mutation::HandoffWhileOverCapacity,
        Mutation::ReopenIgnoresClose,
        Mutation::ReopenDropsSetting,
        Mutation::GcRemovesInitializing,
        Mutation::RegisterAfterConnect,
        Mutation::OrphanKeepsPool,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mutation::AcceptStaleConnect => "accept-stale-connect",
            Mutation::DetachKeepsSlot => "detach-keeps-slot",
            Mutation::HandoffWhileOverCapacity => "handoff-while-over-capacity",
            Mutation::ReopenIgnoresClose => "reopen-ignores-close",
            Mutation::ReopenDropsSetting => "reopen-drops-setting",
            Mutation::GcRemovesInitializing => "gc-removes-initializing",
            Mutation::RegisterAfterConnect => "register-after-connect",
            Mutation::OrphanKeepsPool => "orphan-keeps-pool",
        }
    }

    /// The seed report the bug comes from.
    pub const fn seed_report(self) -> &'static str {
        match self {
            Mutation::AcceptStaleConnect => "001 Bun.SQL",
            Mutation::DetachKeepsSlot => "000 Hatchet",
            Mutation::HandoffWhileOverCapacity
            | Mutation::ReopenIgnoresClose
            | Mutation::ReopenDropsSetting => "003 Vitess smartconnpool",
            Mutation::GcRemovesInitializing | Mutation::RegisterAfterConnect => "002 pg_doorman",
            Mutation::OrphanKeepsPool => "004 postgres-mcp",
        }
    }

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
}
