//! The HTTP POST both Slack and the webhook sink use: one reqwest client
//! (rustls), a secret URL, and the mapping from responses to retry decisions.
//!
//! The URL is a credential (a Slack webhook URL *is* the token), so errors
//! are printed without it (`reqwest::Error::without_url`) and header values
//! are marked sensitive.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use super::{
    config::TlsConfig,
    text::{neutralize, truncate_with_marker},
    OutputError, SendError,
};
use crate::config::secret::Secret;

pub struct HttpPoster {
    sink: &'static str,
    client: reqwest::Client,
    url: Secret,
}

impl std::fmt::Debug for HttpPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpPoster({}, url=***)", self.sink)
    }
}

impl HttpPoster {
    pub fn new(
        sink: &'static str,
        url: Secret,
        headers: &[(String, Secret)],
        timeout: Duration,
        tls: &TlsConfig,
    ) -> Result<Self, OutputError> {
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| OutputError::Setup {
                sink,
                msg: format!("header name {name}: {e}"),
            })?;
            let mut v = HeaderValue::from_str(value.expose()).map_err(|_| OutputError::Setup {
                sink,
                msg: format!("header {name}: invalid value (redacted)"),
            })?;
            v.set_sensitive(true);
            map.insert(n, v);
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("mamori/", env!("CARGO_PKG_VERSION")))
            .default_headers(map)
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none());
        if tls != &TlsConfig::default() {
            let cfg = super::syslog::rustls_config(sink, tls)?;
            b = b.use_preconfigured_tls(cfg);
        }
        let client = b.build().map_err(|e| OutputError::Setup {
            sink,
            msg: format!("building the HTTP client: {}", e.without_url()),
        })?;
        Ok(HttpPoster { sink, client, url })
    }

    /// POST `body`; 2xx is success, 429/408/5xx and transport errors are
    /// retryable (with the server's `Retry-After`), other statuses are not.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), SendError> {
        let resp = self
            .client
            .post(self.url.expose())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::retry(describe(e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp.text().await.unwrap_or_default();
        let text = neutralize(&text);
        let msg = format!(
            "{} answered {status}: {}",
            self.sink,
            truncate_with_marker(&text, 200, "...")
        );
        let retryable =
            status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error();
        Err(SendError {
            msg,
            retryable,
            retry_after,
        })
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>` (a date in the
/// past means "now"). Anything else is treated as absent; the backoff
/// schedule then applies.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = mamori_rules::timefmt::parse_imf_fixdate(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(Duration::from_secs((at - now).max(0) as u64))
}

/// A reqwest error without the URL, with its causes.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod retry_after_tests {
    use super::*;

    #[test]
    fn seconds_and_http_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        // A date in the past: retry now.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        // About two minutes ahead.
        let ahead = std::time::SystemTime::now() + Duration::from_secs(120);
        let secs = ahead
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let stamp = mamori_rules::timefmt::rfc3339_nanos(secs * 1_000_000_000);
        let (date, time) = (&stamp[..10], &stamp[11..19]);
        let (y, m, d) = (&date[..4], &date[5..7], &date[8..10]);
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][m.parse::<usize>().unwrap() - 1];
        let header = format!("Mon, {d} {month} {y} {time} GMT");
        let got = parse_retry_after(&header).unwrap();
        assert!((115..=120).contains(&got.as_secs()), "{header} -> {got:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
