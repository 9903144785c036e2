//! mamori's own cost, read at scrape time: CPU seconds, RSS, open fds (from
//! `/proc/self`), and the kernel programs' run count and run time when the
//! kernel keeps them (`kernel.bpf_stats_enabled = 1`; off by default because
//! the accounting itself costs a little on every run).

use std::sync::Mutex;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

/// `/proc/self` and the kernel programs.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    /// (program name, kernel program id) of mamori's attached programs.
    programs: Mutex<Vec<(String, u32)>>,
}

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SelfStats {
    pub cpu_seconds: f64,
    /// Seconds since the process started.
    pub age_seconds: f64,
    pub rss_bytes: u64,
    pub vsz_bytes: u64,
    pub open_fds: u64,
}

impl SelfStats {
    /// Read `/proc/self`; fields that cannot be read are 0.
    pub fn read() -> SelfStats {
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
        let mut s = SelfStats::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the `(comm)`, which may hold spaces: field 3 on.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime, stime, starttime are fields 14, 15, 22 (index 11, 12, 19).
            s.cpu_seconds = (num(11) + num(12)) / tick;
            let uptime = std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|u| u.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            s.age_seconds = (uptime - num(19) / tick).max(0.0);
        }
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
            let mut it = statm
                .split_whitespace()
                .map(|v| v.parse::<u64>().unwrap_or(0));
            s.vsz_bytes = it.next().unwrap_or(0) * page;
            s.rss_bytes = it.next().unwrap_or(0) * page;
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        s
    }

    /// CPU time over wall time since start (1.0 = one core busy).
    pub fn cpu_ratio(&self) -> f64 {
        if self.age_seconds > 0.0 {
            self.cpu_seconds / self.age_seconds
        } else {
            0.0
        }
    }
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        ProcessCollector::default()
    }

    pub fn set_programs(&self, ids: Vec<(String, u32)>) {
        *self.programs.lock().unwrap_or_else(|e| e.into_inner()) = ids;
    }
}

fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = SelfStats::read();
        let m = enc.encode_descriptor(
            "mamori_process_cpu_seconds",
            "CPU time used by mamori (user and system)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.cpu_seconds).encode(m)?;
        let rss = s.rss_bytes as f64;
        for (name, help, v) in [
            (
                "mamori_process_resident_memory_bytes",
                "Resident memory of mamori",
                rss,
            ),
            (
                "falcosecurity_falco_memory_rss_bytes",
                "Resident memory (Falco name; = mamori_process_resident_memory_bytes)",
                rss,
            ),
            (
                "falcosecurity_falco_memory_vsz_bytes",
                "Virtual memory size (Falco name)",
                s.vsz_bytes as f64,
            ),
            (
                "mamori_process_open_fds",
                "Open file descriptors",
                s.open_fds as f64,
            ),
            (
                "falcosecurity_falco_cpu_usage_ratio",
                "CPU time over wall time since start, 1 = one core (Falco name)",
                s.cpu_ratio(),
            ),
        ] {
            gauge(&mut enc, name, help, v)?;
        }
        let enabled = bpf_stats_enabled();
        gauge(
            &mut enc,
            "mamori_bpf_stats_enabled",
            "1 when kernel.bpf_stats_enabled is on and program run counts/times are exposed",
            if enabled { 1.0 } else { 0.0 },
        )?;
        if !enabled {
            return Ok(());
        }
        let ours = self
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let runs: Vec<(String, u64, f64)> = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .filter_map(|p| {
                let (name, _) = ours.iter().find(|(_, id)| *id == p.id())?;
                Some((name.clone(), p.run_count(), p.run_time().as_secs_f64()))
            })
            .collect();
        if runs.is_empty() {
            return Ok(());
        }
        let mut m = enc.encode_descriptor(
            "mamori_bpf_program_runs",
            "Runs of each mamori kernel program (kernel.bpf_stats_enabled)",
            None,
            MetricType::Counter,
        )?;
        for (name, count, _) in &runs {
            ConstCounter::new(*count).encode(m.encode_family(&[("program", name.as_str())])?)?;
        }
        let mut m = enc.encode_descriptor(
            "mamori_bpf_program_run_seconds",
            "Time spent in each mamori kernel program (kernel.bpf_stats_enabled)",
            None,
            MetricType::Counter,
        )?;
        for (name, _, secs) in &runs {
            ConstCounter::new(*secs).encode(m.encode_family(&[("program", name.as_str())])?)?;
        }
        Ok(())
    }
}
