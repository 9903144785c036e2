//! The `outputs.file` keys: the shared ones, `path` (which turns it on) and
//! `allow_writable_dir` (the safety check of the file's directory, off).

use std::path::PathBuf;

use crate::{
    config::{key_err, ConfigError},
    outputs::config::{sink_struct, SinkCommon},
};

sink_struct!(RawFile {
    path: Option<PathBuf>,
    /// Write even when other users may write to the file's directory.
    allow_writable_dir: Option<bool>,
});

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub common: SinkCommon,
    pub path: PathBuf,
    /// Skip the refusal of a group- or world-writable parent directory.
    pub allow_writable_dir: bool,
}

impl RawFile {
    /// `None` when off: no `path` given, or `enabled: false`.
    pub(crate) fn validate(&self) -> Result<Option<FileConfig>, ConfigError> {
        let (on, common) = self.common("outputs.file", self.path.is_some())?;
        if !on {
            return Ok(None);
        }
        let path = self.path.clone().ok_or_else(|| {
            key_err(
                "outputs.file.path",
                "required when the file output is enabled",
            )
        })?;
        Ok(Some(FileConfig {
            common,
            path,
            allow_writable_dir: self.allow_writable_dir.unwrap_or(false),
        }))
    }
}
