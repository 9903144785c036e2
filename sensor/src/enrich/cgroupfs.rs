//! The cgroup v2 filesystem: which cgroup directory a kernel cgroup id names.
//!
//! Every event carries the kernel's cgroup id of its task
//! (`bpf_get_current_cgroup_id()`): the id of the task's cgroup in the
//! unified (v2) hierarchy. On cgroup2 that id is the kernfs node id of the
//! cgroup's directory, which is also the directory's inode number (on 64-bit
//! kernels), and kernfs never hands an id out twice. So the id of a process
//! that has already exited can still be turned into the cgroup path its
//! runtime chose — as long as the directory still exists — by finding the
//! directory with that inode.
//!
//! Where the unified hierarchy is: `/sys/fs/cgroup` on pure v2 hosts,
//! `/sys/fs/cgroup/unified` on hybrid ones (v1 controllers plus v2), nowhere
//! on pure v1 hosts, where every task's id is the same (1) and says nothing.
//!
//! [`CgroupIndex`] keeps `id → path` for the whole hierarchy, built by a walk
//! that is bounded (directories, depth) and rate-limited: a lookup of an id
//! the index does not know re-walks at most once per [`WALK_EVERY`], so a
//! flood of unknown ids costs a hash lookup each, not a walk each.

use std::{
    collections::{HashMap, VecDeque},
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Component, Path, PathBuf},
    time::{Duration, Instant},
};

/// `statfs` magic of cgroup2 (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_MAGIC: u64 = 0x6367_7270;
/// Least time between two walks.
pub const WALK_EVERY: Duration = Duration::from_millis(200);
/// Most directories one walk indexes (a Kubernetes node has a few thousand
/// at most; beyond this the index is partial).
pub const WALK_MAX_DIRS: usize = 32 * 1024;
/// Deepest directory a walk descends to (kubepods container scopes are at
/// depth 3 to 5).
pub const WALK_MAX_DEPTH: usize = 32;

/// Where the unified (v2) hierarchy of this host is mounted, if anywhere.
pub fn unified_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_cgroup2(p))
}

/// Whether `path` is (the root of or inside) a cgroup2 filesystem.
pub fn is_cgroup2(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated string alive for the call, and `st` a
    // writable `statfs` the kernel fills; neither is kept after the call.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    // `f_type`'s integer type differs between libcs and architectures; the
    // magic is positive and fits all of them.
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    rc == 0 && magic == CGROUP2_MAGIC
}

/// The inode (= cgroup id) of the directory `path` names under `root`.
/// `path` is a cgroup path as `/proc/<pid>/cgroup` prints it; a path that
/// would leave `root` (`..`, as seen from another cgroup namespace) or is not
/// a directory gives `None`.
pub fn dir_id(root: &Path, path: &str) -> Option<u64> {
    let mut full = root.to_path_buf();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => full.push(name),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    let md = std::fs::symlink_metadata(&full).ok()?;
    md.is_dir().then(|| md.ino())
}

/// What a lookup in the index did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The cgroup path (`/` is the hierarchy's root), if the id is known.
    pub path: Option<String>,
    /// Whether the lookup re-walked the hierarchy.
    pub walked: bool,
}

/// `cgroup id → path` for one cgroup2 hierarchy, refreshed on demand.
#[derive(Debug)]
pub struct CgroupIndex {
    root: PathBuf,
    by_id: HashMap<u64, Box<str>>,
    last_walk: Option<Instant>,
    every: Duration,
    max_dirs: usize,
    max_depth: usize,
}

impl CgroupIndex {
    /// An (empty) index of the hierarchy mounted at `root`; filled by the
    /// first lookup.
    pub fn new(root: impl Into<PathBuf>) -> CgroupIndex {
        CgroupIndex {
            root: root.into(),
            by_id: HashMap::new(),
            last_walk: None,
            every: WALK_EVERY,
            max_dirs: WALK_MAX_DIRS,
            max_depth: WALK_MAX_DEPTH,
        }
    }

