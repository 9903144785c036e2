//! The value a field extracts from an event, and its Falco text rendering.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

/// An extracted value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// The field has no value for this event (`<NA>`).
    Missing,
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Several values (any ancestor; client-or-server address): an operator
    /// is true if it is true for any element.
    List(Vec<Value<'a>>),
}

impl Value<'_> {
    /// Append the Falco text rendering (`<NA>` when missing).
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Value::Missing => out.push_str("<NA>"),
            Value::Str(s) => out.push_str(s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Ip(ip) => {
                let _ = write!(out, "{ip}");
            }
            Value::List(v) => {
                if v.is_empty() {
                    out.push_str("<NA>");
                }
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    x.render(out);
                }
            }
        }
    }

    /// Detach from the event it was read from.
    pub(crate) fn into_owned(self) -> Value<'static> {
        match self {
            Value::Missing => Value::Missing,
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Int(n) => Value::Int(n),
            Value::Bool(b) => Value::Bool(b),
            Value::Ip(ip) => Value::Ip(ip),
            Value::List(v) => Value::List(v.into_iter().map(Value::into_owned).collect()),
        }
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Missing => serde_json::Value::Null,
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Ip(ip) => serde_json::Value::String(ip.to_string()),
            Value::List(v) => serde_json::Value::Array(v.iter().map(|x| x.to_json()).collect()),
        }
    }
}
