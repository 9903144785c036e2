//! The `outputs.slack` keys: the incoming-webhook URL (a secret, which turns
//! it on) and how the message looks.
//!
//! The URL must be `https://`: it *is* the credential, and over `http://` it
//! and every alert would cross the network in clear text. `http://` is
//! accepted only for a loopback host (a local relay, tests).

use std::time::Duration;

/// The longest value shown in a Slack attachment field (Slack truncates a
/// message's text past 40k characters anyway).
pub const MAX_VALUE_CHARS: usize = 4000;

use crate::{
    config::{key_err, secret::Secret, secret::SecretSource, ConfigError, Dur},
    outputs::config::{positive_timeout, required_url, sink_struct, SinkCommon},
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
        let key = "outputs.slack.webhook_url";
        let webhook_url = required_url(key, &self.webhook_url, "Slack")?;
        if let Some(rest) = webhook_url.expose().strip_prefix("http://") {
            if !loopback_host(rest) {
                return Err(key_err(
                    key,
                    "must be an https:// URL: over http:// the webhook URL (the token) and \
                     every alert cross the network in clear text (http:// is accepted only \
                     for a loopback host; value redacted)",
                ));
            }
        }
        let max_value_chars = self.max_value_chars.unwrap_or(500);
        if !(16..=MAX_VALUE_CHARS).contains(&max_value_chars) {
            return Err(key_err(
                "outputs.slack.max_value_chars",
                format!("must be from 16 to {MAX_VALUE_CHARS}"),
            ));
        }
        Ok(Some(SlackConfig {
            common,
            webhook_url,
            channel: self.channel.clone(),
            username: self.username.clone(),
            icon_emoji: self.icon_emoji.clone(),
            max_value_chars,
            timeout: positive_timeout("outputs.slack.timeout", self.timeout)?
                .unwrap_or(Duration::from_secs(10)),
        }))
    }
}

/// Whether the authority at the start of `rest` (a URL after `http://`)
/// names a loopback host: `localhost`, 127.0.0.0/8 or `[::1]`.
fn loopback_host(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(opts: &[&str]) -> Result<Option<SlackConfig>, String> {
        let o: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        crate::config::load(None, &o, Vec::<(String, String)>::new())
            .map(|c| c.outputs.slack)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn plain_http_webhook_url_is_refused_but_for_loopback() {
        for url in [
            "http://hooks.slack.com/services/T0/B0/SECRET",
            "http://10.0.0.1/SECRET",
            "http://127.0.0.1.evil.example/SECRET",
            "http://localhost@evil.example/SECRET",
        ] {
            let e = load(&[&format!("outputs.slack.webhook_url={url}")]).unwrap_err();
            assert!(e.contains("outputs.slack.webhook_url"), "{e}");
            assert!(e.contains("https://"), "{e}");
            assert!(!e.contains("SECRET"), "the URL is a credential: {e}");
        }
        for url in [
            "https://hooks.slack.com/services/T0/B0/SECRET",
            "http://127.0.0.1:9/x",
            "http://localhost:8080/x",
            "http://[::1]:9/x",
            "http://user@127.0.0.2/x",
        ] {
            let c = load(&[&format!("outputs.slack.webhook_url={url}")]);
            assert!(matches!(c, Ok(Some(_))), "{url}: {c:?}");
        }
    }

    #[test]
    fn zero_timeout_is_refused() {
        let e = load(&[
            "outputs.slack.webhook_url=https://x/y",
            "outputs.slack.timeout=0s",
        ])
        .unwrap_err();
        assert!(
            e.contains("outputs.slack.timeout") && e.contains("positive"),
            "{e}"
        );
        let c = load(&[
            "outputs.slack.webhook_url=https://x/y",
            "outputs.slack.timeout=250ms",
        ]);
        assert_eq!(c.unwrap().unwrap().timeout, Duration::from_millis(250));
    }
}
