"""A workshop room: one shared cluster, one namespace (PDP, document API, MCP server) per learner.

One Keycloak serves the whole room from namespace ``idjag-room``; its realm is the lab's
``keycloak/realm-idjag.json`` plus one user per learner (``idjag-learner-01``…). Each learner's
manifests are the single-lab manifests with another namespace, nothing else (the Secret carries
that learner's own keys). A room has many namespaces on one cluster, so NodePorts cannot give
everyone 127.0.0.1:8443; each learner runs ``kubectl port-forward`` (printed by ``lab room up``)
and keeps the same learner-facing URLs as on the embedded backend.

Status: the step engine may call :func:`record_verified_step` after ``lab verify``/``--check``
passes in a room; ``lab room status`` reads that namespace annotation back.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.backends import kind_plan as plan
from lab.backends import room_plan, versions
from lab.backends.base import BackendError
from lab.backends.kind import (
    Action,
    BuildImage,
    CreateCluster,
    EnsureKeys,
    KindContext,
    LoadImage,
    WaitRollout,
    _no_progress,
    delete_namespace,
    kube_api_client,
    run_actions,
    run_command,
)
from lab.config import LEARNER_USERNAME, Settings

ROOM_NAMESPACE = "idjag-room"
LEARNER_PREFIX = "idjag-learner-"
KEYCLOAK_SERVICE_HOST = f"lab-keycloak.{ROOM_NAMESPACE}.svc.cluster.local:8080"
#: Namespace annotation holding the last step a learner verified (written by the step engine).
LAST_STEP_ANNOTATION = "lab.idjag.dev/last-verified-step"
#: Derived from the single node's pod limit (see lab/backends/room_plan.py).
MAX_LEARNERS = room_plan.MAX_LEARNERS


@dataclass(frozen=True)
class Learner:
    number: int

    @property
    def name(self) -> str:
        return f"learner-{self.number:02d}"

    @property
    def namespace(self) -> str:
        return f"{LEARNER_PREFIX}{self.number:02d}"

    @property
    def username(self) -> str:
        return f"{LEARNER_USERNAME}-{self.number:02d}"


def learners(count: int) -> list[Learner]:
    if not 1 <= count <= MAX_LEARNERS:
        raise BackendError(f"--learners {count} is out of range", f"choose 1 to {MAX_LEARNERS}")
    return [Learner(n) for n in range(1, count + 1)]


def parse_learner(text: str) -> Learner:
    """``3``, ``learner-03`` or ``idjag-learner-03`` -> Learner(3)."""
    digits = text.rsplit("-", 1)[-1]
    if not digits.isdigit() or not 1 <= int(digits) <= MAX_LEARNERS:
        raise BackendError(f"{text!r} names no learner", "use a number, e.g. `lab room reset 3`")
    return Learner(int(digits))


# --------------------------------------------------------------------------------------------
# Pure rendering


def room_realm(
    realm: dict[str, Any], people: Sequence[Learner], passwords: dict[str, str]
) -> dict[str, Any]:
    """The lab realm plus one enabled user per learner (password not temporary).

    The lab's shared ``idjag-learner`` (whose password is in the docs) is removed once learners
    have their own users: otherwise anyone could sign in as the shared user in any namespace.
    """
    realm = copy.deepcopy(realm)
    users = realm.setdefault("users", [])
    # Learners get what the lab's own learner has (e.g. the realm's default roles).
    model: dict[str, Any] = next((u for u in users if u.get("username") == LEARNER_USERNAME), {})
    if people:
        users[:] = [u for u in users if u.get("username") != LEARNER_USERNAME]
    for learner in people:
        users.append(
            {
                # Stable per learner: the ID token's `sub` must not change on a re-render.
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"idjag-lab:{learner.username}")),
                "username": learner.username,
                "email": f"{learner.username}@example.com",
                "firstName": "ID-JAG",
                "lastName": f"Learner {learner.number:02d}",
                "enabled": True,
                "emailVerified": True,
                "realmRoles": list(model.get("realmRoles", [])),
                "credentials": [
                    {"type": "password", "value": passwords[learner.name], "temporary": False}
                ],
            }
        )
    return realm


def render_keycloak(
    realm: dict[str, Any], idp_port: int = room_plan.ROOM_PORT_BASE, host: str = "127.0.0.1"
) -> list[dict[str, Any]]:
    """The room's Keycloak; its issuer is the URL learners reach (``http://host:idp_port``).

    The realm carries learners' passwords, so it travels in a Secret, never a ConfigMap.
    """
    docs = plan.load_manifest("room/keycloak.yaml")
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(plan.LAB_LABEL)
        if doc["kind"] == "Secret":
            text = json.dumps(realm, indent=2).encode()
            doc["data"] = {plan.REALM_FILE.name: base64.b64encode(text).decode()}
        for container in plan._containers(doc):
            container["image"] = versions.KEYCLOAK_IMAGE
            for variable in container["env"]:
                if variable["name"] == "KC_HOSTNAME":
                    variable["value"] = f"http://{host}:{idp_port}"
    room_plan.set_resources(docs, room_plan.KEYCLOAK_RESOURCES)
    return docs


def learner_options(learner: Learner, image: str) -> plan.RenderOptions:
    return plan.RenderOptions(
        namespace=learner.namespace, image=image, idp_target=KEYCLOAK_SERVICE_HOST, expose=False
    )


def render_learner(
    settings: Settings, learner: Learner, image: str, keys: dict[str, bytes] | None = None
) -> list[dict[str, Any]]:
    """One learner's namespace on their own port block, fenced by policy, quota and limits."""
    own = room_plan.learner_settings(settings, learner.number)
    docs = plan.render_namespace(own, replace(learner_options(learner, image), keys=keys))
    room_plan.set_resources(docs, room_plan.PART_RESOURCES)
    isolation = room_plan.isolation(learner.namespace, ROOM_NAMESPACE)
    return docs + isolation + room_plan.learner_access(learner.namespace)


