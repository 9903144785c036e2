//! The process table: what mamori knows about every live process, kept
//! current from fork/exec/exit events and seeded from `/proc` at start-up so
//! that ancestry (`proc.pname`, `proc.aname[N]`) works for processes that
//! started before mamori.
//!
//! - this file: the table's state — [`ProcEntry`], insert / look-up /
//!   removal, and the cached ancestor chains;
//! - [`seed`]: reading `/proc` (the start-up seed and lazy look-ups of
//!   unknown processes) and the boot-clock → wall-clock [`Clock`];
//! - [`normalise`]: [`ProcTable::apply`], which turns each raw kernel record
//!   into a normalized [`Event`](mamori_rules::event::Event) (an open record
//!   becomes `fd.name`, `evt.type`, ...), joined with its process and
//!   ancestors;
//! - [`dns`]: the question of a DNS query record (`dns.*`);
//! - [`users`]: uid → user name from `/etc/passwd` ([`Users`]).

pub mod dns;
pub mod normalise;
pub mod seed;
pub mod users;

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use mamori_common::Header;
use mamori_rules::event::{Ancestor, Process};

pub use self::{seed::Clock, users::Users};

/// Most ancestors attached to an event.
pub const MAX_ANCESTORS: usize = 16;
/// Upper bound on tracked processes; beyond it, exited-but-unseen entries are
/// pruned against `/proc`.
const MAX_PROCS: usize = 65_536;

/// What is known about one process.
#[derive(Debug, Clone, Default)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub exepath: String,
    /// The image was loaded from a memfd (`proc.is_exe_from_memfd`).
    pub exe_from_memfd: bool,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub tty: u32,
    pub cwd: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub loginuid: i64,
    pub start_ts: u64,
    pub cgroup_id: u64,
}

pub struct ProcTable {
    procs: HashMap<u32, ProcEntry>,
    /// Ancestor chains already built, valid while `generation` is unchanged.
    chains: HashMap<u32, (u64, Arc<Vec<Ancestor>>)>,
    /// Bumped whenever anything an ancestor chain shows may have changed
    /// (exec, exit, comm or parent change). Opens and connects do not bump
    /// it, so a busy process reuses its chain for free.
    generation: u64,
    clock: Clock,
    users: Users,
    /// `/proc` (or a test's stand-in) for lazy look-ups of unknown processes.
    proc_root: Option<PathBuf>,
    /// Entries pruned at the size cap (`mamori_process_table_evictions_total`).
    evicted: u64,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Split a NUL-separated argv area (the kernel's, or `/proc/<pid>/cmdline`).
pub fn split_args(area: &[u8]) -> Vec<String> {
    let area = area.strip_suffix(&[0]).unwrap_or(area);
    if area.is_empty() {
        return Vec::new();
    }
    area.split(|&b| b == 0).map(lossy).collect()
}

/// A kernel loginuid: `u32::MAX` (unset) is -1, as Falco shows it.
fn loginuid(v: u32) -> i64 {
    if v == u32::MAX {
        -1
    } else {
        v as i64
    }
}

impl ProcTable {
    /// An empty table (replay, tests).
    pub fn new(clock: Clock, users: Users) -> ProcTable {
        ProcTable {
            procs: HashMap::new(),
            chains: HashMap::new(),
            generation: 0,
            clock,
            users,
            proc_root: None,
            evicted: 0,
        }
    }

    /// Entries pruned at the size cap so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.procs.get(&pid)
    }

    /// Insert or replace an entry (tests, replay seeding).
    pub fn insert(&mut self, p: ProcEntry) {
        self.procs.insert(p.pid, p);
    }

    /// Forget a process that exited (and its chain).
    fn remove(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.chains.remove(&pid);
        self.generation += 1;
    }

    /// The entry for `hdr`'s process, creating it (from /proc, or from the
    /// header alone) if it is unknown, and refreshing what the header says.
    fn entry_for(&mut self, hdr: &Header) -> &mut ProcEntry {
        let pid = hdr.tgid;
        if !self.procs.contains_key(&pid) {
            let found = self
                .proc_root
                .as_deref()
                .and_then(|root| seed::read_proc(root, pid, &self.clock));
            let p = found.unwrap_or_else(|| ProcEntry {
                pid,
                loginuid: -1,
                ..Default::default()
            });
            if self.procs.len() >= MAX_PROCS {
                self.prune();
            }
            self.procs.insert(pid, p);
            // It may be an ancestor some cached chain showed as unknown.
            self.generation += 1;
        }
        let e = self.procs.get_mut(&pid).expect("inserted above");
        let comm = &hdr.comm;
        let end = comm.iter().position(|&b| b == 0).unwrap_or(16);
        if e.comm.as_bytes() != &comm[..end] {
            e.comm = lossy(&comm[..end]);
            self.generation += 1;
        }
        e.uid = hdr.uid;
        e.gid = hdr.gid;
        if hdr.cgroup_id != 0 {
            e.cgroup_id = hdr.cgroup_id;
        }
        e
    }

    /// Drop entries whose process no longer exists.
    fn prune(&mut self) {
        if let Some(root) = self.proc_root.clone() {
            let before = self.procs.len();
            self.procs
                .retain(|pid, _| root.join(pid.to_string()).exists());
            self.evicted += (before - self.procs.len()) as u64;
        }
    }

    /// The ancestor chain of `pid`, from the cache when still valid.
    fn chain(&mut self, pid: u32, ppid: u32) -> Arc<Vec<Ancestor>> {
        if let Some((gen, chain)) = self.chains.get(&pid) {
            if *gen == self.generation {
                return chain.clone();
            }
        }
        let chain = Arc::new(self.build_chain(ppid));
        if self.chains.len() >= MAX_PROCS {
            self.chains.clear();
        }
        self.chains.insert(pid, (self.generation, chain.clone()));
        chain
    }

    fn build_chain(&self, ppid: u32) -> Vec<Ancestor> {
        let mut ancestors = Vec::new();
        let mut cur = ppid;
        while cur != 0 && ancestors.len() < MAX_ANCESTORS {
            let Some(a) = self.procs.get(&cur) else {
                ancestors.push(Ancestor {
                    pid: cur,
                    ..Default::default()
                });
                break;
            };
            ancestors.push(Ancestor {
                pid: a.pid,
                name: a.comm.clone(),
                exepath: a.exepath.clone(),
                argv: a.argv.clone(),
            });
            if a.ppid == cur {
                break;
            }
            cur = a.ppid;
        }
        ancestors
    }

    /// The `Process` view of `pid` with its ancestor chain.
    fn process(&mut self, pid: u32, tid: u32) -> Process {
        let Some(ppid) = self.procs.get(&pid).map(|e| e.ppid) else {
            return Process {
                pid,
                tid,
                loginuid: -1,
                ..Default::default()
            };
        };
        let ancestors = self.chain(pid, ppid);
        let e = &self.procs[&pid];
        Process {
            pid,
            tid,
            ppid: e.ppid,
            name: e.comm.clone(),
            exepath: e.exepath.clone(),
            exe_from_memfd: e.exe_from_memfd,
            argv: e.argv.clone(),
            argv_truncated: e.argv_truncated,
            tty: e.tty,
            cwd: e.cwd.clone(),
            uid: e.uid,
            gid: e.gid,
            loginuid: e.loginuid,
            user: self.users.name(e.uid),
            start_ts: e.start_ts,
            cgroup_id: e.cgroup_id,
            ancestors,
        }
    }
}
