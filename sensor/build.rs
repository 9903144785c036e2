//! Builds the eBPF object (nightly, bpf target) with aya-build and puts it in
//! OUT_DIR for `include_bytes_aligned!`. With `AYA_BUILD_SKIP=1` the object is
//! replaced by an empty file: the userspace parts (rules, replay) still build
//! and test, and loading programs fails with a message saying why.
//!
//! Also generates the CRI client from `proto/cri.proto` (tonic), with the
//! `protoc` that `protoc-bin-vendored` ships unless `PROTOC` names one.

use std::path::PathBuf;

fn cri_client() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto/cri.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // The build script is single-threaded: nothing reads the
        // environment concurrently.
        std::env::set_var("PROTOC", protoc);
    }
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/cri.proto"], &["proto"])?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    cri_client()?;
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let object = out_dir.join("mamori");
    let skip = std::env::var("AYA_BUILD_SKIP")
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    if skip {
        std::fs::write(&object, b"")?;
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .expect("workspace root")
        .join("sensor-ebpf");
    let root = root.to_str().expect("utf-8 path");
    println!("cargo:rerun-if-changed={root}/common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "mamori-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
