//! `mamori.yaml`: the sensor's configuration, in two stages.
//!
//! 1. **Raw**: the YAML file is read into a JSON value tree, overrides are
//!    applied to that tree, and the tree is deserialized into `Raw*` structs
//!    that reject unknown keys (`deny_unknown_fields`). Errors name the full
//!    key path (`outputs.syslog.adress: unknown field ...`).
//! 2. **Validated**: [`Config`] — defaults filled in, addresses parsed,
//!    priorities parsed, secrets resolved — so the outputs never see a
//!    half-valid setting.
//!
//! Overrides, weakest first: the file, then `MAMORI_*` environment variables,
//! then `mamori run -o KEY=VALUE`.
//!
//! - `-o outputs.syslog.address=udp://127.0.0.1:514` sets one key by its dotted
//!   path; the value is read as a YAML scalar or flow collection, so
//!   `-o outputs.stdout.enabled=false` is a boolean and
//!   `-o 'outputs.slack.tags=[network, k8s]'` a list.
//! - `MAMORI_OUTPUTS__SYSLOG__ADDRESS=...`: the variable name after `MAMORI_`,
//!   lower-cased, with `__` separating path segments. Only variables whose
//!   first segment is a top-level config key (`outputs`) are read; other
//!   `MAMORI_*` variables (e.g. test knobs) are ignored.
//!
//! Secrets (the Slack webhook URL, webhook header values) are [`Secret`]s:
//! given inline, or as `{env: VAR}` / `{file: /path}` (a mounted Kubernetes
//! Secret). Their `Debug` and every error print `***`.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use mamori_rules::alert::Priority;

/// Where `mamori run` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mamori/mamori.yaml";

/// A configuration problem, naming the key (dotted path) and where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: invalid YAML: {msg}")]
    Yaml { origin: String, msg: String },
    #[error("-o {arg}: expected KEY=VALUE with a dotted key such as outputs.syslog.address")]
    BadOverride { arg: String },
    #[error("{origin}: `{key}`: {msg}")]
    Key {
        origin: String,
        key: String,
        msg: String,
    },
    #[error("`{key}`: secret: {msg}")]
    Secret { key: String, msg: String },
}

fn key_err(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        origin: "config".into(),
        key: key.into(),
        msg: msg.into(),
    }
}

// ---------------------------------------------------------------------------
// Loading: YAML → value tree → overrides

/// Read YAML text into a JSON value tree (maps keep string keys).
pub fn yaml_to_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
        origin: origin.into(),
        msg: e.to_string(),
    })?;
    match docs.into_iter().next() {
        None => Ok(Value::Object(Default::default())),
        Some(doc) => convert_yaml(doc, origin),
    }
}

fn convert_yaml(y: yaml_rust2::Yaml, origin: &str) -> Result<Value, ConfigError> {
    use yaml_rust2::Yaml;
    let bad = |msg: String| ConfigError::Yaml {
        origin: origin.into(),
        msg,
    };
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::from(i),
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad(format!("bad number {s}")))?,
        Yaml::String(s) => Value::String(s),
        Yaml::Array(a) => Value::Array(
            a.into_iter()
                .map(|v| convert_yaml(v, origin))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in h {
                let k = match k {
                    Yaml::String(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(bad(format!("unsupported map key {other:?}"))),
                };
                m.insert(k, convert_yaml(v, origin)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) => return Err(bad("YAML aliases are not supported".into())),
        Yaml::BadValue => return Err(bad("bad value".into())),
    })
}

/// Set `key` (dotted path) to `value` in the tree, creating maps on the way.
pub fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::BadOverride { arg: key.into() });
    }
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            if cur.is_null() {
                *cur = Value::Object(Default::default());
            } else {
                return Err(ConfigError::Key {
                    origin: "override".into(),
                    key: parts[..i].join("."),
                    msg: "is not a map, cannot set a key below it".into(),
                });
            }
        }
        let map = cur.as_object_mut().expect("made a map above");
        if i == parts.len() - 1 {
            map.insert((*p).to_string(), value);
            return Ok(());
        }
        cur = map.entry(p.to_string()).or_insert(Value::Null);
    }
    Ok(())
}

