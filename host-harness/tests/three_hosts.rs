//! One component, three hosts, the same bytes: every batch of
//! `testdata/captures/` goes through the span-processor component in
//!
//! - wasmtime, through this crate's library;
//! - wazero, through the collector processor's own host code
//!   (`collector/cmd/tracescrub-conformance`, which the `tracescrub`
//!   processor of `otelcol-tracescrub` runs on);
//! - Node.js, through the JavaScript bindings that jco
//!   (`@bytecodealliance/jco`, pinned in `tests/three_hosts/package.json`)
//!   transpiles the component into;
//!
//! and every host must give byte-identical output, equal stats, and the same
//! typed error for a malformed batch and for a bad config.
//!
//! Each host follows one protocol (`tests/three_hosts/runner.mjs` documents
//! it): create a processor once from a JSON config file, process every
//! `*.binpb` of an input directory in name order, write each output batch
//! under its own name and everything else to `results.json`. This test
//! writes the wasmtime host's side itself.
//!
//! It needs `go` and `node` with `npm` on the PATH (CI installs neither by
//! hand: both come with the machine), and fails, saying so, without them.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::repo;
use tracescrub::{DEFAULT_COMPONENT, HostError, Runtime, ScrubberInstance, formats};
use tracescrub_processor::{Count, Error, Stats};

/// Runs a command to completion; panics with its output if it fails.
fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| {
        panic!("{what}: could not start {command:?}: {e} (is it installed and on PATH?)")
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {command:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The inputs: every batch of every capture as protobuf, named
/// `<capture dir>-<file stem>-<batch>.binpb`, plus batches that must fail
/// and an empty one.
fn write_inputs(dir: &Path) -> usize {
    std::fs::create_dir_all(dir).expect("input dir");
    let captures = repo("testdata/captures");
    let inputs =
        tracescrub::replay::collect_inputs(std::slice::from_ref(&captures)).expect("captures");
    let mut count = 0;
    let mut first_batch = None;
    for input in &inputs {
        let raw = std::fs::read(&input.path).expect("capture");
        let (_, batches) =
            formats::read(&raw).unwrap_or_else(|e| panic!("{}: {e}", input.relative.display()));
        let stem: String = input
            .relative
            .to_string_lossy()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        for (i, batch) in batches.into_iter().enumerate() {
            let bytes = batch.bytes.unwrap_or_else(|e| panic!("{}: {e}", input.relative.display()));
            first_batch.get_or_insert_with(|| bytes.clone());
            std::fs::write(dir.join(format!("{stem}-{i}.binpb")), bytes).expect("write input");
            count += 1;
        }
    }
    let batch = first_batch.expect("at least one capture");
    // Cut inside a span: a length that runs past the end.
    std::fs::write(dir.join("zz-malformed-truncated.binpb"), &batch[..batch.len() * 2 / 3])
        .expect("write");
    // Field 1 with wire type 7, which does not exist.
    std::fs::write(dir.join("zz-malformed-wire-type.binpb"), [0x0f, 0x00]).expect("write");
    std::fs::write(dir.join("zz-empty.binpb"), []).expect("write");
    count + 3
}

fn counts(counts: &[Count]) -> Value {
    counts.iter().map(|c| json!({"name": c.name, "value": c.value})).collect()
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "spans_in": s.spans_in,
        "spans_out": s.spans_out,
        "spans_dropped": s.spans_dropped,
        "dropped_by_rule": counts(&s.dropped_by_rule),
        "dropped_descendants": s.dropped_descendants,
        "values_masked": s.values_masked,
        "masked_by_detector": counts(&s.masked_by_detector),
        "masked_by_field": counts(&s.masked_by_field),
    })
}

