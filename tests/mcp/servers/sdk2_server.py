#!/usr/bin/env python3
"""Tiny MCP server written with the MCP Python SDK 2.x high-level server API (MCPServer,
the 2.x name of FastMCP). Real SDK code with deterministic tools, for sensor tests that
need a server on mcp 2.x doing file I/O and subprocesses on demand.

Run with the servers venv python: `$MCP_SDK2_TEST_SERVER` from $MCP_TEST_DEPS/env.sh.

Tools:
  echo(message: str) -> str                    returns message unchanged
  read_file(path: str) -> str                  opens and reads a text file
  run(argv: list[str]) -> str                  subprocess.run(argv) without a shell; stdout
  shell(command: str) -> str                   /bin/sh -c command; stdout
"""

import subprocess

from mcp.server.mcpserver import MCPServer

server = MCPServer("mcp-sensor-sdk2-test", version="0.1.0")


@server.tool()
def echo(message: str) -> str:
    """Return the message unchanged."""
    return message


@server.tool()
def read_file(path: str) -> str:
    """Read a text file and return its content."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


@server.tool()
def run(argv: list[str]) -> str:
    """Run a program (no shell) and return its stdout."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60).stdout


@server.tool()
def shell(command: str) -> str:
    """Run a command with /bin/sh -c and return its stdout."""
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, check=False, timeout=60).stdout


if __name__ == "__main__":
    server.run()
