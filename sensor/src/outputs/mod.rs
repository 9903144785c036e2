//! Alert fan-out: one bounded queue and one worker per sink.
//!
//! Detection must never wait on a sink. The pipeline calls
//! [`Outputs::submit`], which only filters, deduplicates and pushes an
//! `Arc<Alert>` onto each interested sink's queue under a short mutex; a full
//! queue drops its *oldest* alert and counts it. The sinks run on their own
//! thread with its own tokio runtime, so a slow TLS handshake, a hung Slack or
//! a full stdout pipe cannot stall the ring-buffer reader, and one sink's
//! trouble does not delay another's queue.
//!
//! Each worker sends one alert at a time and retries failures the sink marks
//! retryable (connection errors, HTTP 429/5xx) with exponential backoff and
//! jitter, honouring `Retry-After`, up to `retry.max_attempts`; give-ups are
//! counted and logged at most once per [`LOG_EVERY`] per sink.
//!
//! Dedup (per sink, opt-in): the first alert of a (rule, key fields) pair is
//! sent at once; repeats within the window are counted instead of sent, and
//! when the window ends one summary alert carries the count
//! (`output_fields["mamori.dedup.count"]`).
//!
//! Rate limit (per sink, opt-in): at most `per_rule` alerts of one rule per
//! interval pass (after dedup); the rest are counted, and when the interval
//! ends one summary alert of that rule carries the number held back
//! (`output_fields["mamori.rate_limit.suppressed"]`).
//!
//! On shutdown the queues are closed, pending dedup summaries are flushed and
//! the workers get `grace_period` to drain; what is left is reported.

pub mod file;
mod http;
pub mod slack;
pub mod stdout;
pub mod syslog;
pub mod webhook;

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    future::Future,
    hash::{Hash, Hasher},
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use crate::config::{DedupConfig, OutputsConfig, RateLimitConfig, RetryPolicy, SinkCommon};
use mamori_rules::alert::Alert;

/// Give-up and error logs of one sink are emitted at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The longest `Retry-After` honoured (a server asking for more is capped).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Dedup keys tracked per sink; past this, alerts bypass dedup (never lost).
pub const MAX_DEDUP_KEYS: usize = 10_000;

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
    #[error("output {sink}: {msg}")]
    Setup { sink: &'static str, msg: String },
    #[error("starting the outputs thread: {0}")]
    Thread(std::io::Error),
}

/// Per-sink counters, readable at any time (for metrics and `-v`).
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    /// Given up on: permanent errors and retries exhausted.
    pub failed: AtomicU64,
    /// Retry attempts made.
    pub retried: AtomicU64,
    /// Dropped from a full queue (oldest first).
    pub dropped: AtomicU64,
    /// Repeats folded into a dedup summary instead of sent.
    pub deduplicated: AtomicU64,
    /// Not for this sink (priority, rule or tag filter).
    pub filtered: AtomicU64,
    /// Held back by the per-rule rate limit (reported in a summary).
    pub rate_limited: AtomicU64,
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

/// Which alerts a sink wants.
#[derive(Debug, Clone)]
struct Filter {
    common: SinkCommon,
}

impl Filter {
    fn wants(&self, a: &Alert) -> bool {
        let c = &self.common;
        // `Priority` orders most severe first.
        a.priority <= c.minimum_priority
            && (c.rules.is_empty() || c.rules.contains(&a.rule))
            && (c.tags.is_empty() || a.tags.iter().any(|t| c.tags.contains(t)))
    }
}

struct DedupEntry {
    last: Arc<Alert>,
    repeats: u64,
    deadline: Instant,
}

struct Dedup {
    cfg: DedupConfig,
    entries: HashMap<u64, DedupEntry>,
}

impl Dedup {
    fn key(&self, a: &Alert) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        a.rule.hash(&mut h);
        if self.cfg.fields.is_empty() {
            for (k, v) in &a.output_fields {
                k.hash(&mut h);
                v.to_string().hash(&mut h);
            }
        } else {
            for k in &self.cfg.fields {
                k.hash(&mut h);
                a.output_fields.get(k).map(|v| v.to_string()).hash(&mut h);
            }
        }
        h.finish()
    }
}

