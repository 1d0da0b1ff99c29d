//! A watcher on a real file or directory (inotify and friends, through the
//! `notify` crate), with debouncing.
//!
//! Watching a *file* watches its parent directory and filters by name:
//! editors save by writing a temporary file and renaming it over the
//! original, which replaces the inode an inode-level watch would follow.
//! Debouncing (batch mode) delivers such a save — several raw events within
//! the debounce window — as one batch. Events the OS lost (its queue
//! overflowed while much else happened in the directory) count as a change
//! of everything watched, never as nothing. This module must never block a tokio
//! worker thread: setting the watch up (resolving the path, scanning a
//! directory for the initial change, registering with the OS) runs on a
//! blocking thread, and afterwards the OS watch and the debouncer run on
//! notify's own threads and only hand changes over through the coalescing
//! queue.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, DebouncedEvent, Debouncer, NoCache, new_debouncer_opt,
};
use tracing::debug;

use super::queue::{ChangeSender, QueueWatcher, change_queue};
use super::{Change, Watcher};
use crate::{BoxFuture, Error, Worker};

/// Configures a [`FileWatcher`].
///
/// ```no_run
/// use std::time::Duration;
/// use steward_worker::{FileWatcher, Watcher};
///
/// # async fn demo() -> Result<(), steward_worker::Error> {
/// // "The config file changed" (notify), surviving atomic-rename saves.
/// let mut config = FileWatcher::builder("/etc/steward/agent.toml").watch_notify().await?;
/// config.next_change().await?; // the initial event
/// // Which entries of a directory changed (strings, relative names).
/// let mut drop_in = FileWatcher::builder("/etc/steward/conf.d")
///     .debounce(Duration::from_millis(250))
///     .watch_strings()
///     .await?;
/// let names: Vec<String> = drop_in.next_change().await?; // initially: every entry
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileWatcherBuilder {
    path: PathBuf,
    debounce: Duration,
    recursive: bool,
}

impl FileWatcherBuilder {
    /// How long to wait for more events before delivering a batch. Events
    /// may be held up to twice this long so that bursts land in one batch.
    /// Default 100 ms.
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// For a directory: also watch everything below it. Default: only the
    /// directory's own entries.
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }

    /// Starts a notify watcher: each change means "the file or directory
    /// changed".
    pub async fn watch_notify(self) -> Result<FileWatcher<()>, Error> {
        FileWatcher::start(self, |_target, _paths| ()).await
    }

    /// Starts a strings watcher: each change lists the changed paths,
    /// relative to the watched directory (for a file: its file name). The
    /// initial change lists what exists now.
    pub async fn watch_strings(self) -> Result<FileWatcher<Vec<String>>, Error> {
        FileWatcher::start(self, |target, paths| {
            paths.iter().filter_map(|p| target.relative(p)).collect()
        })
        .await
    }
}

/// What is being watched, resolved to absolute paths.
#[derive(Debug, Clone)]
struct Target {
    /// The directory the OS watch is on.
    dir: PathBuf,
    /// When watching a single file: its name inside `dir`.
    file: Option<std::ffi::OsString>,
}

impl Target {
    fn resolve(path: &Path) -> Result<Self, Error> {
        let not_watchable =
            |reason: String| Error::msg(format!("cannot watch {}: {reason}", path.display()));
        if path.is_dir() {
            let dir = path
                .canonicalize()
                .map_err(|e| not_watchable(e.to_string()))?;
            return Ok(Self { dir, file: None });
        }
        // A file, or a file that does not exist yet: watch its directory.
        let name = path
            .file_name()
            .ok_or_else(|| not_watchable("the path has no file name".into()))?;
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = parent
            .canonicalize()
            .map_err(|e| not_watchable(format!("its directory is not accessible: {e}")))?;
        Ok(Self {
            dir,
            file: Some(name.to_owned()),
        })
    }

