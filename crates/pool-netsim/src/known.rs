//! Findings in third-party pools that the network simulation is known to produce, each classified and written up: a sweep counts them apart, and the tests check they are still found while everything else passes.

use pool_sim::Invariant;

use crate::netsim::{NetOutcome, NetReport};
use crate::plan::NetScenario;
use crate::under_test::PoolKind;

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

/// A known finding: which pool, which invariant, under which options.
#[derive(Debug)]
pub struct Finding {
    pub name: &'static str,
    pub pool: PoolKind,
    pub invariant: Invariant,
    pub classification: Classification,
    /// The write-up (under docs/findings/).
    pub write_up: &'static str,
    /// Whether a failing scenario is this finding's (its options allow it).
    pub applies: fn(&NetScenario) -> bool,
}

pub const FINDINGS: &[Finding] = &[];

/// The known finding a failed run is an instance of, if any.
pub fn finding_for(report: &NetReport) -> Option<&'static Finding> {
    let NetOutcome::Violated { invariant, .. } = report.outcome else {
        return None;
    };
    FINDINGS.iter().find(|f| {
        f.pool == report.scenario.kind()
            && f.invariant == invariant
            && (f.applies)(&report.scenario)
    })
}
