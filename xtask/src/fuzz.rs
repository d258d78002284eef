//! `cargo xtask fuzz`: the cargo-fuzz targets on the stable toolchain, and
//! every finding written decoded, as a file a person (and the tests) can
//! replay, never as raw bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use pool_sim::fuzz::{Case, CoreCase};
use pool_sim::shrink::{Keeps, shrink};
use pool_sim::{Expect, Mutation, Options, Outcome, Scenario};

use crate::sim::mutation_arg;
use crate::{cargo, print, project_root};

pub const TARGETS: [&str; 3] = ["transitions", "core_inputs", "scenario_file"];

/// Run the cargo-fuzz targets (installing cargo-fuzz if it is missing), each
/// from its committed seed corpus, on the stable toolchain (`-s none`).
/// Findings are decoded: a `transitions` violation becomes a shrunk
/// scenario under `scenarios/fuzz/`; a `core_inputs` or `scenario_file`
/// crash becomes a decoded case under `fuzz/regressions/`. A `transitions`
/// or `core_inputs` finding keeps the --mutation it was found with (the
/// parser runs no core). The tests replay both.
///
/// Exit: 0 when nothing was found (or, with --mutation, when the bug was
/// found); 1 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// One target (default: all of them): transitions, core_inputs or
    /// scenario_file.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// How long each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Put a seed report's bug back into the core the target runs.
    #[arg(long, value_name = "NAME")]
    mutation: Option<Mutation>,
    /// libFuzzer's seed, for a reproducible exploration.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One target's run.
pub struct FuzzRun {
    pub executions: u64,
    pub execs_per_second: u64,
    pub seconds: f64,
    /// libFuzzer's crash files (raw bytes, to be decoded).
    pub artifacts: Vec<PathBuf>,
}

pub fn run(args: Args) -> i32 {
    if let Err(e) = ensure_cargo_fuzz() {
        eprintln!("error: {e}");
        return 1;
    }
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let mut found = 0;
    for target in targets {
        let with = args
            .mutation
            .map(|m| format!(" with {m}"))
            .unwrap_or_default();
        println!(
            "fuzz {target}{with}: {} s, libFuzzer seed {} ...",
            args.seconds, args.seed
        );
        let run = match fuzz(target, args.seconds, args.mutation, args.seed) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        println!(
            "  {} executions in {:.1} s ({} exec/s), {} finding(s)",
            run.executions,
            run.seconds,
            run.execs_per_second,
            run.artifacts.len()
        );
        let provenance = format!(
            "cargo xtask fuzz {target} --seconds {} --seed {}{}",
            args.seconds,
            args.seed,
            mutation_arg(args.mutation)
        );
        let mut findings = Vec::new();
        for artifact in &run.artifacts {
            match decode(target, artifact, args.mutation, &provenance, run.executions) {
                Ok(finding) => findings.push(finding),
                Err(e) => {
                    eprintln!("error: {}: {e}", artifact.display());
                    return 1;
                }
            }
        }
        for (path, what) in &findings {
            println!("  found: {what}");
            println!("  wrote {}", path.display());
            match path.extension().and_then(|e| e.to_str()) {
                Some("toml") if path.starts_with(project_root().join("scenarios")) => {
                    println!("  replay: cargo xtask replay {}", path.display());
                }
                _ => println!("  replay: cargo test --workspace --test fuzz_regressions"),
            }
        }
        found += findings.len();
    }
    match (args.mutation, found) {
        (None, 0) => 0,
        (None, _) => 1,
        (Some(_), 0) => {
            println!("the mutation escaped: nothing found");
            1
        }
        (Some(_), _) => 0,
    }
}

/// Make sure `cargo fuzz` runs; install it when it does not.
pub fn ensure_cargo_fuzz() -> Result<(), String> {
    crate::ensure_cargo_tool("fuzz", "cargo-fuzz")
}

