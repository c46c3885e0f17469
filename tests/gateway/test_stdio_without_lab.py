"""``lab gateway --stdio`` launched by an AI client before ``lab up`` (no lab needed here).

The client starts the gateway when the user opens it, lab up or not; a gateway that exited 3
left the client with "failed to connect" and nothing to tell the user.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests import npmtools
from tests.gateway.conftest import gateway_command
from tests.gateway.stdio_wire import StdioGateway, lab_env, run_ts_client, tool_text

LAB_TOOLS = {"list_docs", "get_doc", "create_doc", "delete_doc"}


def test_stdio_gateway_without_a_lab_speaks_mcp_and_a_call_names_lab_up(tmp_path: Path) -> None:
    with StdioGateway(lab_env(tmp_path / "home")) as gateway:
        opened = gateway.initialize()
        assert opened["result"]["serverInfo"]["name"] == "idjag-lab-gateway", opened
        listed = gateway.call("tools/list")
        # Nothing saved from an earlier lab yet: the listing shipped with the lab.
        assert {tool["name"] for tool in listed["result"]["tools"]} >= LAB_TOOLS, listed
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
    assert set(summary["tools"]) >= LAB_TOOLS
    result = summary["result"]
    assert result["isError"] is True and "`lab up`" in result["content"][0]["text"], result


def test_a_bad_http_port_setting_does_not_stop_the_stdio_gateway(tmp_path: Path) -> None:
    env = {**lab_env(tmp_path / "home"), "LAB_GATEWAY_PORT": "not-a-port"}
    with StdioGateway(env) as gateway:
        opened = gateway.initialize()
        assert opened["result"]["serverInfo"]["name"] == "idjag-lab-gateway", gateway.describe()
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()


def test_inspector_cli_over_stdio_without_a_lab_gets_the_lab_up_error(tmp_path: Path) -> None:
    """The Inspector CLI lists the tools before calling one and refuses a name it was not
    listed: with an empty listing it never showed the gateway's error."""
    npmtools.require(npmtools.INSPECTOR)
    home = tmp_path / "home"
    env = lab_env(home)
    command = [
        str(npmtools.INSPECTOR.bin("mcp-inspector")),
        "--cli",
        *("-e", f"LAB_HOME={home}", "-e", "LAB_BACKEND=embedded"),
        *("--method", "tools/call", "--tool-name", "list_docs"),
        "--",
        *gateway_command("--stdio", "--headless"),
    ]
    done = subprocess.run(
        command,
        env=npmtools.node_env({k: v for k, v in env.items() if k.startswith("LAB_")}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    answer = json.loads(done.stdout)
    assert answer.get("isError") is True, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "`lab up`" in answer["content"][0]["text"], answer