/// The alert that stands for `repeats` suppressed repeats of `last`.
pub fn dedup_summary(last: &Alert, repeats: u64, window: Duration) -> Alert {
    let mut a = last.clone();
    a.output = format!(
        "{} (repeated {repeats} more times in {}s)",
        a.output,
        window.as_secs_f64()
    );
    a.output_fields
        .insert("mamori.dedup.count".into(), repeats.into());
    a.output_fields
        .insert("mamori.dedup.window_s".into(), window.as_secs_f64().into());
    a
}

struct RuleWindow {
    start: Instant,
    passed: u32,
    suppressed: u64,
    last: Option<Arc<Alert>>,
}

struct RateLimit {
    cfg: RateLimitConfig,
    rules: HashMap<String, RuleWindow>,
}

impl RateLimit {
    /// Whether `a` may pass now; if not, it is remembered for the summary.
    fn admit(&mut self, a: &Arc<Alert>, now: Instant) -> Admit {
        let interval = self.cfg.interval;
        let mut summary = None;
        if let Some(w) = self.rules.get_mut(&a.rule) {
            if now >= w.start + interval {
                summary = w
                    .last
                    .take()
                    .map(|l| Arc::new(rate_summary(&l, w.suppressed, interval)));
                *w = RuleWindow {
                    start: now,
                    passed: 0,
                    suppressed: 0,
                    last: None,
                };
            }
        } else if self.rules.len() >= MAX_DEDUP_KEYS {
            return Admit::Pass(None);
        }
        let w = self.rules.entry(a.rule.clone()).or_insert(RuleWindow {
            start: now,
            passed: 0,
            suppressed: 0,
            last: None,
        });
        if w.passed < self.cfg.per_rule {
            w.passed += 1;
            Admit::Pass(summary)
        } else {
            w.suppressed += 1;
            w.last = Some(a.clone());
            Admit::Held(summary)
        }
    }

    /// Summaries for intervals over by `now` (all if `everything`).
    fn flush(&mut self, now: Instant, everything: bool) -> Vec<Arc<Alert>> {
        let interval = self.cfg.interval;
        let mut out = Vec::new();
        self.rules.retain(|_, w| {
            if everything || now >= w.start + interval {
                if let Some(l) = w.last.take() {
                    out.push(Arc::new(rate_summary(&l, w.suppressed, interval)));
                }
                false
            } else {
                true
            }
        });
        out
    }
}

enum Admit {
    /// Send it (and, first, the summary of the rule's previous interval).
    Pass(Option<Arc<Alert>>),
    Held(Option<Arc<Alert>>),
}

/// The alert that reports `n` alerts of a rule held back by the rate limit.
pub fn rate_summary(last: &Alert, n: u64, interval: Duration) -> Alert {
    let mut a = last.clone();
    a.output = format!(
        "{} (rate limit: {n} alerts of this rule held back in {}s; this is the last)",
        a.output,
        interval.as_secs_f64()
    );
    a.output_fields
        .insert("mamori.rate_limit.suppressed".into(), n.into());
    a
}

struct State {
    queue: VecDeque<Arc<Alert>>,
    in_flight: bool,
    closed: bool,
    dedup: Option<Dedup>,
    rate: Option<RateLimit>,
}

/// One sink's queue, filter and counters, shared by `submit` and its worker.
pub struct SinkHandle {
    name: String,
    filter: Filter,
    state: Mutex<State>,
    notify: Notify,
    pub counters: Counters,
    /// Set by [`Outputs::reopen`] (SIGHUP); the file sink reopens its path.
    pub reopen: Arc<AtomicBool>,
}