/// Parse an override value: `[a, b]` / `{env: X}` as YAML flow collections,
/// `true`, `10`, `1.5`, `null` as YAML scalars, anything else (including
/// `#channel` or `a: b`) as the literal string.
fn override_value(text: &str, origin: &str) -> Result<Value, ConfigError> {
    let t = text.trim();
    if t.starts_with('[') || t.starts_with('{') {
        return yaml_to_value(t, origin);
    }
    match yaml_to_value(t, origin) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::Null)) if !t.is_empty() => Ok(v),
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Apply one `-o KEY=VALUE`.
pub fn apply_override(root: &mut Value, arg: &str) -> Result<(), ConfigError> {
    let (key, val) = arg
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride { arg: arg.into() })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::BadOverride { arg: arg.into() });
    }
    let v = override_value(val, &format!("-o {key}"))?;
    set_path(root, key, v)
}

/// Top-level keys `MAMORI_*` variables may address.
const ENV_ROOTS: &[&str] = &["outputs"];

/// Apply `MAMORI_OUTPUTS__SYSLOG__ADDRESS=...`-style variables. Returns the
/// names of the variables used (for `-v` logging; values are never logged).
pub fn apply_env<I>(root: &mut Value, vars: I) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut used = Vec::new();
    let mut vars: Vec<_> = vars.into_iter().collect();
    vars.sort();
    for (name, val) in vars {
        let Some(rest) = name.strip_prefix("MAMORI_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let first = key.split('.').next().unwrap_or("");
        if !ENV_ROOTS.contains(&first) {
            continue;
        }
        let v = override_value(&val, &name)?;
        set_path(root, &key, v)?;
        used.push(name);
    }
    Ok(used)
}

/// Deserialize the tree, naming the failing key path in the error.
pub fn parse_raw(root: Value) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize::<_, RawConfig>(root).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key {
            origin: "config".into(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            msg: e.into_inner().to_string(),
        }
    })
}

/// Everything `mamori run` needs to build its config: file, env, `-o`.
pub fn load(
    path: Option<&Path>,
    overrides: &[String],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (mut root, origin) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            (
                yaml_to_value(&text, &p.display().to_string())?,
                p.display().to_string(),
            )
        }
        None => (Value::Object(Default::default()), "config".to_string()),
    };
    if root.is_null() {
        root = Value::Object(Default::default());
    }
    apply_env(&mut root, env)?;
    for o in overrides {
        apply_override(&mut root, o)?;
    }
    let raw = parse_raw(root).map_err(|e| match e {
        ConfigError::Key { key, msg, .. } => ConfigError::Key {
            origin: origin.clone(),
            key,
            msg,
        },
        other => other,
    })?;
    raw.validate()
}

/// The config file `mamori run` reads: `--config`, else the default path if
/// it exists, else none (built-in defaults).
pub fn resolve_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG_PATH);
        p.is_file().then_some(p)
    })
}

// ---------------------------------------------------------------------------
// Raw config

/// A duration written `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::Number(n) => n
                .as_f64()
                .and_then(mamori_rules::duration::from_secs_f64)
                .map(Dur)
                .ok_or_else(|| serde::de::Error::custom("expected a duration from 0 to 100 years")),
            Value::String(s) => mamori_rules::duration::parse(s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "expected a duration such as 500ms, 5s, 2m",
            )),
        }
    }
}

/// A secret string: inline, `{env: VAR}` or `{file: /path}`.
#[derive(Clone, PartialEq)]
pub enum SecretSource {
    Inline(String),
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("***"),
            SecretSource::Env(v) => write!(f, "{{env: {v}}}"),
            SecretSource::File(p) => write!(f, "{{file: {}}}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        match v {
            Value::String(s) => Ok(SecretSource::Inline(s)),
            Value::Object(m) if m.len() == 1 => {
                let (k, v) = m.into_iter().next().expect("one entry");
                let Value::String(s) = v else {
                    return Err(D::Error::custom(format!("`{k}` must be a string")));
                };
                match k.as_str() {
                    "env" => Ok(SecretSource::Env(s)),
                    "file" => Ok(SecretSource::File(s.into())),
                    other => Err(D::Error::custom(format!(
                        "unknown secret source `{other}` (expected env or file)"
                    ))),
                }
            }
            _ => Err(D::Error::custom(
                "expected a string, {env: VAR} or {file: /path}",
            )),
        }
    }
}

