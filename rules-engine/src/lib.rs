//! Falco-compatible rule engine: load Falco rule files unchanged, compile
//! them once, and evaluate events against only the rules that can match
//! their event type.
//!
//! Stages (each its own module, each handing the next a value):
//!
//! 1. [`yaml`] — YAML text → node tree with `line:col` on every node;
//! 2. `reader` — YAML items → typed infos (keys checked, positions kept);
//!    `collector` — lists, macros, rules across files (redefinition,
//!    `override`/`append`, visibility, file order);
//! 3. [`parser`] — condition text → AST with byte spans (EBNF in its docs,
//!    recursion capped);
//! 4. `compiler` — list and macro expansion, exceptions, field binding and
//!    type checks against the field registry (`fields/`), event-type derivation, active /
//!    inactive decision with reasons;
//!    `stateful` — mamori's `threshold:` / `sequence:` extension, read,
//!    compiled and run as a bounded state machine per rule;
//! 5. `eval` — the compiled tree, evaluated per event; [`Engine`] indexes
//!    rules by event type, and within a type by the process names a rule
//!    requires, so an event only meets rules that can match it.
//!
//! The crate is kernel-free and does no I/O: rule files arrive as text
//! ([`yaml::SourceFile`]), host facts (the node's name, `/etc/hosts`) through
//! [`LoadOptions`]. That is what lets the fuzz targets and the rules
//! benchmark use it alone.
//!
//! Library use (what `mamori run` does after reading its rule files):
//!
//! ```no_run
//! use mamori_rules::{yaml::SourceFile, Engine, LoadOptions};
//! # fn events() -> Vec<mamori_rules::event::Event> { Vec::new() }
//! let text = std::fs::read_to_string("rules/mamori_rules.yaml").map_err(|e| e.to_string())?;
//! let files = [SourceFile::new("rules/mamori_rules.yaml", text)];
//! let (engine, report) = Engine::load(&files, &LoadOptions::default())
//!     .map_err(|e| e.to_string())?;
//! for w in report.warnings() {
//!     eprintln!("{w}");
//! }
//! for ev in events() {
//!     for alert in engine.evaluate(&ev) {
//!         println!("{}", serde_json::to_string(&alert).unwrap_or_default());
//!     }
//! }
//! # Ok::<(), String>(())
//! ```
//!
//! Load problems are data ([`Diagnostic`] with a code and `file:line:col`),
//! never panics: a broken rule is reported and skipped, the rest still load.

// The API: the event model, alerts, the condition parser (fuzzed on its
// own), time and duration formats, positioned YAML and rule sources; the
// field registry's table is re-exported below.
pub mod alert;
pub mod duration;
pub mod event;
pub mod parser;
pub mod timefmt;
pub mod yaml;

// The stages behind `Engine`.
mod append;
mod collector;
mod compiler;
mod diag;
mod engine;
mod eval;
mod fields;
mod output;
mod reader;
mod stateful;
mod versions;
mod yaml_flow;

pub use append::{AppendOutput, ExtraField};
pub use compiler::{HostNames, RuleSummary, Status};
pub use diag::{Code, Diagnostic, ItemRef, LoadReport, Severity};
pub use engine::{Engine, LoadError, LoadOptions, RuleMatching};
pub use fields::{ArgKind, FieldInfo, FieldType, FIELDS};
pub use stateful::machine::StateStats;
