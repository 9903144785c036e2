# mamori container image: the static-ish `mamori` binary (eBPF object
# embedded at build time) on a distroless base, plus the shipped rules.
#
#   docker build -t mamori:0.1.0 .
#
# The build stage needs network access to crates.io and rustup's nightly
# channel (the eBPF object is built by sensor/build.rs with nightly + rust-src
# and a bpf-linker built against nightly's LLVM, as `cargo xtask` does).
# Not built in this project's CI (no container runtime there).

FROM rust:1-bookworm AS build
WORKDIR /src
RUN rustup toolchain install nightly --profile minimal --component rust-src
COPY . .
# cargo xtask build-ebpf installs bpf-linker against nightly's LLVM first.
RUN cargo xtask build-ebpf && cargo build --release -p sensor --locked \
 && install -D -m 0755 target/release/mamori /out/usr/bin/mamori \
 && mkdir -p /out/etc/mamori && cp -r rules /out/etc/mamori/rules \
 && rm -rf /out/etc/mamori/rules/tests \
 && find /out/etc/mamori/rules -type f ! -name '*.yaml' -delete

# glibc + libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /out/ /
# Runs as uid 0 on purpose: the chart grants CAP_BPF, CAP_PERFMON,
# CAP_SYS_RESOURCE and CAP_SYS_PTRACE (everything else dropped, read-only root
# filesystem), and Linux only makes added capabilities effective for uid 0
# unless the binary carries file capabilities.
USER 0:0
ENTRYPOINT ["/usr/bin/mamori"]
CMD ["run", "--rules", "/etc/mamori/rules"]