impl SecretSource {
    /// The secret's value; the error never contains it.
    pub fn resolve(&self, key: &str) -> Result<Secret, ConfigError> {
        let err = |msg: String| ConfigError::Secret {
            key: key.into(),
            msg,
        };
        let s = match self {
            SecretSource::Inline(s) => s.clone(),
            SecretSource::Env(var) => std::env::var(var)
                .map_err(|_| err(format!("environment variable {var} is not set")))?,
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| err(format!("reading {}: {}", p.display(), e.kind())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if s.is_empty() {
            return Err(err("is empty".into()));
        }
        Ok(Secret(s))
    }
}

/// A resolved secret. `Debug`/`Display` print `***`; [`Secret::expose`] is
/// the only way to the value.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub outputs: RawOutputs,
}

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
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub enabled: Option<bool>,
            pub minimum_priority: Option<String>,
            /// Only these rules (exact names); empty = all.
            pub rules: Option<Vec<String>>,
            /// Only alerts with at least one of these tags; empty = all.
            pub tags: Option<Vec<String>>,
            pub queue_capacity: Option<usize>,
            pub dedup: Option<RawDedup>,
            pub retry: Option<RawRetry>,
            pub rate_limit: Option<RawRateLimit>,
            $($(#[$m])* pub $f: $t,)*
        }
        impl $name {
            fn common(&self, key: &str, default_enabled: bool) -> Result<(bool, SinkCommon), ConfigError> {
                common(key, default_enabled, self.enabled, &self.minimum_priority, &self.rules,
                       &self.tags, self.queue_capacity, &self.dedup, &self.retry, &self.rate_limit)
            }
        }
    };
}

sink_struct!(RawStdout {});
sink_struct!(RawFile { path: Option<PathBuf>, });
sink_struct!(RawSyslog {
    address: Option<String>,
    format: Option<String>,
    facility: Option<String>,
    app_name: Option<String>,
    max_message_bytes: Option<usize>,
    tls: Option<RawTls>,
});
sink_struct!(RawSlack {
    webhook_url: Option<SecretSource>,
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
    max_value_chars: Option<usize>,
    timeout: Option<Dur>,
});
sink_struct!(RawWebhook {
    url: Option<SecretSource>,
    headers: Option<BTreeMap<String, SecretSource>>,
    timeout: Option<Dur>,
    tls: Option<RawTls>,
});

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

// ---------------------------------------------------------------------------
// Validated config

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
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

#[allow(clippy::too_many_arguments)]
fn common(
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
        if q == 0 {
            return Err(key_err(
                format!("{key}.queue_capacity"),
                "must be at least 1",
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
        if *n == 0 {
            return Err(key_err(
                format!("{key}.rate_limit.per_rule"),
                "must be at least 1 (leave it out for no limit)",
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
            if n == 0 {
                return Err(key_err(
                    format!("{key}.retry.max_attempts"),
                    "must be at least 1 (1 = no retries)",
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

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub outputs: OutputsConfig,
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

#[derive(Debug, Clone)]
pub struct StdoutConfig {
    pub common: SinkCommon,
}

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub common: SinkCommon,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
    Tls(String),
}

impl fmt::Display for SyslogAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogAddress::Unix(p) => write!(f, "unix://{}", p.display()),
            SyslogAddress::Udp(a) => write!(f, "udp://{a}"),
            SyslogAddress::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogAddress::Tls(a) => write!(f, "tls://{a}"),
        }
    }
}

impl SyslogAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "'{s}': expected unix:///path, udp://host:port, tcp://host:port or tls://host:port"
            )
        })?;
        let hostport = |r: &str| -> Result<String, String> {
            match r.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(r.to_string()),
                _ => Err(format!("'{s}': expected host:port after {scheme}://")),
            }
        };
        Ok(match scheme {
            "unix" if rest.starts_with('/') => SyslogAddress::Unix(rest.into()),
            "unix" => return Err(format!("'{s}': unix:// needs an absolute path")),
            "udp" => SyslogAddress::Udp(hostport(rest)?),
            "tcp" => SyslogAddress::Tcp(hostport(rest)?),
            "tls" => SyslogAddress::Tls(hostport(rest)?),
            _ => {
                return Err(format!(
                    "'{s}': unknown scheme {scheme} (unix, udp, tcp, tls)"
                ))
            }
        })
    }
}

