//! `--perfetto` output: valid Chrome Trace Event JSON with a track per
//! connection (opening, idle, borrowed, closing spans), client waits, faults
//! and the violation.

use std::collections::BTreeSet;
use std::path::Path;

use pool_sim::run::{Options, run_scenario};
use pool_sim::{Keep, Scenario};
use serde_json::Value;

fn trace_of(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(file);
    let scenario = Scenario::load(&path).expect("it parses");
    let options = Options {
        keep: Keep::All,
        ..Options::default()
    };
    let report = run_scenario(&scenario, options);
    let json = pool_sim::perfetto::chrome_trace(&report.trace);
    serde_json::from_str(&json).expect("the trace is valid JSON")
}

fn names(trace: &Value, phase: &str) -> BTreeSet<String> {
    trace["traceEvents"]
        .as_array()
        .expect("traceEvents is an array")
        .iter()
        .filter(|e| e["ph"] == phase)
        .map(|e| match phase {
            "M" => e["args"]["name"].as_str().unwrap_or_default().to_owned(),
            _ => e["name"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

#[test]
fn bun_scenario_has_connection_tracks_spans_waits_and_faults() {
    let trace = trace_of("seed-001-bun-ready-then-fin.toml");
    let tracks = names(&trace, "M");
    for track in ["P0", "world", "events", "c0", "c2", "client 0", "client 1"] {
        assert!(tracks.contains(track), "no track {track}: {tracks:?}");
    }
    let spans = names(&trace, "X");
    for span in ["opening", "idle", "closing"] {
        assert!(spans.contains(span), "no {span} span: {spans:?}");
    }
    assert!(
        spans.iter().any(|s| s.starts_with("borrowed by r")),
        "{spans:?}"
    );
    assert!(spans.iter().any(|s| s.starts_with("wait r")), "{spans:?}");
    assert!(spans.iter().any(|s| s.starts_with("hold c")), "{spans:?}");
    let instants = names(&trace, "i");
    for instant in [
        "fault: ready-then-fin",
        "fault: kill-all",
        "server closed",
        "pool hears: connected (late: stale)",
    ] {
        assert!(instants.contains(instant), "no {instant}: {instants:?}");
    }
}

#[test]
#[cfg_attr(not(feature = "mutations"), ignore = "needs the mutations feature")]
fn a_mutation_failure_has_its_violation_as_a_global_instant() {
    let trace = trace_of("mutations/handoff-while-over-capacity.toml");
    let violation: Vec<&Value> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "violation")
        .collect();
    assert_eq!(violation.len(), 1);
    assert_eq!(violation[0]["name"], "capacity-stalled violated");
    assert_eq!(violation[0]["s"], "g");
    // Virtual milliseconds are microseconds * 1000 in the file.
    assert_eq!(violation[0]["ts"], 1_027_000);
}
