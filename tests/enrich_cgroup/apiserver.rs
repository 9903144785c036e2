//! A stand-in for the Kubernetes API server for the enrichment test: the
//! pod list, held-open watches fed by the test, and a kubeconfig naming it.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

/// A stand-in for the API server on 127.0.0.1: answers the pod list with
/// `list` and holds every watch open until `stop` is set, writing each line
/// received on `push` (a watch event) to the open watches. Sends the request
/// targets it saw on `seen`.
pub(crate) fn fake_apiserver(
    list: String,
    stop: Arc<AtomicBool>,
    seen: mpsc::Sender<String>,
    push: mpsc::Receiver<String>,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            while let Ok(line) = push.try_recv() {
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                for w in open.iter_mut() {
                    let _ = std::io::Write::write_all(w, chunk.as_bytes());
                }
            }
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
            let _ = seen.send(target.clone());
            if target.contains("watch=true") {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                open.push(s);
            } else {
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}",
                    list.len()
                );
                let _ = s.write_all(resp.as_bytes());
            }
        }
    });
    port
}

/// A running pod of a Deployment `api`, as the API server serialises it.
pub(crate) fn api_pod(name: &str, uid: &str, id: &str, node: &str, rv: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "payments", "uid": uid, "resourceVersion": rv,
            "labels": {"app": "api", "pod-template-hash": "6b7f9d8c4"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "api-6b7f9d8c4", "uid": "rs-1", "controller": true}]
        },
        "spec": {"nodeName": node, "serviceAccountName": "api",
            "containers": [{"name": "server", "image": "registry.example/payments/api:2.4.1"}]},
        "status": {"phase": "Running", "containerStatuses": [{
            "name": "server", "ready": true, "restartCount": 0,
            "image": "registry.example/payments/api:2.4.1",
            "imageID": "registry.example/payments/api@sha256:feedbeef",
            "containerID": format!("containerd://{id}")}]}
    })
}

/// A kubeconfig in `dir` naming the fake API server on `port`; its path.
pub(crate) fn write_kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    kubeconfig
}
