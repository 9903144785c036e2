//! `flow.*` and `dns.*` (mamori extensions, no Falco equivalent): a TCP
//! connection's byte counts and a DNS question's name and shape. The
//! connection's or the server's addresses are the event's `fd.*`.

use super::{s, Field, FieldId, Value};
use crate::event::Event;

/// Read a `flow.*` / `dns.*` field.
#[inline]
pub(super) fn extract<'a>(field: &Field, ev: &'a Event) -> Value<'a> {
    use FieldId as F;
    let int = |v: Option<u64>| {
        v.map(|n| Value::Int(n.min(i64::MAX as u64) as i64))
            .unwrap_or(Value::Missing)
    };
    let flow = ev.flow.as_ref();
    let dns = ev.dns.as_deref();
    match field.info.id {
        F::FlowBytesOut => int(flow.map(|f| f.bytes_out)),
        F::FlowBytesIn => int(flow.map(|f| f.bytes_in)),
        F::FlowBytes => int(flow.map(|f| f.bytes_out.saturating_add(f.bytes_in))),
        F::FlowDuration => int(flow.map(|f| f.duration_ns)),
        F::FlowState => flow.map(|f| s(f.state.as_str())).unwrap_or(Value::Missing),
        F::DnsQname => dns.map(|d| s(&d.qname)).unwrap_or(Value::Missing),
        F::DnsQtype => dns.map(|d| s(&d.qtype)).unwrap_or(Value::Missing),
        F::DnsDomain => dns.map(|d| s(&d.domain)).unwrap_or(Value::Missing),
        F::DnsServer => match (dns, ev.fd.as_ref().and_then(|f| f.rip)) {
            (Some(_), Some(ip)) => Value::Ip(ip),
            _ => Value::Missing,
        },
        F::DnsLabels => int(dns.map(|d| u64::from(d.labels))),
        F::DnsLongestLabel => int(dns.map(|d| u64::from(d.longest_label))),
        F::DnsEntropy => int(dns.map(|d| (d.entropy * 100.0).round() as u64)),
        // Other classes' fields: never dispatched here.
        _ => Value::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev, get};
    use crate::event::{Dns, EvtType, Flow, FlowState};

    #[test]
    fn flow_and_dns_fields() {
        let mut e = ev();
        assert_eq!(get("flow.bytes_out", None, &e), "<NA>");
        assert_eq!(get("dns.qname", None, &e), "<NA>");
        e.evt_type = EvtType::Flow;
        e.flow = Some(Flow {
            bytes_out: 52_428_800,
            bytes_in: 10,
            duration_ns: 2_000_000_000,
            state: FlowState::Closed,
            err: 0,
        });
        assert_eq!(get("flow.bytes_out", None, &e), "52428800");
        assert_eq!(get("flow.bytes", None, &e), "52428810");
        assert_eq!(get("flow.state", None, &e), "closed");
        assert_eq!(get("flow.duration", None, &e), "2000000000");
        assert_eq!(get("evt.category", None, &e), "net");
        e.evt_type = EvtType::Dns;
        e.flow = None;
        e.dns = Some(Box::new(Dns {
            qname: "abc.example.com".into(),
            qtype: "TXT".into(),
            labels: 3,
            longest_label: 7,
            entropy: 1.584_96,
            domain: "example.com".into(),
            syscall: "sendto".into(),
        }));
        assert_eq!(get("dns.qtype", None, &e), "TXT");
        assert_eq!(get("dns.entropy", None, &e), "158");
        assert_eq!(get("dns.labels", None, &e), "3");
        assert_eq!(get("dns.domain", None, &e), "example.com");
        assert_eq!(get("dns.server", None, &e), "<NA>", "no fd: no server");
    }
}
