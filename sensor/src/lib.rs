//! mamori's userspace sensor, by pipeline stage in flow order (the rule
//! engine itself is the kernel-free `mamori-rules` crate):
//!
//! 1. [`kernel`] — load and attach the eBPF programs (BTF offsets, probe
//!    table), read the ring buffer, decode raw records ([`kernel::decode`]);
//! 2. [`process`] — the process table: `/proc` seeding, fork/exec/exit
//!    state, users, and the normalisation of raw records into [`Event`]s;
//! 3. [`enrich`] — cgroup → container → pod metadata, from local caches;
//! 4. [`detect`] — rules ([`mamori_rules::Engine`]) plus mamori's internal
//!    alerts (kernel drops, evicted rule state);
//! 5. [`outputs`] — bounded queues, dedup, rate limits and retries in front
//!    of each sink (stdout, file, syslog, Slack, webhook);
//!
//! [`pipeline`] owns start-up and is the one place that reads as the data
//! flow; [`cli`] holds the commands (`run`, `capture`, `rules ...`,
//! `/healthz`); [`config`] loads `mamori.yaml`; [`host`] reads this node's
//! facts. Everything except [`kernel`], [`pipeline`] and the live commands is
//! testable without root or a kernel.
//!
//! [`Event`]: mamori_rules::event::Event

pub mod cli;
pub mod config;
pub mod detect;
pub mod enrich;
pub mod gap;
pub mod host;
pub mod kernel;
pub mod metrics;
pub mod outputs;
pub mod pipeline;
pub mod process;
pub mod reload;
pub mod tamper;