fn error_json(error: HostError) -> Value {
    match error {
        HostError::Processor(Error::InvalidConfig(problems)) => json!({
            "kind": "invalid-config",
            "problems": problems.iter().map(|p| json!({"path": p.path, "reason": p.reason})).collect::<Value>(),
        }),
        HostError::Processor(Error::Malformed(m)) => {
            json!({"kind": "malformed-batch", "offset": m.offset, "reason": m.reason})
        }
        HostError::Processor(Error::TooLarge { size, limit }) => {
            json!({"kind": "batch-too-large", "size": size, "limit": limit})
        }
        HostError::Processor(Error::OutOfMemory { what }) => {
            json!({"kind": "out-of-memory", "what": what})
        }
        other => panic!("wasmtime host: not a typed component error: {other}"),
    }
}

/// The wasmtime host's side of the protocol, in process.
fn run_wasmtime(config: &Path, inputs: &Path, out: &Path) {
    std::fs::create_dir_all(out).expect("out dir");
    let runtime = Runtime::uncached().expect("engine");
    let component = runtime.load(DEFAULT_COMPONENT).expect("component");
    let config = std::fs::read_to_string(config).expect("config");
    let mut results = serde_json::Map::new();
    match ScrubberInstance::create(&component, &config) {
        Err(e) => {
            results.insert("create".into(), json!({"error": error_json(e)}));
        }
        Ok(mut scrubber) => {
            results.insert("create".into(), json!({"ok": true}));
            let mut batches = serde_json::Map::new();
            for name in input_names(inputs) {
                let bytes = std::fs::read(inputs.join(&name)).expect("input");
                let result = match scrubber.process(&bytes) {
                    Ok((output, stats)) => {
                        std::fs::write(out.join(&name), output).expect("write output");
                        json!({"stats": stats_json(&stats)})
                    }
                    Err(e) => json!({"error": error_json(e)}),
                };
                batches.insert(name, result);
            }
            results.insert("batches".into(), Value::Object(batches));
        }
    }
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&Value::Object(results)).expect("json"),
    )
    .expect("write");
}

fn input_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("input dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".binpb"))
        .collect();
    names.sort();
    names
}

/// Every file a host wrote, by name.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("entry");
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("read"))
        })
        .collect()
}

/// Builds the wazero and jco hosts once: the Go conformance runner, and the
/// component transpiled to JavaScript.
fn build_hosts(work: &Path, component: &Path) -> (PathBuf, PathBuf) {
    let go_runner = work.join("tracescrub-conformance");
    run(
        "building the wazero host",
        Command::new("go")
            .args(["build", "-trimpath", "-o"])
            .arg(&go_runner)
            .arg("./cmd/tracescrub-conformance")
            .current_dir(repo("collector"))
            .env("CGO_ENABLED", "0"),
    );
    let node_dir = repo("host-harness/tests/three_hosts");
    run(
        "installing jco (npm ci)",
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&node_dir),
    );
    let bindings = work.join("jco");
    run(
        "transpiling the component with jco",
        Command::new(node_dir.join("node_modules/.bin/jco"))
            .arg("transpile")
            .arg(component)
            .arg("-o")
            .arg(&bindings)
            .args(["--name", "tracescrub_processor", "--quiet"]),
    );
    (go_runner, bindings)
}

