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
//! Gone processes, and why the cgroup id is a second key: events are handled
//! a few milliseconds after they happen, and a short-lived process (`cat` of
//! a token in a `kubectl exec`, a container whose first process is a one-shot
//! tool) may have exited and been reaped by then, so `/proc/<pid>/cgroup` is
//! gone. Its nearest cached ancestor is no answer for exactly the processes
//! that matter: the parent of a container's first process, or of a
//! `kubectl exec` / `runc exec` child, is runc or the containerd shim — on
//! the host. But every event also carries the kernel's cgroup id of its task
//! (`proc.cgroup_id`, the task's cgroup in the unified v2 hierarchy, which
//! runc joins on v2 and on hybrid hosts alike), taken when the event
//! happened. Wherever the unified hierarchy is mounted ([`cgroupfs`]), that
//! id is the inode of the cgroup's directory, and ids are never reused. So:
//!
//! - every successful read whose event has a meaningful id (> 1; 1 is the
//!   root, and the only id on pure v1 hosts) also remembers `id → container`
//!   in a second bounded LRU. The id remembered is the inode of the read's v2
//!   path (`stat`, once per new cgroup), not the event's id taken on faith:
//!   runc's first process is read after it moved into the container, while
//!   its early events still carry the host cgroup's id, and a host cgroup
//!   must never be remembered as the container;
//! - when the read fails, the event's id is looked up there first (the
//!   `kubectl exec` case: the container's main process was read before);
//! - then in an `inode → path` index of the unified hierarchy, re-walked on
//!   a miss at most every [`cgroupfs::WALK_EVERY`] (a brand-new container
//!   whose only process was short-lived), the path parsed like the file's;
//! - and only then the ancestors, as before.
//!
//! What the id cannot do: on pure v1 hosts it is 1 for everyone, and a
//! container whose cgroup was already removed when its event is handled is
//! not in the hierarchy any more; both fall back to the ancestors.
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
pub mod cgroupfs;
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

use mamori_rules::event::{Container, Event, EvtType, Pod};

use self::{cgroup::CgroupInfo, cgroupfs::CgroupIndex, pods::PodIndex};

/// Processes whose container is remembered; a node rarely runs more.
pub const DEFAULT_CACHE_SIZE: usize = 16 * 1024;
/// cgroups (by kernel id) whose container is remembered; a node has a few
/// hundred.
pub const DEFAULT_CGROUP_ID_CACHE_SIZE: usize = 4096;
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

/// What a cgroup (by kernel id) is.
#[derive(Debug, Clone)]
struct IdEntry {
    info: CgroupInfo,
    container: Arc<Container>,
    incomplete_at: Option<u64>,
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

    /// How many cgroup ids to remember (default
    /// [`DEFAULT_CGROUP_ID_CACHE_SIZE`]).
    pub fn with_cgroup_id_capacity(mut self, capacity: usize) -> Enricher {
        self.ids = LruCache::new(lru_size(capacity));
        self
    }

    /// The enricher for the live pipeline: `/proc` of this host, its unified
    /// cgroup hierarchy if any, and pod metadata when running on Kubernetes
    /// (see [`k8s::start`]). Must be called inside the tokio runtime.
    pub fn for_this_node() -> Enricher {
        let root = cgroupfs::unified_root();
        match &root {
            Some(r) => log::debug!("cgroup v2 hierarchy at {}", r.display()),
            None => log::debug!("no cgroup v2 hierarchy: gone processes resolve by ancestor"),
        }
        Enricher::new("/proc", DEFAULT_CACHE_SIZE, k8s::start_if_configured())
            .with_cgroup_root(root)
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

    /// Enrich `ev` and return it when it is ready now; `None` when it is held
    /// for a short while because its pod's metadata is on the way (see the
    /// module docs; [`Enricher::release`] returns it later, in order).
    pub fn admit(&mut self, mut ev: Event) -> Option<Event> {
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
            return None;
        }
        if wait {
            self.stats.hold_full += 1;
        }
        Some(ev)
    }

