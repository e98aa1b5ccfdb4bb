//! Reloads: SIGHUP, a change to the config, component or key file (or to
//! `teams.dir`), or `POST /-/reload`.
//!
//! A reload reads the files, compiles the component (through the runtime's
//! cache; not at all when its bytes are unchanged), creates a processor with
//! the config, runs the canary batch, and only then swaps the new version
//! in. Reloads run one at a time. A failure at any step leaves the old
//! version serving; it is logged (step and reason, never span content) and
//! counted. Batches already in flight finish on the version they captured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::version::{self, Shared, Sources, Step, VersionError};
use super::{Gateway, log};
use crate::{InstanceOptions, Runtime};

/// File events closer together than this are one change: editors and
/// `cp` write a file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The longest a burst of events holds a reload back.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// What a reload needs besides the gateway.
pub struct Reloader {
    runtime: Runtime,
    sources: Sources,
    options: InstanceOptions,
    /// Serializes reloads.
    lock: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

impl Reloader {
    /// A reloader building versions from `sources`; the first version was 1.
    pub fn new(runtime: Runtime, sources: Sources, options: InstanceOptions) -> Reloader {
        Reloader {
            runtime,
            sources,
            options,
            lock: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(2),
        }
    }
}

/// Builds a version from the files and swaps it in if every step passes.
pub async fn reload(gateway: &Arc<Gateway>, trigger: &str) -> Result<Shared, VersionError> {
    let reloader = &gateway.reloader;
    let _one_at_a_time = reloader.lock.lock().await;
    let previous = gateway.active();
    let id = reloader.next_id.fetch_add(1, Ordering::Relaxed);
    let (runtime, sources, options) =
        (reloader.runtime.clone(), reloader.sources.clone(), reloader.options.clone());
    let base = Arc::clone(&previous);
    // Compiling is CPU work: keep it off the async threads.
    let built = tokio::task::spawn_blocking(move || {
        version::build(&runtime, &sources, id, Some(&base), &options)
    })
    .await
    .unwrap_or_else(|e| {
        Err(VersionError { step: Step::Compile, message: format!("the reload task failed: {e}") })
    });
    match built {
        Ok(next) => {
            let ignored = gateway.settings.fixed_changes(&next.settings);
            if !ignored.is_empty() {
                log(format_args!(
                    "reload: gateway settings {} changed; they take effect only at restart",
                    ignored.join(", ")
                ));
            }
            let next = Arc::new(next);
            *gateway.active.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Arc::clone(&next);
            gateway.metrics.reload(true);
            if !next.failed_teams.is_empty() {
                gateway.metrics.team_file_failures(next.failed_teams.len());
                log(format_args!(
                    "reload: team file(s) {} have problems; each keeps its last good version, if it had one",
                    next.failed_teams.join(", ")
                ));
            }
            log(format_args!(
                "reload: success trigger={trigger} version={} component={} config={}",
                next.id, next.component_sha256, next.config_sha256
            ));
            Ok(next)
        }
        Err(e) => {
            gateway.metrics.reload(false);
            log(format_args!(
                "reload: failure trigger={trigger} step={} reason=\"{}\"; version {} keeps serving",
                e.step,
                e.message.replace('"', "'").replace('\n', " "),
                previous.id
            ));
            Err(e)
        }
    }
}

/// Keeps the reload triggers running; stops them when dropped.
pub struct Triggers {
    _watcher: Option<notify::RecommendedWatcher>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Triggers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The absolute path of `file` through a canonical parent directory, so it
/// compares equal to the paths the watcher reports even when the file is
/// replaced by a rename.
fn watched_path(file: &Path) -> Result<(PathBuf, PathBuf), String> {
    let name = file.file_name().ok_or_else(|| format!("{} names no file", file.display()))?;
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = std::fs::canonicalize(&parent)
        .map_err(|e| format!("cannot watch {}: {e}", parent.display()))?;
    Ok((dir.join(name), dir))
}

/// What the file watcher watches: the config, component and key files, and
/// `teams.dir`, as the config names them at start (a new path takes a
/// restart), with a digest of their contents.
pub struct Watched {
    files: Arc<Vec<PathBuf>>,
    teams_dir: Option<PathBuf>,
    digest: [u8; 32],
}

impl Watched {
    /// Read before the first version is built, so that a change made while
    /// it builds shows as a new digest once the watcher runs.
    pub fn read(sources: &Sources) -> Watched {
        let config_doc = sources.config.as_deref().and_then(|config| {
            let json = crate::config_file::to_json(&std::fs::read_to_string(config).ok()?).ok()?;
            Some((json, config.parent()))
        });
        let teams_dir = config_doc.as_ref().and_then(|(json, dir)| {
            std::fs::canonicalize(crate::config_file::teams_dir(json, *dir)?).ok()
        });
        let key_file =
            config_doc.as_ref().and_then(|(json, dir)| crate::config_file::key_file(json, *dir));
        let files: Vec<PathBuf> = [sources.config.clone(), sources.component.clone(), key_file]
            .into_iter()
            .flatten()
            .collect();
        let digest = contents_digest(&files, teams_dir.as_deref());
        Watched { files: Arc::new(files), teams_dir, digest }
    }
}

/// Starts the SIGHUP handler and, when files are given, the file watcher.
/// The watcher watches each file's directory, so an atomic rename over the
/// file is seen. An event naming a watched file, or in `teams.dir`,
/// reloads; any other event in a watched directory reloads only when a
/// watched file's content changed: Kubernetes updates a mounted ConfigMap or
/// Secret by swapping the `..data` link the files point through, and no
/// event names the files themselves.
pub fn watch(gateway: Arc<Gateway>, watched: Watched) -> Result<Triggers, String> {
    let mut tasks = Vec::new();
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    let on_signal = Arc::clone(&gateway);
    tasks.push(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let _ = reload(&on_signal, "sighup").await;
        }
    }));

    let Watched { files, teams_dir, digest } = watched;
    let mut last = Some(digest);
    let digest_teams = teams_dir.clone();
    if files.is_empty() {
        return Ok(Triggers { _watcher: None, tasks });
    }
    let mut targets = Vec::new();
    let mut dirs = Vec::new();
    if let Some(dir) = &teams_dir {
        dirs.push(dir.clone());
    }
    for file in files.iter() {
        let (path, dir) = watched_path(file)?;
        targets.push(path);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    // Sends whether the event named a watched file or one in `teams.dir`.
    let (tx, mut rx) = mpsc::unbounded_channel::<bool>();
    // A change made before the watcher ran has no event of its own:
    // compare the digest once.
    let _ = tx.send(false);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reads (ours included, during a reload) are not changes.
        if matches!(event.kind, EventKind::Access(_) | EventKind::Other | EventKind::Any) {
            return;
        }
        let in_teams = |p: &PathBuf| teams_dir.as_ref().is_some_and(|d| p.parent() == Some(d));
        let _ = tx.send(event.paths.iter().any(|p| targets.contains(p) || in_teams(p)));
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    tasks.push(tokio::spawn(async move {
        while let Some(mut named) = rx.recv().await {
            // Debounce: wait until the events stop for DEBOUNCE, but no
            // longer than MAX_DEBOUNCE, so that a file written often beside
            // the watched ones cannot hold a reload back.
            let until = tokio::time::Instant::now() + MAX_DEBOUNCE;
            loop {
                tokio::select! {
                    more = rx.recv() => match more {
                        Some(more) => named |= more,
                        None => return,
                    },
                    () = tokio::time::sleep(DEBOUNCE) => break,
                    () = tokio::time::sleep_until(until) => break,
                }
            }
            // Reading a large component is blocking work. When the digest
            // cannot be taken, reload rather than miss a change; but not
            // when the runtime is shutting down.
            let (read, teams) = (Arc::clone(&files), digest_teams.clone());
            let now =
                match tokio::task::spawn_blocking(move || contents_digest(&read, teams.as_deref()))
                    .await
                {
                    Ok(digest) => Some(digest),
                    Err(e) if e.is_cancelled() => return,
                    Err(_) => None,
                };
            if named || now.is_none() || now != last {
                last = now;
                let _ = reload(&gateway, "file-change").await;
            }
        }
    }));
    Ok(Triggers { _watcher: Some(watcher), tasks })
}

