//! The decoder's unit tests: round trips of every kind and typed errors.
use super::*;
use mamori_common::syscall;

fn hdr(kind: EventKind) -> Header {
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"curl");
    Header {
        kind: kind as u16,
        flags: 0,
        size: 0,
        ts_boot_ns: 123_456_789,
        tid: 4711,
        tgid: 4711,
        uid: 1000,
        gid: 1000,
        cgroup_id: 99,
        comm,
    }
}

fn samples() -> Vec<RawEvent> {
    let filename = b"/usr/bin/curl".to_vec();
    let args = b"curl\0-T\0/etc/passwd\0".to_vec();
    vec![
        RawEvent::Exec {
            hdr: hdr(EventKind::Exec),
            body: ExecBody {
                ret: 0,
                start_boot_ns: 5,
                ppid: 1,
                loginuid: 1000,
                syscall: syscall::EXECVE,
                filename_len: filename.len() as u16,
                args_len: args.len() as u16,
                exe_len: 9,
                dirfd: -100,
                at_flags: 0,
                tty: 0x8800,
                cwd_len: 8,
                _pad1: 0,
            },
            filename,
            args,
            exe: b"curl\0bin\0".to_vec(),
            cwd: b"app\0srv\0".to_vec(),
        },
        RawEvent::Fork {
            hdr: hdr(EventKind::Fork),
            body: ForkBody {
                child_tid: 4712,
                child_tgid: 4712,
                ppid: 4711,
                _pad0: 0,
                child_start_boot_ns: 9,
            },
        },
        RawEvent::Exit {
            hdr: hdr(EventKind::Exit),
            body: ExitBody {
                exit_code: 256,
                _pad0: 0,
                start_boot_ns: 5,
            },
        },
        RawEvent::Open {
            hdr: hdr(EventKind::Open),
            body: OpenBody {
                ret: -2,
                resolve: 0,
                flags: 0o100,
                mode: 0o644,
                dirfd: -100,
                syscall: syscall::OPENAT,
                path_len: 6,
                dir_len: 9,
                _pad0: 0,
                _pad1: 0,
            },
            path: b"shadow".to_vec(),
            dir: b"etc\0root\0".to_vec(),
        },
        RawEvent::Connect {
            hdr: hdr(EventKind::Connect),
            body: ConnectBody {
                ret: -111,
                fd: 3,
                addrlen: 16,
                family: 2,
                dport: 80,
                daddr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                ..Default::default()
            },
            unix_path: Vec::new(),
        },
        RawEvent::Flow {
            hdr: hdr(EventKind::Flow),
            body: FlowBody {
                bytes_out: 52_428_800,
                bytes_in: 17,
                start_boot_ns: 3,
                family: 2,
                sport: 40000,
                dport: 9000,
                state: mamori_common::flow_state::CLOSED,
                protocol: 6,
                ..Default::default()
            },
        },
        RawEvent::Dns {
            hdr: hdr(EventKind::Dns),
            body: DnsBody {
                ret: 29,
                fd: 3,
                syscall: syscall::SENDMMSG,
                family: 2,
                dport: 53,
                payload_len: 5,
                ..Default::default()
            },
            payload: b"\x12\x34\x01\x00\x00".to_vec(),
        },
    ]
    .into_iter()
    .chain(sys_samples())
    .collect()
}

