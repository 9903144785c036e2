//! Holding events while a new container's pod metadata arrives.
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
//!
//! The same hold covers a container the runtimes are being asked about
//! ([`super::runtime`]): its events wait for the answer, within the same
//! bounds.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use mamori_rules::event::{Container, Event};

use super::{cgroup::CgroupInfo, Enricher, HOLD_FOR, HOLD_MAX};

/// Containers remembered as "never held again".
const GAVE_UP_MAX: usize = 4096;

/// An event waiting for its pod's metadata.
pub(super) struct Held {
    ev: Event,
    since: Instant,
}

impl Enricher {
    /// Enrich `ev` and return it when it is ready now; `None` when it is held
    /// for a short while because its pod's metadata is on the way (see the
    /// module docs; [`Enricher::release`] returns it later, in order).
    pub fn admit(&mut self, mut ev: Event) -> Option<Event> {
        self.enrich(&mut ev);
        let pid = ev.proc.pid;
        let wait = (self.pods.is_some() || self.runtime.is_some())
            && (self.held_pids.contains_key(&pid)
                || ev
                    .container
                    .as_deref()
                    .is_some_and(|c| self.waiting(c) && !self.gave_up.contains(&c.full_id)));
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
        let generation = self.generation();
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
            let ready = !h.ev.container.as_deref().is_some_and(|c| self.waiting(c));
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
}

/// A Kubernetes container (its cgroup names a pod) whose pod or container
/// metadata is not known yet.
impl Enricher {
    /// Whether metadata for `c` is on its way: its pod is known by uid only
    /// (with a pod watch), or a runtime is being asked about it.
    fn waiting(&self, c: &Container) -> bool {
        if c.full_id.is_empty() {
            return false;
        }
        let pod = self.pods.is_some()
            && c.pod
                .as_deref()
                .is_some_and(|p| p.name.is_none() || c.name.is_none());
        pod || self
            .runtime
            .as_ref()
            .is_some_and(|r| r.is_pending(&c.full_id))
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{fixtures::*, pods::*},
        *,
    };
    use mamori_rules::event::EvtType;

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
}
