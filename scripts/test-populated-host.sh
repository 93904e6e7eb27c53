#!/usr/bin/env bash
# Runs `cargo xtask test` on a host whose sensor state is populated, to show
# the tests do not depend on it: a rule in /etc/mcp-sensor/rules.d that
# alerts on every event, and a tool-definition store in /var/lib/mcp-sensor
# that would make every listed tool look changed. Both exist only in a
# private mount namespace (overlays on /etc and /var/lib), so nothing else
# on the machine sees them and nothing is left behind. Root.
# Usage: bash scripts/test-populated-host.sh [FILTER]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${MCP_POPULATED_HOST:-}" != 1 ]; then
    exec unshare --mount --propagation private env MCP_POPULATED_HOST=1 bash "$0" "$@"
fi
work=$(mktemp -d /var/tmp/mcp-populated-host.XXXXXX)
trap 'rm -rf "$work"' EXIT
for d in etc lib; do mkdir -p "$work/$d-up" "$work/$d-work"; done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$work/etc-up,workdir=$work/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$work/lib-up,workdir=$work/lib-work" /var/lib
mkdir -p /etc/mcp-sensor/rules.d /var/lib/mcp-sensor
cat > /etc/mcp-sensor/rules.d/everything.yaml <<'EOF'
- rule: host-everything
  description: the host's own rule; a test that reads it is not isolated
  severity: high
  kind: [exec, open, connect, rpc, exit, fork, malformed, io_uring_setup]
EOF
python3 - > /var/lib/mcp-sensor/tool-definitions.json <<'EOF'
import json
tools = {
    "secure-filesystem-server": ["read_text_file", "read_file", "list_directory", "write_file", "search_files",
                                 "get_file_info", "list_allowed_directories", "directory_tree", "edit_file"],
    "mcp-servers/everything": ["echo", "get-sum", "get-env", "get-tiny-image"],
    "mcp-server-commands": ["run_command"],
    "mcp-git": ["git_status", "git_log", "git_diff", "git_commit", "git_add"],
    "mcp-time": ["get_current_time", "convert_time"],
}
print(json.dumps({"version": 1, "servers": {s: {t: "0" * 64 for t in ts} for s, ts in tools.items()}}))
EOF
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
cargo build -q -p mcp-sensor
# the host state is live: a sensor run that is not isolated sees both
target/debug/mcp-sensor rules list | grep -q host-everything || { echo "the host rule is not active" >&2; exit 1; }
target/debug/mcp-sensor exec --events "$work/plain.jsonl" -- true
grep -q '"rule":"host-everything"' "$work/plain.jsonl" || { echo "a plain run did not alert" >&2; exit 1; }
echo "populated host: a plain \`mcp-sensor exec\` raised $(grep -c '"rule":"host-everything"' "$work/plain.jsonl") host-everything alerts"
cargo xtask test "$@"
