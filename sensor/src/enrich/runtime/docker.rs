//! docker's Engine API, and podman's docker-compatible one, over their unix
//! sockets: one `GET /containers/<id>/json` per new container id.
//!
//! Plain hyper (HTTP/1.1 on a fresh connection per lookup: lookups are rare,
//! once per container), the reply read into a few serde structs; the body is
//! capped so a confused peer cannot make the sensor buffer without bound.

use std::{collections::BTreeMap, path::Path};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::{body::Bytes, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::UnixStream;

use super::{EngineError, RuntimeMeta};
use crate::enrich::k8s::split_image;

/// Largest inspect reply read (a container's inspect JSON is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// `GET /containers/<id>/json` on the socket at `socket`: the container, or
/// `None` when the engine does not know the id (404).
pub async fn inspect(
    socket: &Path,
    id: &str,
    engine: &'static str,
) -> Result<Option<RuntimeMeta>, EngineError> {
    // Ids reach here only as 64 hex characters (from a cgroup name), so the
    // path needs no escaping; refuse anything else rather than build a URL.
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("/containers/{id}/json"))
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| EngineError::Protocol(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| EngineError::Protocol(format!("reading the reply: {e}")))?
        .to_bytes();
    conn.abort();
    match status {
        StatusCode::NOT_FOUND => Ok(None),
        s if s.is_success() => parse_inspect(&body, engine).map(Some),
        s => Err(EngineError::Protocol(format!(
            "HTTP {s}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    #[serde(default)]
    name: String,
    /// The image id (`sha256:...`).
    #[serde(default)]
    image: String,
    #[serde(default)]
    config: Option<InspectConfig>,
    #[serde(default)]
    host_config: Option<HostConfig>,
    #[serde(default)]
    state: Option<State>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    /// The image as the container was created from.
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfig {
    #[serde(default)]
    privileged: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct State {
    #[serde(default)]
    started_at: Option<String>,
}

/// An inspect reply → [`RuntimeMeta`].
pub fn parse_inspect(body: &[u8], engine: &'static str) -> Result<RuntimeMeta, EngineError> {
    let i: Inspect = serde_json::from_slice(body)
        .map_err(|e| EngineError::Protocol(format!("inspect reply: {e}")))?;
    let image = i
        .config
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    let (repository, tag, digest) = split_image(&image);
    let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
    let label = |k: &str| labels.get(k).filter(|v| !v.is_empty()).cloned();
    let image_id = (!i.image.is_empty()).then(|| {
        if i.image.contains(':') {
            i.image.clone()
        } else {
            format!("sha256:{}", i.image)
        }
    });
    let name = i.name.trim_start_matches('/');
    Ok(RuntimeMeta {
        engine,
        // A container a kubelet started through this engine names itself
        // after the pod; the label says the container's own name.
        name: label("io.kubernetes.container.name")
            .or_else(|| (!name.is_empty()).then(|| name.to_string())),
        image: (!image.is_empty()).then(|| image.clone()),
        repository: (!repository.is_empty()).then_some(repository),
        tag,
        digest: digest.or(image_id),
        privileged: i.host_config.and_then(|h| h.privileged),
        start_ts: i
            .state
            .and_then(|s| s.started_at)
            .and_then(|t| super::rfc3339_ns(&t)),
        pod_uid: label("io.kubernetes.pod.uid"),
        pod_name: label("io.kubernetes.pod.name"),
        pod_namespace: label("io.kubernetes.pod.namespace"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_podman_inspect_replies() {
        // The parts of a real docker 20.10 reply that are read.
        let docker = br#"{"Id":"3ddf","Name":"/web-1","Image":"sha256:c358a11e",
            "State":{"Running":true,"StartedAt":"2026-12-07T04:25:49.411448365Z"},
            "HostConfig":{"Privileged":true},
            "Config":{"Image":"registry:5000/team/web:1.2","Labels":{}}}"#;
        let m = parse_inspect(docker, "docker").unwrap();
        assert_eq!(m.name.as_deref(), Some("web-1"));
        assert_eq!(m.image.as_deref(), Some("registry:5000/team/web:1.2"));
        assert_eq!(m.repository.as_deref(), Some("registry:5000/team/web"));
        assert_eq!(m.tag.as_deref(), Some("1.2"));
        assert_eq!(m.digest.as_deref(), Some("sha256:c358a11e"));
        assert_eq!(m.privileged, Some(true));
        assert_eq!(m.start_ts, Some(1_796_617_549_411_448_365));
        assert_eq!(m.pod_name, None);
        // podman: the image id without its algorithm, labels null, a
        // kubelet-style container with pod labels.
        let podman = br#"{"Name":"k8s_app_web","Image":"837831447aaf",
            "State":{"StartedAt":"2026-12-07T04:25:49+01:00"},
            "HostConfig":{"Privileged":false},
            "Config":{"Image":"localhost/app:1","Labels":{
              "io.kubernetes.container.name":"app","io.kubernetes.pod.name":"web",
              "io.kubernetes.pod.namespace":"prod","io.kubernetes.pod.uid":"u-1"}}}"#;
        let m = parse_inspect(podman, "podman").unwrap();
        assert_eq!(m.name.as_deref(), Some("app"));
        assert_eq!(m.digest.as_deref(), Some("sha256:837831447aaf"));
        assert_eq!(m.start_ts, Some(1_796_613_949_000_000_000));
        assert_eq!(
            (
                m.pod_name.as_deref(),
                m.pod_namespace.as_deref(),
                m.pod_uid.as_deref()
            ),
            (Some("web"), Some("prod"), Some("u-1"))
        );
        // Not JSON: an error naming the reply, not a panic.
        let e = parse_inspect(b"<html>", "docker").unwrap_err();
        assert!(e.to_string().contains("inspect reply"), "{e}");
    }
}