impl SinkHandle {
    fn new(name: &str, common: SinkCommon) -> Self {
        let dedup = common.dedup.clone().map(|cfg| Dedup {
            cfg,
            entries: HashMap::new(),
        });
        let rate = common.rate_limit.map(|cfg| RateLimit {
            cfg,
            rules: HashMap::new(),
        });
        SinkHandle {
            name: name.into(),
            filter: Filter { common },
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: false,
                closed: false,
                dedup,
                rate,
            }),
            notify: Notify::new(),
            counters: Counters::default(),
            reopen: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking worker must not take detection down with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, st: &mut State, a: Arc<Alert>) {
        if st.closed {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        if st.queue.len() >= self.filter.common.queue_capacity {
            st.queue.pop_front();
            self.counters.dropped.fetch_add(1, Relaxed);
        }
        st.queue.push_back(a);
        self.notify.notify_one();
    }

    fn submit_at(&self, a: &Arc<Alert>, now: Instant) {
        if !self.filter.wants(a) {
            self.counters.filtered.fetch_add(1, Relaxed);
            return;
        }
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(d) = &mut st.dedup {
            let key = d.key(a);
            let window = d.cfg.window;
            let room = d.entries.len() < MAX_DEDUP_KEYS;
            match d.entries.get_mut(&key) {
                Some(e) if now < e.deadline => {
                    e.repeats += 1;
                    e.last = a.clone();
                    self.counters.deduplicated.fetch_add(1, Relaxed);
                    return;
                }
                Some(e) => {
                    let summary = (e.repeats > 0)
                        .then(|| Arc::new(dedup_summary(&e.last, e.repeats, window)));
                    *e = DedupEntry {
                        last: a.clone(),
                        repeats: 0,
                        deadline: now + window,
                    };
                    if let Some(s) = summary {
                        self.push(st, s);
                    }
                }
                None if room => {
                    d.entries.insert(
                        key,
                        DedupEntry {
                            last: a.clone(),
                            repeats: 0,
                            deadline: now + window,
                        },
                    );
                }
                None => {}
            }
        }
        self.rate_limited_push(st, a, now);
    }

    fn rate_limited_push(&self, st: &mut State, a: &Arc<Alert>, now: Instant) {
        let Some(r) = &mut st.rate else {
            self.push(st, a.clone());
            return;
        };
        match r.admit(a, now) {
            Admit::Pass(summary) => {
                if let Some(s) = summary {
                    self.push(st, s);
                }
                self.push(st, a.clone());
            }
            Admit::Held(summary) => {
                self.counters.rate_limited.fetch_add(1, Relaxed);
                if let Some(s) = summary {
                    self.push(st, s);
                }
            }
        }
    }

    /// Emit summaries for windows that ended by `now` (all of them if
    /// `everything`) and forget those keys.
    fn flush_dedup(&self, now: Instant, everything: bool) {
        let mut st = self.lock();
        let st = &mut *st;
        if let Some(r) = &mut st.rate {
            for s in r.flush(now, everything) {
                self.push(st, s);
            }
        }
        let Some(d) = &mut st.dedup else { return };
        let window = d.cfg.window;
        let mut summaries = Vec::new();
        d.entries.retain(|_, e| {
            if everything || now >= e.deadline {
                if e.repeats > 0 {
                    summaries.push(Arc::new(dedup_summary(&e.last, e.repeats, window)));
                }
                false
            } else {
                true
            }
        });
        for s in summaries {
            self.push(st, s);
        }
    }

    pub fn stats(&self) -> SinkStats {
        let st = self.lock();
        let c = &self.counters;
        SinkStats {
            name: self.name.clone(),
            sent: c.sent.load(Relaxed),
            failed: c.failed.load(Relaxed),
            retried: c.retried.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            deduplicated: c.deduplicated.load(Relaxed),
            filtered: c.filtered.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            pending: st.queue.len() as u64 + st.in_flight as u64,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The delay before retry number `attempt` (1 = the first retry).
///
/// Exponential (`initial_backoff * 2^(attempt-1)`, capped at `max_backoff`)
/// with "equal jitter": half fixed, half scaled by `jitter` in `[0, 1)`, so
/// many sensors retrying together spread out but never retry at once. A
/// server's `Retry-After` replaces the computed delay (capped at
/// [`MAX_RETRY_AFTER`]).
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    if let Some(ra) = retry_after {
        return ra.min(MAX_RETRY_AFTER);
    }
    let exp = attempt.saturating_sub(1).min(30);
    let base = policy
        .initial_backoff
        .saturating_mul(1u32 << exp)
        .min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// xorshift64*: jitter only, no need for a cryptographic generator.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }
    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Logs at most once per [`LOG_EVERY`], saying how many were held back.
struct RateLimitedLog {
    last: Option<tokio::time::Instant>,
    held: u64,
}

impl RateLimitedLog {
    fn log(&mut self, sink: &str, msg: &str) {
        let now = tokio::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => self.held += 1,
            _ => {
                if self.held > 0 {
                    log::warn!(
                        "output {sink}: {msg} ({} more failures in the last {}s)",
                        self.held,
                        LOG_EVERY.as_secs()
                    );
                } else {
                    log::warn!("output {sink}: {msg}");
                }
                self.last = Some(now);
                self.held = 0;
            }
        }
    }
}

/// Deliver one alert with retries; returns whether it was delivered.
async fn deliver(
    sink: &mut dyn Output,
    h: &SinkHandle,
    alert: &Alert,
    jitter: &mut Jitter,
    log: &mut RateLimitedLog,
) -> bool {
    let policy = h.filter.common.retry;
    let mut attempt = 1u32;
    loop {
        match sink.send(alert).await {
            Ok(()) => {
                h.counters.sent.fetch_add(1, Relaxed);
                return true;
            }
            Err(e) if e.retryable && attempt < policy.max_attempts => {
                h.counters.retried.fetch_add(1, Relaxed);
                let d = backoff_delay(&policy, attempt, e.retry_after, jitter.next());
                log::debug!(
                    "output {}: attempt {attempt} failed ({e}); retrying in {d:?}",
                    h.name
                );
                tokio::time::sleep(d).await;
                attempt += 1;
            }
            Err(e) => {
                h.counters.failed.fetch_add(1, Relaxed);
                log.log(
                    &h.name,
                    &format!(
                        "gave up on an alert ({}) after {attempt} attempt(s): {e}",
                        alert.rule
                    ),
                );
                return false;
            }
        }
    }
}

async fn worker(mut sink: Box<dyn Output>, h: Arc<SinkHandle>) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (Arc::as_ptr(&h) as u64);
    let mut jitter = Jitter::new(seed);
    let mut log = RateLimitedLog {
        last: None,
        held: 0,
    };
    loop {
        let next = {
            let mut st = h.lock();
            match st.queue.pop_front() {
                Some(a) => {
                    st.in_flight = true;
                    Some(a)
                }
                None if st.closed => return,
                None => None,
            }
        };
        match next {
            Some(a) => {
                deliver(sink.as_mut(), &h, &a, &mut jitter, &mut log).await;
                h.lock().in_flight = false;
            }
            None => h.notify.notified().await,
        }
    }
}

/// Flush dedup windows as they end.
async fn dedup_ticker(handles: Vec<Arc<SinkHandle>>) {
    let period = handles
        .iter()
        .flat_map(|h| {
            let c = &h.filter.common;
            [
                c.dedup.as_ref().map(|d| d.window),
                c.rate_limit.map(|r| r.interval),
            ]
        })
        .flatten()
        .min()
        .map(|w| (w / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
    let Some(period) = period else { return };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for h in &handles {
            h.flush_dedup(now, false);
        }
    }
}

/// Losses are counted at once, and said on stderr at most once per
/// [`LOG_EVERY`] per sink, so a flood of drops cannot flood the log.
async fn loss_watch(handles: Vec<Arc<SinkHandle>>) {
    let mut seen: Vec<(u64, u64)> = vec![(0, 0); handles.len()];
    let mut tick = tokio::time::interval(LOG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (h, (d0, f0)) in handles.iter().zip(seen.iter_mut()) {
            let d = h.counters.dropped.load(Relaxed);
            let f = h.counters.failed.load(Relaxed);
            if d > *d0 {
                log::warn!(
                    "output {}: {} alerts dropped (queue of {} full) in the last {}s",
                    h.name,
                    d - *d0,
                    h.filter.common.queue_capacity,
                    LOG_EVERY.as_secs()
                );
            }
            if f > *f0 {
                log::warn!(
                    "output {}: gave up on {} alerts in the last {}s",
                    h.name,
                    f - *f0,
                    LOG_EVERY.as_secs()
                );
            }
            (*d0, *f0) = (d, f);
        }
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
                sink: Box::new(file::FileSink::new(c.path.clone(), flag.clone())?),
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
                    let ticker = tokio::spawn(dedup_ticker(ticker_handles));
                    let watch = tokio::spawn(loss_watch(watch_handles));
                    let mut tasks = tokio::task::JoinSet::new();
                    for (sink, h) in work {
                        tasks.spawn(worker(sink, h));
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

/// Replace characters that could forge records or drive a terminal.
///
/// C0 controls (newline, ESC...), DEL, C1 controls (incl. NEL), the Unicode
/// line/paragraph separators and bidi overrides become visible `\xNN` /
/// `\u{NNNN}` text. Everything else passes through.
pub fn neutralize(s: &str) -> std::borrow::Cow<'_, str> {
    fn bad(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cut `s` to at most `max` bytes on a char boundary, adding `marker` (which
/// counts toward `max`) when something was cut.
pub fn truncate_with_marker<'a>(s: &'a str, max: usize, marker: &str) -> std::borrow::Cow<'a, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{marker}", &s[..end]))
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

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        assert_eq!(backoff_delay(&p, 1, None, 0.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(&p, 1, None, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(&p, 3, None, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(&p, 9, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff_delay(&p, 40, None, 0.0), Duration::from_secs(1));
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(9999)), 0.3),
            MAX_RETRY_AFTER
        );
        let mut j = Jitter::new(42);
        for _ in 0..1000 {
            let x = j.next();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn filters_by_priority_rule_and_tag() {
        let mut c = SinkCommon {
            minimum_priority: Priority::Warning,
            ..Default::default()
        };
        let f = Filter { common: c.clone() };
        assert!(f.wants(&alert("r", Priority::Critical, "x")));
        assert!(f.wants(&alert("r", Priority::Warning, "x")));
        assert!(!f.wants(&alert("r", Priority::Notice, "x")));
        c.rules = vec!["r".into()];
        c.tags = vec!["network".into(), "filesystem".into()];
        let f = Filter { common: c.clone() };
        assert!(f.wants(&alert("r", Priority::Error, "x")));
        assert!(!f.wants(&alert("other", Priority::Error, "x")));
        c.tags = vec!["network".into()];
        assert!(!Filter { common: c }.wants(&alert("r", Priority::Error, "x")));
    }

    fn handle(cap: usize, dedup: Option<DedupConfig>) -> SinkHandle {
        SinkHandle::new(
            "t",
            SinkCommon {
                queue_capacity: cap,
                dedup,
                ..Default::default()
            },
        )
    }

    #[test]
    fn full_queue_drops_oldest_and_counts() {
        let h = handle(3, None);
        let now = Instant::now();
        for i in 0..10 {
            h.submit_at(
                &Arc::new(alert(&format!("r{i}"), Priority::Error, "x")),
                now,
            );
        }
        let st = h.lock();
        let rules: Vec<_> = st.queue.iter().map(|a| a.rule.clone()).collect();
        assert_eq!(rules, ["r7", "r8", "r9"]);
        drop(st);
        assert_eq!(h.stats().dropped, 7);
        assert_eq!(h.stats().pending, 3);
    }

    #[test]
    fn dedup_sends_first_then_one_summary_with_the_count() {
        let window = Duration::from_secs(10);
        let h = handle(
            100,
            Some(DedupConfig {
                window,
                fields: vec!["fd.name".into()],
            }),
        );
        let t0 = Instant::now();
        let a = Arc::new(alert("r", Priority::Error, "x"));
        let mut other = alert("r", Priority::Error, "y");
        other
            .output_fields
            .insert("fd.name".into(), "/etc/passwd".into());
        let other = Arc::new(other);
        for i in 0..5 {
            h.submit_at(&a, t0 + Duration::from_secs(i));
        }
        h.submit_at(&other, t0 + Duration::from_secs(1));
        assert_eq!(h.lock().queue.len(), 2, "first of each key goes at once");
        assert_eq!(h.stats().deduplicated, 4);
        h.flush_dedup(t0 + Duration::from_secs(9), false);
        assert_eq!(h.lock().queue.len(), 2, "window not over");
        h.flush_dedup(t0 + Duration::from_secs(11), false);
        let st = h.lock();
        assert_eq!(st.queue.len(), 3, "one summary for the repeated key only");
        let s = &st.queue[2];
        assert_eq!(s.output_fields["mamori.dedup.count"], 4);
        assert!(
            s.output.ends_with("(repeated 4 more times in 10s)"),
            "{}",
            s.output
        );
        drop(st);
        // After the window, the same alert goes out again at once.
        h.submit_at(&a, t0 + Duration::from_secs(12));
        assert_eq!(h.lock().queue.len(), 4);
    }

    #[test]
    fn rate_limit_passes_n_per_rule_then_summarises() {
        let h = SinkHandle::new(
            "t",
            SinkCommon {
                rate_limit: Some(RateLimitConfig {
                    per_rule: 3,
                    interval: Duration::from_secs(60),
                }),
                ..Default::default()
            },
        );
        let t0 = Instant::now();
        for i in 0..10 {
            h.submit_at(
                &Arc::new(alert("noisy", Priority::Error, &format!("n{i}"))),
                t0 + Duration::from_secs(i),
            );
        }
        h.submit_at(&Arc::new(alert("quiet", Priority::Error, "q")), t0);
        let outs = |h: &SinkHandle| -> Vec<String> {
            h.lock().queue.iter().map(|a| a.output.clone()).collect()
        };
        assert_eq!(outs(&h), ["n0", "n1", "n2", "q"]);
        assert_eq!(h.stats().rate_limited, 7);
        h.flush_dedup(t0 + Duration::from_secs(59), false);
        assert_eq!(outs(&h).len(), 4, "interval not over");
        h.flush_dedup(t0 + Duration::from_secs(60), false);
        let q = outs(&h);
        assert_eq!(q.len(), 5, "{q:?}");
        assert!(
            q[4].starts_with("n9 (rate limit: 7 alerts of this rule held back in 60s"),
            "{q:?}"
        );
        assert_eq!(
            h.lock().queue[4].output_fields["mamori.rate_limit.suppressed"],
            7
        );
        // A new interval: passes again.
        h.submit_at(
            &Arc::new(alert("noisy", Priority::Error, "again")),
            t0 + Duration::from_secs(61),
        );
        assert_eq!(outs(&h).last().unwrap(), "again");
    }

    #[test]
    fn neutralize_makes_controls_visible() {
        assert_eq!(neutralize("plain ü"), "plain ü");
        assert_eq!(
            neutralize("a\nb\x1b[31mc\u{2028}\u{202e}"),
            "a\\x0ab\\x1b[31mc\\u{2028}\\u{202e}"
        );
        assert_eq!(truncate_with_marker("héllo world", 7, "…"), "hél…");
        assert_eq!(truncate_with_marker("héllo world", 6, "…"), "hé…");
        assert_eq!(truncate_with_marker("héllo world", 5, "…"), "h…");
        assert_eq!(truncate_with_marker("short", 7, "…"), "short");
    }

    struct Flaky {
        script: Vec<Result<(), SendError>>,
        calls: Arc<AtomicU64>,
    }

    impl Output for Flaky {
        fn send<'a>(&'a mut self, _a: &'a Alert) -> SendFuture<'a> {
            self.calls.fetch_add(1, Relaxed);
            let r = if self.script.is_empty() {
                Ok(())
            } else {
                self.script.remove(0)
            };
            Box::pin(async move { r })
        }
    }

    /// Retries on the paused tokio clock: the delays are exactly the backoff
    /// schedule, `Retry-After` wins, and exhausted retries count as failed.
    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_schedule_on_a_fake_clock() {
        let retry = RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        };
        let h = SinkHandle::new(
            "flaky",
            SinkCommon {
                retry,
                ..Default::default()
            },
        );
        let calls = Arc::new(AtomicU64::new(0));
        let mut sink = Flaky {
            script: vec![
                Err(SendError {
                    msg: "429".into(),
                    retryable: true,
                    retry_after: Some(Duration::from_secs(7)),
                }),
                Err(SendError::retry("503")),
            ],
            calls: calls.clone(),
        };
        let mut j = Jitter::new(1);
        let mut log = RateLimitedLog {
            last: None,
            held: 0,
        };
        let t0 = tokio::time::Instant::now();
        let a = alert("r", Priority::Error, "x");
        assert!(deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        let waited = t0.elapsed();
        // 7 s Retry-After, then the second retry's jittered 2 s (1..2 s).
        assert!(
            waited >= Duration::from_secs(8) && waited <= Duration::from_secs(9),
            "{waited:?}"
        );
        assert_eq!(calls.load(Relaxed), 3);
        let s = h.stats();
        assert_eq!((s.sent, s.retried, s.failed), (1, 2, 0));

        // Always 500: gives up after max_attempts, counted once.
        sink.script = vec![Err(SendError::retry("500")); 10];
        assert!(!deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        let s = h.stats();
        assert_eq!((s.sent, s.retried, s.failed), (1, 4, 1));
        // Permanent errors are not retried.
        sink.script = vec![Err(SendError::permanent("400"))];
        assert!(!deliver(&mut sink, &h, &a, &mut j, &mut log).await);
        assert_eq!(h.stats().failed, 2);
        assert_eq!(h.stats().retried, 4);
    }
}
