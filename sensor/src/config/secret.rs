//! Secrets in the config (the Slack webhook URL, webhook header values):
//! given inline, or as `{env: VAR}` / `{file: /path}` (a mounted Kubernetes
//! Secret). Their `Debug` and every error print `***`.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::ConfigError;

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
            SecretSource::File(p) => read_bounded(p)
                .map_err(|e| err(format!("reading {}: {e}", p.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        };
        if s.is_empty() {
            return Err(err("is empty".into()));
        }
        Ok(Secret(s))
    }
}

/// Largest secret file read: a URL or a header value is far smaller, and
/// a path such as `/dev/zero` must not be read until memory runs out.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// A secret file's text, at most [`MAX_SECRET_FILE`] bytes (an error past it).
fn read_bounded(p: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| e.kind().to_string())?;
    let mut buf = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.kind().to_string())?;
    if buf.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("larger than {} KiB", MAX_SECRET_FILE / 1024));
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8".to_string())
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
