//! `cargo xtask mutants`: cargo-mutants on pool-core with the simulator as
//! the oracle. Each mutant of the core is judged by a seed sweep (pool-sim's
//! `tests/sweep.rs`, stopping at the first failing seed), not by the core's
//! unit tests: a mutant the simulator lets through is a gap in the contract
//! or in the world, and must be fixed by a better check or explained in
//! `crates/pool-core/mutants-survivors.toml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

use crate::{cargo, ensure_cargo_tool, project_root};

/// Run cargo-mutants (installing it when missing) on pool-core, each mutant
/// tested by a sweep of the simulator; print the score and every mutant
/// that survived, with the reason the survivors file gives for it.
///
/// Exit: 0 when every survivor is explained in the survivors file; 1 when
/// a survivor is not (or cargo-mutants failed).
#[derive(clap::Args)]
pub struct Args {
    /// Seeds in the oracle's sweep (0..N; it stops at the first failure).
    #[arg(long, default_value_t = 2_000)]
    seeds: u64,
    /// Mutants built and tested at once (each build is parallel too).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Only mutants whose name matches this regex (cargo-mutants `--re`).
    #[arg(long, value_name = "REGEX")]
    re: Option<String>,
    /// Print the outcome of an earlier run (from target/mutants) without
    /// running cargo-mutants again.
    #[arg(long)]
    report_only: bool,
}

/// What the core's checker code is: not pool behaviour, so its mutants are
/// left out (they can only make the pool's self-check stricter or laxer),
/// and the mutations file is the bugs put back on purpose.
const EXCLUDED_FILES: [&str; 1] = ["crates/pool-core/src/mutation.rs"];
const EXCLUDED_RE: &str = r"check_consistency";

const SURVIVORS_FILE: &str = "crates/pool-core/mutants-survivors.toml";

/// The committed list of survivors, each with its reason.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Survivors {
    #[serde(default)]
    survivor: Vec<Survivor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Survivor {
    /// The mutant as cargo-mutants names it, without line and column:
    /// `crates/pool-core/src/pool.rs: replace ... with ...`.
    mutant: String,
    /// `equivalent` (no behaviour changes) or `unreachable` (the world
    /// cannot reach it; `why` says which world change would).
    kind: String,
    why: String,
}

pub fn run(args: Args) -> i32 {
    let root = project_root();
    let out = root.join("target").join("mutants");
    if !args.report_only {
        if let Err(e) = ensure_cargo_tool("mutants", "cargo-mutants") {
            eprintln!("error: {e}");
            return 1;
        }
        // Our own baseline: cargo-mutants would run the mutated package's
        // tests for it (pool-core has no sweep), so the oracle is run here,
        // unmutated, first; it must pass.
        println!(
            "mutants: baseline: cargo test -p pool-sim --test sweep over seeds 0..{}",
            args.seeds
        );
        let baseline = Command::new(cargo())
            .current_dir(&root)
            .env("POOL_SIM_SWEEP_SEEDS", args.seeds.to_string())
            .args([
                "test",
                "--quiet",
                "--package",
                "pool-sim",
                "--test",
                "sweep",
            ])
            .status();
        if !baseline.is_ok_and(|s| s.success()) {
            eprintln!("error: the oracle fails on the unmutated core: no mutant can be judged");
            return 1;
        }
        let mut command = Command::new(cargo());
        command
            .current_dir(&root)
            .env("POOL_SIM_SWEEP_SEEDS", args.seeds.to_string())
            .args([
                "mutants",
                "--package",
                "pool-core",
                "--test-package",
                "pool-sim",
            ])
            .args(["--cargo-test-arg=--test=sweep", "--no-shuffle"])
            .args(["--baseline=skip", "--timeout=120"])
            .arg(format!("--jobs={}", args.jobs))
            .arg(format!("--exclude-re={EXCLUDED_RE}"))
            .arg("--output")
            .arg(&out);
        for file in EXCLUDED_FILES {
            command.arg(format!("--exclude={file}"));
        }
        if let Some(re) = &args.re {
            command.arg(format!("--re={re}"));
        }
        println!(
            "mutants: pool-core, each mutant judged by `cargo test -p pool-sim --test sweep` over seeds 0..{}",
            args.seeds
        );
        // cargo-mutants exits non-zero when any mutant is missed: the
        // verdict is ours, from its output files.
        if let Err(e) = command.status() {
            eprintln!("error: cannot run cargo mutants: {e}");
            return 1;
        }
    }
    report(&root, &out.join("mutants.out"))
}

