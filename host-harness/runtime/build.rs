//! Builds the tracescrub span-processor component that `tracescrub-runtime`
//! embeds (and so the `tracescrub` binary).
//!
//! A plain `cargo build` / `cargo test` of the workspace is the only command
//! needed. This script:
//!
//! 1. runs a nested
//!    `cargo rustc -p tracescrub-processor --profile wasm --target wasm32-unknown-unknown --crate-type cdylib --locked`
//!    in a target directory of its own (`<target-dir>/wasm-build`), so that it
//!    never waits on the lock the outer build holds;
//! 2. turns the core module into a component with `wit-component`, validating it;
//! 3. writes it to `$OUT_DIR/tracescrub_processor.wasm`, which `src/lib.rs`
//!    embeds as `DEFAULT_COMPONENT`.
//!
//! It needs the `wasm32-unknown-unknown` target for the toolchain in use:
//! `rustup target add wasm32-unknown-unknown`.
//!
//! `TRACESCRUB_COMPONENT_OVERRIDE=/path/to/component.wasm` skips all of this
//! and embeds that file as it is (it must already be a component, not a core
//! module). Meant for a prebuilt, reviewed component (a release pipeline, or a
//! machine without the wasm target); the file is checked only when loaded.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const OVERRIDE_VAR: &str = "TRACESCRUB_COMPONENT_OVERRIDE";
const OUTPUT_NAME: &str = "tracescrub_processor.wasm";

/// Environment variables of the outer build that must not reach the nested
/// one: flags and wrappers meant for the host build (clippy's driver,
/// coverage instrumentation, sccache), and target/target-dir selections that
/// would redirect it.
const LEAKY_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "LLVM_PROFILE_FILE",
];

/// Prefixes of further variables to drop (cargo-llvm-cov's and cargo's
/// internal ones).
const LEAKY_PREFIXES: &[&str] = &["CARGO_LLVM_COV", "__CARGO"];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!(
                "\nerror: could not build the tracescrub span-processor component\n\n{message}\n"
            );
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    // This crate sits at `<workspace>/host-harness/runtime`.
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .ok_or("host-harness/runtime must sit two levels below the workspace root")?
        .to_path_buf();
    let output = out_dir.join(OUTPUT_NAME);

    println!("cargo::rerun-if-env-changed={OVERRIDE_VAR}");
    if let Some(path) = env::var_os(OVERRIDE_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        println!("cargo::rerun-if-changed={}", path.display());
        std::fs::copy(&path, &output).map_err(|e| {
            format!("{OVERRIDE_VAR} is set to {}, which could not be copied: {e}", path.display())
        })?;
        println!(
            "cargo::warning=embedding the prebuilt component {} ({OVERRIDE_VAR})",
            path.display()
        );
        return Ok(());
    }

    for watched in ["processor/src", "processor/Cargo.toml", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", workspace.join(watched).display());
    }

    check_wasm_target()?;

    let target_dir = nested_target_dir(&out_dir, &workspace);
    let core_module = build_core_module(&workspace, &target_dir)?;
    let bytes = std::fs::read(&core_module)
        .map_err(|e| format!("could not read the built module {}: {e}", core_module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| {
            format!(
                "wit-component could not turn {} into a component: {e:#}",
                core_module.display()
            )
        })?;
    std::fs::write(&output, component)
        .map_err(|e| format!("could not write {}: {e}", output.display()))?;
    Ok(())
}

fn env_var(name: &str) -> Result<OsString, String> {
    env::var_os(name).ok_or_else(|| format!("cargo did not set {name}; run this through cargo"))
}

/// Fails early, with the fix, when the wasm target's standard library is not
/// installed for the toolchain in use.
fn check_wasm_target() -> Result<(), String> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // If the sysroot cannot be found, let the build itself report the problem.
    if let Some(sysroot) = sysroot
        && !sysroot.join("lib/rustlib").join(WASM_TARGET).join("lib").is_dir()
    {
        return Err(format!(
            "the `{WASM_TARGET}` target is not installed for the toolchain at {}.\n\
             Install it with:\n\n    rustup target add {WASM_TARGET}\n\n\
             (or set {OVERRIDE_VAR} to a prebuilt component)",
            sysroot.display()
        ));
    }
    Ok(())
}

/// The nested build's own target directory: `wasm-build` inside the outer
/// build's target directory (the ancestor of `OUT_DIR` that cargo marks with
/// `CACHEDIR.TAG`), or `<workspace>/target/wasm-build` if none is found. A
/// separate directory means a separate lock, so the nested cargo cannot
/// deadlock on the outer one; sharing it across outer profiles means the
/// guest is compiled once.
fn nested_target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(|| workspace.join("target"), Path::to_path_buf)
        .join("wasm-build")
}

fn build_core_module(workspace: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args(["rustc", "--package", "tracescrub-processor", "--profile", "wasm"])
        .args(["--target", WASM_TARGET, "--crate-type", "cdylib", "--locked"])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        // A 256 KiB shadow stack instead of wasm-ld's 1 MiB: the walker's
        // recursion is bounded (MAX_VALUE_DEPTH), and every instance's
        // memory starts with the whole stack, so this is 768 KiB less per
        // instance. Overflowing it traps (the stack sits below the data).
        .args(["--", "-C", "link-arg=-zstack-size=262144"])
        // Wasm SIMD (part of WebAssembly 2.0; wasmtime has it on by
        // default) for the processor crate: its digit pre-check compares 16
        // bytes at a time. (Flags after `--` reach only this crate.)
        .args(["-C", "target-feature=+simd128"])
        // Cargo's progress goes to stderr; keep stdout, which cargo reads
        // for build-script directives, clean.
        .stdout(Stdio::from(std::io::stderr()));
    for var in LEAKY_VARS {
        command.env_remove(var);
    }
    for (name, _) in env::vars_os() {
        let leaky = name.to_str().is_some_and(|n| LEAKY_PREFIXES.iter().any(|p| n.starts_with(p)));
        if leaky {
            command.env_remove(&name);
        }
    }

    let status = command
        .status()
        .map_err(|e| format!("could not run `{}`: {e}", cargo.to_string_lossy()))?;
    if !status.success() {
        return Err(format!(
            "`cargo rustc -p tracescrub-processor --profile wasm --target {WASM_TARGET} --crate-type cdylib --locked` \
             failed ({status}); its output is above.\n\
             - If the target is missing: rustup target add {WASM_TARGET}\n\
             - If Cargo.lock is out of date: run `cargo update -w` (or any plain cargo build) first\n\
             - If tracescrub-processor does not compile: fix it; `cargo check -p tracescrub-processor --target {WASM_TARGET}` shows the errors"
        ));
    }
    let module = target_dir.join(WASM_TARGET).join("wasm").join(OUTPUT_NAME);
    if !module.is_file() {
        return Err(format!("the nested build succeeded but {} is missing", module.display()));
    }
    Ok(module)
}
