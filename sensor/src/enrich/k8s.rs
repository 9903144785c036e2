//! Pod metadata from the Kubernetes API: one watch of this node's pods.
//!
//! A sensor on every node asking the API server about every new process is
//! what made in-process Kubernetes clients too expensive for large clusters.
//! So mamori opens exactly one list+watch per node, restricted with
//! `fieldSelector=spec.nodeName=<node>`, keeps the result in a [`PodIndex`],
//! and enrichment reads only that index. Owner workloads are derived from
//! names and labels the controllers set (no extra API calls):
//!
//! - ReplicaSet `<deploy>-<pod-template-hash>` whose pod carries the
//!   `pod-template-hash` label → Deployment `<deploy>`;
//! - Job `<cronjob>-<digits>` (the CronJob controller names jobs after the
//!   scheduled time in minutes) → CronJob `<cronjob>`; a Job named otherwise
//!   stays a Job;
//! - DaemonSet, StatefulSet, ReplicaSet, Job and anything else as given.
//!
//! Off Kubernetes (no `KUBERNETES_SERVICE_HOST` and no `KUBECONFIG`) nothing
//! starts and nothing is logged above debug level. Watch errors are retried
//! with kube's default backoff and logged at warn level only for the first
//! few, so a broken API server cannot flood the logs.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod as KPod;
use kube::{
    api::Api,
    runtime::{watcher, WatchStreamExt},
    Client,
};

use super::pods::{ContainerMeta, PodEntry, PodIndex};
use mamori_rules::event::Pod;

/// Why the pod watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("no Kubernetes client configuration (in-cluster or KUBECONFIG): {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// True when there is a Kubernetes API to talk to.
pub fn configured() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("KUBECONFIG").is_some()
}

/// Start the watch when running on Kubernetes; `None` (quietly) otherwise.
/// Must be called inside the tokio runtime.
pub fn start_if_configured() -> Option<PodIndex> {
    if !configured() {
        log::debug!("no Kubernetes API configured: container fields from cgroups only");
        return None;
    }
    let Some(node) = crate::host::node_name() else {
        log::warn!("running on Kubernetes but NODE_NAME is unset and the host name is unknown: no pod metadata");
        return None;
    };
    let index = PodIndex::new();
    let idx = index.clone();
    tokio::spawn(async move {
        let client = match infer_client().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("pod metadata disabled: {e}");
                return;
            }
        };
        let stats = idx.watch.clone();
        watch_node_pods(client, node, idx, stats).await;
    });
    Some(index)
}

async fn infer_client() -> Result<Client, K8sError> {
    let config = kube::Config::infer().await.map_err(K8sError::Config)?;
    Client::try_from(config).map_err(K8sError::Client)
}

/// Counters of the watch (shared with whoever wants to report them).
#[derive(Debug, Default, Clone)]
pub struct WatchStats {
    /// Full (re)lists completed.
    pub lists: Arc<AtomicU64>,
    /// Watch events applied (added, modified, deleted).
    pub events: Arc<AtomicU64>,
    /// Errors from the watch (each followed by a backoff and a retry).
    pub errors: Arc<AtomicU64>,
}

/// Run the watch of `node`'s pods until the client is dropped, keeping
/// `index` in step. Never returns on errors: kube's watcher re-lists after
/// `410 Gone` and the backoff spaces retries.
pub async fn watch_node_pods(client: Client, node: String, index: PodIndex, stats: WatchStats) {
    let api: Api<KPod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = watcher(api, config).default_backoff();
    futures_util::pin_mut!(stream);
    let mut pending: Option<Vec<PodEntry>> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(watcher::Event::Init) => pending = Some(Vec::new()),
            Ok(watcher::Event::InitApply(p)) => {
                if let (Some(buf), Some(e)) = (pending.as_mut(), pod_entry(&p)) {
                    buf.push(e);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let entries = pending.take().unwrap_or_default();
                log::info!("pod watch: {} pods on node {node}", entries.len());
                index.replace_all(entries);
                stats.lists.fetch_add(1, Ordering::Relaxed);
            }
            Ok(watcher::Event::Apply(p)) => {
                if let Some(e) = pod_entry(&p) {
                    index.upsert(e);
                }
                stats.events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = p.metadata.uid.as_deref() {
                    index.remove(uid);
                }
                stats.events.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 5 || n.is_power_of_two() {
                    log::warn!("pod watch error ({n} so far, retrying with backoff): {e}");
                } else {
                    log::debug!("pod watch error: {e}");
                }
            }
        }
    }
}

