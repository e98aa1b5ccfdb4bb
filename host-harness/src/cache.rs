//! The on-disk cache of compiled components.
//!
//! Compiling the component with Cranelift takes over a second; loading the
//! compiled artifact back takes about a millisecond, because wasmtime maps
//! the file into memory as it is ([`Component::deserialize_file`]) instead of
//! reading, decompressing and copying it as its own cache does.
//!
//! - **Key**: SHA-256 over the component's bytes and
//!   [`Engine::precompile_compatibility_hash`], which covers the target, the
//!   Cranelift flags, the engine's tunables and wasm features, and wasmtime's
//!   exact version (its default `module_version` strategy hashes the crate
//!   version). Any of them changing gives another key, so an artifact from
//!   another wasmtime or engine config is never even opened.
//! - **Artifact**: `<dir>/<key>.cwasm`, [`Component::serialize`] of the
//!   compiled component, written to a temporary file in the same directory
//!   and renamed into place. A reader sees either no file or a whole one,
//!   and two processes filling the same entry at once each rename a complete
//!   (and identical) file over the other's.
//! - **Failures** never fail a load: an artifact wasmtime refuses
//!   (truncated, corrupt, from elsewhere) is compiled again and replaced; a
//!   directory that cannot be written means compiling every time, said once
//!   on stderr.
//!
//! The directory is `$TRACESCRUB_CACHE_DIR`, else `$XDG_CACHE_HOME/tracescrub`,
//! else `~/.cache/tracescrub` ([`default_dir`]). Deleting it is always safe.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::{fmt, process};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::HostError;

/// The environment variable that names the cache directory.
pub const CACHE_DIR_VAR: &str = "TRACESCRUB_CACHE_DIR";

/// Bumped when the layout or key changes, so old entries are never read.
const LAYOUT_VERSION: &[u8] = b"tracescrub compiled-component cache v1";

/// The extension of artifacts (wasmtime's own name for precompiled code).
const ARTIFACT_EXTENSION: &str = "cwasm";

/// Where a loaded component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadSource {
    /// Mapped from a cached artifact: no compilation.
    Cache,
    /// Compiled with Cranelift (and stored, if there is a writable cache).
    Compiled,
}

impl fmt::Display for LoadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadSource::Cache => "cache",
            LoadSource::Compiled => "compiled",
        })
    }
}

/// The cache directory from the environment: `$TRACESCRUB_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/tracescrub`, else `$HOME/.cache/tracescrub`. `None` if
/// none of them is set (relative XDG and HOME paths are ignored, as the XDG
/// spec says).
pub fn default_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(CACHE_DIR_VAR) {
        return Some(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Some(xdg.join("tracescrub"));
    }
    var("HOME").filter(|p| p.is_absolute()).map(|home| home.join(".cache").join("tracescrub"))
}

/// A cache of compiled components for one engine, in one directory.
pub struct ArtifactCache {
    dir: PathBuf,
    /// The hasher already fed with the layout version and the engine's
    /// compatibility hash; each key clones it and adds the component.
    engine_hasher: Sha256,
    /// Whether the "cannot write" warning was printed.
    warned: AtomicBool,
}

impl ArtifactCache {
    /// A cache in `dir` (created on the first store) for components compiled
    /// by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> ArtifactCache {
        let mut hasher = HashWriter(Sha256::new());
        std::hash::Hash::hash(LAYOUT_VERSION, &mut hasher);
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        ArtifactCache { dir: dir.into(), engine_hasher: hasher.0, warned: AtomicBool::new(false) }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path the artifact of `component` has, whether or not it exists.
    pub fn artifact_path(&self, component: &[u8]) -> PathBuf {
        let key = self.engine_hasher.clone().chain_update(component).finalize();
        self.dir.join(format!("{}.{ARTIFACT_EXTENSION}", hex(&key)))
    }

