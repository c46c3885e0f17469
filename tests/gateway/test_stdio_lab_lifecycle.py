"""One ``lab gateway --stdio`` session while the lab comes up and goes down under it.

The AI client keeps the gateway it launched for its whole session: started before ``lab up``, it
must work once the lab is up without being restarted, and say clearly when the lab goes away.
"""

from __future__ import annotations

from pathlib import Path

from lab.config import LEARNER_PRINCIPAL
from tests.agent.labsetup import Admin, provision
from tests.gateway.stdio_wire import StdioGateway, tool_text
from tests.stack import embedded_stack, free_ports, stack_env

LAB_TOOLS = {"list_docs", "get_doc", "create_doc", "delete_doc"}


def call_list_docs(gateway: StdioGateway) -> dict:
    return gateway.call("tools/call", {"name": "list_docs", "arguments": {}})["result"]


def test_one_stdio_session_follows_the_lab_up_and_down(tmp_path: Path) -> None:
    home, ports = tmp_path / "home", free_ports()
    home.mkdir()
    env = stack_env(home, ports)
    with StdioGateway(env) as gateway:
        opened = gateway.initialize()
        assert opened["result"]["capabilities"]["tools"]["listChanged"] is True
        shipped = gateway.call("tools/list")["result"]["tools"]  # no lab, nothing saved yet
        assert {tool["name"] for tool in shipped} >= LAB_TOOLS
        before = call_list_docs(gateway)
        assert before["isError"] is True and "`lab up`" in before["content"][0]["text"]

        with embedded_stack(home, ports) as stack:
            admin = Admin(stack.settings)
            try:
                provision(admin, stack.settings)
            finally:
                admin.http.close()
            # The client was served an empty listing: told to list again once the lab runs.
            gateway.notification("notifications/tools/list_changed")
            listed = gateway.call("tools/list")["result"]["tools"]
            assert {tool["name"] for tool in listed} >= LAB_TOOLS
            up = call_list_docs(gateway)
            assert up.get("isError") is not True, up
            assert up["structuredContent"]["exchanged_token"]["sub"] == LEARNER_PRINCIPAL

        down = gateway.call("tools/call", {"name": "list_docs", "arguments": {}})
        text = tool_text(down)
        assert down["result"]["isError"] is True and "not running" in text, text
        assert "`lab up`" in text, text
        # The listing the lab gave is still served, in this session and the next one.
        relisted = gateway.call("tools/list")["result"]["tools"]
        assert {tool["name"] for tool in relisted} >= LAB_TOOLS
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()
        assert b"Traceback" not in gateway.stderr, gateway.describe()

    with StdioGateway(env) as later:
        later.initialize()
        saved = later.call("tools/list")["result"]["tools"]
        assert {tool["name"] for tool in saved} >= LAB_TOOLS
