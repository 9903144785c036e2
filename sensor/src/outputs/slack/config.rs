//! The `outputs.slack` keys: the incoming-webhook URL (a secret, which turns
//! it on) and how the message looks.

use std::time::Duration;

use crate::{
    config::{secret::Secret, secret::SecretSource, ConfigError, Dur},
    outputs::config::{required_url, sink_struct, SinkCommon},
};

sink_struct!(RawSlack {
    webhook_url: Option<SecretSource>,
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
    max_value_chars: Option<usize>,
    timeout: Option<Dur>,
});

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub common: SinkCommon,
    pub webhook_url: Secret,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub max_value_chars: usize,
    pub timeout: Duration,
}

impl RawSlack {
    /// `None` when off: no `webhook_url` given, or `enabled: false`.
    pub(crate) fn validate(&self) -> Result<Option<SlackConfig>, ConfigError> {
        let (on, common) = self.common("outputs.slack", self.webhook_url.is_some())?;
        if !on {
            return Ok(None);
        }
        let webhook_url = required_url("outputs.slack.webhook_url", &self.webhook_url, "Slack")?;
        Ok(Some(SlackConfig {
            common,
            webhook_url,
            channel: self.channel.clone(),
            username: self.username.clone(),
            icon_emoji: self.icon_emoji.clone(),
            max_value_chars: self.max_value_chars.unwrap_or(500).max(16),
            timeout: self.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10)),
        }))
    }
}
