#!/usr/bin/env python3
"""Scenario driver for real MCP servers, built on the official MCP Python SDK 2.x client.

Run it with the client venv's python (``$MCP_PY`` from ``$MCP_TEST_DEPS/env.sh``):

    $MCP_PY tests/mcp/client.py SCENARIO.json
    $MCP_PY tests/mcp/client.py --json '{"command": [...], "steps": [...]}'
    $MCP_PY tests/mcp/client.py -          # scenario JSON on stdin

Scenario (JSON object):

    {
      "command": ["argv0", "arg", ...],   # required: the MCP server (or a wrapper such as
                                           #   `mcp-sensor exec --events F -- <server argv>`)
      "env": {"K": "V"},                  # optional: merged over the SDK's default environment
      "inherit_env": false,               # optional: true = start from the full os.environ
                                           #   instead of the SDK's small safe default set
      "cwd": "/dir",                      # optional
      "mode": "auto",                     # optional: "auto" (SDK default: server/discover,
                                           #   then initialize if the server answers -32601)
                                           #   or "legacy" (initialize only)
      "stderr": "/path/file",             # optional: server stderr goes here (default: inherited)
      "timeout": 30,                      # optional: whole-scenario deadline, seconds
      "step_timeout": 30,                 # optional: per-request read timeout (default = timeout)
      "raw": false,                       # optional: also include each result's model_dump
      "steps": [
        {"call": "tool", "arguments": {...}},
        {"call": "tool", "meta": {"traceparent": "00-..."}},  # sent as params._meta
        {"list_tools": true},
        {"list_prompts": true},
        {"list_resources": true},
        {"get_prompt": "name", "arguments": {...}},
        {"read_resource": "uri"},
        {"sleep": 0.2},
        {"wait_file": "/path"},             # wait (up to step_timeout) until the file exists
        {"touch": "/path"}                  # create the file (tells a harness a point was reached)
      ]
    }

Any step may carry ``"background": true``: it is started and the next step runs at once, so
several requests can be in flight together (the SDK matches responses to requests by id).
Every background step is finished before the session closes; results stay in step order.

Output: exactly one JSON object on stdout:

    {"ok": bool, "handshake": "discover"|"initialize"|null, "protocol_version": str|null,
     "server_info": {...}|null, "results": [
        {"step": i, "kind": "call"|..., "ok": bool, "is_error": bool, "content_text": str,
         "error": str|null, ...kind-specific extras (tools/prompts/resources name lists)}],
     "error": str|null, "elapsed": seconds}

``ok`` per step means "the request got a result" (a JSON-RPC error response, timeout or
dead server makes it false); ``is_error`` is the tool result's ``isError`` flag. The top
level ``ok`` is true iff the session came up and every step was ok. After a transport
failure (server died, timeout) the remaining steps are not run and are reported with
ok=false, error="not run: ...".

Exit code: 0 whenever a JSON report was printed (even if steps failed); 2 for bad usage
or an unreadable scenario; 3 for a bug inside the driver itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from typing import Any

try:
    import anyio
    import mcp_types as types
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.shared.exceptions import MCPError
except ImportError as e:  # pragma: no cover - usage error
    print(
        f"client.py: cannot import the MCP SDK ({e}); run it with the client venv python, "
        "e.g. `. $MCP_TEST_DEPS/env.sh; $MCP_PY tests/mcp/client.py ...`",
        file=sys.stderr,
    )
    sys.exit(2)


class UsageError(Exception):
    pass


STEP_KINDS = ("call", "list_tools", "list_prompts", "list_resources", "get_prompt", "read_resource", "sleep", "wait_file", "touch")


def describe_exc(e: BaseException) -> str:
    """One-line description; unwraps exception groups from anyio task groups."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe_exc(x) for x in e.exceptions)
    if isinstance(e, MCPError):
        return f"MCPError {e.code}: {e.message}"
    if isinstance(e, TimeoutError):
        return f"timeout ({type(e).__name__}) {e}".strip()
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def content_text(items: Any) -> str:
    """Concatenate the text carried by a list of content blocks / resource contents."""
    parts: list[str] = []
    for c in items or []:
        if isinstance(c, types.TextContent):
            parts.append(c.text)
        elif isinstance(c, types.EmbeddedResource):
            r = c.resource
            if isinstance(r, types.TextResourceContents):
                parts.append(r.text)
        elif isinstance(c, types.TextResourceContents):
            parts.append(c.text)
        elif isinstance(c, types.PromptMessage):
            parts.append(content_text([c.content]))
    return "".join(parts)