/// One table-driven record of every such kind, with parts of every shape.
fn sys_samples() -> Vec<RawEvent> {
    use mamori_common::part;
    let mk = |kind: EventKind, sys: u16, parts: [&[u8]; PARTS], kinds: [u8; PARTS]| {
        let mut body = SysBody {
            ret: -13,
            args: [3, 0, 1, 2, 0x7fff_0000, 16],
            cap_effective: 1 << 21,
            syscall: sys,
            fd_num: 3,
            part_kind: kinds,
            ..Default::default()
        };
        body.fd.ftype = 12;
        body.fd.family = 2;
        body.fd.daddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        body.part_len = parts.map(|p| p.len() as u16);
        RawEvent::Sys {
            hdr: hdr(kind),
            body,
            parts: parts.map(<[u8]>::to_vec),
        }
    };
    vec![
        mk(
            EventKind::Net,
            syscall::BIND,
            [&[2, 0, 0, 80, 127, 0, 0, 1], &[], &[]],
            [part::SOCKADDR, 0, 0],
        ),
        mk(EventKind::Fds, syscall::DUP2, [&[], &[], &[]], [0; PARTS]),
        mk(
            EventKind::Identity,
            syscall::SETUID,
            [&[], &[], &[]],
            [0; PARTS],
        ),
        mk(
            EventKind::Inject,
            syscall::MOUNT,
            [b"none", b"/mnt", b"tmpfs"],
            [part::USTR; PARTS],
        ),
        mk(
            EventKind::FileOp,
            syscall::RENAME,
            [b"a", b"/tmp/b", &[]],
            [part::USTR, part::USTR, 0],
        ),
        mk(
            EventKind::Chdir,
            syscall::FCHDIR,
            [b"tmp\0", &[], &[]],
            [part::FDPATH, 0, 0],
        ),
    ]
}

fn with_size(mut ev: RawEvent) -> RawEvent {
    let bytes = encode(&ev);
    let size = bytes.len() as u32;
    match &mut ev {
        RawEvent::Exec { hdr, .. }
        | RawEvent::Fork { hdr, .. }
        | RawEvent::Exit { hdr, .. }
        | RawEvent::Open { hdr, .. }
        | RawEvent::Connect { hdr, .. }
        | RawEvent::Sys { hdr, .. }
        | RawEvent::Flow { hdr, .. }
        | RawEvent::Dns { hdr, .. } => hdr.size = size,
    }
    ev
}

#[test]
fn round_trip_every_kind() {
    let kinds: std::collections::HashSet<u16> = samples().iter().map(|e| e.header().kind).collect();
    for k in EventKind::ALL {
        assert!(kinds.contains(&(k as u16)), "no sample of {}", k.name());
    }
    for ev in samples() {
        let ev = with_size(ev);
        assert_eq!(decode(&encode(&ev)).unwrap(), ev);
    }
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for ev in samples() {
        let bytes = encode(&ev);
        for cut in 0..bytes.len() {
            let mut short = bytes[..cut].to_vec();
            if short.len() >= 8 {
                // Make the header agree with the shorter length, so the
                // body/string checks (not just the size check) are hit.
                short[4..8].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            assert!(decode(&short).is_err(), "cut at {cut} of {}", bytes.len());
        }
    }
}

#[test]
fn wrong_declared_size_is_rejected() {
    let mut bytes = encode(&samples()[3]);
    bytes.push(0);
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::SizeMismatch { declared, actual }) if actual == declared + 1
    ));
}

#[test]
fn a_syscall_id_outside_the_table_or_its_kind_is_rejected() {
    for (kind, id) in [(EventKind::Net, 999), (EventKind::Fds, syscall::SOCKET)] {
        let mut ev = sys_samples().remove(0);
        let RawEvent::Sys { hdr, body, .. } = &mut ev else {
            unreachable!()
        };
        hdr.kind = kind as u16;
        body.syscall = id;
        assert!(matches!(
            decode(&encode(&ev)),
            Err(DecodeError::UnknownSyscall { .. })
        ));
    }
}

#[test]
fn unknown_kind_is_rejected() {
    let mut bytes = encode(&samples()[1]);
    bytes[0..2].copy_from_slice(&0x7777u16.to_ne_bytes());
    assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(0x7777)));
}

#[test]
fn string_lengths_beyond_the_record_are_rejected() {
    let RawEvent::Open {
        hdr,
        mut body,
        path,
        dir,
    } = samples().remove(3)
    else {
        unreachable!()
    };
    body.path_len = 200;
    let bytes = encode(&RawEvent::Open {
        hdr,
        body,
        path,
        dir,
    });
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::StringsOverrun {
            kind: "open",
            need: 209,
            got: 15
        })
    ));
}

#[test]
fn header_only_is_too_short_for_a_body() {
    let mut h = hdr(EventKind::Open);
    h.size = HDR as u32;
    let bytes = as_bytes(&h).to_vec();
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::NotEnoughBytes {
            what: "open body",
            ..
        })
    ));
}
