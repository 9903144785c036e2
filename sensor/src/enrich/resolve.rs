//! Resolving a process to its container, and the caches that make it cheap.
//!
//! The per-pid cache ([`Enricher::enrich`]'s hits) and, on a miss, the read
//! of `/proc/<pid>/cgroup`; the container value joined with the pod index
//! (`build`).
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

use std::{path::Path, sync::Arc, time::Instant};

use mamori_rules::event::{Container, Event, EvtType, Pod};

use super::{
    cgroup::{self, CgroupInfo},
    cgroupfs::{self, CgroupIndex},
    runtime::Lookup,
    Enricher,
};

/// What a process (by pid) is, and what its cached value was built from.
#[derive(Debug, Clone)]
pub(super) struct Entry {
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
pub(super) struct IdEntry {
    info: CgroupInfo,
    container: Arc<Container>,
    incomplete_at: Option<u64>,
}

impl Enricher {
    /// The cached container of `ev`'s process, when the entry is still valid
    /// for it (see the module docs of [`super`]); rebuilt first when it was
    /// incomplete and the pod index changed since.
    pub(super) fn cached(&mut self, ev: &Event, generation: u64) -> Option<Arc<Container>> {
        let pid = ev.proc.pid;
        let exec_done = matches!(ev.evt_type, EvtType::Execve | EvtType::Execveat) && ev.res == 0;
        let e = self.cache.get(&pid)?;
        let valid = !exec_done
            && (ev.proc.start_ts == 0 || e.start_ts == 0 || e.start_ts == ev.proc.start_ts)
            && (ev.proc.cgroup_id == 0 || e.cgroup_id == ev.proc.cgroup_id);
        if !valid {
            return None;
        }
        if e.incomplete_at.is_some_and(|g| g != generation) {
            let info = e.info.clone();
            let (container, incomplete_at) = self.build(&info, generation);
            let e = self.cache.get_mut(&pid).expect("entry just seen");
            e.container = container;
            e.incomplete_at = incomplete_at;
        }
        self.cache.peek(&pid).map(|e| e.container.clone())
    }

    /// Read the process's cgroup file. When it is gone: the event's cgroup
    /// id (cached, or found in the hierarchy), else the nearest cached
    /// ancestor (cgroups are inherited across fork).
    pub(super) fn resolve(&mut self, ev: &Event, generation: u64) -> Option<Arc<Container>> {
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
    pub(super) fn build(
        &self,
        info: &CgroupInfo,
        generation: u64,
    ) -> (Arc<Container>, Option<u64>) {
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
        let pending = self.add_runtime_meta(&mut c, info);
        // Off Kubernetes, and with no runtime lookup on its way, there is
        // nothing more to wait for.
        let incomplete_at = ((!complete && self.pods.is_some()) || pending).then_some(generation);
        (Arc::new(c), incomplete_at)
    }

    /// Fill what the node's runtime says about the container: its own
    /// fields first (the runtime runs it), the pod from its CRI labels when
    /// the pod watch did not name it. True while an answer is pending (or
    /// a second one, for a container not started when first asked).
    fn add_runtime_meta(&self, c: &mut Container, info: &CgroupInfo) -> bool {
        let (Some(rt), Some(id)) = (self.runtime.as_ref(), info.container_id.as_deref()) else {
            return false;
        };
        let (m, starting) = match rt.lookup(id) {
            Lookup::Known(m) => (m, false),
            // Rebuilt when the next answer (with the start time) lands.
            Lookup::Starting(m) => (m, true),
            Lookup::Pending => return true,
            Lookup::Absent => return false,
        };
        let or = |ours: Option<String>, theirs: &Option<String>| theirs.clone().or(ours);
        c.name = or(c.name.take(), &m.name);
        c.image = or(c.image.take(), &m.image);
        c.image_repository = or(c.image_repository.take(), &m.repository);
        c.image_tag = or(c.image_tag.take(), &m.tag);
        c.image_digest = or(c.image_digest.take(), &m.digest);
        c.privileged = m.privileged.or(c.privileged);
        c.start_ts = m.start_ts.or(c.start_ts);
        if c.runtime.is_none() {
            c.runtime = Some(m.engine.to_string());
        }
        let named = c.pod.as_deref().is_some_and(|p| p.name.is_some());
        if !named && (m.pod_name.is_some() || m.pod_uid.is_some()) {
            let uid = c.pod.as_deref().map(|p| p.uid.clone());
            c.pod = Some(Arc::new(Pod {
                uid: uid.or_else(|| m.pod_uid.clone()).unwrap_or_default(),
                name: m.pod_name.clone(),
                namespace: m.pod_namespace.clone(),
                ..Default::default()
            }));
        }
        starting
    }
}

fn read_proc_cgroup(root: &Path, pid: u32) -> std::io::Result<String> {
    std::fs::read_to_string(root.join(pid.to_string()).join("cgroup"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{super::fixtures::*, *};

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
}