    /// The compiled `component`: mapped from its artifact if there is a good
    /// one, else compiled and stored. Fails only if `component` does not
    /// compile.
    pub fn load(&self, engine: &Engine, component: &[u8]) -> Result<(Component, LoadSource), HostError> {
        let path = self.artifact_path(component);
        match deserialize_artifact(engine, &path) {
            Ok(compiled) => return Ok((compiled, LoadSource::Cache)),
            // A miss: the usual first run.
            Err(CacheError::Missing) => {}
            // Truncated, corrupt, or refused by wasmtime: compile, and the
            // store below renames a good artifact over it.
            Err(error @ CacheError::Refused { .. }) => {
                eprintln!("tracescrub: warning: {error}; compiling the component again and replacing it");
            }
            // Unreadable directory: the store below fails too and says so.
            Err(_) => {}
        }
        let compiled = Component::new(engine, component).map_err(HostError::Compile)?;
        if let Err(error) = self.store(&path, &compiled)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            eprintln!("tracescrub: warning: {error}; every load compiles the component (set {CACHE_DIR_VAR} to a writable directory)");
        }
        Ok((compiled, LoadSource::Compiled))
    }

    /// Writes the artifact of `compiled` to `path`: a temporary file in the
    /// same directory, flushed to disk, then renamed over `path`, so no
    /// reader ever sees a partial file.
    fn store(&self, path: &Path, compiled: &Component) -> Result<(), CacheError> {
        let io_error = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { what, path, source }
        };
        let artifact = compiled.serialize().map_err(CacheError::Serialize)?;
        fs::create_dir_all(&self.dir).map_err(io_error("create the cache directory", &self.dir))?;
        // Unique among processes (pid) and among threads and runtimes of
        // this one (counter); `create_new` refuses a leftover of a dead one.
        static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            ".{}.{}-{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact"),
            process::id(),
            NEXT_TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .and_then(|mut file| {
                file.write_all(&artifact)?;
                // Without it a crash soon after the rename can leave a
                // named but empty file (wasmtime would refuse it, but why
                // pay a recompile).
                file.sync_all()
            })
            .map_err(io_error("write a compiled component to", &temp))
            .and_then(|()| fs::rename(&temp, path).map_err(io_error("rename a compiled component to", path)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }
}

impl fmt::Debug for ArtifactCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Why the cache could not be used. Never returned from a load: printed as
/// a warning, and the component compiled instead.
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheError {
    /// No artifact for this key yet.
    Missing,
    /// A file system operation failed.
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// wasmtime refused the artifact at `path` (truncated, corrupt, or made
    /// by another wasmtime or engine config).
    Refused {
        /// The artifact.
        path: PathBuf,
        /// wasmtime's reason.
        source: wasmtime::Error,
    },
    /// wasmtime could not serialize a compiled component.
    Serialize(wasmtime::Error),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Missing => f.write_str("no cached artifact"),
            CacheError::Io { what, path, source } => write!(f, "could not {what} {}: {source}", path.display()),
            // wasmtime's chain says which check failed; its first link only
            // repeats the path ("failed to load code for: PATH").
            CacheError::Refused { path, source } => {
                write!(f, "the cached artifact {} is unusable", path.display())?;
                let skip = usize::from(source.chain().count() > 1);
                source.chain().skip(skip).try_for_each(|cause| write!(f, ": {cause}"))
            }
            CacheError::Serialize(source) => write!(f, "could not serialize the compiled component: {source:#}"),
        }
    }
}

impl std::error::Error for CacheError {}

/// Maps the artifact at `path`.
#[expect(unsafe_code, reason = "wasmtime's only zero-copy load of precompiled code; see the SAFETY comment")]
fn deserialize_artifact(engine: &Engine, path: &Path) -> Result<Component, CacheError> {
    // Checked first so that a miss is a cheap, quiet `Missing` and not an
    // error parsed out of wasmtime's message.
    match File::open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing),
        Err(source) => return Err(CacheError::Io { what: "open the cached artifact", path: path.to_path_buf(), source }),
    }
    // SAFETY: wasmtime trusts precompiled code, and requires that the mapped
    // file not change while the component lives. Both hold here:
    // - The file is one we wrote with `Component::serialize` under a key
    //   that covers the component's bytes and the engine's compatibility
    //   hash (target, flags, tunables, features, wasmtime version), in our
    //   own cache directory. wasmtime checks the header, its version and the
    //   engine settings again as it loads, and refuses a mismatch; a
    //   truncated file fails its ELF parse. Those refusals come back as
    //   `Refused` and the artifact is replaced.
    // - tracescrub only ever replaces an artifact by renaming a new file
    //   over its name: the inode mapped here is never written again, and
    //   stays valid for as long as it is mapped.
    // What this cannot defend against is someone who can write to the cache
    // directory and edits an artifact in place; that person can equally
    // edit this binary.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|source| CacheError::Refused { path: path.to_path_buf(), source })
}

