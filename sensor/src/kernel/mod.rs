//! The kernel side, as userspace sees it: loading and attaching the eBPF
//! programs and reading their loss counters ([`Sensor`]), reading the ring
//! buffer ([`ring`]) and decoding its records ([`decode`]).
//!
//! The probe table says which program attaches where and whether the sensor
//! can run without it. Struct offsets come from the running kernel's BTF
//! (see [`btf`]) and reach the programs as a global, with the other
//! runtime knobs, before the object is loaded.

pub mod btf;
pub mod decode;
mod probes;
pub mod ring;
mod startup;
pub mod systable;

pub use probes::{Attach, Probe, PROBES};

use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{BtfTracePoint, RawTracePoint, TracePoint},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use mamori_common::{
    config_flags, EventKind, KernelOffsets, SensorConfig, SysDesc, NO_OFFSET, SHED_SLOT,
};

use crate::kernel::btf::Btf;
use mamori_rules::event::Drops;
use startup::check_privileges;
pub use startup::{check_ring_size, LARGEST_EVENT, LARGEST_RECORD, MIN_RING_BYTES};

/// The eBPF object built by `sensor/build.rs` (empty with `AYA_BUILD_SKIP=1`).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/mamori"));

const SEND_LENGTH: &str = "mamori_sock_send_length";
const RECV_LENGTH: &str = "mamori_sock_recv_length";

/// How flow bytes are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowCounting {
    /// The sock length tracepoints where the kernel has them (>= 6.3),
    /// else the syscall exits.
    #[default]
    Auto,
    /// The syscall exits (what kernels before 6.3 use), even where the
    /// tracepoints exist: for tests of that path.
    Syscalls,
}

/// Whether the running kernel has the `sock:sock_send_length` tracepoint.
fn has_sock_length_tracepoints() -> bool {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .any(|t| {
            std::path::Path::new(t)
                .join("events/sock/sock_send_length")
                .exists()
        })
}

/// One of mamori's loaded programs, as the kernel names it (for the
/// tamper check that they stay loaded and attached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedProgram {
    pub name: String,
    pub id: u32,
    pub tag: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("this mamori was built without its eBPF object (AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error(
        "ring buffer size {0} must be a power of two and at least {MIN_RING_BYTES} bytes \
         (the largest event, an exec with its path and arguments, takes {LARGEST_RECORD} bytes \
         of ring; a smaller ring could never hold one)"
    )]
    RingSize(u32),
    #[error(
        "mamori needs root, or the capabilities CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN \
         before Linux 5.8), to load its eBPF programs: missing {missing} (running as uid \
         {uid}; run as root, or grant them, e.g. securityContext.capabilities.add)"
    )]
    Privileges { missing: String, uid: u32 },
    #[error("kernel BTF: {0} (mamori needs a kernel with CONFIG_DEBUG_INFO_BTF, Linux >= 5.8)")]
    Btf(#[from] crate::kernel::btf::BtfError),
    #[error("kernel BTF (for tp_btf programs): {0}")]
    AyaBtf(#[source] Box<aya::BtfError>),
    #[error("kernel BTF lacks {0}, which the programs need")]
    MissingOffset(&'static str),
    #[error("loading the eBPF object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program {program}: {what}: {source}")]
    Program {
        program: &'static str,
        what: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("ring buffer: {0}")]
    Ring(#[from] crate::kernel::ring::RingError),
}

/// By default opens are shed once the ring is three quarters full: the last
/// quarter (4 MiB of the default 16) holds thousands of exec, fork, exit and
/// connect events while userspace catches up.
pub const DEFAULT_SHED_ABOVE: f64 = 0.75;

/// What is captured unless asked otherwise: flows and DNS questions cost
/// work on every send, so they are captured only when asked for (`--events`,
/// or a loaded rule naming `evt.type = flow` / `dns`). The table-driven
/// families are on, and within them only the syscalls in
/// [`Options::syscalls`] are recorded.
pub const DEFAULT_KINDS: [EventKind; EventKind::ALL.len() - 2] = {
    // `ALL` ends with the two opt-in kinds (checked in the tests below).
    let mut out = [EventKind::Exec; EventKind::ALL.len() - 2];
    let mut i = 0;
    while i < out.len() {
        out[i] = EventKind::ALL[i];
        i += 1;
    }
    out
};

/// A live connection is reported at least this often while it moves bytes.
pub const DEFAULT_FLOW_INTERVAL_S: u32 = 30;

/// Load-time settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ring buffer size in bytes (power of two).
    pub ring_bytes: u32,
    /// Which event kinds to capture.
    pub kinds: Vec<EventKind>,
    /// Events of this process are dropped in the kernel (normally our own).
    pub self_tgid: u32,
    /// Read the clock for every open/connect event instead of once per CPU
    /// per scheduler tick (see `mamori_common::config_flags::PRECISE_TIME`).
    pub precise_time: bool,
    /// Shed open events while the ring is more than this fraction full, so
    /// the rest stays free for exec, fork, exit and connect events
    /// (`SensorConfig::shed_above`); `None`: never shed.
    pub shed_opens_above: Option<f64>,
    /// The table-driven syscalls to capture (mamori syscall ids, see
    /// [`systable`]), when their kind is in `kinds` too.
    pub syscalls: Vec<u16>,
    /// Seconds between interim flow reports of a live connection (0: only
    /// at close).
    pub flow_interval_s: u32,
    /// How flow bytes are counted.
    pub flow_counting: FlowCounting,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ring_bytes: 16 * 1024 * 1024,
            kinds: DEFAULT_KINDS.to_vec(),
            self_tgid: std::process::id(),
            precise_time: false,
            shed_opens_above: Some(DEFAULT_SHED_ABOVE),
            syscalls: systable::SYSCALLS.iter().map(|r| r.id).collect(),
            flow_interval_s: DEFAULT_FLOW_INTERVAL_S,
            flow_counting: FlowCounting::Auto,
        }
    }
}

