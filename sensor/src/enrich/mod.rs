//! Enrichment: which container and pod an event's process belongs to.
//!
//! A stage of its own after the process table: it takes a finished [`Event`]
//! and fills `Event.container`. The container comes from the process's cgroup
//! path ([`cgroup`]), read from `/proc/<pid>/cgroup` once per process and
//! cached in a bounded LRU: the kernel's cgroup id is useless on cgroup v1
//! hosts (EKS AL2 reports 1 for every task), and reading the file works on v1,
//! v2 and hybrid hosts alike. Pod metadata comes from the node's pod index
//! ([`pods`]), filled by a watch ([`k8s`]) and never queried per event.
//!
//! Cache validity: a process changes cgroup only when something moves it —
//! in practice runc moving a container's first process in just before its
//! exec — so an entry is re-read after an exec, when the kernel's cgroup id
//! for the process changes, and when the pid was reused (different start
//! time). An entry whose pod metadata was missing is rebuilt when the pod
//! index changes, so events from a container the watch has not delivered yet
//! carry the cgroup's ids, and the next events after delivery carry the pod.

pub mod cgroup;
pub mod k8s;
pub mod pods;

use std::{
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
};

use lru::LruCache;

use crate::event::{Container, Event, EvtType, Pod};

use self::{cgroup::CgroupInfo, pods::PodIndex};

/// Processes whose container is remembered; a node rarely runs more.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024;

/// Counters, for logs and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnrichStats {
    /// Events enriched from the cache without any read.
    pub hits: u64,
    /// `/proc/<pid>/cgroup` reads.
    pub proc_reads: u64,
    /// Reads that failed (the process was gone): resolved from an ancestor.
    pub proc_read_failures: u64,
    /// Processes dropped from the full cache.
    pub evictions: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    start_ts: u64,
    cgroup_id: u64,
    info: CgroupInfo,
    container: Arc<Container>,
    /// Pod index generation the container was built against, when the pod
    /// or the container was not (fully) known; `None` when complete.
    incomplete_at: Option<u64>,
}

/// Resolves processes to containers and pods. Owned by the pipeline thread.
pub struct Enricher {
    proc_root: PathBuf,
    cache: LruCache<u32, Entry>,
    pods: Option<PodIndex>,
    host: Arc<Container>,
    stats: EnrichStats,
}

impl Enricher {
    /// An enricher reading `<proc_root>/<pid>/cgroup`, with pod metadata from
    /// `pods` when running on Kubernetes.
    pub fn new(proc_root: impl Into<PathBuf>, capacity: usize, pods: Option<PodIndex>) -> Enricher {
        Enricher {
            proc_root: proc_root.into(),
            cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            pods,
            host: Arc::new(Container::host()),
            stats: EnrichStats::default(),
        }
    }

    /// The enricher for the live pipeline: `/proc` of this host, and pod
    /// metadata when running on Kubernetes (see [`k8s::start`]). Must be
    /// called inside the tokio runtime.
    pub fn for_this_node() -> Enricher {
        Enricher::new("/proc", DEFAULT_CACHE_SIZE, k8s::start_if_configured())
    }

    pub fn stats(&self) -> &EnrichStats {
        &self.stats
    }

    /// Fill `ev.container`. `drop` events (mamori's own) are left alone.
    pub fn enrich(&mut self, ev: &mut Event) {
        if ev.evt_type == EvtType::Drop {
            return;
        }
        let pid = ev.proc.pid;
        let exec_done = matches!(ev.evt_type, EvtType::Execve | EvtType::Execveat) && ev.res == 0;
        let generation = self.pods.as_ref().map(PodIndex::generation).unwrap_or(0);
        let reuse = match self.cache.get(&pid) {
            Some(e)
                if !exec_done
                    && (ev.proc.start_ts == 0
                        || e.start_ts == 0
                        || e.start_ts == ev.proc.start_ts)
                    && (ev.proc.cgroup_id == 0 || e.cgroup_id == ev.proc.cgroup_id) =>
            {
                if e.incomplete_at.is_some_and(|g| g != generation) {
                    let info = e.info.clone();
                    let (container, incomplete_at) = self.build(&info, generation);
                    let e = self.cache.get_mut(&pid).expect("entry just seen");
                    e.container = container;
                    e.incomplete_at = incomplete_at;
                }
                true
            }
            _ => false,
        };
        if reuse {
            self.stats.hits += 1;
            ev.container = self.cache.peek(&pid).map(|e| e.container.clone());
        } else {
            ev.container = self.resolve(ev, generation);
        }
        if ev.evt_type == EvtType::Procexit {
            self.cache.pop(&pid);
        }
    }

