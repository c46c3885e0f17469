"""``lab gateway --stdio`` launched by an AI client before ``lab up`` (no lab needed here).

The client starts the gateway when the user opens it, lab up or not; a gateway that exited 3
left the client with "failed to connect" and nothing to tell the user.
"""

from __future__ import annotations

from pathlib import Path

from tests.gateway.stdio_wire import StdioGateway, lab_env, run_ts_client, tool_text


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


def test_typescript_sdk_client_connects_without_a_lab_and_reads_the_lab_up_error(
    tmp_path: Path,
) -> None:
    summary = run_ts_client("stdio", env=lab_env(tmp_path / "home"))
    assert summary["errors"] == [], summary
    assert summary["tools"] == []
    result = summary["result"]
    assert result["isError"] is True and "`lab up`" in result["content"][0]["text"], result


def test_a_bad_http_port_setting_does_not_stop_the_stdio_gateway(tmp_path: Path) -> None:
    env = {**lab_env(tmp_path / "home"), "LAB_GATEWAY_PORT": "not-a-port"}
    with StdioGateway(env) as gateway:
        opened = gateway.initialize()
        assert opened["result"]["serverInfo"]["name"] == "idjag-lab-gateway", gateway.describe()
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