    /// The path relative to the watched directory, if it concerns us.
    fn relative(&self, path: &Path) -> Option<String> {
        let relative = path.strip_prefix(&self.dir).ok()?;
        if relative.as_os_str().is_empty() {
            return None; // the directory itself
        }
        if let Some(file) = &self.file
            && relative.as_os_str() != file.as_os_str()
        {
            return None;
        }
        Some(relative.to_string_lossy().into_owned())
    }

    /// What exists now, as the initial strings change.
    fn current(&self, recursive: bool) -> Vec<String> {
        let mut found = Vec::new();
        if let Some(file) = &self.file {
            if self.dir.join(file).exists() {
                found.push(file.to_string_lossy().into_owned());
            }
            return found;
        }
        let mut pending = vec![self.dir.clone()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if recursive && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(path.clone());
                }
                if let Some(relative) = self.relative(&path) {
                    found.push(relative);
                }
            }
        }
        found.sort_unstable();
        found
    }
}

/// A watcher on a file or directory; see [`FileWatcher::builder`].
///
/// Killing it stops the OS watch at once. An error from the OS watch (the
/// watched directory was deleted, the inotify limit was hit) ends the
/// watcher with that error, after the changes still pending.
pub struct FileWatcher<C: Change> {
    queue: QueueWatcher<C>,
    debouncer: Mutex<Option<Debouncer<RecommendedWatcher, NoCache>>>,
    _change: PhantomData<fn() -> C>,
}

impl<C: Change> std::fmt::Debug for FileWatcher<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher").finish_non_exhaustive()
    }
}

impl FileWatcher<()> {
    /// Configures a watcher on `path`: a directory, or a file (which need
    /// not exist yet, but its directory must).
    pub fn builder(path: impl Into<PathBuf>) -> FileWatcherBuilder {
        FileWatcherBuilder {
            path: path.into(),
            debounce: Duration::from_millis(100),
            recursive: false,
        }
    }
}

impl<C: Change> FileWatcher<C> {
    /// Sets the watch up on a blocking thread: resolving the path and
    /// scanning a directory are synchronous filesystem work, as long as the
    /// directory is big or the disk slow.
    async fn start(
        config: FileWatcherBuilder,
        to_change: fn(&Target, &[PathBuf]) -> C,
    ) -> Result<Self, Error> {
        tokio::task::spawn_blocking(move || Self::start_blocking(config, to_change))
            .await
            .map_err(|error| Error::msg(format!("setting up a file watch failed: {error}")))?
    }

