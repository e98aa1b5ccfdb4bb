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
//! - **Trust**: an artifact is mapped and run as native code, so it is
//!   only used if the directory and the file belong to the current user
//!   and no one else can write them (`deserialize_artifact` says why).
//!   The directory is created `0700` and artifacts `0600`. A directory that
//!   fails the check is neither read nor written (one warning says how to
//!   fix it); an artifact that fails it is compiled again and replaced.
//! - **Failures** never fail a load: an artifact wasmtime refuses
//!   (truncated, corrupt, from elsewhere) is compiled again and replaced; a
//!   directory that cannot be written means compiling every time, said once
//!   on stderr.
//!
//! The directory is `$TRACESCRUB_CACHE_DIR`, else `$XDG_CACHE_HOME/tracescrub`,
//! else `~/.cache/tracescrub` ([`default_dir`]). Deleting it is always safe.

use std::fs::{self, OpenOptions};
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
    pub fn load(
        &self,
        engine: &Engine,
        component: &[u8],
    ) -> Result<(Component, LoadSource), HostError> {
        let path = self.artifact_path(component);
        let store = match self.lookup(engine, &path) {
            Ok(compiled) => return Ok((compiled, LoadSource::Cache)),
            // A miss: the usual first run.
            Err(CacheError::Missing) => true,
            // Truncated, corrupt, refused by wasmtime, or not private: the
            // directory is ours, so the store below can safely rename a good
            // artifact over it.
            Err(error @ (CacheError::Refused { .. } | CacheError::UntrustedArtifact { .. })) => {
                eprintln!(
                    "tracescrub: warning: {error}; compiling the component again and replacing it"
                );
                true
            }
            // An untrusted or unreadable directory: neither read nor write it.
            Err(error) => {
                self.warn_once(&error);
                false
            }
        };
        let compiled = Component::new(engine, component).map_err(HostError::Compile)?;
        if store && let Err(error) = self.store(&path, &compiled) {
            self.warn_once(&error);
        }
        Ok((compiled, LoadSource::Compiled))
    }

    /// Says once per cache that it cannot be used, and what to do.
    fn warn_once(&self, error: &CacheError) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        // The untrusted-directory errors carry their own remedy.
        let remedy = match error {
            CacheError::UntrustedDir { .. } => String::new(),
            _ => format!(" (set {CACHE_DIR_VAR} to a writable directory)"),
        };
        eprintln!("tracescrub: warning: {error}; every load compiles the component{remedy}");
    }

    /// The artifact at `path`, mapped if the directory and the file pass
    /// the trust checks.
    fn lookup(&self, engine: &Engine, path: &Path) -> Result<Component, CacheError> {
        let uid = self.check_dir()?;
        check_artifact(path, uid)?;
        deserialize_artifact(engine, path)
    }

    /// Checks that the cache directory is a directory owned by the current
    /// effective user and not writable by group or others, and returns that
    /// user's id. `Missing` if it does not exist yet.
    fn check_dir(&self) -> Result<u32, CacheError> {
        use std::os::unix::fs::MetadataExt;
        let untrusted = |why| CacheError::UntrustedDir { dir: self.dir.clone(), why };
        // Follows a symlink: a linked cache directory is fine if its target
        // passes. The mode is checked before the uid is looked up, because
        // off Linux that creates a file in the directory.
        let meta = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing),
            Err(source) => {
                return Err(CacheError::Io {
                    what: "read the metadata of the cache directory",
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        if !meta.is_dir() {
            return Err(untrusted(Distrust::Kind));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(Distrust::Writable { mode: meta.mode() & 0o7777 }));
        }
        let uid = effective_uid(&self.dir)?;
        if meta.uid() != uid {
            return Err(untrusted(Distrust::Owner { owner: meta.uid(), uid }));
        }
        Ok(uid)
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
        create_private_dir(&self.dir).map_err(io_error("create the cache directory", &self.dir))?;
        // It may have existed already, with another owner or mode.
        self.check_dir()?;
        let temp =
            temp_path(&self.dir, path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact"));
        let written = private_file(&temp)
            .and_then(|mut file| {
                file.write_all(&artifact)?;
                // Without it a crash soon after the rename can leave a
                // named but empty file (wasmtime would refuse it, but why
                // pay a recompile).
                file.sync_all()
            })
            .map_err(io_error("write a compiled component to", &temp))
            .and_then(|()| {
                fs::rename(&temp, path).map_err(io_error("rename a compiled component to", path))
            });
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        // Makes the rename itself durable. Best effort: losing it in a
        // crash costs one recompile.
        if written.is_ok() {
            let _ = fs::File::open(&self.dir).and_then(|dir| dir.sync_all());
        }
        written
    }
}

/// A temporary name in `dir`, unique among processes (pid) and among
/// threads and runtimes of this one (counter); it is opened with
/// `create_new`, which refuses a leftover of a dead process.
fn temp_path(dir: &Path, stem: &str) -> PathBuf {
    static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(".{stem}.{}-{}.tmp", process::id(), NEXT_TEMP.fetch_add(1, Ordering::Relaxed)))
}