/// The loaded, attached sensor.
pub struct Sensor {
    /// Keeps programs and links alive.
    _ebpf: Ebpf,
    ring: Option<crate::kernel::ring::BatchRing>,
    drops: PerCpuArray<MapData, u64>,
    last_drops: Drops,
    /// Tamper records (signals to mamori, ptrace attaches), taken once.
    tamper: Option<aya::maps::RingBuf<aya::maps::MapData>>,
    /// Programs attached (name, where).
    pub attached: Vec<&'static str>,
    /// Optional probes that could not attach, with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// Kernel ids of the attached programs (for their run stats in metrics).
    pub program_ids: Vec<(String, u32)>,
}

fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an rlimit; failure only matters on pre-5.11
    // kernels, where the load error then says what is wrong.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

/// Tracepoint attachment needs tracefs; mount it where the kernel offers it.
fn ensure_tracefs() {
    let base = std::path::Path::new("/sys/kernel/tracing");
    if base.join("events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return;
    }
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated constant strings; a failure is reported later by
    // the attach error.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        log::warn!(
            "tracefs is not mounted and mounting it failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Sensor {
    /// Resolve offsets, load the object, attach every probe.
    pub fn load(opts: &Options) -> Result<Sensor, AttachError> {
        check_ring_size(opts.ring_bytes)?;
        if EBPF_OBJECT.is_empty() {
            return Err(AttachError::NoObject);
        }
        check_privileges()?;
        raise_memlock();
        ensure_tracefs();
        let offsets = Btf::from_sys_fs()?.kernel_offsets();
        check_offsets(&offsets)?;
        let flows = opts.kinds.contains(&EventKind::Flow);
        let by_syscalls = flows
            && (opts.flow_counting == FlowCounting::Syscalls || !has_sock_length_tracepoints());
        let mut flags = 0;
        if opts.precise_time {
            flags |= config_flags::PRECISE_TIME;
        }
        if by_syscalls {
            flags |= config_flags::FLOW_SYSCALLS;
        }
        let config = SensorConfig {
            self_tgid: opts.self_tgid,
            enabled_kinds: opts.kinds.iter().fold(0, |m, k| m | 1 << k.index()),
            // An eighth of the ring across all CPUs between wakeups.
            wakeup_bytes: wakeup_bytes_per_cpu(opts.ring_bytes, possible_cpus()),
            flags,
            flow_interval_s: opts.flow_interval_s,
            shed_above: shed_above(opts.ring_bytes, opts.shed_opens_above),
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("MAMORI_CONFIG", &config, true)
            .override_global("MAMORI_OFFSETS", &offsets, true)
            .map_max_entries("EVENTS", opts.ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| AttachError::Load(Box::new(e)))?;
        fill_syscalls(&mut ebpf, opts)?;
        let kernel_btf = AyaBtf::from_sys_fs().map_err(|e| AttachError::AyaBtf(Box::new(e)))?;
        let mut attached = Vec::new();
        let mut skipped = Vec::new();
        for probe in PROBES {
            let off_by_kind = probe.only_for.is_some_and(|k| !opts.kinds.contains(&k));
            let counted_elsewhere =
                by_syscalls && (probe.program == SEND_LENGTH || probe.program == RECV_LENGTH);
            if off_by_kind || counted_elsewhere {
                continue;
            }
            match attach_or_fallback(&mut ebpf, probe, &kernel_btf, &mut skipped) {
                Ok(program) => attached.push(program),
                Err(e) if !probe.required => {
                    log::warn!(
                        "optional probe {} ({}) not attached: {e}",
                        probe.program,
                        probe.why
                    );
                    skipped.push((probe.program, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let ring = ebpf
            .take_map("EVENTS")
            .ok_or(AttachError::MissingMap("EVENTS"))?;
        let aya::maps::Map::RingBuf(ring) = ring else {
            return Err(AttachError::MissingMap("EVENTS"));
        };
        let ring = crate::kernel::ring::BatchRing::new(ring, opts.ring_bytes as usize)?;
        let drops = ebpf
            .take_map("DROPS")
            .ok_or(AttachError::MissingMap("DROPS"))?;
        let drops = PerCpuArray::try_from(drops).map_err(|e| AttachError::Map {
            name: "DROPS",
            source: Box::new(e),
        })?;
        let tamper = match ebpf.take_map("TAMPER") {
            Some(m) => aya::maps::RingBuf::try_from(m).ok(),
            None => None,
        };
        let program_ids = ebpf
            .programs()
            .filter(|(name, _)| attached.contains(name))
            .filter_map(|(name, p)| Some((name.to_string(), p.info().ok()?.id())))
            .collect();
        Ok(Sensor {
            program_ids,
            _ebpf: ebpf,
            ring: Some(ring),
            drops,
            last_drops: Drops::default(),
            tamper,
            attached,
            skipped,
        })
    }

    /// The tamper ring (taken once, by the tamper watch).
    pub fn take_tamper_ring(&mut self) -> Option<aya::maps::RingBuf<aya::maps::MapData>> {
        self.tamper.take()
    }

    /// The loaded programs with their kernel ids and tags.
    pub fn programs(&self) -> Vec<LoadedProgram> {
        self._ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some(LoadedProgram {
                    name: name.to_string(),
                    id: info.id(),
                    tag: info.tag(),
                })
            })
            .collect()
    }

    /// The event ring (taken once, by the reader).
    pub fn take_ring(&mut self) -> Option<crate::kernel::ring::BatchRing> {
        self.ring.take()
    }

    /// Total kernel-side drops per kind since load.
    pub fn drops_total(&self) -> Drops {
        let slot = |i: u32| -> u64 { self.drops.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        let mut d = Drops::default();
        for kind in EventKind::ALL {
            set_kind(&mut d, kind, slot(kind.index()));
        }
        // Shed opens are lost opens too; `shed` says how many were shed.
        d.shed = slot(SHED_SLOT);
        d.open += d.shed;
        d
    }

    /// Total drops of `kind` since load, per CPU (shed opens count as opens).
    pub fn drops_per_cpu(&self, kind: EventKind) -> Vec<u64> {
        let read = |i: u32| -> Vec<u64> {
            self.drops
                .get(&i, 0)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default()
        };
        let mut v = read(kind.index());
        if kind == EventKind::Open {
            for (a, b) in v.iter_mut().zip(read(SHED_SLOT)) {
                *a += b;
            }
        }
        v
    }

    /// Drops per kind since the previous call.
    pub fn drops_since_last(&mut self) -> Drops {
        let total = self.drops_total();
        let last = std::mem::replace(&mut self.last_drops, total.clone());
        Drops {
            exec: total.exec.saturating_sub(last.exec),
            fork: total.fork.saturating_sub(last.fork),
            exit: total.exit.saturating_sub(last.exit),
            open: total.open.saturating_sub(last.open),
            connect: total.connect.saturating_sub(last.connect),
            syscalls: total.syscalls.saturating_sub(last.syscalls),
            flow: total.flow.saturating_sub(last.flow),
            dns: total.dns.saturating_sub(last.dns),
            invalid: 0,
            shed: total.shed.saturating_sub(last.shed),
        }
    }
}

/// Fill the per-syscall descriptor map with the table-driven syscalls
/// `opts` selects (before attaching: no record of an unselected one is made).
fn fill_syscalls(ebpf: &mut Ebpf, opts: &Options) -> Result<(), AttachError> {
    let map = ebpf
        .map_mut("SYSCALLS")
        .ok_or(AttachError::MissingMap("SYSCALLS"))?;
    let mut table: Array<&mut MapData, SysDesc> =
        Array::try_from(map).map_err(|e| AttachError::Map {
            name: "SYSCALLS",
            source: Box::new(e),
        })?;
    for row in selected_rows(opts) {
        table
            .set(row.nr, row.desc(), 0)
            .map_err(|e| AttachError::Map {
                name: "SYSCALLS",
                source: Box::new(e),
            })?;
    }
    Ok(())
}

/// The table-driven syscalls `opts` selects: in `syscalls`, of a kind in `kinds`.
pub fn selected_rows(opts: &Options) -> impl Iterator<Item = &'static systable::SysRow> + '_ {
    systable::SYSCALLS
        .iter()
        .filter(|r| opts.syscalls.contains(&r.id) && opts.kinds.contains(&r.kind))
}

/// The ring fill (bytes) above which opens are shed; 0 = never.
fn shed_above(ring_bytes: u32, fraction: Option<f64>) -> u64 {
    match fraction {
        Some(f) if f > 0.0 && f < 1.0 => (ring_bytes as f64 * f) as u64,
        _ => 0,
    }
}

fn set_kind(d: &mut Drops, kind: EventKind, n: u64) {
    match kind {
        EventKind::Exec => d.exec = n,
        EventKind::Fork => d.fork = n,
        EventKind::Exit => d.exit = n,
        EventKind::Open => d.open = n,
        EventKind::Connect => d.connect = n,
        EventKind::Flow => d.flow = n,
        EventKind::Dns => d.dns = n,
        // The table-driven kinds are counted together.
        _ => d.syscalls += n,
    }
}

/// How many bytes each CPU submits between reader wakeups: together the CPUs
/// fill at most an eighth of the ring before the reader is woken (it also
/// polls every few milliseconds), and never less than 1 KiB per CPU.
fn wakeup_bytes_per_cpu(ring_bytes: u32, cpus: usize) -> u64 {
    (u64::from(ring_bytes) / 8 / cpus.max(1) as u64).max(1024)
}

/// CPUs the kernel may run programs on (the possible CPUs).
fn possible_cpus() -> usize {
    aya::util::nr_cpus()
        .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The offsets without which events would be wrong rather than incomplete.
fn check_offsets(o: &KernelOffsets) -> Result<(), AttachError> {
    for (name, v) in [
        ("task_struct.pid", o.task_pid),
        ("task_struct.tgid", o.task_tgid),
        ("task_struct.real_parent", o.task_real_parent),
        ("task_struct.mm", o.task_mm),
        ("mm_struct.arg_start", o.mm_arg_start),
        ("mm_struct.arg_end", o.mm_arg_end),
    ] {
        if v == NO_OFFSET {
            return Err(AttachError::MissingOffset(name));
        }
    }
    Ok(())
}

/// Attach `probe.program`, or its fallback when it does not load (noted in
/// `skipped`); the name of the program attached.
fn attach_or_fallback(
    ebpf: &mut Ebpf,
    probe: &Probe,
    btf: &AyaBtf,
    skipped: &mut Vec<(&'static str, String)>,
) -> Result<&'static str, AttachError> {
    match (
        attach(ebpf, probe.program, probe.attach, btf),
        probe.fallback,
    ) {
        (Ok(()), _) => Ok(probe.program),
        (Err(e), Some(alt)) => {
            // The verifier's log can be long; its first line says why.
            let e = e.to_string();
            let e = e
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>();
            log::info!("{} did not load ({e}); using {alt}", probe.program);
            attach(ebpf, alt, probe.attach, btf)?;
            skipped.push((probe.program, format!("{e}; {alt} attached instead")));
            Ok(alt)
        }
        (Err(e), None) => Err(e),
    }
}

fn attach(
    ebpf: &mut Ebpf,
    program: &'static str,
    at: Attach,
    btf: &AyaBtf,
) -> Result<(), AttachError> {
    let err = |what: &'static str| {
        move |e: aya::programs::ProgramError| AttachError::Program {
            program,
            what,
            source: Box::new(e),
        }
    };
    let prog = ebpf.program_mut(program).ok_or(AttachError::Program {
        program,
        what: "lookup",
        source: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
    })?;
    match at {
        Attach::Raw(tp) => {
            let p: &mut RawTracePoint = prog.try_into().map_err(err("type"))?;
            p.load().map_err(err("load (verifier)"))?;
            p.attach(tp).map_err(err("attach"))?;
        }
        Attach::Btf(tp) => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(err("type"))?;
            p.load(tp, btf).map_err(err("load (verifier)"))?;
            p.attach().map_err(err("attach"))?;
        }
        Attach::TracePoint(category, name) => {
            let p: &mut TracePoint = prog.try_into().map_err(err("type"))?;
            p.load().map_err(err("load (verifier)"))?;
            p.attach(category, name).map_err(err("attach"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_kinds_are_all_but_flow_and_dns() {
        use mamori_common::EventKind;
        let opt_in = [EventKind::Flow, EventKind::Dns];
        for k in EventKind::ALL {
            assert_eq!(
                super::DEFAULT_KINDS.contains(&k),
                !opt_in.contains(&k),
                "{k:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn wakeups_split_an_eighth_of_the_ring_across_cpus() {
        assert_eq!(shed_above(16 << 20, Some(DEFAULT_SHED_ABOVE)), 12 << 20);
        assert_eq!(shed_above(4096, Some(0.75)), 3072);
        assert_eq!(shed_above(4096, None), 0, "never shed");
        assert_eq!(
            shed_above(4096, Some(1.5)),
            0,
            "a fraction past 1 never sheds"
        );
        assert_eq!(wakeup_bytes_per_cpu(16 << 20, 2), 1 << 20);
        assert_eq!(wakeup_bytes_per_cpu(16 << 20, 1), 2 << 20);
        assert_eq!(wakeup_bytes_per_cpu(16 << 20, 0), 2 << 20);
        // Small rings and many CPUs still batch at least 1 KiB per wakeup.
        assert_eq!(wakeup_bytes_per_cpu(4096, 2), 1024);
        assert_eq!(wakeup_bytes_per_cpu(1 << 20, 1024), 1024);
    }
}