/// Fuzz `target` for `seconds` from a fresh copy of its seed corpus.
pub fn fuzz(
    target: &str,
    seconds: u64,
    mutation: Option<Mutation>,
    seed: u64,
) -> Result<FuzzRun, String> {
    let fuzz_dir = project_root().join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let seeds = fuzz_dir.join("seeds").join(target);
    for entry in std::fs::read_dir(&seeds).map_err(|e| format!("{}: {e}", seeds.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, corpus.join(name)).map_err(|e| e.to_string())?;
        }
    }
    let mut command = Command::new(cargo());
    command
        .current_dir(&fuzz_dir)
        .args(["fuzz", "run", target, "-s", "none"])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-seed={seed}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match mutation {
        Some(m) => command.env("POOL_SIM_MUTATION", m.name()),
        None => command.env_remove("POOL_SIM_MUTATION"),
    };
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
    let started = Instant::now();
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let wall = started.elapsed().as_secs_f64();
    let log = String::from_utf8_lossy(&output.stderr);
    let stat = |name: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut artifacts: Vec<PathBuf> = std::fs::read_dir(&artifacts)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    artifacts.sort();
    if artifacts.is_empty() && !output.status.success() {
        return Err(format!(
            "cargo fuzz failed without a finding ({}); its log:\n{log}",
            output.status
        ));
    }
    Ok(FuzzRun {
        executions: stat("stat::number_of_executed_units:").unwrap_or(0),
        execs_per_second: stat("stat::average_exec_per_sec:").unwrap_or(0),
        seconds: wall,
        artifacts,
    })
}

/// Write a finding decoded; returns where, and what it showed.
fn decode(
    target: &str,
    artifact: &Path,
    mutation: Option<Mutation>,
    provenance: &str,
    executions: u64,
) -> Result<(PathBuf, String), String> {
    let bytes = &std::fs::read(artifact).map_err(|e| e.to_string())?;
    // libFuzzer names a crash `crash-<sha1>`: its first 8 digits name ours.
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id: String = name
        .rsplit('-')
        .next()
        .unwrap_or("0")
        .chars()
        .take(8)
        .collect();
    // An oom, timeout or slow unit is a finding about resources: running it
    // here would hang or exhaust this process too, so it is stored decoded,
    // unrun, expecting a pass (it fails, or hangs, until fixed).
    let resource = ["oom-", "timeout-", "slow-unit-"]
        .into_iter()
        .find(|prefix| name.starts_with(prefix))
        .map(|p| p.trim_end_matches('-'));
    let root = project_root();
    let regressions = root.join("fuzz").join("regressions").join(target);
    match target {
        "transitions" => {
            let case = Case::from_bytes(bytes).map_err(|e| format!("undecodable artifact: {e}"))?;
            // The one place the mutation joins the finding: every file
            // written below starts from this scenario, so each replays with
            // the bug the fuzzer ran with.
            let scenario = Scenario {
                mutation,
                ..case.scenario()
            };
            if let Some(kind) = resource {
                let what = format!("libFuzzer `{kind}` (resources, not an invariant)");
                let kept = Scenario {
                    name: format!("fuzz-{target}-{kind}-{id}"),
                    about: format!(
                        "Found by `{provenance}`: {what}. Not run or shrunk when found."
                    ),
                    ..scenario
                };
                return write_scenario(&root, kept, what);
            }
            let outcome = pool_sim::run_scenario(&scenario, Options::default()).outcome;
            let what = print::outcome_line(&outcome);
            // `shrunk` says whether shrinking ran: a panic is not shrunk, and
            // neither is a violation that also fires without the mutation.
            let (mut kept, shrunk) = match outcome {
                Outcome::Violated(v) => {
                    let keeps = Keeps {
                        invariant: v.invariant,
                        mutation,
                    };
                    match shrink(&scenario, keeps) {
                        Some(s) => (s.scenario, true),
                        None => (
                            Scenario {
                                expect: Expect::Violation(v.invariant),
                                ..scenario.clone()
                            },
                            false,
                        ),
                    }
                }
                // A panic cannot be an `expect`: the file expects a pass and
                // fails until the bug is fixed.
                _ => (scenario.clone(), false),
            };
            let label = mutation.map_or("reference".to_owned(), |m| m.name().to_owned());
            kept.name = format!("fuzz-{target}-{label}-{id}");
            let (before, after) = (scenario.steps.len(), kept.steps.len());
            let shrunk = match shrunk {
                true if after < before => format!("Shrunk from {before} to {after} transitions."),
                true => format!("Shrinking removed none of its {before} transitions."),
                false => format!("Not shrunk ({before} transitions)."),
            };
            kept.about =
                format!("Found by `{provenance}` within {executions} executions: {what}. {shrunk}");
            write_scenario(&root, kept, what)
        }
        "core_inputs" => {
            let case =
                CoreCase::from_bytes(bytes).map_err(|e| format!("undecodable artifact: {e}"))?;
            let what = match resource {
                Some(kind) => format!("libFuzzer `{kind}`"),
                None => match pool_sim::fuzz::drive_core(&case, mutation) {
                    Err(e) => e,
                    Ok(()) => "a panic in the core".to_owned(),
                },
            };
            std::fs::create_dir_all(&regressions).map_err(|e| e.to_string())?;
            let path = regressions.join(format!("{id}.toml"));
            let header = format!("# Found by `{provenance}`: {what}\n");
            let text = core_case_toml(&case, mutation)?;
            std::fs::write(&path, header + &text).map_err(|e| e.to_string())?;
            Ok((path, what))
        }
        _ => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let what = match resource {
                Some(kind) => format!("libFuzzer `{kind}`"),
                None => pool_sim::fuzz::check_scenario_text(Path::new("fuzz.toml"), &text)
                    .err()
                    .unwrap_or_else(|| "a panic in the parser".to_owned()),
            };
            std::fs::create_dir_all(&regressions).map_err(|e| e.to_string())?;
            let path = regressions.join(format!("{id}.txt"));
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            Ok((path, what))
        }
    }
}

