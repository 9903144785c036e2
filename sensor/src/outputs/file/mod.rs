//! file: Falco alert JSON lines appended to a file, reopened on SIGHUP.
//!
//! logrotate renames the file and sends SIGHUP; lines written before the
//! reopen land in the renamed file, lines after it in the new one, so none
//! is lost. The reopen happens before the next write.
//!
//! mamori usually runs as root, so the file is opened as an attacker who
//! controls the path would hope it is not: with `O_NOFOLLOW` (a symlink
//! planted at the path is refused, not followed to `/etc/shadow`), and only
//! in a directory no other user can write to (unless
//! `allow_writable_dir: true`), checked at every (re)open.
//!
//! A record is one `write` of a whole line. If it fails part-way (a full
//! disk), the file is cut back to where the record started, so the next
//! alert is never glued onto a fragment; if even that fails, the next record
//! starts on a fresh line. Only a record written in full counts as sent. A
//! file that was unlinked (its directory deleted, no SIGHUP) is noticed
//! before each write and the path reopened, so alerts never go to a file
//! nobody can read.

pub mod config;

use std::{
    fs::File,
    io::Write,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use super::{stdout::json_line, Output, OutputError, SendError, SendFuture};
use mamori_rules::alert::Alert;

/// The open file and what it needs to reopen it (moved to the blocking pool
/// for each write).
struct Writer {
    path: PathBuf,
    allow_writable_dir: bool,
    file: Option<File>,
    /// The file does not end in a newline (a torn write could not be cut
    /// back, or another program left it so): the next record starts with one.
    fresh_line: bool,
}

pub struct FileSink {
    /// `None` only while a write is on the blocking pool (or after it
    /// panicked: then the path is opened afresh).
    writer: Option<Writer>,
    path: PathBuf,
    allow_writable_dir: bool,
    reopen: Arc<AtomicBool>,
    buf: Vec<u8>,
}

/// Refuse a parent directory other users may write to: they could swap the
/// file for one of their choosing between two opens.
fn check_dir(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let md = std::fs::metadata(dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "directory {} is group- or world-writable (mode {mode:04o}): another user could \
             replace the file; use a directory only mamori's user can write, or set \
             outputs.file.allow_writable_dir: true",
            dir.display()
        ));
    }
    Ok(())
}

/// Open (create) `path` for appending, safely; also says whether the file
/// ends without a newline.
fn open_safely(path: &Path, allow_writable_dir: bool) -> Result<(File, bool), String> {
    if !allow_writable_dir {
        check_dir(path)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                "it is a symbolic link; mamori does not follow symbolic links for its output \
                 file (O_NOFOLLOW)"
                    .to_string()
            } else {
                e.to_string()
            }
        })?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut last = [0u8; 1];
    let torn = len > 0 && f.read_at(&mut last, len - 1).is_ok() && last[0] != b'\n';
    Ok((f, torn))
}

impl Writer {
    /// Append `line` (one record ending in `\n`) in full, or leave no
    /// fragment of it behind.
    fn append(&mut self, line: &[u8], reopen: bool) -> Result<(), SendError> {
        if reopen {
            self.file = None;
        }
        if let Some(f) = &self.file {
            // Unlinked (its directory deleted, say): whatever is written
            // there is lost, so open the path again.
            if f.metadata().map(|m| m.nlink() == 0).unwrap_or(true) {
                log::warn!(
                    "output file: {} was deleted; reopening the path",
                    self.path.display()
                );
                self.file = None;
            }
        }
        if self.file.is_none() {
            let (f, torn) = open_safely(&self.path, self.allow_writable_dir)
                .map_err(|e| SendError::retry(format!("opening {}: {e}", self.path.display())))?;
            self.file = Some(f);
            self.fresh_line |= torn;
        }
        let f = self.file.as_mut().expect("opened above");
        let fail =
            |e: std::io::Error| SendError::retry(format!("writing {}: {e}", self.path.display()));
        // O_APPEND writes at the end; remember where this record starts.
        let start = f.metadata().map_err(fail)?.len();
        let r = if self.fresh_line {
            let mut v = Vec::with_capacity(line.len() + 1);
            v.push(b'\n');
            v.extend_from_slice(line);
            f.write_all(&v)
        } else {
            f.write_all(line)
        };
        match r {
            Ok(()) => {
                self.fresh_line = false;
                Ok(())
            }
            Err(e) => {
                // Cut the fragment off; if that fails too, start the next
                // record on a line of its own.
                if f.set_len(start).is_err() {
                    self.fresh_line = true;
                }
                Err(fail(e))
            }
        }
    }
}

impl FileSink {
    /// Opens (creates) the file now, so a bad path fails at start-up.
    pub fn new(
        path: PathBuf,
        allow_writable_dir: bool,
        reopen: Arc<AtomicBool>,
    ) -> Result<Self, OutputError> {
        let (f, torn) =
            open_safely(&path, allow_writable_dir).map_err(|msg| OutputError::Open {
                sink: "file",
                path: path.clone(),
                msg,
            })?;
        Ok(FileSink {
            writer: Some(Writer {
                path: path.clone(),
                allow_writable_dir,
                file: Some(f),
                fresh_line: torn,
            }),
            path,
            allow_writable_dir,
            reopen,
            buf: Vec::with_capacity(1024),
        })
    }
}

impl Output for FileSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let reopen = self.reopen.swap(false, Ordering::Relaxed);
            json_line(alert, &mut self.buf);
            let mut w = self.writer.take().unwrap_or_else(|| Writer {
                path: self.path.clone(),
                allow_writable_dir: self.allow_writable_dir,
                file: None,
                fresh_line: false,
            });
            let buf = std::mem::take(&mut self.buf);
            // A file write can block (a slow or full disk): keep it off the
            // outputs thread, as stdout does.
            let (w, buf, r) = tokio::task::spawn_blocking(move || {
                let r = w.append(&buf, reopen);
                (w, buf, r)
            })
            .await
            .map_err(|e| SendError::retry(format!("file writer: {e}")))?;
            self.writer = Some(w);
            self.buf = buf;
            r
        })
    }
}

#[cfg(test)]
mod tests;
