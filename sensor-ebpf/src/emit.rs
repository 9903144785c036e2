//! Event assembly and submission: the per-CPU scratch buffer, the header, the
//! ring buffer, loss counters and runtime knobs.

use crate::current::Current;
use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_boot_ns, generated as gen},
    macros::map,
    maps::{ring_buf::RingBufEntry, PerCpuArray, RingBuf},
};
use mamori_common::{
    config_flags, EventKind, Header, KernelOffsets, SensorConfig, KIND_SLOTS, SCRATCH_SIZE,
    SHED_SLOT,
};

/// Open-event bytes a CPU submits between two looks at the ring's fill (it
/// also looks once per scheduler tick, so shedding stops when a flood does).
const SHED_CHECK_BYTES: u64 = 16 * 1024;

/// Runtime knobs, set by the loader (`EbpfLoader::set_global`).
#[unsafe(no_mangle)]
static MAMORI_CONFIG: SensorConfig = SensorConfig::DEFAULT;

/// Kernel struct offsets from the running kernel's BTF, set by the loader.
#[unsafe(no_mangle)]
static MAMORI_OFFSETS: KernelOffsets = KernelOffsets::UNKNOWN;

/// The event stream. Userspace sets the size at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Events that could not be queued (ring full), per [`EventKind::index`].
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(KIND_SLOTS, 0);

#[repr(C)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_SIZE],
    /// `jiffies` when `clock_ns` was read on this CPU.
    pub clock_jiffies: u64,
    /// The last precise clock reading on this CPU.
    pub clock_ns: u64,
    /// Bytes submitted on this CPU since it last woke the reader.
    pub unwoken_bytes: u64,
    /// Open-event bytes since this CPU last looked at the ring's fill.
    pub shed_bytes: u64,
    /// `jiffies` of that look.
    pub shed_jiffies: u64,
    /// Non-zero: the ring was over `shed_above` at that look.
    pub shedding: u64,
}

/// One buffer per CPU to assemble an event in (the BPF stack is 512 bytes).
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn config() -> SensorConfig {
    // SAFETY: reading a global the loader initialised; volatile so the compiler
    // does not fold the default value in.
    unsafe { core::ptr::read_volatile(&MAMORI_CONFIG) }
}

#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    &MAMORI_OFFSETS
}

/// Read one offset without letting the compiler fold the default.
#[inline(always)]
pub fn off(field: &u32) -> u32 {
    // SAFETY: `field` points into the `MAMORI_OFFSETS` global.
    unsafe { core::ptr::read_volatile(field) }
}

/// Whether `kind` is captured and the current process is not mamori
/// itself; the current pid/tgid (for the header) when it is.
#[inline(always)]
pub fn wanted(kind: EventKind, cur: &impl Current) -> Option<u64> {
    let cfg = config();
    if cfg.enabled_kinds & (1 << kind.index()) == 0 {
        return None;
    }
    let pid_tgid = cur.pid_tgid();
    ((pid_tgid >> 32) as u32 != cfg.self_tgid).then_some(pid_tgid)
}

/// Event time (boot clock, ns). With `precise`, a clock read; otherwise the
/// last reading on this CPU while the tick (`jiffies`, an inlined load) has
/// not moved: at most one tick early, and never before an exact event
/// (exec, fork, exit) on this CPU, whose reading it reuses.
///
/// Why: a clock read is a helper call plus an indirect call into the
/// clocksource, ~50 ns per event on a retpoline/return-thunk kernel; the
/// ring buffer already orders events exactly.
#[inline(always)]
pub fn now(precise: bool) -> u64 {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        // SAFETY: helper without preconditions.
        return unsafe { bpf_ktime_get_boot_ns() };
    };
    // SAFETY: helper without preconditions; `s` is this CPU's scratch slot.
    unsafe {
        let j = gen::bpf_jiffies64();
        if !precise && (*s).clock_jiffies == j && (*s).clock_ns != 0 {
            return (*s).clock_ns;
        }
        let t = bpf_ktime_get_boot_ns();
        (*s).clock_jiffies = j;
        (*s).clock_ns = t;
        t
    }
}

