//! The alert value: what a matching rule produces, in Falco's JSON alert
//! shape so existing consumers (falcosidekick-style routers, SIEM parsers)
//! read mamori alerts unchanged.
//!
//! ```json
//! {"hostname":"node-1","output":"12:00:00.000000001: Warning Sensitive file opened ...",
//!  "output_fields":{"proc.name":"cat","fd.name":"/etc/shadow"},
//!  "priority":"Warning","rule":"Read sensitive file untrusted","source":"syscall",
//!  "tags":["maturity_stable","filesystem"],"time":"2024-05-01T12:00:00.000000001Z"}
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Rule priority, most severe first (so `Ord` sorts by severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// The spelling Falco uses in alert JSON and output prefixes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority name that is not one of Falco's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority '{0}' (expected emergency, alert, critical, error, warning, notice, informational or debug)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, accepting Falco's aliases (`info`, `warn`, `crit`, `emerg`, `err`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "emergency" | "emerg" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" | "crit" => Priority::Critical,
            "error" | "err" => Priority::Error,
            "warning" | "warn" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_string())),
        })
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Event time, RFC 3339 with nanoseconds, UTC.
    pub time: String,
    pub rule: String,
    pub priority: Priority,
    /// `HH:MM:SS.nnnnnnnnn: <Priority> <rendered output>` as Falco prints it.
    pub output: String,
    /// Every `%field` of the output with its value (`null` when missing).
    pub output_fields: serde_json::Map<String, serde_json::Value>,
    /// Always `syscall` for now.
    pub source: String,
    pub tags: Vec<String>,
    pub hostname: String,
}

impl Alert {
    /// The alert of a rule at event time `ts` (ns since the epoch): `output`
    /// is the rendered text, prefixed here with the time of day and priority
    /// as Falco prints it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ts: u64,
        rule: impl Into<String>,
        priority: Priority,
        text: &str,
        output_fields: serde_json::Map<String, serde_json::Value>,
        source: &str,
        tags: Vec<String>,
        hostname: impl Into<String>,
    ) -> Alert {
        Alert {
            time: crate::timefmt::rfc3339_nanos(ts),
            rule: rule.into(),
            priority,
            output: format!("{}: {priority} {text}", crate::timefmt::time_of_day_ns(ts)),
            output_fields,
            source: source.into(),
            tags,
            hostname: hostname.into(),
        }
    }

    /// An alert about mamori itself (source `internal`, tag
    /// `mamori_internal`): the text starts with the rule name, so a loss or
    /// an eviction reads like a detection in every sink.
    pub fn internal(
        ts: u64,
        rule: &str,
        priority: Priority,
        detail: &str,
        output_fields: serde_json::Map<String, serde_json::Value>,
        hostname: &str,
    ) -> Alert {
        Alert::new(
            ts,
            rule,
            priority,
            &format!("{rule}. {detail}"),
            output_fields,
            "internal",
            vec!["mamori_internal".into()],
            hostname,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_parsing_is_case_insensitive() {
        assert_eq!("WARNING".parse::<Priority>().unwrap(), Priority::Warning);
        assert_eq!("info".parse::<Priority>().unwrap(), Priority::Informational);
        assert!("loud".parse::<Priority>().is_err());
        assert!(Priority::Critical < Priority::Notice);
    }
}
