//! Facts about this node that several stages need, read in one place so they
//! cannot disagree: its name (alerts' `hostname`, the pod watch's node) and
//! the host names rules may compare addresses with (`fd.sip.name`).

use std::sync::OnceLock;

use mamori_rules::HostNames;

/// `node_name` from the config, set once at start-up.
static CONFIGURED: OnceLock<String> = OnceLock::new();

/// Record the config's `node_name` (before anything asks for the name).
pub fn set_configured_node_name(name: Option<String>) {
    if let Some(n) = name {
        let _ = CONFIGURED.set(n);
    }
}

/// The node's name, the same for rule alerts, internal alerts, metrics and
/// the pod watch: `NODE_NAME` (the Helm chart sets it from the downward
/// API), else the config's `node_name`, else the UTS host name (the
/// kernel's, as this process sees it), else `/etc/hostname`. On EKS the host
/// name is the node name, so all agree outside a pod too.
pub fn node_name() -> Option<String> {
    pick_node_name(
        std::env::var("NODE_NAME").ok(),
        CONFIGURED.get().cloned(),
        first_line("/proc/sys/kernel/hostname").or_else(|| first_line("/etc/hostname")),
    )
}

/// The first non-empty of the sources, in order.
fn pick_node_name(
    env: Option<String>,
    configured: Option<String>,
    uts: Option<String>,
) -> Option<String> {
    [env, configured, uts]
        .into_iter()
        .flatten()
        .map(|n| n.trim().to_string())
        .find(|n| !n.is_empty())
}

/// A node name as Kubernetes allows it (a DNS subdomain: at most 253
/// lower-case letters, digits, `-` and `.`, alphanumeric at both ends).
pub fn check_node_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if n.is_empty() || n.len() > 253 {
        return Err("expected a node name of 1 to 253 characters".into());
    }
    if !n.chars().all(ok_char) || !ends(n.chars().next()) || !ends(n.chars().last()) {
        return Err(format!(
            "{n:?} is not a valid node name (lower-case letters, digits, '-' and '.', alphanumeric at both ends)"
        ));
    }
    Ok(n.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_prefers_the_downward_api_then_config_then_uts() {
        let s = |v: &str| Some(v.to_string());
        assert_eq!(pick_node_name(s("a"), s("b"), s("c")), s("a"));
        assert_eq!(pick_node_name(s("  "), s("b"), s("c")), s("b"));
        assert_eq!(pick_node_name(None, None, s("c\n")), s("c"));
        assert_eq!(pick_node_name(None, None, None), None);
    }

    #[test]
    fn node_names_are_checked() {
        assert_eq!(
            check_node_name("ip-10-0-1-2.ec2.internal").unwrap(),
            "ip-10-0-1-2.ec2.internal"
        );
        assert!(check_node_name("Node_1").is_err());
        assert!(check_node_name("-a").is_err());
        assert!(check_node_name("").is_err());
        assert!(check_node_name(&"a".repeat(254)).is_err());
    }
}
