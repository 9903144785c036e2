//! Container metadata from the node's own container runtimes, without the
//! API server: name, image (repository, tag, digest), privileged, start
//! time and — from a CRI runtime's labels — the pod's name, namespace and
//! uid.
//!
//! Why the runtimes: the cgroup path gives only a container id, and the pod
//! watch ([`super::k8s`]) needs an API server and knows nothing of docker or
//! podman containers. The runtime that started a container knows all of it,
//! locally.
//!
//! How, never on the per-event path: the enricher asks [`RuntimeIndex`] for
//! a container id; an unseen id is queued (non-blocking) for one lookup task
//! ([`start`]), which asks each detected engine in turn — the CRI
//! ([`cri`]: `ContainerStatus` over containerd's or CRI-O's socket), docker
//! and podman ([`docker`]: `GET /containers/<id>/json`) — and records the
//! answer, or that none knows the id. Events of a container being looked up
//! wait at most the enricher's bounded hold ([`super::HOLD_FOR`]), then go
//! out with what is known.
//!
//! Which sockets: `container_engines:` ([`config`]); the ones that exist
//! under `host_root` at start-up are used, each missing one is one log line.

pub mod config;
pub mod cri;
pub mod docker;
pub mod index;

use std::path::PathBuf;

pub use self::{
    config::{EnginesConfig, Kind, RawEngines},
    index::{Lookup, RuntimeIndex, RuntimeMeta},
};

/// A lookup that failed (the runtime is down, or answered nonsense).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("connecting: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("gRPC: {0}")]
    Grpc(String),
    #[error("{0}")]
    Protocol(String),
}

/// One detected engine: what it speaks and where (as seen from here).
#[derive(Debug, Clone)]
pub struct Engine {
    pub kind: Kind,
    pub socket: PathBuf,
}

impl Engine {
    /// The container `id` as this engine knows it; `None` when it does not.
    pub async fn inspect(&self, id: &str) -> Result<Option<RuntimeMeta>, EngineError> {
        match self.kind {
            Kind::Cri => cri::inspect(&self.socket, id).await,
            Kind::Docker => docker::inspect(&self.socket, id, "docker").await,
            Kind::Podman => docker::inspect(&self.socket, id, "podman").await,
        }
    }
}

/// The configured sockets that exist; one log line for each that does not.
pub fn detect(cfg: &EnginesConfig) -> Vec<Engine> {
    let mut found = Vec::new();
    for (kind, socket) in &cfg.sockets {
        let path = cfg.path_of(socket);
        if path.exists() {
            log::info!("container engine {}: {}", kind.name(), path.display());
            found.push(Engine {
                kind: *kind,
                socket: path,
            });
        } else {
            log::info!(
                "container engine {}: no socket at {}; not used",
                kind.name(),
                path.display()
            );
        }
    }
    found
}

/// Start the lookup task for the engines found (inside the tokio runtime);
/// `None` when there is none.
pub fn start(cfg: &EnginesConfig) -> Option<RuntimeIndex> {
    let engines = detect(cfg);
    if engines.is_empty() {
        return None;
    }
    let (idx, rx) = RuntimeIndex::new();
    tokio::spawn(serve(engines, idx.clone(), rx, cfg.timeout));
    Some(idx)
}

/// Answer queued ids one at a time: the first engine that knows the id
/// wins; errors are logged when they change (a runtime that is down says so
/// once, not per container).
async fn serve(
    engines: Vec<Engine>,
    idx: RuntimeIndex,
    mut rx: tokio::sync::mpsc::Receiver<String>,
    timeout: std::time::Duration,
) {
    let mut last_err: Vec<Option<String>> = vec![None; engines.len()];
    while let Some(id) = rx.recv().await {
        let mut found = None;
        for (e, last) in engines.iter().zip(last_err.iter_mut()) {
            let r = match tokio::time::timeout(timeout, e.inspect(&id)).await {
                Ok(r) => r.map_err(|err| err.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            match r {
                Ok(m) => {
                    *last = None;
                    if m.is_some() {
                        found = m;
                        break;
                    }
                }
                Err(msg) => {
                    if last.as_deref() != Some(msg.as_str()) {
                        log::warn!(
                            "container engine {} at {}: {msg}",
                            e.kind.name(),
                            e.socket.display()
                        );
                        *last = Some(msg);
                    }
                }
            }
        }
        idx.answer(&id, found);
    }
}

/// An RFC 3339 time (`2026-12-07T04:25:49.411448365Z`) as ns since the
/// epoch; `None` for the zero time runtimes print for "not started".
pub fn rfc3339_ns(text: &str) -> Option<u64> {
    let t: jiff::Timestamp = text.parse().ok()?;
    u64::try_from(t.as_nanosecond()).ok().filter(|&ns| ns > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_sockets_are_skipped_and_times_parse() {
        let dir = std::env::temp_dir().join(format!("mamori-engines-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let sock = dir.join("run/docker.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let cfg = EnginesConfig {
            host_root: dir.clone(),
            ..EnginesConfig::default()
        };
        assert!(
            detect(&cfg).is_empty(),
            "none of the default paths exist there"
        );
        let cfg = EnginesConfig {
            sockets: vec![(Kind::Docker, "/run/docker.sock".into())],
            ..cfg
        };
        let found = detect(&cfg);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].socket, sock);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(rfc3339_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(rfc3339_ns("0001-01-01T00:00:00Z"), None);
        assert_eq!(rfc3339_ns("yesterday"), None);
    }
}
