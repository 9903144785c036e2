//! The `outputs.syslog` keys: where to send (`address`, which turns it on),
//! the record format, facility and app name, the size cap, and TLS.

use std::{fmt, path::PathBuf};

/// The largest syslog message mamori builds (RFC 5425 receivers must take
/// 2 KiB and may take more; 64 KiB is past what any relay keeps).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

use crate::{
    config::{key_err, ConfigError},
    outputs::config::{sink_struct, tls, RawTls, SinkCommon, TlsConfig},
};

sink_struct!(RawSyslog {
    address: Option<String>,
    format: Option<String>,
    facility: Option<String>,
    app_name: Option<String>,
    max_message_bytes: Option<usize>,
    tls: Option<RawTls>,
});

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    pub common: SinkCommon,
    pub address: SyslogAddress,
    pub format: SyslogFormat,
    pub facility: u8,
    pub app_name: String,
    pub max_message_bytes: usize,
    pub tls: TlsConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    Unix(PathBuf),
    Udp(String),
    Tcp(String),
    Tls(String),
}

impl fmt::Display for SyslogAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyslogAddress::Unix(p) => write!(f, "unix://{}", p.display()),
            SyslogAddress::Udp(a) => write!(f, "udp://{a}"),
            SyslogAddress::Tcp(a) => write!(f, "tcp://{a}"),
            SyslogAddress::Tls(a) => write!(f, "tls://{a}"),
        }
    }
}

impl SyslogAddress {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| {
            format!(
                "'{s}': expected unix:///path, udp://host:port, tcp://host:port or tls://host:port"
            )
        })?;
        let hostport = |r: &str| -> Result<String, String> {
            match r.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Ok(r.to_string()),
                _ => Err(format!("'{s}': expected host:port after {scheme}://")),
            }
        };
        Ok(match scheme {
            "unix" if rest.starts_with('/') => SyslogAddress::Unix(rest.into()),
            "unix" => return Err(format!("'{s}': unix:// needs an absolute path")),
            "udp" => SyslogAddress::Udp(hostport(rest)?),
            "tcp" => SyslogAddress::Tcp(hostport(rest)?),
            "tls" => SyslogAddress::Tls(hostport(rest)?),
            _ => {
                return Err(format!(
                    "'{s}': unknown scheme {scheme} (unix, udp, tcp, tls)"
                ))
            }
        })
    }
}

/// Syslog facility names → codes (RFC 5424 table 1).
pub const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

impl RawSyslog {
    /// `None` when off: no `address` given, or `enabled: false`.
    pub(crate) fn validate(&self) -> Result<Option<SyslogConfig>, ConfigError> {
        let (on, common) = self.common("outputs.syslog", self.address.is_some())?;
        if !on {
            return Ok(None);
        }
        let address = SyslogAddress::parse(self.address.as_deref().unwrap_or("unix:///dev/log"))
            .map_err(|m| key_err("outputs.syslog.address", m))?;
        let format = self.format()?;
        let facility = self.facility()?;
        let app_name = self.app_name.clone().unwrap_or_else(|| "mamori".into());
        if app_name.is_empty()
            || app_name.len() > 48
            || !app_name.bytes().all(|b| (33..=126).contains(&b))
        {
            return Err(key_err(
                "outputs.syslog.app_name",
                "must be 1-48 printable ASCII characters without spaces",
            ));
        }
        let max_message_bytes = self.max_message_bytes.unwrap_or(8192);
        if !(480..=MAX_MESSAGE_BYTES).contains(&max_message_bytes) {
            return Err(key_err(
                "outputs.syslog.max_message_bytes",
                format!("must be from 480 to {MAX_MESSAGE_BYTES}"),
            ));
        }
        Ok(Some(SyslogConfig {
            common,
            address,
            format,
            facility,
            app_name,
            max_message_bytes,
            tls: tls("outputs.syslog", &self.tls)?,
        }))
    }

    fn format(&self) -> Result<SyslogFormat, ConfigError> {
        match self
            .format
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("rfc5424") => Ok(SyslogFormat::Rfc5424),
            Some("rfc3164") => Ok(SyslogFormat::Rfc3164),
            Some(other) => Err(key_err(
                "outputs.syslog.format",
                format!("unknown format '{other}' (rfc5424 or rfc3164)"),
            )),
        }
    }

    fn facility(&self) -> Result<u8, ConfigError> {
        let Some(f) = &self.facility else {
            return Ok(3); // daemon
        };
        FACILITIES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(f))
            .map(|(_, c)| *c)
            .ok_or_else(|| {
                key_err(
                    "outputs.syslog.facility",
                    format!("unknown facility '{f}' (e.g. daemon, auth, local0..local7)"),
                )
            })
    }
}
