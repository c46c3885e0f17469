"""``lab gateway --stdio`` launched by an AI client before ``lab up`` (no lab needed here).

The client starts the gateway when the user opens it, lab up or not; a gateway that exited 3
left the client with "failed to connect" and nothing to tell the user.
"""

from __future__ import annotations

from pathlib import Path

from tests.gateway.stdio_wire import StdioGateway, lab_env, tool_text


def test_stdio_gateway_without_a_lab_speaks_mcp_and_a_call_names_lab_up(tmp_path: Path) -> None:
    with StdioGateway(lab_env(tmp_path / "home")) as gateway:
        opened = gateway.initialize()
        assert opened["result"]["serverInfo"]["name"] == "idjag-lab-gateway", opened
        listed = gateway.call("tools/list")
        assert listed["result"]["tools"] == [], listed  # nothing saved from an earlier lab yet
        called = gateway.call("tools/call", {"name": "list_docs", "arguments": {}})
        assert called["result"]["isError"] is True, called
        text = tool_text(called)
        assert "not running" in text and "`lab up`" in text, text
        assert "keeps running" in text, text
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()
