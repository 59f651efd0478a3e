"""Real MCP clients against a running toolsmith: the official Python SDK over Streamable HTTP (in
both protocol revisions) and through `toolsmith mcp` on stdio, and fastmcp's client over HTTP.

The API suite (crates/toolsmith/tests/api/mcp.rs) starts the server, publishes the sample tools and
runs this module with what it needs in the environment:

- TOOLSMITH_URL, TOOLSMITH_ORG: the server and the organization;
- TOOLSMITH_ADMIN_TOKEN, TOOLSMITH_ADMIN_ID: an admin of the organization;
- TOOLSMITH_VIEWER_TOKEN: a user who may read tools but not call them;
- TOOLSMITH_FOREIGN_TOKEN: the admin of another organization;
- TOOLSMITH_BIN, TOOLSMITH_API_KEY, TOOLSMITH_API_KEY_ID, TOOLSMITH_USER_ID: the binary and an API
  key for the stdio bridge.

Published: `no_deps` (returns its text; versions 1.0.0 and 2.0.0, tagged team:core), `context_echo`
(returns a JSON object), `raises` (always raises) and `hostile` (`spin` outlives the time limit).
"""

import asyncio
import json
import os
import unittest

import httpx2
from fastmcp import Client as FastMCPClient
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.exceptions import ToolError
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

URL = os.environ["TOOLSMITH_URL"]
ORG = os.environ["TOOLSMITH_ORG"]
ADMIN = os.environ["TOOLSMITH_ADMIN_TOKEN"]
ADMIN_ID = os.environ["TOOLSMITH_ADMIN_ID"]
VIEWER = os.environ["TOOLSMITH_VIEWER_TOKEN"]
FOREIGN = os.environ["TOOLSMITH_FOREIGN_TOKEN"]
KEY_USER = os.environ["TOOLSMITH_USER_ID"]


def endpoint(query: str = "") -> str:
    return f"{URL}/v1/{ORG}/mcp{query}"


def over_http(token: str | None, query: str = "", mode: str = "auto") -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0))
    return Client(streamable_http_client(endpoint(query), http_client=http), mode=mode, cache=None)


def over_stdio(mode: str = "auto") -> Client:
    env = {name: os.environ[name] for name in ("TOOLSMITH_API_KEY", "TOOLSMITH_API_KEY_ID", "TOOLSMITH_USER_ID")}
    bridge = StdioServerParameters(
        command=os.environ["TOOLSMITH_BIN"], args=["mcp", "--url", URL, "--org", ORG], env=env
    )
    return Client(bridge, mode=mode, cache=None)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def texts(result) -> list[str]:
    return [block.text for block in result.content]