def port_forward_commands(settings: Settings, learner: Learner, context: str) -> list[str]:
    """What the instructor runs (on the room's listen address, ``LAB_HOST``) for one learner.

    Each learner has their own port block, so every learner's forwards run side by side.
    """
    p = room_plan.learner_ports(settings, learner.number)
    base = f"kubectl --context {context} port-forward --address {settings.host}"
    return [
        f"{base} -n {ROOM_NAMESPACE} svc/lab-keycloak {p['idp']}:8080 &",
        f"{base} -n {learner.namespace} svc/lab-pdp {p['zms']} {p['zts']} &",
        f"{base} -n {learner.namespace} svc/lab-docapi "
        f"{p['docapi_protected']} {p['docapi_unprotected']} &",
        f"{base} -n {learner.namespace} svc/lab-mcpserver {p['mcp']} &",
    ]


# --------------------------------------------------------------------------------------------
# Actions specific to a room


@dataclass
class ApplyKeycloak:
    realm_file: Path
    passwords: dict[str, str]
    people: list[Learner]
    title: str = "Apply the room's Keycloak"

    def describe(self) -> str:
        docs = render_keycloak({"realm": "idjag", "users": ["<realm file users>"]})
        for doc in docs:
            if doc["kind"] == "Secret":
                users = ", ".join(p.username for p in self.people)
                doc["data"] = {plan.REALM_FILE.name: f"<{self.realm_file} plus users {users}>"}
        return plan.to_yaml(docs)

    def execute(self, ctx: KindContext) -> None:
        from lab.backends.kind import apply_documents

        realm = json.loads(self.realm_file.read_text())
        people_realm = room_realm(realm, self.people, self.passwords)
        docs = render_keycloak(people_realm, room_plan.ROOM_PORT_BASE, ctx.settings.host)
        apply_documents(ctx.api_client, docs)


