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
mod tests;
