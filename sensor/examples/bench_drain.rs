//! Userspace drain ceiling: how many kernel records per second one core can
//! take through decode → process table → JSON, with no kernel involved.
//! Run by `cargo xtask bench capture`.

use std::time::Instant;

use mamori::{
    kernel::decode::{decode, encode, RawEvent},
    process::{Clock, ProcEntry, ProcTable, Users},
};
use mamori_common::{syscall, ConnectBody, EventKind, ExecBody, Header, OpenBody};

fn hdr(kind: EventKind, pid: u32) -> Header {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"worker");
    Header {
        kind: kind as u16,
        ts_boot_ns: 1_000_000,
        tid: pid,
        tgid: pid,
        uid: 1000,
        gid: 1000,
        cgroup_id: 7,
        comm,
        ..Default::default()
    }
}

fn records(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let pid = 1000 + (i % 200) as u32;
            let raw = match i % 20 {
                0 => {
                    let file = b"/usr/bin/curl".to_vec();
                    let args = b"curl\0-s\0http://10.0.0.1/\0".to_vec();
                    RawEvent::Exec {
                        hdr: hdr(EventKind::Exec, pid),
                        body: ExecBody {
                            ppid: 1,
                            syscall: syscall::EXECVE,
                            filename_len: file.len() as u16,
                            args_len: args.len() as u16,
                            ..Default::default()
                        },
                        filename: file,
                        args,
                        exe: Vec::new(),
                        cwd: Vec::new(),
                    }
                }
                1 | 2 => RawEvent::Connect {
                    hdr: hdr(EventKind::Connect, pid),
                    body: ConnectBody {
                        ret: -115,
                        fd: 5,
                        family: 2,
                        dport: 443,
                        protocol: 6,
                        daddr: [
                            10,
                            0,
                            0,
                            (i % 250) as u8,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                            0,
                        ],
                        ..Default::default()
                    },
                    unix_path: Vec::new(),
                },
                _ => {
                    let path = format!("/var/lib/app/data/file-{}.json", i % 1000).into_bytes();
                    RawEvent::Open {
                        hdr: hdr(EventKind::Open, pid),
                        body: OpenBody {
                            ret: 3,
                            syscall: syscall::OPENAT,
                            dirfd: -100,
                            path_len: path.len() as u16,
                            ..Default::default()
                        },
                        path,
                        dir: Vec::new(),
                    }
                }
            };
            encode(&raw)
        })
        .collect()
}

fn table() -> ProcTable {
    let mut t = ProcTable::new(Clock::fixed(0), Users::default());
    t.insert(ProcEntry {
        pid: 1,
        comm: "init".into(),
        exepath: "/sbin/init".into(),
        argv: vec!["/sbin/init".into()],
        ..Default::default()
    });
    for pid in 1000..1200 {
        t.insert(ProcEntry {
            pid,
            ppid: 1,
            comm: "worker".into(),
            exepath: "/usr/bin/worker".into(),
            argv: vec!["worker".into(), "--serve".into()],
            loginuid: -1,
            ..Default::default()
        });
    }
    t
}

fn main() {
    let n = 1_000_000;
    let recs = records(n);
    let mut t = table();
    let start = Instant::now();
    let mut sink = std::io::sink();
    for r in &recs {
        let raw = decode(r).expect("valid record");
        let ev = t.apply(&raw);
        serde_json::to_writer(&mut sink, &ev).expect("sink");
    }
    let full = start.elapsed().as_secs_f64();
    let mut t = table();
    let start = Instant::now();
    let mut kept = 0usize;
    for r in &recs {
        let raw = decode(r).expect("valid record");
        kept += t.apply(&raw).proc.argv.len();
    }
    let nojson = start.elapsed().as_secs_f64();
    assert!(kept > 0);
    println!(
        "userspace drain (1 core, {n} records): decode+table+JSON {:.0} events/s ({:.0} ns/event); decode+table {:.0} events/s ({:.0} ns/event)",
        n as f64 / full,
        full * 1e9 / n as f64,
        n as f64 / nojson,
        nojson * 1e9 / n as f64
    );
}
