//! Watching the input files for replacement: inotify on their directories (editors,
//! deploy tools and `geoipupdate` replace files by renaming), asking the kernel only for the
//! events that end a change.
//!
//! A directory watch with every event kind (what general file-watching libraries ask for)
//! wakes the process on each `open` and each `write` of *any* file in the directory: a log
//! file or a benchmark's output written beside the feed costs a wake-up per write, which on
//! a busy nameserver is measurable CPU (see benches/README.md). Here the kernel reports only
//!
//! * `CLOSE_WRITE`: a file opened for writing was closed (written in place, `cp`);
//! * `MOVED_TO` / `MOVED_FROM`: a file was renamed into or out of the directory;
//! * `DELETE`: a file was removed;
//! * `ATTRIB`: metadata changed (`touch`, `chmod`, a new hard link count);
//! * and, always, `Q_OVERFLOW` when the kernel's queue overflowed (then every input is
//!   taken as changed).
//!
//! Not seen: a file created and never written (a new symlink, a hard link), or a file kept
//! open while it is rewritten. SIGHUP reloads everything for those.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};

/// The events that mean a file's new content is complete or it was replaced.
const MASK: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::DELETE)
    .union(WatchMask::ATTRIB)
    .union(WatchMask::ONLYDIR);

/// A running watch; dropping it stops the watch.
#[derive(Debug)]
pub struct FileWatch {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches the directories of `files` (each file with a tag) and calls `changed` with the
/// tags of the files an event names, or-ed together; with every tag when events were lost.
/// Runs as a task on the current tokio runtime.
///
/// Matched by file name: two files of the same name in different directories both count
/// as changed when either does.
///
/// Errors: no runtime, no inotify instance, or no directory could be watched (a directory
/// that cannot be watched while others can is logged and left out).
pub fn watch(
    files: &[(u8, PathBuf)],
    mut changed: impl FnMut(u8) + Send + 'static,
) -> std::io::Result<FileWatch> {
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let inotify = Inotify::init()?;
    let names: Vec<(u8, OsString)> = files
        .iter()
        .filter_map(|(tag, path)| Some((*tag, path.file_name()?.to_owned())))
        .collect();
    let all = names.iter().fold(0, |acc, (tag, _)| acc | tag);
    let mut dirs: Vec<PathBuf> = files.iter().map(|(_, path)| directory_of(path)).collect();
    dirs.sort();
    dirs.dedup();
    let mut watched = 0;
    let mut last_error = None;
    for dir in &dirs {
        match inotify.watches().add(dir, MASK) {
            Ok(_) => watched += 1,
            Err(e) => {
                tracing::warn!("cannot watch {}: {e}; reload with SIGHUP", dir.display());
                last_error = Some(e);
            }
        }
    }
    if watched == 0 {
        return Err(last_error.unwrap_or_else(|| std::io::Error::other("nothing to watch")));
    }
    let _entered = runtime.enter();
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    let task = runtime.spawn(async move {
        while let Some(event) = events.next().await {
            let tags = match event {
                Ok(e) if e.mask.contains(EventMask::Q_OVERFLOW) => all,
                Ok(e) => e.name.map_or(0, |name| {
                    names
                        .iter()
                        .filter(|(_, n)| *n == name)
                        .fold(0, |acc, (tag, _)| acc | tag)
                }),
                Err(e) => {
                    tracing::warn!("file watch failed: {e}; reload with SIGHUP");
                    return;
                }
            };
            if tags != 0 {
                changed(tags);
            }
        }
    });
    Ok(FileWatch { task })
}

/// The directory a file is in ("." for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    async fn next(rx: &mut mpsc::UnboundedReceiver<u8>) -> Option<u8> {
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn sees_renames_and_closed_writes_but_not_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let feed = dir.path().join("feed.json");
        let config = dir.path().join("zone.toml");
        std::fs::write(&feed, "a").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(&[(1, feed.clone()), (2, config.clone())], move |t| {
            let _ = tx.send(t);
        })
        .unwrap();

        // Writes to another file in the same directory: opened, written, closed. Only its
        // close is an event, and it names a file nobody watches.
        let mut other = std::fs::File::create(dir.path().join("dnsperf.out")).unwrap();
        for _ in 0..100 {
            std::io::Write::write_all(&mut other, b"line\n").unwrap();
        }
        drop(other);
        // Rename into place.
        std::fs::write(dir.path().join("feed.tmp"), "b").unwrap();
        std::fs::rename(dir.path().join("feed.tmp"), &feed).unwrap();
        assert_eq!(next(&mut rx).await, Some(1));
        // Written in place.
        std::fs::write(&config, "c").unwrap();
        assert_eq!(next(&mut rx).await, Some(2));
        // Removed.
        std::fs::remove_file(&feed).unwrap();
        assert_eq!(next(&mut rx).await, Some(1));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_watched_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone").join("feed.json");
        assert!(watch(&[(1, missing)], |_| {}).is_err());
    }
}
