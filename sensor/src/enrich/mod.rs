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
//! index changes.
//!
//! Late pods: a new container usually makes its first syscalls before the
//! pod watch reports its container id (the kubelet writes the status after
//! the start). [`Enricher::admit`] therefore holds the events of a process
//! whose cgroup names a Kubernetes pod the index does not fully know yet, for
//! at most [`HOLD_FOR`] and at most [`HOLD_MAX`] events, and releases them,
//! in order, as soon as the index knows the container — or, when the time is
//! up, with what the cgroup and the pod (if known) say. Nothing is dropped;
//! later events of a held process wait behind it so its order is kept
//! (events of other processes pass). A container whose hold expired once is
//! not held again, so a container the API never reports (a pod sandbox)
//! costs one delay, not one per event.

pub mod cgroup;
pub mod k8s;
pub mod pods;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use lru::LruCache;

use crate::event::{Container, Event, EvtType, Pod};

use self::{cgroup::CgroupInfo, pods::PodIndex};

/// Processes whose container is remembered; a node rarely runs more.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024;
/// Longest an event waits for its pod's metadata.
pub const HOLD_FOR: Duration = Duration::from_millis(1000);
/// Most events held at once; beyond, events pass with what is known.
pub const HOLD_MAX: usize = 8192;
/// Containers remembered as "never held again".
const GAVE_UP_MAX: usize = 4096;

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
    /// Events held for pod metadata.
    pub held: u64,
    /// Held events released with the metadata complete.
    pub released_complete: u64,
    /// Held events released when their time was up.
    pub released_expired: u64,
    /// Events not held because the hold was full.
    pub hold_full: u64,
}