/// `repository`, `tag`, `digest` of an image reference
/// (`[registry[:port]/]path[:tag][@sha256:...]`).
pub fn split_image(image: &str) -> (String, Option<String>, Option<String>) {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_slash..].rfind(':') {
        Some(i) => (
            name[..last_slash + i].to_string(),
            Some(name[last_slash + i + 1..].to_string()),
            digest,
        ),
        None => (name.to_string(), None, digest),
    }
}

/// The workload that owns a pod, by controller naming conventions.
pub fn workload(
    owner_kind: &str,
    owner_name: &str,
    labels: &BTreeMap<String, String>,
) -> (String, String) {
    match owner_kind {
        "ReplicaSet" => {
            if let Some(hash) = labels.get("pod-template-hash") {
                if let Some(deploy) = owner_name.strip_suffix(&format!("-{hash}")) {
                    return ("Deployment".into(), deploy.into());
                }
            }
        }
        "Job" => {
            if let Some((cron, stamp)) = owner_name.rsplit_once('-') {
                if !cron.is_empty() && stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit())
                {
                    return ("CronJob".into(), cron.into());
                }
            }
        }
        _ => {}
    }
    (owner_kind.into(), owner_name.into())
}

fn strip_runtime(id: &str) -> &str {
    id.split_once("://").map(|(_, rest)| rest).unwrap_or(id)
}

/// The index entry for one pod; `None` for a pod without a UID.
pub fn pod_entry(p: &KPod) -> Option<PodEntry> {
    let md = &p.metadata;
    let uid = md.uid.clone()?;
    let labels = md.labels.clone().unwrap_or_default();
    let owner = md
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| md.owner_references.as_deref().unwrap_or_default().first());
    let (workload_kind, workload_name) = match owner {
        Some(o) => {
            let (k, n) = workload(&o.kind, &o.name, &labels);
            (Some(k), Some(n))
        }
        None => (None, None),
    };
    let spec = p.spec.as_ref();
    let pod = Pod {
        uid,
        name: md.name.clone(),
        namespace: md.namespace.clone(),
        labels,
        workload_kind,
        workload_name,
        service_account: spec.and_then(|s| s.service_account_name.clone()),
    };

    // name → (image as written, privileged) from the spec.
    let mut spec_containers: Vec<(String, String, bool)> = Vec::new();
    if let Some(s) = spec {
        let privileged = |sc: Option<&k8s_openapi::api::core::v1::SecurityContext>| {
            sc.and_then(|c| c.privileged).unwrap_or(false)
        };
        for c in s
            .containers
            .iter()
            .chain(s.init_containers.iter().flatten())
        {
            spec_containers.push((
                c.name.clone(),
                c.image.clone().unwrap_or_default(),
                privileged(c.security_context.as_ref()),
            ));
        }
        for c in s.ephemeral_containers.iter().flatten() {
            spec_containers.push((
                c.name.clone(),
                c.image.clone().unwrap_or_default(),
                privileged(c.security_context.as_ref()),
            ));
        }
    }
    let mut containers = Vec::new();
    if let Some(st) = p.status.as_ref() {
        let all = st
            .container_statuses
            .iter()
            .flatten()
            .chain(st.init_container_statuses.iter().flatten())
            .chain(st.ephemeral_container_statuses.iter().flatten());
        for cs in all {
            let Some(id) = cs.container_id.as_deref().map(strip_runtime) else {
                continue; // not started yet
            };
            if id.is_empty() {
                continue;
            }
            let from_spec = spec_containers.iter().find(|(n, _, _)| *n == cs.name);
            let image = from_spec
                .map(|(_, i, _)| i.clone())
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| cs.image.clone());
            let (repository, tag, spec_digest) = split_image(&image);
            let digest = cs
                .image_id
                .find("sha256:")
                .map(|i| cs.image_id[i..].to_string())
                .or(spec_digest);
            containers.push((
                id.to_ascii_lowercase(),
                ContainerMeta {
                    name: cs.name.clone(),
                    image,
                    repository,
                    tag,
                    digest,
                    privileged: from_spec.is_some_and(|(_, _, p)| *p),
                },
            ));
        }
    }
    Some(PodEntry {
        pod: Arc::new(pod),
        containers,
    })
}

#[cfg(test)]
mod tests;
