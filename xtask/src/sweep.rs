//! `cargo xtask sweep`: many seeds in parallel, with progress and a summary.

use std::io::IsTerminal;
use std::ops::Range;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pool_sim::{Mutation, Outcome};

use crate::sim::{DEFAULT_EVENTS, reproduce_command};
use crate::{print, seeds};

/// Run a range of seeds across cores: a progress bar, a summary, and the
/// command that reproduces each failure (the first --show of them).
#[derive(clap::Args)]
pub struct Args {
    /// Seeds to run, as `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Range<u64>,
    /// Steps in each seed's safety phase.
    #[arg(long, default_value_t = DEFAULT_EVENTS)]
    events: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard K of N (1-based): seed i of the range when i % N == K-1.
    /// For splitting a sweep across CI matrix jobs or machines.
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    shard: Option<(u64, u64)>,
    /// Put a seed report's bug back into the core.
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// Failures listed in full (the rest are counted).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

pub fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not a range like 0..1000"))?;
    let a: u64 = a.parse().map_err(|e| format!("range start `{a}`: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("range end `{b}`: {e}"))?;
    if a >= b {
        return Err(format!("the range {a}..{b} is empty"));
    }
    Ok(a..b)
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not a shard like 2/4"))?;
    let k: u64 = k.parse().map_err(|e| format!("shard `{k}`: {e}"))?;
    let n: u64 = n.parse().map_err(|e| format!("shard count `{n}`: {e}"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("shard {k}/{n}: K must be in 1..=N"));
    }
    Ok((k, n))
}

pub fn run(args: Args) -> i32 {
    let seeds: Vec<u64> = match args.shard {
        Some((k, n)) => args
            .seeds
            .clone()
            .filter(|s| (s - args.seeds.start) % n == k - 1)
            .collect(),
        None => args.seeds.clone().collect(),
    };
    let jobs = seeds::jobs(args.jobs);
    let shard = args
        .shard
        .map(|(k, n)| format!(", shard {k}/{n}"))
        .unwrap_or_default();
    let mutation = args
        .mutation
        .map(|m| format!(", mutation {m}"))
        .unwrap_or_default();
    println!(
        "sweep: seeds {}..{}{shard} ({} seeds), {} events each{mutation}, {jobs} jobs",
        args.seeds.start,
        args.seeds.end,
        seeds.len(),
        args.events
    );
    #[allow(clippy::disallowed_methods)] // wall time of the sweep, reported only
    let started = Instant::now();
    let bar = progress_bar(seeds.len() as u64);
    let step = (seeds.len() as u64 / 10).max(1);
    let (mut finished, mut failed) = (0u64, 0usize);
    // Failures are listed once, at the end: a line per failure as it came
    // would vanish with a hidden bar (piped output, CI) and repeat the list.
    let batch = seeds::run(&seeds, args.events, args.mutation, jobs, false, |result| {
        finished += 1;
        if result.outcome != Outcome::Pass {
            failed += 1;
        }
        bar.set_message(format!("{failed} failed"));
        bar.inc(1);
        if bar.is_hidden() && finished % step == 0 {
            println!("  {finished}/{} seeds, {failed} failed", seeds.len());
        }
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let failures = batch.failures;
    println!(
        "swept {} seeds in {wall:.2}s: {} passed, {} failed",
        seeds.len(),
        seeds.len() - failures.len(),
        failures.len()
    );
    println!(
        "  {} events ({:.0} events/s, {:.0} seeds/s on {jobs} jobs)",
        batch.events,
        batch.events as f64 / wall,
        seeds.len() as f64 / wall
    );
    if failures.is_empty() {
        return 0;
    }
    let mut by_invariant = std::collections::BTreeMap::<String, usize>::new();
    for f in &failures {
        let key = match &f.outcome {
            Outcome::Violated(v) => v.invariant.to_string(),
            _ => "panic".to_owned(),
        };
        *by_invariant.entry(key).or_default() += 1;
    }
    let counts: Vec<String> = by_invariant
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!("  failures by kind: {}", counts.join(", "));
    print::reproduce_list(&failures, args.show, |f| {
        (
            reproduce_command(f.seed, args.events, args.mutation),
            print::outcome_line(&f.outcome),
        )
    });
    failures[0].outcome.exit_code()
}

pub fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds, {per_sec}, eta {eta} {msg}")
            .expect("a valid template"),
    );
    bar
}
