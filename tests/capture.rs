//! End-to-end tests of the capture pipeline on the real kernel (root only).
//!
//! Each test loads the real eBPF programs, runs a child process that makes
//! real syscalls, and asserts on the events that come out of the pipeline.
//! The child is this test binary re-executed into `child_main`, so every
//! syscall is made exactly as written here.
//!
//! Network rule: connects go to loopback listeners created here; the
//! non-loopback addresses below (TEST-NET-1 192.0.2.1, 2001:db8::1
//! documentation ranges) are only ever connected to after the child has
//! moved into a fresh, empty network namespace (`unshare(CLONE_NEWNET)`),
//! where no route exists and no packet can leave.
//!
//! Run: `cargo test -p sensor --features e2e --test capture -- --test-threads=1`

#[path = "capture/child.rs"]
mod child;

use std::{
    net::TcpListener,
    os::unix::net::UnixListener,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use mamori::{
    kernel::{Options, Sensor},
    pipeline::{Pipeline, Stats},
    process::{Clock, ProcTable, Users},
};
use mamori_rules::event::{Event, EvtType, FdType};

const CHILD_ENV: &str = "MAMORI_E2E_CHILD";

/// Entry point of the re-executed child. A no-op when run as a normal test.
#[test]
fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    match parts[0] {
        "basic" => child::child_basic(&parts[1..]),
        "netns" => child::child_netns(),
        "burst" => child::child_burst(parts[1].parse().unwrap(), parts[2]),
        "fields" => child::child_exec_fields(parts[1]),
        "pty" => {
            // `script` gives its child a fresh pseudo-terminal as controlling tty.
            let st = Command::new("script")
                .args(["-q", "-c", "/bin/true --under-a-pty", "/dev/null"])
                .status()
                .unwrap();
            assert!(st.success());
            let st = Command::new("/bin/true").arg("--no-pty").status().unwrap();
            assert!(st.success());
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Run the child in `mode` while capturing; return the child's pid, the events
/// of the child and its descendants, and the pipeline stats. Panics if any
/// event of this (the loading) process arrives: those are filtered in-kernel.
fn capture_child(opts: Options, spec: String) -> (u32, Vec<Event>, Stats) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let sensor = Sensor::load(&opts).expect("load the eBPF programs (are you root?)");
        let clock = Clock::now();
        let table = ProcTable::seeded(
            std::path::Path::new("/proc"),
            clock,
            Users::load(std::path::Path::new("/etc/passwd")),
        );
        let child_pid = Arc::new(Mutex::new(0u32));
        let pid_slot = child_pid.clone();
        let done = tokio::task::spawn_blocking(move || {
            let exe = std::env::current_exe().unwrap();
            let mut child = Command::new(exe)
                .args(["--exact", "child_main", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, spec)
                .spawn()
                .unwrap();
            *pid_slot.lock().unwrap() = child.id();
            let status = child.wait().unwrap();
            assert!(status.success(), "child failed: {status}");
        });
        let shutdown = async move {
            done.await.expect("child runner");
            // Let the last events and the drop counters reach userspace.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let mut events = Vec::new();
        let mut keep = |ev: &Event| {
            events.push(ev.clone());
            Ok(())
        };
        let stats = Pipeline::new(sensor, table, None)
            .unwrap()
            .run(&mut keep, shutdown)
            .await
            .unwrap();
        let pid = *child_pid.lock().unwrap();
        let me = std::process::id();
        let own = events
            .iter()
            .filter(|e| e.evt_type != EvtType::Drop && e.proc.pid == me)
            .count();
        assert_eq!(
            own, 0,
            "events of the loading process must be filtered in the kernel"
        );
        assert!(events.len() > 1, "no events at all were captured");
        let mine: Vec<Event> = events
            .into_iter()
            .filter(|e| {
                e.evt_type == EvtType::Drop
                    || e.proc.pid == pid
                    || e.proc.ancestors.iter().any(|a| a.pid == pid)
            })
            .collect();
        (pid, mine, stats)
    })
}

fn find<'a>(events: &'a [Event], what: &str, pred: impl Fn(&Event) -> bool) -> &'a Event {
    events.iter().find(|e| pred(e)).unwrap_or_else(|| {
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{:?}",
                    e.evt_type,
                    e.proc.pid,
                    e.fd.as_ref().map(|f| &f.name)
                )
            })
            .collect();
        panic!("no {what} event among {} events: {kinds:?}", events.len())
    })
}

