//! Facts about this node that several stages need, read in one place so they
//! cannot disagree: its name (alerts' `hostname`, the pod watch's node) and
//! the host names rules may compare addresses with (`fd.sip.name`).

use mamori_rules::HostNames;

/// The node's name: `NODE_NAME` (the Helm chart sets it from the downward
/// API), else the kernel's host name, else `/etc/hostname`. On EKS the host
/// name is the node name, so all agree outside a pod too.
pub fn node_name() -> Option<String> {
    std::env::var("NODE_NAME")
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| first_line("/proc/sys/kernel/hostname"))
        .or_else(|| first_line("/etc/hostname"))
}

/// The `hostname` of alerts: [`node_name`], else `localhost`.
pub fn alert_hostname() -> String {
    node_name().unwrap_or_else(|| "localhost".into())
}

fn first_line(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .filter(|s| !s.is_empty())
}

/// `/etc/hosts` plus, in a pod, the API server's service address for the
/// `kubernetes.default.svc...` names. mamori never sends DNS queries.
pub fn host_names() -> HostNames {
    let mut t = HostNames::default();
    if let Ok(text) = std::fs::read_to_string("/etc/hosts") {
        t.add_hosts_file(&text);
    }
    if let Some(ip) = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .and_then(|h| h.parse().ok())
    {
        t.add_kubernetes_api(ip);
    }
    t
}