struct Held {
    ev: Event,
    since: Instant,
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
    /// `pods` when running on Kubernetes.
    pub fn new(proc_root: impl Into<PathBuf>, capacity: usize, pods: Option<PodIndex>) -> Enricher {
        Enricher {
            proc_root: proc_root.into(),
            cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            pods,
            host: Arc::new(Container::host()),
            stats: EnrichStats::default(),
            held: VecDeque::new(),
            held_pids: HashMap::new(),
            held_generation: 0,
            gave_up: HashSet::new(),
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

    /// Enrich `ev` and hand it to `out` — now, or after a short hold while
    /// its pod's metadata is on the way (see the module docs). Also releases
    /// held events that became ready.
    pub fn admit<E>(
        &mut self,
        mut ev: Event,
        out: &mut impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), E> {
        self.enrich(&mut ev);
        let pid = ev.proc.pid;
        let wait = self.pods.is_some()
            && (self.held_pids.contains_key(&pid)
                || ev
                    .container
                    .as_deref()
                    .is_some_and(|c| waiting_for_pod(c) && !self.gave_up.contains(&c.full_id)));
        if wait && self.held.len() < HOLD_MAX {
            self.stats.held += 1;
            *self.held_pids.entry(pid).or_insert(0) += 1;
            self.held.push_back(Held {
                ev,
                since: Instant::now(),
            });
        } else {
            if wait {
                self.stats.hold_full += 1;
            }
            out(&ev)?;
        }
        self.release(out, false)
    }

    /// Hand held events that are complete or due to `out`, in order; with
    /// `all`, every held event (at shutdown). Cheap when nothing changed.
    pub fn release<E>(
        &mut self,
        out: &mut impl FnMut(&Event) -> Result<(), E>,
        all: bool,
    ) -> Result<(), E> {
        let Some(front) = self.held.front() else {
            return Ok(());
        };
        let generation = self.pods.as_ref().map(PodIndex::generation).unwrap_or(0);
        let now = Instant::now();
        let changed = generation != self.held_generation;
        if !all && !changed && now.duration_since(front.since) < HOLD_FOR {
            return Ok(());
        }
        self.held_generation = generation;
        let mut keep = VecDeque::new();
        let mut blocked: HashSet<u32> = HashSet::new();
        while let Some(mut h) = self.held.pop_front() {
            if changed {
                if let Some(c) = h.ev.container.as_deref() {
                    h.ev.container = Some(self.rebuild(c, generation));
                }
            }
            let ready = !h.ev.container.as_deref().is_some_and(waiting_for_pod);
            let expired = now.duration_since(h.since) >= HOLD_FOR;
            let pid = h.ev.proc.pid;
            if (all || ready || expired) && !blocked.contains(&pid) {
                if ready {
                    self.stats.released_complete += 1;
                } else {
                    self.stats.released_expired += 1;
                }
                if expired && !ready {
                    if let Some(c) = h.ev.container.as_deref() {
                        if self.gave_up.len() >= GAVE_UP_MAX {
                            self.gave_up.clear();
                        }
                        self.gave_up.insert(c.full_id.clone());
                    }
                }
                if let Some(n) = self.held_pids.get_mut(&pid) {
                    *n -= 1;
                    if *n == 0 {
                        self.held_pids.remove(&pid);
                    }
                }
                if let Err(e) = out(&h.ev) {
                    keep.extend(self.held.drain(..));
                    self.held = keep;
                    return Err(e);
                }
            } else {
                blocked.insert(pid);
                keep.push_back(h);
            }
        }
        self.held = keep;
        Ok(())
    }

    /// Events currently held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A held event's container, joined again with the (changed) index.
    fn rebuild(&self, c: &Container, generation: u64) -> Arc<Container> {
        let info = CgroupInfo {
            container_id: (!c.full_id.is_empty()).then(|| c.full_id.clone()),
            runtime: None,
            pod_uid: c.pod.as_ref().map(|p| p.uid.clone()),
        };
        let (built, _) = self.build(&info, generation);
        let mut built = Arc::unwrap_or_clone(built);
        built.runtime = c.runtime.clone();
        Arc::new(built)
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

/// A Kubernetes container (its cgroup names a pod) whose pod or container
/// metadata is not known yet.
fn waiting_for_pod(c: &Container) -> bool {
    !c.full_id.is_empty()
        && c.pod
            .as_deref()
            .is_some_and(|p| p.name.is_none() || c.name.is_none())
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

    fn web_pod() -> PodEntry {
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

    #[test]
    fn held_until_the_pod_arrives_in_order_others_pass() {
        let root = tempdir("hold");
        fake_proc(
            &root,
            60,
            &format!("4:pids:/kubepods/burstable/pod{UID}/{ID}\n"),
        );
        fake_proc(&root, 61, "0::/\n");
        let idx = PodIndex::new();
        let mut en = Enricher::new(&root, 16, Some(idx.clone()));
        let mut seen: Vec<(u32, EvtType, Option<String>)> = Vec::new();
        let mut out = |e: &Event| -> Result<(), ()> {
            seen.push((
                e.proc.pid,
                e.evt_type,
                e.container.as_ref().and_then(|c| c.name.clone()),
            ));
            Ok(())
        };
        en.admit(ev(EvtType::Execve, 60, 1), &mut out).unwrap();
        en.admit(ev(EvtType::Openat, 60, 1), &mut out).unwrap();
        en.admit(ev(EvtType::Openat, 61, 1), &mut out).unwrap();
        assert_eq!(en.held(), 2);
        idx.upsert(web_pod());
        en.release(&mut out, false).unwrap();
        assert_eq!(en.held(), 0);
        // Known now: no more holding.
        en.admit(ev(EvtType::Connect, 60, 1), &mut out).unwrap();
        assert_eq!(en.held(), 0);
        assert_eq!(en.stats().released_complete, 2);
        assert_eq!(
            seen,
            vec![
                (61, EvtType::Openat, None),
                (60, EvtType::Execve, Some("web".into())),
                (60, EvtType::Openat, Some("web".into())),
                (60, EvtType::Connect, Some("web".into())),
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn hold_expires_once_per_container_and_shutdown_releases_all() {
        let root = tempdir("expire");
        fake_proc(
            &root,
            70,
            &format!("4:pids:/kubepods/burstable/pod{UID}/{ID}\n"),
        );
        let mut en = Enricher::new(&root, 16, Some(PodIndex::new()));
        let mut n = 0;
        let mut out = |_: &Event| -> Result<(), ()> {
            n += 1;
            Ok(())
        };
        en.admit(ev(EvtType::Openat, 70, 1), &mut out).unwrap();
        assert_eq!(en.held(), 1);
        // Shutdown: everything out, nothing lost.
        en.release(&mut out, true).unwrap();
        assert_eq!(en.held(), 0);
        // Expiry: the container is not held again.
        en.admit(ev(EvtType::Openat, 70, 1), &mut out).unwrap();
        en.held[0].since -= HOLD_FOR;
        en.release(&mut out, false).unwrap();
        assert_eq!(en.stats().released_expired, 2);
        en.admit(ev(EvtType::Openat, 70, 1), &mut out).unwrap();
        assert_eq!(en.held(), 0);
        // Off Kubernetes nothing is ever held.
        let mut bare = Enricher::new(&root, 16, None);
        bare.admit(ev(EvtType::Openat, 70, 1), &mut out).unwrap();
        assert_eq!(bare.held(), 0);
        assert_eq!(n, 4);
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
