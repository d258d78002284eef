//! `cargo xtask sweep`: many seeds in parallel, with progress and a summary.

use std::io::IsTerminal;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pool_sim::{Options, Outcome};

use crate::print;
use crate::sim::{DEFAULT_EVENTS, reproduce_command};

/// Run a range of seeds across cores: a progress bar, a summary, and every
/// failure with the command that reproduces it.
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
    /// Failures listed in full (the rest are counted).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
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

/// One seed's result, as the workers send it.
struct Done {
    seed: u64,
    outcome: Outcome,
    events: u64,
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
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let shard = args
        .shard
        .map(|(k, n)| format!(", shard {k}/{n}"))
        .unwrap_or_default();
    println!(
        "sweep: seeds {}..{}{shard} ({} seeds), {} events each, {jobs} jobs",
        args.seeds.start,
        args.seeds.end,
        seeds.len(),
        args.events
    );

    // Each run catches its own panics; keep their messages out of the bar.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    #[allow(clippy::disallowed_methods)] // wall time of the sweep, reported only
    let started = Instant::now();
    let bar = progress_bar(seeds.len() as u64);
    let next = AtomicU64::new(0);
    let (tx, rx) = mpsc::channel::<Done>();
    let mut failures: Vec<Done> = Vec::new();
    let mut events = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, seeds) = (&next, &seeds);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(i) else { break };
                    let (_, report) = pool_sim::run_seed(seed, args.events, Options::default());
                    let c = &report.counters;
                    let done = Done {
                        seed,
                        outcome: report.outcome,
                        events: c.steps + c.timeouts,
                    };
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut finished = 0u64;
        let step = (seeds.len() as u64 / 10).max(1);
        for done in rx {
            finished += 1;
            events += done.events;
            if done.outcome != Outcome::Pass {
                bar.println(format!(
                    "seed {}: {}",
                    done.seed,
                    print::outcome_line(&done.outcome)
                ));
                failures.push(done);
            }
            bar.set_message(format!("{} failed", failures.len()));
            bar.inc(1);
            if bar.is_hidden() && finished % step == 0 {
                println!(
                    "  {finished}/{} seeds, {} failed",
                    seeds.len(),
                    failures.len()
                );
            }
        }
    });
    bar.finish_and_clear();
    std::panic::set_hook(default_hook);
    let wall = started.elapsed().as_secs_f64();

    failures.sort_by_key(|d| d.seed);
    println!(
        "swept {} seeds in {wall:.2}s: {} passed, {} failed",
        seeds.len(),
        seeds.len() - failures.len(),
        failures.len()
    );
    println!(
        "  {events} events ({:.0} events/s, {:.0} seeds/s on {jobs} jobs)",
        events as f64 / wall,
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
    println!("\nreproduce:");
    for f in failures.iter().take(args.show) {
        println!(
            "  {}    # {}",
            reproduce_command(f.seed, args.events),
            print::outcome_line(&f.outcome)
        );
    }
    if failures.len() > args.show {
        println!(
            "  ... and {} more (--show N lists more)",
            failures.len() - args.show
        );
    }
    failures[0].outcome.exit_code()
}

fn progress_bar(len: u64) -> ProgressBar {
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
