//! The question of a DNS query as the kernel copied it (the message's first
//! bytes): name, type, and the shape measures tunnel rules look at (label
//! count, longest label, entropy of the labels under the domain).
//!
//! Only the header and the first question are read, with every length
//! checked against the bytes present: the input is whatever a process sent
//! to port 53, so anything malformed yields `None` rather than a guess.
//! (A query's question is a plain label sequence; the parse is a dozen
//! lines, smaller than binding a DNS library's full message model.)

use mamori_rules::event::Dns;

/// Longest name a question may carry (RFC 1035: 255 bytes on the wire).
const NAME_MAX: usize = 255;

/// The first question of a query message; `tcp`: the message starts with
/// its 2-byte length prefix. `None` for a response, no question, or a
/// malformed one.
pub fn question(msg: &[u8], tcp: bool) -> Option<Dns> {
    let msg = if tcp { msg.get(2..)? } else { msg };
    let header = msg.get(..12)?;
    let is_response = header[2] & 0x80 != 0;
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    if is_response || qdcount == 0 {
        return None;
    }
    let mut at = 12;
    let mut labels: Vec<&[u8]> = Vec::new();
    let mut wire = 0usize;
    loop {
        let len = *msg.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        // 0xC0: a compression pointer, 0x40/0x80: reserved label types.
        if len > 63 {
            return None;
        }
        wire += len + 1;
        if wire > NAME_MAX {
            return None;
        }
        labels.push(msg.get(at..at + len)?);
        at += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    let text: Vec<String> = labels.iter().map(|l| label_text(l)).collect();
    let split = labels.len().saturating_sub(2);
    let domain = text[split..].join(".");
    let sub: Vec<u8> = labels[..split].concat();
    Some(Dns {
        qname: text.join("."),
        qtype: type_name(qtype),
        labels: labels.len() as u32,
        longest_label: labels.iter().map(|l| l.len()).max().unwrap_or(0) as u32,
        entropy: entropy(&sub),
        domain,
        syscall: String::new(),
    })
}

/// A label as text: printable ASCII as is, anything else (and `\`) as
/// `\xNN`, so a name cannot smuggle control bytes into an alert.
fn label_text(l: &[u8]) -> String {
    let mut s = String::with_capacity(l.len());
    for &b in l {
        if b.is_ascii_graphic() && b != b'\\' && b != b'.' {
            s.push(b as char);
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Shannon entropy in bits per byte (0 for nothing).
fn entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[b.to_ascii_lowercase() as usize] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum::<f64>()
        + 0.0 // a lone repeated byte sums to -0.0
}

/// The usual name of a question type (IANA registry), else `TYPEnnn`.
fn type_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, as a resolver sends it.
    pub fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn ordinary_question() {
        let d = question(&query("www.example.com.", 28), false).unwrap();
        assert_eq!(d.qname, "www.example.com");
        assert_eq!(d.qtype, "AAAA");
        assert_eq!(d.labels, 3);
        assert_eq!(d.longest_label, 7);
        assert_eq!(d.domain, "example.com");
        assert!(d.entropy < 2.0, "{}", d.entropy);
    }

    #[test]
    fn encoded_labels_score_high() {
        let name = "nbswy3dpeb3w64tmmqqgc3tqmuqhezlbmqqgs5baonswg4tfoqqgizlunbqw4zi.\
                    mfrgg2lpn5xxe4dsmvzxi5lwo54hq6lz.t.example.com";
        let d = question(&query(name, 16), false).unwrap();
        assert_eq!(d.qtype, "TXT");
        assert_eq!(d.longest_label, 63);
        assert_eq!(d.domain, "example.com");
        assert!(d.entropy > 4.0, "{}", d.entropy);
    }

    #[test]
    fn tcp_prefix_and_odd_bytes() {
        let mut q = query("a.b", 10);
        let mut tcp = (q.len() as u16).to_be_bytes().to_vec();
        tcp.append(&mut q);
        let d = question(&tcp, true).unwrap();
        assert_eq!((d.qname.as_str(), d.qtype.as_str()), ("a.b", "NULL"));
        let mut odd = query("x.y", 999);
        odd[13] = b'\n';
        assert_eq!(question(&odd, false).unwrap().qname, "\\x0a.y");
        assert_eq!(question(&odd, false).unwrap().qtype, "TYPE999");
    }

    #[test]
    fn malformed_is_none_never_a_panic() {
        let q = query("www.example.com", 1);
        for cut in 0..q.len() - 3 {
            assert!(question(&q[..cut], false).is_none(), "cut {cut}");
        }
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(question(&resp, false).is_none(), "a response");
        let mut ptr = q.clone();
        ptr[12] = 0xc0;
        assert!(question(&ptr, false).is_none(), "a pointer");
        let mut long = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(question(&long, false).is_none(), "past 255 bytes");
    }
}
