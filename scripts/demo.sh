#!/usr/bin/env bash
# One command, as root on a fresh Debian/Ubuntu machine: installs what is
# needed, builds mcp-sensor, checks the kernel, then runs the sensor on its
# embedded defaults (no config) around a real MCP server (the npm
# filesystem server, driven by the official Python SDK client) that is asked
# to read a note and then a (fake) SSH private key. Prints what each tool
# call did, the alerts, and where the events are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
cargo build --release -p mcp-sensor
bin=$PWD/target/release/mcp-sensor
"$bin" doctor
echo "== installing the pinned MCP client and servers (tests/mcp/setup.sh)" >&2
bash tests/mcp/setup.sh >&2
. tests/.deps/env.sh

demo=$(mktemp -d /tmp/mcp-sensor-demo.XXXXXX)
mkdir -p "$demo/home/.ssh"
echo "remember the milk" >"$demo/home/notes.txt"
printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nZGVtbyBrZXksIG5vdCBhIHJlYWwgb25l\n-----END OPENSSH PRIVATE KEY-----\n' >"$demo/home/.ssh/id_ed25519"
events=$demo/events.jsonl
scenario=$(python3 - "$bin" "$events" "$demo" "$MCP_FS_SERVER" <<'PY'
import json, sys
bin, events, demo, server = sys.argv[1:]
home = demo + "/home"
print(json.dumps({
    "command": [bin, "exec", "--events", events, "--state-dir", demo + "/state", "--"] + server.split() + [home],
    "steps": [{"list_tools": True},
              {"call": "read_text_file", "arguments": {"path": home + "/notes.txt"}},
              {"call": "read_text_file", "arguments": {"path": home + "/.ssh/id_ed25519"}}],
    "timeout": 60, "stderr": demo + "/server.stderr"}))
PY
)
echo "== an MCP client asks the filesystem server, wrapped in 'mcp-sensor exec', to read two files" >&2
"$MCP_PY" "$MCP_CLIENT" --json "$scenario" >"$demo/client.json"
echo "== what each tool call did (mcp-sensor investigate):" >&2
"$bin" investigate --format table "$events"
echo "== alerts:" >&2
python3 - "$events" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["kind"] == "alert":
        call = e.get("tool_call") or {}
        print(f"{e['severity']:8} {e['rule']:20} {e['event'].get('path') or e['event'].get('method') or ''}"
              f"  <- {call.get('method')} {call.get('name')} id={call.get('id')}")
PY
echo "== events: $events   HTML timeline: $bin investigate --html $demo/timeline.html $events" >&2
echo "== to stop such a read instead of reporting it: add --enforce after 'exec' (the default rules then kill in the kernel; see rules/README.md, Enforcement)" >&2
echo "== to watch the whole host instead (no wrapper): $bin run   (see README: Watching a whole host)" >&2
