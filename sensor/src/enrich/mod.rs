//! Enrichment: which container and pod an event's process belongs to.
//!
//! A stage of its own after the process table: it takes a finished [`Event`]
//! and fills `Event.container`. The container comes from the process's cgroup
//! path ([`cgroup`]), read from `/proc/<pid>/cgroup` once per process and
//! cached per pid in a bounded LRU: the kernel's cgroup id is useless on
//! cgroup v1 hosts (EKS AL2 reports 1 for every task), and reading the file
//! works on v1, v2 and hybrid hosts alike. Pod metadata comes from the node's
//! pod index ([`pods`]), filled by a watch ([`k8s`]) and never queried per
//! event.
//!
//! Where things are:
//! - this file: the [`Enricher`] and its per-event entry point
//!   [`Enricher::enrich`], its settings and counters ([`EnrichStats`]);
//! - `resolve.rs`: the per-pid and per-cgroup-id caches, and how a process is
//!   resolved to a container — its cgroup file, else its kernel cgroup id,
//!   else its ancestors — and joined with the pod index;
//! - `hold.rs`: [`Enricher::admit`] / [`Enricher::release`], which hold a new
//!   container's first events for a moment while its pod metadata arrives;
//! - [`cgroup`] / [`cgroupfs`]: parsing cgroup paths, and the unified
//!   hierarchy's `inode → path` index; [`pods`] / [`k8s`]: the pod index and
//!   the watch that fills it; [`runtime`]: what the node's container
//!   runtimes (CRI, docker, podman) say about each container id.
//!
//! Where each container field comes from: the id and the pod uid from the
//! cgroup path; name, image, digest, privileged and start time from the
//! runtime (else, for name/image/privileged, from the pod watch); pod name
//! and namespace from the pod watch, else from the runtime's CRI labels or
//! pod sandbox; pod labels, workload and service account from the pod watch
//! only.
//!
//! Cache validity: a process changes cgroup only when something moves it —
//! in practice runc moving a container's first process in just before its
//! exec — so an entry is re-read after an exec, when the kernel's cgroup id
//! for the process changes, and when the pid was reused (different start
//! time). An entry whose pod metadata was missing is rebuilt when the pod
//! index changes.

pub mod cgroup;
pub mod cgroupfs;
mod hold;
pub mod k8s;
pub mod pods;
mod resolve;
pub mod runtime;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    num::NonZeroUsize,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use lru::LruCache;

use mamori_rules::event::{Container, Event, EvtType};

use self::{
    cgroupfs::CgroupIndex,
    hold::Held,
    pods::PodIndex,
    resolve::{Entry, IdEntry},
    runtime::{EnginesConfig, RuntimeIndex},
};

/// Processes whose container is remembered; a node rarely runs more.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024;
/// cgroups (by kernel id) whose container is remembered; a node has a few
/// hundred.
pub const DEFAULT_CGROUP_ID_CACHE_SIZE: usize = 4096;
/// Longest an event waits for its pod's metadata.
pub const HOLD_FOR: Duration = Duration::from_millis(1000);
/// Most events held at once; beyond, events pass with what is known.
pub const HOLD_MAX: usize = 8192;

/// Counters, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnrichStats {
    /// Events enriched from the cache without any read.
    pub hits: u64,
    /// `/proc/<pid>/cgroup` reads.
    pub proc_reads: u64,
    /// Reads that failed (the process was gone): resolved by cgroup id or
    /// from an ancestor.
    pub proc_read_failures: u64,
    /// Processes dropped from the full cache.
    pub evictions: u64,
    /// Gone processes resolved from the cgroup id cache.
    pub cgroup_id_hits: u64,
    /// cgroup ids dropped from the full cgroup id cache.
    pub cgroup_id_evictions: u64,
    /// Walks of the cgroup v2 hierarchy.
    pub cgroup_walks: u64,
    /// cgroup ids found in the walked hierarchy.
    pub cgroup_walk_hits: u64,
    /// cgroup ids not found there (gone, or no walk was due yet).
    pub cgroup_walk_misses: u64,
    /// Events held for pod metadata.
    pub held: u64,
    /// Held events released with the metadata complete.
    pub released_complete: u64,
    /// Held events released when their time was up.
    pub released_expired: u64,
    /// Events not held because the hold was full.
    pub hold_full: u64,
}

