#!/usr/bin/env bash
# Installs what building and testing mcp-sensor needs on Debian/Ubuntu, as
# root: the kernel-side toolchain (clang, libbpf headers, bpftool), Python
# and Node for the real MCP software the tests drive, qemu and friends for
# the kernel matrix (`cargo xtask vmtest`), and a Rust toolchain when there
# is none. Idempotent: a second run changes nothing.
set -euo pipefail

need=()
command -v clang >/dev/null || need+=(clang llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v bpftool >/dev/null || [ -x /usr/sbin/bpftool ] || need+=(bpftool)
command -v setpriv >/dev/null || need+=(util-linux)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v git >/dev/null || need+=(git)
command -v cc >/dev/null || need+=(gcc libc6-dev)
# the benign corpus (tests/e2e/benign.rs): real version-manager shims
command -v rbenv >/dev/null || need+=(rbenv)
command -v direnv >/dev/null || need+=(direnv)
# headless browser: the investigate HTML report is checked by what it renders
command -v chromium >/dev/null || need+=(chromium)
# the metrics test (tests/e2e/metrics.rs): the real Prometheus server scrapes the daemon
command -v prometheus >/dev/null || [ -x /usr/bin/prometheus ] || need+=(prometheus)
# the OTLP-over-HTTPS test (tests/e2e/otlp.rs) makes its CA and certificates
command -v openssl >/dev/null || need+=(openssl)
# `cargo xtask vmtest` (the kernel matrix): qemu, the virtiofsd that shares
# the host's root with the VM (in qemu-system-common up to Debian 12), a
# static busybox for the VM's init, Debian's archive keys to check the kernel
# packages' signatures, xz for compressed kernel modules
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /usr/lib/qemu/virtiofsd ] || [ -x /usr/libexec/virtiofsd ] || need+=(qemu-system-common)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian 13's qemu no longer ships the C virtiofsd: the Rust one is a package
if ! [ -x /usr/lib/qemu/virtiofsd ] && ! [ -x /usr/libexec/virtiofsd ]; then
  apt-get install -y -qq virtiofsd >/dev/null
fi
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "installing the Rust toolchain (rustup, stable)" >&2
  command -v curl >/dev/null || { apt-get update -qq; apt-get install -y -qq curl ca-certificates >/dev/null; }
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2 || {
    echo "error: no Rust toolchain and rustup could not be fetched: install Rust >= 1.95 (https://rustup.rs) and rerun" >&2
    exit 1
  }
fi
