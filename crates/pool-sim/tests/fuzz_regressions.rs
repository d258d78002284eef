//! The fuzz targets' seed corpora and every decoded finding under
//! `fuzz/regressions/` replay clean: the core stays consistent under its raw
//! inputs, and the parser names the file or round-trips the scenario. A
//! `core_inputs` finding made with `--mutation` names it in a top-level
//! `mutation` key and is replayed both ways, as a scenario with a mutation
//! is: clean without the bug, caught with it. (The `transitions` findings
//! are scenarios, replayed with all the others.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pool_sim::Mutation;
use pool_sim::fuzz::{CoreCase, check_scenario_text, drive_core};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
}

#[test]
fn core_inputs_corpus_and_findings_replay_clean() {
    let seeds = files("seeds/core_inputs");
    assert!(!seeds.is_empty(), "the seed corpus is committed");
    for path in &seeds {
        let case = CoreCase::from_bytes(&std::fs::read(path).unwrap()).expect("decodes");
        drive_core(&case, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for path in files("regressions/core_inputs") {
        let text = std::fs::read_to_string(&path).unwrap();
        let (case, mutation) = core_finding(&path, &text);
        drive_core(&case, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Without the mutations feature the bug cannot be put back; the
        // clean replay above still runs.
        if let Some(m) = mutation.filter(|_| Mutation::available()) {
            // The fuzzer's finding was an `Err` or a panic: either one counts.
            let caught = catch_unwind(AssertUnwindSafe(|| drive_core(&case, Some(m))))
                .map_or(true, |r| r.is_err());
            assert!(caught, "{}: {m} is no longer caught", path.display());
        }
    }
}

/// A decoded `core_inputs` finding: the case and the mutation (if any) it
/// was found with.
fn core_finding(path: &Path, text: &str) -> (CoreCase, Option<Mutation>) {
    let mut table: toml::Table =
        toml::from_str(text).unwrap_or_else(|e| panic!("{}: not TOML: {e}", path.display()));
    let mutation = table.remove("mutation").map(|m| {
        m.as_str()
            .and_then(|name| name.parse().ok())
            .unwrap_or_else(|| panic!("{}: `mutation = {m}` names no mutation", path.display()))
    });
    let case = table
        .try_into()
        .unwrap_or_else(|e| panic!("{}: not a decoded case: {e}", path.display()));
    (case, mutation)
}

#[test]
fn scenario_file_corpus_and_findings_replay_clean() {
    let mut texts = files("seeds/scenario_file");
    assert!(!texts.is_empty(), "the seed corpus is committed");
    texts.extend(files("regressions/scenario_file"));
    for path in texts {
        let text = std::fs::read_to_string(&path).unwrap();
        check_scenario_text(Path::new("fuzz.toml"), &text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}