/// Feeds `std::hash::Hash` output into SHA-256, for
/// [`Engine::precompile_compatibility_hash`]: `DefaultHasher` is only 64
/// bits and may change between Rust releases.
struct HashWriter(Sha256);

impl std::hash::Hasher for HashWriter {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Unused: the digest is read from the inner hasher.
    fn finish(&self) -> u64 {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_COMPONENT;

    fn engine(opt_level: wasmtime::OptLevel) -> Engine {
        engine_with(opt_level, true)
    }

    fn engine_with(opt_level: wasmtime::OptLevel, epoch_interruption: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(epoch_interruption);
        config.cranelift_opt_level(opt_level);
        Engine::new(&config).expect("engine")
    }

    /// The smallest valid component: compiles in milliseconds.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// Scenario: the same component loaded twice through one cache.
    /// Guarantees: the first load compiles and writes one artifact at the
    /// key's path; the second maps it.
    #[test]
    fn the_second_load_comes_from_the_cache() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(dir.path(), &engine);
        let (_, first) = cache.load(&engine, EMPTY_COMPONENT).expect("load");
        assert_eq!(first, LoadSource::Compiled);
        assert!(cache.artifact_path(EMPTY_COMPONENT).is_file());
        let (_, second) = cache.load(&engine, EMPTY_COMPONENT).expect("load");
        assert_eq!(second, LoadSource::Cache);
        // Only the artifact: no temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 1);
    }