/// A digest of the files' contents (through links) and of the team files
/// in `teams_dir` (names and contents), or of why each could not be read.
fn contents_digest(files: &[PathBuf], teams_dir: Option<&Path>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    let team_files =
        teams_dir.and_then(|dir| crate::config_file::team_file_paths(dir).ok()).unwrap_or_default();
    for file in files.iter().chain(&team_files) {
        let name = file.as_os_str().as_encoded_bytes();
        digest.update((name.len() as u64).to_le_bytes());
        digest.update(name);
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update([1]);
                digest.update((bytes.len() as u64).to_le_bytes());
                digest.update(&bytes);
            }
            Err(e) => {
                digest.update([0]);
                digest.update(e.kind().to_string());
            }
        }
    }
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a watched file and a teams directory, changed one way at a
    /// time, and a file beside them that is neither.
    /// Guarantees: every change to a watched file or team file (content, a
    /// new file, a removed one) changes the digest; the other file does not.
    #[test]
    fn the_digest_follows_watched_and_team_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let (config, teams) = (dir.path().join("scrub.yaml"), dir.path().join("teams"));
        std::fs::create_dir(&teams).unwrap();
        std::fs::write(&config, "{}").unwrap();
        std::fs::write(teams.join("a.yaml"), "noise: {}").unwrap();
        let files = [config.clone()];
        let digest = || contents_digest(&files, Some(&teams));
        let mut seen = vec![digest()];
        let mut changed = |what: &str, change: &dyn Fn()| {
            change();
            let now = digest();
            assert!(!seen.contains(&now), "{what} did not change the digest");
            seen.push(now);
        };
        changed("the config", &|| std::fs::write(&config, "{ }").unwrap());
        changed("a team file", &|| std::fs::write(teams.join("a.yaml"), "noise: { }").unwrap());
        changed("a new team file", &|| std::fs::write(teams.join("b.yml"), "").unwrap());
        changed("a removed team file", &|| std::fs::remove_file(teams.join("a.yaml")).unwrap());
        changed("a removed config", &|| std::fs::remove_file(&config).unwrap());
        let before = digest();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::write(teams.join("README.md"), "x").unwrap();
        assert_eq!(digest(), before, "files that are neither changed the digest");
    }
}
