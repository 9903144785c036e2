//! The webhook output over HTTPS with a private CA and a client certificate
//! (mTLS): a real TLS server (tokio-rustls + hyper on 127.0.0.1:0) that
//! requires a client certificate signed by the test CA.
//!
//! Run: `cargo test -p sensor --features e2e --test outputs_webhook_tls`
//! (needs the openssl CLI for the test certificates; no root).

#[path = "outputs_certs.rs"]
mod certs;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use mamori::{config, outputs::Outputs};
use mamori_rules::alert::{Alert, Priority};
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

fn alert() -> Alert {
    Alert {
        time: "2026-11-29T19:20:06.844531968Z".into(),
        rule: "Read sensitive file".into(),
        priority: Priority::Warning,
        output: "12:00:00: Warning read".into(),
        output_fields: Default::default(),
        source: "syscall".into(),
        tags: vec![],
        hostname: "node-1".into(),
    }
}

/// Start the mTLS server; returns its port and the bodies it received.
fn server(dir: &std::path::Path) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server-key.pem")).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b2 = bodies.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            loop {
                let (s, _) = l.accept().await.unwrap();
                let (acceptor, bodies) = (acceptor.clone(), b2.clone());
                tokio::spawn(async move {
                    // A handshake without a valid client certificate fails here.
                    let Ok(tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let bodies = bodies.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            bodies.lock().unwrap().push(body.to_vec());
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), bodies)
}

fn run(opts: Vec<String>) -> mamori::outputs::SinkStats {
    let mut o = vec![
        "outputs.stdout.enabled=false".to_string(),
        "outputs.webhook.retry.max_attempts=2".to_string(),
        "outputs.webhook.retry.initial_backoff=10ms".to_string(),
    ];
    o.extend(opts);
    let cfg = config::load(None, &o, Vec::<(String, String)>::new()).unwrap();
    let out = Outputs::start(&cfg.outputs).unwrap();
    out.submit(&alert());
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let s = &out.stats()[0];
        if s.sent + s.failed > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    out.shutdown().sinks.remove(0)
}

#[test]
fn webhook_over_mtls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("mamori-webhook-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certs::make_certs(&dir);
    let (port, bodies) = server(&dir);
    let url = format!("outputs.webhook.url=https://127.0.0.1:{port}/falco");
    let ca = format!(
        "outputs.webhook.tls.ca_file={}",
        dir.join("ca.pem").display()
    );

    // CA + client certificate: delivered, body unchanged.
    let s = run(vec![
        url.clone(),
        ca.clone(),
        format!(
            "outputs.webhook.tls.cert_file={}",
            dir.join("client.pem").display()
        ),
        format!(
            "outputs.webhook.tls.key_file={}",
            dir.join("client-key.pem").display()
        ),
    ]);
    assert_eq!((s.sent, s.failed), (1, 0), "{s}");
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got[0]).unwrap(),
        serde_json::to_value(alert()).unwrap()
    );

    // No client certificate: the server refuses; counted as failed.
    let s = run(vec![url.clone(), ca]);
    assert_eq!((s.sent, s.failed), (0, 1), "{s}");
    // Default web roots: the private CA is not trusted; failed.
    let s = run(vec![url]);
    assert_eq!((s.sent, s.failed), (0, 1), "{s}");
    assert_eq!(bodies.lock().unwrap().len(), 1, "nothing else arrived");
    std::fs::remove_dir_all(&dir).ok();
}