def validate(scenario: Any) -> dict[str, Any]:
    if not isinstance(scenario, dict):
        raise UsageError("scenario must be a JSON object")
    cmd = scenario.get("command")
    if not isinstance(cmd, list) or not cmd or not all(isinstance(a, str) for a in cmd):
        raise UsageError('"command" must be a non-empty list of strings')
    steps = scenario.get("steps", [])
    if not isinstance(steps, list):
        raise UsageError('"steps" must be a list')
    for i, s in enumerate(steps):
        if not isinstance(s, dict) or not any(k in s for k in STEP_KINDS):
            raise UsageError(f"step {i}: must be an object with one of {STEP_KINDS}")
    if scenario.get("mode", "auto") not in ("auto", "legacy"):
        raise UsageError('"mode" must be "auto" or "legacy"')
    return scenario


async def run_step(client: Client, i: int, step: dict[str, Any], step_timeout: float, raw: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"step": i, "ok": False, "is_error": False, "content_text": "", "error": None}
    result: Any = None
    if "call" in step:
        res["kind"] = "call"
        result = await client.call_tool(
            step["call"], step.get("arguments") or {}, read_timeout_seconds=step_timeout, meta=step.get("meta")
        )
        res["is_error"] = bool(result.is_error)
        res["content_text"] = content_text(result.content)
        res["has_structured"] = result.structured_content is not None
    elif "list_tools" in step:
        res["kind"] = "list_tools"
        with anyio.fail_after(step_timeout):
            result = await client.list_tools()
        res["tools"] = [t.name for t in result.tools]
    elif "list_prompts" in step:
        res["kind"] = "list_prompts"
        with anyio.fail_after(step_timeout):
            result = await client.list_prompts()
        res["prompts"] = [p.name for p in result.prompts]
    elif "list_resources" in step:
        res["kind"] = "list_resources"
        with anyio.fail_after(step_timeout):
            result = await client.list_resources()
        res["resources"] = [r.uri for r in result.resources]
    elif "get_prompt" in step:
        res["kind"] = "get_prompt"
        args = {k: str(v) for k, v in (step.get("arguments") or {}).items()}
        with anyio.fail_after(step_timeout):
            result = await client.get_prompt(step["get_prompt"], args or None)
        res["content_text"] = content_text(result.messages)
    elif "read_resource" in step:
        res["kind"] = "read_resource"
        with anyio.fail_after(step_timeout):
            result = await client.read_resource(step["read_resource"])
        res["content_text"] = content_text(result.contents)
    elif "sleep" in step:
        res["kind"] = "sleep"
        await anyio.sleep(float(step["sleep"]))
    elif "wait_file" in step:
        res["kind"] = "wait_file"
        with anyio.fail_after(step_timeout):
            while not os.path.exists(step["wait_file"]):
                await anyio.sleep(0.05)
    elif "touch" in step:
        res["kind"] = "touch"
        open(step["touch"], "a").close()
    res["ok"] = True
    if raw and result is not None:
        res["raw"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return res


async def run_scenario(sc: dict[str, Any], report: dict[str, Any], errlog: Any) -> None:
    argv = sc["command"]
    env = dict(os.environ) if sc.get("inherit_env") else {}
    env.update({str(k): str(v) for k, v in (sc.get("env") or {}).items()})
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=env or None, cwd=sc.get("cwd"))
    # inherit_env: the SDK merges env over its default set; passing the full environ covers it.
    timeout = float(sc.get("timeout", 30))
    step_timeout = float(sc.get("step_timeout", timeout))
    raw = bool(sc.get("raw", False))
    steps = sc.get("steps", [])
    results: list[dict[str, Any] | None] = report["results"]
    running: set[int] = report["_running"]

    client = Client(params, mode=sc.get("mode", "auto"), read_timeout_seconds=step_timeout)
    # stdio_client takes errlog as an argument; Client builds it itself, so rebuild the connector.
    if errlog is not sys.stderr:
        from mcp.client.client import _connect_transport  # noqa: PLC0415
        from mcp.client.stdio import stdio_client  # noqa: PLC0415

        client._connect = _connect_transport(stdio_client(params, errlog=errlog))  # pyright: ignore

    fatal: str | None = None

    async def one(i: int, step: dict[str, Any]) -> None:
        nonlocal fatal
        if fatal is not None:
            results[i] = {"step": i, "ok": False, "is_error": False, "content_text": "", "error": f"not run: {fatal}"}
            return
        t0 = time.monotonic()
        running.add(i)
        try:
            r = await run_step(client, i, step, step_timeout, raw)
        except MCPError as e:
            # A JSON-RPC error response: the server is alive, keep going.
            r = {"step": i, "ok": False, "is_error": False, "content_text": "", "error": describe_exc(e)}
            if e.code == -32000 and "closed" in e.message.lower():
                fatal = r["error"]
        except Exception as e:  # noqa: BLE001 - transport death, timeout, validation error
            r = {"step": i, "ok": False, "is_error": False, "content_text": "", "error": describe_exc(e)}
            fatal = r["error"]
        running.discard(i)
        r["elapsed"] = round(time.monotonic() - t0, 6)
        results[i] = r

    async with client:
        session = client.session
        report["handshake"] = "discover" if session.discover_result is not None else "initialize"
        report["protocol_version"] = client.protocol_version
        info = client.server_info
        report["server_info"] = info.model_dump(mode="json", by_alias=True, exclude_none=True) if info else None
        report["connected"] = True
        # the task group ends when every background step has: before the session closes
        async with anyio.create_task_group() as tg:
            for i, step in enumerate(steps):
                if step.get("background"):
                    tg.start_soon(one, i, step)
                else:
                    await one(i, step)
    if fatal is not None:
        report["error"] = fatal


