//! The file watch behind automatic reloads (inotify through `notify`).
//!
//! Directories are watched, not files: an editor saves by renaming a new
//! file over the old one, and a Kubernetes ConfigMap volume updates by
//! swapping its `..data` symlink to a new timestamped directory, so the
//! loaded file's inode never changes. A watch on the directory (the rules
//! directory itself, or the parent of a rules or config file) sees all of
//! these as a create/rename/modify in that directory. Any such event asks
//! for a reload; the reload thread debounces them and skips a set whose text
//! did not change, so spurious events cost a read, never a swap.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};

use super::Cause;

/// The directories to watch for `rules` paths and the config file.
pub fn dirs(rules: &[PathBuf], config: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let files = rules.iter().map(PathBuf::as_path).chain(config);
    for p in files {
        let dir = if p.is_dir() {
            p.to_path_buf()
        } else {
            match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            }
        };
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// Watch `dirs` (not recursively); each change sends [`Cause::Files`].
/// Reads (access events, e.g. the reload reading the files) are ignored.
pub fn watch(
    dirs: &[PathBuf],
    tx: mpsc::Sender<Cause>,
) -> anyhow::Result<Option<notify::RecommendedWatcher>> {
    if dirs.is_empty() {
        return Ok(None);
    }
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if !matches!(ev.kind, EventKind::Access(_)) => {
            let _ = tx.send(Cause::Files);
        }
        Ok(_) => {}
        Err(e) => log::warn!("rule file watch: {e}"),
    })
    .context("starting the rule file watch (inotify)")?;
    for d in dirs {
        w.watch(d, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {} for rule/config changes", d.display()))?;
    }
    Ok(Some(w))
}
