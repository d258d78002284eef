//! Bytes -> a world and its transitions (through `Arbitrary`) -> a run with
//! every checker on. Any violation or panic is a finding. With
//! `POOL_SIM_MUTATION=NAME` the core runs with that seed report's bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_sim::fuzz::{Case, mutation_from_env};
use pool_sim::run::{Options, Outcome, run_scenario};

fuzz_target!(|data: &[u8]| {
    let Ok(case) = Case::from_bytes(data) else {
        return;
    };
    let options = Options {
        mutation: mutation_from_env(),
        ..Options::default()
    };
    let report = run_scenario(&case.scenario(), options);
    if report.outcome != Outcome::Pass {
        panic!("{:?}", report.outcome);
    }
});
