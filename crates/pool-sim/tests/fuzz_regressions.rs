//! The fuzz targets' seed corpora and every decoded finding under
//! `fuzz/regressions/` replay clean: the core stays consistent under its raw
//! inputs, and the parser names the file or round-trips the scenario. (The
//! `transitions` findings are scenarios, replayed with all the others.)

use std::path::{Path, PathBuf};

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
        let case: CoreCase = toml::from_str(&text).expect("a decoded case");
        drive_core(&case, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
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
