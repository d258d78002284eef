//! A bad scenario file is an error naming the file, the line and the field.

use std::path::Path;

use pool_sim::Scenario;

fn error(text: &str) -> String {
    Scenario::parse(Path::new("scenarios/bad.toml"), text)
        .expect_err("the file is bad")
        .to_string()
}

const HEAD: &str = "name = \"x\"\nexpect = \"pass\"\n";

#[test]
fn unknown_pool_field_names_file_line_and_field() {
    let e = error(&format!(
        "{HEAD}[pool]\nmax_sise = 3\n[script]\nsteps = []\n"
    ));
    assert!(e.starts_with("scenarios/bad.toml:4:"), "{e}");
    assert!(e.contains("max_sise"), "{e}");
}

#[test]
fn unknown_transition_names_the_step_and_the_choices() {
    let e = error(&format!(
        "{HEAD}[script]\nsteps = [\n  {{ at_ms = 0, do = \"acquire\", client = 0 }},\n  {{ at_ms = 1, do = \"relase\", client = 0 }},\n]\n"
    ));
    assert!(e.starts_with("scenarios/bad.toml:6:"), "{e}");
    assert!(
        e.contains("step 1") && e.contains("relase") && e.contains("release"),
        "{e}"
    );
}

#[test]
fn misspelt_field_of_a_step_is_named() {
    let e = error(&format!(
        "{HEAD}[script]\nsteps = [\n  {{ at_ms = 0, do = \"acquire\", clinet = 0 }},\n]\n"
    ));
    assert!(e.starts_with("scenarios/bad.toml:5:"), "{e}");
    assert!(e.contains("clinet"), "{e}");
}

#[test]
fn time_going_backwards_is_refused() {
    let e = error(&format!(
        "{HEAD}[script]\nsteps = [\n  {{ at_ms = 5, do = \"wait\" }},\n  {{ at_ms = 4, do = \"wait\" }},\n]\n"
    ));
    assert!(e.contains(":6:") && e.contains("earlier"), "{e}");
}

#[test]
fn missing_time_is_refused() {
    let e = error(&format!(
        "{HEAD}[script]\nsteps = [\n  {{ do = \"wait\" }},\n]\n"
    ));
    assert!(e.contains(":5:") && e.contains("at_ms"), "{e}");
}

#[test]
fn unknown_invariant_in_expect_lists_the_names() {
    let e = error("name = \"x\"\nexpect = \"ghost\"\n[script]\nsteps = []\n");
    assert!(e.contains(":2:") && e.contains("ghost-idle"), "{e}");
}

#[test]
fn negative_value_is_refused_with_its_field() {
    let e = error(&format!(
        "{HEAD}[script]\nsteps = [\n  {{ at_ms = 0, do = \"kill\", session = -1 }},\n]\n"
    ));
    assert!(e.contains(":5:") && e.contains("-1"), "{e}");
}