/// Creates `dir` and its missing parents `0700` (whatever the umask), so
/// no other user can plant an artifact in it.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the new file `path`, `0600`: with the default `0666` a umask of
/// `002` would make it group-writable, and the trust check refuse it.
fn private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The effective uid, from procfs: the kernel makes `/proc/self` owned by
/// the process's effective uid. A process that is not dumpable (setuid, or
/// `PR_SET_DUMPABLE` off) sees root there instead; then only root-owned
/// files pass, which is still safe. No `unsafe` `geteuid` call, and unlike
/// the owner of a probe file, not fooled by a file system that squashes
/// every owner to one user.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn effective_uid(_dir: &Path) -> Result<u32, CacheError> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|meta| meta.uid()).map_err(|source| CacheError::Io {
        what: "find this process's user id from",
        path: PathBuf::from("/proc/self"),
        source,
    })
}

/// The effective uid, as the owner of a file just created in `dir` (a new
/// file is owned by its creator's effective uid), removed again at once.
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
fn effective_uid(dir: &Path) -> Result<u32, CacheError> {
    use std::os::unix::fs::MetadataExt;
    let probe = temp_path(dir, "uid-probe");
    let uid = private_file(&probe).and_then(|file| file.metadata()).map(|meta| meta.uid());
    let _ = fs::remove_file(&probe);
    uid.map_err(|source| CacheError::Io {
        what: "find this process's user id by creating a file in",
        path: dir.to_path_buf(),
        source,
    })
}

/// Checks that the artifact at `path` is a regular file (not a symlink)
/// owned by `uid` and not writable by group or others. `Missing` if there
/// is none.
fn check_artifact(path: &Path, uid: u32) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let untrusted = |why| CacheError::UntrustedArtifact { path: path.to_path_buf(), why };
    // Checked first so that a miss is a cheap, quiet `Missing` and not an
    // error parsed out of wasmtime's message.
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CacheError::Missing),
        Err(source) => {
            return Err(CacheError::Io {
                what: "read the metadata of the cached artifact",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_file() {
        return Err(untrusted(Distrust::Kind));
    }
    if meta.uid() != uid {
        return Err(untrusted(Distrust::Owner { owner: meta.uid(), uid }));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(Distrust::Writable { mode: meta.mode() & 0o7777 }));
    }
    Ok(())
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
    /// The cache directory could hold code planted by another user: it is
    /// neither read nor written.
    UntrustedDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        why: Distrust,
    },
    /// The artifact at `path` could have been written by another user: it
    /// is not mapped.
    UntrustedArtifact {
        /// The artifact.
        path: PathBuf,
        /// What is wrong with it.
        why: Distrust,
    },
}

