"""The root group loads a command's module only when that command runs (issue #21), and a lazy
command keeps its options, help text and Typer's own errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from lab.cli.app import COMMANDS, CommandSource, LazyCommands, build_commands
from lab.cli.lazy_params import plain_value
from lab.cli.reset_run import plain_reset
from tests.cli.conftest import Lab

ROOT = Path(__file__).resolve().parents[2]


def test_each_module_declares_exactly_the_commands_the_table_names() -> None:
    by_source: dict[CommandSource, set[str]] = {}
    for name, source in COMMANDS.items():
        by_source.setdefault(source, set()).add(name)
    for source, names in by_source.items():
        try:
            built = set(build_commands(source))
        except ImportError:
            assert source.optional, f"{source.module} failed to import"
            continue
        assert built == names, f"{source.module}.{source.attribute}"


def test_help_lists_every_command_with_its_help_text(lab: Lab) -> None:
    result = lab.invoke("--help")
    assert result.exit_code == 0
    listed = [
        line.split()[0]
        for line in result.output.split("Commands:", 1)[1].splitlines()
        if line.startswith("  ") and line.split()[0] in COMMANDS
    ]
    assert listed == [name for name in COMMANDS if name in listed]
    assert set(COMMANDS) - set(listed) <= {n for n, s in COMMANDS.items() if s.optional}
    assert "reset           Put the lab back" in result.output
    assert "agent           Act as the AI agent" in result.output


def test_a_groups_own_help_stands_when_the_table_gives_none(lab: Lab) -> None:
    result = lab.invoke("room", "--help")
    assert result.exit_code == 0
    assert "Workshop room: one namespace per learner" in result.output


def test_a_misspelt_command_still_gets_a_suggestion(lab: Lab) -> None:
    result = lab.invoke("rset")
    assert result.exit_code == 2
    assert "No such command 'rset'. Did you mean 'reset'?" in result.output


def test_a_lazy_commands_options_keep_typers_errors(lab: Lab) -> None:
    not_a_number = lab.invoke("reset", "--to", "x")
    assert not_a_number.exit_code == 2
    assert "Invalid value for '--to': Input should be a valid integer" in not_a_number.output
    below_range = lab.invoke("reset", "--to", "0")
    assert below_range.exit_code == 2
    assert "Invalid value for '--to'" in below_range.output
    assert "greater than or equal to 1" in below_range.output


def test_a_plain_option_value_reaches_the_command(lab: Lab) -> None:
    # Parsed without pydantic; the command runs and says the lab is down (exit 3, not usage 2).
    result = lab.invoke("reset", "--to", "3")
    assert result.exit_code == 3, result.output
    assert "not running" in result.output


def test_plain_values_are_taken_and_everything_else_goes_to_typer() -> None:
    command = typer.main.get_command(_one_option_app())
    to, name = (p.type_descriptor for p in command.params)
    assert plain_value("12", to) == 12
    for not_plain in ("012", "+3", " 3", "3.0", "x", "0", "-0", "100", "99999999999999999999"):
        assert not isinstance(plain_value(not_plain, to), int), not_plain
    assert plain_value("docs", name) == "docs"
    assert not isinstance(plain_value(b"docs", name), str)  # bytes: Typer decodes them


def _one_option_app() -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command()
    def only(
        to: int = typer.Option(1, "--to", min=1, max=99),
        name: str = typer.Option("x", "--name"),
    ) -> None:
        del to, name

    return app


def test_an_optional_command_whose_module_is_missing_is_absent() -> None:
    commands = LazyCommands(
        {
            "reset": COMMANDS["reset"],
            "gone": CommandSource("lab.cli.no_such_module", optional=True),
        },
        {},
    )
    assert commands.get("gone") is None
    assert list(commands) == ["reset"]
    assert commands["reset"].name == "reset"


def test_a_required_command_whose_module_is_missing_raises() -> None:
    commands = LazyCommands({"gone": CommandSource("lab.cli.no_such_module")}, {})
    with pytest.raises(ImportError):
        commands["gone"]


PROBE = """
import json, sys
sys.argv = ["lab", *sys.argv[1:]]
from lab.cli.main import run
try:
    run()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("args", [["reset"], ["reset", "--to", "3"], ["status"]])
def test_a_command_imports_only_what_it_runs(lab: Lab, args: list[str]) -> None:
    # A process as the user runs it; the lab is not up, so each command stops at that.
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**lab.env, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 3, proc.stderr
    modules = set(report["modules"])
    for heavy in ("pydantic", "httpx", "yaml", "lab.cli.agent", "lab.cli.gateway", "lab.cli.ui"):
        assert heavy not in modules, f"`lab {' '.join(args)}` imported {heavy}"


@pytest.mark.parametrize("args", [["reset"], ["reset", "--to", "3"]])
def test_plain_resets_run_without_typer(lab: Lab, args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**lab.env, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["code"] == 3, proc.stderr  # the lab is not up: said as through Typer
    assert "error:" in proc.stderr and "fix:" in proc.stderr
    modules = set(report["modules"])
    assert not {"typer", "click", "lab.cli.app", "lab.cli.reset"} & modules


@pytest.mark.parametrize(
    "args",
    [
        ["reset", "--json"],
        ["reset", "--hard"],
        ["reset", "--to=3"],
        ["reset", "--to", "03"],
        ["reset", "--to", "0"],
        ["reset", "--to", "-1"],
        ["reset", "--to", "x"],
        ["reset", "--to"],
        ["reset", "--help"],
        ["--debug", "reset"],
        ["reset", "--to", "3", "--json"],
        ["status"],
    ],
)
def test_every_other_reset_form_is_left_to_typer(args: list[str]) -> None:
    assert plain_reset(args) is None


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_step_engine_loads_without_the_mcp_sdk() -> None:
    modules = _modules_after("import lab.steps.engine")
    assert "lab.agent.recorder" in modules
    assert "mcp" not in modules and "lab.agent.chain" not in modules


def test_verify_and_run_load_the_agent_in_the_background() -> None:
    modules = _modules_after(
        "import threading\n"
        "from lab.cli.engine import preload_step_modules\n"
        "preload_step_modules()\n"
        "[t.join(120) for t in threading.enumerate() if t.name == 'lab-preload']"
    )
    assert {"lab.agent.chain", "mcp", "lab.steps.engine"} <= modules


def test_lab_processes_load_httpx_without_its_command_line_tool() -> None:
    modules = _modules_after(
        "from lab.startup import skip_httpx_cli\n"
        "skip_httpx_cli()\n"
        "import httpx\n"
        "httpx.Client().close()\n"
    )
    assert "httpx" in modules
    assert "click" not in modules and "pygments" not in modules
