//! `cargo xtask bench`: ratios measured in one run.

use std::path::Path;

use anyhow::{bail, Result};

pub fn capture(_mamori: &Path, _iterations: u64) -> Result<()> {
    bail!("bench capture: not implemented yet")
}

pub fn rules(_iterations: u64) -> Result<()> {
    bail!("bench rules: not implemented yet")
}
