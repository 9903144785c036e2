//! Ring-buffer records → [`RawEvent`].
//!
//! A pure function over bytes: it checks every size before reading, never
//! panics on hostile or truncated input, and says what was wrong with a typed
//! [`DecodeError`]. [`encode`] is its inverse, used by tests and benchmarks.

use mamori_common::{
    ConnectBody, DnsBody, EventKind, ExecBody, ExitBody, FlowBody, ForkBody, Header, OpenBody,
    SysBody, PARTS,
};

/// One decoded kernel record: the fixed parts as the kernel wrote them, plus
/// the variable-length byte strings that followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEvent {
    Exec {
        hdr: Header,
        body: ExecBody,
        filename: Vec<u8>,
        /// NUL-separated argv.
        args: Vec<u8>,
        /// The executable's path components, leaf first
        /// (`flags::EXE_RESOLVED`); empty otherwise.
        exe: Vec<u8>,
        /// The cwd's components at the exec, leaf first
        /// (`flags::CWD_RESOLVED`); empty otherwise.
        cwd: Vec<u8>,
    },
    Fork {
        hdr: Header,
        body: ForkBody,
    },
    Exit {
        hdr: Header,
        body: ExitBody,
    },
    Open {
        hdr: Header,
        body: OpenBody,
        path: Vec<u8>,
        /// The base directory's components, leaf first, NUL-terminated
        /// (`flags::DIR_RESOLVED`); empty otherwise.
        dir: Vec<u8>,
    },
    Connect {
        hdr: Header,
        body: ConnectBody,
        unix_path: Vec<u8>,
    },
    /// A table-driven syscall (`EventKind::is_sys`).
    Sys {
        hdr: Header,
        body: SysBody,
        /// The variable parts (`body.part_kind` says what each holds).
        parts: [Vec<u8>; PARTS],
    },
    /// The header describes the connection's owner.
    Flow {
        hdr: Header,
        body: FlowBody,
    },
    Dns {
        hdr: Header,
        body: DnsBody,
        /// The DNS message's first bytes, as sent.
        payload: Vec<u8>,
    },
}