/// A mutant's name without its line and column, as the survivors file
/// keeps it (lines move with every edit).
fn key(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(file), Some(_line), Some(_col), Some(rest)) => format!("{file}:{rest}"),
        _ => line.to_owned(),
    }
}

fn read_lines(dir: &Path, name: &str) -> Result<Vec<String>, String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn report(root: &Path, dir: &Path) -> i32 {
    let read = |name| read_lines(dir, name);
    let (caught, missed, timeout, unviable) = match (
        read("caught.txt"),
        read("missed.txt"),
        read("timeout.txt"),
        read("unviable.txt"),
    ) {
        (Ok(c), Ok(m), Ok(t), Ok(u)) => (c, m, t, u),
        (c, m, t, u) => {
            for e in [c.err(), m.err(), t.err(), u.err()].into_iter().flatten() {
                eprintln!("error: {e}");
            }
            return 1;
        }
    };
    if caught.is_empty() && missed.is_empty() && timeout.is_empty() {
        eprintln!(
            "error: no outcomes in {}: did cargo-mutants run? (see its log there)",
            dir.display()
        );
        return 1;
    }
    let survivors_path = root.join(SURVIVORS_FILE);
    let listed: Survivors = match std::fs::read_to_string(&survivors_path)
        .map_err(|e| e.to_string())
        .and_then(|text| toml::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {SURVIVORS_FILE}: {e}");
            return 1;
        }
    };
    let mut reasons: BTreeMap<String, &Survivor> = BTreeMap::new();
    for s in &listed.survivor {
        if s.kind != "equivalent" && s.kind != "unreachable" {
            eprintln!(
                "error: {SURVIVORS_FILE}: `{}`: kind must be `equivalent` or `unreachable`, not `{}`",
                s.mutant, s.kind
            );
            return 1;
        }
        reasons.insert(s.mutant.clone(), s);
    }
    let equivalent = missed
        .iter()
        .filter(|m| reasons.get(&key(m)).is_some_and(|s| s.kind == "equivalent"))
        .count();
    let judged = caught.len() + timeout.len() + missed.len() - equivalent;
    let killed = caught.len() + timeout.len();
    println!();
    println!(
        "mutants: {} caught, {} timed out (caught: the oracle never passed), {} missed ({equivalent} of them equivalent), {} unviable",
        caught.len(),
        timeout.len(),
        missed.len(),
        unviable.len()
    );
    println!(
        "score: {killed} of {judged} non-equivalent mutants caught by the simulator ({:.1}%)",
        100.0 * killed as f64 / judged.max(1) as f64
    );
    let mut unexplained = Vec::new();
    if !missed.is_empty() {
        println!("\nsurvivors:");
        for m in &missed {
            match reasons.get(&key(m)) {
                Some(s) => println!("  {m}\n      {}: {}", s.kind, s.why),
                None => {
                    println!("  {m}\n      NOT EXPLAINED");
                    unexplained.push(m);
                }
            }
        }
    }
    let stale: Vec<&String> = reasons
        .keys()
        .filter(|k| !missed.iter().any(|m| &key(m) == *k))
        .collect();
    if !stale.is_empty() {
        println!("\nlisted in {SURVIVORS_FILE} but not missed this run (caught now, or not run):");
        for k in stale {
            println!("  {k}");
        }
    }
    if unexplained.is_empty() {
        return 0;
    }
    println!(
        "\n{} survivor(s) not explained: catch each with a better check, or add it to {SURVIVORS_FILE} with kind and why",
        unexplained.len()
    );
    1
}
