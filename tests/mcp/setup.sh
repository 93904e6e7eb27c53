#!/usr/bin/env bash
# Installs the real MCP software the integration tests drive, with pinned versions:
#   - venv-client : the official MCP Python SDK (mcp 2.3.0), used by tests/mcp/client.py
#   - venv-servers: mcp-server-time, mcp-server-git (PyPI; both built on mcp 2.3.0)
#   - npm/        : @modelcontextprotocol/server-filesystem, @modelcontextprotocol/server-everything,
#                   mcp-server-commands (npm; a server whose run_command tool runs `/bin/sh -c`)
#   - venv-uv     : uv (PyPI), for servers launched with `uvx` / `uv run`
#   - venv-otlp   : opentelemetry-proto (the official OTLP protobuf classes) and grpcio, for the OTLP
#                   receiver the export tests run (otlp_receiver.py)
#   - venv-shell  : mcp-shell-server (PyPI, on mcp 1.x: its own venv), whose tool description
#                   lists its allowed commands in a per-process order (tests/e2e/rugpull.rs)
#   - npm-cache/, uv-cache/: the caches `npx` and `uvx` launch servers from offline, warmed here
#                   by one online launch each (what a user's machine has after a first use),
#                   and ms@2.1.3 in npm-cache for the benign corpus's offline `npm install`
# into $MCP_TEST_DEPS (default: tests/.deps, gitignored), and writes $MCP_TEST_DEPS/env.sh.
#
# Pins: tests/mcp/pins.txt (top level), requirements-*.txt and npm/package-lock.json (everything).
# Idempotent: a second run with unchanged pin files only re-checks and rewrites env.sh.
# Needs: python3 (>= 3.10) with venv, node (>= 20) + npm, git, and network access to PyPI
# and the npm registry. As root on Debian, missing node/npm/git/python3-venv are apt-installed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEPS="${MCP_TEST_DEPS:-$HERE/../.deps}"
mkdir -p "$DEPS"
DEPS="$(cd "$DEPS" && pwd)"

log() { printf 'mcp-setup: %s\n' "$*" >&2; }
die() { printf 'mcp-setup: ERROR: %s\n' "$*" >&2; exit 1; }

# --- system prerequisites ------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing $*; install it (needs root + apt-get to do it automatically)"
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PYTHON="${MCP_TEST_PYTHON:-python3}"
command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3 python3-venv
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PYTHON is $("$PYTHON" --version 2>&1); mcp 2.x needs Python >= 3.10"
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v npm >/dev/null 2>&1 || apt_install npm
command -v git >/dev/null 2>&1 || apt_install git   # mcp-server-git shells out to git
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] || log "WARNING: node $(node --version) < 20; some pinned npm deps declare node >= 20"

# --- stamp: skip the installs when nothing changed -------------------------------------------
PIN_FILES=("$HERE/pins.txt" "$HERE/requirements-client.txt" "$HERE/requirements-servers.txt" "$HERE/requirements-uv.txt" "$HERE/requirements-shell.txt"
           "$HERE/requirements-otlp.txt" "$HERE/npm/package.json" "$HERE/npm/package-lock.json" "$HERE/setup.sh")
STAMP_WANT="$(cat "${PIN_FILES[@]}" | sha256sum | cut -d' ' -f1) $("$PYTHON" --version 2>&1) node-$(node --version)"
STAMP_FILE="$DEPS/.stamp"

make_venv() {  # dir requirements-file
    local dir="$1" req="$2"
    if [ ! -x "$dir/bin/python" ]; then
        rm -rf "$dir"
        if ! "$PYTHON" -m venv "$dir" 2>/dev/null; then
            rm -rf "$dir"
            apt_install python3-venv
            "$PYTHON" -m venv "$dir"
        fi
    fi
    log "pip install -r $(basename "$req") into $(basename "$dir")"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req"
}

installs_present() {
    [ -x "$DEPS/venv-client/bin/python" ] && [ -x "$DEPS/venv-servers/bin/mcp-server-time" ] \
        && [ -x "$DEPS/venv-servers/bin/mcp-server-git" ] \
        && [ -f "$DEPS/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js" ] \
        && [ -f "$DEPS/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js" ] \
        && [ -f "$DEPS/npm/node_modules/mcp-server-commands/build/index.js" ] \
        && [ -x "$DEPS/venv-uv/bin/uvx" ] && [ -f "$DEPS/.launchers-warm" ] \
        && [ -x "$DEPS/venv-shell/bin/mcp-shell-server" ] \
        && [ -x "$DEPS/venv-otlp/bin/python" ]
}

