//! Tests of the Helm chart in `charts/mamori`, rendered by the real helm
//! (`helm template`, installed from PyPI by `cargo xtask chart`; see
//! `helm_chart/render.rs`). What the chart must render is listed in its
//! README; `cargo xtask chart` also lints it strictly and validates every
//! object against the Kubernetes 1.25-1.33 schemas.

#[path = "helm_chart/render.rs"]
mod render;

use render::{load_one, read, render, try_render};
use yaml_rust2::{yaml::Hash, Yaml};

/// The one DaemonSet of a render.
fn daemonset(docs: &[(String, Yaml)]) -> &Yaml {
    let ds = kind(docs, "DaemonSet");
    assert_eq!(ds.len(), 1);
    ds[0]
}

fn kind<'a>(docs: &'a [(String, Yaml)], k: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(k))
        .map(|(_, d)| d)
        .collect()
}

fn strs(v: &Yaml) -> Vec<&str> {
    v.as_vec()
        .map(|a| a.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ tests

#[test]
fn static_files_parse() {
    let chart = load_one(&read("Chart.yaml"), "Chart.yaml");
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("mamori"));
    assert!(chart["version"].as_str().is_some() && chart["appVersion"].as_str().is_some());
    load_one(&read("values.yaml"), "values.yaml");
    let _: serde_json::Value = serde_json::from_str(&read("values.schema.json")).unwrap();
}

#[test]
fn default_render_is_least_privilege_daemonset() {
    let docs = render("");
    let ds = daemonset(&docs);
    assert_eq!(ds["metadata"]["namespace"].as_str(), Some("security"));
    assert_eq!(
        ds["spec"]["updateStrategy"]["type"].as_str(),
        Some("RollingUpdate")
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"].as_bool(), Some(true));
    assert!(pod["hostNetwork"].is_badvalue(), "no hostNetwork");
    assert_eq!(pod["tolerations"][0]["operator"].as_str(), Some("Exists"));
    assert!(pod["priorityClassName"].is_badvalue());
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        {
            let l = &ds["spec"]["template"]["metadata"]["labels"];
            let mut h = Hash::new();
            for k in ["app.kubernetes.io/name", "app.kubernetes.io/instance"] {
                h.insert(Yaml::String(k.into()), l[k].clone());
            }
            Yaml::Hash(h)
        },
        "selector matches the pod labels"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"].as_str(), Some("mamori:0.1.0"));
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"].as_bool(), Some(false));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        strs(&sc["capabilities"]["add"]),
        ["BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"]
    );
    assert_eq!(sc["seccompProfile"]["type"].as_str(), Some("Unconfined"));
}

#[test]
fn default_container_env_probes_ports_and_args() {
    let docs = render("");
    let ds = daemonset(&docs);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // NODE_NAME from the downward API; no Slack secret by default.
    let env = c["env"].as_vec().unwrap();
    let node = env
        .iter()
        .find(|e| e["name"].as_str() == Some("NODE_NAME"))
        .expect("NODE_NAME");
    assert_eq!(
        node["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );
    assert!(env
        .iter()
        .all(|e| e["name"].as_str() != Some("SLACK_WEBHOOK_URL")));
    // Probes on /healthz by default; ports declared.
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"].as_str(),
        Some("health")
    );
    let ports: Vec<_> = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // /healthz and /metrics share one port.
    assert_eq!(ports, ["health"]);
    let startup = &c["startupProbe"];
    assert_eq!(startup["httpGet"]["path"].as_str(), Some("/healthz"));
    assert_eq!(startup["failureThreshold"].as_i64(), Some(60));
    assert_eq!(c["livenessProbe"]["timeoutSeconds"].as_i64(), Some(5));
    // The metrics Service selects the sensor pods' health port; no
    // ServiceMonitor unless asked for.
    let svc = kind(&docs, "Service");
    assert_eq!(svc.len(), 1);
    assert_eq!(
        svc[0]["spec"]["ports"][0]["targetPort"].as_str(),
        Some("health")
    );
    assert_eq!(
        svc[0]["spec"]["selector"]["app.kubernetes.io/name"],
        ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
    );
    assert!(kind(&docs, "ServiceMonitor").is_empty());
    assert!(c["resources"]["requests"]["cpu"].as_str().is_some());
    assert_eq!(
        strs(&c["args"]),
        [
            "run",
            "--health-addr",
            "0.0.0.0:8765",
            "--rules",
            "/etc/mamori/rules"
        ]
    );
}

#[test]
fn default_host_mounts_are_these_and_read_only_where_needed() {
    let docs = render("");
    let ds = daemonset(&docs);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    // Host mounts: exactly these, cgroup and /proc read-only.
    let volumes = pod["volumes"].as_vec().unwrap();
    let mut host: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    host.sort();
    assert_eq!(
        host,
        [
            "/proc",
            "/sys/fs/bpf",
            "/sys/fs/cgroup",
            "/sys/kernel/tracing",
            // The gap state file.
            "/var/lib/mamori"
        ]
    );
    let names: Vec<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for m in c["volumeMounts"].as_vec().unwrap() {
        let name = m["name"].as_str().unwrap();
        assert!(names.contains(&name), "mount {name} has a volume");
        let vol = volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap();
        if matches!(
            vol["hostPath"]["path"].as_str(),
            Some("/proc" | "/sys/fs/cgroup")
        ) {
            assert_eq!(m["readOnly"].as_bool(), Some(true), "{name} read-only");
        }
    }
}

#[test]
fn default_rbac_is_read_only() {
    let docs = render("");
    let ds = daemonset(&docs);
    let pod = &ds["spec"]["template"]["spec"];
    // RBAC: read-only pods, replicasets, jobs.
    let role = kind(&docs, "ClusterRole")[0];
    let mut resources = Vec::new();
    for rule in role["rules"].as_vec().unwrap() {
        assert_eq!(strs(&rule["verbs"]), ["get", "list", "watch"]);
        resources.extend(strs(&rule["resources"]));
    }
    assert_eq!(resources, ["pods", "replicasets", "jobs"]);
    let sa = kind(&docs, "ServiceAccount")[0];
    let binding = kind(&docs, "ClusterRoleBinding")[0];
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
}

#[test]
fn default_config_is_stdout_only() {
    let docs = render("");
    // mamori.yaml: stdout only.
    let cm = kind(&docs, "ConfigMap");
    let cfg = load_one(
        cm[0]["data"]["mamori.yaml"].as_str().unwrap(),
        "mamori.yaml",
    );
    assert_eq!(cfg["outputs"]["stdout"]["enabled"].as_bool(), Some(true));
    assert!(cfg["outputs"]["slack"].is_badvalue() && cfg["outputs"]["syslog"].is_badvalue());
}

#[test]
fn values_switch_outputs_privileged_mode_and_probes() {
    let overrides = r##"
privileged: true
priorityClassName: system-node-critical
slack: {existingSecret: mamori-slack, channel: "#sec"}
syslog: {address: "udp://127.0.0.1:514"}
customRules:
  local.yaml: |
    - rule: Local
      condition: evt.type=execve
health: {enabled: true}
extraOutputs:
  file: {path: /tmp/alerts.jsonl}
tolerations: []
"##;
    let base = render("");
    let docs = render(overrides);
    let ds = kind(&docs, "DaemonSet")[0];
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"].as_bool(), Some(true));
    assert!(c["securityContext"]["capabilities"].is_badvalue());
    assert_eq!(
        pod["priorityClassName"].as_str(),
        Some("system-node-critical")
    );
    assert!(pod["tolerations"].is_badvalue());
    let env = c["env"].as_vec().unwrap();
    let slack = env
        .iter()
        .find(|e| e["name"].as_str() == Some("SLACK_WEBHOOK_URL"))
        .expect("slack env");
    assert_eq!(
        slack["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("mamori-slack")
    );
    assert_eq!(
        slack["valueFrom"]["secretKeyRef"]["key"].as_str(),
        Some("webhook-url")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("health")
    );
    assert_eq!(
        strs(&c["args"]),
        [
            "run",
            "--health-addr",
            "0.0.0.0:8765",
            "--rules",
            "/etc/mamori/rules",
            "--rules",
            "/etc/mamori/rules.d"
        ]
    );
    assert!(c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"].as_str() == Some("/etc/mamori/rules.d")));

    let cms = kind(&docs, "ConfigMap");
    let cfg = load_one(
        cms[0]["data"]["mamori.yaml"].as_str().unwrap(),
        "mamori.yaml",
    );
    assert_eq!(
        cfg["outputs"]["slack"]["webhook_url"]["env"].as_str(),
        Some("SLACK_WEBHOOK_URL")
    );
    assert_eq!(cfg["outputs"]["slack"]["channel"].as_str(), Some("#sec"));
    assert_eq!(
        cfg["outputs"]["syslog"]["address"].as_str(),
        Some("udp://127.0.0.1:514")
    );
    assert_eq!(
        cfg["outputs"]["file"]["path"].as_str(),
        Some("/tmp/alerts.jsonl")
    );
    // The secret itself never reaches the ConfigMap.
    assert!(!cms[0]["data"]["mamori.yaml"]
        .as_str()
        .unwrap()
        .contains("hooks.slack"));
    let rules = cms[1]["data"]["local.yaml"]
        .as_str()
        .expect("custom rules file");
    assert!(rules.contains("- rule: Local"));

    // Checksums roll the pods when config or rules change.
    let ann = |d: &[(String, Yaml)], k: &str| {
        kind(d, "DaemonSet")[0]["spec"]["template"]["metadata"]["annotations"][k]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(ann(&base, "checksum/config").len(), 64);
    assert_ne!(ann(&base, "checksum/config"), ann(&docs, "checksum/config"));
    assert_ne!(ann(&base, "checksum/rules"), ann(&docs, "checksum/rules"));
    assert_eq!(
        ann(&base, "checksum/config"),
        ann(&render(""), "checksum/config")
    );

    // rbac.create=false and serviceAccount.create=false leave them out.
    let bare = render("rbac: {create: false}\nserviceAccount: {create: false}\n");
    assert!(kind(&bare, "ClusterRole").is_empty() && kind(&bare, "ServiceAccount").is_empty());
    assert_eq!(
        kind(&bare, "DaemonSet")[0]["spec"]["template"]["spec"]["serviceAccountName"].as_str(),
        Some("default")
    );
}

/// Leaf paths of `values`, descending where the schema lists properties.
fn value_paths(v: &Yaml, schema: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    let Yaml::Hash(h) = v else { return };
    let props = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{prefix}: schema lists no properties"));
    assert_eq!(
        schema["additionalProperties"],
        serde_json::json!(false),
        "{prefix}: typos rejected"
    );
    for (k, val) in h {
        let k = k.as_str().unwrap();
        let path = if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        };
        let sub = props
            .get(k)
            .unwrap_or_else(|| panic!("{path} is not in values.schema.json"));
        let ty = &sub["type"];
        let yaml_ty = match val {
            Yaml::Hash(_) => "object",
            Yaml::Array(_) => "array",
            Yaml::String(_) => "string",
            Yaml::Integer(_) => "integer",
            Yaml::Boolean(_) => "boolean",
            _ => "null",
        };
        let ok = ty.as_str() == Some(yaml_ty)
            || ty
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(yaml_ty)));
        assert!(ok, "{path}: default is {yaml_ty}, schema says {ty}");
        if let Some(e) = sub["enum"].as_array() {
            assert!(
                e.iter().any(|x| x.as_str() == val.as_str()),
                "{path}: default not in enum"
            );
        }
        if sub["properties"].is_object() {
            value_paths(val, sub, &path, out);
        } else {
            out.push(path);
        }
    }
    for k in props.keys() {
        if prefix.is_empty() {
            assert!(
                h.contains_key(&Yaml::String(k.clone())),
                "schema key {k} has no default in values.yaml"
            );
        }
    }
}

#[test]
fn schema_types_every_value_and_readme_documents_it() {
    let values = load_one(&read("values.yaml"), "values.yaml");
    let schema: serde_json::Value = serde_json::from_str(&read("values.schema.json")).unwrap();
    let mut paths = Vec::new();
    value_paths(&values, &schema, "", &mut paths);
    assert!(paths.len() > 25, "{paths:?}");
    let readme = read("README.md");
    let missing: Vec<_> = paths
        .iter()
        .filter(|p| !readme.contains(&format!("| `{p}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values not documented in the chart README: {missing:?}"
    );
}

#[test]
fn new_values_render_where_falco_users_expect_them() {
    let docs = render(
        r#"
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
namespaceOverride: sec
podSecurityContext: {fsGroup: 0}
health: {startupProbe: {periodSeconds: 2, failureThreshold: 7}}
metrics: {serviceMonitor: {enabled: true, interval: 15s, labels: {release: prom}}}
gap: {hostPath: /var/lib/x, heartbeat: 2s}
extraVolumes: [{name: extra, emptyDir: {}}]
extraVolumeMounts: [{name: extra, mountPath: /extra}]
"#,
    );
    let ds = daemonset(&docs);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"].as_str(),
        Some("mamori@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    for (_, d) in &docs {
        if !matches!(
            d["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        ) {
            assert_eq!(d["metadata"]["namespace"].as_str(), Some("sec"), "{d:?}");
        }
    }
    assert_eq!(pod["securityContext"]["fsGroup"].as_i64(), Some(0));
    assert_eq!(c["startupProbe"]["failureThreshold"].as_i64(), Some(7));
    let sm = kind(&docs, "ServiceMonitor");
    assert_eq!(sm.len(), 1);
    assert_eq!(
        sm[0]["metadata"]["labels"]["release"].as_str(),
        Some("prom")
    );
    assert_eq!(
        sm[0]["spec"]["endpoints"][0]["interval"].as_str(),
        Some("15s")
    );
    assert!(c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|m| m["mountPath"].as_str() == Some("/extra")));
    assert!(pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|v| v["hostPath"]["path"].as_str() == Some("/var/lib/x")));
    let cfg = load_one(
        kind(&docs, "ConfigMap")[0]["data"]["mamori.yaml"]
            .as_str()
            .unwrap(),
        "mamori.yaml",
    );
    assert_eq!(
        cfg["gap"]["state_file"].as_str(),
        Some("/var/lib/mamori/state.json")
    );
    assert_eq!(cfg["gap"]["heartbeat"].as_str(), Some("2s"));
    // Off: no Service, no state volume, no gap config.
    let off = render("metrics: {enabled: false}\ngap: {enabled: false}\n");
    assert!(kind(&off, "Service").is_empty());
    let cfg = load_one(
        kind(&off, "ConfigMap")[0]["data"]["mamori.yaml"]
            .as_str()
            .unwrap(),
        "mamori.yaml",
    );
    assert!(cfg["gap"].is_badvalue());
}

#[test]
fn the_schema_rejects_what_would_break_a_rollout() {
    for (values, word) in [
        ("updateStrategy: {maxUnavailable: 0}", "maxUnavailable"),
        ("updateStrategy: {maxUnavailable: \"0%\"}", "maxUnavailable"),
        ("seccompProfile: {type: Localhost}", "localhostProfile"),
        ("fullnameOverride: Mamori_Sensor", "fullnameOverride"),
        (
            "priorityClassName: \"system node critical\"",
            "priorityClassName",
        ),
        ("image: {digest: latest}", "digest"),
    ] {
        let e = try_render(values).expect_err(values);
        assert!(e.contains(word), "{values}: {e}");
    }
    assert!(try_render("seccompProfile: {type: Localhost, localhostProfile: p.json}").is_ok());
    assert!(try_render("updateStrategy: {maxUnavailable: 25%}").is_ok());
}
