#!/usr/bin/env python3
"""Smoke test of the harness: drive every installed real MCP server with client.py and check
the answers. No sensor involved. Run after setup.sh:

    . tests/.deps/env.sh && $MCP_PY tests/mcp/smoke.py [-v] [--wrap 'PREFIX ARGS --']

--wrap puts an argv prefix in front of every server command (e.g. the sensor:
`--wrap "target/debug/mcp-sensor exec --events /tmp/ev.jsonl --"`).
Prints one line per check and a closing 'N passed, N failed' line; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "client.py")


def env_argv(name: str) -> list[str]:
    v = os.environ.get(name)
    if not v:
        sys.exit(f"smoke.py: ${name} is not set; source $MCP_TEST_DEPS/env.sh first")
    return v.split()


def drive(scenario: dict, verbose: bool) -> dict:
    p = subprocess.run(
        [sys.executable, CLIENT, "--json", json.dumps(scenario)], capture_output=True, text=True, timeout=120
    )
    if p.returncode != 0:
        return {"ok": False, "error": f"client.py exit {p.returncode}: {p.stderr[-2000:]}", "results": []}
    rep = json.loads(p.stdout)
    if verbose:
        short = json.loads(p.stdout)
        for r in short["results"]:
            if len(r.get("content_text", "")) > 200:
                r["content_text"] = r["content_text"][:200] + f"...({len(r['content_text'])} chars)"
        print("   ", json.dumps(short)[:3000])
    return rep


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--wrap", default="", help="argv prefix put before each server command")
    a = ap.parse_args()
    wrap = shlex.split(a.wrap)

    tmp = tempfile.mkdtemp(prefix="mcp-smoke-")
    small = os.path.join(tmp, "small.txt")
    with open(small, "w") as f:
        f.write("hello from mcp-sensor smoke\n")
    big = os.path.join(tmp, "big.txt")
    big_text = ("0123456789abcdef" * 63 + "0123456789abcde\n") * 1024  # 1 MiB, 1 KiB lines
    assert len(big_text) == 1 << 20
    with open(big, "w") as f:
        f.write(big_text)
    repo = os.path.join(tmp, "repo")
    os.mkdir(repo)
    subprocess.run(["git", "init", "-q", repo], check=True)
    with open(os.path.join(repo, "new.txt"), "w") as f:
        f.write("x\n")

    checks: list[tuple[str, dict, list]] = [
        (
            "filesystem",
            {"command": wrap + env_argv("MCP_FS_SERVER") + [tmp], "steps": [
                {"list_tools": True},
                {"call": "read_text_file", "arguments": {"path": small}},
                {"call": "read_text_file", "arguments": {"path": big}},
            ]},
            [
                ("tools include read_text_file", lambda r: "read_text_file" in r["results"][0].get("tools", [])),
                ("small file read", lambda r: r["results"][1]["content_text"] == "hello from mcp-sensor smoke\n"),
                ("1 MiB file whole", lambda r: r["results"][2]["content_text"] == big_text),
            ],
        ),
        (
            "everything",
            {"command": wrap + env_argv("MCP_EVERYTHING_SERVER"), "steps": [
                {"call": "echo", "arguments": {"message": "ping-42"}},
                {"get_prompt": "args-prompt", "arguments": {"city": "Paris", "state": "IDF"}},
            ]},
            [
                ("echo", lambda r: r["results"][0]["content_text"] == "Echo: ping-42"),
                ("prompts/get", lambda r: r["results"][1]["ok"] and "Paris" in r["results"][1]["content_text"]),
            ],
        ),
        (
            "time",
            {"command": wrap + env_argv("MCP_TIME_SERVER"), "steps": [
                {"call": "get_current_time", "arguments": {"timezone": "UTC"}},
            ]},
            [("get_current_time", lambda r: '"timezone": "UTC"' in r["results"][0]["content_text"])],
        ),
        (
            "git",
            {"command": wrap + env_argv("MCP_GIT_SERVER"), "steps": [
                {"call": "git_status", "arguments": {"repo_path": repo}},
            ]},
            [("git_status", lambda r: "new.txt" in r["results"][0]["content_text"])],
        ),
        (
            "shell",
            {"command": wrap + env_argv("MCP_SHELL_SERVER"), "steps": [
                {"call": "run_command", "arguments": {"command": "echo hi"}},
            ]},
            [("run_command echo hi", lambda r: r["results"][0]["content_text"] == "hi\n")],
        ),
        (
            "sdk2-test",
            {"command": wrap + env_argv("MCP_SDK2_TEST_SERVER"), "steps": [
                {"call": "echo", "arguments": {"message": "m"}},
                {"call": "read_file", "arguments": {"path": small}},
                {"call": "shell", "arguments": {"command": "echo hi"}},
            ]},
            [
                ("echo", lambda r: r["results"][0]["content_text"] == "m"),
                ("read_file", lambda r: r["results"][1]["content_text"] == "hello from mcp-sensor smoke\n"),
                ("shell", lambda r: r["results"][2]["content_text"] == "hi\n"),
            ],
        ),
        (
            "shell-dies",
            {"command": wrap + env_argv("MCP_SHELL_SERVER"), "timeout": 20, "steps": [
                {"call": "run_command", "arguments": {"command": "kill -9 $PPID; sleep 5"}},
            ]},
            [("server death -> ok=false, no hang", lambda r: r["ok"] is False and r["error"])],
        ),
    ]

    passed = failed = 0
    for name, sc, tests in checks:
        sc.setdefault("timeout", 60)
        rep = drive(sc, a.v)
        if name != "shell-dies" and not rep.get("ok"):
            print(f"FAIL {name}: scenario not ok: {rep.get('error')} "
                  f"{[r.get('error') for r in rep.get('results', [])]}")
            failed += len(tests)
            continue
        for tname, fn in tests:
            try:
                good = bool(fn(rep))
            except Exception as e:  # noqa: BLE001
                good = False
                tname += f" ({type(e).__name__}: {e})"
            print(f"{'PASS' if good else 'FAIL'} {name}: {tname}")
            passed += good
            failed += not good
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