# The interpreter uv runs servers with: the real file, not a version manager's shim.
UV_PY="$("$PYTHON" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
# npx / uvx as a client config runs them, from their caches; `offline` is set by the tests
launcher_env() {
    env npm_config_cache="$DEPS/npm-cache" npm_config_update_notifier=false npm_config_fund=false \
        npm_config_audit=false UV_CACHE_DIR="$DEPS/uv-cache" UV_PYTHON="$UV_PY" \
        UV_PYTHON_DOWNLOADS=never "$@"
}

# One online launch of each server the launcher tests start offline (each exits at stdin EOF).
warm_launchers() {
    log "warming the npx and uvx caches in $DEPS (one online launch each)"
    launcher_env npx -y @modelcontextprotocol/server-filesystem@2026.8.31 /tmp </dev/null >/dev/null 2>&1 \
        || die "npx -y @modelcontextprotocol/server-filesystem@2026.8.31 failed (npm registry reachable?)"
    launcher_env npx -y mcp-server-commands@0.5.0 </dev/null >/dev/null 2>&1 \
        || die "npx -y mcp-server-commands@0.5.0 failed (npm registry reachable?)"
    # the benign corpus's `npm install --offline` (tests/e2e/benign.rs); pinned as in npm/package-lock.json
    launcher_env npm cache add ms@2.1.3 >/dev/null 2>&1 \
        || die "npm cache add ms@2.1.3 failed (npm registry reachable?)"
    launcher_env "$DEPS/venv-uv/bin/uvx" --with-requirements "$HERE/requirements-servers.txt" \
        python "$HERE/servers/sdk2_server.py" </dev/null >/dev/null 2>"$DEPS/uvx-warm.log" \
        || die "uvx failed (PyPI reachable? log: $DEPS/uvx-warm.log)"
    touch "$DEPS/.launchers-warm"
}

if [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP_WANT" ] && installs_present; then
    log "up to date in $DEPS"
else
    rm -f "$STAMP_FILE"
    make_venv "$DEPS/venv-client" "$HERE/requirements-client.txt"
    make_venv "$DEPS/venv-servers" "$HERE/requirements-servers.txt"
    make_venv "$DEPS/venv-uv" "$HERE/requirements-uv.txt"
    make_venv "$DEPS/venv-shell" "$HERE/requirements-shell.txt"
    make_venv "$DEPS/venv-otlp" "$HERE/requirements-otlp.txt"

    log "npm ci (pinned by tests/mcp/npm/package-lock.json) into $DEPS/npm"
    mkdir -p "$DEPS/npm"
    cp "$HERE/npm/package.json" "$HERE/npm/package-lock.json" "$DEPS/npm/"
    if ! (cd "$DEPS/npm" && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error \
            >"$DEPS/npm-ci.log" 2>&1); then
        grep -v 'Unknown user config' "$DEPS/npm-ci.log" >&2 || true
        die "npm ci failed (log: $DEPS/npm-ci.log)"
    fi
    rm -f "$DEPS/.launchers-warm"
    warm_launchers
    installs_present || die "npm install did not produce the server entry points in $DEPS/npm"
fi

# --- verify installed versions against pins.txt -------------------------------------------
while read -r kind name version _; do
    case "$kind" in
        pypi)
            venv=venv-servers; [ "$name" = mcp ] && venv=venv-client; [ "$name" = uv ] && venv=venv-uv
            [ "$name" = mcp-shell-server ] && venv=venv-shell
            [ "$name" = opentelemetry-proto ] && venv=venv-otlp
            [ "$name" = grpcio ] && venv=venv-otlp
            got="$("$DEPS/$venv/bin/python" -c 'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "$name")"
            ;;
        npm)
            got="$(node -p 'require(process.argv[1]).version' "$DEPS/npm/node_modules/$name/package.json")"
            ;;
        *) continue ;;
    esac
    [ "$got" = "$version" ] || die "$name: installed $got, pinned $version"
