//! Tests of the normalisation: raw records in, events out.
use std::{path::PathBuf, sync::Arc};

use mamori_common::EventKind;

use super::*;
use crate::process::{Clock, Users};

fn hdr(kind: EventKind, pid: u32, comm: &str) -> Header {
    let mut c = [0u8; 16];
    c[..comm.len()].copy_from_slice(comm.as_bytes());
    Header {
        kind: kind as u16,
        ts_boot_ns: 1_000,
        tid: pid,
        tgid: pid,
        uid: 0,
        comm: c,
        ..Default::default()
    }
}

fn exec(pid: u32, ppid: u32, comm: &str, file: &str, args: &str) -> RawEvent {
    let args = args.replace(' ', "\0") + "\0";
    RawEvent::Exec {
        hdr: hdr(EventKind::Exec, pid, comm),
        body: ExecBody {
            ppid,
            loginuid: u32::MAX,
            syscall: syscall::EXECVE,
            filename_len: file.len() as u16,
            args_len: args.len() as u16,
            dirfd: AT_FDCWD,
            ..Default::default()
        },
        filename: file.as_bytes().to_vec(),
        args: args.into_bytes(),
        exe: Vec::new(),
        cwd: Vec::new(),
    }
}

fn fork(parent: u32, parent_comm: &str, child: u32) -> RawEvent {
    RawEvent::Fork {
        hdr: hdr(EventKind::Fork, parent, parent_comm),
        body: ForkBody {
            child_tid: child,
            child_tgid: child,
            ppid: parent,
            ..Default::default()
        },
    }
}

#[test]
fn ancestry_follows_fork_and_exec() {
    let mut t = ProcTable::new(Clock::fixed(0), Users::parse("root:x:0:0::/root:/bin/sh\n"));
    t.insert(ProcEntry {
        pid: 1,
        comm: "systemd".into(),
        exepath: "/sbin/init".into(),
        ..Default::default()
    });
    t.apply(&fork(1, "systemd", 100));
    t.apply(&exec(100, 1, "bash", "/bin/bash", "bash -i"));
    t.apply(&fork(100, "bash", 200));
    let ev = t.apply(&exec(200, 100, "nc", "/usr/bin/nc", "nc -l 4444"));
    assert_eq!(ev.evt_type, EvtType::Execve);
    assert_eq!(ev.proc.name, "nc");
    assert_eq!(ev.proc.ppid, 100);
    assert_eq!(ev.proc.cmdline(), "nc -l 4444");
    assert_eq!(ev.proc.user.as_deref(), Some("root"));
    let names: Vec<_> = ev.proc.ancestors.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["bash", "systemd"]);
    let exit = t.apply(&RawEvent::Exit {
        hdr: hdr(EventKind::Exit, 200, "nc"),
        body: ExitBody::default(),
    });
    assert_eq!(exit.evt_type, EvtType::Procexit);
    assert!(t.get(200).is_none());
}

fn open(pid: u32, comm: &str) -> RawEvent {
    RawEvent::Open {
        hdr: hdr(EventKind::Open, pid, comm),
        body: OpenBody {
            ret: 3,
            syscall: syscall::OPENAT,
            dirfd: -100,
            path_len: 2,
            ..Default::default()
        },
        path: b"/x".to_vec(),
        dir: Vec::new(),
    }
}

#[test]
fn cached_ancestor_chains_follow_changes() {
    let mut t = ProcTable::new(Clock::fixed(0), Users::default());
    t.apply(&exec(100, 1, "bash", "/bin/bash", "bash"));
    t.apply(&fork(100, "bash", 200));
    t.apply(&exec(200, 100, "worker", "/bin/worker", "worker"));
    let a = t.apply(&open(200, "worker"));
    let b = t.apply(&open(200, "worker"));
    assert!(
        Arc::ptr_eq(&a.proc.ancestors, &b.proc.ancestors),
        "chain reused"
    );
    assert_eq!(a.proc.ancestors[0].name, "bash");
    // The parent execs something else: the child's chain shows it at once.
    t.apply(&exec(100, 1, "python3", "/usr/bin/python3", "python3 x.py"));
    let c = t.apply(&open(200, "worker"));
    assert_eq!(c.proc.ancestors[0].name, "python3");
    assert_eq!(c.proc.ancestors[0].argv, ["python3", "x.py"]);
    // The parent renames itself (prctl): seen on the child's next event.
    t.apply(&open(100, "renamed"));
    let d = t.apply(&open(200, "worker"));
    assert_eq!(d.proc.ancestors[0].name, "renamed");
}