    /// Held events that are complete or due, in order; with `all`, every
    /// held event (at shutdown). Cheap (and allocation-free) when nothing
    /// changed.
    pub fn release(&mut self, all: bool) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(front) = self.held.front() else {
            return out;
        };
        let generation = self.pods.as_ref().map(PodIndex::generation).unwrap_or(0);
        let now = Instant::now();
        let changed = generation != self.held_generation;
        if !all && !changed && now.duration_since(front.since) < HOLD_FOR {
            return out;
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
                out.push(h.ev);
            } else {
                blocked.insert(pid);
                keep.push_back(h);
            }
        }
        self.held = keep;
        out
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

    /// Read the process's cgroup file. When it is gone: the event's cgroup
    /// id (cached, or found in the hierarchy), else the nearest cached
    /// ancestor (cgroups are inherited across fork).
    fn resolve(&mut self, ev: &Event, generation: u64) -> Option<Arc<Container>> {
        let pid = ev.proc.pid;
        self.stats.proc_reads += 1;
        let text = match read_proc_cgroup(&self.proc_root, pid) {
            Ok(text) => text,
            Err(_) => {
                self.stats.proc_read_failures += 1;
                if let Some(c) = self.by_cgroup_id(ev.proc.cgroup_id, generation) {
                    return Some(c);
                }
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
        let info = cgroup::parse_proc_cgroup(&text);
        let (container, incomplete_at) = self.build(&info, generation);
        if ev.proc.cgroup_id > 1 {
            let built = (&info, &container, incomplete_at);
            self.remember_cgroup(&text, ev.proc.cgroup_id, built, generation);
        }
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

    /// After a successful read: remember the container of the read's v2
    /// cgroup by its id — the directory's inode, checked with a `stat`, so a
    /// process that moved since its event (runc's first process) cannot map
    /// its old cgroup to its new container. Once per cgroup: ids are never
    /// reused, so a known id needs no new `stat`.
    fn remember_cgroup(
        &mut self,
        text: &str,
        event_id: u64,
        (info, container, incomplete_at): (&CgroupInfo, &Arc<Container>, Option<u64>),
        generation: u64,
    ) {
        let Some(root) = self.cgroupfs.as_ref().map(CgroupIndex::root) else {
            return;
        };
        if self.ids.promote(&event_id) {
            return;
        }
        let Some(path) = cgroup::unified_path(text) else {
            return;
        };
        let Some(id) = cgroupfs::dir_id(root, path).filter(|&id| id > 1) else {
            return;
        };
        // What the v2 path alone says (what a walk would find for this id);
        // the same as the whole file says, unless v1 and v2 disagree.
        let v2 = cgroup::parse_path(path);
        let (container, incomplete_at) = if v2 == *info {
            (container.clone(), incomplete_at)
        } else {
            self.build(&v2, generation)
        };
        self.push_id(id, v2, container, incomplete_at);
    }

    /// The container of cgroup `id` (a gone process's): from the id cache,
    /// else from the hierarchy's index (re-walked on a miss when due).
    fn by_cgroup_id(&mut self, id: u64, generation: u64) -> Option<Arc<Container>> {
        if id <= 1 {
            return None;
        }
        if let Some(e) = self.ids.get(&id) {
            self.stats.cgroup_id_hits += 1;
            if e.incomplete_at.is_none_or(|g| g == generation) {
                return Some(e.container.clone());
            }
            let info = e.info.clone();
            let (container, incomplete_at) = self.build(&info, generation);
            if let Some(e) = self.ids.get_mut(&id) {
                e.container = container.clone();
                e.incomplete_at = incomplete_at;
            }
            return Some(container);
        }
        let found = self.cgroupfs.as_mut()?.find(id, Instant::now());
        if found.walked {
            self.stats.cgroup_walks += 1;
        }
        let Some(path) = found.path else {
            self.stats.cgroup_walk_misses += 1;
            return None;
        };
        self.stats.cgroup_walk_hits += 1;
        let info = cgroup::parse_path(&path);
        let (container, incomplete_at) = self.build(&info, generation);
        self.push_id(id, info, container.clone(), incomplete_at);
        Some(container)
    }

    fn push_id(
        &mut self,
        id: u64,
        info: CgroupInfo,
        container: Arc<Container>,
        incomplete_at: Option<u64>,
    ) {
        let entry = IdEntry {
            info,
            container,
            incomplete_at,
        };
        if let Some((old, _)) = self.ids.push(id, entry) {
            if old != id {
                self.stats.cgroup_id_evictions += 1;
            }
        }
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

fn lru_size(capacity: usize) -> NonZeroUsize {
    NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)
}

fn read_proc_cgroup(root: &Path, pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(root.join(pid.to_string()).join("cgroup"))
}

#[cfg(test)]
mod tests {
    use super::{pods::*, *};
    use mamori_rules::event::Process;

    const ID: &str = "3f2a9c7e5b1d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a";
    const UID: &str = "1c0b6a5e-8f3d-4b2a-9e7c-6d5f4a3b2c1d";

    fn fake_proc(dir: &Path, pid: u32, content: &str) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup"), content).unwrap();
    }

    fn ev(t: EvtType, pid: u32, ppid: u32) -> Event {
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

    /// A cgroup directory in a fake cgroup2 tree; its id (inode).
    fn fake_cgroup(root: &Path, rel: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let d = root.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::metadata(&d).unwrap().ino()
    }

    fn scope(id: &str) -> String {
        let us = UID.replace('-', "_");
        format!("/kubepods.slice/kubepods-pod{us}.slice/cri-containerd-{id}.scope")
    }

    const SHIM: &str = "/system.slice/containerd.service";

    /// A fake /proc and cgroup2 tree with a container cgroup and the
    /// runtime's host cgroup, and the shim (pid 79) already resolved.
    fn runtime_setup(tag: &str) -> (PathBuf, Enricher, u64, u64) {
        let dir = tempdir(tag);
        let (proc, cg) = (dir.join("proc"), dir.join("cgroup"));
        let ctr = fake_cgroup(&cg, &scope(ID));
        let shim = fake_cgroup(&cg, SHIM);
        fake_proc(&proc, 79, &format!("0::{SHIM}\n"));
        let mut en = Enricher::new(&proc, 64, None).with_cgroup_root(Some(cg));
        let mut e = ev(EvtType::Clone, 79, 1);
        e.proc.cgroup_id = shim;
        en.enrich(&mut e);
        assert!(e.container.unwrap().is_host());
        (dir, en, ctr, shim)
    }

    /// An exec of `pid` (child of the shim, 79) that exited before its event
    /// was handled.
    fn gone_exec(en: &mut Enricher, pid: u32, cgroup_id: u64) -> Option<Arc<Container>> {
        let mut e = ev(EvtType::Execve, pid, 79);
        e.proc.cgroup_id = cgroup_id;
        en.enrich(&mut e);
        e.container
    }

    #[test]
    fn gone_exec_child_resolved_by_its_cgroup_id() {
        let (dir, mut en, ctr, _) = runtime_setup("byid");
        // Before: the ancestor (the shim) says host. This is the bug.
        assert!(gone_exec(&mut en, 81, 0).unwrap().is_host());
        // The container's main process is read once: its cgroup id is
        // remembered (checked against the directory's inode).
        fake_proc(&dir.join("proc"), 80, &format!("0::{}\n", scope(ID)));
        let mut main = ev(EvtType::Execve, 80, 79);
        main.proc.cgroup_id = ctr;
        en.enrich(&mut main);
        assert_eq!(main.container.unwrap().full_id, ID);
        // A `kubectl exec` child, gone before its exec event was handled.
        let c = gone_exec(&mut en, 82, ctr).expect("resolved");
        assert_eq!(c.full_id, ID);
        assert_eq!(c.pod.as_ref().unwrap().uid, UID);
        assert_eq!(c.runtime.as_deref(), Some("containerd"));
        let st = en.stats().clone();
        assert_eq!((st.cgroup_id_hits, st.cgroup_walks), (1, 0), "{st:?}");
        assert_eq!(st.proc_read_failures, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gone_first_process_of_a_new_container_found_by_a_walk() {
        let (dir, mut en, ctr, _) = runtime_setup("walk");
        let c = gone_exec(&mut en, 81, ctr).expect("resolved");
        assert_eq!(c.full_id, ID);
        assert_eq!(c.pod.as_ref().unwrap().uid, UID);
        let st = en.stats().clone();
        assert_eq!((st.cgroup_walks, st.cgroup_walk_hits), (1, 1), "{st:?}");
        // Remembered: the next one needs no walk.
        let c = gone_exec(&mut en, 82, ctr).expect("resolved");
        assert_eq!(c.full_id, ID);
        let st = en.stats().clone();
        assert_eq!((st.cgroup_walks, st.cgroup_id_hits), (1, 1), "{st:?}");
        // A cgroup that is gone too: the ancestor, as before.
        assert!(gone_exec(&mut en, 83, u64::MAX - 7).unwrap().is_host());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn walks_are_rate_limited() {
        let (dir, mut en, _, _) = runtime_setup("rate");
        let cg = dir.join("cgroup");
        // An unknown id: one walk, a miss.
        assert!(gone_exec(&mut en, 81, u64::MAX - 1).unwrap().is_host());
        assert_eq!(en.stats().cgroup_walks, 1);
        // A container made right after: a flood of its (and unknown) ids
        // does not walk again until the interval has passed.
        let other = ID.replace('3', "4");
        let fresh = fake_cgroup(&cg, &scope(&other));
        for pid in 100..1100 {
            let id = if pid % 2 == 0 {
                fresh
            } else {
                u64::MAX - pid as u64
            };
            assert!(gone_exec(&mut en, pid, id).unwrap().is_host());
        }
        let st = en.stats().clone();
        assert_eq!(
            (st.cgroup_walks, st.cgroup_walk_misses),
            (1, 1001),
            "{st:?}"
        );
        // Due again: found.
        en.cgroupfs.as_mut().unwrap().allow_walk();
        assert_eq!(gone_exec(&mut en, 2000, fresh).unwrap().full_id, other);
        assert_eq!(en.stats().cgroup_walks, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cgroup_id_one_is_never_a_key() {
        let (dir, mut en, _, _) = runtime_setup("v1");
        let proc = dir.join("proc");
        // Pure v1 (and v1-only containers on hybrid hosts): id 1 for all.
        fake_proc(
            &proc,
            90,
            &format!("4:pids:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/\n"),
        );
        let mut e = ev(EvtType::Execve, 90, 79);
        e.proc.cgroup_id = 1;
        en.enrich(&mut e);
        assert_eq!(e.container.unwrap().full_id, ID);
        // Hybrid, the container in v1 only: its v2 path is the root.
        fake_proc(
            &proc,
            91,
            &format!("4:pids:/kubepods/pod{UID}/{ID}\n0::/\n"),
        );
        let mut e = ev(EvtType::Execve, 91, 79);
        e.proc.cgroup_id = 1;
        en.enrich(&mut e);
        assert_eq!(e.container.unwrap().full_id, ID);
        assert!(!en.ids.contains(&1));
        // A gone process with id 1: neither the cache nor a walk; ancestors.
        assert!(gone_exec(&mut en, 92, 1).unwrap().is_host());
        let st = en.stats().clone();
        assert_eq!((st.cgroup_id_hits, st.cgroup_walks), (0, 0), "{st:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_moved_process_never_maps_its_old_cgroup_to_the_container() {
        // runc's first process: its early events carry the shim's cgroup id,
        // but by the time /proc is read it is in the container.
        let (dir, mut en, ctr, _) = runtime_setup("moved");
        let runc = fake_cgroup(&dir.join("cgroup"), "/system.slice/runc-init.scope");
        fake_proc(&dir.join("proc"), 85, &format!("0::{}\n", scope(ID)));
        let mut e = ev(EvtType::Clone, 85, 79);
        e.proc.cgroup_id = runc;
        en.enrich(&mut e);
        assert_eq!(e.container.unwrap().full_id, ID);
        // Remembered under the container cgroup's own id, not the old one.
        assert!(!en.ids.contains(&runc));
        assert_eq!(en.ids.peek(&ctr).unwrap().container.full_id, ID);
        // A gone host process in the old cgroup stays a host process.
        assert!(gone_exec(&mut en, 86, runc).unwrap().is_host());
        assert_eq!(gone_exec(&mut en, 87, ctr).unwrap().full_id, ID);
        assert_eq!(en.stats().cgroup_walks, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostile_cgroup_names_and_forged_lines() {
        let (dir, mut en, _, _) = runtime_setup("hostile");
        let (proc, cg) = (dir.join("proc"), dir.join("cgroup"));
        // A name with a newline that forges a second v2 line: nothing is
        // remembered from that read.
        let evil = format!("evil\n0::cri-containerd-{ID}.scope");
        let evil_id = fake_cgroup(&cg, &format!("/user.slice/{evil}"));
        fake_proc(&proc, 95, &format!("0::/user.slice/{evil}\n"));
        let mut e = ev(EvtType::Openat, 95, 79);
        e.proc.cgroup_id = evil_id;
        en.enrich(&mut e);
        assert!(!en.ids.contains(&evil_id));
        // Gone, found by the walk: the name is one path component, not a
        // container.
        en.cgroupfs.as_mut().unwrap().allow_walk();
        let c = gone_exec(&mut en, 96, evil_id).unwrap();
        assert!(c.is_host(), "{c:?}");
        assert_eq!(en.stats().cgroup_walk_hits, 1);
        // A path leaving the hierarchy (another cgroup namespace): ignored.
        fake_proc(&proc, 97, "0::/../../etc\n");
        let mut e = ev(EvtType::Openat, 97, 79);
        e.proc.cgroup_id = 12345;
        en.enrich(&mut e);
        assert!(!en.ids.contains(&12345));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cgroup_id_cache_is_bounded() {
        let dir = tempdir("idlru");
        let (proc, cg) = (dir.join("proc"), dir.join("cgroup"));
        let mut en = Enricher::new(&proc, 64, None)
            .with_cgroup_root(Some(cg.clone()))
            .with_cgroup_id_capacity(2);
        for (pid, tag) in [(1u32, '4'), (2, '5'), (3, '6')] {
            let id = ID.replace('3', &tag.to_string());
            let cid = fake_cgroup(&cg, &scope(&id));
            fake_proc(&proc, pid, &format!("0::{}\n", scope(&id)));
            let mut e = ev(EvtType::Execve, pid, 0);
            e.proc.cgroup_id = cid;
            en.enrich(&mut e);
            assert_eq!(e.container.unwrap().full_id, id);
        }
        assert_eq!(en.ids.len(), 2);
        assert_eq!(en.stats().cgroup_id_evictions, 1);
        std::fs::remove_dir_all(&dir).unwrap();
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

    /// What the pipeline does with one event: admit, then release what is due.
    fn flow(en: &mut Enricher, e: Event, out: &mut impl FnMut(&Event)) {
        if let Some(e) = en.admit(e) {
            out(&e);
        }
        en.release(false).iter().for_each(out);
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
        let mut out = |e: &Event| {
            seen.push((
                e.proc.pid,
                e.evt_type,
                e.container.as_ref().and_then(|c| c.name.clone()),
            ));
        };
        flow(&mut en, ev(EvtType::Execve, 60, 1), &mut out);
        flow(&mut en, ev(EvtType::Openat, 60, 1), &mut out);
        flow(&mut en, ev(EvtType::Openat, 61, 1), &mut out);
        assert_eq!(en.held(), 2);
        idx.upsert(web_pod());
        en.release(false).iter().for_each(&mut out);
        assert_eq!(en.held(), 0);
        // Known now: no more holding.
        flow(&mut en, ev(EvtType::Connect, 60, 1), &mut out);
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
        let mut out = |_: &Event| n += 1;
        flow(&mut en, ev(EvtType::Openat, 70, 1), &mut out);
        assert_eq!(en.held(), 1);
        // Shutdown: everything out, nothing lost.
        en.release(true).iter().for_each(&mut out);
        assert_eq!(en.held(), 0);
        // Expiry: the container is not held again.
        flow(&mut en, ev(EvtType::Openat, 70, 1), &mut out);
        en.held[0].since -= HOLD_FOR;
        en.release(false).iter().for_each(&mut out);
        assert_eq!(en.stats().released_expired, 2);
        flow(&mut en, ev(EvtType::Openat, 70, 1), &mut out);
        assert_eq!(en.held(), 0);
        // Off Kubernetes nothing is ever held.
        let mut bare = Enricher::new(&root, 16, None);
        flow(&mut bare, ev(EvtType::Openat, 70, 1), &mut out);
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
