//! Tests of the pod watch against a fake API server, and of the pod → metadata
//! mapping (image parts, workloads).

use super::*;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

const NODE: &str = "ip-10-0-1-2.ec2.internal";

fn cid(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// A pod as the API server serialises it.
fn pod_json(uid: &str, name: &str, app: &str, ids: &[(&str, String)]) -> serde_json::Value {
    let statuses: Vec<_> = ids
        .iter()
        .map(|(cname, id)| {
            serde_json::json!({
                "name": cname, "ready": true, "restartCount": 0,
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:0123abcd",
                "containerID": format!("containerd://{id}"),
            })
        })
        .collect();
    let containers: Vec<_> = ids
        .iter()
        .map(|(cname, _)| {
            serde_json::json!({
                "name": cname, "image": "registry.example:5000/team/web:1.27",
                "securityContext": {"privileged": *cname == "debug"},
            })
        })
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "prod", "uid": uid, "resourceVersion": "5",
            "labels": {"app": app, "pod-template-hash": "7d9c8b6f5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web-7d9c8b6f5", "uid": "rs-uid", "controller": true}]
        },
        "spec": {"nodeName": NODE, "serviceAccountName": "web-sa", "containers": containers},
        "status": {"phase": "Running", "containerStatuses": statuses}
    })
}

fn list_json(rv: &str, pods: Vec<serde_json::Value>) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": rv}, "items": pods})
    .to_string()
}

fn watch_line(kind: &str, obj: serde_json::Value) -> String {
    format!("{}\n", serde_json::json!({"type": kind, "object": obj}))
}

/// What the fake API server was asked.
#[derive(Debug)]
enum Req {
    List(String),
    Watch(String),
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        let n = s.read(&mut b).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The fake API server. Lists: first `lists[0]`, then `lists[1]`. Watch
/// streams: the first sends `steps` one by one, each after the test says
/// go, and closes; later ones stay open and silent.
async fn serve(
    listener: TcpListener,
    lists: Vec<String>,
    steps: Vec<String>,
    mut go: mpsc::Receiver<()>,
    seen: mpsc::UnboundedSender<Req>,
) {
    let mut n_list = 0;
    let mut n_watch = 0;
    let mut idle = Vec::new();
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let head = read_head(&mut s).await;
        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
        if !target.contains("watch=true") {
            let _ = seen.send(Req::List(target));
            let body = &lists[n_list.min(lists.len() - 1)];
            n_list += 1;
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            continue;
        }
        let _ = seen.send(Req::Watch(target));
        n_watch += 1;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await;
        if n_watch == 1 {
            for step in &steps {
                if go.recv().await.is_none() {
                    return;
                }
                let chunk = format!("{:x}\r\n{step}\r\n", step.len());
                let _ = s.write_all(chunk.as_bytes()).await;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
            drop(s);
        } else {
            idle.push(s); // hold open, say nothing
        }
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_list_added_modified_deleted_and_relists_after_410() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (a, b, c) = (
        "aaaaaaaa-0000-4000-8000-000000000001",
        "bbbbbbbb-0000-4000-8000-000000000002",
        "cccccccc-0000-4000-8000-000000000003",
    );
    let pod_a = pod_json(
        a,
        "web-7d9c8b6f5-x1",
        "web",
        &[("web", cid(1)), ("debug", cid(2))],
    );
    let pod_a2 = pod_json(
        a,
        "web-7d9c8b6f5-x1",
        "web-v2",
        &[("web", cid(1)), ("debug", cid(2))],
    );
    let pod_b = pod_json(b, "web-7d9c8b6f5-x2", "web", &[("web", cid(3))]);
    let pod_c = pod_json(c, "web-7d9c8b6f5-x3", "web", &[("web", cid(4))]);
    let gone = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "too old resource version: 5 (99)",
        "reason": "Expired", "code": 410});
    let lists = vec![
        list_json("10", vec![pod_a.clone()]),
        list_json("20", vec![pod_a2.clone(), pod_c.clone()]),
    ];
    let steps = vec![
        watch_line("ADDED", pod_b.clone()),
        watch_line("MODIFIED", pod_a2.clone()),
        watch_line("DELETED", pod_b.clone()),
        watch_line("ERROR", gone),
    ];
    let (go_tx, go_rx) = mpsc::channel(1);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(serve(listener, lists, steps, go_rx, seen_tx));

    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let index = PodIndex::new();
    let stats = WatchStats::default();
    let watch = tokio::spawn(watch_node_pods(
        client,
        NODE.into(),
        index.clone(),
        stats.clone(),
    ));

    initial_list_is_indexed(&index).await;

    // ADDED
    go_tx.send(()).await.unwrap();
    wait_for("ADDED b", || index.lookup(Some(&cid(3)), None).is_some()).await;
    assert_eq!(
        index.lookup(None, Some(b)).unwrap().0.name.as_deref(),
        Some("web-7d9c8b6f5-x2")
    );
    // MODIFIED
    go_tx.send(()).await.unwrap();
    wait_for("MODIFIED a", || {
        index
            .lookup(None, Some(a))
            .is_some_and(|(p, _)| p.labels["app"] == "web-v2")
    })
    .await;
    // DELETED
    go_tx.send(()).await.unwrap();
    wait_for("DELETED b", || index.lookup(None, Some(b)).is_none()).await;
    assert!(index.lookup(Some(&cid(3)), None).is_none());
    // 410 Gone → a fresh list that brings c.
    go_tx.send(()).await.unwrap();
    wait_for("re-list after 410", || {
        index.lookup(Some(&cid(4)), None).is_some()
    })
    .await;
    assert_eq!(index.len(), 2);
    assert!(stats.lists.load(Ordering::Relaxed) >= 2);

