//! Container id and pod UID from a cgroup path.
//!
//! The kernel only tells us which cgroup a process is in. Container runtimes
//! and the kubelet encode the container id and the pod UID in the names of
//! the cgroups they create, and those naming schemes are stable facts of each
//! runtime, so the path alone is enough to say "this process is container X
//! of pod Y" without asking any daemon. The layouts recognised:
//!
//! | who | path |
//! | --- | --- |
//! | kubelet, cgroupfs driver (AL2, v1) | `/kubepods/burstable/pod<uid>/<64-hex>` |
//! | kubelet, systemd driver (v1 and v2) | `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope` |
//! | CRI-O | `.../crio-<id>.scope`, or `.../crio-<id>` with cgroupfs |
//! | Docker | `/docker/<id>`, `/system.slice/docker-<id>.scope` |
//! | Podman | `.../libpod-<id>.scope` |
//! | host | anything else (`/`, `/user.slice/...`, `/system.slice/sshd.service`) |
//!
//! Parsing is pure and allocation-light; it never fails: a path that matches
//! nothing is a host path.

/// What a cgroup path says about its processes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupInfo {
    /// Full container id (hex), if the path names a container.
    pub container_id: Option<String>,
    /// Runtime that named the container cgroup, when the name says so.
    pub runtime: Option<&'static str>,
    /// Pod UID with dashes (as the API reports it), if the path is under a pod.
    pub pod_uid: Option<String>,
}

impl CgroupInfo {
    /// True when the path names neither a container nor a pod.
    pub fn is_host(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

/// Falco's `container.id` is the first 12 characters of the full id.
pub fn short_id(full: &str) -> &str {
    full.get(..12).unwrap_or(full)
}

/// Runtime prefixes of systemd scope names (and of CRI-O's cgroupfs names).
const PREFIXES: &[(&str, &str)] = &[
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-", "podman"),
];

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Container ids are 64 hex chars for every runtime here. Exactly 64: other
/// hex-named cgroups exist on hosts (this project's CI host has a 32-hex
/// memory cgroup for ordinary processes), and must stay host processes.
fn is_container_id(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

/// A container id in one path component, with the runtime if the name says.
fn container_in(component: &str) -> Option<(&str, Option<&'static str>)> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            // `crio-conmon-<id>.scope` is CRI-O's monitor process, not the
            // container: it is a host process.
            return is_container_id(id).then_some((id, Some(*runtime)));
        }
    }
    is_container_id(name).then_some((name, None))
}

/// Pod UIDs are UUIDs (36 chars with dashes) or, for static pods, a 32-hex
/// hash. The systemd driver writes dashes as underscores.
fn pod_uid_in(component: &str) -> Option<String> {
    let raw = if let Some(rest) = component.strip_suffix(".slice") {
        // kubepods-pod<uid>.slice or kubepods-<qos>-pod<uid>.slice
        let rest = rest.strip_prefix("kubepods-")?;
        let at = rest.find("pod")?;
        &rest[at + 3..]
    } else {
        component.strip_prefix("pod")?
    };
    let uid: String = raw
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .collect();
    let ok = match uid.len() {
        36 => uid.char_indices().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        }),
        32 => is_hex(&uid),
        _ => false,
    };
    ok.then_some(uid)
}

/// Parse one cgroup path (the part after `hierarchy:controllers:` in
/// `/proc/<pid>/cgroup`). The deepest container component wins, so a
/// container that made its own sub-cgroups is still found.
pub fn parse_path(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if let Some((id, runtime)) = container_in(component) {
            info.container_id = Some(id.to_ascii_lowercase());
            info.runtime = runtime;
        } else if let Some(uid) = pod_uid_in(component) {
            info.pod_uid = Some(uid);
        }
    }
    // kubelet's cgroupfs driver names the container cgroup by the bare id;
    // which runtime that is cannot be told from the path.
    info
}

/// What the kernel appends to the v2 path of a process (a zombie) whose
/// cgroup was removed.
const DELETED: &str = " (deleted)";

/// Parse a whole `/proc/<pid>/cgroup` file (v1 lines `N:ctrl,...:/path`,
/// the v2 line `0::/path`, or both on hybrid hosts). The first line that
/// names a container decides; otherwise the first that names a pod.
pub fn parse_proc_cgroup(content: &str) -> CgroupInfo {
    let mut pod_only = None;
    for line in content.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let info = parse_path(path.strip_suffix(DELETED).unwrap_or(path));
        if info.container_id.is_some() {
            return info;
        }
        if info.pod_uid.is_some() && pod_only.is_none() {
            pod_only = Some(info);
        }
    }
    pod_only.unwrap_or_default()
}

