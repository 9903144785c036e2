//! The `outputs.file` keys: the shared ones and `path` (which turns it on).

use std::path::PathBuf;

use crate::{
    config::{key_err, ConfigError},
    outputs::config::{sink_struct, SinkCommon},
};

sink_struct!(RawFile { path: Option<PathBuf>, });

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub common: SinkCommon,
    pub path: PathBuf,
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
        Ok(Some(FileConfig { common, path }))
    }
}
