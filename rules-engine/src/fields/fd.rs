//! `fd.*`: the file or socket the event acted on — path parts for files,
//! client/server and local/remote addresses and ports for sockets (for a
//! connect, the local side is the client).

use std::net::IpAddr;

use super::event::open_args;
use super::{opt_str, s, Field, FieldId, Value};
use crate::event::{Event, EvtType, FdType};

/// Read an `fd.*` field.
#[inline]
pub(super) fn extract<'a>(field: &Field, ev: &'a Event) -> Value<'a> {
    use FieldId as F;
    let fd = ev.fd.as_ref();
    let is_file = || fd.is_some_and(|f| matches!(f.fd_type, FdType::File | FdType::Directory));
    match field.info.id {
        F::FdNum => fd.map(|f| Value::Int(f.num)).unwrap_or(Value::Missing),
        F::FdType => fd.map(|f| s(f.fd_type.as_str())).unwrap_or(Value::Missing),
        F::FdTypeChar => fd
            .map(|f| {
                s(match f.fd_type.typechar() {
                    'f' => "f",
                    'd' => "d",
                    '4' => "4",
                    '6' => "6",
                    'u' => "u",
                    _ => "?",
                })
            })
            .unwrap_or(Value::Missing),
        F::FdName => fd.map(|f| s(&f.name)).unwrap_or(Value::Missing),
        F::FdNameRaw => match open_args(ev) {
            Some(o) => s(&o.path),
            None => fd.map(|f| s(&f.name)).unwrap_or(Value::Missing),
        },
        F::FdSipName | F::FdRipName | F::FdCipName | F::FdLipName => Value::Missing,
        F::FdNameChanged => fd
            .map(|_| Value::Bool(ev.evt_type == EvtType::Connect))
            .unwrap_or(Value::Missing),
        F::FdConnected => match fd.map(|f| f.fd_type) {
            Some(FdType::Ipv4 | FdType::Ipv6 | FdType::Unix) => {
                Value::Bool(ev.evt_type == EvtType::Connect && (ev.res >= 0 || ev.res == -115))
            }
            _ => Value::Missing,
        },
        F::FdDirectory | F::FdFilename => match fd.filter(|_| is_file()) {
            Some(f) => {
                let name = f.name.as_str();
                if f.fd_type == FdType::Directory && field.info.id == F::FdDirectory {
                    return s(name);
                }
                match name.rfind('/') {
                    Some(i) if field.info.id == F::FdDirectory => {
                        s(if i == 0 { "/" } else { &name[..i] })
                    }
                    Some(i) => s(&name[i + 1..]),
                    None if field.info.id == F::FdFilename => s(name),
                    None => Value::Missing,
                }
            }
            None => Value::Missing,
        },
        F::FdSockFamily => match fd.map(|f| f.fd_type) {
            Some(FdType::Ipv4 | FdType::Ipv6) => s("ip"),
            Some(FdType::Unix) => s("unix"),
            _ => Value::Missing,
        },
        F::FdL4Proto => opt_str(fd.and_then(|f| f.l4proto.as_deref())),
        F::FdCip
        | F::FdLip
        | F::FdSip
        | F::FdRip
        | F::FdCport
        | F::FdLport
        | F::FdSport
        | F::FdRport
        | F::FdIp
        | F::FdNet
        | F::FdPort
        | F::FdCnet
        | F::FdLnet
        | F::FdSnet
        | F::FdRnet => net_field(field.info.id, fd),
        // Other classes' fields: never dispatched here.
        _ => Value::Missing,
    }
}

/// Address fields of a socket. For a connect, the local side is the client
/// and the remote side the server.
#[inline]
fn net_field(id: FieldId, fd: Option<&crate::event::Fd>) -> Value<'static> {
    use FieldId as F;
    let Some(f) = fd.filter(|f| matches!(f.fd_type, FdType::Ipv4 | FdType::Ipv6)) else {
        return Value::Missing;
    };
    let ip = |a: Option<IpAddr>| a.map(Value::Ip).unwrap_or(Value::Missing);
    let port = |a: Option<u16>| a.map(|x| Value::Int(x as i64)).unwrap_or(Value::Missing);
    let both = |a: Value<'static>, b: Value<'static>| {
        let v: Vec<Value<'static>> = [a, b]
            .into_iter()
            .filter(|x| *x != Value::Missing)
            .collect();
        if v.is_empty() {
            Value::Missing
        } else {
            Value::List(v)
        }
    };
    // `sip`/`sport` hold the local side, `rip`/`rport` the remote one; the
    // client is the local side unless the socket is a server's.
    let (cip, cport, sip, sport) = if f.server {
        (f.rip, f.rport, f.sip, f.sport)
    } else {
        (f.sip, f.sport, f.rip, f.rport)
    };
    match id {
        F::FdLip | F::FdLnet => ip(f.sip),
        F::FdRip | F::FdRnet => ip(f.rip),
        F::FdCip | F::FdCnet => ip(cip),
        F::FdSip | F::FdSnet => ip(sip),
        F::FdLport => port(f.sport),
        F::FdRport => port(f.rport),
        F::FdCport => port(cport),
        F::FdSport => port(sport),
        F::FdIp | F::FdNet => both(ip(f.sip), ip(f.rip)),
        F::FdPort => both(port(f.sport), port(f.rport)),
        _ => Value::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev, get};
    use crate::event::{EvtType, Fd, FdType};

    #[test]
    fn file_path_parts() {
        let e = ev();
        assert_eq!(get("fd.directory", None, &e), "/etc");
        assert_eq!(get("fd.filename", None, &e), "shadow");
        assert_eq!(get("fd.typechar", None, &e), "f");
    }

    #[test]
    fn connect_client_is_local_server_is_remote() {
        let mut e = ev();
        e.evt_type = EvtType::Connect;
        e.res = 0;
        e.open = None;
        e.fd = Some(Fd {
            fd_type: FdType::Ipv4,
            num: 3,
            name: "127.0.0.1:40000->127.0.0.2:443".into(),
            sip: Some("127.0.0.1".parse().unwrap()),
            sport: Some(40000),
            rip: Some("127.0.0.2".parse().unwrap()),
            rport: Some(443),
            l4proto: Some("tcp".into()),
            server: false,
        });
        assert_eq!(get("fd.sip", None, &e), "127.0.0.2");
        assert_eq!(get("fd.cip", None, &e), "127.0.0.1");
        assert_eq!(get("fd.sport", None, &e), "443");
        assert_eq!(get("fd.lport", None, &e), "40000");
        assert_eq!(get("fd.rport", None, &e), "443");
        assert_eq!(get("fd.sockfamily", None, &e), "ip");
        assert_eq!(get("fd.port", None, &e), "40000,443");
        assert_eq!(get("evt.res", None, &e), "SUCCESS");
        assert_eq!(
            get("evt.arg.tuple", None, &e),
            "127.0.0.1:40000->127.0.0.2:443"
        );
        assert_eq!(get("fd.directory", None, &e), "<NA>");
    }
}