    watch.abort();
    server.abort();
    let mut reqs = Vec::new();
    while let Ok(r) = seen_rx.try_recv() {
        reqs.push(r);
    }
    requests_are_for_this_node(&reqs);
}

/// The initial list (pod a) is in the index, with all its metadata.
async fn initial_list_is_indexed(index: &PodIndex) {
    wait_for("the initial list", || index.len() == 1).await;
    let (pod, meta) = index
        .lookup(Some(&cid(2)), None)
        .expect("pod a by container id");
    assert_eq!(pod.name.as_deref(), Some("web-7d9c8b6f5-x1"));
    assert_eq!(pod.namespace.as_deref(), Some("prod"));
    assert_eq!(pod.labels["app"], "web");
    assert_eq!(pod.workload_kind.as_deref(), Some("Deployment"));
    assert_eq!(pod.workload_name.as_deref(), Some("web"));
    assert_eq!(pod.service_account.as_deref(), Some("web-sa"));
    let meta = meta.expect("container debug");
    assert_eq!(meta.name, "debug");
    assert!(meta.privileged);
    assert_eq!(meta.repository, "registry.example:5000/team/web");
    assert_eq!(meta.tag.as_deref(), Some("1.27"));
    assert_eq!(meta.digest.as_deref(), Some("sha256:0123abcd"));
    assert!(
        !index
            .lookup(Some(&cid(1)), None)
            .unwrap()
            .1
            .unwrap()
            .privileged
    );
}

/// Lists after a 410, watches, and all for this node's pods only.
fn requests_are_for_this_node(reqs: &[Req]) {
    let lists: Vec<_> = reqs
        .iter()
        .filter_map(|r| match r {
            Req::List(t) => Some(t),
            _ => None,
        })
        .collect();
    let watches: Vec<_> = reqs
        .iter()
        .filter_map(|r| match r {
            Req::Watch(t) => Some(t),
            _ => None,
        })
        .collect();
    assert!(lists.len() >= 2, "a re-list after 410: {reqs:?}");
    assert!(!watches.is_empty(), "{reqs:?}");
    // Every request is for this node's pods only.
    for t in lists.iter().chain(watches.iter()) {
        assert!(t.starts_with("/api/v1/pods?"), "{t}");
        assert!(
            t.contains("fieldSelector=spec.nodeName%3Dip-10-0-1-2.ec2.internal"),
            "{t}"
        );
    }
}

#[test]
fn image_parts() {
    let cases = [
        ("nginx", ("nginx", None, None)),
        ("nginx:1.27", ("nginx", Some("1.27"), None)),
        (
            "docker.io/library/nginx:1.27",
            ("docker.io/library/nginx", Some("1.27"), None),
        ),
        ("registry:5000/app", ("registry:5000/app", None, None)),
        (
            "registry:5000/app:v2",
            ("registry:5000/app", Some("v2"), None),
        ),
        ("app@sha256:abc", ("app", None, Some("sha256:abc"))),
        ("app:v1@sha256:abc", ("app", Some("v1"), Some("sha256:abc"))),
    ];
    for (img, (r, t, d)) in cases {
        let (gr, gt, gd) = split_image(img);
        assert_eq!(
            (gr.as_str(), gt.as_deref(), gd.as_deref()),
            (r, t, d),
            "{img}"
        );
    }
}

#[test]
fn workloads_by_convention() {
    let hash: BTreeMap<String, String> =
        [("pod-template-hash".to_string(), "5d8f9c7b6".to_string())].into();
    let none = BTreeMap::new();
    let cases = [
        ("ReplicaSet", "api-5d8f9c7b6", &hash, ("Deployment", "api")),
        (
            "ReplicaSet",
            "api-5d8f9c7b6",
            &none,
            ("ReplicaSet", "api-5d8f9c7b6"),
        ),
        (
            "ReplicaSet",
            "standalone",
            &hash,
            ("ReplicaSet", "standalone"),
        ),
        ("Job", "backup-28930125", &none, ("CronJob", "backup")),
        ("Job", "migrate-db", &none, ("Job", "migrate-db")),
        ("Job", "v-12", &none, ("Job", "v-12")),
        ("DaemonSet", "mamori", &none, ("DaemonSet", "mamori")),
        ("StatefulSet", "db", &none, ("StatefulSet", "db")),
        ("Node", "ip-1", &none, ("Node", "ip-1")),
    ];
    for (k, n, labels, (wk, wn)) in cases {
        assert_eq!(
            workload(k, n, labels),
            (wk.to_string(), wn.to_string()),
            "{k}/{n}"
        );
    }
}

#[test]
fn pod_without_started_containers_or_uid() {
    let mut p: KPod = serde_json::from_value(pod_json("u", "p", "x", &[("web", cid(9))])).unwrap();
    p.status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .container_id = None;
    let e = pod_entry(&p).unwrap();
    assert!(e.containers.is_empty());
    assert_eq!(e.pod.uid, "u");
    p.metadata.uid = None;
    assert!(pod_entry(&p).is_none());
}
