//! Alert fan-out: one bounded queue and one worker per sink.
//!
//! Detection must never wait on a sink. The pipeline calls
//! [`Outputs::submit`], which only filters, deduplicates and pushes an
//! `Arc<Alert>` onto each interested sink's queue ([`queue`]) under a short
//! mutex; a full queue drops its least severe alert (the oldest of those) and
//! counts it. The sinks run
//! on their own thread with its own tokio runtime (`worker.rs`), so a slow TLS
//! handshake, a hung Slack or a full stdout pipe cannot stall the ring-buffer
//! reader, and one sink's trouble does not delay another's queue.
//!
//! In front of every sink, as Vector arranges it: `dedup.rs` and
//! `rate_limit.rs` (opt-in, per sink) decide what is queued; `retry.rs`
//! retries what failed; `text.rs` makes alert text safe for the sinks. Each sink is one folder holding the sink and its own config
//! (`stdout/`, `file/`, `syslog/`, `slack/`, `webhook/`); [`config`] holds the
//! options they share and the `outputs:` section itself.
//!
//! On shutdown the queues are closed, pending dedup summaries are flushed and
//! the workers get `grace_period` to drain; what is left is reported.

pub mod config;
mod dedup;
pub mod file;
mod http;
pub mod queue;
mod rate_limit;
mod retry;
pub mod slack;
pub mod stdout;
pub mod syslog;
pub mod text;
pub mod webhook;
mod worker;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use config::{OutputsConfig, SinkCommon};
use mamori_rules::alert::Alert;
use queue::SinkHandle;

/// The future a sink's `send` returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// A sink: delivers one alert. Called by one worker, never concurrently.
pub trait Output: Send {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a>;
}

/// A failed delivery. `retryable` failures are retried with backoff.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct SendError {
    pub msg: String,
    pub retryable: bool,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl SendError {
    pub fn retry(msg: impl Into<String>) -> Self {
        SendError {
            msg: msg.into(),
            retryable: true,
            retry_after: None,
        }
    }
    pub fn permanent(msg: impl Into<String>) -> Self {
        SendError {
            msg: msg.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// A sink could not be set up (bad CA file, client build failure...).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output {sink}: reading {path}: {msg}")]
    File {
        sink: &'static str,
        path: std::path::PathBuf,
        msg: String,
    },
    #[error("output {sink}: opening {path}: {msg}")]
    Open {
        sink: &'static str,
        path: std::path::PathBuf,
        msg: String,
    },
    #[error("output {sink}: {msg}")]
    Setup { sink: &'static str, msg: String },
    #[error("starting the outputs thread: {0}")]
    Thread(std::io::Error),
}

/// A snapshot of one sink's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub dropped: u64,
    pub deduplicated: u64,
    pub filtered: u64,
    pub rate_limited: u64,
    /// Alerts still queued (or in flight) when the snapshot was taken.
    pub pending: u64,
}

impl fmt::Display for SinkStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: sent={} failed={} retried={} dropped={} deduplicated={} rate_limited={} filtered={} left={}",
            self.name,
            self.sent,
            self.failed,
            self.retried,
            self.dropped,
            self.deduplicated,
            self.rate_limited,
            self.filtered,
            self.pending
        )
    }
}

/// A sink to start: its name, filters/queue/retry, and the sink itself.
pub struct SinkSpec {
    pub name: String,
    pub common: SinkCommon,
    pub sink: Box<dyn Output>,
    /// Set for sinks that reopen on SIGHUP (the file sink's flag).
    pub reopen: Option<Arc<AtomicBool>>,
}

/// What shutdown left behind.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    pub sinks: Vec<SinkStats>,
    /// The grace period ran out before every queue drained.
    pub timed_out: bool,
}

impl ShutdownReport {
    pub fn left(&self) -> u64 {
        self.sinks.iter().map(|s| s.pending).sum()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.sinks {
            writeln!(f, "output {s}")?;
        }
        Ok(())
    }
}

/// Triggers a reopen of the file outputs (cloneable, `'static`).
#[derive(Debug, Clone)]
pub struct Reopener(Vec<Arc<AtomicBool>>);

impl Reopener {
    pub fn reopen(&self) {
        for f in &self.0 {
            f.store(true, Relaxed);
        }
    }
}

/// The running fan-out.
pub struct Outputs {
    handles: Vec<Arc<SinkHandle>>,
    thread: Option<std::thread::JoinHandle<bool>>,
    stop: Option<tokio::sync::oneshot::Sender<Duration>>,
    grace: Duration,
}