/// Scenario: the captures, a truncated batch, a batch with a bad wire type
/// and an empty batch go through wasmtime, wazero and jco on Node.js under
/// the default config, a second config that differs in every section, and a
/// config with several problems.
/// Guarantees: for every config, the three `results.json` are equal (create
/// outcome, each batch's stats or typed error) and every output batch is
/// byte-identical across the hosts; the run is not vacuous (spans were
/// dropped and values masked, the malformed batches failed as
/// `malformed-batch`, the bad config failed as `invalid-config` with key
/// paths).
#[test]
fn wasmtime_wazero_and_jco_give_the_same_bytes_stats_and_errors() {
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("three-hosts");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let component = work.join("tracescrub_processor.wasm");
    std::fs::write(&component, DEFAULT_COMPONENT).expect("component");
    let inputs = work.join("in");
    let n_inputs = write_inputs(&inputs);
    assert!(n_inputs >= 30, "expected the captures' batches, found {n_inputs}");
    let (go_runner, bindings) = build_hosts(&work, &component);
    let node_runner = repo("host-harness/tests/three_hosts/runner.mjs");

    let configs = [
        ("default", "{}".to_owned()),
        (
            "label",
            json!({
                "noise": {"extra_globs": ["*/ping", "*/api/user-*"], "drop_descendants": false},
                "mask": {"replacement": "label", "label": "<fnr>", "mode": "any11"}
            })
            .to_string(),
        ),
        ("invalid", json!({"version": 9, "noise": {"globs": ["/a/**[", 3]}, "mask": {"mask_char": "7"}, "bogus": true}).to_string()),
    ];
    for (name, config) in &configs {
        let config_file = work.join(format!("{name}.json"));
        std::fs::write(&config_file, config).expect("config");
        let out = |host: &str| work.join(format!("out-{name}-{host}"));
        run_wasmtime(&config_file, &inputs, &out("wasmtime"));
        run(
            "the wazero host",
            Command::new(&go_runner)
                .arg("run")
                .arg("--component")
                .arg(&component)
                .arg("--config")
                .arg(&config_file)
                .arg(&inputs)
                .arg(out("wazero")),
        );
        run(
            "the jco host",
            Command::new("node")
                .arg(&node_runner)
                .arg("run")
                .arg(&bindings)
                .arg(&config_file)
                .arg(&inputs)
                .arg(out("jco")),
        );

        let wasmtime = outputs(&out("wasmtime"));
        for host in ["wazero", "jco"] {
            let other = outputs(&out(host));
            let results = |files: &BTreeMap<String, Vec<u8>>| -> Value {
                serde_json::from_slice(files.get("results.json").expect("results.json"))
                    .expect("results.json is JSON")
            };
            assert_eq!(
                results(&other),
                results(&wasmtime),
                "config {name}: {host}'s results.json differs from wasmtime's"
            );
            let names =
                |files: &BTreeMap<String, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                names(&other),
                names(&wasmtime),
                "config {name}: {host} wrote other files than wasmtime"
            );
            for (file, bytes) in wasmtime.iter().filter(|(file, _)| *file != "results.json") {
                assert!(
                    other[file] == *bytes,
                    "config {name}: {host}'s {file} differs from wasmtime's ({} bytes against {})",
                    other[file].len(),
                    bytes.len()
                );
            }
        }

        // Not vacuous: what the results must hold for each config.
        let results: Value = serde_json::from_slice(&wasmtime["results.json"]).expect("json");
        if *name == "invalid" {
            let problems =
                results["create"]["error"]["problems"].as_array().expect("invalid-config problems");
            assert_eq!(results["create"]["error"]["kind"], "invalid-config");
            assert!(problems.len() >= 4, "every problem of the bad config is listed: {problems:?}");
            assert!(
                problems.iter().any(|p| p["path"] == "noise.globs[0]"),
                "problems name key paths: {problems:?}"
            );
            continue;
        }
        let batches = results["batches"].as_object().expect("batches");
        assert_eq!(batches.len(), n_inputs);
        let sum =
            |key: &str| batches.values().filter_map(|b| b["stats"][key].as_u64()).sum::<u64>();
        assert!(
            sum("spans_dropped") > 100 && sum("values_masked") > 100,
            "config {name}: dropped {} masked {}",
            sum("spans_dropped"),
            sum("values_masked")
        );
        for bad in ["zz-malformed-truncated.binpb", "zz-malformed-wire-type.binpb"] {
            assert_eq!(batches[bad]["error"]["kind"], "malformed-batch", "config {name}: {bad}");
        }
        assert_eq!(batches["zz-empty.binpb"]["stats"]["spans_in"], 0);
    }
}
