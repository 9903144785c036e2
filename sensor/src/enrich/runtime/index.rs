//! What the node's container runtimes said about each container id, shared
//! between the lookup task (writer) and the pipeline thread (reader).
//!
//! The reader never waits: an id it has not seen is queued for the lookup
//! task with a non-blocking send and reported [`Lookup::Pending`]; the
//! answer (found, or not known to any runtime) lands here and bumps the
//! generation, which is how the enricher notices that a container it built
//! incomplete can be rebuilt. Bounded: at most [`MAX_IDS`] answers are kept
//! (least recently used go first; a dropped id is simply asked again).

use std::{
    collections::HashSet,
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use lru::LruCache;
use tokio::sync::mpsc;

/// Containers whose answer is remembered; a node runs a few hundred.
pub const MAX_IDS: usize = 4096;
/// Lookups queued at once; beyond, new ids wait for a later event.
pub const MAX_QUEUED: usize = 1024;
/// A container asked about before it started (its first process is the
/// runtime's init, seen before the start completes) has no start time yet:
/// it is asked again, at most this often and this many times.
pub const REFRESH_AFTER: Duration = Duration::from_millis(200);
pub const MAX_REFRESHES: u8 = 10;

/// One container as its runtime describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeMeta {
    /// Which engine answered (`containerd`, `cri-o`, `docker`, `podman`).
    pub engine: &'static str,
    /// The container's name (CRI: `io.kubernetes.container.name` /
    /// metadata name; docker and podman: its name without the `/`).
    pub name: Option<String>,
    /// The image as the container was created from (`repo:tag`).
    pub image: Option<String>,
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// `sha256:...` of the image (the image reference's digest, else the
    /// image id).
    pub digest: Option<String>,
    pub privileged: Option<bool>,
    /// Start time, ns since the epoch.
    pub start_ts: Option<u64>,
    /// Pod identity from the runtime's labels (CRI).
    pub pod_uid: Option<String>,
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// What the index says about an id right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Known(Arc<RuntimeMeta>),
    /// Known, but not started when asked: asked again shortly (the values
    /// are usable meanwhile; the start time comes with the next answer).
    Starting(Arc<RuntimeMeta>),
    /// No configured runtime knows the id (a pod sandbox's pause process, a
    /// container already removed, a cgroup that only looks like one).
    Absent,
    /// Asked; the answer is on its way.
    Pending,
}

#[derive(Debug)]
struct Answer {
    meta: Option<Arc<RuntimeMeta>>,
    /// How often it was asked again (a container not started yet).
    asked: u8,
}

#[derive(Debug)]
struct Inner {
    answers: LruCache<String, Answer>,
    pending: HashSet<String>,
}

/// Shared, cheaply cloneable handle.
#[derive(Debug, Clone)]
pub struct RuntimeIndex {
    inner: Arc<Mutex<Inner>>,
    generation: Arc<AtomicU64>,
    requests: mpsc::Sender<String>,
}

