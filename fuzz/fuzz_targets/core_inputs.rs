//! Bytes -> raw pool-core inputs (nonsense ids, repeated and out-of-order
//! events, time that stands still or steps back): the core never panics, its
//! bookkeeping stays consistent, and a refused input changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pool_sim::fuzz::{CoreCase, drive_core, mutation_from_env};

fuzz_target!(|data: &[u8]| {
    let Ok(case) = CoreCase::from_bytes(data) else {
        return;
    };
    if let Err(e) = drive_core(&case, mutation_from_env()) {
        panic!("{e}");
    }
});