@dataclass
class ApplyLearner:
    """One learner's namespace: the single-lab manifests with that namespace and their keys."""

    settings: Settings
    learner: Learner
    keys_dir: Path
    image: str
    title: str = ""

    def __post_init__(self) -> None:
        self.title = f"Apply {self.learner.namespace}"

    def describe(self) -> str:
        return plan.to_yaml(plan.redact(render_learner(self.settings, self.learner, self.image)))

    def execute(self, ctx: KindContext) -> None:
        from lab.backends.kind import apply_documents

        keys = plan.read_keys(self.keys_dir)
        image = ctx.image or self.image
        apply_documents(ctx.api_client, render_learner(self.settings, self.learner, image, keys))


# --------------------------------------------------------------------------------------------
# The room


class Room:
    """``lab room up|status|reset`` on one shared cluster (kind ``idjag-lab`` or ``context``)."""

    def __init__(
        self, settings: Settings, context: str | None = None, dry_run: bool = False
    ) -> None:
        self.settings = replace(settings, home=settings.home.resolve())
        self.context = context or plan.kube_context()
        self.creates_cluster = context is None
        self.dry_run = dry_run

    @property
    def room_dir(self) -> Path:
        return self.settings.home / "room"

    def learner_home(self, learner: Learner) -> Path:
        return self.room_dir / learner.name

    def passwords(self, people: Sequence[Learner]) -> dict[str, str]:
        """Each learner's Keycloak password, made once and kept (0600) in $LAB_HOME/room."""
        path = self.room_dir / "passwords.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if self.dry_run:
            return {p.name: known.get(p.name, "<generated>") for p in people}
        for learner in people:
            known.setdefault(learner.name, secrets.token_urlsafe(9))
        self.room_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(json.dumps(known, indent=2))
        return {p.name: known[p.name] for p in people}

    def plan_up(self, count: int, image: str | None = None) -> list[Action]:
        people = learners(count)
        tag = image or plan.image_tag()
        actions: list[Action] = []
        if self.creates_cluster:
            # One mapping-free cluster would do, but reusing the lab's config keeps one cluster.
            actions.append(
                CreateCluster(plan.kind_config(self.settings), self.room_dir / "kind-cluster.yaml")
            )
        actions.append(BuildImage(tag))
        if self.creates_cluster:
            actions.append(LoadImage(tag, plan.CLUSTER_NAME))
        actions.append(ApplyKeycloak(plan.REALM_FILE, self.passwords(people), people))
        for learner in people:
            keys_dir = replace(self.settings, home=self.learner_home(learner)).keys_dir
            actions += [EnsureKeys(keys_dir), ApplyLearner(self.settings, learner, keys_dir, tag)]
        actions.append(WaitRollout(ROOM_NAMESPACE, ("lab-keycloak",)))
        actions += [WaitRollout(learner.namespace) for learner in people]
        return actions

    def describe(self, actions: Sequence[Action]) -> str:
        blocks = [f"## {n}. {a.title}\n{a.describe()}" for n, a in enumerate(actions, start=1)]
        return f"# room plan (context {self.context})\n\n" + "\n\n".join(blocks) + "\n"

    def up(self, count: int) -> list[dict[str, Any]]:
        """Create or update the room; returns one record per learner (namespace, user, commands)."""
        actions = self.plan_up(count)
        if not self.dry_run:
            ctx = KindContext(
                self.settings,
                self.context,
                ROOM_NAMESPACE,
                self.creates_cluster,
                _no_progress,
                run=run_command,
            )
            run_actions(actions, ctx, retain=True)  # a room is never torn down by a late failure
        passwords = self.passwords(learners(count))
        records = []
        for learner in learners(count):
            record: dict[str, Any] = {
                "learner": learner.name,
                "namespace": learner.namespace,
                "username": learner.username,
                "password": passwords[learner.name],
                "port_forward": port_forward_commands(self.settings, learner, self.context),
            }
            if not self.dry_run:
                record["join_bundle"] = str(self.write_join_bundle(learner, passwords))
            records.append(record)
        return records

    def join_bundle_path(self, learner: Learner) -> Path:
        return self.learner_home(learner) / "join.json"

    def write_join_bundle(self, learner: Learner, passwords: dict[str, str]) -> Path:
        """The file the learner passes to ``lab room join`` (their admin key: 0600)."""
        from lab.backends import room_join
        from lab.config import ADMIN_PRINCIPAL

        keys = replace(self.settings, home=self.learner_home(learner))
        bundle = room_join.make_bundle(
            self.settings,
            learner.number,
            learner.namespace,
            self.context,
            learner.username,
            passwords[learner.name],
            keys.key_file(ADMIN_PRINCIPAL).read_bytes(),
        )
        path = self.join_bundle_path(learner)
        room_join.write_bundle(path, bundle)
        return path

    def status(self) -> list[dict[str, Any]]:
        """Each learner namespace with its last verified step (None until one is recorded)."""
        from kubernetes import client

        core = client.CoreV1Api(kube_api_client(self.context))
        selector = f"{plan.PART_OF_KEY}={plan.LAB_LABEL[plan.PART_OF_KEY]}"
        rows = []
        namespaces: list[Any] = core.list_namespace(label_selector=selector).items
        for ns in namespaces:
            name = ns.metadata.name
            if not name.startswith(LEARNER_PREFIX):
                continue
            annotations = ns.metadata.annotations or {}
            rows.append(
                {
                    "learner": parse_learner(name).name,
                    "namespace": name,
                    "phase": ns.status.phase if ns.status else None,
                    "last_verified_step": annotations.get(LAST_STEP_ANNOTATION),
                }
            )
        return sorted(rows, key=lambda row: row["namespace"])

    def reset(self, learner: Learner | None, count: int | None = None) -> list[str]:
        """Delete and recreate one learner's namespace, or every learner's; returns namespaces."""
        people = [learner] if learner else self._existing_learners(count)
        if self.dry_run:
            return [p.namespace for p in people]
        api = kube_api_client(self.context)
        image = self._deployed_image(api, people) if people else plan.image_tag()
        for person in people:
            delete_namespace(api, person.namespace)
        for person in people:
            wait_namespace_gone(api, person.namespace)
        actions: list[Action] = []
        for person in people:
            keys_dir = replace(self.settings, home=self.learner_home(person)).keys_dir
            actions += [EnsureKeys(keys_dir), ApplyLearner(self.settings, person, keys_dir, image)]
        actions += [WaitRollout(p.namespace) for p in people]
        ctx = KindContext(self.settings, self.context, ROOM_NAMESPACE, False, _no_progress)
        ctx.image = image
        run_actions(actions, ctx, retain=True)
        return [p.namespace for p in people]

    def _existing_learners(self, count: int | None) -> list[Learner]:
        if count is not None:
            return learners(count)
        if self.dry_run:
            return []
        return [parse_learner(row["namespace"]) for row in self.status()]

    def _deployed_image(self, api: Any, people: Sequence[Learner]) -> str:
        """The image the room already runs, so a reset needs no rebuild (read before deleting)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        for learner in people:
            try:
                dep: Any = client.AppsV1Api(api).read_namespaced_deployment(
                    "lab-pdp", learner.namespace
                )
            except ApiException:
                continue
            return str(dep.spec.template.spec.containers[0].image)
        return plan.image_tag()


def wait_namespace_gone(api: Any, namespace: str, timeout_s: float = 180.0) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1.0)
    raise BackendError(f"namespace {namespace} is still terminating", "check `kubectl get ns`")


def record_verified_step(api: Any, namespace: str, step: int) -> None:
    """Annotate a learner namespace with the step they last verified (for ``lab room status``)."""
    from kubernetes import client

    body = {"metadata": {"annotations": {LAST_STEP_ANNOTATION: str(step)}}}
    client.CoreV1Api(api).patch_namespace(namespace, body)
