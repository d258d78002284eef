//! The trace of one short seed, snapshotted: a change in what the simulator
//! or the core does shows up as a readable diff.

use pool_sim::Keep;
use pool_sim::run::{Options, run_seed};

#[test]
fn short_seed_trace() {
    let options = Options {
        keep: Keep::All,
        ..Options::default()
    };
    let (_, report) = run_seed(7, 40, options);
    let trace: Vec<String> = report.trace.iter().map(|l| l.to_string()).collect();
    insta::assert_snapshot!(trace.join("\n"));
}