/// The unified-hierarchy (v2) path in a `/proc/<pid>/cgroup` file: the path
/// of its one `0::` line. `None` without such a line, with more than one
/// (cgroup names may hold newlines, so a name can forge a line), or when the
/// cgroup is gone (` (deleted)`).
pub fn unified_path(content: &str) -> Option<&str> {
    let mut found = None;
    for line in content.lines() {
        if let Some(path) = line.strip_prefix("0::") {
            if found.is_some() {
                return None;
            }
            found = Some(path);
        }
    }
    found.filter(|p| p.starts_with('/') && !p.ends_with(DELETED))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9c7e5b1d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c6e8b0d2f4a";
    const UID: &str = "1c0b6a5e-8f3d-4b2a-9e7c-6d5f4a3b2c1d";
    const UID_US: &str = "1c0b6a5e_8f3d_4b2a_9e7c_6d5f4a3b2c1d";

    /// path, container id, runtime, pod uid
    type Case = (
        String,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );

    #[test]
    fn table_of_real_layouts() {
        let static_uid: &'static str = "d41fe6ec6ad5e5d4e1f7b2b27dc4ae9b";
        let cases: Vec<Case> = vec![
            // AL2, cgroup v1, cgroupfs driver (containerd or dockershim)
            (format!("/kubepods/burstable/pod{UID}/{ID}"), Some(ID), None, Some(UID)),
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), Some(ID), None, Some(UID)),
            // guaranteed QoS has no QoS level
            (format!("/kubepods/pod{UID}/{ID}"), Some(ID), None, Some(UID)),
            // the pod's own cgroup (sandbox-less processes): pod only
            (format!("/kubepods/burstable/pod{UID}"), None, None, Some(UID)),
            // systemd driver with containerd (AL2023 on cgroup v2, or v1)
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Some("containerd"), Some(UID),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Some("containerd"), Some(UID),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope"),
                Some(ID), Some("containerd"), Some(UID),
            ),
            // a container that made its own sub-cgroup (cgroup namespaces)
            (
                format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope/init.scope"),
                Some(ID), Some("containerd"), Some(UID),
            ),
            // static pod: hash uid without dashes
            (format!("/kubepods/burstable/pod{static_uid}/{ID}"), Some(ID), None, Some(static_uid)),
            // CRI-O, systemd and cgroupfs
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{ID}.scope"),
                Some(ID), Some("cri-o"), Some(UID),
            ),
            (format!("/kubepods/burstable/pod{UID}/crio-{ID}"), Some(ID), Some("cri-o"), Some(UID)),
            // CRI-O's conmon is a host-side monitor, not the container
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{ID}.scope"),
                None, None, Some(UID),
            ),
            // Docker, cgroupfs and systemd
            (format!("/docker/{ID}"), Some(ID), None, None),
            (format!("/system.slice/docker-{ID}.scope"), Some(ID), Some("docker"), None),
            // Podman
            (format!("/machine.slice/libpod-{ID}.scope/container"), Some(ID), Some("podman"), None),
            // host processes
            ("/".into(), None, None, None),
            ("".into(), None, None, None),
            ("/user.slice/user-1000.slice/session-3.scope".into(), None, None, None),
            ("/system.slice/containerd.service".into(), None, None, None),
            ("/system.slice/kubelet.service".into(), None, None, None),
            ("/kubepods.slice".into(), None, None, None),
            ("/kubepods.slice/kubepods-burstable.slice".into(), None, None, None),
            // lookalikes that must not match
            ("/podcast/deadbeef".into(), None, None, None),
            (format!("/kubepods/burstable/pod{UID}x/{}", &ID[..20]), None, None, None),
        ];
        for (path, id, runtime, uid) in cases {
            let got = parse_path(&path);
            assert_eq!(got.container_id.as_deref(), id, "container id of {path:?}");
            assert_eq!(got.runtime, runtime, "runtime of {path:?}");
            assert_eq!(got.pod_uid.as_deref(), uid, "pod uid of {path:?}");
            assert_eq!(got.is_host(), id.is_none() && uid.is_none());
        }
    }

    #[test]
    fn short_id_is_twelve_chars() {
        assert_eq!(short_id(ID), "3f2a9c7e5b1d");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn proc_cgroup_v1_v2_and_hybrid() {
        // AL2 (v1): every controller line names the container.
        let v1 = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n11:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        let got = parse_proc_cgroup(&v1);
        assert_eq!(got.container_id.as_deref(), Some(ID));
        assert_eq!(got.pod_uid.as_deref(), Some(UID));
        // AL2023 (v2): one line.
        let v2 = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope\n"
        );
        let got = parse_proc_cgroup(&v2);
        assert_eq!(got.container_id.as_deref(), Some(ID));
        assert_eq!(got.runtime, Some("containerd"));
        assert_eq!(got.pod_uid.as_deref(), Some(UID));
        // Hybrid, container only visible in one controller.
        let hybrid = format!("9:name=systemd:/\n8:pids:/kubepods/pod{UID}/{ID}\n0::/\n");
        assert_eq!(parse_proc_cgroup(&hybrid).container_id.as_deref(), Some(ID));
        // Host.
        let host =
            "9:name=systemd:/\n4:memory:/process_api/4a5550b683c314c3b4f6681d52d523eb\n0::/\n";
        assert!(parse_proc_cgroup(host).is_host());
        // Garbage lines are skipped.
        assert!(parse_proc_cgroup("nonsense\n\n::\n").is_host());
        // A zombie whose cgroup was removed (v1 lines of zombies say `/`).
        let zombie = format!(
            "8:pids:/\n0::/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope (deleted)\n"
        );
        let got = parse_proc_cgroup(&zombie);
        assert_eq!(got.container_id.as_deref(), Some(ID));
        assert_eq!(got.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn unified_path_is_the_one_v2_line() {
        assert_eq!(unified_path("8:pids:/a\n0::/b/c\n"), Some("/b/c"));
        assert_eq!(unified_path("0::/\n"), Some("/"));
        // Pure v1: none.
        assert_eq!(unified_path("8:pids:/a\n1:name=systemd:/\n"), None);
        // A name with a newline forging a second line: trust neither.
        assert_eq!(unified_path("0::/user.slice/x\n0::/kubepods/y\n"), None);
        // The cgroup is gone; an empty path.
        assert_eq!(unified_path("0::/b/c (deleted)\n"), None);
        assert_eq!(unified_path("0::\n"), None);
        assert_eq!(unified_path(""), None);
    }
}
