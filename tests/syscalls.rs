//! End-to-end tests of the table-driven syscalls on the real kernel (root
//! only): every one made by a child to succeed and to fail, each recorded
//! with its result, its Falco arguments and its fd; and the per-syscall
//! selection — syscalls no rule needs are not recorded at all.
//!
//! Network rule: sockets talk to loopback only; mounts happen inside a
//! private mount namespace of a forked child.
//!
//! Run: `cargo test -p sensor --features e2e --test syscalls -- --test-threads=1`

#[path = "syscalls/child.rs"]
mod child;

use std::{
    collections::BTreeSet,
    net::UdpSocket,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use mamori::{
    kernel::{Options, Sensor},
    pipeline::{syscalls_for, Pipeline},
    process::{Clock, ProcTable, Users},
};
use mamori_rules::{
    event::{ArgValue, Event, EvtType, FdType},
    Engine, LoadOptions,
};

const CHILD_ENV: &str = "MAMORI_E2E_SYSCALLS_CHILD";

/// Entry point of the re-executed child. A no-op when run as a normal test.
#[test]
fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    child::child_all(&parts);
}

/// Run the child while capturing with `opts`; the events of the child and
/// its descendants.
fn capture_child(opts: Options) -> Vec<Event> {
    let dir = std::env::temp_dir().join(format!("mamori-e2e-sys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let spec = format!("{}|{}", dir.display(), sink.local_addr().unwrap().port());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let events = rt.block_on(async move {
        let sensor = Sensor::load(&opts).expect("load the eBPF programs (are you root?)");
        let table = ProcTable::seeded(
            std::path::Path::new("/proc"),
            Clock::now(),
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
            tokio::time::sleep(Duration::from_millis(1500)).await;
        };
        let mut events = Vec::new();
        let mut keep = |ev: &Event| {
            events.push(ev.clone());
            Ok(())
        };
        Pipeline::new(sensor, table, None)
            .unwrap()
            .run(&mut keep, shutdown)
            .await
            .unwrap();
        let pid = *child_pid.lock().unwrap();
        events
            .into_iter()
            .filter(|e| e.proc.pid == pid || e.proc.ancestors.iter().any(|a| a.pid == pid))
            .collect::<Vec<_>>()
    });
    let _ = std::fs::remove_dir_all(&dir);
    events
}

fn arg<'a>(e: &'a Event, name: &str) -> Option<&'a ArgValue> {
    e.args.as_ref()?.get(name)
}

fn int(e: &Event, name: &str) -> i64 {
    match arg(e, name) {
        Some(ArgValue::Int(v)) => *v,
        other => panic!("{} {name}: {other:?}", e.evt_type),
    }
}

fn text<'a>(e: &'a Event, name: &str) -> &'a str {
    match arg(e, name) {
        Some(ArgValue::Str(v)) => v,
        other => panic!("{} {name}: {other:?}", e.evt_type),
    }
}

/// Event types made only to fail (no module is loaded, no root pivoted).
const FAIL_ONLY: &[EvtType] = &[
    EvtType::InitModule,
    EvtType::FinitModule,
    EvtType::PivotRoot,
];

