//! A `drop` event's loss counts, per kind of kernel event.

use serde::{Deserialize, Serialize};

/// A loss report: how many events of each kind the kernel could not queue
/// since the previous report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drops {
    pub exec: u64,
    pub fork: u64,
    pub exit: u64,
    pub open: u64,
    pub connect: u64,
    /// The table-driven syscalls (network, fds, identity, injection, files).
    #[serde(default)]
    pub syscalls: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub flow: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub dns: u64,
    /// Records the decoder rejected (truncated or malformed).
    #[serde(default)]
    pub invalid: u64,
    /// Of the lost opens (`open`), how many the kernel shed on purpose: the
    /// ring was filling, and its rest is kept for exec, fork, exit and
    /// connect events. Not added again in [`Drops::total`].
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub shed: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

impl Drops {
    pub fn total(&self) -> u64 {
        self.exec
            + self.fork
            + self.exit
            + self.open
            + self.connect
            + self.syscalls
            + self.flow
            + self.dns
            + self.invalid
    }

    /// Per-kind counts, in a fixed order (for logs, alerts and metrics).
    pub fn by_kind(&self) -> [(&'static str, u64); 9] {
        [
            ("exec", self.exec),
            ("fork", self.fork),
            ("exit", self.exit),
            ("open", self.open),
            ("connect", self.connect),
            ("syscalls", self.syscalls),
            ("flow", self.flow),
            ("dns", self.dns),
            ("undecodable", self.invalid),
        ]
    }

    /// Add another report's counts.
    pub fn add(&mut self, other: &Drops) {
        self.exec += other.exec;
        self.fork += other.fork;
        self.exit += other.exit;
        self.open += other.open;
        self.connect += other.connect;
        self.syscalls += other.syscalls;
        self.flow += other.flow;
        self.dns += other.dns;
        self.invalid += other.invalid;
        self.shed += other.shed;
    }
}

impl std::fmt::Display for Drops {
    /// `N events lost (exec=.. fork=.. ...)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} events lost (", self.total())?;
        // The opt-in kinds (flow, dns) are shown only when they lost some.
        let shown = self
            .by_kind()
            .into_iter()
            .filter(|&(k, n)| n > 0 || !matches!(k, "flow" | "dns"));
        for (i, (k, n)) in shown.enumerate() {
            let sep = if i == 0 { "" } else { " " };
            write!(f, "{sep}{k}={n}")?;
        }
        f.write_str(")")?;
        if self.shed > 0 {
            write!(
                f,
                "; {} of the opens shed to keep room for exec, fork, exit and connect events",
                self.shed
            )?;
        }
        Ok(())
    }
}
