//! `cargo xtask netsim`: pools under test (pool-tokio, bb8, deadpool) with tokio-postgres against the fake Postgres server inside turmoil: one seed, a range, every pool, or a scenario file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use pool_netsim::known;
use pool_netsim::netsim::{NetOutcome, NetReport, run, run_scenario};
use pool_netsim::plan::{Expect, NetScenario};
use pool_netsim::under_test::PoolKind;

use crate::print;
use crate::sweep::parse_range;

/// Run seeds of the network simulation: each draws processes with pools,
/// clients, protocol faults (ReadyForQuery + 57P01 + FIN in one write,
/// hangs, the role limit), idle-session kills, terminate-all, partitions,
/// db crashes and resizes; then the faults heal and every pool must
/// converge. The same seed gives every pool the same workload and faults.
/// Deterministic per seed, in any process and order.
#[derive(clap::Args)]
pub struct Args {
    /// One seed.
    #[arg(long, conflicts_with_all = ["seeds", "replay"], required_unless_present_any = ["seeds", "replay"])]
    seed: Option<u64>,
    /// A range of seeds, as `A..B`.
    #[arg(long, value_parser = parse_range, conflicts_with = "replay")]
    seeds: Option<Range<u64>>,
    /// Replay a scenario file (written by --record or shrink --netsim) and
    /// check its `expect`.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// The pool under test: pool-tokio, bb8 or deadpool.
    #[arg(long, default_value = "pool-tokio", conflicts_with = "pools")]
    pool: PoolKind,
    /// Several pools, comma separated, or `all`: the same seeds for each.
    #[arg(long, value_parser = parse_pools)]
    pools: Option<PoolList>,
    /// With --seed: write the run as a scenario file.
    #[arg(long, value_name = "FILE", requires = "seed")]
    record: Option<PathBuf>,
    /// Run every seed twice in this process and check the two runs are
    /// identical (outcome, counters and trace hash).
    #[arg(long)]
    twice: bool,
    /// Threads (seeds run in parallel; each run is single-threaded).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Failures listed in full per pool (the rest are counted).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

/// The pools of `--pools` (one value, so clap keeps it whole).
#[derive(Clone, Debug)]
pub struct PoolList(Vec<PoolKind>);

fn parse_pools(s: &str) -> Result<PoolList, String> {
    if s == "all" {
        return Ok(PoolList(PoolKind::ALL.to_vec()));
    }
    s.split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map(PoolList)
}

pub fn run_cmd(args: Args) -> i32 {
    let pools = args.pools.clone().map_or_else(|| vec![args.pool], |p| p.0);
    if let Some(path) = &args.replay {
        return replay(path);
    }
    if let Some(seed) = args.seed
        && pools.len() == 1
    {
        return single(seed, pools[0], args.record.as_ref(), args.twice);
    }
    let seeds: Vec<u64> = match (args.seed, &args.seeds) {
        (Some(seed), _) => vec![seed],
        (None, Some(range)) => range.clone().collect(),
        (None, None) => unreachable!("clap requires one"),
    };
    sweep(&seeds, &pools, &args)
}

/// One seed, one pool: the options drawn, a summary, and on failure the
/// last trace lines and the command that reproduces it.
fn single(seed: u64, kind: PoolKind, record: Option<&PathBuf>, twice: bool) -> i32 {
    let scenario = NetScenario::draw(seed, kind);
    println!("netsim: seed {seed}, pool {kind} ({})", kind.capabilities());
    print_options(&scenario);
    let report = run_scenario(&scenario);
    print_summary(&report);
    if let Some(path) = record {
        let mut recorded = scenario.clone();
        recorded.about = format!("cargo xtask netsim --pool {kind} --seed {seed} --record");
        recorded.expect = Some(expect_of(&report.outcome));
        if let Err(e) = std::fs::write(path, recorded.to_toml()) {
            eprintln!("error: {}: {e}", path.display());
            return 1;
        }
        println!("  recorded      {}", path.display());
    }
    if twice {
        let again = run_scenario(&scenario);
        if again != report {
            println!("  SECOND RUN DIFFERS: {}", outcome_line(&again.outcome));
            return 1;
        }
        println!("  second run    identical");
    }
    if report.outcome != NetOutcome::Pass {
        println!("\nreproduce: cargo xtask netsim --pool {kind} --seed {seed}");
    }
    report.outcome.exit_code()
}

fn replay(path: &std::path::Path) -> i32 {
    let scenario = match NetScenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!(
        "netsim: replay {} (pool {}, seed {}, {} faults)",
        path.display(),
        scenario.kind(),
        scenario.seed,
        scenario.plan.len()
    );
    if !scenario.about.is_empty() {
        println!("  {}", scenario.about);
    }
    print_options(&scenario);
    let report = run_scenario(&scenario);
    print_summary(&report);
    match &scenario.expect {
        None => report.outcome.exit_code(),
        Some(expect) if *expect == expect_of(&report.outcome) => {
            println!("  expect        {} (as expected)", expect_name(expect));
            0
        }
        Some(expect) => {
            println!(
                "  expect        {}, but the run gave {}",
                expect_name(expect),
                report.outcome.name()
            );
            1
        }
    }
}

pub fn expect_of(outcome: &NetOutcome) -> Expect {
    match outcome {
        NetOutcome::Pass => Expect::Pass,
        other => Expect::Fail(other.name()),
    }
}

fn expect_name(expect: &Expect) -> String {
    match expect {
        Expect::Pass => "pass".to_owned(),
        Expect::Fail(name) => name.clone(),
    }
}

fn print_options(scenario: &NetScenario) {
    let value = |v: toml::Value| print::key_values(&v);
    println!("options drawn from the seed:");
    println!(
        "  shared    {}",
        value(toml::Value::try_from(&scenario.options).expect("options serialize"))
    );
    println!(
        "  pool      {}",
        value(toml::Value::try_from(&scenario.pool).expect("options serialize"))
    );
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for c in &scenario.plan.connects {
        *kinds.entry(format!("{:?}", c.fault)).or_default() += 1;
    }
    for e in &scenario.plan.events {
        let name = format!("{:?}", e.event);
        let name = name.split([' ', '{']).next().unwrap_or("").to_owned();
        *kinds.entry(name).or_default() += 1;
    }
    let planned: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("  plan      {}", planned.join(", "));
}

fn print_summary(report: &NetReport) {
    println!("summary:");
    println!("  outcome       {}", outcome_line(&report.outcome));
    println!(
        "  gets          {} served, {} failed, {} dropped mid-way; {} handed out as their socket closed (allowed race); {} queries ok",
        report.gets_ok,
        report.gets_failed,
        report.gets_cancelled,
        report.handed_out_closing,
        report.queries_ok
    );
    println!(
        "  sim           {} of sim time, {} steps, {} connections accepted, trace hash {:016x}",
        print::seconds(report.sim_ms),
        report.steps,
        report.accepted,
        report.trace_hash
    );
    let fired: Vec<String> = report
        .faults
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("  faults fired  {}", fired.join(", "));
    if report.outcome != NetOutcome::Pass {
        if let Some(finding) = known::finding_for(report) {
            println!(
                "  known finding {} ({}): {}",
                finding.name, finding.classification, finding.write_up
            );
        }
        println!("last trace lines:");
        for line in &report.trace_tail {
            println!("  {line}");
        }
    }
}

/// Seeds x pools, across `--jobs` threads; a table per pool.
fn sweep(seeds: &[u64], pools: &[PoolKind], args: &Args) -> i32 {
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let names: Vec<&str> = pools.iter().map(|k| k.name()).collect();
    println!(
        "netsim: seeds {}..{} ({} seeds) x pools {}, {} job(s){}",
        seeds.first().copied().unwrap_or(0),
        seeds.last().map_or(0, |s| s + 1),
        seeds.len(),
        names.join(", "),
        args.jobs.max(1),
        if args.twice { ", every seed twice" } else { "" }
    );
    let work: Vec<(PoolKind, u64)> = pools
        .iter()
        .flat_map(|&k| seeds.iter().map(move |&s| (k, s)))
        .collect();
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<(PoolKind, u64, NetReport, bool)>> = Mutex::new(Vec::new());
    let step = (work.len() / 10).max(1);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(&(kind, seed)) = work.get(i) else {
                        return;
                    };
                    let report = run(seed, kind);
                    let same = !args.twice || run(seed, kind) == report;
                    let mut r = results.lock().unwrap();
                    r.push((kind, seed, report, same));
                    if r.len() % step == 0 {
                        println!("  {}/{} runs", r.len(), work.len());
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(k, s, _, _)| (*k, *s));
    let wall = started.elapsed().as_secs_f64();
    println!("\nnetsim: {} runs in {wall:.1} s", results.len());
    println!(
        "\n{:<11} {:>6} {:>7} {:>7}  {:<40} known / new",
        "pool", "seeds", "passed", "failed", "failed by invariant"
    );
    let mut exit = 0;
    let mut reproduce: Vec<(String, String)> = Vec::new();
    let mut differ = 0;
    for &kind in pools {
        let mine: Vec<&NetReport> = results
            .iter()
            .filter(|(k, ..)| *k == kind)
            .map(|(_, _, r, _)| r)
            .collect();
        differ += results
            .iter()
            .filter(|(k, _, _, same)| *k == kind && !same)
            .count();
        let failed: Vec<&&NetReport> = mine
            .iter()
            .filter(|r| r.outcome != NetOutcome::Pass)
            .collect();
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        let (mut known_n, mut new_n) = (0, 0);
        for r in &failed {
            *by.entry(r.outcome.name()).or_default() += 1;
            if known::finding_for(r).is_some() {
                known_n += 1;
            } else {
                new_n += 1;
                if exit == 0 {
                    exit = r.outcome.exit_code();
                }
            }
        }
        let by_text: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "{:<11} {:>6} {:>7} {:>7}  {:<40} {known_n} / {new_n}",
            kind.name(),
            mine.len(),
            mine.len() - failed.len(),
            failed.len(),
            if by_text.is_empty() {
                "-".to_owned()
            } else {
                by_text.join(", ")
            }
        );
        for r in failed.iter().take(args.show) {
            let known = known::finding_for(r)
                .map(|f| format!(" [known: {}]", f.name))
                .unwrap_or_default();
            reproduce.push((
                format!("cargo xtask netsim --pool {kind} --seed {}", r.seed()),
                format!("{}{known}", outcome_line(&r.outcome)),
            ));
        }
        if failed.len() > args.show {
            reproduce.push((
                format!("... {kind}: {} more", failed.len() - args.show),
                "--show N lists more".to_owned(),
            ));
        }
    }
    print_by_fault(&results, pools);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, _, r, _) in &results {
        for (k, v) in &r.faults {
            *faults.entry(k).or_default() += v;
        }
    }
    let fired: Vec<String> = faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("\nfaults fired (all runs): {}", fired.join(", "));
    if args.twice {
        println!(
            "second runs in this process: {} identical, {differ} differ",
            results.len() - differ
        );
        if differ > 0 {
            exit = 1;
        }
    }
    if !reproduce.is_empty() {
        print::reproduce_list(&reproduce, usize::MAX, |(c, o)| (c.clone(), o.clone()));
    }
    exit
}

