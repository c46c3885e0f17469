"""A room on a listen address learners' laptops reach (not 127.0.0.1): for 1, 3 and 30
learners, the URLs in each join bundle are the URLs the pods put in tokens and serve, every
learner has their own ports and issuers, and the forwards carry exactly those ports."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from lab.backends import kind_plan as plan
from lab.backends import room, room_join, room_plan
from lab.backends.base import BackendError
from lab.config import Settings

LISTEN = "192.0.2.50"  # TEST-NET-1: a LAN address that is not this machine's loopback
SIZES = [1, 3, 30]
FAKE_KEYS = {name: b"-----BEGIN TEST-----\n" for name in plan.key_file_names()}


def instructor() -> Settings:
    return Settings.from_env({"LAB_HOST": LISTEN})


def bundle_for(learner: room.Learner) -> dict[str, Any]:
    return room_join.make_bundle(
        instructor(), learner.number, learner.namespace, "ctx", learner.username, "pw", b"KEY"
    )


def pod_envs(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: {e["name"]: e["value"] for e in container["env"]}
        for doc in docs
        for container in plan._containers(doc)
    }


@pytest.mark.parametrize("count", SIZES)
def test_bundle_urls_are_the_urls_each_learners_pods_issue_and_serve(count: int) -> None:
    for learner in room.learners(count):
        bundle = bundle_for(learner)
        docs = room.render_learner(instructor(), learner, "idjag-lab:t", FAKE_KEYS)
        for name, env in pod_envs(docs).items():
            assert env["LAB_HOST"] == LISTEN, name
            assert env["LAB_POD_LOOPBACK_HOST"] == LISTEN, name
            # What the pod builds its issuer, audience and resource URLs from:
            inside = Settings.from_env(env).endpoints.as_dict()
            assert inside == bundle["endpoints"], f"{learner.name} {name}"
        services = {
            d["metadata"]["name"]: sorted(p["port"] for p in d["spec"]["ports"])
            for d in docs
            if d["kind"] == "Service"
        }
        ports = bundle["ports"]
        assert services == {
            "lab-pdp": sorted([ports["zms"], ports["zts"]]),
            "lab-docapi": sorted([ports["docapi_protected"], ports["docapi_unprotected"]]),
            "lab-mcpserver": [ports["mcp"]],
        }


@pytest.mark.parametrize("count", SIZES)
def test_no_two_learners_share_a_port_or_an_issuer_on_the_listen_address(count: int) -> None:
    owner_of_port: dict[int, str] = {}
    issuers: dict[str, str] = {}
    for learner in room.learners(count):
        endpoints = bundle_for(learner)["endpoints"]
        for key in ("zms", "zts", "docapi_protected", "docapi_unprotected", "mcp"):
            url = urlsplit(endpoints[key])
            assert url.hostname == LISTEN
            assert url.port not in owner_of_port, f"{learner.name} reuses {url.port}"
            owner_of_port[int(url.port or 0)] = learner.name
        assert endpoints["zts"] not in issuers
        issuers[endpoints["zts"]] = learner.name
        realm = f"idjag-{learner.number:02d}"
        assert (
            endpoints["idp_issuer"] == f"http://{LISTEN}:{room_plan.ROOM_PORT_BASE}/realms/{realm}"
        )
    assert len(owner_of_port) == 5 * count and len(issuers) == count


@pytest.mark.parametrize("count", SIZES)
def test_the_forwards_carry_each_bundles_ports_on_the_listen_address(count: int) -> None:
    people = room.learners(count)
    specs = room.room_forward_specs(instructor(), people, "ctx")
    forwarded: dict[str, set[int]] = {}
    for spec in specs:
        argv = list(spec.argv)
        assert argv[argv.index("--address") + 1] == LISTEN
        namespace = argv[argv.index("-n") + 1]
        ports = {int(a.split(":")[0]) for a in argv[argv.index("port-forward") + 4 :]}
        forwarded.setdefault(namespace, set()).update(ports)
        assert spec.probe is not None and urlsplit(spec.probe).hostname == LISTEN
    assert forwarded.pop(room.ROOM_NAMESPACE) == {room_plan.ROOM_PORT_BASE}
    for learner in people:
        ports = bundle_for(learner)["ports"]
        assert forwarded[learner.namespace] == {v for k, v in ports.items() if k != "idp"}


def test_room_keycloak_issues_for_the_listen_address() -> None:
    learner = room.Learner(7)
    docs = room.render_keycloak([room.room_realm({"realm": "idjag"}, learner)], host=LISTEN)
    env = next(iter(pod_envs(docs).values()))
    issuer = f"{env['KC_HOSTNAME']}/realms/{learner.realm}"
    assert issuer == bundle_for(learner)["idp_issuer"]


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "[::]"])
def test_a_listen_address_that_names_no_interface_is_refused(address: str) -> None:
    with pytest.raises(BackendError) as caught:
        room_plan.check_listen_address(address)
    assert "no laptop reaches" in caught.value.message
    assert "LAN address" in (caught.value.fix or "")


@pytest.mark.parametrize("address", ["192.168.1.20", "workshop.lan", "127.0.0.1"])
def test_a_concrete_listen_address_or_host_name_is_kept(address: str) -> None:
    assert room_plan.check_listen_address(address) == address


def test_room_cluster_has_no_host_port_mappings_and_serves_its_api_on_the_listen_address() -> None:
    config = room_plan.room_kind_config(LISTEN)
    assert config["networking"] == {
        "apiServerAddress": LISTEN,
        "apiServerPort": room_plan.ROOM_API_PORT,
    }
    assert all("extraPortMappings" not in node for node in config["nodes"])


def test_room_plan_uses_the_listen_option_and_starts_forwards_last(tmp_path: Any) -> None:
    workshop = room.Room(Settings(home=tmp_path), dry_run=True, listen=LISTEN)
    actions = workshop.plan_up(2, image="idjag-lab:t")
    assert actions[-1].title.startswith("Forward every learner's ports")
    text = workshop.describe(actions)
    assert f"listen address {LISTEN}" in text
    assert f"apiServerAddress: {LISTEN}" in text
    assert f"--address {LISTEN} svc/lab-pdp 20020 20021" in text
    assert not (tmp_path / "room").exists()


def test_the_room_record_keeps_the_listen_address_for_later_commands(tmp_path: Any) -> None:
    first = room.Room(Settings(home=tmp_path), context="workshop", listen=LISTEN)
    first.write_record(3)
    later = room.Room(Settings(home=tmp_path))  # e.g. `lab room status` with no options
    assert (later.listen, later.context, later.creates_cluster) == (LISTEN, "workshop", False)
    assert later.settings.host == LISTEN


def test_each_learner_realm_lets_id_jags_name_only_that_learners_zts_and_mcp() -> None:
    """Step 18: Keycloak issues ID-JAGs for the audiences its realm allows. One Keycloak serves
    every learner, so each realm carries that learner's own ZTS issuer and MCP resource."""
    lab_realm = json.loads(plan.REALM_FILE.read_text())
    learner = room.Learner(4)
    endpoints = room_plan.learner_settings(instructor(), learner.number).endpoints
    text = json.dumps(room.room_realm(lab_realm, learner, endpoints))
    assert "${LAB_" not in text
    assert f"http://{LISTEN}:20041/zts/v1" in text
    assert f"http://{LISTEN}:20044/mcp" in text
    assert "127.0.0.1:8443" not in text


def test_single_lab_keycloak_gets_the_zts_and_mcp_urls_for_its_realm_placeholders() -> None:
    env = plan.keycloak_run(Settings.from_env({"LAB_HOST": LISTEN})).kwargs["environment"]
    assert env["LAB_ZTS_ISSUER"] == f"http://{LISTEN}:8443/zts/v1"
    assert env["LAB_MCP_RESOURCE"] == f"http://{LISTEN}:8101/mcp"