    /// Scenario: the embedded span-processor component, through two caches
    /// on the same directory (two processes, in effect).
    /// Guarantees: the second one maps the first one's artifact, and the
    /// result instantiates and runs.
    #[test]
    fn a_cached_span_processor_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = crate::Runtime::with_cache_dir(dir.path()).expect("engine");
        assert_eq!(runtime.load_default().expect("compile").source(), LoadSource::Compiled);
        let runtime = crate::Runtime::with_cache_dir(dir.path()).expect("engine");
        let loaded = runtime.load_default().expect("cached load");
        assert_eq!(loaded.source(), LoadSource::Cache);
        let mut scrubber = crate::ScrubberInstance::create(&loaded, "{}").expect("instantiate");
        assert_eq!(scrubber.process(&[]).expect("process").1.spans_in, 0);
    }

    /// Scenario: the artifact is cut short, filled with garbage, or emptied
    /// (a crash, a full disk, a stray write).
    /// Guarantees: wasmtime refuses it, the load compiles instead, the
    /// artifact is rewritten, and the next load hits the cache again.
    #[test]
    fn a_corrupt_artifact_is_recompiled_and_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(dir.path(), &engine);
        cache.load(&engine, EMPTY_COMPONENT).expect("load");
        let path = cache.artifact_path(EMPTY_COMPONENT);
        let good = fs::read(&path).expect("artifact");
        let corruptions: [(&str, Vec<u8>); 4] = [
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("garbage", vec![0xa5; good.len()]),
            ("a wasm file", EMPTY_COMPONENT.to_vec()),
        ];
        for (what, bytes) in corruptions {
            fs::write(&path, bytes).expect("corrupt");
            let (_, source) = cache.load(&engine, EMPTY_COMPONENT).expect(what);
            assert_eq!(source, LoadSource::Compiled, "{what}");
            assert_eq!(fs::read(&path).expect("artifact"), good, "{what}: rewritten");
            let (_, source) = cache.load(&engine, EMPTY_COMPONENT).expect(what);
            assert_eq!(source, LoadSource::Cache, "{what}");
        }
    }

    /// Scenario: the same component for engines with different settings,
    /// and different components for one engine.
    /// Guarantees: each gets its own key, so an artifact compiled for one
    /// engine config is never opened by another (wasmtime itself would
    /// accept code of another optimization level: only the key keeps it
    /// apart); the same settings in a fresh engine give the same key.
    #[test]
    fn keys_differ_by_engine_config_and_component() {
        let dir = Path::new("/nonexistent");
        let speed = ArtifactCache::new(dir, &engine(wasmtime::OptLevel::Speed));
        let speed_again = ArtifactCache::new(dir, &engine(wasmtime::OptLevel::Speed));
        let none = ArtifactCache::new(dir, &engine(wasmtime::OptLevel::None));
        let no_epochs = ArtifactCache::new(dir, &engine_with(wasmtime::OptLevel::Speed, false));
        let key = |cache: &ArtifactCache, component: &[u8]| cache.artifact_path(component);
        assert_eq!(key(&speed, DEFAULT_COMPONENT), key(&speed_again, DEFAULT_COMPONENT));
        assert_ne!(key(&speed, DEFAULT_COMPONENT), key(&none, DEFAULT_COMPONENT));
        assert_ne!(key(&speed, DEFAULT_COMPONENT), key(&no_epochs, DEFAULT_COMPONENT));
        assert_ne!(key(&speed, DEFAULT_COMPONENT), key(&speed, EMPTY_COMPONENT));
        let name = key(&speed, DEFAULT_COMPONENT).file_name().and_then(|n| n.to_str()).map(str::to_owned).expect("name");
        assert_eq!(name.len(), 64 + ".cwasm".len(), "{name}");
    }

    /// Scenario: an artifact compiled by an engine without epoch
    /// interruption is put at the key of one with it (a copied file, or a
    /// key collision).
    /// Guarantees: wasmtime's own compatibility check refuses it, and the
    /// load compiles instead: the second line of defence behind the key.
    #[test]
    fn an_artifact_from_an_incompatible_engine_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (epochs, no_epochs) = (engine(wasmtime::OptLevel::Speed), engine_with(wasmtime::OptLevel::Speed, false));
        let (epochs_cache, no_epochs_cache) = (ArtifactCache::new(dir.path(), &epochs), ArtifactCache::new(dir.path(), &no_epochs));
        no_epochs_cache.load(&no_epochs, EMPTY_COMPONENT).expect("load");
        fs::copy(no_epochs_cache.artifact_path(EMPTY_COMPONENT), epochs_cache.artifact_path(EMPTY_COMPONENT)).expect("copy");
        let (_, source) = epochs_cache.load(&epochs, EMPTY_COMPONENT).expect("load");
        assert_eq!(source, LoadSource::Compiled);
        let (_, source) = epochs_cache.load(&epochs, EMPTY_COMPONENT).expect("load");
        assert_eq!(source, LoadSource::Cache, "replaced by a compatible artifact");
    }

    /// Scenario: the cache directory cannot be created (its parent is a
    /// file), so nothing can be stored.
    /// Guarantees: loads still succeed, compiling each time.
    #[test]
    fn an_unwritable_cache_dir_compiles_every_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a-file");
        fs::write(&file, b"").expect("file");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(file.join("cache"), &engine);
        for _ in 0..2 {
            let (_, source) = cache.load(&engine, EMPTY_COMPONENT).expect("load without a cache");
            assert_eq!(source, LoadSource::Compiled);
        }
        assert!(cache.warned.load(Ordering::Relaxed));
    }

    /// Scenario: bytes that are not a component.
    /// Guarantees: the compile error comes back, and nothing is stored.
    #[test]
    fn a_bad_component_is_an_error_and_not_cached() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(dir.path(), &engine);
        assert!(matches!(cache.load(&engine, b"not wasm"), Err(HostError::Compile(_))));
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 0);
    }
}
