//! webhook: POST the Falco alert JSON, unchanged, to a URL — the shape
//! falcosidekick and other Falco consumers accept — with optional custom
//! headers (secrets) and a private CA / client certificate (mTLS).

pub mod config;

use super::{http::HttpPoster, Output, OutputError, SendFuture};
use config::WebhookConfig;
use mamori_rules::alert::Alert;

pub struct WebhookSink {
    http: HttpPoster,
}

impl WebhookSink {
    pub fn new(c: &WebhookConfig) -> Result<Self, OutputError> {
        Ok(WebhookSink {
            http: HttpPoster::new("webhook", c.url.clone(), &c.headers, c.timeout, &c.tls)?,
        })
    }
}

impl Output for WebhookSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let body = serde_json::to_vec(alert).expect("alert serializes");
            self.http.post(body).await
        })
    }
}
