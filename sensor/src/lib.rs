//! mamori's userspace: decoding, process table, rules, outputs.
//!
//! The binary (`src/main.rs`) is a thin CLI over these modules. Everything
//! except [`bpf`], [`ringbuf`], [`pipeline`] and [`capture`] is pure userspace and testable
//! without root or a kernel.

pub mod alert;
pub mod bpf;
pub mod btf;
pub mod capture;
pub mod cmd_rules;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod fields;
pub mod health;
pub mod outputs;
pub mod pipeline;
pub mod proctable;
pub mod ringbuf;
pub mod rules;
pub mod run;
pub mod timefmt;