async def amain(sc: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "ok": False,
        "connected": False,
        "handshake": None,
        "protocol_version": None,
        "server_info": None,
        "results": [None] * len(sc.get("steps", [])),
        "error": None,
        "_running": set(),
    }
    timeout = float(sc.get("timeout", 30))
    t0 = time.monotonic()
    stderr_path = sc.get("stderr")
    with contextlib.ExitStack() as stack:
        errlog = stack.enter_context(open(stderr_path, "w")) if stderr_path else sys.stderr
        try:
            # Whole-scenario deadline. Client teardown (stdin close, grace, SIGTERM/SIGKILL of the
            # server's process group) is shielded and bounded by the SDK (~6 s worst case).
            with anyio.fail_after(timeout):
                await run_scenario(sc, report, errlog)
        except TimeoutError:
            report["error"] = report["error"] or f"scenario timeout after {timeout}s"
        except Exception as e:  # noqa: BLE001 - spawn failure, handshake failure, server died
            report["error"] = report["error"] or describe_exc(e)
    running = report.pop("_running")
    for i, r in enumerate(report["results"]):
        if r is None:
            # The steps in flight when the scenario failed get the failure itself.
            err = report["error"] if i in running else f"not run: {report['error']}"
            report["results"][i] = {"step": i, "ok": False, "is_error": False, "content_text": "", "error": err}
    report["ok"] = bool(report["connected"] and report["error"] is None and all(r["ok"] for r in report["results"]))
    report["elapsed"] = round(time.monotonic() - t0, 3)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", nargs="?", help="scenario JSON file ('-' for stdin)")
    ap.add_argument("--json", dest="json_text", help="scenario as a JSON string")
    ap.add_argument("--pretty", action="store_true", help="indent the output JSON")
    args = ap.parse_args(argv)
    try:
        if (args.scenario is None) == (args.json_text is None):
            raise UsageError("give exactly one of SCENARIO.json or --json '...'")
        if args.json_text is not None:
            text = args.json_text
        elif args.scenario == "-":
            text = sys.stdin.read()
        else:
            with open(args.scenario, encoding="utf-8") as f:
                text = f.read()
        try:
            sc = validate(json.loads(text))
        except json.JSONDecodeError as e:
            raise UsageError(f"scenario is not valid JSON: {e}") from e
    except (UsageError, OSError) as e:
        print(f"client.py: {e}", file=sys.stderr)
        return 2
    try:
        report = anyio.run(amain, sc)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 3
    json.dump(report, sys.stdout, indent=2 if args.pretty else None)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