#[test]
fn failed_exec_keeps_the_old_image() {
    let mut t = ProcTable::new(Clock::fixed(0), Users::default());
    t.apply(&exec(300, 1, "sh", "/bin/sh", "sh"));
    let mut failed = exec(300, 1, "sh", "/nope", "nope -x");
    if let RawEvent::Exec { body, .. } = &mut failed {
        body.ret = -2;
    }
    let ev = t.apply(&failed);
    assert_eq!(ev.res, -2);
    assert_eq!(ev.proc.exepath, "/bin/sh");
    assert_eq!(ev.exec.as_ref().unwrap().argv, ["nope", "-x"]);
}

#[test]
fn open_and_connect_normalize() {
    let mut t = ProcTable::new(Clock::fixed(10), Users::default());
    let path = b"/etc/../etc/shadow".to_vec();
    let ev = t.apply(&RawEvent::Open {
        hdr: hdr(EventKind::Open, 5, "cat"),
        body: OpenBody {
            ret: 3,
            syscall: syscall::OPENAT,
            dirfd: -100,
            path_len: path.len() as u16,
            ..Default::default()
        },
        path,
        dir: Vec::new(),
    });
    assert_eq!(ev.ts, 1_010);
    let fd = ev.fd.unwrap();
    assert_eq!((fd.fd_type, fd.num), (FdType::File, 3));
    assert_eq!(fd.name, "/etc/shadow", "an absolute path is normalised too");
    assert_eq!(ev.open.unwrap().path, "/etc/../etc/shadow");
    let ev = t.apply(&RawEvent::Connect {
        hdr: hdr(EventKind::Connect, 5, "cat"),
        body: ConnectBody {
            ret: -111,
            fd: 4,
            family: AF_INET,
            dport: 8080,
            sport: 0,
            protocol: 6,
            daddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ..Default::default()
        },
        unix_path: Vec::new(),
    });
    let fd = ev.fd.unwrap();
    assert_eq!(fd.name, "0.0.0.0:0->127.0.0.1:8080");
    assert_eq!(fd.l4proto.as_deref(), Some("tcp"));
    assert_eq!(fd.rport, Some(8080));
    // A dual-stack socket's IPv4 peer is reported as IPv4, as Falco does.
    let mapped = |a: [u8; 4]| {
        let mut v = [0u8; 16];
        v[10] = 0xff;
        v[11] = 0xff;
        v[12..].copy_from_slice(&a);
        v
    };
    let ev = t.apply(&RawEvent::Connect {
        hdr: hdr(EventKind::Connect, 5, "java"),
        body: ConnectBody {
            ret: 0,
            fd: 5,
            family: AF_INET6,
            dport: 5432,
            sport: 40000,
            protocol: 6,
            daddr: mapped([10, 0, 3, 7]),
            saddr: mapped([10, 0, 3, 2]),
            ..Default::default()
        },
        unix_path: Vec::new(),
    });
    let fd = ev.fd.unwrap();
    assert_eq!(fd.fd_type, FdType::Ipv4);
    assert_eq!(fd.name, "10.0.3.2:40000->10.0.3.7:5432");
    assert_eq!(fd.rip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 7))));
    assert_eq!(unix_name(b"\0hidden\0\0"), "@hidden");
    assert_eq!(unix_name(b"/run/x.sock\0junk"), "/run/x.sock");
}