#[test]
fn exec_open_connect_arrive_with_results() {
    let dir = std::env::temp_dir().join(format!("mamori-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write_path = dir.join("written.txt");
    let missing = dir.join("does-not-exist");
    let openat2_path = dir.join("openat2-target");
    std::fs::write(&openat2_path, b"x").unwrap();
    let unix_path = dir.join("e2e.sock");
    let _unix = UnixListener::bind(&unix_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = listener.local_addr().unwrap().port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let spec = format!(
        "basic|{}|{}|{}|{}|{}|{}",
        write_path.display(),
        missing.display(),
        open_port,
        closed_port,
        unix_path.display(),
        openat2_path.display()
    );
    let (pid, events, stats) = capture_child(Options::default(), spec);
    assert_eq!(stats.invalid, 0);

    assert_execs(&events, pid);
    assert_opens(&events, pid, &write_path, &missing, &openat2_path);
    assert_connects(&events, open_port, closed_port, &unix_path);
    std::fs::remove_dir_all(&dir).ok();
}

/// The child's execs: a failed execve, the execveat of its grandchild (and
/// the fork that made it), and its final execve of `/bin/true --flag`.
fn assert_execs(events: &[Event], pid: u32) {
    let me = std::process::id();
    // `proc.exepath` is the file the kernel loaded: `/bin/true` through any
    // symlink on the way (`/bin` is one on merged-/usr systems).
    let real = std::fs::canonicalize("/bin/true").unwrap();
    let real = real.to_str().unwrap();
    // The final exec: same pid, parent is this test, new image.
    // (The child's first exec is this test binary itself; the last is /bin/true.)
    let exec = find(events, "execve /bin/true --flag", |e| {
        e.evt_type == EvtType::Execve && e.proc.pid == pid && e.res == 0 && e.proc.exepath == real
    });
    assert_eq!(exec.proc.ppid, me);
    assert_eq!(exec.proc.name, "true");
    assert_eq!(exec.proc.exepath, real);
    assert_eq!(exec.proc.argv, ["/bin/true", "--flag"]);
    assert_eq!(exec.exec.as_ref().unwrap().filename, "/bin/true");
    assert_eq!(exec.proc.ancestors.first().map(|a| a.pid), Some(me));
    assert!(exec.proc.start_ts > 0);

    // The failed exec before it: ENOENT, attempted filename and argv.
    let failed = find(events, "failed execve", |e| {
        e.evt_type == EvtType::Execve && e.res < 0
    });
    assert_eq!(failed.res, -(libc::ENOENT as i64));
    assert_eq!(failed.proc.pid, pid);
    let fx = failed.exec.as_ref().unwrap();
    assert_eq!(fx.filename, "/nonexistent/mamori-e2e");
    assert_eq!(fx.argv, ["mamori-e2e"]);

    // execveat from the grandchild.
    let at = find(events, "execveat", |e| e.evt_type == EvtType::Execveat);
    assert_eq!(at.res, 0);
    assert_eq!(at.proc.ppid, pid);
    assert_eq!(at.proc.argv, ["/bin/true", "--at"]);
    // ... and the fork that made it.
    find(events, "clone", |e| {
        e.evt_type == EvtType::Clone
            && e.proc.pid == pid
            && e.lifecycle.as_ref().and_then(|l| l.child_pid) == Some(at.proc.pid)
    });
}

/// The child's opens: for write (fd, flags, mode), of a missing file
/// (ENOENT) and with openat2 (resolve flags).
fn assert_opens(
    events: &[Event],
    pid: u32,
    write_path: &Path,
    missing: &Path,
    openat2_path: &Path,
) {
    // Open for write: fd, flags, mode, path.
    let w = find(events, "open for write", |e| {
        e.open
            .as_ref()
            .is_some_and(|o| o.path == write_path.to_str().unwrap())
    });
    assert_eq!(w.evt_type, EvtType::Openat);
    assert_eq!(w.proc.pid, pid);
    assert!(w.res >= 0);
    let o = w.open.as_ref().unwrap();
    assert_eq!(
        o.flags & 0o3777,
        (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u32
    );
    assert_eq!(o.mode, 0o600);
    let fd = w.fd.as_ref().unwrap();
    assert_eq!((fd.fd_type, fd.num), (FdType::File, w.res));

    // Missing file: ENOENT, no fd.
    let m = find(events, "open missing", |e| {
        e.open
            .as_ref()
            .is_some_and(|o| o.path == missing.to_str().unwrap())
    });
    assert_eq!(m.res, -(libc::ENOENT as i64));
    assert_eq!(m.fd.as_ref().unwrap().num, -1);

    // openat2 with its resolve flags.
    let o2 = find(events, "openat2", |e| e.evt_type == EvtType::Openat2);
    assert!(o2.res >= 0);
    let oa = o2.open.as_ref().unwrap();
    assert_eq!(oa.path, openat2_path.to_str().unwrap());
    assert_eq!(oa.resolve, 0x04);
}

/// The child's connects: to the listener (success, addresses), to the
/// closed port (ECONNREFUSED) and to the unix socket.
fn assert_connects(events: &[Event], open_port: u16, closed_port: u16, unix_path: &Path) {
    // Connect to the listener: success, addresses, protocol.
    let ok = find(events, "connect ok", |e| {
        e.evt_type == EvtType::Connect && e.fd.as_ref().is_some_and(|f| f.rport == Some(open_port))
    });
    assert_eq!(ok.res, 0);
    let f = ok.fd.as_ref().unwrap();
    assert_eq!(f.fd_type, FdType::Ipv4);
    assert_eq!(f.rip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(f.l4proto.as_deref(), Some("tcp"));
    assert!(f.sport.unwrap_or(0) > 0, "local port of a connected socket");
    assert_eq!(
        f.name,
        format!("127.0.0.1:{}->127.0.0.1:{open_port}", f.sport.unwrap())
    );

    // Connect to the closed port: ECONNREFUSED.
    let refused = find(events, "connect refused", |e| {
        e.evt_type == EvtType::Connect
            && e.fd.as_ref().is_some_and(|f| f.rport == Some(closed_port))
    });
    assert_eq!(refused.res, -(libc::ECONNREFUSED as i64));

    // Unix socket connect.
    let ux = find(events, "unix connect", |e| {
        e.evt_type == EvtType::Connect && e.fd.as_ref().is_some_and(|f| f.fd_type == FdType::Unix)
    });
    assert_eq!(ux.res, 0);
    assert_eq!(ux.fd.as_ref().unwrap().name, unix_path.to_str().unwrap());
}

#[test]
fn connects_in_an_empty_netns_carry_address_and_failure() {
    let (pid, events, _) = capture_child(Options::default(), "netns".into());
    let v4 = find(&events, "IPv4 connect", |e| {
        e.evt_type == EvtType::Connect
            && e.proc.pid == pid
            && e.fd.as_ref().is_some_and(|f| f.fd_type == FdType::Ipv4)
    });
    let f = v4.fd.as_ref().unwrap();
    assert_eq!(f.rip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(f.rport, Some(80));
    assert_eq!(v4.res, -(libc::ENETUNREACH as i64));
    let v6 = find(&events, "IPv6 connect", |e| {
        e.evt_type == EvtType::Connect
            && e.proc.pid == pid
            && e.fd.as_ref().is_some_and(|f| f.fd_type == FdType::Ipv6)
    });
    let f = v6.fd.as_ref().unwrap();
    assert_eq!(f.rip, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(f.rport, Some(443));
    assert!(v6.res < 0);
}

/// Fields only the exec can tell, read in the kernel at the exec: the cwd a
/// process starts in after a chdir between fork and exec (the cwd copied at
/// fork was its parent's), the real parent after a reparenting, and the
/// image's file whatever name ran it (`proc.exe` stays the argument).
#[test]
fn exec_fields_are_the_kernels_at_the_exec() {
    let dir = std::env::temp_dir().join(format!("mamori-e2e-fields-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(&dir).unwrap();
    let dir_s = dir.to_str().unwrap().to_string();
    let (pid, events, _) = capture_child(Options::default(), format!("fields|{dir_s}"));
    let real = std::fs::canonicalize("/bin/true").unwrap();
    let real = real.to_str().unwrap();
    let probe = |flag: &'static str| {
        find(&events, flag, move |e| {
            e.evt_type == EvtType::Execve && e.res == 0 && e.proc.argv.iter().any(|a| a == flag)
        })
    };
    let cwd = probe("--cwd-probe");
    assert_eq!(cwd.proc.cwd.as_deref(), Some(dir_s.as_str()), "{cwd:#?}");
    let orphan = probe("--orphan-probe");
    assert_eq!(orphan.proc.ppid, pid, "reparented to the subreaper");
    assert_eq!(orphan.proc.ancestors.first().map(|a| a.pid), Some(pid));
    let fd = probe("--fd-probe");
    assert_eq!(fd.proc.exepath, real);
    assert_eq!(fd.proc.argv[0], "/dev/fd/3", "proc.exe stays the argument");
    let link = probe("--link-probe");
    assert_eq!(link.proc.exepath, real);
    assert_eq!(
        link.exec.as_ref().unwrap().filename,
        format!("{dir_s}/probe-link")
    );
    assert_eq!(link.proc.cwd, fd.proc.cwd, "no chdir: the parent's cwd");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn exec_carries_the_controlling_tty() {
    let (_, events, _) = capture_child(Options::default(), "pty".into());
    let with = find(&events, "exec under a pty", |e| {
        e.evt_type == EvtType::Execve && e.proc.argv.iter().any(|a| a == "--under-a-pty")
    });
    // A pseudo-terminal: major 136..=143 in tty_nr encoding (major << 8).
    let major = (with.proc.tty >> 8) & 0xfff;
    assert!((136..=143).contains(&major), "tty_nr {:#x}", with.proc.tty);
    let without = find(&events, "exec without a tty", |e| {
        e.evt_type == EvtType::Execve && e.proc.argv.iter().any(|a| a == "--no-pty")
    });
    assert_eq!(without.proc.tty, 0);
}

const BURST: u64 = 20_000;
/// The tiny-ring tests' burst: large enough that the ring overflows however
/// fast the reader drains (20,000 opens sometimes all fit through a fast
/// reader on an idle machine).
const TINY_BURST: u64 = 200_000;

/// The smallest ring the sensor accepts (it holds the largest event).
const TINY_RING: u32 = 16 * 1024;

#[test]
fn tiny_ring_drops_are_counted_and_reported() {
    let opts = Options {
        ring_bytes: TINY_RING,
        // The ring-full path itself, without opens shed before it.
        shed_opens_above: None,
        ..Options::default()
    };
    let (_, events, stats) = capture_child(opts, format!("burst|{TINY_BURST}|/etc/hostname"));
    assert!(
        stats.dropped.open > 0,
        "a 16 KiB ring must overflow: {stats:?}"
    );
    assert_eq!(stats.dropped.shed, 0, "nothing shed when shedding is off");
    let reported: u64 = events
        .iter()
        .filter_map(|e| e.drops.as_ref())
        .map(|d| d.open)
        .sum();
    assert_eq!(
        reported, stats.dropped.open,
        "every drop is reported as an event"
    );
}

/// With shedding on (the default), a burst that fills a tiny ring past 3/4
/// has opens shed in the kernel: counted as lost opens and as shed, and
/// reported in the drop events.
#[test]
fn tiny_ring_sheds_opens_first() {
    let opts = Options {
        ring_bytes: TINY_RING,
        ..Options::default()
    };
    let (_, events, stats) = capture_child(opts, format!("burst|{TINY_BURST}|/etc/hostname"));
    assert!(stats.dropped.shed > 0, "opens shed: {stats:?}");
    assert!(stats.dropped.open >= stats.dropped.shed, "{stats:?}");
    assert_eq!(
        stats.dropped.exec + stats.dropped.fork + stats.dropped.exit,
        0,
        "{stats:?}"
    );
    let reported: u64 = events
        .iter()
        .filter_map(|e| e.drops.as_ref())
        .map(|d| d.shed)
        .sum();
    assert_eq!(reported, stats.dropped.shed, "every shed open is reported");
}

#[test]
fn default_ring_keeps_up_with_the_same_burst() {
    let (pid, events, stats) =
        capture_child(Options::default(), format!("burst|{BURST}|/etc/hostname"));
    assert_eq!(
        stats.dropped.total(),
        0,
        "no drops with the default ring: {stats:?}"
    );
    let opens = events
        .iter()
        .filter(|e| e.proc.pid == pid && e.open.as_ref().is_some_and(|o| o.path == "/etc/hostname"))
        .count() as u64;
    assert_eq!(opens, BURST);
}

/// Open timestamps: by default one clock reading per CPU per scheduler tick
/// (so a burst shares a handful of values, none far from the exact ones);
/// with `precise_time` a reading per event (all distinct, increasing).
#[test]
fn open_timestamps_follow_the_tick_unless_precise() {
    const N: usize = 2_000;
    // One tick is at most 10 ms (HZ >= 100); a thread that moves to another
    // CPU can see that CPU's reading from earlier in the same tick.
    const TICK_MAX_NS: u64 = 10_000_000;
    let opens_and_exec = |precise_time: bool| {
        let opts = Options {
            precise_time,
            ..Options::default()
        };
        let (pid, events, _) = capture_child(opts, format!("burst|{N}|/etc/hostname"));
        let exec_ts = find(&events, "the child's exec", |e| {
            e.proc.pid == pid && matches!(e.evt_type, EvtType::Execve)
        })
        .ts;
        let ts: Vec<u64> = events
            .iter()
            .filter(|e| {
                e.proc.pid == pid && e.open.as_ref().is_some_and(|o| o.path == "/etc/hostname")
            })
            .map(|e| e.ts)
            .collect();
        assert_eq!(ts.len(), N, "every open of the burst arrives");
        (exec_ts, ts)
    };

    let (exec_ts, ts) = opens_and_exec(false);
    let mut distinct = ts.clone();
    distinct.dedup();
    assert!(
        distinct.len() < N / 10,
        "tick timestamps: {N} opens should share few readings, got {} distinct",
        distinct.len()
    );
    for (i, t) in ts.iter().enumerate() {
        assert!(
            *t + TICK_MAX_NS >= exec_ts,
            "open #{i} at {t} is more than a tick before the exec at {exec_ts}"
        );
        if i > 0 {
            assert!(
                *t + TICK_MAX_NS >= ts[i - 1],
                "open #{i} at {t} is more than a tick before open #{} at {}",
                i - 1,
                ts[i - 1]
            );
        }
    }

    let (exec_ts, ts) = opens_and_exec(true);
    assert!(ts[0] > exec_ts, "precise: the first open follows the exec");
    for (i, w) in ts.windows(2).enumerate() {
        assert!(
            w[1] > w[0],
            "precise: open #{} at {} must follow open #{i} at {}",
            i + 1,
            w[1],
            w[0]
        );
    }
}
