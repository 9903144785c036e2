//! Syslog record formatting: RFC 5424 (default) and RFC 3164.
//!
//! The rendered output is attacker-influenced (paths, command lines), so it is
//! [`neutralize`]d: a newline or an ANSI escape becomes visible text and can
//! never end a record early or forge a second one, whatever the transport's
//! framing. Structured-data values are additionally escaped as RFC 5424
//! section 6.3.3 requires (`"`, `\` and `]`).
//!
//! Severity follows Falco: its priorities *are* the syslog severities
//! (Emergency = 0 ... Debug = 7).

use crate::outputs::text::{neutralize, truncate_with_marker};
use mamori_rules::alert::{Alert, Priority};

/// The SD-ID enterprise number: 32473 is reserved for documentation and
/// examples (RFC 5612); a private number can replace it later.
pub const SD_ALERT: &str = "mamori@32473";
pub const SD_FIELDS: &str = "fields@32473";
const TRUNCATED: &str = "...[truncated]";

pub fn severity(p: Priority) -> u8 {
    match p {
        Priority::Emergency => 0,
        Priority::Alert => 1,
        Priority::Critical => 2,
        Priority::Error => 3,
        Priority::Warning => 4,
        Priority::Notice => 5,
        Priority::Informational => 6,
        Priority::Debug => 7,
    }
}

/// RFC 5424 header fields: printable US-ASCII, no spaces, bounded; else `-`.
fn header_token(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// `2026-11-29T19:20:06.844531968Z` → `2026-11-29T19:20:06.844531Z`
/// (RFC 5424 allows at most 6 fractional digits), or `-` when malformed.
pub fn rfc5424_time(t: &str) -> String {
    let b = t.as_bytes();
    let ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && t.is_ascii()
        && t.ends_with('Z');
    if !ok {
        return "-".into();
    }
    let (sec, frac) = t[..t.len() - 1].split_at(19);
    let frac = frac.strip_prefix('.').unwrap_or("");
    if !frac.bytes().all(|c| c.is_ascii_digit()) {
        return "-".into();
    }
    if frac.is_empty() {
        format!("{sec}Z")
    } else {
        format!("{sec}.{}Z", &frac[..frac.len().min(6)])
    }
}

/// `Nov 29 19:20:06` (RFC 3164, day space-padded), or `-` when malformed.
pub fn rfc3164_time(t: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if rfc5424_time(t) == "-" {
        return None;
    }
    let m: usize = t[5..7].parse().ok()?;
    let d: u32 = t[8..10].parse().ok()?;
    Some(format!(
        "{} {d:>2} {}",
        MONTHS.get(m.checked_sub(1)?)?,
        &t[11..19]
    ))
}

/// An SD-NAME: 1-32 printable ASCII except `=`, space, `]`, `"`. Field names
/// like `proc.aname[2]` become `proc.aname_2_`.
fn sd_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"' | '[') {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    if n.is_empty() {
        "_".into()
    } else {
        n
    }
}

/// An SD PARAM-VALUE: neutralized, then `"`, `\`, `]` escaped.
fn sd_value(s: &str, out: &mut String) {
    for c in neutralize(s).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn field_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "<NA>".into(),
        other => other.to_string(),
    }
}

/// Structured data: the alert element, then the output fields (if they fit
/// in `budget` bytes).
fn structured_data(a: &Alert, budget: usize) -> String {
    let mut sd = format!("[{SD_ALERT} rule=\"");
    sd_value(&truncate_with_marker(&a.rule, 256, TRUNCATED), &mut sd);
    sd.push_str("\" priority=\"");
    sd.push_str(a.priority.as_str());
    sd.push_str("\" source=\"");
    sd_value(&truncate_with_marker(&a.source, 64, TRUNCATED), &mut sd);
    sd.push('"');
    if !a.tags.is_empty() {
        sd.push_str(" tags=\"");
        sd_value(
            &truncate_with_marker(&a.tags.join(","), 512, TRUNCATED),
            &mut sd,
        );
        sd.push('"');
    }
    sd.push(']');
    if a.output_fields.is_empty() {
        return sd;
    }
    let mut fields = format!("[{SD_FIELDS}");
    let mut any = false;
    for (k, v) in &a.output_fields {
        let mut p = format!(" {}=\"", sd_name(k));
        sd_value(
            &truncate_with_marker(&field_text(v), 1024, TRUNCATED),
            &mut p,
        );
        p.push('"');
        // Keep fields only while they fit; the message gets the rest.
        if sd.len() + fields.len() + p.len() + 1 > budget {
            continue;
        }
        fields.push_str(&p);
        any = true;
    }
    if any {
        fields.push(']');
        sd.push_str(&fields);
    }
    sd
}

