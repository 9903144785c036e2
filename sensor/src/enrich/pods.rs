//! The node's pod index: what the pod watch knows, keyed the way enrichment
//! asks (container id, pod UID).
//!
//! Kept free of the Kubernetes client types so that it can be filled from a
//! watch, from a test, or from a recorded pod list alike. Writers (the watch
//! task) and the reader (the pipeline thread) share it behind a lock; a
//! generation counter lets the reader notice cheaply that something changed
//! without taking the lock on every event.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use mamori_rules::event::Pod;

/// One container of a pod, as the pod spec and status describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// The image as written in the spec.
    pub image: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:...` of the running image, from `status.imageID`.
    pub digest: Option<String>,
    pub privileged: bool,
}

/// The pod and the containers it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEntry {
    pub pod: Arc<Pod>,
    /// Full container id (no `containerd://` prefix) → container.
    pub containers: Vec<(String, ContainerMeta)>,
}

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<String, PodEntry>,
    /// Full container id → pod UID.
    containers: HashMap<String, String>,
}

/// Shared, cheaply cloneable handle to the index.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<Inner>>,
    generation: Arc<AtomicU64>,
    /// The counters of the watch that fills this index (for metrics).
    pub watch: super::k8s::WatchStats,
}

impl PodIndex {
    pub fn new() -> PodIndex {
        PodIndex::default()
    }

    /// Bumped by every change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Add or replace a pod.
    pub fn upsert(&self, entry: PodEntry) {
        let mut g = self.write();
        let uid = entry.pod.uid.clone();
        remove_locked(&mut g, &uid);
        for (id, _) in &entry.containers {
            g.containers.insert(id.clone(), uid.clone());
        }
        g.pods.insert(uid, entry);
        drop(g);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forget a pod.
    pub fn remove(&self, uid: &str) {
        remove_locked(&mut self.write(), uid);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replace everything (a fresh list after the watch restarted).
    pub fn replace_all(&self, entries: Vec<PodEntry>) {
        let mut g = self.write();
        g.pods.clear();
        g.containers.clear();
        for e in entries {
            let uid = e.pod.uid.clone();
            for (id, _) in &e.containers {
                g.containers.insert(id.clone(), uid.clone());
            }
            g.pods.insert(uid, e);
        }
        drop(g);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn len(&self) -> usize {
        self.read().pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod (and the container, when its id is known to the pod's status)
    /// for a container id and/or pod UID from a cgroup path.
    pub fn lookup(
        &self,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Option<(Arc<Pod>, Option<ContainerMeta>)> {
        let g = self.read();
        let uid = match container_id.and_then(|id| g.containers.get(id)) {
            Some(uid) => uid.as_str(),
            None => pod_uid?,
        };
        let entry = g.pods.get(uid)?;
        let meta = container_id.and_then(|id| {
            entry
                .containers
                .iter()
                .find(|(cid, _)| cid == id)
                .map(|(_, m)| m.clone())
        });
        Some((entry.pod.clone(), meta))
    }
}

fn remove_locked(g: &mut Inner, uid: &str) {
    if let Some(old) = g.pods.remove(uid) {
        for (id, _) in old.containers {
            if g.containers.get(&id).map(String::as_str) == Some(uid) {
                g.containers.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uid: &str, name: &str, ids: &[&str]) -> PodEntry {
        PodEntry {
            pod: Arc::new(Pod {
                uid: uid.into(),
                name: Some(name.into()),
                ..Default::default()
            }),
            containers: ids
                .iter()
                .map(|id| {
                    (
                        id.to_string(),
                        ContainerMeta {
                            name: format!("c-{id}"),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn upsert_lookup_remove() {
        let idx = PodIndex::new();
        let g0 = idx.generation();
        idx.upsert(entry("u1", "a", &["c1", "c2"]));
        assert!(idx.generation() > g0);
        let (pod, meta) = idx.lookup(Some("c2"), None).unwrap();
        assert_eq!(pod.name.as_deref(), Some("a"));
        assert_eq!(meta.unwrap().name, "c-c2");
        // Known pod, container not yet in the status: pod only.
        let (pod, meta) = idx.lookup(Some("c9"), Some("u1")).unwrap();
        assert_eq!(pod.uid, "u1");
        assert!(meta.is_none());
        // A replaced pod drops its old containers.
        idx.upsert(entry("u1", "a", &["c3"]));
        assert!(idx.lookup(Some("c1"), None).is_none());
        assert!(idx.lookup(Some("c3"), None).is_some());
        idx.remove("u1");
        assert!(idx.lookup(Some("c3"), Some("u1")).is_none());
        idx.replace_all(vec![entry("u2", "b", &["c4"])]);
        assert_eq!(idx.len(), 1);
        assert!(idx.lookup(Some("c4"), None).is_some());
    }
}