impl Outputs {
    /// Build the configured sinks and start them.
    pub fn start(cfg: &OutputsConfig) -> Result<Outputs, OutputError> {
        let mut specs = Vec::new();
        if let Some(c) = &cfg.stdout {
            specs.push(SinkSpec {
                name: "stdout".into(),
                common: c.common.clone(),
                sink: Box::new(stdout::StdoutSink::new()),
                reopen: None,
            });
        }
        if let Some(c) = &cfg.file {
            let flag = Arc::new(AtomicBool::new(false));
            specs.push(SinkSpec {
                name: "file".into(),
                common: c.common.clone(),
                sink: Box::new(file::FileSink::new(
                    c.path.clone(),
                    c.allow_writable_dir,
                    flag.clone(),
                )?),
                reopen: Some(flag),
            });
        }
        if let Some(c) = &cfg.syslog {
            specs.push(SinkSpec {
                name: "syslog".into(),
                common: c.common.clone(),
                sink: Box::new(syslog::SyslogSink::new(c)?),
                reopen: None,
            });
        }
        if let Some(c) = &cfg.slack {
            specs.push(SinkSpec {
                name: "slack".into(),
                common: c.common.clone(),
                sink: Box::new(slack::SlackSink::new(c)?),
                reopen: None,
            });
        }
        if let Some(c) = &cfg.webhook {
            specs.push(SinkSpec {
                name: "webhook".into(),
                common: c.common.clone(),
                sink: Box::new(webhook::WebhookSink::new(c)?),
                reopen: None,
            });
        }
        Self::start_sinks(specs, cfg.grace_period)
    }

    /// Start the given sinks (tests plug in their own).
    pub fn start_sinks(specs: Vec<SinkSpec>, grace: Duration) -> Result<Outputs, OutputError> {
        let mut handles = Vec::new();
        let mut work = Vec::new();
        for s in specs {
            let mut h = SinkHandle::new(&s.name, s.common);
            if let Some(flag) = s.reopen {
                h.reopen = flag;
            }
            let h = Arc::new(h);
            handles.push(h.clone());
            work.push((s.sink, h));
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Duration>();
        let ticker_handles = handles.clone();
        let watch_handles = handles.clone();
        let thread = std::thread::Builder::new()
            .name("mamori-outputs".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        log::error!("outputs: cannot start a runtime: {e}");
                        return true;
                    }
                };
                let timed_out = rt.block_on(async move {
                    let ticker = tokio::spawn(worker::dedup_ticker(ticker_handles));
                    let watch = tokio::spawn(worker::loss_watch(watch_handles));
                    let mut tasks = tokio::task::JoinSet::new();
                    for (sink, h) in work {
                        tasks.spawn(worker::worker(sink, h));
                    }
                    let grace = stop_rx.await.unwrap_or(Duration::ZERO);
                    ticker.abort();
                    watch.abort();
                    let drained = tokio::time::timeout(grace, async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    tasks.abort_all();
                    drained.is_err()
                });
                rt.shutdown_timeout(Duration::from_millis(100));
                timed_out
            })
            .map_err(OutputError::Thread)?;
        Ok(Outputs {
            handles,
            thread: Some(thread),
            stop: Some(stop_tx),
            grace,
        })
    }

    /// Hand an alert to every sink that wants it. Never blocks on a sink.
    pub fn submit(&self, alert: &Alert) {
        let a = Arc::new(alert.clone());
        let now = Instant::now();
        for h in &self.handles {
            h.submit_at(&a, now);
        }
    }

    /// Ask file sinks to reopen their path (SIGHUP, after logrotate).
    pub fn reopen(&self) {
        self.reopener().reopen();
    }

    /// A handle a signal task can keep to trigger [`Outputs::reopen`].
    pub fn reopener(&self) -> Reopener {
        Reopener(self.handles.iter().map(|h| h.reopen.clone()).collect())
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.handles.iter().map(|h| h.stats()).collect()
    }

    pub fn handles(&self) -> &[Arc<SinkHandle>] {
        &self.handles
    }

    /// Close the queues, flush dedup summaries, and give the sinks the
    /// grace period to drain. Blocks the calling thread for at most about
    /// the grace period.
    pub fn shutdown(mut self) -> ShutdownReport {
        let now = Instant::now();
        for h in &self.handles {
            h.flush_dedup(now, true);
            h.lock().closed = true;
            h.notify.notify_one();
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(self.grace);
        }
        let timed_out = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or(true))
            .unwrap_or(false);
        ShutdownReport {
            sinks: self.stats(),
            timed_out,
        }
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            for h in &self.handles {
                h.lock().closed = true;
                h.notify.notify_one();
            }
            let _ = tx.send(Duration::ZERO);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mamori_rules::alert::Priority;

    pub fn alert(rule: &str, prio: Priority, output: &str) -> Alert {
        let mut f = serde_json::Map::new();
        f.insert("proc.name".into(), "cat".into());
        f.insert("fd.name".into(), "/etc/shadow".into());
        Alert {
            time: "2026-11-29T19:20:06.844531968Z".into(),
            rule: rule.into(),
            priority: prio,
            output: output.into(),
            output_fields: f,
            source: "syscall".into(),
            tags: vec!["maturity_stable".into(), "filesystem".into()],
            hostname: "node-1".into(),
        }
    }
}
