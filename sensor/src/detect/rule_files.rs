//! Rule files to engine: the sensor reads them (the rules crate does no I/O)
//! and passes this node's facts in the load options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mamori_rules::{
    yaml::SourceFile, Diagnostic, Engine, LoadError, LoadOptions, LoadReport, RuleMatching,
};

/// Load options with this node's name and host names.
pub fn options(rule_matching: RuleMatching) -> LoadOptions {
    LoadOptions {
        rule_matching,
        hostname: Some(crate::host::alert_hostname()),
        host_names: crate::host::host_names(),
        ..Default::default()
    }
}

/// Expand rule paths: files as given, directories to their `*.yaml`/`*.yml`
/// files in name order (not recursive); read each. What cannot be read is
/// an error diagnostic naming the path.
pub fn read(paths: &[PathBuf]) -> (Vec<Arc<SourceFile>>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut v: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.is_file() && is_yaml(f))
                        .collect();
                    v.sort();
                    files.extend(v);
                }
                Err(e) => diags.push(Diagnostic::unreadable(p.display().to_string(), e)),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut sources = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(text) => sources.push(SourceFile::new(f.display().to_string(), text)),
            Err(e) => diags.push(Diagnostic::unreadable(f.display().to_string(), e)),
        }
    }
    (sources, diags)
}

fn is_yaml(f: &Path) -> bool {
    matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Load whatever loads, with the read errors first in the report (for
/// `rules validate` and `rules list`).
pub fn compile(paths: &[PathBuf], opts: &LoadOptions) -> (Engine, LoadReport) {
    let (sources, mut diags) = read(paths);
    let (engine, mut report) = Engine::compile(&sources, opts);
    diags.append(&mut report.diagnostics);
    report.diagnostics = diags;
    (engine, report)
}

/// Load; any error (unreadable file or broken rule) fails the load.
pub fn load(paths: &[PathBuf], opts: &LoadOptions) -> Result<(Engine, LoadReport), LoadError> {
    let (engine, report) = compile(paths, opts);
    if report.has_errors() {
        return Err(LoadError::Invalid { report });
    }
    Ok((engine, report))
}