class SdkOverHttp(unittest.TestCase):
    """The official SDK's client, probing with server/discover (2026-07-28) or, forced, with the
    initialize handshake (2025-11-25)."""

    def exercise(self, mode: str, revision: str) -> None:
        async def go():
            async with over_http(ADMIN, mode=mode) as client:
                self.assertEqual(client.protocol_version, revision)
                listed = await client.list_tools()
                names = [tool.name for tool in listed.tools]
                self.assertEqual(names, sorted(names))
                self.assertTrue({"no_deps", "context_echo", "raises", "hostile"} <= set(names), names)
                no_deps = next(tool for tool in listed.tools if tool.name == "no_deps")
                self.assertEqual(no_deps.input_schema["properties"]["text"]["type"], "string")

                result = await client.call_tool("no_deps", {"text": f"hello {revision}"})
                self.assertFalse(result.is_error)
                self.assertEqual(texts(result), [f"hello {revision}"])
                self.assertIsNone(result.structured_content)
                self.assertEqual(result.meta["toolsmith/tool_version"], "2.0.0")

                meta = {
                    "toolsmith/invocation_mode": "conversation-simulation",
                    "toolsmith/nonsensitive_user_variables": {"locale": "pt_PT"},
                    "toolsmith/sensitive_user_variables": {"member_id": "member-4242"},
                }
                result = await client.call_tool("context_echo", {"note": revision}, meta=meta)
                self.assertFalse(result.is_error)
                echoed = result.structured_content
                self.assertEqual(echoed["note"], revision)
                self.assertEqual(echoed["context"]["invocation_mode"], "conversation-simulation")
                self.assertEqual(echoed["context"]["sensitive_user_variables"], {"member_id": "********"})
                self.assertEqual(json.loads(texts(result)[0]), echoed)

                result = await client.call_tool("raises", {"reason": revision})
                self.assertTrue(result.is_error)
                self.assertEqual(texts(result), [f"ValueError: this tool always fails: {revision}"])

                result = await client.call_tool("no_deps", {"text": 42})
                self.assertTrue(result.is_error, "a model can correct its arguments")
                self.assertIn("`arguments.text`", texts(result)[0])

                result = await client.call_tool("hostile", {"action": "spin"})
                self.assertTrue(result.is_error)
                self.assertTrue(texts(result)[0].startswith("TimeoutError: The tool did not finish within"), texts(result))

                with self.assertRaises(MCPError) as refused:
                    await client.call_tool("no_such_tool", {})
                self.assertIn("Unknown tool: no_such_tool", str(refused.exception))

        run(go())

    def test_current_revision(self):
        self.exercise("auto", "2026-07-28")

    def test_previous_revision(self):
        self.exercise("legacy", "2025-11-25")

    def test_a_pin_and_a_tag_narrow_the_server(self):
        async def go():
            async with over_http(ADMIN, "?tag=team:core&version=no_deps:%3C2") as client:
                listed = await client.list_tools()
                self.assertEqual([tool.name for tool in listed.tools], ["no_deps"])
                result = await client.call_tool("no_deps", {"text": "pinned"})
                self.assertEqual(result.meta["toolsmith/tool_version"], "1.0.0")
                with self.assertRaises(MCPError):
                    await client.call_tool("raises", {})

        run(go())

    def test_refusals(self):
        async def viewer():
            async with over_http(VIEWER) as client:
                self.assertIn("no_deps", [tool.name for tool in (await client.list_tools()).tools])
                with self.assertRaises(Exception):
                    await client.call_tool("no_deps", {"text": "not allowed"})

        async def connect(token):
            async with over_http(token) as client:
                await client.list_tools()

        run(viewer())
        for token in (FOREIGN, None, "not-a-token"):
            with self.subTest(token=token and token[:8]), self.assertRaises(Exception):
                run(connect(token))


class FastMcpOverHttp(unittest.TestCase):
    def test_fastmcp_client(self):
        async def go():
            async with FastMCPClient(StreamableHttpTransport(endpoint(), auth=ADMIN)) as client:
                names = [tool.name for tool in await client.list_tools()]
                self.assertIn("context_echo", names)
                result = await client.call_tool("no_deps", {"text": "fast"})
                self.assertEqual(result.content[0].text, "fast")
                result = await client.call_tool("context_echo", {"note": "fast"})
                self.assertEqual(result.structured_content["note"], "fast")
                with self.assertRaises(ToolError) as raised:
                    await client.call_tool("raises", {"reason": "fast"})
                self.assertIn("ValueError: this tool always fails: fast", str(raised.exception))

        run(go())


class SdkOverStdio(unittest.TestCase):
    """`toolsmith mcp`, signing in with an API key, between the SDK's stdio client and the server."""

    def test_bridge(self):
        async def go(mode, revision):
            async with over_stdio(mode) as client:
                self.assertEqual(client.protocol_version, revision)
                listed = await client.list_tools()
                self.assertIn("no_deps", [tool.name for tool in listed.tools])
                result = await client.call_tool("no_deps", {"text": f"stdio {revision}"})
                self.assertEqual(texts(result), [f"stdio {revision}"])
                result = await client.call_tool("context_echo", {"note": "é ünïcode"})
                self.assertEqual(result.structured_content["note"], "é ünïcode")
                result = await client.call_tool("raises", {})
                self.assertTrue(result.is_error)
                with self.assertRaises(MCPError):
                    await client.call_tool("no_such_tool", {})

        run(go("auto", "2026-07-28"))
        run(go("legacy", "2025-11-25"))


if __name__ == "__main__":
    unittest.main()
