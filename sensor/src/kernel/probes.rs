//! The probe table: which program attaches where, and whether the sensor
//! can run without it (kept apart from the loader so a new hook is one row).

use mamori_common::EventKind;

use super::{RECV_LENGTH, SEND_LENGTH};

/// Where a program attaches.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    /// A raw tracepoint by name.
    Raw(&'static str),
    /// A BTF-typed raw tracepoint (`tp_btf`) by name.
    Btf(&'static str),
    /// A formatted tracepoint by category and name.
    TracePoint(&'static str, &'static str),
}

/// One row of the probe table.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub program: &'static str,
    pub attach: Attach,
    /// Without a required probe the sensor refuses to start; others are
    /// skipped with a warning.
    pub required: bool,
    pub why: &'static str,
    /// A program for the same hook that needs less of the kernel, tried when
    /// `program` does not load (the first one that loads is attached).
    pub fallback: Option<&'static str>,
    /// Attached only when this kind is captured (and, for the byte
    /// counters, only where they are the counting method in use): a node
    /// whose rules do not ask for flows runs no program per send.
    pub only_for: Option<EventKind>,
}

/// Every program mamori loads. All need Linux >= 5.8 (ring buffer) with BTF.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "mamori_sys_exit",
        attach: Attach::Btf("sys_exit"),
        required: true,
        why: "open/openat/openat2/creat, connect, failed execve/execveat, the table-driven \
              syscalls the rules need (network, fds, identity, injection, files, chdir), dns \
              questions (send*), flow bytes on kernels < 6.3",
        // Task fields through helper calls instead of BTF loads (< 5.11).
        fallback: Some("mamori_sys_exit_compat"),
        only_for: None,
    },
    Probe {
        program: "mamori_sched_exec",
        attach: Attach::TracePoint("sched", "sched_process_exec"),
        required: true,
        why: "successful execs",
        fallback: None,
        only_for: None,
    },
    Probe {
        program: "mamori_enter_execveat",
        attach: Attach::TracePoint("syscalls", "sys_enter_execveat"),
        required: false,
        why: "tells execveat from execve",
        fallback: None,
        only_for: None,
    },
    Probe {
        program: "mamori_sched_fork",
        attach: Attach::Raw("sched_process_fork"),
        required: true,
        why: "process creation (process table)",
        fallback: None,
        only_for: None,
    },
    Probe {
        program: "mamori_sched_exit",
        attach: Attach::Raw("sched_process_exit"),
        required: true,
        why: "process exit (process table)",
        fallback: None,
        only_for: None,
    },
    Probe {
        program: "mamori_sock_set_state",
        attach: Attach::Raw("inet_sock_set_state"),
        required: false,
        why: "flow owners (connects), established and failed connections",
        fallback: None,
        only_for: Some(EventKind::Flow),
    },
    Probe {
        program: "mamori_tcp_destroy_sock",
        attach: Attach::Raw("tcp_destroy_sock"),
        required: false,
        why: "flow reports when a TCP socket is destroyed",
        fallback: None,
        only_for: Some(EventKind::Flow),
    },
    Probe {
        program: SEND_LENGTH,
        attach: Attach::Raw("sock_send_length"),
        required: false,
        why: "bytes sent per connection (Linux >= 6.3)",
        fallback: None,
        only_for: Some(EventKind::Flow),
    },
    Probe {
        program: RECV_LENGTH,
        attach: Attach::Raw("sock_recv_length"),
        required: false,
        why: "bytes received per connection (Linux >= 6.3)",
        fallback: None,
        only_for: Some(EventKind::Flow),
    },
    Probe {
        program: "mamori_signal_generate",
        attach: Attach::Raw("signal_generate"),
        required: false,
        why: "signals sent to mamori (tamper alerts)",
        fallback: None,
        only_for: None,
    },
    Probe {
        program: "mamori_enter_ptrace",
        attach: Attach::TracePoint("syscalls", "sys_enter_ptrace"),
        required: false,
        why: "ptrace attach requests (tamper alerts)",
        fallback: None,
        only_for: None,
    },
];
