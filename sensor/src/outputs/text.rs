//! Making attacker-influenced alert text safe for a sink: controls made
//! visible, and length cuts on a char boundary with a visible marker. Shared
//! by the syslog, Slack and HTTP sinks.

/// Replace characters that could forge records or drive a terminal.
///
/// C0 controls (newline, ESC...), DEL, C1 controls (incl. NEL), the Unicode
/// line/paragraph separators and bidi overrides become visible `\xNN` /
/// `\u{NNNN}` text, and `\` itself becomes `\\`, so a file literally
/// named `a\x0ab` cannot pass for an escaped newline. Everything else passes
/// through.
pub fn neutralize(s: &str) -> std::borrow::Cow<'_, str> {
    fn bad(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(|c| c == '\\' || bad(c)) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Cut `s` to at most `max` bytes on a char boundary, adding `marker` (which
/// counts toward `max`) when something was cut.
pub fn truncate_with_marker<'a>(s: &'a str, max: usize, marker: &str) -> std::borrow::Cow<'a, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{marker}", &s[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutralize_makes_controls_visible() {
        assert_eq!(neutralize("plain ü"), "plain ü");
        assert_eq!(
            neutralize("a\nb\x1b[31mc\u{2028}\u{202e}"),
            "a\\x0ab\\x1b[31mc\\u{2028}\\u{202e}"
        );
        // A literal backslash sequence stays distinguishable from an escape.
        assert_eq!(neutralize("a\\x0ab"), "a\\\\x0ab");
        assert_ne!(neutralize("a\\x0ab"), neutralize("a\nb"));
        assert_eq!(neutralize("C:\\dir\n"), "C:\\\\dir\\x0a");
        assert_eq!(truncate_with_marker("héllo world", 7, "…"), "hél…");
        assert_eq!(truncate_with_marker("héllo world", 6, "…"), "hé…");
        assert_eq!(truncate_with_marker("héllo world", 5, "…"), "h…");
        assert_eq!(truncate_with_marker("short", 7, "…"), "short");
    }
}
