//! `cargo xtask netsim`: pool-tokio and tokio-postgres against the fake
//! Postgres server inside turmoil, one seed or a range.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use pool_netsim::netsim::{NetOutcome, NetReport, run};

use crate::print;
use crate::sweep::parse_range;

/// Run seeds of the network simulation: each draws processes with pools,
/// clients, protocol faults (ReadyForQuery + 57P01 + FIN in one write,
/// hangs, the role limit), idle-session kills, terminate-all, partitions and
/// crashes; then the faults heal and every pool must converge. Deterministic
/// per seed.
#[derive(clap::Args)]
pub struct Args {
    /// One seed.
    #[arg(long, conflicts_with = "seeds", required_unless_present = "seeds")]
    seed: Option<u64>,
    /// A range of seeds, as `A..B`.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<Range<u64>>,
    /// Failures listed in full (the rest are counted).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

pub fn run_cmd(args: Args) -> i32 {
    let seeds: Vec<u64> = match (args.seed, args.seeds) {
        (Some(seed), _) => vec![seed],
        (None, Some(range)) => range.collect(),
        (None, None) => unreachable!("clap requires one"),
    };
    let single = seeds.len() == 1;
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let (mut gets, mut failed, mut sim_ms) = (0u64, 0u64, 0u64);
    let mut failures: Vec<NetReport> = Vec::new();
    let step = (seeds.len() / 10).max(1);
    for (i, &seed) in seeds.iter().enumerate() {
        let report = run(seed);
        if single {
            let options = toml::Value::try_from(&report.options).expect("options serialize");
            println!("netsim: seed {seed}\noptions drawn from the seed:");
            println!("  {}", print::key_values(&options));
        }
        for (k, v) in &report.faults {
            *faults.entry(k.clone()).or_default() += v;
        }
        gets += report.gets_ok;
        failed += report.gets_failed;
        sim_ms += report.sim_ms;
        // Listed once, at the end, as sweep does.
        if report.outcome != NetOutcome::Pass {
            failures.push(report);
        }
        if !single && (i + 1) % step == 0 {
            println!(
                "  {}/{} seeds, {} failed",
                i + 1,
                seeds.len(),
                failures.len()
            );
        }
    }
    let wall = started.elapsed().as_secs_f64();
    println!(
        "netsim: {} seed(s) in {wall:.1} s: {} passed, {} failed; {:.1} s of sim time",
        seeds.len(),
        seeds.len() - failures.len(),
        failures.len(),
        sim_ms as f64 / 1_000.0
    );
    println!("  gets served {gets}, gets failed (during faults) {failed}");
    let fired: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("  faults fired: {}", fired.join(", "));
    if failures.is_empty() {
        return 0;
    }
    print::reproduce_list(&failures, args.show, |f| {
        (
            format!("cargo xtask netsim --seed {}", f.seed),
            outcome_line(&f.outcome),
        )
    });
    failures[0].outcome.exit_code()
}

fn outcome_line(outcome: &NetOutcome) -> String {
    match outcome {
        NetOutcome::Pass => "pass".to_owned(),
        NetOutcome::Violated {
            invariant,
            at_ms,
            detail,
        } => format!("FAIL: {invariant} at {at_ms} ms: {detail}"),
        NetOutcome::SimError(e) => format!("SIM ERROR: {e}"),
    }
}
