//! One duration grammar for everything mamori reads: stateful rule windows
//! (`within: 10s`), `rules test` timestamps and every duration in
//! `mamori.yaml` (`grace_period: 5s`).
//!
//! `<number><unit>`: a decimal number, then `ms`, `s` (or nothing), `m` or
//! `h`. A value past [`MAX`] is an error, never a panic or a wrap.

use std::time::Duration;

/// The longest duration accepted anywhere (100 years).
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("bad duration '{0}' (expected e.g. 500ms, 5s, 2m)")]
    Syntax(String),
    #[error("bad duration unit '{unit}' in '{text}' (ms, s, m, h)")]
    Unit { unit: String, text: String },
    #[error("duration '{0}' is out of range (0 to 100 years)")]
    Range(String),
}

/// Parse `250ms`, `5s`, `1.5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| DurationError::Syntax(s.to_string()))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        u => {
            return Err(DurationError::Unit {
                unit: u.to_string(),
                text: s.to_string(),
            })
        }
    };
    from_secs_f64(secs).ok_or_else(|| DurationError::Range(s.to_string()))
}

/// A duration in ns, as rule windows and `rules test` timestamps take it;
/// `None` when it does not parse or is shorter than 1 ns.
pub fn parse_ns(s: &str) -> Option<u64> {
    let ns = parse(s).ok()?.as_nanos();
    u64::try_from(ns).ok().filter(|&ns| ns >= 1)
}

/// Seconds as a duration, `None` when negative, not finite or past [`MAX`].
pub fn from_secs_f64(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0 && secs <= MAX.as_secs_f64())
        .then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_decimals_and_bare_seconds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse(" 1.5s "), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn errors_name_the_text_and_never_panic() {
        assert!(matches!(
            parse("5 parsecs"),
            Err(DurationError::Unit { .. })
        ));
        assert!(matches!(parse("fast"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("1e300"), Err(DurationError::Unit { .. })));
        let huge = "9".repeat(400);
        assert_eq!(parse(&huge), Err(DurationError::Range(huge.clone())));
        assert!(matches!(
            parse("999999999999h"),
            Err(DurationError::Range(_))
        ));
        assert_eq!(from_secs_f64(1e300), None);
        assert_eq!(from_secs_f64(f64::NAN), None);
        assert_eq!(from_secs_f64(-1.0), None);
        assert!(parse("1.2.3s").is_err());
    }
}
