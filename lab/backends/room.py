"""A workshop room: one shared cluster, one namespace (PDP, document API, MCP server) per learner.

One Keycloak serves the whole room from namespace ``idjag-room``, with one realm per learner
(``idjag-01``…): the lab's ``keycloak/realm-idjag.json`` under the learner's realm name. Each
learner thus has their own issuer and signing keys, trusted only by their own PDP, and the
realm's user is the steps' ``idjag-learner`` (the steps sign in as that user and expect that
``preferred_username``; a user per learner in one shared realm would break every step).
Each learner's manifests are the single-lab manifests with another namespace (the Secret
carries that learner's own keys), fenced by a NetworkPolicy, quota and limits, plus the
learner's own namespaced credentials (lab.backends.room_plan.learner_access).

Reachability: the instructor picks one listen address learners' laptops reach (``--listen``,
e.g. the machine's LAN address). Learner N's parts answer at ``http://<listen>:20000+N*10+k``
through ``kubectl port-forward`` processes that ``lab room up`` starts and a supervisor keeps
alive (lab.backends.forwarder); issuers and resource URLs inside the pods name that same address
(lab.backends.kind_plan.pod_env), so what the learner's ``lab`` reaches is what tokens say.

Status: after a step passes, a joined learner's ``lab`` records it in their namespace's
``lab-progress`` ConfigMap with their namespaced token; ``lab room status`` reads those back.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lab.backends import forwarder, room_plan, versions
from lab.backends import kind_plan as plan
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
    _read_json,
    _write_json,
    delete_namespace,
    forward_specs,
    kube_api_client,
    run_actions,
    run_command,
    stop_pids,
)
from lab.config import LEARNER_USERNAME, Endpoints, Settings

ROOM_NAMESPACE = "idjag-room"
#: ``$LAB_HOME/room/room.json``: listen address, context, whether the room made the cluster.
ROOM_RECORD = "room.json"
LEARNER_PREFIX = "idjag-learner-"
KEYCLOAK_SERVICE_HOST = f"lab-keycloak.{ROOM_NAMESPACE}.svc.cluster.local:8080"
PROGRESS_CONFIGMAP = room_plan.PROGRESS_CONFIGMAP
#: The realm file's published password of ``idjag-learner`` (the steps sign in with it).
LEARNER_PASSWORD = "password"
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
        """The user in the learner's own realm: the steps' user."""
        return LEARNER_USERNAME

    @property
    def realm(self) -> str:
        return room_plan.learner_realm(self.number)


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


#: ``${LAB_NAME}`` or ``${LAB_NAME:default}`` in the realm file (Keycloak resolves them from its
#: environment; the embedded IdP from the lab's endpoints).
_PLACEHOLDER = re.compile(r"\$\{(LAB_[A-Z_]+)(?::[^}]*)?\}")


def room_realm(
    realm: dict[str, Any], learner: Learner, endpoints: Endpoints | None = None
) -> dict[str, Any]:
    """The lab realm as learner ``learner``'s own realm (same clients, users and settings).

    One Keycloak serves every learner, so its environment cannot hold each learner's ZTS issuer
    and MCP resource: the realm file's ``${LAB_ZTS_ISSUER}``/``${LAB_MCP_RESOURCE}`` (the
    audiences an ID-JAG may name, step 18) are filled in here with that learner's own URLs.
    """
    realm = copy.deepcopy(realm)
    realm["realm"] = learner.realm
    realm.pop("id", None)  # Keycloak derives a fresh id; a shared one would clash on import
    realm["displayName"] = f"ID-JAG lab, {learner.name}"
    if endpoints is None:
        return realm
    values = {"LAB_ZTS_ISSUER": endpoints.zts, "LAB_MCP_RESOURCE": endpoints.mcp}
    text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), json.dumps(realm))
    resolved: dict[str, Any] = json.loads(text)
    return resolved


def render_keycloak(
    realms: Sequence[dict[str, Any]],
    idp_port: int = room_plan.ROOM_PORT_BASE,
    host: str = "127.0.0.1",
) -> list[dict[str, Any]]:
    """The room's Keycloak; issuers are ``http://host:idp_port/realms/<learner realm>``.

    Realm files carry users' credentials, so they travel in a Secret, never a ConfigMap;
    ``--import-realm`` imports every file in the mounted directory.
    """
    docs = plan.load_manifest("room/keycloak.yaml")
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(plan.LAB_LABEL)
        if doc["kind"] == "Secret":
            doc["data"] = {
                f"realm-{realm['realm']}.json": base64.b64encode(
                    json.dumps(realm, indent=2).encode()
                ).decode()
                for realm in realms
            }
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


def room_forward_specs(
    settings: Settings, people: Sequence[Learner], context: str
) -> list[forwarder.ForwardSpec]:
    """Every forward of the room on the listen address: the shared Keycloak, then each learner's
    parts on their own block, each with the health URL probed through it."""
    idp_port = room_plan.ROOM_PORT_BASE
    keycloak = forwarder.ForwardSpec(
        f"{ROOM_NAMESPACE}/lab-keycloak",
        (
            "kubectl",
            "--context",
            context,
            "-n",
            ROOM_NAMESPACE,
            "port-forward",
            "--address",
            settings.host,
            "svc/lab-keycloak",
            f"{idp_port}:8080",
        ),  # fmt: skip
        f"http://{settings.host}:{idp_port}/realms/master/.well-known/openid-configuration",
    )
    specs = [keycloak]
    for learner in people:
        own = room_plan.learner_settings(settings, learner.number)
        specs += forward_specs(own, context, learner.namespace)
    return specs


# --------------------------------------------------------------------------------------------
# Actions specific to a room


@dataclass
class StartRoomForwards:
    """The room's port-forwards on the listen address, under one detached supervisor."""

    settings: Settings
    people: list[Learner]
    context: str
    room_dir: Path
    title: str = "Forward every learner's ports on the listen address (kept alive)"

    def describe(self) -> str:
        specs = room_forward_specs(self.settings, self.people, self.context)
        return "\n".join("$ " + " ".join(s.argv) for s in specs)

    def execute(self, ctx: KindContext) -> None:
        stop_room_forwards(self.room_dir)  # a second `room up` replaces the first supervisor
        spec_path = self.room_dir / "forwards.spec.json"
        forwarder.write_spec(
            spec_path, room_forward_specs(self.settings, self.people, self.context)
        )
        pid = forwarder.start_detached(spec_path, self.room_dir / "forwards.log")
        _write_json(self.room_dir / "forwards.json", [pid])


