//! `cargo xtask explore`: breadth-first exploration of a small world (every
//! interleaving to a depth, every check after every transition); the
//! shortest failing path is written as a scenario `cargo xtask replay`
//! reproduces.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use pool_sim::explore::{Explored, Progress, Settings, WorldFile, explore_reference, scenario_of};
use pool_sim::world::Canonical;
use pool_sim::{Invariant, Mutation};

use crate::project_root;

/// Explore a named small world (`worlds/NAME.toml`) or a world file breadth
/// first: every enabled transition at every state, the simulator's checks
/// (the contract included) after each, equivalent states visited once.
/// Prints states explored, unique states, the depth completed and states/s,
/// then "no violation up to depth D" or the shortest failing path, written
/// as a scenario file.
///
/// Exit codes: 0 no violation; 3 or 4 a safety or liveness invariant broke
/// (the path is written); 5 a panic; 1 bad input or a failed `--check`.
#[derive(clap::Args)]
pub struct Args {
    /// A world file (default: `--config`'s, or every named world with
    /// `--check` or `--list`).
    #[arg(value_name = "WORLD_FILE", conflicts_with = "config")]
    file: Option<PathBuf>,
    /// A named world: `worlds/NAME.toml`.
    #[arg(long, value_name = "NAME")]
    config: Option<String>,
    /// Transitions from the initial world (default: the world file's `depth`).
    #[arg(long, value_name = "D")]
    depth: Option<u32>,
    /// Stop after this much wall time (the depth completed is reported).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Explore with this bug put back.
    #[arg(long, value_name = "NAME", conflicts_with = "all_mutations")]
    mutation: Option<Mutation>,
    /// Explore once per mutation of `cargo xtask hunt` and print which the
    /// world finds, with the shortest path's length and the time.
    #[arg(long)]
    all_mutations: bool,
    /// Where to write the failing path (default:
    /// `target/explore/WORLD[-MUTATION].toml`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// CI: explore every named world (or the one given) to its depth, with
    /// no time limit: the reference pool must pass, and every mutation in
    /// the file's `finds` must be found, by an invariant that catches it.
    #[arg(long, conflicts_with_all = ["mutation", "all_mutations", "seconds", "depth"])]
    check: bool,
    /// List the named worlds.
    #[arg(long)]
    list: bool,
    /// Keep every state reached (no visited set), to measure what dedup buys.
    #[arg(long)]
    no_dedup: bool,
    /// Hash clients by their number, not as interchangeable.
    #[arg(long)]
    no_symmetry: bool,
    /// Hash ids and times as they are (no renumbering; implies no symmetry's
    /// benefit for states reached in different orders).
    #[arg(long)]
    no_renumber: bool,
}

fn worlds_dir() -> PathBuf {
    project_root().join("worlds")
}

