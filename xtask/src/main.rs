//! The project's commands, run as `cargo xtask <command>`.
//!
//! One small binary in the style of rust-analyzer's xtask: it runs the
//! simulator in-process (pool-sim is built optimised even in the dev
//! profile) and drives cargo for everything else.

mod bench;
mod ci;
mod compare;
mod conformance;
mod ecosystem;
mod explore;
mod fuzz;
mod hunt;
mod loom;
mod mutants;
mod netsim;
mod pgcluster;
mod print;
mod realpg;
mod replay;
mod seeds;
mod serve;
mod shrink;
mod sim;
mod sweep;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Deterministic simulation of connection pools: run a seed, sweep seeds,
/// replay scenarios, run CI.
///
/// Exit codes: 0 pass; 1 a check failed (a mutation escaped the hunt, a fuzz
/// finding, a loom model, a replay that did not end as expected, a CI stage)
/// or bad input (a scenario file); 2 usage error; 3 a safety invariant
/// broke; 4 a liveness invariant broke; 5 the pool or the simulator
/// panicked.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Sim(sim::Args),
    Sweep(sweep::Args),
    Replay(replay::Args),
    Hunt(hunt::Args),
    Shrink(shrink::Args),
    Bench(bench::Args),
    Fuzz(fuzz::Args),
    Compare(compare::Args),
    Explore(explore::Args),
    Loom(loom::Args),
    Mutants(mutants::Args),
    Netsim(netsim::Args),
    Serve(serve::Args),
    Conformance(conformance::Args),
    Realpg(realpg::Args),
    Ecosystem(ecosystem::Args),
    Ci(ci::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Hunt(args) => hunt::run(args),
        Command::Shrink(args) => shrink::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Explore(args) => explore::run(args),
        Command::Loom(args) => loom::run(args),
        Command::Mutants(args) => mutants::run(args),
        Command::Netsim(args) => netsim::run_cmd(args),
        Command::Serve(args) => serve::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::Realpg(args) => realpg::run(args),
        Command::Ecosystem(args) => ecosystem::run(args),
        Command::Ci(args) => ci::run(args),
    };
    ExitCode::from(code as u8)
}

/// The project root (the workspace), so commands work from any directory.
fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_owned()
}

/// The cargo that runs us (`$CARGO`), so a stage or sub-build uses the same
/// toolchain as the `cargo xtask` that started it.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Make sure `cargo SUBCOMMAND` runs; install `krate` when it does not.
fn ensure_cargo_tool(subcommand: &str, krate: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let cargo = cargo();
    let present = Command::new(&cargo)
        .args([subcommand, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("{krate} is missing: cargo install {krate} --locked");
    let status = Command::new(&cargo)
        .args(["install", krate, "--locked"])
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo install {krate} failed"))
    }
}

/// A tokio runtime for a command that talks to real sockets: one thread, or
/// `workers` threads. `None` (the error printed) if it cannot be built.
fn tokio_runtime(workers: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut builder = match workers {
        None => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    match builder.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start a tokio runtime: {e}");
            None
        }
    }
}