impl RawEvent {
    pub fn header(&self) -> &Header {
        match self {
            RawEvent::Exec { hdr, .. }
            | RawEvent::Fork { hdr, .. }
            | RawEvent::Exit { hdr, .. }
            | RawEvent::Open { hdr, .. }
            | RawEvent::Connect { hdr, .. }
            | RawEvent::Sys { hdr, .. }
            | RawEvent::Flow { hdr, .. }
            | RawEvent::Dns { hdr, .. } => hdr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is too short for its {what} ({need} bytes)")]
    NotEnoughBytes {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("record header declares {declared} bytes but {actual} arrived")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("unknown event type tag {0:#06x}")]
    UnknownKind(u16),
    #[error("{kind} record of unknown syscall id {id}")]
    UnknownSyscall { kind: &'static str, id: u16 },
    #[error("{kind} record: strings need {need} bytes after the body but {got} remain")]
    StringsOverrun {
        kind: &'static str,
        need: usize,
        got: usize,
    },
}

/// Marker for the `#[repr(C)]` all-integer wire structs, which any byte
/// pattern of the right size is a valid value of.
trait Wire: Copy {}
impl Wire for Header {}
impl Wire for ExecBody {}
impl Wire for OpenBody {}
impl Wire for ConnectBody {}
impl Wire for ForkBody {}
impl Wire for ExitBody {}
impl Wire for SysBody {}
impl Wire for FlowBody {}
impl Wire for DnsBody {}

fn read<T: Wire>(bytes: &[u8], at: usize, what: &'static str) -> Result<T, DecodeError> {
    let need = at + std::mem::size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::NotEnoughBytes {
            what,
            need,
            got: bytes.len(),
        });
    }
    // SAFETY: the range was checked above; `T` is a plain-old-data wire struct
    // (integers and integer arrays only), valid for any bit pattern, and the
    // read is unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().add(at).cast::<T>()) })
}

fn as_bytes<T: Wire>(v: &T) -> &[u8] {
    // SAFETY: `T` is a `#[repr(C)]` integer struct with explicit padding fields,
    // so all of its bytes are initialised.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

const HDR: usize = std::mem::size_of::<Header>();

/// Take `lens` consecutive strings after the body at `at`.
fn strings<const N: usize>(
    bytes: &[u8],
    at: usize,
    lens: [usize; N],
    kind: &'static str,
) -> Result<[Vec<u8>; N], DecodeError> {
    let need: usize = lens.iter().sum();
    let rest = bytes.len().saturating_sub(at);
    if need > rest {
        return Err(DecodeError::StringsOverrun {
            kind,
            need,
            got: rest,
        });
    }
    let mut pos = at;
    Ok(lens.map(|n| {
        let s = bytes[pos..pos + n].to_vec();
        pos += n;
        s
    }))
}

/// Decode one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<RawEvent, DecodeError> {
    let hdr: Header = read(bytes, 0, "header")?;
    if hdr.size as usize != bytes.len() {
        return Err(DecodeError::SizeMismatch {
            declared: hdr.size as usize,
            actual: bytes.len(),
        });
    }
    let kind = EventKind::from_u16(hdr.kind).ok_or(DecodeError::UnknownKind(hdr.kind))?;
    Ok(match kind {
        EventKind::Exec => {
            let body: ExecBody = read(bytes, HDR, "exec body")?;
            let at = HDR + std::mem::size_of::<ExecBody>();
            let lens = [
                body.filename_len as usize,
                body.args_len as usize,
                body.exe_len as usize,
                body.cwd_len as usize,
            ];
            let [filename, args, exe, cwd] = strings(bytes, at, lens, "exec")?;
            RawEvent::Exec {
                hdr,
                body,
                filename,
                args,
                exe,
                cwd,
            }
        }
        EventKind::Fork => RawEvent::Fork {
            hdr,
            body: read(bytes, HDR, "fork body")?,
        },
        EventKind::Exit => RawEvent::Exit {
            hdr,
            body: read(bytes, HDR, "exit body")?,
        },
        EventKind::Open => {
            let body: OpenBody = read(bytes, HDR, "open body")?;
            let at = HDR + std::mem::size_of::<OpenBody>();
            let lens = [body.path_len as usize, body.dir_len as usize];
            let [path, dir] = strings(bytes, at, lens, "open")?;
            RawEvent::Open {
                hdr,
                body,
                path,
                dir,
            }
        }
        EventKind::Connect => {
            let body: ConnectBody = read(bytes, HDR, "connect body")?;
            let at = HDR + std::mem::size_of::<ConnectBody>();
            let [unix_path] = strings(bytes, at, [body.unix_path_len as usize], "connect")?;
            RawEvent::Connect {
                hdr,
                body,
                unix_path,
            }
        }
        EventKind::Flow => RawEvent::Flow {
            hdr,
            body: read(bytes, HDR, "flow body")?,
        },
        EventKind::Dns => {
            let body: DnsBody = read(bytes, HDR, "dns body")?;
            let at = HDR + std::mem::size_of::<DnsBody>();
            let [payload] = strings(bytes, at, [body.payload_len as usize], "dns")?;
            RawEvent::Dns { hdr, body, payload }
        }
        k if k.is_sys() => {
            let body: SysBody = read(bytes, HDR, "syscall body")?;
            if crate::kernel::systable::by_id(body.syscall).is_none_or(|r| r.kind != k) {
                return Err(DecodeError::UnknownSyscall {
                    kind: k.name(),
                    id: body.syscall,
                });
            }
            let at = HDR + std::mem::size_of::<SysBody>();
            let lens = body.part_len.map(usize::from);
            let parts = strings(bytes, at, lens, k.name())?;
            RawEvent::Sys { hdr, body, parts }
        }
        k => return Err(DecodeError::UnknownKind(k as u16)),
    })
}

/// The inverse of [`decode`]: lay a record out as the kernel would. The
/// header's `size` is set from the result; length fields are taken from the
/// body as given (so tests can build inconsistent records on purpose).
pub fn encode(ev: &RawEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let hdr = *ev.header();
    out.extend_from_slice(as_bytes(&hdr));
    match ev {
        RawEvent::Exec {
            body,
            filename,
            args,
            exe,
            cwd,
            ..
        } => {
            out.extend_from_slice(as_bytes(body));
            out.extend_from_slice(filename);
            out.extend_from_slice(args);
            out.extend_from_slice(exe);
            out.extend_from_slice(cwd);
        }
        RawEvent::Fork { body, .. } => out.extend_from_slice(as_bytes(body)),
        RawEvent::Exit { body, .. } => out.extend_from_slice(as_bytes(body)),
        RawEvent::Open {
            body, path, dir, ..
        } => {
            out.extend_from_slice(as_bytes(body));
            out.extend_from_slice(path);
            out.extend_from_slice(dir);
        }
        RawEvent::Connect {
            body, unix_path, ..
        } => {
            out.extend_from_slice(as_bytes(body));
            out.extend_from_slice(unix_path);
        }
        RawEvent::Sys { body, parts, .. } => {
            out.extend_from_slice(as_bytes(body));
            for p in parts {
                out.extend_from_slice(p);
            }
        }
        RawEvent::Flow { body, .. } => out.extend_from_slice(as_bytes(body)),
        RawEvent::Dns { body, payload, .. } => {
            out.extend_from_slice(as_bytes(body));
            out.extend_from_slice(payload);
        }
    }
    let size = out.len() as u32;
    out[4..8].copy_from_slice(&size.to_ne_bytes());
    out
}

#[cfg(test)]
mod tests {
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
        let kinds: std::collections::HashSet<u16> =
            samples().iter().map(|e| e.header().kind).collect();
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
}