    /// Other walk limits (tests).
    pub fn with_limits(mut self, every: Duration, max_dirs: usize, max_depth: usize) -> Self {
        self.every = every;
        self.max_dirs = max_dirs.max(1);
        self.max_depth = max_depth;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directories in the index.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The path of cgroup `id`: from the index, or, when the index does not
    /// know it and the last walk is at least [`WALK_EVERY`] old, from a new
    /// walk.
    pub fn find(&mut self, id: u64, now: Instant) -> Found {
        if let Some(p) = self.by_id.get(&id) {
            return Found {
                path: Some(p.to_string()),
                walked: false,
            };
        }
        let due = self
            .last_walk
            .is_none_or(|t| now.saturating_duration_since(t) >= self.every);
        if !due {
            return Found {
                path: None,
                walked: false,
            };
        }
        self.last_walk = Some(now);
        let (by_id, truncated) = walk(&self.root, self.max_dirs, self.max_depth);
        if truncated {
            log::debug!(
                "cgroup walk of {} stopped at {} directories",
                self.root.display(),
                by_id.len()
            );
        }
        self.by_id = by_id;
        Found {
            path: self.by_id.get(&id).map(|p| p.to_string()),
            walked: true,
        }
    }

    /// Forget when the last walk was (tests).
    #[cfg(test)]
    pub(crate) fn allow_walk(&mut self) {
        self.last_walk = None;
    }
}

/// Walk the hierarchy at `root` breadth first: the inode of every directory
/// (at most `max_dirs`, at most `max_depth` below the root) with its path
/// relative to the root (`/`, `/a`, `/a/b`). Also says whether a limit cut
/// the walk short. Unreadable directories (removed while walking) are
/// skipped; names are kept as the kernel gives them, lossily made UTF-8 (a
/// name with a newline or any other byte is just a name here).
pub fn walk(root: &Path, max_dirs: usize, max_depth: usize) -> (HashMap<u64, Box<str>>, bool) {
    let mut out = HashMap::new();
    let Ok(md) = std::fs::symlink_metadata(root) else {
        return (out, false);
    };
    if !md.is_dir() || max_dirs == 0 {
        return (out, false);
    }
    out.insert(md.ino(), Box::from("/"));
    let mut queue: VecDeque<(PathBuf, String, usize)> = VecDeque::new();
    queue.push_back((root.to_path_buf(), String::new(), 0));
    while let Some((dir, rel, depth)) = queue.pop_front() {
        if depth >= max_depth {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map_while(Result::ok) {
            // No symlinks (cgroupfs has none; a fake tree must not loop).
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(md) = entry.metadata() else {
                continue;
            };
            if out.len() >= max_dirs {
                return (out, true);
            }
            let path = format!("{rel}/{}", entry.file_name().to_string_lossy());
            out.insert(md.ino(), Box::from(path.as_str()));
            queue.push_back((entry.path(), path, depth + 1));
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mamori-cgfs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn ino(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().ino()
    }

    #[test]
    fn walk_maps_inodes_to_paths_within_limits() {
        let root = tempdir("walk");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(root.join("x")).unwrap();
        std::fs::write(root.join("a/cgroup.procs"), "").unwrap();
        std::os::unix::fs::symlink(&root, root.join("a/loop")).unwrap();
        // A hostile name: a newline and a fake `/proc/<pid>/cgroup` line.
        let evil = "e\n0::cri-containerd-cafe.scope";
        std::fs::create_dir(root.join(evil)).unwrap();
        let (m, cut) = walk(&root, 100, 10);
        assert!(!cut);
        assert_eq!(m.len(), 6, "{m:?}");
        assert_eq!(&*m[&ino(&root)], "/");
        assert_eq!(&*m[&ino(&root.join("a/b/c"))], "/a/b/c");
        assert_eq!(&*m[&ino(&root.join("x"))], "/x");
        assert_eq!(&*m[&ino(&root.join(evil))], format!("/{evil}"));
        // Depth: the root's children only.
        let (m, cut) = walk(&root, 100, 1);
        assert!(!cut);
        assert_eq!(m.len(), 4);
        // Count: stops, and says so.
        let (m, cut) = walk(&root, 2, 10);
        assert!(cut);
        assert_eq!(m.len(), 2);
        // Missing root: nothing.
        assert!(walk(&root.join("nope"), 100, 10).0.is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn find_rewalks_on_a_miss_at_most_every_interval() {
        let root = tempdir("find");
        std::fs::create_dir_all(root.join("a")).unwrap();
        let mut ix = CgroupIndex::new(&root).with_limits(Duration::from_secs(3600), 100, 10);
        let t0 = Instant::now();
        let a = ino(&root.join("a"));
        assert_eq!(
            ix.find(a, t0),
            Found {
                path: Some("/a".into()),
                walked: true
            }
        );
        // Known: no walk.
        assert!(!ix.find(a, t0).walked);
        // New directory, but the last walk is too recent: a miss, no walk.
        std::fs::create_dir_all(root.join("b")).unwrap();
        let b = ino(&root.join("b"));
        for _ in 0..1000 {
            assert_eq!(
                ix.find(b, t0),
                Found {
                    path: None,
                    walked: false
                }
            );
        }
        // Once the interval has passed, one walk finds it.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(ix.find(b, later).path.as_deref(), Some("/b"));
        assert_eq!(ix.len(), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn dir_id_stays_under_the_root() {
        let root = tempdir("dirid");
        std::fs::create_dir_all(root.join("k/c")).unwrap();
        std::fs::write(root.join("k/f"), "").unwrap();
        assert_eq!(dir_id(&root, "/k/c"), Some(ino(&root.join("k/c"))));
        assert_eq!(dir_id(&root, "/"), Some(ino(&root)));
        assert_eq!(dir_id(&root, "/k/f"), None, "not a directory");
        assert_eq!(dir_id(&root, "/k/../k/c"), None);
        assert_eq!(dir_id(&root, "/../../etc"), None);
        assert_eq!(dir_id(&root, "/k/c (deleted)"), None);
        assert_eq!(dir_id(&root, "/k\n0::/k/c"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn this_hosts_unified_root_is_cgroup2() {
        // Whatever the host is, the answer must be consistent.
        if let Some(r) = unified_root() {
            assert!(is_cgroup2(&r));
        }
        assert!(!is_cgroup2(&std::env::temp_dir()));
        assert!(!is_cgroup2(Path::new("/nonexistent/mamori")));
    }
}