/// Syslog facility names → codes (RFC 5424 table 1).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub common: SinkCommon,
    pub address: SyslogAddress,
    pub format: SyslogFormat,
    pub facility: u8,
    pub app_name: String,
    pub max_message_bytes: usize,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub common: SinkCommon,
    pub webhook_url: Secret,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub max_value_chars: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub common: SinkCommon,
    pub url: Secret,
    /// Header values are secrets (they often carry tokens).
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub tls: TlsConfig,
}

fn tls(key: &str, raw: &Option<RawTls>) -> Result<TlsConfig, ConfigError> {
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

fn http_url(key: &str, url: &Secret) -> Result<(), ConfigError> {
    let u = url.expose();
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        // Never echo the URL: it is the credential.
        return Err(key_err(
            key,
            "must be an http:// or https:// URL (value redacted)",
        ));
    }
    Ok(())
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let o = self.outputs;
        let mut out = OutputsConfig {
            grace_period: o.grace_period.map(|d| d.0).unwrap_or(DEFAULT_GRACE),
            ..OutputsConfig::default()
        };
        out.stdout = match &o.stdout {
            None => out.stdout,
            Some(s) => {
                let (on, common) = s.common("outputs.stdout", true)?;
                on.then_some(StdoutConfig { common })
            }
        };
        if let Some(f) = &o.file {
            let (on, common) = f.common("outputs.file", f.path.is_some())?;
            if on {
                let path = f.path.clone().ok_or_else(|| {
                    key_err(
                        "outputs.file.path",
                        "required when the file output is enabled",
                    )
                })?;
                out.file = Some(FileConfig { common, path });
            }
        }
        if let Some(s) = &o.syslog {
            let (on, common) = s.common("outputs.syslog", s.address.is_some())?;
            if on {
                let address =
                    SyslogAddress::parse(s.address.as_deref().unwrap_or("unix:///dev/log"))
                        .map_err(|m| key_err("outputs.syslog.address", m))?;
                let format = match s.format.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("rfc5424") => SyslogFormat::Rfc5424,
                    Some("rfc3164") => SyslogFormat::Rfc3164,
                    Some(other) => {
                        return Err(key_err(
                            "outputs.syslog.format",
                            format!("unknown format '{other}' (rfc5424 or rfc3164)"),
                        ))
                    }
                };
                let facility = match &s.facility {
                    None => 3, // daemon
                    Some(f) => FACILITIES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(f))
                        .map(|(_, c)| *c)
                        .ok_or_else(|| {
                            key_err(
                                "outputs.syslog.facility",
                                format!(
                                    "unknown facility '{f}' (e.g. daemon, auth, local0..local7)"
                                ),
                            )
                        })?,
                };
                let app_name = s.app_name.clone().unwrap_or_else(|| "mamori".into());
                if app_name.is_empty()
                    || app_name.len() > 48
                    || !app_name.bytes().all(|b| (33..=126).contains(&b))
                {
                    return Err(key_err(
                        "outputs.syslog.app_name",
                        "must be 1-48 printable ASCII characters without spaces",
                    ));
                }
                let max_message_bytes = s.max_message_bytes.unwrap_or(8192);
                if max_message_bytes < 480 {
                    return Err(key_err(
                        "outputs.syslog.max_message_bytes",
                        "must be at least 480",
                    ));
                }
                out.syslog = Some(SyslogConfig {
                    common,
                    address,
                    format,
                    facility,
                    app_name,
                    max_message_bytes,
                    tls: tls("outputs.syslog", &s.tls)?,
                });
            }
        }
        if let Some(s) = &o.slack {
            let (on, common) = s.common("outputs.slack", s.webhook_url.is_some())?;
            if on {
                let src = s.webhook_url.as_ref().ok_or_else(|| {
                    key_err(
                        "outputs.slack.webhook_url",
                        "required when the Slack output is enabled",
                    )
                })?;
                let webhook_url = src.resolve("outputs.slack.webhook_url")?;
                http_url("outputs.slack.webhook_url", &webhook_url)?;
                out.slack = Some(SlackConfig {
                    common,
                    webhook_url,
                    channel: s.channel.clone(),
                    username: s.username.clone(),
                    icon_emoji: s.icon_emoji.clone(),
                    max_value_chars: s.max_value_chars.unwrap_or(500).max(16),
                    timeout: s.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
                });
            }
        }
        if let Some(w) = &o.webhook {
            let (on, common) = w.common("outputs.webhook", w.url.is_some())?;
            if on {
                let src = w.url.as_ref().ok_or_else(|| {
                    key_err(
                        "outputs.webhook.url",
                        "required when the webhook output is enabled",
                    )
                })?;
                let url = src.resolve("outputs.webhook.url")?;
                http_url("outputs.webhook.url", &url)?;
                let mut headers = Vec::new();
                for (name, v) in w.headers.iter().flatten() {
                    let key = format!("outputs.webhook.headers.{name}");
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
                    {
                        return Err(key_err(key, "not a valid HTTP header name"));
                    }
                    let v = v.resolve(&key)?;
                    if v.expose()
                        .bytes()
                        .any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
                    {
                        return Err(key_err(
                            key,
                            "header value contains control characters (value redacted)",
                        ));
                    }
                    headers.push((name.clone(), v));
                }
                out.webhook = Some(WebhookConfig {
                    common,
                    url,
                    headers,
                    timeout: w.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
                    tls: tls("outputs.webhook", &w.tls)?,
                });
            }
        }
        Ok(Config { outputs: out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(y: &str) -> Result<Config, ConfigError> {
        let root = yaml_to_value(y, "test.yaml")?;
        parse_raw(root)?.validate()
    }

    #[test]
    fn empty_config_is_stdout_only() {
        let c = from_yaml("").unwrap();
        assert!(c.outputs.stdout.is_some());
        assert!(c.outputs.syslog.is_none() && c.outputs.slack.is_none());
        assert_eq!(c.outputs.grace_period, DEFAULT_GRACE);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_path() {
        let e = from_yaml("outputs:\n  syslog:\n    adress: udp://127.0.0.1:514\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outputs.syslog"), "{e}");
        assert!(e.contains("unknown field `adress`"), "{e}");
        let e = from_yaml("outptus: {}\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `outptus`"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = from_yaml(
            "outputs:\n  slack:\n    webhook_url: https://x\n    minimum_priority: loud\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outputs.slack.minimum_priority"), "{e}");
        let e = from_yaml("outputs:\n  syslog:\n    address: smtp://x:1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("outputs.syslog.address") && e.contains("unknown scheme"),
            "{e}"
        );
        let e = from_yaml("outputs:\n  grace_period: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outputs.grace_period"), "{e}");
        let e = from_yaml("outputs:\n  file:\n    enabled: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("outputs.file.path"), "{e}");
    }

    #[test]
    fn full_example_file_parses() {
        let text = include_str!("../../mamori.example.yaml");
        let root = yaml_to_value(text, "mamori.example.yaml").unwrap();
        let raw = parse_raw(root).unwrap();
        std::env::set_var("SLACK_WEBHOOK_URL", "https://hooks.example.invalid/T/B/x");
        std::env::set_var("WEBHOOK_TOKEN", "Bearer t0ken");
        let c = raw.validate().unwrap();
        let s = c.outputs.syslog.unwrap();
        assert_eq!(s.format, SyslogFormat::Rfc5424);
        assert!(c.outputs.slack.is_some() && c.outputs.webhook.is_some());
    }

    #[test]
    fn overrides_beat_env_beat_file() {
        let dir = std::env::temp_dir().join(format!("mamori-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.yaml");
        std::fs::write(
            &p,
            "outputs:\n  syslog:\n    address: udp://127.0.0.1:1\n    facility: local0\n",
        )
        .unwrap();
        let env = vec![
            (
                "MAMORI_OUTPUTS__SYSLOG__ADDRESS".to_string(),
                "tcp://127.0.0.1:2".to_string(),
            ),
            (
                "MAMORI_OUTPUTS__SYSLOG__FORMAT".to_string(),
                "rfc3164".to_string(),
            ),
            ("MAMORI_BENCH_REPEAT".to_string(), "3".to_string()), // not config: ignored
        ];
        let c = load(
            Some(&p),
            &[
                "outputs.syslog.format=rfc5424".into(),
                "outputs.stdout.enabled=false".into(),
            ],
            env,
        )
        .unwrap();
        let s = c.outputs.syslog.unwrap();
        assert_eq!(s.address, SyslogAddress::Tcp("127.0.0.1:2".into()));
        assert_eq!(s.format, SyslogFormat::Rfc5424);
        assert_eq!(s.facility, 16);
        assert!(c.outputs.stdout.is_none());
        let c = load(
            None,
            &[
                "outputs.slack.tags=[network, k8s]".into(),
                "outputs.slack.webhook_url=http://127.0.0.1:9/x".into(),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(c.outputs.slack.unwrap().common.tags, vec!["network", "k8s"]);
        assert!(matches!(
            load(None, &["outputs.syslog".into()], vec![]),
            Err(ConfigError::BadOverride { .. })
        ));
        let e = load(
            None,
            &["outputs.syslog.adress=udp://1.2.3.4:5".into()],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outputs.syslog") && e.contains("adress"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_errors() {
        let url = "https://hooks.example.invalid/services/T000/B000/SUPERSECRET";
        let c = load(
            None,
            &[
                format!("outputs.slack.webhook_url={url}"),
                "outputs.webhook.url=http://127.0.0.1:9/hook".into(),
                "outputs.webhook.headers.Authorization=Bearer SUPERSECRET".into(),
            ],
            vec![],
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SUPERSECRET"), "{dbg}");
        assert!(dbg.contains("***"));
        // A bad URL: the error must not echo it.
        let e = load(
            None,
            &["outputs.slack.webhook_url=ftp://SUPERSECRET".into()],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(
            !e.contains("SUPERSECRET") && e.contains("outputs.slack.webhook_url"),
            "{e}"
        );
        // From env / file.
        let e = SecretSource::Env("MAMORI_TEST_SURELY_UNSET_VAR".into())
            .resolve("outputs.slack.webhook_url")
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAMORI_TEST_SURELY_UNSET_VAR is not set"), "{e}");
        let dir = std::env::temp_dir().join(format!("mamori-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("url"), format!("{url}\n")).unwrap();
        let s = SecretSource::File(dir.join("url")).resolve("k").unwrap();
        assert_eq!(s.expose(), url);
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn override_values_are_yaml_scalars_or_literal_text() {
        let c = load(
            None,
            &[
                "outputs.slack.webhook_url=http://127.0.0.1:9/x".into(),
                "outputs.slack.channel=#sec".into(),
                "outputs.slack.username=a: b".into(),
                "outputs.slack.max_value_chars=100".into(),
            ],
            vec![],
        )
        .unwrap();
        let s = c.outputs.slack.unwrap();
        assert_eq!(s.channel.as_deref(), Some("#sec"));
        assert_eq!(s.username.as_deref(), Some("a: b"));
        assert_eq!(s.max_value_chars, 100);
        // Without its URL the Slack output stays off.
        let c = load(None, &["outputs.slack.channel=#sec".into()], vec![]).unwrap();
        assert!(c.outputs.slack.is_none());
    }

    #[test]
    fn rate_limit_keys() {
        let c = load(
            None,
            &[
                "outputs.stdout.rate_limit.per_rule=5".into(),
                "outputs.stdout.rate_limit.interval=30s".into(),
            ],
            vec![],
        )
        .unwrap();
        assert_eq!(
            c.outputs.stdout.unwrap().common.rate_limit,
            Some(RateLimitConfig {
                per_rule: 5,
                interval: Duration::from_secs(30)
            })
        );
        let e = load(
            None,
            &["outputs.stdout.rate_limit.per_rule=0".into()],
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("outputs.stdout.rate_limit.per_rule"), "{e}");
    }

    #[test]
    fn huge_durations_are_an_error_naming_the_key() {
        for v in ["1e300", "999999999999h"] {
            let e = load(None, &[format!("outputs.grace_period={v}")], vec![])
                .unwrap_err()
                .to_string();
            assert!(e.contains("outputs.grace_period"), "{v}: {e}");
        }
    }
}