/// The scratch buffer of this CPU.
#[inline(always)]
pub fn scratch() -> Option<*mut u8> {
    SCRATCH.get_ptr_mut(0).map(|p| p.cast::<u8>())
}

/// Write the common header for the current task (`pid_tgid` from
/// [`wanted`]) at the start of `buf`.
#[inline(always)]
pub fn write_header(buf: *mut u8, kind: EventKind, pid_tgid: u64, cur: &impl Current) {
    let precise = !matches!(kind, EventKind::Open | EventKind::Connect);
    write_header_tag(buf, kind as u16, precise, pid_tgid, cur)
}

/// [`write_header`] for a type tag from a descriptor (the table-driven
/// records); `exact` reads the clock even without `PRECISE_TIME`.
#[inline(always)]
pub fn write_header_tag(buf: *mut u8, tag: u16, exact: bool, pid_tgid: u64, cur: &impl Current) {
    let precise = exact || config().flags & config_flags::PRECISE_TIME != 0;
    let uid_gid = cur.uid_gid();
    let h = buf.cast::<Header>();
    // SAFETY: `buf` is the scratch buffer, larger than `Header`, suitably
    // aligned (map values are 8-byte aligned).
    unsafe {
        (*h).kind = tag;
        (*h).flags = 0;
        (*h).size = 0;
        (*h).ts_boot_ns = now(precise);
        (*h).tid = pid_tgid as u32;
        (*h).tgid = (pid_tgid >> 32) as u32;
        (*h).uid = uid_gid as u32;
        (*h).gid = (uid_gid >> 32) as u32;
        (*h).cgroup_id = cur.cgroup_id();
        cur.comm(core::ptr::addr_of_mut!((*h).comm));
    }
}

/// Write an event's body right after its header in the scratch buffer, with
/// aligned stores: the buffer is 8-byte aligned (a map value) and the header
/// a multiple of 8 bytes, checked here at compile time. (An unaligned write
/// compiles to one store per byte for BPF.)
#[inline(always)]
pub fn write_body<T>(buf: *mut u8, body: T) {
    const {
        let align = core::mem::align_of::<T>();
        assert!(align <= 8 && core::mem::size_of::<Header>().is_multiple_of(align));
    };
    // SAFETY: `buf` is the scratch buffer (8-byte aligned, SCRATCH_SIZE
    // bytes, far larger than any header + body); alignment checked above.
    unsafe {
        buf.add(core::mem::size_of::<Header>())
            .cast::<T>()
            .write(body)
    }
}

#[inline(always)]
pub fn set_flag(buf: *mut u8, flag: u16) {
    let h = buf.cast::<Header>();
    // SAFETY: as in `write_header`.
    unsafe { (*h).flags |= flag }
}

/// Copy the first `len` bytes of `buf` into the ring buffer. The reader is
/// woken only after each `wakeup_bytes` submitted on this CPU (it also
/// polls), which keeps the per-event cost at a counter update: asking the
/// ring for its backlog instead is a helper call per event. A full ring
/// counts a drop for `kind`.
#[inline(always)]
pub fn submit(buf: *mut u8, len: usize, kind: EventKind) {
    submit_slot(buf, len, kind.index(), matches!(kind, EventKind::Open))
}

/// Whether the current process is not mamori itself (the kind's bit is
/// checked by the caller: table-driven records are enabled per syscall);
/// the pid/tgid for the header when it is not.
#[inline(always)]
pub fn not_self(cur: &impl Current) -> Option<u64> {
    let pid_tgid = cur.pid_tgid();
    ((pid_tgid >> 32) as u32 != config().self_tgid).then_some(pid_tgid)
}