/// What every record needs besides the alert.
#[derive(Debug, Clone)]
pub struct Header {
    pub facility: u8,
    pub app_name: String,
    pub procid: u32,
    /// The whole record (without transport framing) stays within this.
    pub max_bytes: usize,
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`
pub fn rfc5424(a: &Alert, h: &Header) -> String {
    let pri = h.facility as u32 * 8 + severity(a.priority) as u32;
    let head = format!(
        "<{pri}>1 {} {} {} {} alert ",
        rfc5424_time(&a.time),
        header_token(&a.hostname, 255),
        header_token(&h.app_name, 48),
        h.procid
    );
    // The fields may use up to half of what the header leaves.
    let sd = structured_data(a, h.max_bytes.saturating_sub(head.len()) / 2);
    let room = h.max_bytes.saturating_sub(head.len() + sd.len() + 1);
    let msg = neutralize(&a.output);
    let msg = truncate_with_marker(&msg, room, TRUNCATED);
    format!("{head}{sd} {msg}")
}

/// `<PRI>Mmm dd hh:mm:ss HOSTNAME APP[PID]: MSG`
pub fn rfc3164(a: &Alert, h: &Header) -> String {
    let pri = h.facility as u32 * 8 + severity(a.priority) as u32;
    let ts = rfc3164_time(&a.time).unwrap_or_else(|| "Jan  1 00:00:00".into());
    let head = format!(
        "<{pri}>{ts} {} {}[{}]: ",
        header_token(&a.hostname, 255),
        header_token(&h.app_name, 32),
        h.procid
    );
    let msg = neutralize(&a.output);
    let room = h.max_bytes.saturating_sub(head.len());
    format!("{head}{}", truncate_with_marker(&msg, room, TRUNCATED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::tests::alert;

    fn hdr() -> Header {
        Header {
            facility: 3,
            app_name: "mamori".into(),
            procid: 42,
            max_bytes: 8192,
        }
    }

    #[test]
    fn rfc5424_record_is_exact() {
        let a = alert(
            "Read sensitive file",
            Priority::Warning,
            "12:00:00: Warning read (file=/etc/shadow)",
        );
        assert_eq!(
            rfc5424(&a, &hdr()),
            "<28>1 2026-11-29T19:20:06.844531Z node-1 mamori 42 alert \
             [mamori@32473 rule=\"Read sensitive file\" priority=\"Warning\" source=\"syscall\" tags=\"maturity_stable,filesystem\"]\
             [fields@32473 fd.name=\"/etc/shadow\" proc.name=\"cat\"] \
             12:00:00: Warning read (file=/etc/shadow)"
        );
    }

    #[test]
    fn hostile_text_cannot_split_or_forge_a_record() {
        let mut a = alert(
            "r]\"x",
            Priority::Critical,
            "evil\n<13>1 2026-01-01T00:00:00Z forged - - - - gotcha\x1b[2J\r",
        );
        a.output_fields
            .insert("proc.cmdline".into(), "sh -c \"a]\\b\"\n\x1b[31m".into());
        a.output_fields
            .insert("proc.aname[2]".into(), serde_json::Value::Null);
        let r = rfc5424(&a, &hdr());
        assert!(
            !r.contains('\n') && !r.contains('\r') && !r.contains('\x1b'),
            "{r}"
        );
        assert!(r.contains("rule=\"r\\]\\\"x\""), "{r}");
        assert!(
            // The backslash: `\\` from neutralize, each escaped for SD.
            r.contains("proc.cmdline=\"sh -c \\\"a\\]\\\\\\\\b\\\"\\\\x0a\\\\x1b[31m\""),
            "{r}"
        );
        assert!(r.contains("proc.aname_2_=\"<NA>\""), "{r}");
        assert!(
            r.ends_with("evil\\x0a<13>1 2026-01-01T00:00:00Z forged - - - - gotcha\\x1b[2J\\x0d"),
            "{r}"
        );
        let r = rfc3164(&a, &hdr());
        assert_eq!(r.lines().count(), 1);
        assert!(
            r.starts_with("<26>Nov 29 19:20:06 node-1 mamori[42]: evil\\x0a"),
            "{r}"
        );
    }

    #[test]
    fn long_records_are_cut_within_the_limit() {
        let long = "A".repeat(20_000);
        let mut a = alert("r", Priority::Error, &long);
        a.output_fields.insert("big".into(), long.clone().into());
        let h = Header {
            max_bytes: 2048,
            ..hdr()
        };
        let r = rfc5424(&a, &h);
        assert!(r.len() <= 2048, "{}", r.len());
        assert!(r.ends_with(TRUNCATED));
        assert!(r.contains("proc.name=\"cat\""));
        let r = rfc3164(&a, &h);
        assert!(r.len() <= 2048 && r.ends_with(TRUNCATED));
    }

    #[test]
    fn severities_and_times() {
        assert_eq!(severity(Priority::Emergency), 0);
        assert_eq!(severity(Priority::Debug), 7);
        assert_eq!(
            rfc5424_time("2026-01-02T03:04:05.123Z"),
            "2026-01-02T03:04:05.123Z"
        );
        assert_eq!(rfc5424_time("2026-01-02T03:04:05Z"), "2026-01-02T03:04:05Z");
        assert_eq!(rfc5424_time("yesterday"), "-");
        assert_eq!(
            rfc3164_time("2026-01-02T03:04:05.1Z").unwrap(),
            "Jan  2 03:04:05"
        );
    }
}
