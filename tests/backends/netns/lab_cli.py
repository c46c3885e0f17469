"""The learner's ``lab`` with the kind backend's kube API calls done on the emulation: providers
go to the PDP pod's providers file and the PDP process restarts (what the ConfigMap patch and
``rollout restart`` do), progress goes to a JSON file. Usage: ``python lab_cli.py ROOT ARGS...``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from lab.backends import kind

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.backends.netns.room import NetnsRoom  # noqa: E402

ROOM = NetnsRoom(Path(sys.argv[1]))


def get_providers(self: kind.KindBackend) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(ROOM.providers_file.read_text())
    return loaded


def set_providers(self: kind.KindBackend, providers: list[dict[str, Any]]) -> None:
    ROOM.providers_file.write_text(json.dumps(providers))
    ROOM.restart("pdp")
    if not kind.wait_http_ok(kind.health_urls(self.endpoints())["zts"], kind.HEALTH_TIMEOUT_S):
        raise kind.BackendError("the PDP did not come back after the restart")


def record_verified_step(self: kind.KindBackend, number: int, slug: str) -> bool:
    path = ROOM.root / "progress.json"
    done = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps([*done, [number, slug, time.time()]]))
    return True


kind.KindBackend.get_providers = get_providers  # type: ignore[method-assign]
kind.KindBackend.set_providers = set_providers  # type: ignore[method-assign]
kind.KindBackend.record_verified_step = record_verified_step  # type: ignore[method-assign]

if __name__ == "__main__":
    from lab.cli.main import run

    sys.argv = ["lab", *sys.argv[2:]]
    run()