/// [`submit`] with the drop-counter `slot` given; `sheddable` records are
/// shed while the ring is over `shed_above`.
#[inline(always)]
pub fn submit_slot(buf: *mut u8, len: usize, slot: u32, sheddable: bool) {
    // Bound the length for the verifier; real events are far below this.
    let len = len & (SCRATCH_SIZE - 1);
    let h = buf.cast::<Header>();
    // SAFETY: as in `write_header`.
    unsafe { (*h).size = len as u32 };
    if sheddable {
        if let Some(s) = SCRATCH.get_ptr_mut(0) {
            if shedding(s, len as u64) {
                count(SHED_SLOT);
                return;
            }
        }
    }
    let flags = wake_flags(len as u64);
    // The length again, re-read from the header and masked right before the
    // call: the compiler may prove the mask above redundant and drop it,
    // while a verifier older than 5.13 forgets a spilled length's bounds
    // (it then refuses the call). A volatile load is opaque to the compiler,
    // so this mask stays, next to its use.
    // SAFETY: as in `write_header`.
    let len = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*h).size)) } as usize
        & (SCRATCH_SIZE - 1);
    // SAFETY: `buf` holds at least `len` initialised bytes of this event.
    let data = unsafe { core::slice::from_raw_parts(buf as *const u8, len) };
    if EVENTS.output::<[u8]>(data, flags as u64).is_err() {
        count(slot & (KIND_SLOTS - 1));
    }
}

/// The ring-output flags for `len` more bytes from this CPU: a wakeup once
/// per `wakeup_bytes`, none otherwise.
#[inline(always)]
fn wake_flags(len: u64) -> u32 {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return BPF_RB_NO_WAKEUP;
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU.
    unsafe {
        let n = (*s).unwoken_bytes + len;
        if n >= config().wakeup_bytes {
            (*s).unwoken_bytes = 0;
            BPF_RB_FORCE_WAKEUP
        } else {
            (*s).unwoken_bytes = n;
            BPF_RB_NO_WAKEUP
        }
    }
}

/// Room for a fixed-size record of `kind`, written in place in the ring
/// (flow reports: they may be made from softirq context, where the scratch
/// buffer can be in use by the program they interrupted, and they are too
/// big for the stack of the `sys_exit` program they are inlined into). A
/// full ring counts a drop for `kind`.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind) -> Option<RingBufEntry<T>> {
    let e = EVENTS.reserve::<T>(0);
    if e.is_none() {
        count(kind.index());
    }
    e
}

/// Submit a record from [`reserve`].
#[inline(always)]
pub fn commit<T>(e: RingBufEntry<T>) {
    let flags = wake_flags(core::mem::size_of::<T>() as u64);
    e.submit(flags as u64);
}

/// Whether this CPU sheds open events now: the ring held more than
/// `shed_above` bytes when it last looked, at most [`SHED_CHECK_BYTES`] of
/// opens or one scheduler tick ago. A look is a helper call, so it is not
/// made per event.
#[inline(always)]
fn shedding(s: *mut Scratch, len: u64) -> bool {
    let above = config().shed_above;
    if above == 0 {
        return false;
    }
    // SAFETY: `s` is this CPU's scratch slot; nothing else runs on this CPU.
    // `bpf_jiffies64` has no preconditions.
    unsafe {
        let j = gen::bpf_jiffies64();
        let n = (*s).shed_bytes + len;
        if n >= SHED_CHECK_BYTES || (*s).shed_jiffies != j {
            (*s).shed_bytes = 0;
            (*s).shed_jiffies = j;
            (*s).shedding = (EVENTS.query(BPF_RB_AVAIL_DATA as u64) > above) as u64;
        } else {
            (*s).shed_bytes = n;
        }
        (*s).shedding != 0
    }
}

/// Count a lost event in drop slot `slot` ([`EventKind::index`] or
/// [`SHED_SLOT`]).
#[inline(always)]
fn count(slot: u32) {
    if let Some(p) = DROPS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}
