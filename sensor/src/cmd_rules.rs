//! CLI handlers for the rule-authoring commands (`rules validate|list|test`,
//! `fields`, `replay`). Placeholder until the rule engine lands.

use std::path::PathBuf;
use std::process::ExitCode;

pub fn validate(_paths: &[PathBuf], _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rule engine not built yet")
}
pub fn list(_paths: &[PathBuf], _json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rule engine not built yet")
}
pub fn test(_dirs: &[PathBuf], _rules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rule engine not built yet")
}
pub fn fields(_json: bool) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rule engine not built yet")
}
pub fn replay(_events: &std::path::Path, _rules: &[PathBuf]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rule engine not built yet")
}