/// Why a cache directory or artifact is not trusted to hold code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Distrust {
    /// Owned by another user.
    Owner {
        /// Its owner's uid.
        owner: u32,
        /// The current effective uid.
        uid: u32,
    },
    /// Writable by its group or by others.
    Writable {
        /// Its permission bits.
        mode: u32,
    },
    /// Not a directory (the cache directory), or not a regular file (an
    /// artifact: a symlink, say).
    Kind,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Missing => f.write_str("no cached artifact"),
            CacheError::Io { what, path, source } => {
                write!(f, "could not {what} {}: {source}", path.display())
            }
            // wasmtime's chain says which check failed; its first link only
            // repeats the path ("failed to load code for: PATH").
            CacheError::Refused { path, source } => {
                write!(f, "the cached artifact {} is unusable", path.display())?;
                let skip = usize::from(source.chain().count() > 1);
                source.chain().skip(skip).try_for_each(|cause| write!(f, ": {cause}"))
            }
            CacheError::Serialize(source) => {
                write!(f, "could not serialize the compiled component: {source:#}")
            }
            CacheError::UntrustedDir { dir, why } => {
                let dir = dir.display();
                match why {
                    Distrust::Owner { owner, uid } => write!(
                        f,
                        "the cache directory {dir} belongs to uid {owner}, not to this user (uid {uid}), so it could hold code planted by someone else; not using it (set {CACHE_DIR_VAR} to a directory of your own)"
                    ),
                    Distrust::Writable { mode } => write!(
                        f,
                        "the cache directory {dir} is writable by group or others (mode {mode:04o}), so it could hold code planted by someone else; not using it (run `chmod 700 {dir}`, or set {CACHE_DIR_VAR} to a private directory)"
                    ),
                    Distrust::Kind => write!(
                        f,
                        "the cache directory {dir} is not a directory; not using it (remove it, or set {CACHE_DIR_VAR} to a directory)"
                    ),
                }
            }
            CacheError::UntrustedArtifact { path, why } => {
                let path = path.display();
                match why {
                    Distrust::Owner { owner, uid } => {
                        write!(
                            f,
                            "the cached artifact {path} belongs to uid {owner}, not to this user (uid {uid}); not mapping it"
                        )
                    }
                    Distrust::Writable { mode } => {
                        write!(
                            f,
                            "the cached artifact {path} is writable by group or others (mode {mode:04o}); not mapping it"
                        )
                    }
                    Distrust::Kind => write!(
                        f,
                        "the cached artifact {path} is not a regular file (a symlink?); not mapping it"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for CacheError {}

/// Maps the artifact at `path`. Only after [`ArtifactCache::check_dir`]
/// and [`check_artifact`] passed for it.
#[expect(
    unsafe_code,
    reason = "wasmtime's only zero-copy load of precompiled code; see the SAFETY comment"
)]
fn deserialize_artifact(engine: &Engine, path: &Path) -> Result<Component, CacheError> {
    // SAFETY: wasmtime runs precompiled code as native code without
    // verifying it (its header checks catch accidents, not tampering), and
    // requires that the mapped file not change while the component lives.
    // Both rest on the trust checks that just passed:
    // - The cache directory is a directory owned by the current effective
    //   uid and not writable by group or others, so only this user (or
    //   root) can create, rename or remove entries in it; no one else can
    //   plant or swap an artifact between the checks and the mapping.
    // - The artifact is a regular file (not a symlink to elsewhere) owned by
    //   the same uid and not writable by group or others, so no one else
    //   can edit it in place.
    // - So it is a `Component::serialize` output of ours, under a key that
    //   covers the component's bytes and the engine's compatibility hash.
    //   wasmtime checks the header, version and engine settings again and
    //   refuses a mismatch or a truncated file (`Refused`, then replaced).
    // - tracescrub only ever replaces an artifact by renaming a new file
    //   over its name: the mapped inode is never written again.
    // Out of reach: the parents of the directory (whoever controls one can
    // swap the directory), and this user or root writing the file on
    // purpose (they can equally edit this binary).
    unsafe { Component::deserialize_file(engine, path) }
        .map_err(|source| CacheError::Refused { path: path.to_path_buf(), source })
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
        let name = key(&speed, DEFAULT_COMPONENT)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .expect("name");
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
        let (epochs, no_epochs) =
            (engine(wasmtime::OptLevel::Speed), engine_with(wasmtime::OptLevel::Speed, false));
        let (epochs_cache, no_epochs_cache) =
            (ArtifactCache::new(dir.path(), &epochs), ArtifactCache::new(dir.path(), &no_epochs));
        no_epochs_cache.load(&no_epochs, EMPTY_COMPONENT).expect("load");
        fs::copy(
            no_epochs_cache.artifact_path(EMPTY_COMPONENT),
            epochs_cache.artifact_path(EMPTY_COMPONENT),
        )
        .expect("copy");
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

    /// The permission bits of `path`.
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Scenario: the cache directory and its parent do not exist yet.
    /// Guarantees: both are created `0700` and the artifact `0600`, so no
    /// other user can plant or edit code in them, whatever the umask.
    #[test]
    fn a_fresh_cache_dir_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache_dir = dir.path().join("parent").join("cache");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(&cache_dir, &engine);
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Compiled);
        assert_eq!(mode(&cache_dir), 0o700);
        assert_eq!(mode(&dir.path().join("parent")), 0o700);
        assert_eq!(mode(&cache.artifact_path(EMPTY_COMPONENT)), 0o600);
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Cache);
    }

    /// Scenario: a good artifact, then the directory made group-writable
    /// (a shared cache another user could plant an artifact in).
    /// Guarantees: the artifact is not mapped, every load compiles, the
    /// directory is not written (no new files, the artifact untouched), and
    /// the warning says how to fix it.
    #[test]
    fn a_group_writable_cache_dir_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(wasmtime::OptLevel::Speed);
        ArtifactCache::new(dir.path(), &engine).load(&engine, EMPTY_COMPONENT).expect("load");
        chmod(dir.path(), 0o770);
        let cache = ArtifactCache::new(dir.path(), &engine);
        let path = cache.artifact_path(EMPTY_COMPONENT);
        let before = fs::metadata(&path).expect("artifact").modified().expect("mtime");
        for _ in 0..2 {
            assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Compiled);
        }
        assert!(cache.warned.load(Ordering::Relaxed));
        assert_eq!(fs::read_dir(dir.path()).expect("read dir").count(), 1);
        assert_eq!(fs::metadata(&path).expect("artifact").modified().expect("mtime"), before);
        let error = cache.check_dir().expect_err("refused");
        assert!(
            matches!(
                error,
                CacheError::UntrustedDir { why: Distrust::Writable { mode: 0o770 }, .. }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&format!("chmod 700 {}", dir.path().display())),
            "{error}"
        );
        // Once fixed, the artifact is used again.
        chmod(dir.path(), 0o700);
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Cache);
    }

    /// Scenario: the artifact is writable by others, or is a symlink to a
    /// good artifact elsewhere.
    /// Guarantees: neither is mapped; the load compiles and, the directory
    /// being private, renames a private artifact over it, which the next
    /// load maps.
    #[test]
    fn a_writable_or_symlinked_artifact_is_refused_and_replaced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = engine(wasmtime::OptLevel::Speed);
        let cache = ArtifactCache::new(dir.path(), &engine);
        cache.load(&engine, EMPTY_COMPONENT).expect("load");
        let path = cache.artifact_path(EMPTY_COMPONENT);
        let elsewhere = tempfile::tempdir().expect("temp dir");
        let target = elsewhere.path().join("good.cwasm");
        fs::copy(&path, &target).expect("copy");

        chmod(&path, 0o602);
        let error =
            check_artifact(&path, effective_uid(dir.path()).expect("uid")).expect_err("refused");
        assert!(
            matches!(
                error,
                CacheError::UntrustedArtifact { why: Distrust::Writable { mode: 0o602 }, .. }
            ),
            "{error:?}"
        );
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Compiled);
        assert_eq!(mode(&path), 0o600, "replaced");
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Cache);

        fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Compiled);
        assert!(fs::symlink_metadata(&path).expect("artifact").file_type().is_file(), "replaced");
        assert_eq!(cache.load(&engine, EMPTY_COMPONENT).expect("load").1, LoadSource::Cache);
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