/// Resolves processes to containers and pods. Owned by the pipeline thread.
pub struct Enricher {
    proc_root: PathBuf,
    cache: LruCache<u32, Entry>,
    /// Containers by kernel cgroup id (unified hierarchy), for processes
    /// gone before their event was handled.
    ids: LruCache<u64, IdEntry>,
    /// The unified hierarchy, when there is one.
    cgroupfs: Option<CgroupIndex>,
    pods: Option<PodIndex>,
    /// Container metadata from the node's runtimes, when one was found.
    runtime: Option<RuntimeIndex>,
    host: Arc<Container>,
    stats: EnrichStats,
    held: VecDeque<Held>,
    /// Held events per pid (later events of a held process wait too).
    held_pids: HashMap<u32, u32>,
    /// Pod index generation the held events were last rebuilt against.
    held_generation: u64,
    /// Full ids of containers whose hold expired.
    gave_up: HashSet<String>,
}

impl Enricher {
    /// An enricher reading `<proc_root>/<pid>/cgroup`, with pod metadata from
    /// `pods` when running on Kubernetes. Without a cgroup root (see
    /// [`Enricher::with_cgroup_root`]) gone processes are resolved from their
    /// ancestors only.
    pub fn new(proc_root: impl Into<PathBuf>, capacity: usize, pods: Option<PodIndex>) -> Enricher {
        Enricher {
            proc_root: proc_root.into(),
            cache: LruCache::new(lru_size(capacity)),
            ids: LruCache::new(lru_size(DEFAULT_CGROUP_ID_CACHE_SIZE)),
            cgroupfs: None,
            pods,
            runtime: None,
            host: Arc::new(Container::host()),
            stats: EnrichStats::default(),
            held: VecDeque::new(),
            held_pids: HashMap::new(),
            held_generation: 0,
            gave_up: HashSet::new(),
        }
    }

    /// Where the unified (v2) cgroup hierarchy is mounted (see
    /// [`cgroupfs::unified_root`]): enables resolving gone processes by their
    /// kernel cgroup id.
    pub fn with_cgroup_root(mut self, root: Option<PathBuf>) -> Enricher {
        self.cgroupfs = root.map(CgroupIndex::new);
        self
    }

    /// Container metadata from the node's runtimes ([`runtime::start`]).
    pub fn with_runtime(mut self, runtime: Option<RuntimeIndex>) -> Enricher {
        self.runtime = runtime;
        self
    }

    /// Changes whenever the pod index or the runtime index changed (both
    /// only grow their counters, so the sum does too).
    fn generation(&self) -> u64 {
        let pods = self.pods.as_ref().map(PodIndex::generation).unwrap_or(0);
        let runtime = self.runtime.as_ref().map(RuntimeIndex::generation);
        pods.wrapping_add(runtime.unwrap_or(0))
    }

    /// How many cgroup ids to remember (default
    /// [`DEFAULT_CGROUP_ID_CACHE_SIZE`]).
    pub fn with_cgroup_id_capacity(mut self, capacity: usize) -> Enricher {
        self.ids = LruCache::new(lru_size(capacity));
        self
    }

    /// The enricher for the live pipeline: `/proc` of this host, its unified
    /// cgroup hierarchy if any, pod metadata when running on Kubernetes
    /// (see [`k8s::start_if_configured`]) and container metadata from the
    /// runtimes `engines` finds ([`runtime::start`]). Must be called inside
    /// the tokio runtime.
    pub fn for_this_node(engines: &EnginesConfig) -> Enricher {
        let root = cgroupfs::unified_root();
        match &root {
            Some(r) => log::debug!("cgroup v2 hierarchy at {}", r.display()),
            None => log::debug!("no cgroup v2 hierarchy: gone processes resolve by ancestor"),
        }
        Enricher::new("/proc", DEFAULT_CACHE_SIZE, k8s::start_if_configured())
            .with_cgroup_root(root)
            .with_runtime(runtime::start(engines))
    }

    pub fn stats(&self) -> &EnrichStats {
        &self.stats
    }

    /// Fill `ev.container`. `drop` events (mamori's own) are left alone.
    pub fn enrich(&mut self, ev: &mut Event) {
        if ev.evt_type == EvtType::Drop {
            return;
        }
        let generation = self.generation();
        ev.container = match self.cached(ev, generation) {
            Some(container) => {
                self.stats.hits += 1;
                Some(container)
            }
            None => self.resolve(ev, generation),
        };
        if ev.evt_type == EvtType::Procexit {
            self.cache.pop(&ev.proc.pid);
        }
    }

    /// The pod index, when running on Kubernetes.
    pub fn pods(&self) -> Option<&PodIndex> {
        self.pods.as_ref()
    }

    /// Events currently held (see [`Enricher::admit`]).
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

fn lru_size(capacity: usize) -> NonZeroUsize {
    NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)
}

/// What the tests of every enrichment file share: a fake `/proc`, events.
#[cfg(test)]
mod fixtures {
    use std::path::{Path, PathBuf};

    use std::sync::Arc;

    use mamori_rules::event::{Event, EvtType, Pod, Process};

    use super::pods::{ContainerMeta, PodEntry};

