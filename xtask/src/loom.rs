//! `cargo xtask loom`: model-check the async shell's shared state with loom.

use std::process::Command;
use std::time::Instant;

use crate::{cargo, project_root};

/// Run pool-tokio's loom models (tests/loom.rs): a release build with
/// `--cfg loom`, every interleaving of each model's threads up to
/// LOOM_MAX_PREEMPTIONS preemptions.
#[derive(clap::Args)]
pub struct Args {
    /// Preemption bound per execution (LOOM_MAX_PREEMPTIONS).
    #[arg(long, default_value_t = 3)]
    max_preemptions: u32,
    /// Build the shell without its cancel-safety step (a grant that lands
    /// in a dropped `get` is not given back), to watch the grant-racing-drop
    /// model fail.
    #[arg(long)]
    without_cancel_safety: bool,
}

pub fn run(args: Args) -> i32 {
    let mut rustflags = String::from("--cfg loom");
    let mut target = project_root().join("target").join("loom");
    if args.without_cancel_safety {
        rustflags.push_str(" --cfg pool_tokio_skip_cancel_safety");
        target.set_file_name("loom-without-cancel-safety");
    }
    println!(
        "loom: pool-tokio's models, release build, RUSTFLAGS=\"{rustflags}\", LOOM_MAX_PREEMPTIONS={}",
        args.max_preemptions
    );
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = Instant::now();
    let status = Command::new(cargo())
        .args([
            "test",
            "--release",
            "--locked",
            "--package",
            "pool-tokio",
            "--test",
            "loom",
            "--",
            "--test-threads=1",
        ])
        .env("RUSTFLAGS", &rustflags)
        .env("LOOM_MAX_PREEMPTIONS", args.max_preemptions.to_string())
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(project_root())
        .status();
    let seconds = started.elapsed().as_secs_f64();
    match status {
        Ok(s) if s.success() => {
            println!("loom: every model passed ({seconds:.1} s with the build)");
            0
        }
        Ok(_) => {
            println!("loom: a model failed ({seconds:.1} s with the build)");
            1
        }
        Err(e) => {
            eprintln!("error: cannot run cargo: {e}");
            1
        }
    }
}
