"""The CLI misused as learners misuse it: empty settings, unwritable paths, wrong arguments.

Each case answers with one line naming the cause and the command to run next, the right exit
code, and nothing written where the learner did not ask.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.config import Settings
from tests.cli.conftest import Lab


def test_empty_lab_host_and_lab_home_mean_the_safe_defaults(lab: Lab) -> None:
    # `LAB_HOST=` once made uvicorn bind every interface and print URLs like `http://:9090`;
    # `LAB_HOME=` put the stores, keys and logs in whatever folder the learner stood in.
    settings = Settings.from_env({"LAB_HOST": "", "LAB_HOME": "", "LAB_LOG_LEVEL": ""})
    assert settings.host == "127.0.0.1"
    assert settings.home == Path(".lab")
    assert settings.log_level == "info"
    assert Settings.from_env({"LAB_BACKEND": ""}).backend == "embedded"
    lab.env["LAB_HOST"] = ""
    result = lab.invoke("up", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "bind 127.0.0.1," in result.stdout
    assert "http://:" not in result.stdout


def test_empty_lab_home_keeps_the_learners_folder_clean(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "somewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    lab.env["LAB_HOME"] = ""
    result = lab.invoke("keygen", "human.someone", "--print", "path")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(Path(".lab") / "keys" / "human.someone.pem")
    assert sorted(p.name for p in here.iterdir()) == [".lab"]
