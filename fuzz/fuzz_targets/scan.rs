//! Fuzzes `fnr::scan` against an independent naive finder, in both modes,
//! and checks that masking what it finds leaves nothing. The properties are
//! in `processor/tests/fuzz_regressions/checks.rs`, shared with the replay
//! test that keeps every crash found here as a regression.
#![no_main]

// Each target uses its own half of the shared checks.
#[allow(dead_code)]
#[path = "../../processor/tests/fuzz_regressions/checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::scan(data));
