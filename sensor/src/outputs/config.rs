//! The `outputs:` section of `mamori.yaml`: its own keys (`grace_period`,
//! one key per sink), the options every sink shares (enabled, filters, queue,
//! dedup, retry, rate limit; TLS and HTTP URLs for the sinks that have them),
//! and the validation that hands each sink's folder its own part.
//!
//! Each sink's own keys and checks live next to it (`stdout/config.rs`,
//! `syslog/config.rs`, ...); `sink_struct!` gives every sink's raw struct
//! the shared keys, and `deny_unknown_fields`, in one place.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{
    file::config::{FileConfig, RawFile},
    slack::config::{RawSlack, SlackConfig},
    stdout::config::{RawStdout, StdoutConfig},
    syslog::config::{RawSyslog, SyslogConfig},
    webhook::config::{RawWebhook, WebhookConfig},
};
use crate::config::{
    key_err,
    secret::{Secret, SecretSource},
    ConfigError, Dur,
};
use mamori_rules::alert::Priority;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutputs {
    /// How long shutdown waits for queues to drain.
    pub grace_period: Option<Dur>,
    pub stdout: Option<RawStdout>,
    pub file: Option<RawFile>,
    pub syslog: Option<RawSyslog>,
    pub slack: Option<RawSlack>,
    pub webhook: Option<RawWebhook>,
}

impl RawOutputs {
    /// Defaults filled in, every enabled sink's keys checked.
    pub(crate) fn validate(self) -> Result<OutputsConfig, ConfigError> {
        let stdout = match &self.stdout {
            None => OutputsConfig::default().stdout,
            Some(s) => s.validate()?,
        };
        Ok(OutputsConfig {
            grace_period: self.grace_period.map(|d| d.0).unwrap_or(DEFAULT_GRACE),
            stdout,
            file: enabled(&self.file, RawFile::validate)?,
            syslog: enabled(&self.syslog, RawSyslog::validate)?,
            slack: enabled(&self.slack, RawSlack::validate)?,
            webhook: enabled(&self.webhook, RawWebhook::validate)?,
        })
    }
}

/// A sink's validated config: `None` when its key is absent or it is off.
fn enabled<R, C>(
    raw: &Option<R>,
    validate: impl FnOnce(&R) -> Result<Option<C>, ConfigError>,
) -> Result<Option<C>, ConfigError> {
    raw.as_ref().map_or(Ok(None), validate)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDedup {
    /// Aggregation window; 0 disables.
    pub window: Option<Dur>,
    /// Output fields that, with the rule, identify "the same" alert
    /// (default: all output fields).
    pub fields: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<u32>,
    pub initial_backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Alerts of one rule allowed per `interval`; absent = no limit.
    pub per_rule: Option<u32>,
    pub interval: Option<Dur>,
}

/// Defines a sink's raw config struct: the keys every sink shares, then its own.
macro_rules! sink_struct {
    ($(#[$doc:meta])* $name:ident { $($(#[$m:meta])* $f:ident : $t:ty,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub enabled: Option<bool>,
            pub minimum_priority: Option<String>,
            /// Only these rules (exact names); empty = all.
            pub rules: Option<Vec<String>>,
            /// Only alerts with at least one of these tags; empty = all.
            pub tags: Option<Vec<String>>,
            pub queue_capacity: Option<usize>,
            pub dedup: Option<$crate::outputs::config::RawDedup>,
            pub retry: Option<$crate::outputs::config::RawRetry>,
            pub rate_limit: Option<$crate::outputs::config::RawRateLimit>,
            $($(#[$m])* pub $f: $t,)*
        }
        impl $name {
            fn common(
                &self,
                key: &str,
                default_enabled: bool,
            ) -> Result<(bool, $crate::outputs::config::SinkCommon), $crate::config::ConfigError> {
                $crate::outputs::config::common(
                    key,
                    default_enabled,
                    self.enabled,
                    &self.minimum_priority,
                    &self.rules,
                    &self.tags,
                    self.queue_capacity,
                    &self.dedup,
                    &self.retry,
                    &self.rate_limit,
                )
            }
        }
    };
}
pub(crate) use sink_struct;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM CA bundle to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Name to verify in the server certificate (default: the address host).
    pub server_name: Option<String>,
}

/// Filters, queue, dedup and retry: what every sink has.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkCommon {
    /// Alerts less severe than this are not sent.
    pub minimum_priority: Priority,
    pub rules: Vec<String>,
    pub tags: Vec<String>,
    pub queue_capacity: usize,
    pub dedup: Option<DedupConfig>,
    pub retry: RetryPolicy,
    pub rate_limit: Option<RateLimitConfig>,
}

/// At most `per_rule` alerts of one rule per `interval`; the rest are
/// counted and summarised when the interval ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    pub per_rule: u32,
    pub interval: Duration,
}