/// A `core_inputs` finding as TOML: the case, and the mutation it was found
/// with as a top-level `mutation` key (the form
/// crates/pool-sim/tests/fuzz_regressions.rs reads), so the test replays it
/// with that bug put back and without it.
fn core_case_toml(case: &CoreCase, mutation: Option<Mutation>) -> Result<String, String> {
    let mut table = toml::Table::new();
    if let Some(m) = mutation {
        table.insert("mutation".to_owned(), m.name().into());
    }
    let toml::Value::Table(fields) = toml::Value::try_from(case).map_err(|e| e.to_string())? else {
        return Err("a core case serializes to a table".to_owned());
    };
    table.extend(fields);
    toml::to_string(&table).map_err(|e| e.to_string())
}

/// Write a scenario finding under `scenarios/fuzz/`.
fn write_scenario(
    root: &Path,
    scenario: Scenario,
    what: String,
) -> Result<(PathBuf, String), String> {
    let dir = root.join("scenarios").join("fuzz");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{}.toml", scenario.name));
    let header =
        "pool-sim scenario found by cargo-fuzz (decoded).\nReplay: cargo xtask replay <this file>";
    std::fs::write(&path, scenario.to_toml(header, None)).map_err(|e| e.to_string())?;
    Ok((path, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file form is the one crates/pool-sim/tests/fuzz_regressions.rs
    /// reads: a top-level `mutation` key, the rest a `CoreCase`.
    #[test]
    fn a_core_finding_keeps_its_mutation() {
        let case = CoreCase::from_bytes(&[7; 64]).expect("any bytes decode");
        let text = core_case_toml(&case, Some(Mutation::AcceptStaleConnect)).unwrap();
        let mut table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            table.remove("mutation"),
            Some(toml::Value::from("accept-stale-connect"))
        );
        let back: CoreCase = table.try_into().unwrap();
        assert_eq!(toml::to_string(&back), toml::to_string(&case));
        let plain = core_case_toml(&case, None).unwrap();
        assert_eq!(Ok(plain), toml::to_string(&case));
    }
}
