//! `container_engines:` — which runtime sockets to ask, in Falco's shape
//! (`docker`, `podman`, `cri` each with `enabled`; `cri.sockets`), plus
//! `sockets` for docker and podman, `host_root` (where the host's
//! filesystem is mounted in a pod, `/host` in the chart) and the per-lookup
//! `timeout`.
//!
//! Every engine is on by default with the sockets each runtime uses by
//! default; which of them exist is found at start-up (see
//! [`super::start`]).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::config::{key_err, ConfigError, Dur};

/// Which API an engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The CRI (containerd's CRI plugin, CRI-O).
    Cri,
    /// docker's Engine API.
    Docker,
    /// podman's docker-compatible API.
    Podman,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cri => "cri",
            Kind::Docker => "docker",
            Kind::Podman => "podman",
        }
    }
}

pub const CRI_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
];
pub const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock"];
pub const PODMAN_SOCKETS: &[&str] = &["/run/podman/podman.sock"];
/// Longest one lookup may take before the next engine is asked.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    pub enabled: Option<bool>,
    pub sockets: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngines {
    #[serde(default)]
    pub cri: RawEngine,
    #[serde(default)]
    pub docker: RawEngine,
    #[serde(default)]
    pub podman: RawEngine,
    pub host_root: Option<PathBuf>,
    pub timeout: Option<Dur>,
}

/// The validated setting: the candidate sockets, in the order asked.
#[derive(Debug, Clone, PartialEq)]
pub struct EnginesConfig {
    /// (kind, socket path as on the host), CRI first.
    pub sockets: Vec<(Kind, PathBuf)>,
    /// Prefix of every socket path.
    pub host_root: PathBuf,
    pub timeout: Duration,
}

impl Default for EnginesConfig {
    fn default() -> EnginesConfig {
        RawEngines::default()
            .validate()
            .expect("the defaults are valid")
    }
}

impl EnginesConfig {
    /// No engine at all (tests, `capture` without a runtime).
    pub fn none() -> EnginesConfig {
        EnginesConfig {
            sockets: Vec::new(),
            ..EnginesConfig::default()
        }
    }

    /// Where a socket is seen from here: under `host_root`.
    pub fn path_of(&self, socket: &std::path::Path) -> PathBuf {
        self.host_root
            .join(socket.strip_prefix("/").unwrap_or(socket))
    }
}

impl RawEngines {
    pub fn validate(self) -> Result<EnginesConfig, ConfigError> {
        let mut sockets = Vec::new();
        let engines = [
            (Kind::Cri, self.cri, CRI_SOCKETS),
            (Kind::Docker, self.docker, DOCKER_SOCKETS),
            (Kind::Podman, self.podman, PODMAN_SOCKETS),
        ];
        for (kind, raw, defaults) in engines {
            if raw.enabled == Some(false) {
                continue;
            }
            let list = raw
                .sockets
                .unwrap_or_else(|| defaults.iter().map(PathBuf::from).collect());
            for s in list {
                if !s.is_absolute() {
                    return Err(key_err(
                        format!("container_engines.{}.sockets", kind.name()),
                        format!("{}: expected an absolute path", s.display()),
                    ));
                }
                sockets.push((kind, s));
            }
        }
        let host_root = self.host_root.unwrap_or_else(|| PathBuf::from("/"));
        if !host_root.is_absolute() {
            return Err(key_err(
                "container_engines.host_root",
                format!("{}: expected an absolute path", host_root.display()),
            ));
        }
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(key_err(
                "container_engines.timeout",
                "expected a duration above 0 and at most 60s",
            ));
        }
        Ok(EnginesConfig {
            sockets,
            host_root,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: serde_json::Value) -> Result<EnginesConfig, String> {
        let raw: RawEngines = serde_json::from_value(yaml).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_falco_shape_and_errors_naming_the_key() {
        let d = EnginesConfig::default();
        assert_eq!(d.sockets.len(), 5);
        assert_eq!(
            d.sockets[0],
            (Kind::Cri, "/run/containerd/containerd.sock".into())
        );
        assert_eq!(
            d.path_of("/run/crio/crio.sock".as_ref()),
            PathBuf::from("/run/crio/crio.sock")
        );
        let c = parse(serde_json::json!({
            "host_root": "/host",
            "docker": {"enabled": false},
            "cri": {"sockets": ["/var/run/cri.sock"]},
            "timeout": "500ms",
        }))
        .unwrap();
        assert_eq!(
            c.sockets,
            vec![
                (Kind::Cri, "/var/run/cri.sock".into()),
                (Kind::Podman, "/run/podman/podman.sock".into())
            ]
        );
        assert_eq!(
            c.path_of("/var/run/cri.sock".as_ref()),
            PathBuf::from("/host/var/run/cri.sock")
        );
        assert_eq!(c.timeout, Duration::from_millis(500));
        let e = parse(serde_json::json!({"cri": {"sockets": ["cri.sock"]}})).unwrap_err();
        assert!(
            e.contains("container_engines.cri.sockets") && e.contains("absolute"),
            "{e}"
        );
        let e = parse(serde_json::json!({"timeout": "0s"})).unwrap_err();
        assert!(e.contains("container_engines.timeout"), "{e}");
        assert!(
            parse(serde_json::json!({"lxc": {}})).is_err(),
            "unknown keys are refused"
        );
    }
}
