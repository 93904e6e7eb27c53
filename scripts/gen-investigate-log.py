#!/usr/bin/env python3
"""Writes a synthetic daemon log for measuring `mcp-sensor investigate`:
DIR/events.jsonl and rotated siblings, each about MB_PER_FILE megabytes,
shaped like the sensor's lines (docs/events.md): sessions of a filesystem
server, each with tool calls that open files and exec helpers, and an alert
now and then.  Usage: gen-investigate-log.py DIR [TOTAL_MB] [FILES]"""
import json, os, sys

out = sys.argv[1]
total_mb = float(sys.argv[2]) if len(sys.argv) > 2 else 30
files = int(sys.argv[3]) if len(sys.argv) > 3 else 4
os.makedirs(out, exist_ok=True)
T0 = 1_795_262_400_000  # ms, 2026-11-21T12:00:00Z

def ts(ms):
    s, r = divmod(ms, 1000)
    import datetime
    d = datetime.datetime.fromtimestamp(s, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03d000000Z" % r

def ev(ms, kind, pid, srv, **f):
    e = {"ts": ts(ms), "pid": pid, "tid": pid, "ppid": 1, "uid": 1000, "comm": "node",
         "exe": "/usr/bin/node", "kind": kind}
    e.update(f)
    if srv:
        e["server"] = {"name": srv[0], "pid": srv[1]}
    return e

def lines():
    ms, n = T0, 0
    while True:
        n += 1
        pid = 10000 + n
        srv = ("secure-filesystem-server", pid)
        ms += 10
        yield ev(ms, "exec", pid, srv, filename="/usr/bin/node", argv=["node", "/srv/fs/index.js", "/home/me"], cwd="/", dev=1, ino=1)
        for i in range(20):
            ms += 1
            yield ev(ms, "open", pid, srv, path=f"/srv/fs/node_modules/pkg{i}/index.js", resolved=True, flags=["O_RDONLY"], ret=3, dev=1, ino=2, syscall="openat")
        for cid in range(1, 30):
            ms += 5
            args = {"path": f"/home/me/project/src/file{cid}.txt"}
            tc = {"id": cid, "name": "read_text_file", "method": "tools/call", "arguments": args}
            yield ev(ms, "rpc", pid, srv, direction="client_to_server", message="request", method="tools/call", id=cid, tool="read_text_file", arguments=args, size=120, truncated=False)
            for k in range(6):
                ms += 1
                yield ev(ms, "open", pid, srv, path=f"/home/me/project/src/file{cid}.txt.{k}", resolved=True, flags=["O_RDONLY"], ret=3, dev=1, ino=2, syscall="openat", tool_call=tc)
            if cid % 10 == 0:
                ms += 1
                x = ev(ms, "exec", pid + 1, srv, filename="/bin/sh", argv=["sh", "-c", "ls -la /home/me"], cwd="/home/me", dev=1, ino=3, tool_call=tc)
                yield x
                a = {k: v for k, v in x.items() if k not in ("filename", "argv", "cwd", "dev", "ino")}
                a.update(kind="alert", rule="unexpected-shell", severity="high", action="alert", description="A shell ran.", tags=["execution"], event=x)
                yield a
            ms += 2
            yield ev(ms, "rpc", pid, srv, direction="server_to_client", message="response", method="tools/call", id=cid, tool="read_text_file", result="x" * 200, is_error=False, latency_ms=8.0, size=400, truncated=False)
        ms += 1
        yield ev(ms, "exit", pid, srv, code=0, signal=None)

gen = lines()
per_file = int(total_mb * 1e6 / files)
for i in range(files - 1, -1, -1):  # .N oldest first, events.jsonl newest
    name = "events.jsonl" if i == 0 else f"events.jsonl.{i}"
    size = 0
    with open(os.path.join(out, name), "w") as f:
        while size < per_file:
            s = json.dumps(next(gen), separators=(",", ":")) + "\n"
            f.write(s)
            size += len(s)
print(out)
