"""Interop client: the official MCP Python SDK (PyPI `mcp`) against Patchbay.

Usage:
    python_client.py [--mode legacy|auto] stdio PATCHBAY_BIN CONFIG
        spawns `PATCHBAY_BIN stdio --config CONFIG` and talks to it over stdin/stdout
    python_client.py [--mode legacy|auto] http URL
        Streamable HTTP to a running `patchbay serve`

--mode is the SDK's own connect mode: `legacy` sends `initialize` (protocol <= 2025-11-25);
`auto` (the SDK's default) probes `server/discover` first and adopts 2026-07-28 if offered.

Runs the steps of tests/interop/README.md (tools/list, `list`, `search`, `schema`, `call`,
resources/read, prompts/get) and prints one JSON summary line on stdout. A failing step is
recorded under "errors" and the next step still runs; the exit code is 1 if any step failed.
"""

import asyncio
import json
import sys
import time

from mcp import Client, StdioServerParameters

ECHO = "demo.echo"
RESOURCE = "test://static-text"
PROMPT = "conf.test_simple_prompt"
CLIENT = "python-sdk"


def structured(result, what: str) -> dict:
    dump = result.model_dump(by_alias=True, exclude_none=True)
    if result.is_error:
        raise RuntimeError(f"{what} returned isError: {json.dumps(dump)}")
    if not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{what} has no structuredContent: {json.dumps(dump)}")
    return result.structured_content


async def steps(client: Client, transport: str, summary: dict) -> None:
    errors = summary["errors"]

    async def step(name, body):
        try:
            await body()
        except Exception as e:  # noqa: BLE001 - every failure is reported by step name
            errors[name] = f"{type(e).__name__}: {e}"[:3000]

    async def tools_list():
        tools = await client.list_tools()
        summary["tools"] = sorted(t.name for t in tools.tools)

    async def list_ready():
        # The hub serves before its upstreams are ready (their operations appear when they
        # are); wait with `list` until none is still starting, as an agent would.
        deadline = time.monotonic() + 15
        while True:
            summary["list_polls"] = summary.get("list_polls", 0) + 1
            listed = structured(await client.call_tool("list", {}), "list")
            namespaces = {n["namespace"]: n["state"] for n in listed.get("namespaces", [])}
            summary["namespaces"] = namespaces
            if namespaces and "starting" not in namespaces.values():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"upstreams still starting after 15 s: {namespaces}")
            await asyncio.sleep(0.05)

    async def search():
        found = structured(await client.call_tool("search", {"q": "echo"}), "search")
        summary["search"] = [r["tool"] for r in found.get("results", [])]

    async def schema():
        s = structured(await client.call_tool("schema", {"tool": ECHO}), "schema")
        summary["schema_tool"] = s.get("tool")
        summary["schema_required"] = s.get("inputSchema", {}).get("required", [])

    async def call():
        text = f"hello from {CLIENT} over {transport}"
        called = structured(
            await client.call_tool("call", {"calls": [{"tool": ECHO, "input": {"text": text}}]}),
            "call",
        )
        item = called["results"][0]
        if not item.get("success"):
            raise RuntimeError(f"call of {ECHO} failed: {json.dumps(item)}")
        summary["echo"] = item["result"]["structuredContent"]["text"]

    async def resource():
        read = await client.read_resource(RESOURCE)
        summary["resource"] = [c.text for c in read.contents if getattr(c, "text", None) is not None]

    async def prompt():
        got = await client.get_prompt(PROMPT)
        summary["prompt"] = [m.content.text for m in got.messages if getattr(m.content, "type", None) == "text"]

    await step("tools/list", tools_list)
    await step("list", list_ready)
    await step("search", search)
    await step("schema", schema)
    await step("call", call)
    await step("resources/read", resource)
    await step("prompts/get", prompt)


async def run(server, transport: str, mode: str) -> dict:
    summary: dict = {"client": CLIENT, "transport": transport, "mode": mode, "errors": {}}
    try:
        async with Client(server, mode=mode, read_timeout_seconds=20) as client:
            summary["protocol_version"] = client.protocol_version
            summary["server_name"] = client.server_info.name if client.server_info else None
            await steps(client, transport, summary)
    except BaseException as e:  # noqa: BLE001 - connect/teardown failures are reported too
        if isinstance(e, KeyboardInterrupt):
            raise
        summary["errors"]["connect"] = f"{type(e).__name__}: {e!r}"[:3000]
    return summary


def main() -> None:
    args = sys.argv[1:]
    mode = "auto"
    if args[:1] == ["--mode"] and len(args) >= 2:
        mode, args = args[1], args[2:]
    if len(args) == 3 and args[0] == "stdio":
        server = StdioServerParameters(command=args[1], args=["stdio", "--config", args[2]])
    elif len(args) == 2 and args[0] == "http":
        server = args[1]
    else:
        sys.exit(f"usage: {sys.argv[0]} [--mode legacy|auto] stdio PATCHBAY_BIN CONFIG | http URL")
    summary = asyncio.run(run(server, args[0], mode))
    print(json.dumps(summary), flush=True)
    sys.exit(1 if summary["errors"] else 0)


if __name__ == "__main__":
    main()
