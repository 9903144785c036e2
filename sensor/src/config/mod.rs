//! `mamori.yaml`: the sensor's configuration, in two stages.
//!
//! 1. **Raw**: the YAML file is read into a JSON value tree, overrides are
//!    applied to that tree, and the tree is deserialized into `Raw*` structs
//!    that reject unknown keys (`deny_unknown_fields`). Errors name the full
//!    key path (`outputs.syslog.adress: unknown field ...`).
//! 2. **Validated**: [`Config`] — defaults filled in, addresses parsed,
//!    priorities parsed, secrets resolved — so the outputs never see a
//!    half-valid setting. Each sink's keys and checks live in its own folder
//!    under [`crate::outputs`] (`outputs/syslog/config.rs`, ...); this module
//!    holds the top level and the loading.
//!
//! Overrides, weakest first ([`layers`]): the file, then `MAMORI_*`
//! environment variables, then `mamori run -o KEY=VALUE`.
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
//! Secrets (the Slack webhook URL, webhook header values) are
//! [`Secret`](secret::Secret)s: given inline, or as `{env: VAR}` /
//! `{file: /path}` (a mounted Kubernetes Secret). Their `Debug` and every
//! error print `***`.

pub mod append;
pub mod layers;
pub mod secret;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::{
    enrich::runtime::{EnginesConfig, RawEngines},
    gap::{GapConfig, RawGap},
    outputs::config::{OutputsConfig, RawOutputs},
};
use layers::{apply_env, apply_override, yaml_to_value};

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

/// A bad value at `key` (the full dotted path, e.g. `outputs.syslog.address`).
pub(crate) fn key_err(key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        origin: "config".into(),
        key: key.into(),
        msg: msg.into(),
    }
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub outputs: RawOutputs,
    /// Falco's `append_output` (absent: mamori's default, see [`append`]).
    #[serde(default)]
    pub append_output: Option<Vec<append::RawAppend>>,
    /// This node's name in alerts and metrics (after `NODE_NAME`, before
    /// the UTS host name; see [`crate::host::node_name`]).
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub gap: RawGap,
    #[serde(default)]
    pub container_engines: RawEngines,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub outputs: OutputsConfig,
    /// What every matching rule's alert gets appended (`append_output`).
    pub append_output: Vec<mamori_rules::AppendOutput>,
    pub node_name: Option<String>,
    pub gap: GapConfig,
    /// Which container runtime sockets to ask (keys in
    /// [`crate::enrich::runtime::config`]).
    pub container_engines: EnginesConfig,
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let node_name = match self.node_name {
            Some(n) => {
                Some(crate::host::check_node_name(&n).map_err(|msg| key_err("node_name", msg))?)
            }
            None => None,
        };
        Ok(Config {
            outputs: self.outputs.validate()?,
            append_output: append::validate(self.append_output, &|k| std::env::var(k).ok())?,
            node_name,
            gap: self.gap.validate()?,
            container_engines: self.container_engines.validate()?,
        })
    }
}

#[cfg(test)]
mod tests;
