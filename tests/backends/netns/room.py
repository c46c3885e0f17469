"""One room learner's parts in network namespaces, as kind would run them, without Docker.

Each pod (PDP, document API, MCP server) is the lab's real pod entry point in its own network
namespace on a bridge, with the environment ``lab room up`` renders for learner 03 (a
non-loopback listen address, their port block and realm), only the Service names replaced by
the pods' addresses. This machine's own address plays the instructor's listen address: an IdP
stands in for the room's Keycloak there, and the forwards run under the real forward supervisor
with a kubectl stand-in (kubectl.py) that exits when its pod goes away.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from lab.backends import forwarder, kind, room, room_join, room_plan
from lab.backends import kind_plan as plan
from lab.config import ADMIN_PRINCIPAL, Settings

PODS = {"pdp": "10.231.0.2", "docapi": "10.231.0.3", "mcpserver": "10.231.0.4"}
SERVICES = {"lab-pdp": "pdp", "lab-docapi": "docapi", "lab-mcpserver": "mcpserver"}
BRIDGE = "kemu-br"
LEARNER = room.Learner(3)
HERE = Path(__file__).resolve().parent


def _ip(*args: str, netns: str | None = None, check: bool = True) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=check, capture_output=True)


class NetnsRoom:
    def __init__(self, root: Path, listen: str = "") -> None:
        self.root = root
        record = root / "room.json"
        self.listen = listen or json.loads(record.read_text())["listen"]
        self.instructor = Settings(home=root / "instructor", host=self.listen)
        self.own = room_plan.learner_settings(self.instructor, LEARNER.number)

    @property
    def providers_file(self) -> Path:
        return self.root / "pods" / "pdp" / "providers" / "providers.json"

    # ------------------------------------------------------------------ network
    def network_up(self) -> None:
        self.network_down()
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", "10.231.0.1/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for n, (part, address) in enumerate(PODS.items(), start=1):
            netns = f"kemu-{part}"
            _ip("netns", "add", netns)
            _ip("link", "add", f"kemu-v{n}", "type", "veth", "peer", "name", f"kemu-p{n}")
            _ip("link", "set", f"kemu-v{n}", "master", BRIDGE)
            _ip("link", "set", f"kemu-v{n}", "up")
            _ip("link", "set", f"kemu-p{n}", "netns", netns)
            _ip("addr", "add", f"{address}/24", "dev", f"kemu-p{n}", netns=netns)
            _ip("link", "set", f"kemu-p{n}", "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
            _ip("route", "add", "default", "via", "10.231.0.1", netns=netns)

    @staticmethod
    def network_down() -> None:
        for part in PODS:
            _ip("netns", "del", f"kemu-{part}", check=False)
        _ip("link", "del", BRIDGE, check=False)

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it open
        process = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        (self.root / f"{name}.pid").write_text(str(process.pid))

    def pod_env(self, part: str) -> dict[str, str]:
        env = {e["name"]: e["value"] for e in plan.pod_env(self.own, room.KEYCLOAK_SERVICE_HOST)}
        rules = []
        for rule in env["LAB_POD_FORWARD"].split(","):
            port, target = rule.split("=")
            host, target_port = target.rsplit(":", 1)
            if host in SERVICES:
                rules.append(f"{port}={PODS[SERVICES[host]]}:{target_port}")
            else:  # the room's Keycloak Service -> the IdP on the listen address
                rules.append(f"{port}={self.listen}:{room_plan.ROOM_PORT_BASE}")
        home = self.root / "pods" / part
        env.update(
            LAB_POD_FORWARD=",".join(rules),
            LAB_HOME=str(home / "home"),
            LAB_POD_KEYS=str(home / "keys"),
            LAB_POD_PROVIDERS=str(home / "providers" / "providers.json"),
        )
        return env

    def start_pod(self, part: str) -> None:
        argv = ["ip", "netns", "exec", f"kemu-{part}", sys.executable, "-m", "lab.backends.pod"]
        self._spawn(part, [*argv, part], self.pod_env(part))

    def restart(self, part: str) -> None:
        pid = int((self.root / f"{part}.pid").read_text())
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self.start_pod(part)

    def up(self) -> Path:
        """Network, keys, IdP, pods, forwards; returns the learner's join bundle."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "room.json").write_text(json.dumps({"listen": self.listen}))
        self.network_up()
        keys = replace(self.instructor, home=self.root / "instructor" / LEARNER.name)
        kind.ensure_local_keys(keys.keys_dir)
        data = plan.read_keys(keys.keys_dir)
        secrets = {
            "pdp": "lab-pdp-keys",
            "docapi": "lab-docapi-keys",
            "mcpserver": "lab-mcpserver-keys",
        }
        for part, secret in secrets.items():
            target = self.root / "pods" / part / "keys"
            target.mkdir(parents=True, exist_ok=True)
            for name in plan.SECRET_KEYS[secret]:
                (target / name).write_bytes(data[name])
        self.providers_file.parent.mkdir(parents=True, exist_ok=True)
        self.providers_file.write_text("[]")
        realm = room.room_realm(
            json.loads(plan.REALM_FILE.read_text()), LEARNER, self.own.endpoints
        )
        realm_file = self.root / f"realm-{LEARNER.realm}.json"
        realm_file.write_text(json.dumps(realm))
        idp_env = {
            "LAB_HOME": str(self.root / "idp"),
            "LAB_HOST": self.listen,
            "LAB_REALM": LEARNER.realm,
            "LAB_IDP_PORT": str(room_plan.ROOM_PORT_BASE),
        }
        self._spawn("idp", [sys.executable, "-m", "lab.idp", str(realm_file)], idp_env)
        for part in PODS:
            self.start_pod(part)
        specs = []
        for spec in kind.forward_specs(self.own, "emulated", LEARNER.namespace):
            at = spec.argv.index("--address")
            service, ports = spec.argv[at + 2].split("/", 1)[1], spec.argv[at + 3 :]
            argv = (sys.executable, str(HERE / "kubectl.py"), self.listen, PODS[SERVICES[service]])
            specs.append(forwarder.ForwardSpec(spec.name, (*argv, *ports), spec.probe))
        forwarder.write_spec(self.root / "forwards.spec.json", specs)
        pid = forwarder.start_detached(self.root / "forwards.spec.json", self.root / "forwards.log")
        (self.root / "forwards.pid").write_text(str(pid))
        bundle = room_join.make_bundle(
            self.instructor, LEARNER.number, LEARNER.namespace, "emulated", LEARNER.username,
            room.LEARNER_PASSWORD, keys.key_file(ADMIN_PRINCIPAL).read_bytes(), None,
            {p: keys.key_file(p).read_bytes() for p in room_join.BUNDLE_SERVICE_KEYS},
        )  # fmt: skip
        path = self.root / "join.json"
        room_join.write_bundle(path, bundle)
        return path

    def down(self) -> None:
        for pidfile in self.root.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        time.sleep(0.5)
        self.network_down()