/// Pools by fault: for each fault that fired (and each workload feature
/// drawn), the runs it fired in and how many of them failed, per pool and
/// invariant. A run can have several faults: a row says where failures
/// happened, the shrunk scenarios say which fault they need.
fn print_by_fault(results: &[(PoolKind, u64, NetReport, bool)], pools: &[PoolKind]) {
    let features = |r: &NetReport| -> Vec<String> {
        let mut f: Vec<String> = r.faults.keys().cloned().collect();
        let o = &r.scenario.options;
        if r.scenario
            .plan
            .events
            .iter()
            .any(|e| matches!(e.event, pool_netsim::plan::Event::Resize { .. }))
        {
            f.push("resize (workload)".to_owned());
        }
        if o.cancel_pct > 0 {
            f.push("cancelled gets (workload)".to_owned());
        }
        if o.listeners > 0 {
            f.push("LISTEN clients (workload)".to_owned());
        }
        f
    };
    /// Runs with the fault, and their failures by invariant.
    type Cell = (u64, BTreeMap<String, u64>);
    let mut rows: BTreeMap<String, BTreeMap<PoolKind, Cell>> = BTreeMap::new();
    for (kind, _, r, _) in results {
        for feature in features(r) {
            let cell = rows.entry(feature).or_default().entry(*kind).or_default();
            cell.0 += 1;
            if r.outcome != NetOutcome::Pass {
                *cell.1.entry(r.outcome.name()).or_default() += 1;
            }
        }
    }
    println!(
        "
by fault: runs where it fired: failed (by invariant)"
    );
    print!("{:<28}", "fault");
    for k in pools {
        print!(" | {:<34}", k.name());
    }
    println!();
    for (feature, cells) in &rows {
        print!("{feature:<28}");
        for k in pools {
            let text = match cells.get(k) {
                None => "-".to_owned(),
                Some((runs, failed)) if failed.is_empty() => format!("{runs} runs: 0 failed"),
                Some((runs, failed)) => {
                    let by: Vec<String> = failed.iter().map(|(i, n)| format!("{i} {n}")).collect();
                    format!("{runs} runs: {}", by.join(", "))
                }
            };
            print!(" | {text:<34}");
        }
        println!();
    }
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

/// `cargo xtask shrink --netsim`: a failing seed (or scenario file) down
/// to the fewest faults, clients and processes that break the same
/// invariant, written as a scenario that `--replay` checks.
pub fn shrink_cmd(
    seed: Option<u64>,
    scenario: Option<&std::path::Path>,
    kind: PoolKind,
    out: &std::path::Path,
) -> i32 {
    let (original, command) = match (scenario, seed) {
        (Some(path), _) => match NetScenario::load(path) {
            Ok(s) => (
                s,
                format!("cargo xtask shrink --netsim --scenario {}", path.display()),
            ),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        (None, Some(seed)) => (
            NetScenario::draw(seed, kind),
            format!("cargo xtask shrink --netsim --pool {kind} --seed {seed}"),
        ),
        (None, None) => unreachable!("clap requires --seed or --scenario"),
    };
    let report = run_scenario(&original);
    let NetOutcome::Violated { invariant, .. } = report.outcome else {
        println!(
            "{command}: the run does not break an invariant ({}): nothing to shrink",
            outcome_line(&report.outcome)
        );
        return 1;
    };
    println!(
        "shrinking pool {} seed {}: {} faults, {} processes, {} clients; {invariant}",
        original.kind(),
        original.seed,
        original.plan.len(),
        original.options.processes,
        original.options.clients
    );
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let Some(shrunk) = pool_netsim::shrink::shrink(&original, invariant) else {
        println!("the failure did not reproduce");
        return 1;
    };
    let mut scenario = shrunk.scenario;
    scenario.expect = Some(Expect::Fail(invariant.to_string()));
    scenario.about = format!(
        "{invariant}, shrunk by `{command}` from {} to {} faults ({} runs)",
        shrunk.faults_before,
        scenario.plan.len(),
        shrunk.runs
    );
    if let Err(e) = std::fs::write(out, scenario.to_toml()) {
        eprintln!("error: {}: {e}", out.display());
        return 1;
    }
    println!(
        "shrunk in {:.1} s ({} runs): {} -> {} faults, {} processes, {} clients ({} listening); written to {}",
        started.elapsed().as_secs_f64(),
        shrunk.runs,
        shrunk.faults_before,
        scenario.plan.len(),
        scenario.options.processes,
        scenario.options.clients,
        scenario.options.listeners,
        out.display()
    );
    println!("replay: cargo xtask netsim --replay {}", out.display());
    0
}
