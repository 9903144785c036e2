//! stdout: Falco alert JSON, one object per line, flushed per alert.
//!
//! Written on tokio's blocking pool, so a reader that stops reading the pipe
//! stalls only this sink's queue, never the outputs thread.

pub mod config;

use std::io::Write;

use super::{Output, SendError, SendFuture};
use mamori_rules::alert::Alert;

pub struct StdoutSink {
    buf: Vec<u8>,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {
            buf: Vec::with_capacity(1024),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

/// The alert as one JSON line (the Falco shape, unchanged).
pub fn json_line(a: &Alert, buf: &mut Vec<u8>) {
    buf.clear();
    // Serializing plain strings/maps cannot fail.
    serde_json::to_writer(&mut *buf, a).expect("alert serializes");
    buf.push(b'\n');
}

impl Output for StdoutSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            json_line(alert, &mut self.buf);
            let buf = std::mem::take(&mut self.buf);
            let (buf, r) = tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                let r = out.write_all(&buf).and_then(|()| out.flush());
                (buf, r)
            })
            .await
            .map_err(|e| SendError::retry(format!("stdout writer: {e}")))?;
            self.buf = buf;
            r.map_err(|e| SendError::retry(format!("writing stdout: {e}")))
        })
    }
}
