//! Bytes -> the scenario parser: never a panic; always a scenario or an
//! error that names the file; and a scenario survives its own TOML.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pool_sim::fuzz::check_scenario_text;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(e) = check_scenario_text(Path::new("fuzz.toml"), text)
    {
        panic!("{e}");
    }
});