#[test]
fn relative_paths_use_the_last_known_cwd_when_proc_is_gone() {
    let mut t = ProcTable::new(Clock::fixed(0), Users::default());
    t.proc_root = Some(PathBuf::from("/nonexistent-proc"));
    t.insert(ProcEntry {
        pid: 100,
        comm: "bash".into(),
        cwd: Some("/srv/app".into()),
        ..Default::default()
    });
    t.apply(&fork(100, "bash", 200));
    let ev = t.apply(&exec(200, 100, "true", "./bin/../true", "true"));
    assert_eq!(ev.proc.exepath, "/srv/app/true");
    assert_eq!(ev.exec.unwrap().filename, "./bin/../true");
}

/// A relative open whose base directory the kernel resolved.
fn relative_open(path: &str, dir: &[u8], dirfd: i32) -> Event {
    let mut t = ProcTable::new(Clock::fixed(10), Users::default());
    let mut h = hdr(EventKind::Open, 7, "cat");
    h.flags |= flags::DIR_RESOLVED;
    t.apply(&RawEvent::Open {
        hdr: h,
        body: OpenBody {
            ret: 3,
            syscall: syscall::OPENAT,
            dirfd,
            path_len: path.len() as u16,
            dir_len: dir.len() as u16,
            ..Default::default()
        },
        path: path.as_bytes().to_vec(),
        dir: dir.to_vec(),
    })
}

#[test]
fn exepath_is_the_file_the_kernel_loaded_whatever_the_name() {
    let mut t = ProcTable::new(Clock::fixed(10), Users::default());
    let with_exe = |raw: RawEvent, exe: &[u8]| match raw {
        RawEvent::Exec {
            mut hdr,
            mut body,
            filename,
            args,
            ..
        } => {
            hdr.flags |= flags::EXE_RESOLVED;
            body.exe_len = exe.len() as u16;
            RawEvent::Exec {
                hdr,
                body,
                filename,
                args,
                exe: exe.to_vec(),
                cwd: Vec::new(),
            }
        }
        _ => unreachable!(),
    };
    let ev = t.apply(&with_exe(
        exec(300, 1, "innocent", "./innocent", "./innocent -sS"),
        b"nmap\0bin\0usr\0",
    ));
    assert_eq!(ev.proc.exepath, "/usr/bin/nmap", "a symlink named innocent");
    assert!(!ev.proc.exe_from_memfd);
    assert_eq!(ev.exec.unwrap().filename, "./innocent");
    let ev = t.apply(&with_exe(
        exec(301, 1, "4", "/dev/fd/4", "x"),
        b"memfd:payload\0",
    ));
    assert_eq!(ev.proc.exepath, "memfd:payload");
    assert!(ev.proc.exe_from_memfd);
    assert_eq!(
        exe_identity("/memfd:payload (deleted)"),
        ("memfd:payload".to_string(), true),
        "as /proc/<pid>/exe shows it"
    );
    assert_eq!(
        exe_identity("/usr/bin/nmap"),
        ("/usr/bin/nmap".to_string(), false)
    );
}

#[test]
fn long_argv_keeps_head_and_tail() {
    // argv: "nc", 3000 bytes of filler, "-e", "/bin/sh": the kernel sends
    // the first ARGS_HEAD bytes and the last ARGS_HEAD + 1.
    let filler = "A".repeat(3000);
    let full = format!("nc\0{filler}\0-e\0/bin/sh\0");
    let b = full.as_bytes();
    let mut area = b[..ARGS_HEAD].to_vec();
    area.extend_from_slice(&b[b.len() - ARGS_HEAD - 1..]);
    let argv = head_and_tail_args(&area);
    assert_eq!(argv[0], "nc");
    assert!(argv[1].starts_with("AAA") && argv[1].len() == ARGS_HEAD - 3);
    assert_eq!(
        &argv[2..],
        ["-e", "/bin/sh"],
        "the filler cut in the tail is dropped"
    );
    // A tail that starts exactly on an argument keeps it.
    let mut aligned = vec![b'x'; ARGS_HEAD];
    aligned.extend_from_slice(b"\0-e\0");
    aligned.resize(2 * ARGS_HEAD + 1, b'y');
    let argv = head_and_tail_args(&aligned);
    assert_eq!(argv[1], "-e");
}

