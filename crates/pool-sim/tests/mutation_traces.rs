//! The trace of each mutation's regression scenario, snapshotted: read one
//! and it tells the story of the race that the bug loses.
#![cfg(feature = "mutations")]

use std::path::Path;

use pool_sim::run::{Options, run_scenario};
use pool_sim::scenario::files_in;
use pool_sim::{Keep, Scenario};

#[test]
fn mutation_scenario_traces() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/mutations");
    let files = files_in(&dir).expect("scenarios/mutations is readable");
    assert!(!files.is_empty());
    for path in files {
        let scenario = Scenario::load(&path).expect("it parses");
        let options = Options {
            keep: Keep::All,
            ..Options::default()
        };
        let report = run_scenario(&scenario, options);
        let trace: Vec<String> = report.trace.iter().map(|l| l.to_string()).collect();
        let story = format!("{}\n\n{}", scenario.about, trace.join("\n"));
        insta::assert_snapshot!(scenario.name.clone(), story);
    }
}
