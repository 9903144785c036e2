//! Slack: an incoming-webhook message a human can triage at a glance.
//!
//! One attachment coloured by priority, titled with the rule, with priority,
//! hostname and — when the alert has them — namespace, pod, container and
//! image as short fields, the rendered output as text, then the other output
//! fields.
//!
//! Everything from the alert is attacker-influenced (paths, command lines,
//! even pod names), so every string goes through [`escape`]: control
//! characters made visible, `&`, `<`, `>` turned into entities (so no
//! `<!channel>`, `<@U123>` or `<https://evil|click>` control sequence can
//! form), and bare `@channel`/`@here`/`@everyone` broken with a zero-width
//! space. Values are cut to `max_value_chars` with a visible marker.

use serde_json::{json, Value};

pub mod config;

use super::{
    config::TlsConfig, http::HttpPoster, text::neutralize, Output, OutputError, SendFuture,
};
use config::SlackConfig;
use mamori_rules::alert::{Alert, Priority};

pub const TRUNCATED: &str = "… (truncated)";
/// Output fields shown as their own attachment fields, in this order.
const CONTEXT_FIELDS: &[(&str, &str)] = &[
    ("k8s.ns.name", "namespace"),
    ("k8s.pod.name", "pod"),
    ("container.name", "container"),
    ("container.id", "container id"),
    ("container.image.repository", "image"),
];
/// At most this many further output fields.
const MAX_KEY_FIELDS: usize = 16;

pub fn color(p: Priority) -> &'static str {
    match p {
        Priority::Emergency | Priority::Alert => "#8b0000",
        Priority::Critical => "#e01e5a",
        Priority::Error => "#ff7f00",
        Priority::Warning => "#ecb22e",
        Priority::Notice => "#36a2eb",
        Priority::Informational => "#2eb67d",
        Priority::Debug => "#9e9e9e",
    }
}

/// Cut to `max` characters (marker included) when longer.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(TRUNCATED);
    out
}

/// Make attacker-controlled text inert in Slack mrkdwn (see the module doc).
pub fn escape(s: &str) -> String {
    let s = neutralize(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    // Broadcast mentions also work without brackets in some clients.
    for word in ["channel", "here", "everyone"] {
        let mut i = 0;
        while let Some(pos) = out[i..].find('@').map(|p| p + i) {
            let rest = &out[pos + 1..];
            if rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word) {
                out.insert(pos + 1, '\u{200b}');
                i = pos + 1 + '\u{200b}'.len_utf8();
            } else {
                i = pos + 1;
            }
        }
    }
    out
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<NA>".into(),
        other => other.to_string(),
    }
}

/// Message options besides the alert.
#[derive(Debug, Clone, Default)]
pub struct Style {
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
    pub max_value_chars: usize,
}

/// The webhook payload for one alert.
pub fn payload(a: &Alert, st: &Style) -> Value {
    let max = st.max_value_chars.max(16);
    let cell = |s: &str| escape(&truncate_chars(s, max));
    let mut fields = vec![
        json!({"title": "priority", "value": a.priority.as_str(), "short": true}),
        json!({"title": "hostname", "value": cell(&a.hostname), "short": true}),
    ];
    for (key, title) in CONTEXT_FIELDS {
        if let Some(v) = a.output_fields.get(*key).filter(|v| !v.is_null()) {
            fields.push(json!({"title": title, "value": cell(&text_of(v)), "short": true}));
        }
    }
    let mut shown = 0;
    let mut hidden = 0;
    for (k, v) in &a.output_fields {
        if CONTEXT_FIELDS.iter().any(|(c, _)| c == k) {
            continue;
        }
        if shown == MAX_KEY_FIELDS {
            hidden += 1;
            continue;
        }
        shown += 1;
        fields.push(json!({"title": escape(&truncate_chars(k, 64)), "value": cell(&text_of(v)), "short": false}));
    }
    if hidden > 0 {
        fields.push(
            json!({"title": "more fields", "value": format!("{hidden} not shown"), "short": false}),
        );
    }
    let rule = escape(&truncate_chars(&a.rule, 200));
    let summary = format!("{} on {}: {rule}", a.priority, cell(&a.hostname));
    let mut attachment = json!({
        "fallback": summary,
        "color": color(a.priority),
        "title": rule,
        "text": escape(&truncate_chars(&a.output, max * 4)),
        "fields": fields,
        "footer": format!("mamori · {}", escape(&a.source)),
    });
    if !a.tags.is_empty() {
        attachment["footer"] = Value::String(format!(
            "mamori · {} · {}",
            escape(&a.source),
            cell(&a.tags.join(", "))
        ));
    }
    let mut p = json!({ "text": summary, "attachments": [attachment] });
    if let Some(c) = &st.channel {
        p["channel"] = c.clone().into();
    }
    if let Some(u) = &st.username {
        p["username"] = u.clone().into();
    }
    if let Some(i) = &st.icon_emoji {
        p["icon_emoji"] = i.clone().into();
    }
    p
}

