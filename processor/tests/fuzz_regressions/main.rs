//! Replays every input the fuzzer ever failed on.
//!
//! When `scripts/fuzz-smoke.sh` (or any `cargo fuzz run`) finds a crash, its
//! input (`fuzz/artifacts/<target>/crash-*`, or the minimized one from
//! `cargo fuzz tmin`) is copied into `processor/tests/fuzz_regressions/<target>/`
//! under a name that says what it found, and stays there for good: this test
//! runs each file through the same checks as the fuzz target
//! (`checks.rs`, which the targets include by path), so the bug stays fixed
//! in every `cargo test` run, without the fuzzer.

mod checks;

use std::fs;
use std::path::Path;

/// Runs `check` on every file in `processor/tests/fuzz_regressions/<target>/`.
/// Returns how many there were.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions").join(target);
    let Ok(entries) = fs::read_dir(&dir) else { return 0 };
    let mut paths: Vec<_> = entries.map(|e| e.expect("readable directory entry").path()).collect();
    paths.sort();
    let mut count = 0;
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if !path.is_file() || name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let data = fs::read(&path).expect("readable regression input");
        eprintln!("replaying {target}/{name} ({} bytes)", data.len());
        check(&data);
        count += 1;
    }
    count
}

/// Scenario: every saved input of the `process` target.
/// Guarantees: the checks of `fuzz/fuzz_targets/process.rs` hold for each.
#[test]
fn process_regressions() {
    let n = replay("process", checks::process);
    // The directory holds at least the inputs of the two engine bugs the
    // property tests found (span-id duplicates, emptied containers).
    assert!(n >= 2, "only {n} process inputs: the regression directory lost its files");
}

/// Scenario: every saved input of the `scan` target.
/// Guarantees: the checks of `fuzz/fuzz_targets/scan.rs` hold for each.
#[test]
fn scan_regressions() {
    let n = replay("scan", checks::scan);
    assert!(n >= 1, "no scan inputs: the regression directory lost its files");
}

/// Scenario: a few fixed inputs, whatever the directories hold.
/// Guarantees: the checks themselves run and pass on the empty input, each
/// config byte, garbage, and a text full of numbers, so the replay has
/// something to stand on even while no crash has been saved.
#[test]
fn checks_pass_on_fixed_inputs() {
    for data in [&[][..], &[0], &[1, 0x0a, 0x00], &[3, 0xff, 0xff], &[4; 3000], &[2, 0x0b]] {
        checks::process(data);
    }
    for data in [
        &b""[..],
        b"01019012138",
        b"010190 12138 and 010190-12138",
        b"12345678901-1234567890 123456 12345",
        b"q=%30%31%30%31%39%30%2012138&x=010190%0912138%34",
        b"%3001019012138%30 0%3101%390%31%3213%38 %2501019012138",
        &[0xb0; 40],
    ] {
        checks::scan(data);
    }
    assert_eq!(
        checks::naive_find(b"x01019012138y", tracescrub_processor::fnr::Mode::Validated).len(),
        1
    );
}