done < <(grep -v '^#' "$HERE/pins.txt")
"$DEPS/venv-servers/bin/python" -c 'import importlib.metadata as m, sys; v = m.version("mcp"); sys.exit(0 if v.startswith("2.") else f"servers venv has mcp {v}, expected 2.x")'

# --- env.sh -------------------------------------------------------------------------------
NODE_BIN="$(command -v node)"
NM="$DEPS/npm/node_modules"
q() { printf '%q' "$1"; }
cat > "$DEPS/env.sh.tmp" <<EOF
# Generated by tests/mcp/setup.sh; source it. Each MCP_*_SERVER is the argv prefix that
# launches the server directly (no npx, no shell); word-split it: \$MCP_FS_SERVER /dir
export MCP_TEST_DEPS=$(q "$DEPS")
export MCP_PY=$(q "$DEPS/venv-client/bin/python")
export MCP_CLIENT=$(q "$HERE/client.py")
# npm, @modelcontextprotocol/sdk 1.x; append the allowed directories as arguments
export MCP_FS_SERVER="$(q "$NODE_BIN") $(q "$NM/@modelcontextprotocol/server-filesystem/dist/index.js")"
# npm, @modelcontextprotocol/sdk 1.x
export MCP_EVERYTHING_SERVER="$(q "$NODE_BIN") $(q "$NM/@modelcontextprotocol/server-everything/dist/index.js")"
# npm mcp-server-commands, @modelcontextprotocol/sdk 1.9.0; tool run_command runs /bin/sh -c
export MCP_SHELL_SERVER="$(q "$NODE_BIN") $(q "$NM/mcp-server-commands/build/index.js")"
# PyPI, mcp 2.3.0 (stdio moved to fds 6/7, fds 0/1 -> /dev/null / stderr)
export MCP_TIME_SERVER=$(q "$DEPS/venv-servers/bin/mcp-server-time")
# PyPI, mcp 2.3.0; optional: --repository PATH
export MCP_GIT_SERVER=$(q "$DEPS/venv-servers/bin/mcp-server-git")
# the published server built on mcp 2.x (same as MCP_TIME_SERVER)
export MCP_SDK2_SERVER=$(q "$DEPS/venv-servers/bin/mcp-server-time")
# tests/mcp/servers/sdk2_server.py on the mcp 2.3.0 MCPServer API: echo/read_file/run/shell
export MCP_SDK2_TEST_SERVER="$(q "$DEPS/venv-servers/bin/python") $(q "$HERE/servers/sdk2_server.py")"
# Launchers as client configs use them, from caches warmed by setup.sh (run them offline with
# npm_config_offline=true / UV_OFFLINE=1): npx of server-filesystem@2026.8.31 and
# mcp-server-commands@0.5.0; uvx --with-requirements MCP_UVX_REQUIREMENTS python SCRIPT
export MCP_NPM_CACHE=$(q "$DEPS/npm-cache")
export MCP_UVX=$(q "$DEPS/venv-uv/bin/uvx")
export MCP_UV=$(q "$DEPS/venv-uv/bin/uv")
export MCP_UV_CACHE=$(q "$DEPS/uv-cache")
export MCP_UV_PYTHON=$(q "$UV_PY")
export MCP_UVX_REQUIREMENTS=$(q "$HERE/requirements-servers.txt")
export MCP_SDK2_TEST_SCRIPT=$(q "$HERE/servers/sdk2_server.py")
# PyPI mcp-shell-server (mcp 1.x); commands allowed by ALLOW_COMMANDS, listed in its tool
# description in a per-process order
export MCP_PY_SHELL_SERVER=$(q "$DEPS/venv-shell/bin/mcp-shell-server")
# tests/mcp/servers/rug_server.py: description and serverInfo.version from RUG_DESCRIPTION / RUG_VERSION
# tests/mcp/otlp_receiver.py runs with this python (opentelemetry-proto, requirements-otlp.txt)
export MCP_OTLP_PY=$(q "$DEPS/venv-otlp/bin/python")
export MCP_RUG_SERVER="$(q "$DEPS/venv-client/bin/python") $(q "$HERE/servers/rug_server.py")"
EOF
mv "$DEPS/env.sh.tmp" "$DEPS/env.sh"
echo "$STAMP_WANT" > "$STAMP_FILE"
log "ready: source $DEPS/env.sh"