/// Every named world, sorted by name.
fn named_worlds() -> Result<Vec<PathBuf>, String> {
    let dir = worlds_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

fn load(path: &Path) -> Result<WorldFile, String> {
    WorldFile::load(path).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> i32 {
    if args.list {
        return list();
    }
    let paths: Vec<PathBuf> = match (&args.file, &args.config) {
        (Some(file), _) => vec![file.clone()],
        (None, Some(name)) => {
            let path = worlds_dir().join(format!("{name}.toml"));
            if !path.exists() {
                let names = named_worlds()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ");
                eprintln!(
                    "error: no named world `{name}` (worlds/{name}.toml); the named worlds: {names}"
                );
                return 1;
            }
            vec![path]
        }
        (None, None) if args.check => match named_worlds() {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        },
        (None, None) => {
            eprintln!(
                "error: name a world: `--config NAME` (see `cargo xtask explore --list`) or a world file"
            );
            return 2;
        }
    };
    let canonical = Canonical {
        renumber: !args.no_renumber,
        symmetry: !args.no_symmetry,
    };
    if args.check {
        return check(&paths, canonical, !args.no_dedup);
    }
    let path = &paths[0];
    let file = match load(path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let settings = Settings {
        depth: args.depth.unwrap_or(file.depth),
        canonical,
        dedup: !args.no_dedup,
    };
    if args.all_mutations {
        return all_mutations(&file, settings, args.seconds);
    }
    println!(
        "explore: world `{}` ({}), depth {}{}{}",
        file.name,
        path.display(),
        settings.depth,
        args.mutation
            .map(|m| format!(", mutation {m}"))
            .unwrap_or_default(),
        if settings.dedup {
            format!(
                ", dedup (renumber {}, symmetry {})",
                on(canonical.renumber),
                on(canonical.symmetry)
            )
        } else {
            ", no dedup".to_owned()
        }
    );
    let (result, seconds) = match timed(&file, args.mutation, settings, args.seconds, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    summary(&result.progress, seconds);
    let Some(found) = &result.found else {
        if result.exhausted {
            println!(
                "no violation: every reachable state explored (depth {}, below {})",
                result.progress.depth_completed, settings.depth
            );
        } else if result.stopped {
            println!(
                "no violation up to depth {} (stopped by --seconds before depth {})",
                result.progress.depth_completed, settings.depth
            );
        } else {
            println!(
                "no violation up to depth {}",
                result.progress.depth_completed
            );
        }
        return 0;
    };
    let what = found.invariant.map_or("a panic", |i| i.name());
    println!(
        "FOUND {what}{} with a path of {} steps (the shortest: breadth first)",
        if found.in_liveness {
            " (in the liveness phase after the path)"
        } else {
            ""
        },
        found.steps.len(),
    );
    println!("  {}", found.detail);
    let out = args.out.clone().unwrap_or_else(|| {
        let name = match args.mutation {
            Some(m) => format!("{}-{m}.toml", file.name),
            None => format!("{}.toml", file.name),
        };
        project_root().join("target").join("explore").join(name)
    });
    let about = format!(
        "The shortest path to {what} in the world `{}`, found by `cargo xtask explore`{}.",
        file.name,
        args.mutation
            .map(|m| format!(" with the mutation {m}"))
            .unwrap_or_default()
    );
    let name = match args.mutation {
        Some(m) => format!("explore-{}-{m}", file.name),
        None => format!("explore-{}", file.name),
    };
    let scenario = scenario_of(&name, &about, &file.pool, &file.world, args.mutation, found);
    let header = format!(
        "cargo xtask explore {}{} --depth {}",
        path.strip_prefix(project_root()).unwrap_or(path).display(),
        args.mutation
            .map(|m| format!(" --mutation {m}"))
            .unwrap_or_default(),
        settings.depth
    );
    if let Some(parent) = out.parent()
        && let Err(e) = std::fs::create_dir_all(parent)
    {
        eprintln!("error: cannot create {}: {e}", parent.display());
        return 1;
    }
    if let Err(e) = std::fs::write(&out, scenario.to_toml(&header, None)) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return 1;
    }
    println!("wrote {}", out.display());
    println!("reproduce: cargo xtask replay {}", out.display());
    match found.invariant {
        Some(i) => i.kind().exit_code(),
        None => pool_sim::run::PANIC_EXIT_CODE,
    }
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn list() -> i32 {
    let files = match named_worlds() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    for path in files {
        match load(&path) {
            Ok(f) => {
                let first = f.about.lines().next().unwrap_or("");
                println!("{:<28} depth {:>2}  {first}", f.name, f.depth);
            }
            Err(e) => println!("{}: {e}", path.display()),
        }
    }
    0
}

/// Explore with a wall-clock limit and (if `bar`) a spinner; the result and
/// the seconds it took.
fn timed(
    file: &WorldFile,
    mutation: Option<Mutation>,
    settings: Settings,
    seconds: Option<f64>,
    bar: bool,
) -> Result<(Explored, f64), String> {
    #[allow(clippy::disallowed_methods)] // wall time: --seconds and states/s only
    let started = Instant::now();
    let spinner = if bar {
        crate::sweep::progress_bar(0)
    } else {
        ProgressBar::hidden()
    };
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"),
    );
    let mut report = |p: &Progress| {
        let elapsed = started.elapsed().as_secs_f64();
        spinner.set_message(format!(
            "depth {} done, {} explored, {} unique, frontier {}, {:.0} states/s",
            p.depth_completed,
            p.explored,
            p.unique,
            p.frontier,
            p.explored as f64 / elapsed.max(1e-9)
        ));
        spinner.tick();
        seconds.is_none_or(|s| elapsed < s)
    };
    let result = explore_reference(
        file.pool.clone(),
        file.world.clone(),
        &file.moves,
        mutation,
        settings,
        &mut report,
    )
    .map_err(|e| e.to_string())?;
    spinner.finish_and_clear();
    Ok((result, started.elapsed().as_secs_f64()))
}

fn summary(p: &Progress, seconds: f64) {
    println!(
        "explored {} states ({} unique) to depth {} in {seconds:.2} s: {:.0} states/s{}",
        p.explored,
        p.unique,
        p.depth_completed,
        p.explored as f64 / seconds.max(1e-9),
        if p.liveness_runs > 0 {
            format!(", {} liveness phases", p.liveness_runs)
        } else {
            String::new()
        }
    );
}

/// One row per mutation: found by what, the path's length, the time.
fn all_mutations(file: &WorldFile, settings: Settings, seconds: Option<f64>) -> i32 {
    println!(
        "explore: world `{}`, depth {}, every mutation",
        file.name, settings.depth
    );
    println!(
        "{:<32} {:<24} {:>5} {:>10} {:>8}  expected?",
        "mutation", "found", "steps", "explored", "wall"
    );
    let mut found_names = Vec::new();
    for mutation in Mutation::ALL {
        let (r, secs) = match timed(file, Some(mutation), settings, seconds, false) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let (what, steps, expected) = match &r.found {
            Some(f) => {
                let expected = f
                    .invariant
                    .is_some_and(|i| Invariant::catching(mutation).contains(&i));
                if expected {
                    found_names.push(mutation.name());
                }
                (
                    f.invariant.map_or("panic", |i| i.name()).to_owned(),
                    f.steps.len().to_string(),
                    if expected { "yes" } else { "NO" },
                )
            }
            None => ("-".to_owned(), "-".to_owned(), ""),
        };
        println!(
            "{:<32} {:<24} {:>5} {:>10} {:>7.2}s  {expected}",
            mutation.name(),
            what,
            steps,
            r.progress.explored,
            secs
        );
    }
    println!(
        "found by an expected invariant: {} of {}\nfinds = [{}]",
        found_names.len(),
        Mutation::ALL.len(),
        found_names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    0
}

/// CI: each world to its depth: the reference pool passes; each mutation
/// of `finds` is found by an invariant that catches it.
fn check(paths: &[PathBuf], canonical: Canonical, dedup: bool) -> i32 {
    let mut failures = Vec::new();
    for path in paths {
        let file = match load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let settings = Settings {
            depth: file.depth,
            canonical,
            dedup,
        };
        let (r, secs) = match timed(&file, None, settings, None, false) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        let p = r.progress;
        let verdict = match &r.found {
            None => "no violation".to_owned(),
            Some(f) => {
                failures.push(format!(
                    "{}: the reference pool breaks {} (cargo xtask explore --config {})",
                    file.name,
                    f.invariant.map_or("(a panic)", |i| i.name()),
                    file.name
                ));
                "VIOLATION".to_owned()
            }
        };
        println!(
            "{:<28} depth {:>2}: {:>9} explored, {:>8} unique, {:>6.2}s, {:>8.0} states/s, {verdict}",
            file.name,
            p.depth_completed,
            p.explored,
            p.unique,
            secs,
            p.explored as f64 / secs.max(1e-9)
        );
        for mutation in file.finds() {
            let (r, secs) = match timed(&file, Some(mutation), settings, None, false) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return 1;
                }
            };
            let line = match &r.found {
                Some(f)
                    if f.invariant
                        .is_some_and(|i| Invariant::catching(mutation).contains(&i)) =>
                {
                    format!(
                        "found ({}, {} steps, {secs:.2}s)",
                        f.invariant.map_or("panic", |i| i.name()),
                        f.steps.len()
                    )
                }
                Some(f) => {
                    let what = f.invariant.map_or("a panic", |i| i.name());
                    failures.push(format!(
                        "{}: {mutation} is caught by {what}, not by an invariant that catches it",
                        file.name
                    ));
                    format!("WRONG INVARIANT ({what})")
                }
                None => {
                    failures.push(format!(
                        "{}: {mutation} is not found at depth {}",
                        file.name, file.depth
                    ));
                    "NOT FOUND".to_owned()
                }
            };
            println!("  {:<34} {line}", mutation.name());
        }
    }
    if failures.is_empty() {
        println!("every named world passes on the reference pool and finds its mutations");
        return 0;
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    1
}
