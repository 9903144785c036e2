//! The `outputs.webhook` keys: the URL (a secret, which turns it on), extra
//! headers (their values secrets too), timeout and TLS.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    config::{
        key_err,
        secret::{Secret, SecretSource},
        ConfigError, Dur,
    },
    outputs::config::{
        positive_timeout, required_url, sink_struct, tls, RawTls, SinkCommon, TlsConfig,
    },
};

sink_struct!(RawWebhook {
    url: Option<SecretSource>,
    headers: Option<BTreeMap<String, SecretSource>>,
    timeout: Option<Dur>,
    tls: Option<RawTls>,
});

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub common: SinkCommon,
    pub url: Secret,
    /// Header values are secrets (they often carry tokens).
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub tls: TlsConfig,
}

impl RawWebhook {
    /// `None` when off: no `url` given, or `enabled: false`.
    pub(crate) fn validate(&self) -> Result<Option<WebhookConfig>, ConfigError> {
        let (on, common) = self.common("outputs.webhook", self.url.is_some())?;
        if !on {
            return Ok(None);
        }
        let url = required_url("outputs.webhook.url", &self.url, "webhook")?;
        Ok(Some(WebhookConfig {
            common,
            url,
            headers: self.headers()?,
            timeout: positive_timeout("outputs.webhook.timeout", self.timeout)?
                .unwrap_or(Duration::from_secs(10)),
            tls: tls("outputs.webhook", &self.tls)?,
        }))
    }

    /// Names checked as HTTP tokens, values resolved and free of controls.
    fn headers(&self) -> Result<Vec<(String, Secret)>, ConfigError> {
        let mut headers = Vec::new();
        for (name, v) in self.headers.iter().flatten() {
            let key = format!("outputs.webhook.headers.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
            {
                return Err(key_err(key, "not a valid HTTP header name"));
            }
            let v = v.resolve(&key)?;
            if v.expose()
                .bytes()
                .any(|b| b < 0x20 && b != b'\t' || b == 0x7f)
            {
                return Err(key_err(
                    key,
                    "header value contains control characters (value redacted)",
                ));
            }
            headers.push((name.clone(), v));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_timeout_is_refused() {
        let load = |t: &str| {
            let o = vec![
                "outputs.webhook.url=http://10.0.0.1/hook".to_string(),
                format!("outputs.webhook.timeout={t}"),
            ];
            crate::config::load(None, &o, Vec::<(String, String)>::new())
        };
        let e = load("0").unwrap_err().to_string();
        assert!(
            e.contains("outputs.webhook.timeout") && e.contains("positive"),
            "{e}"
        );
        let c = load("3s").unwrap().outputs.webhook.unwrap();
        assert_eq!(c.timeout, std::time::Duration::from_secs(3));
    }
}
