//! Seeding the process table from `/proc`, and the clock its timestamps use.
//!
//! At start-up every process under `/proc` is read ([`ProcTable::seeded`]) so
//! that ancestry works for processes older than mamori; later, a process seen
//! for the first time in an event is read the same way ([`read_proc`]).
//! [`Clock`] turns the kernel's boot-clock timestamps (and `/proc`'s start
//! times) into wall-clock nanoseconds, as `evt.time` and `proc.start_ts` show.

use std::path::Path;

use super::{loginuid, split_args, ProcEntry, ProcTable, Users};

/// Converts kernel boot-clock timestamps to wall-clock ns since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    boot_epoch_ns: i128,
}

impl Clock {
    pub fn now() -> Clock {
        let boot = clock_ns(libc::CLOCK_BOOTTIME);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            boot_epoch_ns: real - boot,
        }
    }

    /// For tests and replay: boot happened at `boot_epoch_ns`.
    pub fn fixed(boot_epoch_ns: i128) -> Clock {
        Clock { boot_epoch_ns }
    }

    pub fn wall(&self, boot_ns: u64) -> u64 {
        if boot_ns == 0 {
            return 0;
        }
        (self.boot_epoch_ns + boot_ns as i128).max(0) as u64
    }
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer to a timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl ProcTable {
    /// A table seeded from every process under `proc_root` (normally `/proc`),
    /// which is also used later to look up processes not yet seen.
    pub fn seeded(proc_root: &Path, clock: Clock, users: Users) -> ProcTable {
        let mut t = ProcTable::new(clock, users);
        t.proc_root = Some(proc_root.to_path_buf());
        if let Ok(dir) = std::fs::read_dir(proc_root) {
            for entry in dir.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                    if let Some(p) = read_proc(proc_root, pid, &clock) {
                        t.procs.insert(pid, p);
                    }
                }
            }
        }
        t
    }
}

/// Read one process from `/proc/<pid>`; `None` if it is gone or unreadable.
pub fn read_proc(root: &Path, pid: u32, clock: &Clock) -> Option<ProcEntry> {
    let dir = root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // comm may contain spaces and parens: fields resume after the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let tty = rest.get(4).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0) as u32;
    let start_ticks: u64 = rest.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let start_boot_ns = start_ticks.saturating_mul(1_000_000_000 / hz);
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    let id_of = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let (exepath, exe_from_memfd) = std::fs::read_link(dir.join("exe"))
        .map(|p| super::normalise::exe_identity(&p.to_string_lossy()))
        .unwrap_or_default();
    let cwd = std::fs::read_link(dir.join("cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let login = std::fs::read_to_string(dir.join("loginuid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .map(loginuid)
        .unwrap_or(-1);
    Some(ProcEntry {
        pid,
        ppid,
        comm,
        exepath,
        exe_from_memfd,
        argv: split_args(&cmdline),
        argv_truncated: false,
        tty,
        cwd,
        uid: id_of("Uid:"),
        gid: id_of("Gid:"),
        loginuid: login,
        start_ts: clock.wall(start_boot_ns),
        cgroup_id: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_from_proc_including_self() {
        let t = ProcTable::seeded(Path::new("/proc"), Clock::now(), Users::default());
        let me = std::process::id();
        let e = t.get(me).expect("own process seeded");
        assert_eq!(e.pid, me);
        assert!(e.ppid > 0);
        assert!(!e.argv.is_empty());
        assert!(e.start_ts > 0);
        // pid 1 has no controlling terminal.
        assert_eq!(t.get(1).map(|p| p.tty), Some(0));
    }
}