    pub(super) const ID: &str = "3f2a9c7e5b1d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a";
    pub(super) const UID: &str = "1c0b6a5e-8f3d-4b2a-9e7c-6d5f4a3b2c1d";

    pub(super) fn fake_proc(dir: &Path, pid: u32, content: &str) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup"), content).unwrap();
    }

    pub(super) fn ev(t: EvtType, pid: u32, ppid: u32) -> Event {
        Event::new(
            1,
            t,
            0,
            Process {
                pid,
                ppid,
                start_ts: 7,
                ..Default::default()
            },
        )
    }

    pub(super) fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mamori-enrich-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The pod `web-1` with its container `web` (nginx), known to the API.
    pub(super) fn web_pod() -> PodEntry {
        PodEntry {
            pod: Arc::new(Pod {
                uid: UID.into(),
                name: Some("web-1".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            }),
            containers: vec![(
                ID.into(),
                ContainerMeta {
                    name: "web".into(),
                    image: "nginx:1.27".into(),
                    repository: "nginx".into(),
                    tag: Some("1.27".into()),
                    digest: None,
                    privileged: false,
                },
            )],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, pods::*, *};

    #[test]
    fn host_container_and_cache() {
        let root = tempdir("cache");
        fake_proc(&root, 10, "0::/\n1:name=systemd:/user.slice\n");
        fake_proc(
            &root,
            20,
            &format!("4:pids:/kubepods/burstable/pod{UID}/{ID}\n0::/\n"),
        );
        let mut en = Enricher::new(&root, 4, None);
        let mut e = ev(EvtType::Openat, 10, 1);
        en.enrich(&mut e);
        assert!(e.container.as_ref().unwrap().is_host());
        let mut e = ev(EvtType::Connect, 20, 1);
        en.enrich(&mut e);
        let c = e.container.clone().unwrap();
        assert_eq!(c.id, &ID[..12]);
        assert_eq!(c.full_id, ID);
        assert_eq!(c.pod.as_ref().unwrap().uid, UID);
        // Second event: from the cache, even if /proc changed underneath.
        fake_proc(&root, 20, "0::/\n");
        en.enrich(&mut e);
        assert_eq!(e.container.as_ref().unwrap().full_id, ID);
        assert_eq!(en.stats().hits, 1);
        assert_eq!(en.stats().proc_reads, 2);
        // An exec re-reads (runc moves the process before exec).
        let mut x = ev(EvtType::Execve, 20, 1);
        en.enrich(&mut x);
        assert!(x.container.as_ref().unwrap().is_host());
        // drop events are mamori's own.
        let mut d = ev(EvtType::Drop, 10, 1);
        en.enrich(&mut d);
        assert!(d.container.is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bounded_with_eviction_count_and_pid_reuse() {
        let root = tempdir("lru");
        for pid in 1..=5 {
            fake_proc(&root, pid, "0::/\n");
        }
        let mut en = Enricher::new(&root, 2, None);
        for pid in 1..=5 {
            en.enrich(&mut ev(EvtType::Openat, pid, 0));
        }
        assert_eq!(en.stats().evictions, 3);
        // pid reused: different start time, re-read.
        let reads = en.stats().proc_reads;
        let mut e = ev(EvtType::Openat, 5, 0);
        e.proc.start_ts = 99;
        en.enrich(&mut e);
        assert_eq!(en.stats().proc_reads, reads + 1);
        // exit forgets.
        en.enrich(&mut ev(EvtType::Procexit, 5, 0));
        en.enrich(&mut ev(EvtType::Openat, 5, 0));
        assert_eq!(en.stats().proc_reads, reads + 3);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn pod_metadata_arrives_after_the_first_events() {
        let root = tempdir("late");
        fake_proc(
            &root,
            50,
            &format!("4:pids:/kubepods/burstable/pod{UID}/{ID}\n"),
        );
        let idx = PodIndex::new();
        let mut en = Enricher::new(&root, 16, Some(idx.clone()));
        let mut e = ev(EvtType::Openat, 50, 1);
        en.enrich(&mut e);
        let c = e.container.clone().unwrap();
        assert_eq!(c.pod.as_ref().unwrap().uid, UID);
        assert!(c.name.is_none());
        let mut pod = web_pod();
        pod.containers[0].1.privileged = true;
        idx.upsert(pod);
        en.enrich(&mut e);
        let c = e.container.clone().unwrap();
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.privileged, Some(true));
        assert_eq!(c.pod.as_ref().unwrap().namespace.as_deref(), Some("prod"));
        // Complete now: later events are plain hits, no rebuilds.
        en.enrich(&mut e);
        assert!(Arc::ptr_eq(&c, e.container.as_ref().unwrap()));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
