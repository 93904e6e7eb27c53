#!/usr/bin/env bash
# One command, as root on a fresh Debian/Ubuntu machine: installs what is
# needed and runs every test: unit tests (no root), then the end-to-end
# tests that load the real BPF programs and drive real MCP software.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
cargo xtask test "$@"
