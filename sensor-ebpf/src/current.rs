//! Who is running: the current task's identity for event headers.
//!
//! Two sources with the same answers. [`Helpers`] asks the kernel through
//! helper calls and works everywhere mamori loads. [`BtfTask`] reads the same
//! fields from `bpf_get_current_task_btf()` (Linux >= 5.11) with plain loads
//! the verifier checks against the kernel's BTF: on the syscall-exit hot path
//! that replaces four helper calls (each a call, a return and, on kernels
//! with return-thunk mitigations, a costly return) by a handful of loads.
//! Offsets come from the loader (`KernelOffsets`, read-only globals, so
//! constants to the verifier); a member the running kernel lacks falls back
//! to the helper, a branch the verifier prunes at load time.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, generated as gen,
};
use mamori_common::NO_OFFSET;

use crate::emit::{off, offsets};

/// The current task's identity, as the event header needs it.
pub trait Current: Sized {
    /// The source for the running task. Call it only once an event is
    /// certain to be built: for [`BtfTask`] it is a helper call.
    fn get() -> Self;
    /// `tgid << 32 | pid`, as `bpf_get_current_pid_tgid`.
    fn pid_tgid(&self) -> u64;
    /// `gid << 32 | uid`, as `bpf_get_current_uid_gid`.
    fn uid_gid(&self) -> u64;
    /// Cgroup v2 id, as `bpf_get_current_cgroup_id`.
    fn cgroup_id(&self) -> u64;
    /// Copy `comm` (16 bytes, NUL-padded) to `dst`; zeroes on failure.
    ///
    /// # Safety
    /// `dst` must be valid for a 16-byte write and 8-byte aligned (it is the
    /// header's `comm`, at an 8-byte offset of the aligned scratch buffer).
    unsafe fn comm(&self, dst: *mut [u8; 16]);
}

/// Helper calls: any kernel.
pub struct Helpers;

impl Current for Helpers {
    #[inline(always)]
    fn get() -> Self {
        Helpers
    }

    #[inline(always)]
    fn pid_tgid(&self) -> u64 {
        bpf_get_current_pid_tgid()
    }

    #[inline(always)]
    fn uid_gid(&self) -> u64 {
        bpf_get_current_uid_gid()
    }

    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        // SAFETY: helper without preconditions.
        unsafe { bpf_get_current_cgroup_id() }
    }

    #[inline(always)]
    unsafe fn comm(&self, dst: *mut [u8; 16]) {
        // Straight into `dst` (the safe wrapper zeroes and copies a temporary).
        if gen::bpf_get_current_comm(dst.cast(), 16) != 0 {
            *dst = [0; 16];
        }
    }
}

/// Plain loads from the current task's BTF pointer: Linux >= 5.11.
pub struct BtfTask(*const u8);

/// Load a `T` at `base + offset` through a BTF-typed kernel pointer.
///
/// # Safety
/// `base` must be a BTF pointer of the struct `offset` was resolved in, and a
/// `T` must match the member's size. The verifier checks both against the
/// kernel's BTF (a mismatch fails the load, never reads wild memory), and
/// loads through a NULL pointer read as 0.
#[inline(always)]
unsafe fn load<T>(base: *const u8, offset: u32) -> T {
    core::ptr::read_volatile(base.add(offset as usize).cast::<T>())
}

impl Current for BtfTask {
    #[inline(always)]
    fn get() -> Self {
        // SAFETY: helper without preconditions; it never returns NULL.
        BtfTask(unsafe { gen::bpf_get_current_task_btf() } as *const u8)
    }

    #[inline(always)]
    fn pid_tgid(&self) -> u64 {
        let o = offsets();
        let (p, t) = (off(&o.task_pid), off(&o.task_tgid));
        if p == NO_OFFSET || t == NO_OFFSET {
            return bpf_get_current_pid_tgid();
        }
        // SAFETY: `self.0` is the current task_struct; offsets from its BTF.
        let (pid, tgid) = unsafe { (load::<u32>(self.0, p), load::<u32>(self.0, t)) };
        (tgid as u64) << 32 | pid as u64
    }

    #[inline(always)]
    fn uid_gid(&self) -> u64 {
        let o = offsets();
        let (c, u, g) = (off(&o.task_cred), off(&o.cred_uid), off(&o.cred_gid));
        if c == NO_OFFSET || u == NO_OFFSET || g == NO_OFFSET {
            return bpf_get_current_uid_gid();
        }
        // SAFETY: task_struct.cred, then cred.uid/gid (kuid_t/kgid_t: one u32).
        unsafe {
            let cred: *const u8 = load(self.0, c);
            (load::<u32>(cred, g) as u64) << 32 | load::<u32>(cred, u) as u64
        }
    }

    #[inline(always)]
    fn cgroup_id(&self) -> u64 {
        let o = offsets();
        let (cs, dfl, kn, id) = (
            off(&o.task_cgroups),
            off(&o.css_set_dfl_cgrp),
            off(&o.cgroup_kn),
            off(&o.kernfs_node_id),
        );
        if cs == NO_OFFSET || dfl == NO_OFFSET || kn == NO_OFFSET || id == NO_OFFSET {
            return Helpers.cgroup_id();
        }
        // SAFETY: task->cgroups->dfl_cgrp->kn->id, each a BTF-checked load
        // (what the helper does: task_dfl_cgroup(current)->kn->id).
        unsafe {
            let set: *const u8 = load(self.0, cs);
            let cgrp: *const u8 = load(set, dfl);
            let node: *const u8 = load(cgrp, kn);
            load(node, id)
        }
    }

    #[inline(always)]
    unsafe fn comm(&self, dst: *mut [u8; 16]) {
        let c = off(&offsets().task_comm);
        if c == NO_OFFSET {
            return Helpers.comm(dst);
        }
        // Two 8-byte loads from task_struct.comm (char[16]), two aligned
        // stores (see the trait's safety note).
        let d = dst.cast::<u64>();
        d.write(load(self.0, c));
        d.add(1).write(load(self.0, c + 8));
    }
}
