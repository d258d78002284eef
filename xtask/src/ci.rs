//! `cargo xtask ci`: everything CI runs, in order, stopping at the first red.

use std::process::Command;
use std::time::Instant;

use crate::{cargo, project_root};

/// Run everything CI runs: formatting, clippy, the whole test suite (unit
/// tests, scenario replays, the bounded seed sweep, snapshots, proptest
/// properties, netsim seeds), the fake server's conformance against a
/// throwaway PostgreSQL and two seed reports run against it, the hunt for
/// every mutation, the bounded exploration of every named world, the loom
/// models,
/// the fuzz crate's formatting, and a fuzz smoke run of every cargo-fuzz
/// target.
#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> i32 {
    // Each stage is a cargo command; `x` marks one of our own commands,
    // run through the already built xtask.
    const X: &str = "x";
    let stages: &[(&str, &[&str])] = &[
        ("format", &["fmt", "--all", "--", "--check"]),
        (
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("test", &["test", "--workspace", "--locked"]),
        // The fake server's faults against a throwaway PostgreSQL 15 that
        // the command starts and removes itself (about 5 s): a difference
        // a pool could observe fails.
        ("conformance", &[X, "conformance"]),
        // Hatchet and postgres-mcp with each pool against a throwaway
        // PostgreSQL, checked from pg_stat_activity (about 20 s; real
        // time, every wait bounded).
        ("realpg", &[X, "realpg"]),
        // Every seed report's bug, put back, must still be caught by its
        // invariant: a change that blinds the simulator fails here.
        ("hunt", &[X, "hunt"]),
        // Every named small world explored to its depth (fixed, no time
        // limit: the result is deterministic): the reference pool passes,
        // and each world finds every mutation its file lists.
        ("explore", &[X, "explore", "--check"]),
        // The shell's shared state under loom (release, --cfg loom).
        ("loom", &[X, "loom"]),
        (
            "fuzz format",
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        ),
        // Every fuzz target for 30 s on the reference core (cargo-fuzz is
        // installed when missing): nothing may be found.
        ("fuzz smoke", &[X, "fuzz", "--seconds", "30"]),
    ];
    #[allow(clippy::disallowed_methods)] // wall time of CI stages, reported only
    let started = Instant::now();
    for &(name, args) in stages {
        let args: Vec<&str> = match args {
            [first, rest @ ..] if *first == X => {
                let mut all = vec!["run", "--quiet", "--locked", "--package", "xtask", "--"];
                all.extend_from_slice(rest);
                all
            }
            _ => args.to_vec(),
        };
        println!("==> ci: {name}: cargo {}", args.join(" "));
        #[allow(clippy::disallowed_methods)]
        let stage_started = Instant::now();
        let status = Command::new(cargo())
            .args(&args)
            .current_dir(project_root())
            .status();
        match status {
            Ok(s) if s.success() => println!(
                "==> ci: {name} passed in {:.1}s",
                stage_started.elapsed().as_secs_f64()
            ),
            Ok(s) => {
                println!(
                    "==> ci: {name} FAILED ({s}); rerun: cargo {}",
                    args.join(" ")
                );
                return 1;
            }
            Err(e) => {
                println!("==> ci: {name} could not start cargo: {e}");
                return 1;
            }
        }
    }
    println!(
        "==> ci: all green in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    0
}
