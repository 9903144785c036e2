//! syslog: RFC 5424 (default) or RFC 3164 records over a unix datagram
//! socket (`/dev/log`), UDP, TCP or TCP+TLS.
//!
//! Stream transports use RFC 6587 octet counting (`LEN SP RECORD`), so a
//! record's length, not a newline, delimits it. Connections are made lazily
//! and dropped on any error; the worker's retry with backoff is the
//! reconnect loop.

pub mod config;
pub mod format;

use std::sync::Arc;

use tokio::{
    io::AsyncWriteExt,
    net::{TcpStream, UdpSocket, UnixDatagram},
};
use tokio_rustls::{
    rustls::{self, pki_types::ServerName},
    TlsConnector,
};

use super::{config::TlsConfig, Output, OutputError, SendError, SendFuture};
use config::{SyslogAddress, SyslogConfig, SyslogFormat};
use mamori_rules::alert::Alert;

enum Conn {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub struct SyslogSink {
    address: SyslogAddress,
    format: SyslogFormat,
    header: format::Header,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    conn: Option<Conn>,
}

/// A rustls client config from the sink's TLS settings (shared with the
/// webhook sink's reqwest client through PEM files).
pub fn rustls_config(
    sink: &'static str,
    t: &TlsConfig,
) -> Result<rustls::ClientConfig, OutputError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let file_err = |path: &std::path::Path, msg: String| OutputError::File {
        sink,
        path: path.to_path_buf(),
        msg,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_file {
        Some(p) => {
            let certs: Vec<_> = CertificateDer::pem_file_iter(p)
                .map_err(|e| file_err(p, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(p, e.to_string()))?;
            if certs.is_empty() {
                return Err(file_err(p, "no PEM certificate found".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| file_err(p, e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OutputError::Setup {
            sink,
            msg: e.to_string(),
        })?
        .with_root_certificates(roots);
    Ok(match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(c)
                .map_err(|e| file_err(c, e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(c, e.to_string()))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| file_err(k, e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| OutputError::Setup {
                    sink,
                    msg: format!("client certificate: {e}"),
                })?
        }
        _ => builder.with_no_client_auth(),
    })
}

impl SyslogSink {
    pub fn new(c: &SyslogConfig) -> Result<Self, OutputError> {
        let tls = match &c.address {
            SyslogAddress::Tls(hostport) => {
                let host = c.tls.server_name.clone().unwrap_or_else(|| {
                    let h = hostport.rsplit_once(':').map(|x| x.0).unwrap_or(hostport);
                    h.trim_start_matches('[').trim_end_matches(']').to_string()
                });
                let name = ServerName::try_from(host.clone()).map_err(|e| OutputError::Setup {
                    sink: "syslog",
                    msg: format!("TLS server name '{host}': {e}"),
                })?;
                let cfg = rustls_config("syslog", &c.tls)?;
                Some((TlsConnector::from(Arc::new(cfg)), name))
            }
            _ => None,
        };
        Ok(SyslogSink {
            address: c.address.clone(),
            format: c.format,
            header: format::Header {
                facility: c.facility,
                app_name: c.app_name.clone(),
                procid: std::process::id(),
                max_bytes: c.max_message_bytes,
            },
            tls,
            conn: None,
        })
    }

    /// The record for an alert, without transport framing.
    pub fn record(&self, a: &Alert) -> String {
        match self.format {
            SyslogFormat::Rfc5424 => format::rfc5424(a, &self.header),
            SyslogFormat::Rfc3164 => format::rfc3164(a, &self.header),
        }
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.address {
            SyslogAddress::Unix(p) => {
                let s = UnixDatagram::unbound()?;
                s.connect(p)?;
                Conn::Unix(s)
            }
            SyslogAddress::Udp(a) => {
                let target = tokio::net::lookup_host(a.as_str())
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other("no address"))?;
                let bind = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(bind).await?;
                s.connect(target).await?;
                Conn::Udp(s)
            }
            SyslogAddress::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            SyslogAddress::Tls(a) => {
                let (connector, name) = self.tls.as_ref().expect("tls set up in new");
                let s = TcpStream::connect(a.as_str()).await?;
                s.set_nodelay(true)?;
                Conn::Tls(Box::new(connector.connect(name.clone(), s).await?))
            }
        })
    }
}

/// Whether a stream peer has closed (FIN or RST) since the last write.
///
/// Without this, the first record written after a syslog server restart
/// lands in the kernel buffer of a dead connection and is lost; checking
/// first makes the sink reconnect and send it on the new connection. A
/// syslog server never sends application data, so anything readable other
/// than EOF (e.g. a TLS session ticket) means the peer is alive.
fn peer_closed(conn: &Conn) -> bool {
    let tcp = match conn {
        Conn::Tcp(s) => s,
        Conn::Tls(s) => s.get_ref().0,
        Conn::Unix(_) | Conn::Udp(_) => return false,
    };
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut byte = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut byte);
    match tcp.poll_peek(&mut cx, &mut buf) {
        std::task::Poll::Ready(Ok(0)) => true,
        std::task::Poll::Ready(Ok(_)) => false,
        std::task::Poll::Ready(Err(_)) => true,
        std::task::Poll::Pending => false,
    }
}

async fn write(conn: &mut Conn, record: &str) -> std::io::Result<()> {
    match conn {
        Conn::Unix(s) => s.send(record.as_bytes()).await.map(drop),
        Conn::Udp(s) => s.send(record.as_bytes()).await.map(drop),
        Conn::Tcp(s) => {
            let framed = format!("{} {record}", record.len());
            s.write_all(framed.as_bytes()).await?;
            s.flush().await
        }
        Conn::Tls(s) => {
            let framed = format!("{} {record}", record.len());
            s.write_all(framed.as_bytes()).await?;
            s.flush().await
        }
    }
}

impl Output for SyslogSink {
    fn send<'a>(&'a mut self, alert: &'a Alert) -> SendFuture<'a> {
        Box::pin(async move {
            let record = self.record(alert);
            if self.conn.as_ref().is_some_and(peer_closed) {
                log::info!(
                    "syslog {}: connection closed by the server, reconnecting",
                    self.address
                );
                self.conn = None;
            }
            if self.conn.is_none() {
                let c = self.connect().await.map_err(|e| {
                    SendError::retry(format!("connecting to {}: {e}", self.address))
                })?;
                self.conn = Some(c);
            }
            let conn = self.conn.as_mut().expect("connected above");
            write(conn, &record).await.map_err(|e| {
                self.conn = None;
                SendError::retry(format!("sending to {}: {e}", self.address))
            })
        })
    }
}