#[test]
fn every_table_driven_syscall_succeeds_and_fails_with_its_arguments() {
    let evs = capture_child(Options::default());
    let of = |t: EvtType| evs.iter().filter(move |e| e.evt_type == t);
    let mut missing = Vec::new();
    for t in EvtType::ALL.into_iter().filter(|t| t.is_table_driven()) {
        let ok = of(t).any(|e| e.res >= 0);
        let failed = of(t).any(|e| e.res < 0);
        if !failed || (!ok && !FAIL_ONLY.contains(&t)) {
            missing.push(format!("{t} (success {ok}, failure {failed})"));
        }
        for e in of(t) {
            let c = e.caps.expect("capabilities on every record");
            assert!(e.args.is_some(), "{t}: no arguments");
            // Root until the identity tests give it up.
            if e.proc.uid == 0 && t != EvtType::Capset {
                assert_ne!(c.effective, 0, "{t}: root with no capabilities");
            }
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}");

    // socket: the packet socket's domain; bind: the address as given.
    assert!(of(EvtType::Socket).any(|e| int(e, "domain") == 17 && e.res >= 0));
    let bind = of(EvtType::Bind).find(|e| e.res == 0).unwrap();
    assert_eq!(text(bind, "addr"), "127.0.0.1:0");
    assert_eq!(bind.fd.as_ref().unwrap().fd_type, FdType::Ipv4);
    // sendto/sendmsg/sendmmsg: only sends to an address, with the
    // destination as the remote end; the connected socket's send is absent.
    let sends: Vec<&Event> = of(EvtType::Sendto).filter(|e| e.res >= 0).collect();
    assert_eq!(
        sends.len(),
        1,
        "a connected socket's send must not be recorded"
    );
    for t in [EvtType::Sendto, EvtType::Sendmsg, EvtType::Sendmmsg] {
        let e = of(t).find(|e| e.res >= 0).unwrap();
        let fd = e.fd.as_ref().unwrap();
        assert_eq!(fd.rip.unwrap().to_string(), "127.0.0.1", "{t}");
        assert_eq!(fd.l4proto.as_deref(), Some("udp"), "{t}");
        assert!(
            text(e, "tuple").contains("->127.0.0.1:"),
            "{t}: {}",
            text(e, "tuple")
        );
    }
    // accept: the connection's peer is the client.
    let acc = of(EvtType::Accept).find(|e| e.res >= 0).unwrap();
    let fd = acc.fd.as_ref().unwrap();
    assert!(fd.server && fd.rport.unwrap() != 0 && fd.sport.unwrap() != 0);
    assert_eq!(
        int(of(EvtType::Listen).find(|e| e.res == 0).unwrap(), "backlog"),
        7
    );
    // dup2: the socket duplicated onto fd 100 is an IPv4 socket.
    let d = of(EvtType::Dup2).find(|e| e.res == 100).unwrap();
    let fd = d.fd.as_ref().unwrap();
    assert_eq!(fd.fd_type, FdType::Ipv4);
    assert!(fd.name.contains("->127.0.0.1:"), "{}", fd.name);
    assert_eq!(int(d, "newfd"), 100);
    // fcntl: only F_DUPFD.
    assert!(of(EvtType::Fcntl).all(|e| int(e, "cmd") == 0));
    // Injection and kernel.
    assert!(of(EvtType::Ptrace).any(|e| int(e, "request") == 0 && e.res == 0));
    assert!(of(EvtType::Ptrace).any(|e| int(e, "request") == 16 && e.res < 0));
    assert!(of(EvtType::MemfdCreate).any(|e| text(e, "name") == "mamori-e2e-memfd"));
    assert!(of(EvtType::FinitModule).all(|e| text(e, "uargs") == "mamori_e2e=1"));
    let m = of(EvtType::Mount)
        .find(|e| e.res == 0 && text(e, "type") == "tmpfs")
        .unwrap();
    assert!(text(m, "dir").ends_with("/mnt"));
    assert!(of(EvtType::Unshare).any(|e| int(e, "flags") == libc::CLONE_NEWNS as i64 && e.res == 0));
    // setns: the namespace file's fd is described (nsfs names its dentries
    // only when asked, so the name is not the `uts:[...]` a readlink shows).
    let ns = of(EvtType::Setns).find(|e| e.res == 0).unwrap();
    assert_eq!(int(ns, "nstype"), libc::CLONE_NEWUTS as i64);
    assert!(ns.fd.is_some(), "{:?}", ns.fd);
    // Files: Falco's argument names.
    let s = of(EvtType::Symlink).find(|e| e.res == 0).unwrap();
    assert_eq!(text(s, "target"), "/etc/shadow");
    assert!(text(s, "linkpath").ends_with("/sym"));
    let r = of(EvtType::Rename).find(|e| e.res == 0).unwrap();
    assert!(text(r, "oldpath").ends_with("/a") && text(r, "newpath").ends_with("/b"));
    assert_eq!(
        int(of(EvtType::Chmod).find(|e| e.res == 0).unwrap(), "mode"),
        0o755
    );
    let fc = of(EvtType::Fchmod).find(|e| e.res == 0).unwrap();
    assert!(fc.fd.as_ref().unwrap().name.ends_with("/b"), "{:?}", fc.fd);
    let fd = of(EvtType::Fchdir).find(|e| e.res == 0).unwrap();
    assert_eq!(fd.fd.as_ref().unwrap().fd_type, FdType::Directory);
    // Identity: the failures come after root was given up.
    assert!(of(EvtType::Setuid).any(|e| e.res < 0 && e.proc.uid == 65534));
    let ok = of(EvtType::Setuid).find(|e| e.res == 0).unwrap();
    assert_ne!(
        ok.caps.unwrap().effective & (1 << 7),
        0,
        "CAP_SETUID as root"
    );
}

/// The selection, both ways: a rule on `evt.type = ptrace` turns ptrace on
/// and leaves every other table-driven syscall off in the kernel.
#[test]
fn only_the_syscalls_a_rule_needs_are_recorded() {
    let rules =
        "- rule: P\n  desc: d\n  condition: evt.type = ptrace\n  output: o\n  priority: info\n";
    let (engine, report) = Engine::from_sources(&[("p.yaml", rules)], &LoadOptions::default());
    assert!(!report.has_errors());
    let opts = Options {
        syscalls: syscalls_for(&engine.needed_types()),
        ..Options::default()
    };
    assert_eq!(opts.syscalls.len(), 1);
    let evs = capture_child(opts);
    let seen: BTreeSet<&str> = evs
        .iter()
        .filter(|e| e.evt_type.is_table_driven())
        .map(|e| e.evt_type.as_str())
        .collect();
    assert_eq!(seen, BTreeSet::from(["ptrace"]));
    // The always-captured kinds still arrive.
    assert!(evs
        .iter()
        .any(|e| e.evt_type == EvtType::Openat || e.evt_type == EvtType::Open));
}
