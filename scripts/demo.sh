#!/usr/bin/env bash
# One command, as root on a fresh Debian/Ubuntu machine: installs what is
# needed, builds mcp-sensor, checks the kernel, and runs the sensor (embedded
# defaults, no config) on a small demo, printing the events it saw.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:/usr/sbin:$PATH"
cargo build --release -p mcp-sensor
bin=target/release/mcp-sensor
"$bin" doctor
events=$(mktemp /tmp/mcp-sensor-demo.XXXXXX.jsonl)
echo "== running a small command tree under the sensor (events: $events)" >&2
"$bin" exec --events "$events" -- sh -c 'cat /etc/hostname >/dev/null; ls / >/dev/null; (setsid sh -c "cat /etc/os-release >/dev/null" &); sleep 0.2'
echo "== what it executed, opened (outside /usr/lib) and how it exited:" >&2
python3 - "$events" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    k = e["kind"]
    if k == "open" and e["path"].startswith(("/usr/lib", "/etc/ld.so")):
        continue
    detail = {"exec": lambda: " ".join(e["argv"]), "open": lambda: e["path"],
              "exit": lambda: f"code={e['code']} signal={e['signal']}",
              "fork": lambda: f"child {e['child_pid']}",
              "connect": lambda: f"{e.get('addr') or e.get('path')}:{e.get('port','')}",
              "drops": lambda: json.dumps({x: e[x] for x in ("kernel", "queue", "other")})}.get(k, lambda: "")()
    print(f"{e['ts'][11:23]} {k:7} pid={e['pid']:<7} {e['comm']:<10} {detail}")
PY