def stop_room_forwards(room_dir: Path) -> None:
    stop_pids(_read_json(room_dir / "forwards.json") or [])
    with contextlib.suppress(FileNotFoundError):
        (room_dir / "forwards.json").unlink()


@dataclass
class ApplyKeycloak:
    realm_file: Path
    people: list[Learner]
    title: str = "Apply the room's Keycloak"

    def describe(self) -> str:
        docs = render_keycloak([])
        for doc in docs:
            if doc["kind"] == "Secret":
                doc["data"] = {
                    f"realm-{p.realm}.json": f"<{self.realm_file} as realm {p.realm}>"
                    for p in self.people
                }
        return plan.to_yaml(docs)

    def execute(self, ctx: KindContext) -> None:
        from lab.backends.kind import apply_documents

        realm = json.loads(self.realm_file.read_text())
        realms = [
            room_realm(realm, p, room_plan.learner_settings(ctx.settings, p.number).endpoints)
            for p in self.people
        ]
        docs = render_keycloak(realms, room_plan.ROOM_PORT_BASE, ctx.settings.host)
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
        self,
        settings: Settings,
        context: str | None = None,
        dry_run: bool = False,
        listen: str | None = None,
    ) -> None:
        home = settings.home.resolve()
        recorded = _read_json(home / "room" / ROOM_RECORD) or {}
        #: The one address learners' laptops reach; every learner URL and issuer names it.
        self.listen = room_plan.check_listen_address(
            listen or recorded.get("listen") or settings.host
        )
        self.settings = replace(settings, home=home, host=self.listen)
        if context is not None:
            self.context, self.creates_cluster = context, False
        elif recorded.get("context"):
            self.context = str(recorded["context"])
            self.creates_cluster = bool(recorded.get("created_cluster"))
        else:
            self.context, self.creates_cluster = plan.kube_context(), True
        self.dry_run = dry_run

    @property
    def room_dir(self) -> Path:
        return self.settings.home / "room"

    def learner_home(self, learner: Learner) -> Path:
        return self.room_dir / learner.name

    def plan_up(self, count: int, image: str | None = None) -> list[Action]:
        people = learners(count)
        tag = image or plan.image_tag()
        actions: list[Action] = []
        if self.creates_cluster:
            # One mapping-free cluster would do, but reusing the lab's config keeps one cluster.
            config = room_plan.room_kind_config(self.listen)
            actions.append(CreateCluster(config, self.room_dir / "kind-cluster.yaml"))
        actions.append(BuildImage(tag))
        if self.creates_cluster:
            actions.append(LoadImage(tag, plan.CLUSTER_NAME))
        actions.append(ApplyKeycloak(plan.REALM_FILE, people))
        for learner in people:
            keys_dir = replace(self.settings, home=self.learner_home(learner)).keys_dir
            actions += [EnsureKeys(keys_dir), ApplyLearner(self.settings, learner, keys_dir, tag)]
        actions.append(WaitRollout(ROOM_NAMESPACE, ("lab-keycloak",)))
        actions += [WaitRollout(learner.namespace) for learner in people]
        actions.append(StartRoomForwards(self.settings, people, self.context, self.room_dir))
        return actions

    def describe(self, actions: Sequence[Action]) -> str:
        blocks = [f"## {n}. {a.title}\n{a.describe()}" for n, a in enumerate(actions, start=1)]
        head = f"# room plan (context {self.context}, listen address {self.listen})"
        return head + "\n\n" + "\n\n".join(blocks) + "\n"

    def up(self, count: int) -> list[dict[str, Any]]:
        """Create or update the room; returns one record per learner (namespace, user, commands)."""
        actions = self.plan_up(count)
        api: Any = None
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
            api = ctx.api_client
            self.write_record(count)
        records = []
        for learner in learners(count):
            record: dict[str, Any] = {
                "learner": learner.name,
                "namespace": learner.namespace,
                "realm": learner.realm,
                "username": learner.username,
                "password": LEARNER_PASSWORD,
                "ports": room_plan.learner_ports(self.settings, learner.number),
                "port_forward": port_forward_commands(self.settings, learner, self.context),
            }
            if api is not None:
                access = learner_kubeconfig(api, self.context, learner.namespace)
                record["join_bundle"] = str(self.write_join_bundle(learner, access))
            records.append(record)
        return records

    def write_record(self, count: int) -> None:
        record = {
            "listen": self.listen,
            "context": self.context,
            "created_cluster": self.creates_cluster,
            "learners": count,
        }
        _write_json(self.room_dir / ROOM_RECORD, record)

    def join_bundle_path(self, learner: Learner) -> Path:
        return self.learner_home(learner) / "join.json"

    def write_join_bundle(
        self,
        learner: Learner,
        kubeconfig: dict[str, Any] | None = None,
    ) -> Path:
        """The file the learner passes to ``lab room join`` (their admin key and token: 0600)."""
        from lab.backends import room_join
        from lab.config import ADMIN_PRINCIPAL

        keys = replace(self.settings, home=self.learner_home(learner))
        bundle = room_join.make_bundle(
            self.settings,
            learner.number,
            learner.namespace,
            self.context,
            learner.username,
            LEARNER_PASSWORD,
            keys.key_file(ADMIN_PRINCIPAL).read_bytes(),
            kubeconfig,
            {name: keys.key_file(name).read_bytes() for name in room_join.BUNDLE_SERVICE_KEYS},
        )
        path = self.join_bundle_path(learner)
        room_join.write_bundle(path, bundle)
        return path

    def status(self) -> list[dict[str, Any]]:
        """Each learner namespace with the last step they verified (None until one is)."""
        from kubernetes import client

        return status_rows(client.CoreV1Api(kube_api_client(self.context)))

    def plan_down(self) -> list[str]:
        """What ``lab room down`` does, in order (``--dry-run`` prints it)."""
        steps = [f"stop the room's port-forward supervisor ({self.room_dir / 'forwards.json'})"]
        if self.creates_cluster:
            steps.append("$ " + " ".join(plan.kind_delete_command()))
        else:
            steps.append(
                f"delete namespaces {LEARNER_PREFIX}NN (every learner) and {ROOM_NAMESPACE} "
                f"(context {self.context}); the cluster stays"
            )
        steps.append(f"$ rm -f {self.room_dir / ROOM_RECORD}")
        return steps

    def down(self) -> list[str]:
        """Remove the room: forwards, then the kind cluster it made or its namespaces only."""
        if self.dry_run:
            return self.plan_down()
        stop_room_forwards(self.room_dir)
        removed: list[str] = []
        if self.creates_cluster:
            run_command(plan.kind_delete_command())
            removed.append(f"kind cluster {plan.CLUSTER_NAME}")
        else:
            api = kube_api_client(self.context)
            names = [row["namespace"] for row in self.status()] + [ROOM_NAMESPACE]
            for name in names:
                delete_namespace(api, name)
            removed += names
        with contextlib.suppress(FileNotFoundError):
            (self.room_dir / ROOM_RECORD).unlink()
        return removed

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
        ctx._api = api
        run_actions(actions, ctx, retain=True)
        # A new namespace has a new token: the learner needs their new join.json.
        for person in people:
            access = learner_kubeconfig(api, self.context, person.namespace)
            self.write_join_bundle(person, access)
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