    fn start_blocking(
        config: FileWatcherBuilder,
        to_change: fn(&Target, &[PathBuf]) -> C,
    ) -> Result<Self, Error> {
        let target = Target::resolve(&config.path)?;
        let (sender, queue) = change_queue::<C>();
        // The initial event: the current state, before any OS event.
        let initial: Vec<PathBuf> = target
            .current(config.recursive)
            .into_iter()
            .map(|relative| target.dir.join(relative))
            .collect();
        sender.send(to_change(&target, &initial));

        let mut sender = Some(sender);
        let handler_target = target.clone();
        let recursive = config.recursive;
        let handler = move |result: DebounceEventResult| {
            let Some(live) = &sender else { return };
            match result {
                Ok(events) => {
                    let paths = changed_paths(&handler_target, recursive, events);
                    if !paths.is_empty() {
                        debug!(dir = %handler_target.dir.display(), paths = paths.len(), "file change");
                        live.send(to_change(&handler_target, &paths));
                    }
                }
                Err(errors) => {
                    let Some(sender): Option<ChangeSender<C>> = sender.take() else {
                        return;
                    };
                    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    sender.close(Err(Error::msg(format!(
                        "watching {} failed: {}",
                        handler_target.dir.display(),
                        errors.join("; ")
                    ))));
                }
            }
        };
        let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, NoCache>(
            config.debounce,
            None,
            handler,
            NoCache,
            Default::default(),
        )
        .map_err(|e| Error::msg(format!("cannot watch {}: {e}", target.dir.display())))?;
        let mode = if config.recursive && target.file.is_none() {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        debouncer
            .watch(&target.dir, mode)
            .map_err(|e| Error::msg(format!("cannot watch {}: {e}", target.dir.display())))?;
        Ok(Self {
            queue,
            debouncer: Mutex::new(Some(debouncer)),
            _change: PhantomData,
        })
    }
}

/// Whether an event can mean new content. Reads are not changes: inotify
/// reports every open, and a consumer that reads the file on each change
/// (a config observer) would otherwise wake itself up forever. A close
/// after writing is kept: it is when a write is complete.
/// The watched paths a batch of events changed. A batch that says events
/// were lost (a *rescan*: the OS's event queue overflowed, as it does when
/// much else happens in the watched directory) counts as a change of
/// everything watched: what was lost may be the very change watched for.
fn changed_paths(target: &Target, recursive: bool, events: Vec<DebouncedEvent>) -> Vec<PathBuf> {
    if events.iter().any(|event| event.need_rescan()) {
        debug!(dir = %target.dir.display(), "file events were lost; rescanning");
        return match &target.file {
            // Changed, or gone: either way its watchers must look.
            Some(file) => vec![target.dir.join(file)],
            None => target
                .current(recursive)
                .into_iter()
                .map(|relative| target.dir.join(relative))
                .collect(),
        };
    }
    events
        .into_iter()
        .filter(|event| changes_content(&event.kind))
        .flat_map(|event| event.event.paths)
        .filter(|path| target.relative(path).is_some())
        .collect()
}

fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl<C: Change> Worker for FileWatcher<C> {
    fn kill(&self) {
        // Dropping the debouncer only signals notify's threads; it does not
        // wait for them, so `kill` stays non-blocking.
        drop(
            self.debouncer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.queue.kill();
    }

    fn wait(&self) -> BoxFuture<'_, Result<(), Error>> {
        self.queue.wait()
    }
}

impl<C: Change> Watcher for FileWatcher<C> {
    type Change = C;

    fn next_change(&mut self) -> BoxFuture<'_, Result<C, Error>> {
        self.queue.next_change()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use notify_debouncer_full::notify::Event;
    use notify_debouncer_full::notify::event::{Flag, ModifyKind};

    use super::*;

    fn event(kind: EventKind, paths: &[PathBuf]) -> DebouncedEvent {
        let mut event = Event::new(kind);
        event.paths = paths.to_vec();
        DebouncedEvent::new(event, Instant::now())
    }

    fn rescan() -> DebouncedEvent {
        DebouncedEvent::new(
            Event::new(EventKind::Other).set_flag(Flag::Rescan),
            Instant::now(),
        )
    }

    #[test]
    fn only_the_watched_file_changes_count() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::resolve(&dir.path().join("agent.toml")).unwrap();
        let file = target.dir.join("agent.toml");
        let other = target.dir.join("agent.log");
        let modify = EventKind::Modify(ModifyKind::Any);
        assert_eq!(
            changed_paths(
                &target,
                false,
                vec![event(modify, std::slice::from_ref(&other))]
            ),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            changed_paths(&target, false, vec![event(modify, &[other, file.clone()])]),
            vec![file]
        );
    }

    /// Before: a rescan (events lost in an overflowed queue) has no paths,
    /// so it changed nothing, and a config edit among the lost events was
    /// never seen.
    #[test]
    fn lost_events_count_as_a_change_of_everything_watched() {
        let dir = tempfile::tempdir().unwrap();
        let file = Target::resolve(&dir.path().join("agent.toml")).unwrap();
        assert_eq!(
            changed_paths(&file, false, vec![rescan()]),
            vec![file.dir.join("agent.toml")],
            "a watched file counts as changed, even if it does not exist"
        );
        std::fs::write(dir.path().join("a"), "").unwrap();
        std::fs::write(dir.path().join("b"), "").unwrap();
        let whole = Target::resolve(dir.path()).unwrap();
        let mut paths = changed_paths(&whole, false, vec![rescan()]);
        paths.sort();
        assert_eq!(paths, vec![whole.dir.join("a"), whole.dir.join("b")]);
    }
}
