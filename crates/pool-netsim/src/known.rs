//! Findings in third-party pools that the network simulation is known to produce, each classified and written up: a sweep counts them apart, and the tests check they are still found while everything else passes.

use pool_sim::Invariant;

use crate::netsim::{NetOutcome, NetReport};
use crate::plan::{Event, NetScenario, PlannedFault};
use crate::under_test::{PoolKind, PoolOptions};

/// How a finding is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The pool breaks a property its users rely on; written up to file.
    RealBug,
    /// The pool does what its documentation says (an option's trade-off).
    Documented,
    /// The harness, not the pool (turmoil's semantics, a wrong check).
    HarnessArtefact,
}

impl std::fmt::Display for Classification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Classification::RealBug => "real bug",
            Classification::Documented => "documented behaviour",
            Classification::HarnessArtefact => "harness artefact",
        })
    }
}

/// A known finding: which pool, which invariants, under which options.
#[derive(Debug)]
pub struct Finding {
    pub name: &'static str,
    pub pool: PoolKind,
    /// The invariants it breaks (one root cause can break several).
    pub invariants: &'static [Invariant],
    pub classification: Classification,
    /// The write-up (under docs/findings/).
    pub write_up: &'static str,
    /// Whether a failing scenario is this finding's (its options allow it).
    pub applies: fn(&NetScenario) -> bool,
}

pub const FINDINGS: &[Finding] = &[
    Finding {
        name: "bb8-hung-connect-holds-its-slot",
        pool: PoolKind::Bb8,
        // The hung connect's slot is never freed (a lone waiter starves
        // with capacity free), and its task keeps the pool, and its idle
        // sessions, alive after the last handle is dropped.
        invariants: &[Invariant::Starved, Invariant::Footprint],
        classification: Classification::RealBug,
        write_up: "docs/findings/bb8-hung-connect-holds-its-slot.md",
        applies: |s| {
            s.plan
                .connects
                .iter()
                .any(|c| c.fault == PlannedFault::Hang)
        },
    },
    Finding {
        name: "bb8-unchecked-checkout",
        pool: PoolKind::Bb8,
        invariants: &[Invariant::GhostIdle],
        classification: Classification::Documented,
        write_up: "docs/findings/bb8-unchecked-checkout.md",
        applies: |s| matches!(&s.pool, PoolOptions::Bb8(o) if !o.test_on_check_out),
    },
    Finding {
        name: "deadpool-resize-overshoots-max-size",
        pool: PoolKind::Deadpool,
        invariants: &[Invariant::OverCapacity],
        classification: Classification::RealBug,
        write_up: "docs/findings/deadpool-resize-overshoots-max-size.md",
        applies: |s| {
            s.plan
                .events
                .iter()
                .any(|e| matches!(e.event, Event::Resize { .. }))
        },
    },
];

/// The known finding a failed run is an instance of, if any.
pub fn finding_for(report: &NetReport) -> Option<&'static Finding> {
    let NetOutcome::Violated { invariant, .. } = report.outcome else {
        return None;
    };
    FINDINGS.iter().find(|f| {
        f.pool == report.scenario.kind()
            && f.invariants.contains(&invariant)
            && (f.applies)(&report.scenario)
    })
}
