//! The details of mamori's own event types, which Falco does not have:
//! `flow` (a TCP connection's bytes) and `dns` (a question sent to port 53).

use serde::{Deserialize, Serialize};

/// `flow.state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowState {
    /// An interim report of a connection still open.
    Open,
    /// The connection closed after it was established.
    Closed,
    /// The connection closed without being established (refused, reset,
    /// timed out): the result of a connect, non-blocking ones included.
    Failed,
}

impl FlowState {
    pub const fn as_str(self) -> &'static str {
        match self {
            FlowState::Open => "open",
            FlowState::Closed => "closed",
            FlowState::Failed => "failed",
        }
    }
}

/// A TCP connection's traffic (`flow.*`); the connection's tuple is the
/// event's `fd` (local side = client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Bytes sent since the previous report of this connection.
    pub bytes_out: u64,
    /// Bytes received since the previous report.
    pub bytes_in: u64,
    /// Nanoseconds from when mamori first saw the connection to this report.
    pub duration_ns: u64,
    pub state: FlowState,
    /// The socket's error at a failed close (`ECONNREFUSED`, ...), 0 if none.
    #[serde(default)]
    pub err: i32,
}

/// A DNS question (`dns.*`); the server is the event's `fd` remote side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// The question's name, labels joined by dots, without the final dot;
    /// bytes outside printable ASCII as `\xNN`.
    pub qname: String,
    /// Type name (`A`, `AAAA`, `TXT`, `NULL`, ...) or `TYPEnnn`.
    pub qtype: String,
    /// Number of labels.
    pub labels: u32,
    /// Length of the longest label.
    pub longest_label: u32,
    /// Shannon entropy (bits per character) of the labels left of the
    /// registered domain (the last two labels): high for encoded data.
    pub entropy: f64,
    /// The last two labels (`example.com`), what tunnels vary under.
    pub domain: String,
    /// The syscall that sent it: `sendto`, `sendmsg` or `sendmmsg`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub syscall: String,
}
