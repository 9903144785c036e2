//! Kernel struct offsets from BTF.
//!
//! The kernel programs read a few `task_struct`, `mm_struct`, file and socket
//! members. Their offsets differ between kernels and builds, so instead of
//! baking in the build machine's layout we read the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`) at load time and pass the offsets in as a
//! global (`KernelOffsets`). Only the little of BTF needed for that is parsed:
//! type records, struct/union members (descending into anonymous members),
//! and the modifiers/typedefs between a member and its struct type.

use std::collections::HashMap;

use mamori_common::{KernelOffsets, NO_OFFSET};

const BTF_MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("BTF data is truncated at byte {0}")]
    Truncated(usize),
    #[error("not BTF (bad magic {0:#x})")]
    BadMagic(u16),
    #[error("unknown BTF kind {kind} at type id {id}")]
    UnknownKind { kind: u32, id: u32 },
}

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// `size_or_type`: size for structs/ints, referenced type for modifiers.
    size_or_type: u32,
    members: Vec<Member>,
}

/// A parsed BTF blob, enough to look up struct member offsets.
pub struct Btf {
    types: Vec<Type>, // index = type id; id 0 is `void`
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BtfError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(BtfError::Truncated(at))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Truncated(at))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Btf, BtfError> {
        Self::from_file("/sys/kernel/btf/vmlinux")
    }

    pub fn from_file(path: &str) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parse a little-endian BTF blob.
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = u16_at(data, 0)?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadMagic(magic));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated(hdr_len + str_off + str_len))?
            .to_vec();
        if data.len() < types_end {
            return Err(BtfError::Truncated(types_end));
        }
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = types_start;
        while at < types_end {
            let id = types.len() as u32;
            let name = u32_at(data, at)?;
            let info = u32_at(data, at + 4)?;
            let size_or_type = u32_at(data, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => {}
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let off = u32_at(data, at + 8)?;
                        let (bit_offset, bitfield_size) = if kind_flag {
                            (off & 0xff_ffff, off >> 24)
                        } else {
                            (off, 0)
                        };
                        members.push(Member {
                            name: u32_at(data, at)?,
                            ty: u32_at(data, at + 4)?,
                            bit_offset,
                            bitfield_size,
                        });
                        at += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => at += 12 * vlen,
                _ => return Err(BtfError::UnknownKind { kind, id }),
            }
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        let mut by_name = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if (t.kind == KIND_STRUCT || t.kind == KIND_UNION) && t.name != 0 {
                // Prefer the complete definition if a name appears twice.
                by_name
                    .entry(btf.string(t.name).to_string())
                    .or_insert(id as u32);
            }
        }
        btf.structs_by_name = by_name;
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follow typedefs and modifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset of `name` in struct/union `id`, descending into anonymous
    /// members. Returns (bit offset, member type id, bitfield size).
    fn find_member(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32, u32)> {
        let t = self.types.get(id as usize)?;
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name != 0 {
                if self.string(m.name) == name {
                    return Some((m.bit_offset, m.ty, m.bitfield_size));
                }
                continue;
            }
            let inner = self.resolve(m.ty);
            if let Some((off, ty, bf)) = self.find_member(inner, name, depth + 1) {
                return Some((m.bit_offset + off, ty, bf));
            }
        }
        None
    }

    /// Byte offset of a (possibly dotted, e.g. `__sk_common.skc_family`) member
    /// of `struct name`. `None` if the struct or member is missing, or if the
    /// member is a bitfield or not byte-aligned.
    pub fn member_offset(&self, strukt: &str, path: &str) -> Option<u32> {
        let mut id = *self.structs_by_name.get(strukt)?;
        let mut total = 0u32;
        for part in path.split('.') {
            let (bits, ty, bitfield) = self.find_member(id, part, 0)?;
            if bitfield != 0 || bits % 8 != 0 {
                return None;
            }
            total += bits / 8;
            id = self.resolve(ty);
        }
        Some(total)
    }

    /// The offsets the kernel programs need; missing members are `NO_OFFSET`
    /// (the programs then leave that field unknown).
    pub fn kernel_offsets(&self) -> KernelOffsets {
        let get = |s: &str, m: &str| self.member_offset(s, m).unwrap_or(NO_OFFSET);
        let first = |s: &str, ms: &[&str]| {
            ms.iter()
                .find_map(|m| self.member_offset(s, m))
                .unwrap_or(NO_OFFSET)
        };
        KernelOffsets {
            task_pid: get("task_struct", "pid"),
            task_tgid: get("task_struct", "tgid"),
            task_real_parent: get("task_struct", "real_parent"),
            task_mm: get("task_struct", "mm"),
            // Renamed from real_start_time in 5.5.
            task_start_boottime: first("task_struct", &["start_boottime", "real_start_time"]),
            task_loginuid: get("task_struct", "loginuid"),
            task_exit_code: get("task_struct", "exit_code"),
            task_files: get("task_struct", "files"),
            mm_arg_start: get("mm_struct", "arg_start"),
            mm_arg_end: get("mm_struct", "arg_end"),
            files_fdt: get("files_struct", "fdt"),
            fdtable_fd: get("fdtable", "fd"),
            fdtable_max_fds: get("fdtable", "max_fds"),
            file_private_data: get("file", "private_data"),
            socket_type: get("socket", "type"),
            socket_sk: get("socket", "sk"),
            // A bitfield before 5.6: then unknown.
            sock_protocol: get("sock", "sk_protocol"),
            sock_family: get("sock", "__sk_common.skc_family"),
            sock_rcv_saddr: get("sock", "__sk_common.skc_rcv_saddr"),
            sock_num: get("sock", "__sk_common.skc_num"),
            sock_v6_rcv_saddr: get("sock", "__sk_common.skc_v6_rcv_saddr"),
            task_signal: get("task_struct", "signal"),
            signal_tty: get("signal_struct", "tty"),
            tty_driver: get("tty_struct", "driver"),
            tty_index: get("tty_struct", "index"),
            driver_major: get("tty_driver", "major"),
            driver_minor_start: get("tty_driver", "minor_start"),
            task_cred: get("task_struct", "cred"),
            cred_uid: get("cred", "uid"),
            cred_gid: get("cred", "gid"),
            task_comm: get("task_struct", "comm"),
            task_cgroups: get("task_struct", "cgroups"),
            css_set_dfl_cgrp: get("css_set", "dfl_cgrp"),
            cgroup_kn: get("cgroup", "kn"),
            kernfs_node_id: get("kernfs_node", "id"),
            task_fs: get("task_struct", "fs"),
            fs_root: get("fs_struct", "root"),
            fs_pwd: get("fs_struct", "pwd"),
            path_mnt: get("path", "mnt"),
            path_dentry: get("path", "dentry"),
            dentry_parent: get("dentry", "d_parent"),
            dentry_name: get("dentry", "d_name.name"),
            vfsmount_root: get("vfsmount", "mnt_root"),
            mount_mnt: get("mount", "mnt"),
            mount_parent: get("mount", "mnt_parent"),
            mount_mountpoint: get("mount", "mnt_mountpoint"),
            file_path: get("file", "f_path"),
            mm_exe_file: get("mm_struct", "exe_file"),
            sock_daddr: get("sock", "__sk_common.skc_daddr"),
            sock_dport: get("sock", "__sk_common.skc_dport"),
            sock_v6_daddr: get("sock", "__sk_common.skc_v6_daddr"),
            sock_err: get("sock", "sk_err"),
            file_inode: get("file", "f_inode"),
            inode_mode: get("inode", "i_mode"),
            cred_cap_inheritable: get("cred", "cap_inheritable"),
            cred_cap_permitted: get("cred", "cap_permitted"),
            cred_cap_effective: get("cred", "cap_effective"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a BTF blob with: 1 = int, 2 = struct inner {a:int@0, b:int@32},
    /// 3 = struct outer {x:int@0, <anon>:inner@64, y:int@128, bf:int bitfield}.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0y\0bf\0".to_vec();
        let s = |name: &str| -> u32 {
            let pos = strings
                .windows(name.len() + 2)
                .position(|w| {
                    w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0
                })
                .unwrap();
            pos as u32 + 1
        };
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int
        push(s("int"));
        push(KIND_INT << 24);
        push(4);
        push(32);
        // 2: struct inner
        push(s("inner"));
        push((KIND_STRUCT << 24) | 2);
        push(8);
        push(s("a"));
        push(1);
        push(0);
        push(s("b"));
        push(1);
        push(32);
        // 3: struct outer (kind_flag set: bitfield encoding)
        push(s("outer"));
        push((1 << 31) | (KIND_STRUCT << 24) | 4);
        push(24);
        push(s("x"));
        push(1);
        push(0);
        push(0);
        push(2);
        push(64);
        push(s("y"));
        push(1);
        push(128);
        push(s("bf"));
        push(1);
        push((3 << 24) | 160);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&t);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn member_offsets_descend_into_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "x"), Some(0));
        assert_eq!(btf.member_offset("outer", "a"), Some(8));
        assert_eq!(btf.member_offset("outer", "b"), Some(12));
        assert_eq!(btf.member_offset("outer", "y"), Some(16));
        assert_eq!(btf.member_offset("inner", "b"), Some(4));
        assert_eq!(
            btf.member_offset("outer", "bf"),
            None,
            "bitfields are refused"
        );
        assert_eq!(btf.member_offset("outer", "nope"), None);
        assert_eq!(btf.member_offset("missing", "x"), None);
    }

    #[test]
    fn truncated_and_bad_magic_are_errors() {
        let b = blob();
        assert!(matches!(Btf::parse(&b[..30]), Err(BtfError::Truncated(_))));
        assert!(matches!(Btf::parse(&[0u8; 24]), Err(BtfError::BadMagic(0))));
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Truncated(0))));
    }

    #[test]
    fn running_kernel_offsets_resolve() {
        // Every kernel mamori supports has BTF; where this test runs without
        // it the parse is skipped loudly rather than passing silently.
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("no /sys/kernel/btf/vmlinux here; synthetic tests cover parsing");
            return;
        };
        let o = btf.kernel_offsets();
        for (name, v) in [
            ("task_pid", o.task_pid),
            ("task_tgid", o.task_tgid),
            ("task_real_parent", o.task_real_parent),
            ("task_mm", o.task_mm),
            ("task_start_boottime", o.task_start_boottime),
            ("mm_arg_start", o.mm_arg_start),
            ("mm_arg_end", o.mm_arg_end),
            ("task_files", o.task_files),
            ("socket_sk", o.socket_sk),
            ("sock_num", o.sock_num),
            ("signal_tty", o.signal_tty),
            ("driver_minor_start", o.driver_minor_start),
            ("task_cred", o.task_cred),
            ("cred_uid", o.cred_uid),
            ("cred_gid", o.cred_gid),
            ("task_comm", o.task_comm),
            ("task_cgroups", o.task_cgroups),
            ("css_set_dfl_cgrp", o.css_set_dfl_cgrp),
            ("cgroup_kn", o.cgroup_kn),
            ("kernfs_node_id", o.kernfs_node_id),
            ("sock_daddr", o.sock_daddr),
            ("sock_dport", o.sock_dport),
            ("sock_v6_daddr", o.sock_v6_daddr),
            ("sock_err", o.sock_err),
            ("file_inode", o.file_inode),
            ("inode_mode", o.inode_mode),
            ("cred_cap_effective", o.cred_cap_effective),
        ] {
            assert_ne!(v, NO_OFFSET, "{name} unresolved");
        }
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        assert_eq!(o.task_tgid, o.task_pid + 4);
    }
}