    /// Read the process's cgroup file; fall back to the nearest cached
    /// ancestor (cgroups are inherited across fork) when it is gone.
    fn resolve(&mut self, ev: &Event, generation: u64) -> Option<Arc<Container>> {
        let pid = ev.proc.pid;
        self.stats.proc_reads += 1;
        let info = match read_proc_cgroup(&self.proc_root, pid) {
            Ok(text) => cgroup::parse_proc_cgroup(&text),
            Err(_) => {
                self.stats.proc_read_failures += 1;
                let parents =
                    std::iter::once(ev.proc.ppid).chain(ev.proc.ancestors.iter().map(|a| a.pid));
                for ppid in parents {
                    if let Some(e) = self.cache.peek(&ppid) {
                        return Some(e.container.clone());
                    }
                }
                return None;
            }
        };
        let (container, incomplete_at) = self.build(&info, generation);
        let entry = Entry {
            start_ts: ev.proc.start_ts,
            cgroup_id: ev.proc.cgroup_id,
            info,
            container: container.clone(),
            incomplete_at,
        };
        if let Some((old_pid, _)) = self.cache.push(pid, entry) {
            if old_pid != pid {
                self.stats.evictions += 1;
            }
        }
        Some(container)
    }

    /// The container value for a cgroup, joined with the pod index.
    fn build(&self, info: &CgroupInfo, generation: u64) -> (Arc<Container>, Option<u64>) {
        if info.is_host() {
            return (self.host.clone(), None);
        }
        let full = info.container_id.clone().unwrap_or_default();
        let mut c = Container {
            id: cgroup::short_id(&full).to_string(),
            full_id: full,
            runtime: info.runtime.map(str::to_string),
            ..Default::default()
        };
        let found = self
            .pods
            .as_ref()
            .and_then(|p| p.lookup(info.container_id.as_deref(), info.pod_uid.as_deref()));
        let complete = match found {
            Some((pod, meta)) => {
                let complete = meta.is_some() || info.container_id.is_none();
                if let Some(m) = meta {
                    c.name = Some(m.name);
                    c.image = Some(m.image);
                    c.image_repository = Some(m.repository);
                    c.image_tag = m.tag;
                    c.image_digest = m.digest;
                    c.privileged = Some(m.privileged);
                }
                c.pod = Some(pod);
                complete
            }
            None => {
                c.pod = info.pod_uid.as_ref().map(|uid| {
                    Arc::new(Pod {
                        uid: uid.clone(),
                        ..Default::default()
                    })
                });
                false
            }
        };
        // Off Kubernetes there is nothing more to wait for.
        let incomplete_at = (!complete && self.pods.is_some()).then_some(generation);
        (Arc::new(c), incomplete_at)
    }
}

fn read_proc_cgroup(root: &Path, pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(root.join(pid.to_string()).join("cgroup"))
}

#[cfg(test)]
mod tests {
    use super::{pods::*, *};
    use crate::event::Process;

    const ID: &str = "3f2a9c7e5b1d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a";
    const UID: &str = "1c0b6a5e-8f3d-4b2a-9e7c-6d5f4a3b2c1d";

    fn fake_proc(dir: &Path, pid: u32, content: &str) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup"), content).unwrap();
    }

    fn ev(t: EvtType, pid: u32, ppid: u32) -> Event {
        Event {
            ts: 1,
            evt_type: t,
            res: 0,
            proc: Process {
                pid,
                ppid,
                start_ts: 7,
                ..Default::default()
            },
            fd: None,
            open: None,
            exec: None,
            lifecycle: None,
            container: None,
            drops: None,
        }
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mamori-enrich-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

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
    fn gone_process_inherits_from_parent_and_missing_stays_none() {
        let root = tempdir("gone");
        fake_proc(
            &root,
            30,
            &format!("0::/kubepods.slice/cri-containerd-{ID}.scope\n"),
        );
        let mut en = Enricher::new(&root, 16, None);
        en.enrich(&mut ev(EvtType::Clone, 30, 1));
        let mut child = ev(EvtType::Execve, 31, 30);
        en.enrich(&mut child);
        assert_eq!(child.container.as_ref().unwrap().full_id, ID);
        assert_eq!(en.stats().proc_read_failures, 1);
        let mut orphan = ev(EvtType::Openat, 40, 39);
        en.enrich(&mut orphan);
        assert!(orphan.container.is_none());
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
        idx.upsert(PodEntry {
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
                    privileged: true,
                },
            )],
        });
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