#[test]
fn relative_paths_join_the_kernel_resolved_directory() {
    let name = |e: Event| e.fd.unwrap().name;
    assert_eq!(
        name(relative_open("shadow", b"etc\0", AT_FDCWD)),
        "/etc/shadow"
    );
    assert_eq!(
        name(relative_open("./../../etc/shadow", b"c\0b\0a\0", AT_FDCWD)),
        "/a/etc/shadow"
    );
    assert_eq!(
        name(relative_open("../../../../etc/shadow", b"c\0b\0a\0", 5)),
        "/etc/shadow"
    );
    assert_eq!(
        name(relative_open("shadow", b"", AT_FDCWD)),
        "/shadow",
        "the root"
    );
    let ev = relative_open("x", b"deep\0very\0", AT_FDCWD);
    assert_eq!(ev.open.unwrap().path, "x", "fd.nameraw keeps the text");
    assert_eq!(join_components(b"c\0b\0a\0"), "/a/b/c");
    assert_eq!(join_components(b""), "/");
}

#[test]
fn normalize_paths() {
    for p in [
        "/a/./b", "//a", "/a//b", "/a/.", "/a/..", "/a/../b", "/a/", "/./a", "/../a",
    ] {
        assert!(!is_normal(p), "{p}");
    }
    for p in [
        "/",
        "/a",
        "/a/b.c",
        "/a/.hidden",
        "/a/..b",
        "/a/b..",
        "/etc/shadow",
    ] {
        assert!(is_normal(p), "{p}");
        assert_eq!(normalize(p), p, "is_normal agrees with normalize");
    }
    assert_eq!(normalize("/a/./b/../c//d"), "/a/c/d");
    assert_eq!(normalize("/../x"), "/x");
    assert_eq!(normalize("//etc///shadow"), "/etc/shadow");
    assert_eq!(normalize("/etc/shadow/"), "/etc/shadow");
    assert_eq!(normalize("/"), "/");
    assert_eq!(split_args(b"a\0b c\0\0"), ["a", "b c", ""]);
    assert!(split_args(b"").is_empty());
}

#[test]
fn cwd_is_the_one_read_at_exec_not_the_one_copied_at_fork() {
    let mut t = ProcTable::new(Clock::fixed(10), Users::default());
    t.insert(ProcEntry {
        pid: 500,
        comm: "runc".into(),
        cwd: Some("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc".into()),
        ..Default::default()
    });
    t.apply(&fork(500, "runc", 501));
    // Without the kernel's reading, the cwd stays the one copied at fork.
    let ev = t.apply(&exec(501, 500, "sh", "/bin/sh", "sh"));
    assert_eq!(
        ev.proc.cwd.as_deref(),
        Some("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc")
    );
    // With it (runc's init went to the container's working directory).
    let mut raw = exec(501, 500, "app", "/app/run", "run");
    if let RawEvent::Exec { hdr, body, cwd, .. } = &mut raw {
        hdr.flags |= flags::CWD_RESOLVED;
        *cwd = b"data\0srv\0".to_vec();
        body.cwd_len = cwd.len() as u16;
    }
    let ev = t.apply(&raw);
    assert_eq!(ev.proc.cwd.as_deref(), Some("/srv/data"));
    // Later events of the process keep it; its children inherit it.
    t.apply(&fork(501, "app", 502));
    let ev = t.apply(&exec(502, 501, "cat", "/bin/cat", "cat x"));
    assert_eq!(ev.proc.cwd.as_deref(), Some("/srv/data"));
    // The root directory is no components at all.
    let mut raw = exec(502, 501, "cat", "/bin/cat", "cat");
    if let RawEvent::Exec { hdr, .. } = &mut raw {
        hdr.flags |= flags::CWD_RESOLVED;
    }
    assert_eq!(t.apply(&raw).proc.cwd.as_deref(), Some("/"));
}
