//! `mamori rules list --events`: which syscalls the kernel records for a
//! rule set (the selection `mamori run` makes), and the rules needing each.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use mamori_rules::event::EvtType;
use mamori_rules::{RuleMatching, Status};

use crate::cli::rules::rule_paths;
use crate::detect::rule_files;

/// `rules list --events`: the syscalls the kernel captures for these rules
/// (always: exec, fork, exit, open family, connect; table-driven: only those
/// an active rule's `evt.type` names), with the rules that need each.
pub fn list_events(paths: &[PathBuf], json: bool) -> anyhow::Result<ExitCode> {
    let (engine, report) = rule_files::compile(
        &rule_paths(paths),
        &rule_files::options(RuleMatching::First),
    );
    let needed = engine.needed_types();
    let ids = crate::pipeline::syscalls_for(&needed);
    let rows: Vec<(&str, bool, Vec<&str>)> = EvtType::ALL
        .iter()
        .filter(|t| **t != EvtType::Drop)
        .map(|t| {
            let table = crate::kernel::systable::by_evt(*t);
            let on = table.is_none_or(|r| ids.contains(&r.id));
            let users: Vec<&str> = engine
                .rules()
                .iter()
                .filter(|r| matches!(r.status, Status::Active))
                .filter(|r| r.evttypes.len() < EvtType::ALL.len())
                .filter(|r| r.evttypes.contains(&t.as_str()))
                .map(|r| r.name.as_str())
                .collect();
            (t.as_str(), on, users)
        })
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(
                |(t, on, users)| serde_json::json!({"evt_type": t, "captured": on, "rules": users}),
            )
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let mut out = std::io::stdout().lock();
        for (t, on, users) in &rows {
            let state = if *on { "captured" } else { "off" };
            writeln!(out, "{t:<20} {state:<9} {}", users.join(", "))?;
        }
        let on = rows.iter().filter(|r| r.1).count();
        writeln!(
            out,
            "{on} of {} syscalls captured ({} table-driven selected by the rules)",
            rows.len(),
            ids.len()
        )?;
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