pub struct SlackSink {
    http: HttpPoster,
    style: Style,
}

impl SlackSink {
    pub fn new(c: &SlackConfig) -> Result<Self, OutputError> {
        Ok(SlackSink {
            http: HttpPoster::new(
                "slack",
                c.webhook_url.clone(),
                &[],
                c.timeout,
                &TlsConfig::default(),
            )?,
            style: Style {
                channel: c.channel.clone(),
                username: c.username.clone(),
                icon_emoji: c.icon_emoji.clone(),
                max_value_chars: c.max_value_chars,
            },
        })
    }
}

impl Output for SlackSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let body =
                serde_json::to_vec(&payload(alert, &self.style)).expect("payload serializes");
            self.http.post(body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::alert;

    fn style() -> Style {
        Style {
            max_value_chars: 40,
            ..Default::default()
        }
    }

    #[test]
    fn escaping_defuses_links_mentions_and_controls() {
        assert_eq!(escape("a & b < c > d"), "a &amp; b &lt; c &gt; d");
        assert_eq!(
            escape("<!channel> <@U123> <https://evil|x>"),
            "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|x&gt;"
        );
        assert_eq!(
            escape("hi @channel @HERE @everyone @bob"),
            "hi @\u{200b}channel @\u{200b}HERE @\u{200b}everyone @bob"
        );
        assert_eq!(escape("x\n\x1b[31my"), "x\\x0a\\x1b[31my");
        // A file literally named `a\x0ab` does not look like an escaped newline.
        assert_eq!(escape("a\\x0ab"), "a\\\\x0ab");
        assert_eq!(escape("&amp;"), "&amp;amp;");
    }

    #[test]
    fn payload_has_triage_fields_and_truncates() {
        let mut a = alert(
            "Shell <in> container",
            Priority::Critical,
            "sh -c 'curl <http://evil|ok> @here'",
        );
        a.output_fields
            .insert("k8s.pod.name".into(), "web-1".into());
        a.output_fields.insert("k8s.ns.name".into(), "prod".into());
        a.output_fields
            .insert("proc.cmdline".into(), "x".repeat(500).into());
        let p = payload(
            &a,
            &Style {
                channel: Some("#sec".into()),
                username: Some("mamori".into()),
                ..style()
            },
        );
        assert_eq!(p["channel"], "#sec");
        assert_eq!(p["username"], "mamori");
        let att = &p["attachments"][0];
        assert_eq!(att["color"], "#e01e5a");
        assert_eq!(att["title"], "Shell &lt;in&gt; container");
        assert_eq!(
            att["text"],
            "sh -c 'curl &lt;http://evil|ok&gt; @\u{200b}here'"
        );
        let fields = att["fields"].as_array().unwrap();
        let titles: Vec<_> = fields
            .iter()
            .map(|f| f["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            [
                "priority",
                "hostname",
                "namespace",
                "pod",
                "fd.name",
                "proc.cmdline",
                "proc.name"
            ]
        );
        let cmd = fields[5]["value"].as_str().unwrap();
        assert_eq!(cmd.chars().count(), 40);
        assert!(cmd.ends_with(TRUNCATED));
        assert!(p["text"]
            .as_str()
            .unwrap()
            .starts_with("Critical on node-1: Shell &lt;in&gt;"));
        assert!(p.get("icon_emoji").is_none());
    }
}
