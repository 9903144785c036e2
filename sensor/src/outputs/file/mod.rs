//! file: Falco alert JSON lines appended to a file, reopened on SIGHUP.
//!
//! logrotate renames the file and sends SIGHUP; lines written before the
//! reopen land in the renamed file (every line is flushed), lines after it in
//! the new one, so none is lost. The reopen happens before the next write.

pub mod config;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use tokio::io::AsyncWriteExt;

use super::{stdout::json_line, Output, OutputError, SendError, SendFuture};
use mamori_rules::alert::Alert;

pub struct FileSink {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    reopen: Arc<AtomicBool>,
    buf: Vec<u8>,
}

fn open_std(path: &PathBuf) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl FileSink {
    /// Opens (creates) the file now, so a bad path fails at start-up.
    pub fn new(path: PathBuf, reopen: Arc<AtomicBool>) -> Result<Self, OutputError> {
        let f = open_std(&path).map_err(|e| OutputError::File {
            sink: "file",
            path: path.clone(),
            msg: e.to_string(),
        })?;
        Ok(FileSink {
            path,
            file: Some(tokio::fs::File::from_std(f)),
            reopen,
            buf: Vec::with_capacity(1024),
        })
    }
}

impl Output for FileSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            if self.reopen.swap(false, Ordering::Relaxed) {
                if let Some(mut old) = self.file.take() {
                    let _ = old.flush().await;
                }
            }
            if self.file.is_none() {
                let f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .await
                    .map_err(|e| {
                        SendError::retry(format!("opening {}: {e}", self.path.display()))
                    })?;
                self.file = Some(f);
            }
            json_line(alert, &mut self.buf);
            let f = self.file.as_mut().expect("opened above");
            let r = async {
                f.write_all(&self.buf).await?;
                f.flush().await
            }
            .await;
            r.map_err(|e| {
                // Reopen on the next attempt (the file may have been removed).
                self.file = None;
                SendError::retry(format!("writing {}: {e}", self.path.display()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::alert;
    use mamori_rules::alert::Priority;

    #[tokio::test]
    async fn reopen_after_rotation_loses_no_line() {
        let dir = std::env::temp_dir().join(format!("mamori-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let _ = std::fs::remove_file(&path);
        let flag = Arc::new(AtomicBool::new(false));
        let mut s = FileSink::new(path.clone(), flag.clone()).unwrap();
        s.send(&alert("one", Priority::Error, "x")).await.unwrap();
        std::fs::rename(&path, dir.join("alerts.jsonl.1")).unwrap();
        s.send(&alert("two", Priority::Error, "x")).await.unwrap();
        flag.store(true, Ordering::Relaxed); // SIGHUP
        s.send(&alert("three", Priority::Error, "x")).await.unwrap();
        let old = std::fs::read_to_string(dir.join("alerts.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let rules = |t: &str| -> Vec<String> {
            t.lines()
                .map(|l| serde_json::from_str::<Alert>(l).unwrap().rule)
                .collect()
        };
        assert_eq!(rules(&old), ["one", "two"]);
        assert_eq!(rules(&new), ["three"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