def learner_kubeconfig(
    api: Any, context: str, namespace: str, timeout_s: float = 60.0
) -> dict[str, Any]:
    """A kubeconfig for one learner: the room's API server, their namespace, their token only.

    The server URL is the one the instructor's own context uses (for a room kind made, the
    listen address and ``ROOM_API_PORT``); the token and CA come from the learner's
    service-account token Secret, which the token controller fills shortly after apply.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout_s
    while True:
        secret: Any = core.read_namespaced_secret(room_plan.LEARNER_TOKEN_SECRET, namespace)
        data = secret.data or {}
        if data.get("token") and data.get("ca.crt"):
            break
        if time.monotonic() > deadline:
            raise BackendError(
                f"the token of {namespace}/{room_plan.LEARNER_ACCOUNT} was never issued",
                f"check `kubectl -n {namespace} describe secret {room_plan.LEARNER_TOKEN_SECRET}`",
            )
        time.sleep(1.0)
    return kubeconfig_document(
        server=str(api.configuration.host),
        ca_data=str(data["ca.crt"]),
        token=base64.b64decode(data["token"]).decode(),
        namespace=namespace,
        context=context,
    )


def kubeconfig_document(
    server: str, ca_data: str, token: str, namespace: str, context: str
) -> dict[str, Any]:
    """A kubeconfig (v1 Config) with one cluster, one token user and one context."""
    user = f"{room_plan.LEARNER_ACCOUNT}@{namespace}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": context, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": user, "namespace": namespace}}
        ],
        "current-context": context,
    }


def status_rows(core: Any) -> list[dict[str, Any]]:
    """One row per learner namespace: phase and the progress their ``lab`` recorded."""
    selector = f"{plan.PART_OF_KEY}={plan.LAB_LABEL[plan.PART_OF_KEY]}"
    namespaces: list[Any] = core.list_namespace(label_selector=selector).items
    maps: list[Any] = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.name={PROGRESS_CONFIGMAP}", label_selector=selector
    ).items
    progress = {cm.metadata.namespace: dict(cm.data or {}) for cm in maps}
    rows = []
    for ns in namespaces:
        name = ns.metadata.name
        if not name.startswith(LEARNER_PREFIX):
            continue
        data = progress.get(name, {})
        rows.append(
            {
                "learner": parse_learner(name).name,
                "namespace": name,
                "phase": ns.status.phase if ns.status else None,
                "last_verified_step": _int_or_none(data.get("last_verified_step")),
                "last_verified_slug": data.get("last_verified_slug"),
                "highest_verified_step": _int_or_none(data.get("highest_verified_step")),
                "verified_at": data.get("verified_at"),
            }
        )
    return sorted(rows, key=lambda row: row["namespace"])


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def record_verified_step(core: Any, namespace: str, step: int, slug: str, now: float) -> None:
    """Write the learner's last verified step (and the highest so far) into their progress
    ConfigMap; ``core`` is a CoreV1Api built from the learner's own namespaced token."""
    current: Any = core.read_namespaced_config_map(PROGRESS_CONFIGMAP, namespace)
    data = dict(current.data or {})
    highest = max(step, _int_or_none(data.get("highest_verified_step")) or 0)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    body = {
        "data": {
            "last_verified_step": str(step),
            "last_verified_slug": slug,
            "highest_verified_step": str(highest),
            "verified_at": stamp,
        }
    }
    core.patch_namespaced_config_map(PROGRESS_CONFIGMAP, namespace, body)