impl Default for SinkCommon {
    fn default() -> Self {
        SinkCommon {
            minimum_priority: Priority::Debug,
            rules: vec![],
            tags: vec![],
            queue_capacity: DEFAULT_QUEUE,
            dedup: None,
            retry: RetryPolicy::default(),
            rate_limit: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DedupConfig {
    pub window: Duration,
    /// Empty = all output fields.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

pub const DEFAULT_QUEUE: usize = 10_000;
/// The largest queue a sink may have: a million alerts (each a few KiB at
/// most) is already far more memory than a sensor should hold for one sink.
pub const MAX_QUEUE: usize = 1_000_000;
/// The most attempts per alert (retries back off exponentially to
/// `max_backoff`: more would hold an alert for hours).
pub const MAX_ATTEMPTS: u32 = 100;
/// The largest per-rule rate limit (above it the limit limits nothing).
pub const MAX_PER_RULE: u32 = 1_000_000;
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

#[allow(clippy::too_many_arguments)]
pub(crate) fn common(
    key: &str,
    default_enabled: bool,
    enabled: Option<bool>,
    minimum_priority: &Option<String>,
    rules: &Option<Vec<String>>,
    tags: &Option<Vec<String>>,
    queue_capacity: Option<usize>,
    dedup: &Option<RawDedup>,
    retry: &Option<RawRetry>,
    rate_limit: &Option<RawRateLimit>,
) -> Result<(bool, SinkCommon), ConfigError> {
    let mut c = SinkCommon::default();
    if let Some(p) = minimum_priority {
        c.minimum_priority = p
            .parse()
            .map_err(|e: mamori_rules::alert::UnknownPriority| {
                key_err(format!("{key}.minimum_priority"), e.to_string())
            })?;
    }
    c.rules = rules.clone().unwrap_or_default();
    c.tags = tags.clone().unwrap_or_default();
    if let Some(q) = queue_capacity {
        if !(1..=MAX_QUEUE).contains(&q) {
            return Err(key_err(
                format!("{key}.queue_capacity"),
                format!("must be from 1 to {MAX_QUEUE}"),
            ));
        }
        c.queue_capacity = q;
    }
    if let Some(d) = dedup {
        let window = d.window.map(|d| d.0).unwrap_or(Duration::ZERO);
        if !window.is_zero() {
            c.dedup = Some(DedupConfig {
                window,
                fields: d.fields.clone().unwrap_or_default(),
            });
        }
    }
    if let Some(RawRateLimit {
        per_rule: Some(n),
        interval,
    }) = rate_limit
    {
        if !(1..=MAX_PER_RULE).contains(n) {
            return Err(key_err(
                format!("{key}.rate_limit.per_rule"),
                format!("must be from 1 to {MAX_PER_RULE} (leave it out for no limit)"),
            ));
        }
        let interval = interval.map(|d| d.0).unwrap_or(Duration::from_secs(60));
        if interval.is_zero() {
            return Err(key_err(
                format!("{key}.rate_limit.interval"),
                "must be positive",
            ));
        }
        c.rate_limit = Some(RateLimitConfig {
            per_rule: *n,
            interval,
        });
    }
    if let Some(r) = retry {
        if let Some(n) = r.max_attempts {
            if !(1..=MAX_ATTEMPTS).contains(&n) {
                return Err(key_err(
                    format!("{key}.retry.max_attempts"),
                    format!("must be from 1 to {MAX_ATTEMPTS} (1 = no retries)"),
                ));
            }
            c.retry.max_attempts = n;
        }
        if let Some(d) = r.initial_backoff {
            c.retry.initial_backoff = d.0;
        }
        if let Some(d) = r.max_backoff {
            c.retry.max_backoff = d.0;
        }
        if c.retry.max_backoff < c.retry.initial_backoff {
            return Err(key_err(
                format!("{key}.retry.max_backoff"),
                "is smaller than initial_backoff",
            ));
        }
    }
    Ok((enabled.unwrap_or(default_enabled), c))
}

#[derive(Debug, Clone)]
pub struct OutputsConfig {
    pub grace_period: Duration,
    pub stdout: Option<StdoutConfig>,
    pub file: Option<FileConfig>,
    pub syslog: Option<SyslogConfig>,
    pub slack: Option<SlackConfig>,
    pub webhook: Option<WebhookConfig>,
}

impl Default for OutputsConfig {
    /// Built-in defaults: JSON alerts on stdout, nothing else.
    fn default() -> Self {
        OutputsConfig {
            grace_period: DEFAULT_GRACE,
            stdout: Some(StdoutConfig {
                common: SinkCommon::default(),
            }),
            file: None,
            syslog: None,
            slack: None,
            webhook: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// The `tls:` keys of `key` (cert and key go together).
pub(crate) fn tls(key: &str, raw: &Option<RawTls>) -> Result<TlsConfig, ConfigError> {
    let Some(t) = raw else {
        return Ok(TlsConfig::default());
    };
    if t.cert_file.is_some() != t.key_file.is_some() {
        return Err(key_err(
            format!("{key}.tls"),
            "cert_file and key_file go together",
        ));
    }
    Ok(TlsConfig {
        ca_file: t.ca_file.clone(),
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        server_name: t.server_name.clone(),
    })
}

/// An HTTP timeout at `key`: zero would fail every request at once, so it
/// is refused rather than taken as "no timeout".
pub(crate) fn positive_timeout(key: &str, d: Option<Dur>) -> Result<Option<Duration>, ConfigError> {
    match d {
        Some(Dur(d)) if d.is_zero() => Err(key_err(
            key,
            "must be positive (a zero timeout fails every request)",
        )),
        d => Ok(d.map(|d| d.0)),
    }
}

/// The required, secret HTTP URL at `key` of the `what` output, resolved.
pub(crate) fn required_url(
    key: &str,
    src: &Option<SecretSource>,
    what: &str,
) -> Result<Secret, ConfigError> {
    let src = src
        .as_ref()
        .ok_or_else(|| key_err(key, format!("required when the {what} output is enabled")))?;
    let url = src.resolve(key)?;
    http_url(key, &url)?;
    Ok(url)
}

fn http_url(key: &str, url: &Secret) -> Result<(), ConfigError> {
    let u = url.expose();
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        // Never echo the URL: it is the credential.
        return Err(key_err(
            key,
            "must be an http:// or https:// URL (value redacted)",
        ));
    }
    // A port past 65535, a bad host and the like: refused now, not at the
    // first alert. The parser's message names the part, not the value.
    if let Err(e) = reqwest::Url::parse(u) {
        return Err(key_err(
            key,
            format!("not a valid URL: {e} (value redacted)"),
        ));
    }
    Ok(())
}