impl RuntimeIndex {
    /// An index and the receiving end of its lookup queue.
    pub fn new() -> (RuntimeIndex, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let idx = RuntimeIndex {
            inner: Arc::new(Mutex::new(Inner {
                answers: LruCache::new(NonZeroUsize::new(MAX_IDS).unwrap_or(NonZeroUsize::MIN)),
                pending: HashSet::new(),
            })),
            generation: Arc::new(AtomicU64::new(0)),
            requests: tx,
        };
        (idx, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain maps: still consistent after a panic elsewhere.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bumped by every answer.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The answer for a full container id; an unseen id is queued.
    pub fn lookup(&self, id: &str) -> Lookup {
        let mut g = self.lock();
        let g = &mut *g;
        if let Some(a) = g.answers.get(id) {
            return match &a.meta {
                Some(m) if m.start_ts.is_none() && g.pending.contains(id) => {
                    Lookup::Starting(m.clone())
                }
                Some(m) => Lookup::Known(m.clone()),
                None => Lookup::Absent,
            };
        }
        if g.pending.contains(id) {
            return Lookup::Pending;
        }
        match self.requests.try_send(id.to_string()) {
            Ok(()) => {
                g.pending.insert(id.to_string());
                Lookup::Pending
            }
            // Queue full: ask again at a later event. Closed: the lookup
            // task is gone; nothing will come.
            Err(mpsc::error::TrySendError::Full(_)) => Lookup::Pending,
            Err(mpsc::error::TrySendError::Closed(_)) => Lookup::Absent,
        }
    }

    /// True while a lookup for `id` is queued or running.
    pub fn is_pending(&self, id: &str) -> bool {
        self.lock().pending.contains(id)
    }

    /// Record an answer (the lookup task; inside the tokio runtime). A
    /// container that had not started yet is asked again after
    /// [`REFRESH_AFTER`] (at most [`MAX_REFRESHES`] times) and stays pending
    /// meanwhile, so its events wait (within the enricher's hold) for the
    /// start time.
    pub fn answer(&self, id: &str, meta: Option<RuntimeMeta>) {
        let mut g = self.lock();
        let asked = g.answers.peek(id).map_or(0, |a| a.asked.saturating_add(1));
        let again = meta.as_ref().is_some_and(|m| m.start_ts.is_none()) && asked < MAX_REFRESHES;
        let answer = Answer {
            meta: meta.map(Arc::new),
            asked,
        };
        g.answers.put(id.to_string(), answer);
        if again {
            let (tx, id) = (self.requests.clone(), id.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(REFRESH_AFTER).await;
                let _ = tx.send(id).await;
            });
        } else {
            g.pending.remove(id);
        }
        drop(g);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unseen_ids_are_queued_once_and_answers_bump_the_generation() {
        let (idx, mut rx) = RuntimeIndex::new();
        assert_eq!(idx.lookup("a"), Lookup::Pending);
        assert_eq!(idx.lookup("a"), Lookup::Pending);
        assert!(idx.is_pending("a"));
        assert_eq!(rx.try_recv().unwrap(), "a");
        assert!(rx.try_recv().is_err(), "queued once");
        let g = idx.generation();
        let meta = RuntimeMeta {
            engine: "docker",
            name: Some("web".into()),
            start_ts: Some(1),
            ..Default::default()
        };
        idx.answer("a", Some(meta.clone()));
        assert!(idx.generation() > g);
        assert!(!idx.is_pending("a"));
        assert_eq!(idx.lookup("a"), Lookup::Known(Arc::new(meta)));
        idx.lookup("b");
        assert_eq!(rx.try_recv().unwrap(), "b");
        idx.answer("b", None);
        assert_eq!(idx.lookup("b"), Lookup::Absent);
        // Not started when asked: usable at once, still pending, asked
        // again after a moment.
        idx.lookup("s");
        assert_eq!(rx.try_recv().unwrap(), "s");
        let starting = RuntimeMeta {
            engine: "containerd",
            ..Default::default()
        };
        idx.answer("s", Some(starting.clone()));
        assert_eq!(
            idx.lookup("s"),
            Lookup::Starting(Arc::new(starting.clone()))
        );
        assert!(idx.is_pending("s"));
        let again = tokio::time::timeout(REFRESH_AFTER * 10, rx.recv()).await;
        assert_eq!(again.unwrap().as_deref(), Some("s"), "asked again");
        let started = RuntimeMeta {
            start_ts: Some(5),
            ..starting
        };
        idx.answer("s", Some(started.clone()));
        assert!(!idx.is_pending("s"));
        assert_eq!(idx.lookup("s"), Lookup::Known(Arc::new(started)));
        drop(rx);
        assert_eq!(
            idx.lookup("c"),
            Lookup::Absent,
            "no lookup task: nothing comes"
        );
    }
}
