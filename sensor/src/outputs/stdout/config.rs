//! The `outputs.stdout` keys: only the ones every sink shares. On by default.

use crate::{
    config::ConfigError,
    outputs::config::{sink_struct, SinkCommon},
};

sink_struct!(RawStdout {});

#[derive(Debug, Clone)]
pub struct StdoutConfig {
    pub common: SinkCommon,
}

impl RawStdout {
    /// `None` when turned off (`enabled: false`).
    pub(crate) fn validate(&self) -> Result<Option<StdoutConfig>, ConfigError> {
        let (on, common) = self.common("outputs.stdout", true)?;
        Ok(on.then_some(StdoutConfig { common }))
    }
}
