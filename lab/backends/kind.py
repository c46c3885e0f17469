"""The kind backend: the same parts as containers on a kind cluster, Keycloak as the real IdP.

Bring-up is an ordered list of small :class:`Action` objects, the way kind's own ``create``
runs actions: each has ``describe()`` (what ``--dry-run`` prints) and ``execute(ctx)``. If one
fails, what this run created (cluster, Keycloak container) is removed again unless
``retain`` is set (``LAB_KIND_RETAIN=1``), so a half-built lab never lingers.

Every endpoint ends up on 127.0.0.1 at the embedded backend's ports: the PDP, document API and
MCP server through NodePorts that kind maps to the host (``extraPortMappings`` with
``listenAddress: 127.0.0.1``), Keycloak as a docker container published on 127.0.0.1:9090.
With ``--context``/``--namespace`` the lab deploys onto an existing cluster instead and
reaches the parts through ``kubectl port-forward`` processes it starts and records.

Daemon clients (docker SDK, kubernetes client) are imported only when an action needs them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from lab.backends import forwarder, versions
from lab.backends import kind_plan as plan
from lab.backends.base import (
    PART_NAMES,
    BackendError,
    BackendNotRunning,
    BackendStatus,
    DoctorCheck,
    PartStatus,
    Progress,
)
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, Endpoints, Settings

#: How long each wait may take before the backend gives up with a fix.
KEYCLOAK_TIMEOUT_S = 180.0
ROLLOUT_TIMEOUT_S = 240.0
HEALTH_TIMEOUT_S = 60.0
POLL_S = 1.0

#: Local keys the lab needs (contracts §1); the PDP's signing key is made here too, so the
#: Secret can carry it and a PDP restart keeps the same ``kid``.
LOCAL_KEYS: tuple[tuple[str, str], ...] = (
    (plan.PDP_KEY, "ES256"),
    (ADMIN_PRINCIPAL, "ES256"),
    (MCP_PRINCIPAL, "ES256"),
    (AGENT_PRINCIPAL, "ES256"),
)

#: Which settings port a learner-facing ``kubectl port-forward`` serves, per Service (context mode).
PORT_FORWARDS: dict[str, tuple[str, ...]] = {
    "lab-pdp": ("zms", "zts"),
    "lab-docapi": ("docapi_protected", "docapi_unprotected"),
    "lab-mcpserver": ("mcp",),
}


class Runner(Protocol):
    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]: ...


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a CLI (kind, kubectl); failures become a BackendError naming the command."""
    try:
        return subprocess.run(list(argv), check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise BackendError(f"`{argv[0]}` is not installed", _INSTALL_FIX[argv[0]]) from None
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
        raise BackendError(
            f"`{' '.join(argv)}` failed: {' / '.join(tail) or f'exit {exc.returncode}'}",
            "run `lab --backend kind doctor`; rerun with LAB_KIND_RETAIN=1 to inspect the cluster",
        ) from None


_INSTALL_FIX = {
    "docker": "install Docker Engine with your OS package manager (or Docker Desktop) and start it",
    "kind": f"install the kind {versions.KIND_VERSION} release binary for your OS from the kind "
    "project's GitHub releases page, or with your OS package manager (e.g. `brew install kind`)",
    "kubectl": f"install kubectl {versions.KUBECTL_VERSION} (within one minor of the cluster) from "
    "the Kubernetes project's release binaries or your OS package manager",
}


# --------------------------------------------------------------------------------------------
# Context shared by the actions


@dataclass
class KindContext:
    """What every action may use: settings, target, clients (made on first use), progress."""

    settings: Settings
    kube_context: str
    namespace: str
    create_cluster: bool
    progress: Progress
    run: Runner = run_command
    image: str = ""
    #: What this run created, undone in reverse order when a later action fails.
    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    _docker: Any = None
    _api: Any = None

    @property
    def docker(self) -> Any:
        if self._docker is None:
            self._docker = docker_client()
        return self._docker

    @property
    def api_client(self) -> Any:
        if self._api is None:
            self._api = kube_api_client(self.kube_context)
        return self._api


def docker_client() -> Any:
    """A docker SDK client that answered ``ping``; else a BackendError with the fix."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise BackendError(
            f"no Docker engine answers ({_short(exc)})",
            "start Docker (Docker Desktop, or `sudo systemctl start docker`), check DOCKER_HOST, "
            "or use the embedded backend: `lab up` without --backend kind",
        ) from None
    return client


def kube_api_client(context: str, config_file: str | None = None) -> Any:
    """A client for ``context`` (from ``config_file``, e.g. a room learner's own kubeconfig)."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=config_file, context=context)
    except (ConfigException, OSError) as exc:
        raise BackendError(
            f"kubeconfig has no usable context {context!r} ({_short(exc)})",
            "check `kubectl config get-contexts`; kind writes `kind-idjag-lab` when it creates "
            "the cluster",
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Actions


class Action(Protocol):
    title: str

    def describe(self) -> str: ...

    def execute(self, ctx: KindContext) -> None: ...


@dataclass
class EnsureKeys:
    keys_dir: Path
    title: str = "Generate service keys"

    def describe(self) -> str:
        names = ", ".join(f"{p}.pem" for p, _ in LOCAL_KEYS)
        return f"create if missing (0600, lab.oauth.jose): {self.keys_dir}/{{{names}}}"

    def execute(self, ctx: KindContext) -> None:
        ensure_local_keys(self.keys_dir)


@dataclass
class CreateCluster:
    config: dict[str, Any]
    config_path: Path
    title: str = "Create kind cluster"

    def describe(self) -> str:
        command = " ".join(plan.kind_create_command(self.config_path, self.config["name"]))
        return (
            f"reuse cluster {self.config['name']!r} if `kind get clusters` lists it, else\n"
            f"$ {command}\n# {self.config_path}:\n{plan.to_yaml([self.config])}"
        )

    def execute(self, ctx: KindContext) -> None:
        name = self.config["name"]
        listed = ctx.run(["kind", "get", "clusters"]).stdout.split()
        if name in listed:
            return
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(plan.to_yaml([self.config]))
        ctx.undo.append(
            (f"delete cluster {name}", lambda: _discard(ctx.run(plan.kind_delete_command(name))))
        )
        ctx.run(plan.kind_create_command(self.config_path, name))


@dataclass
class BuildImage:
    tag: str
    title: str = "Build the lab image"

    def describe(self) -> str:
        return plan.image_build(self.tag).describe()

    def execute(self, ctx: KindContext) -> None:
        from docker.errors import BuildError

        call = plan.image_build(self.tag)
        try:
            ctx.docker.images.build(**call.kwargs)
        except BuildError as exc:
            raise BackendError(
                f"building {self.tag} failed: {_short(exc)}",
                "run `docker build .` in the repository to see the full log",
            ) from None
        ctx.image = self.tag


@dataclass
class LoadImage:
    tag: str
    cluster: str
    title: str = "Load the image into kind"

    def describe(self) -> str:
        return "$ " + " ".join(plan.kind_load_command(self.tag, self.cluster))

    def execute(self, ctx: KindContext) -> None:
        ctx.run(plan.kind_load_command(self.tag, self.cluster))


@dataclass
class StartKeycloak:
    call: plan.DockerCall
    title: str = "Start Keycloak"

    def describe(self) -> str:
        return f"$ {plan.docker_run_command(self.call)}\n# = {self.call.describe()}"

    def execute(self, ctx: KindContext) -> None:
        from docker.errors import APIError, NotFound

        kwargs = dict(self.call.kwargs)
        if not Path(next(iter(kwargs["volumes"]))).is_file():
            raise BackendError(
                f"the realm file {plan.REALM_FILE} is missing", "run from a full lab checkout"
            )
        try:
            existing = ctx.docker.containers.get(kwargs["name"])
        except NotFound:
            existing = None
        if existing is not None:
            if existing.status == "running" and existing.image.tags[:1] == [kwargs["image"]]:
                return
            existing.remove(force=True)
        if kwargs.get("network") is None:
            kwargs.pop("network", None)  # existing cluster: pods reach it through the host
        try:
            ctx.docker.containers.run(**kwargs)
        except APIError as exc:
            raise BackendError(
                f"cannot start Keycloak: {_short(exc)}",
                f"is port {ctx.settings.ports['idp']} busy? set LAB_IDP_PORT to another port",
            ) from None
        ctx.undo.append(("remove Keycloak", lambda: remove_keycloak(ctx.docker)))


@dataclass
class WaitKeycloak:
    url: str
    timeout_s: float = KEYCLOAK_TIMEOUT_S
    title: str = "Wait for Keycloak"

    def describe(self) -> str:
        return f"GET {self.url} until 200 (at most {self.timeout_s:.0f} s)"

    def execute(self, ctx: KindContext) -> None:
        ctx.progress("idp", "starting", "Keycloak is importing the realm")
        if not wait_http_ok(self.url, self.timeout_s):
            ctx.progress("idp", "failed", f"no answer at {self.url}")
            raise BackendError(
                f"Keycloak did not become ready within {self.timeout_s:.0f} s",
                f"see `docker logs {plan.KEYCLOAK_CONTAINER}`",
            )
        ctx.progress("idp", "healthy", self.url)


@dataclass
class ApplyManifests:
    options: plan.RenderOptions
    settings: Settings
    title: str = "Apply manifests"

    def describe(self) -> str:
        docs = plan.render_namespace(self.settings, replace(self.options, keys=None))
        return "server-side apply (field manager idjag-lab):\n" + plan.to_yaml(plan.redact(docs))

    def execute(self, ctx: KindContext) -> None:
        keys = plan.read_keys(self.settings.keys_dir)
        docs = plan.render_namespace(
            self.settings, replace(self.options, image=ctx.image or self.options.image, keys=keys)
        )
        apply_documents(ctx.api_client, docs)


@dataclass
class WaitRollout:
    namespace: str
    deployments: tuple[str, ...] = tuple(plan.DEPLOYMENT_PARTS)
    timeout_s: float = ROLLOUT_TIMEOUT_S
    title: str = "Wait for rollout"

    def describe(self) -> str:
        names = ", ".join(self.deployments)
        return f"wait until Deployments {names} in {self.namespace} are available"

    def execute(self, ctx: KindContext) -> None:
        wait_rollout(ctx.api_client, self.namespace, self.deployments, ctx.progress, self.timeout_s)


@dataclass
class StartPortForwards:
    """Existing cluster only: learner-facing ports through ``kubectl port-forward``, kept alive
    by a detached supervisor (lab.backends.forwarder) across PDP restarts."""

    namespace: str
    context: str
    settings: Settings
    title: str = "Forward ports to the learner-facing host (LAB_HOST)"

    def describe(self) -> str:
        lines = [
            "$ " + " ".join(spec.argv) + "   # kept alive; probe " + str(spec.probe)
            for spec in self.specs()
        ]
        return "\n".join(lines)

    def commands(self) -> list[list[str]]:
        return [list(spec.argv) for spec in self.specs()]

    def specs(self) -> list[forwarder.ForwardSpec]:
        return forward_specs(self.settings, self.context, self.namespace)

    def execute(self, ctx: KindContext) -> None:
        home = ctx.settings.home
        spec_path = home / "kind-port-forwards.spec.json"
        forwarder.write_spec(spec_path, self.specs())
        pid = forwarder.start_detached(spec_path, ctx.settings.logs_dir / "kind-port-forward.log")
        ctx.undo.append(("stop port-forwards", lambda: stop_pids([pid])))
        _write_json(home / "kind-port-forwards.json", [pid])


def forward_specs(
    settings: Settings, context: str, namespace: str, kubeconfig: str | None = None
) -> list[forwarder.ForwardSpec]:
    """One ``kubectl port-forward`` per Service, on LAB_HOST, with the health URL through it."""
    base = ["kubectl", "--context", context]
    if kubeconfig:
        base += ["--kubeconfig", kubeconfig]
    base += ["-n", namespace, "port-forward", "--address", settings.host]
    health = health_urls(settings.endpoints)
    probes = {
        "lab-pdp": health["zts"],
        "lab-docapi": health["docapi_protected"],
        "lab-mcpserver": health["mcp"],
    }
    return [
        forwarder.ForwardSpec(
            f"{namespace}/{service}",
            (*base, f"svc/{service}", *(str(settings.ports[part]) for part in parts)),
            probes[service],
        )
        for service, parts in PORT_FORWARDS.items()
    ]


def signal_forwarders(home: Path, sig: int = signal.SIGHUP) -> bool:
    """Tell the recorded forward supervisor to re-establish its forwards now; False if none."""
    pids = _read_json(home / "kind-port-forwards.json") or []
    sent = False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), sig)
            sent = True
    return sent


@dataclass
class WaitHealthy:
    endpoints: Endpoints
    timeout_s: float = HEALTH_TIMEOUT_S
    title: str = "Check every endpoint where the learner reaches it"

    def describe(self) -> str:
        return "\n".join(f"GET {url}" for url in health_urls(self.endpoints).values())

    def execute(self, ctx: KindContext) -> None:
        for part, url in health_urls(self.endpoints).items():
            if not wait_http_ok(url, self.timeout_s):
                ctx.progress(part, "failed", f"no answer at {url}")
                raise BackendError(
                    f"{part} does not answer at {url}",
                    "see `lab --backend kind logs`; is another process on that port?",
                )
            ctx.progress(part, "healthy", url)


@dataclass
class WriteRuntime:
    path: Path
    record: dict[str, Any]
    title: str = "Record endpoints"

    def describe(self) -> str:
        return f"write {self.path}:\n{json.dumps(self.record, indent=2)}"

    def execute(self, ctx: KindContext) -> None:
        _write_json(self.path, self.record)


# --------------------------------------------------------------------------------------------
# The backend


class KindBackend:
    """The lab on kind (or on an existing cluster with ``context``/``namespace``), contracts §9."""

    name = "kind"

    def __init__(
        self,
        settings: Settings,
        context: str | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
        retain: bool | None = None,
        run: Runner = run_command,
    ) -> None:
        self.settings = replace(settings, home=settings.home.resolve())
        recorded = read_runtime(self.settings) or {}
        self.context = context or recorded.get("context") or plan.kube_context()
        #: kind is created (and deleted) only when no existing cluster was named.
        self.creates_cluster = (context or recorded.get("context")) in (None, plan.kube_context())
        if recorded.get("room_learner") and context is None:
            # A learner joined a room: the cluster is the instructor's; `lab down` must not
            # delete it (nor Keycloak), only ever touch this learner's namespace.
            self.creates_cluster = False
        self.namespace = namespace or recorded.get("namespace") or plan.NAMESPACE
        #: A room learner's own kubeconfig (their namespace's token only), from the join bundle.
        self.kubeconfig: str | None = recorded.get("kubeconfig") if context is None else None
        self.room_learner: str | None = recorded.get("room_learner") if context is None else None
        self.dry_run = dry_run
        self.retain = retain if retain is not None else os.environ.get("LAB_KIND_RETAIN") == "1"
        self.run = run
        self.last_plan: str = ""

    def _api(self) -> Any:
        return kube_api_client(self.context, self.kubeconfig)

    # ------------------------------------------------------------------ plan

    def render_options(self, image: str) -> plan.RenderOptions:
        if self.creates_cluster:
            idp_target = f"{plan.KEYCLOAK_CONTAINER}:{plan.KEYCLOAK_HTTP_PORT}"
        else:  # Keycloak runs beside the cluster, on the learner's machine
            idp_target = f"host.docker.internal:{self.settings.ports['idp']}"
        return plan.RenderOptions(
            namespace=self.namespace,
            image=image,
            idp_target=idp_target,
            expose=self.creates_cluster,
        )

    def plan(self, image: str | None = None) -> list[Action]:
        """The ordered bring-up; ``image`` defaults to the content-derived tag (reads files)."""
        tag = image or plan.image_tag()
        settings = self.settings
        actions: list[Action] = [EnsureKeys(settings.keys_dir)]
        if self.creates_cluster:
            actions.append(
                CreateCluster(plan.kind_config(settings), settings.home / "kind-cluster.yaml")
            )
        actions.append(BuildImage(tag))
        if self.creates_cluster:
            actions.append(LoadImage(tag, plan.CLUSTER_NAME))
        actions += [
            StartKeycloak(
                plan.keycloak_run(
                    settings, network=plan.KIND_NETWORK if self.creates_cluster else None
                )
            ),
            WaitKeycloak(plan.keycloak_ready_url(settings)),
            ApplyManifests(self.render_options(tag), settings),
            WaitRollout(self.namespace),
        ]
        if not self.creates_cluster:
            actions.append(StartPortForwards(self.namespace, self.context, settings))
        actions += [
            WaitHealthy(settings.endpoints),
            WriteRuntime(settings.runtime_file, self.runtime_record(tag)),
        ]
        return actions

    def describe_plan(self, image: str | None = None) -> str:
        """Everything ``lab --backend kind up --dry-run`` shows: no daemon is touched."""
        header = [f"# kind backend plan (context {self.context}, namespace {self.namespace})"]
        header += [f"#   {name}: {value}" for name, value in versions.pinned().items()]
        blocks = [
            f"## {n}. {action.title}\n{action.describe()}"
            for n, action in enumerate(self.plan(image), start=1)
        ]
        return "\n".join(header) + "\n\n" + "\n\n".join(blocks) + "\n"

    def runtime_record(self, image: str) -> dict[str, Any]:
        return {
            "pid": None,
            "backend": "kind",
            "endpoints": self.settings.endpoints.as_dict(),
            "ports": dict(self.settings.ports),
            "context": self.context,
            "namespace": self.namespace,
            "cluster": plan.CLUSTER_NAME if self.creates_cluster else None,
            "keycloak_container": plan.KEYCLOAK_CONTAINER,
            "image": image,
            "started": time.time(),
        }

    # ------------------------------------------------------------------ lifecycle

    def up(self, progress: Progress | None = None) -> Endpoints:
        """Run the plan (or, with ``dry_run``, only describe it in ``last_plan``)."""
        if self.dry_run:
            self.last_plan = self.describe_plan()
            return self.settings.endpoints
        report = _PartProgress(progress or _no_progress)
        ctx = KindContext(
            self.settings, self.context, self.namespace, self.creates_cluster, report, run=self.run
        )
        run_actions(self.plan(), ctx, retain=self.retain, announce=report.action_started)
        return self.settings.endpoints

    def down(self) -> None:
        """Remove the cluster (or the namespace) and Keycloak. Idempotent, like ``rm -f``."""
        if self.dry_run:
            self.last_plan = self.describe_down()
            return
        recorded = read_runtime(self.settings)
        stop_pids(_read_json(self.settings.home / "kind-port-forwards.json") or [])
        if self.room_learner:
            # The namespace and the cluster are the instructor's (`lab room reset`/`down`);
            # leaving only forgets the room on this laptop.
            forget_kind_runtime(self.settings)
            with contextlib.suppress(FileNotFoundError):
                (self.settings.home / room_join_kubeconfig_name()).unlink()
            return
        if self.creates_cluster:
            # kind's own delete is idempotent; without kind and without a record, nothing of
            # ours can exist, so there is nothing to delete (rm -f semantics).
            if recorded is not None or shutil.which("kind") is not None:
                self.run(plan.kind_delete_command())
        else:
            delete_namespace(self._api(), self.namespace)
        with contextlib.suppress(BackendError):
            remove_keycloak(docker_client())
        forget_kind_runtime(self.settings)
        with contextlib.suppress(FileNotFoundError):
            (self.settings.home / "kind-port-forwards.json").unlink()

    def describe_down(self) -> str:
        first = (
            "$ " + " ".join(plan.kind_delete_command())
            if self.creates_cluster
            else f"delete namespace {self.namespace} (context {self.context})"
        )
        keycloak = f"$ docker rm -f {plan.KEYCLOAK_CONTAINER}"
        return f"{first}\n{keycloak}\n$ rm -f {self.settings.runtime_file}\n"

    def status(self) -> BackendStatus:
        record = read_runtime(self.settings)
        if record is None:
            return BackendStatus(
                self.name, running=False, detail="not started (`lab --backend kind up`)"
            )
        endpoints = Endpoints.from_dict(record["endpoints"])
        parts = tuple(check_part(part, url) for part, url in health_urls(endpoints).items())
        detail = f"context {record.get('context')}, namespace {record.get('namespace')}"
        return BackendStatus(self.name, running=True, parts=parts, detail=detail)

    def endpoints(self) -> Endpoints:
        return self.endpoints_in(read_runtime(self.settings))

    def endpoints_in(self, runtime: Any) -> Endpoints:
        record = kind_record(runtime)
        if record is None:
            raise BackendNotRunning(self.name)
        return Endpoints.from_dict(record["endpoints"])

    def collect_logs(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        written = collect_pod_logs(self._api(), self.namespace, dest)
        with contextlib.suppress(BackendError):
            written += collect_keycloak_log(docker_client(), dest)
        return written

    def doctor(self) -> list[DoctorCheck]:
        return kind_doctor()

    def record_verified_step(self, number: int, slug: str) -> bool:
        """A joined room learner's passed step goes to their progress ConfigMap (for the
        instructor's ``lab room status``); False when this lab is not in a room."""
        if not self.room_learner:
            return False
        from kubernetes import client

        from lab.backends.room import record_verified_step

        record_verified_step(
            client.CoreV1Api(self._api()), self.namespace, number, slug, time.time()
        )
        return True

    # ------------------------------------------------------------------ providers

    def get_providers(self) -> list[dict[str, Any]]:
        self.endpoints()  # raises BackendNotRunning when down
        from kubernetes import client

        core = client.CoreV1Api(self._api())
        configmap = core.read_namespaced_config_map("lab-pdp-providers", self.namespace)
        data = json.loads((configmap.data or {}).get("providers.json", "[]"))
        return list(data) if isinstance(data, list) else []

    def set_providers(self, providers: list[dict[str, Any]]) -> None:
        """Edit the providers ConfigMap and restart the PDP, as one does with Athenz's ZTS.

        ``issuerUri`` must stay the browser-facing issuer (``http://127.0.0.1:9090/realms/idjag``,
        what Keycloak puts in ``iss``); ``jwksUri`` must be reachable from the PDP pod: either
        Keycloak's container name on the kind network or the same 127.0.0.1 URL, which the pod's
        forwarder sends to Keycloak (lab/backends/pod.py).
        """
        self.endpoints()
        from kubernetes import client

        api = self._api()
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        body = {"data": {"providers.json": json.dumps(providers, indent=2)}}
        core.patch_namespaced_config_map("lab-pdp-providers", self.namespace, body)
        restart_deployment(apps, "lab-pdp", self.namespace)
        wait_rollout(api, self.namespace, ("lab-pdp",), _no_progress, ROLLOUT_TIMEOUT_S)
        # The forward to the old pod is dead (or pinned to it): re-establish it now rather than
        # wait for the supervisor's probe to notice.
        signal_forwarders(self.settings.home)
        zts_health = health_urls(self.endpoints())["zts"]  # recorded ports (a room learner's)
        if not wait_http_ok(zts_health, HEALTH_TIMEOUT_S):
            raise BackendError("the PDP did not come back after the restart", "see `lab logs zts`")


def room_join_kubeconfig_name() -> str:
    from lab.backends.room_join import KUBECONFIG_FILE

    return KUBECONFIG_FILE


def _no_progress(part: str, state: str, detail: str) -> None:
    return None


def _discard(_value: object) -> None:
    return None


class _PartProgress:
    """Forwards part progress and, while a part is not healthy yet, names the running action."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.healthy: set[str] = set()

    def __call__(self, part: str, state: str, detail: str) -> None:
        if state == "healthy":
            self.healthy.add(part)
        self.progress(part, state, detail)

    def action_started(self, action: Action) -> None:
        for part in PART_NAMES:
            if part not in self.healthy:
                self.progress(part, "starting", action.title)


def run_actions(
    actions: Iterable[Action],
    ctx: KindContext,
    retain: bool = False,
    announce: Callable[[Action], None] | None = None,
) -> None:
    """Execute in order; on failure undo what this run created (unless ``retain``), re-raise."""
    try:
        for action in actions:
            if announce is not None:
                announce(action)
            action.execute(ctx)
    except BaseException:
        if not retain:
            for _what, undo in reversed(ctx.undo):
                with contextlib.suppress(Exception):
                    undo()
        raise


# --------------------------------------------------------------------------------------------
# Helpers that talk to daemons (kept small; each is one job)


def ensure_local_keys(keys_dir: Path) -> None:
    from lab.oauth.jose import ensure_private_key

    for principal, alg in LOCAL_KEYS:
        ensure_private_key(keys_dir / f"{principal}.pem", alg)


def apply_documents(api_client: Any, docs: Iterable[dict[str, Any]]) -> None:
    """Server-side apply, one object at a time, in file order (namespace first)."""
    from kubernetes import dynamic
    from kubernetes.client.exceptions import ApiException

    dyn = dynamic.DynamicClient(api_client)
    for doc in docs:
        resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            dyn.server_side_apply(
                resource,
                body=doc,
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                field_manager=plan.FIELD_MANAGER,
                force_conflicts=True,
            )
        except ApiException as exc:
            raise BackendError(
                f"applying {doc['kind']}/{doc['metadata']['name']} failed: {exc.reason}",
                "check `kubectl get events -n " + str(doc["metadata"].get("namespace")) + "`",
            ) from None


def deployment_ready(deployment: Any) -> bool:
    """Rolled out: the controller saw the latest spec and every replica is updated and available."""
    spec_replicas = deployment.spec.replicas or 0
    status = deployment.status
    return (
        (status.observed_generation or 0) >= (deployment.metadata.generation or 0)
        and (status.updated_replicas or 0) == spec_replicas
        and (status.available_replicas or 0) == spec_replicas
        and (status.replicas or 0) == spec_replicas
    )


def wait_rollout(
    api_client: Any, namespace: str, names: Sequence[str], progress: Progress, timeout_s: float
) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    pending = list(names)
    deadline = time.monotonic() + timeout_s
    while pending:
        for name in list(pending):
            if deployment_ready(apps.read_namespaced_deployment(name, namespace)):
                pending.remove(name)
                for part in plan.DEPLOYMENT_PARTS.get(name, ()):
                    progress(part, "starting", f"{name} rolled out")
        if pending and time.monotonic() > deadline:
            for name in pending:
                for part in plan.DEPLOYMENT_PARTS.get(name, ()):
                    progress(part, "failed", f"{name} not available")
            raise BackendError(
                f"Deployments {', '.join(pending)} in {namespace} did not become available "
                f"within {timeout_s:.0f} s",
                f"see `kubectl -n {namespace} describe pods` and `lab --backend kind logs`",
            )
        if pending:
            time.sleep(POLL_S)


def restart_deployment(apps: Any, name: str, namespace: str) -> None:
    """What ``kubectl rollout restart`` does: bump a pod-template annotation."""
    stamp = _dt.datetime.now(_dt.UTC).isoformat()
    body = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    apps.patch_namespaced_deployment(name, namespace, body)


def delete_namespace(api_client: Any, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api_client).delete_namespace(namespace)
    except ApiException as exc:
        if exc.status != 404:  # already gone is success (rm -f)
            raise BackendError(f"deleting namespace {namespace} failed: {exc.reason}") from None


def remove_keycloak(docker: Any) -> None:
    """Remove every container carrying the lab label (Keycloak); none is fine."""
    selector = f"{plan.PART_OF_KEY}={plan.LAB_LABEL[plan.PART_OF_KEY]}"
    for container in docker.containers.list(all=True, filters={"label": selector}):
        container.remove(force=True)


def collect_pod_logs(api_client: Any, namespace: str, dest: Path) -> list[Path]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    selector = f"{plan.PART_OF_KEY}={plan.LAB_LABEL[plan.PART_OF_KEY]}"
    written = []
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=selector).items
    for pod in pods:
        name = str(pod.metadata.name)
        with contextlib.suppress(ApiException):
            text = core.read_namespaced_pod_log(name, namespace)
            path = dest / f"{name}.log"
            path.write_text(text)
            written.append(path)
    return written


def collect_keycloak_log(docker: Any, dest: Path) -> list[Path]:
    from docker.errors import NotFound

    try:
        container = docker.containers.get(plan.KEYCLOAK_CONTAINER)
    except NotFound:
        return []
    path = dest / "keycloak.log"
    path.write_bytes(container.logs())
    return [path]


def stop_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# Health and runtime record (no daemon needed)


def health_urls(endpoints: Endpoints) -> dict[str, str]:
    """Each part's health URL on 127.0.0.1. Keycloak has no ``/healthz`` on its HTTP port, so
    the IdP counts as healthy when the realm's discovery document answers."""
    urls = {"idp": f"{endpoints.idp_issuer}/.well-known/openid-configuration"}
    for part, base in (("zms", endpoints.zms), ("zts", endpoints.zts), ("mcp", endpoints.mcp)):
        urls[part] = f"{_origin(base)}/healthz"
    urls["docapi_protected"] = f"{endpoints.docapi_protected}/healthz"
    urls["docapi_unprotected"] = f"{endpoints.docapi_unprotected}/healthz"
    return {part: urls[part] for part in PART_NAMES}


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_part(part: str, url: str) -> PartStatus:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return PartStatus(part, url, False, f"no answer ({type(exc).__name__})")
    return PartStatus(part, url, response.status_code == 200, f"HTTP {response.status_code}")


def wait_http_ok(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


def read_runtime(settings: Settings) -> dict[str, Any] | None:
    return kind_record(_read_json(settings.runtime_file))


def kind_record(data: Any) -> dict[str, Any] | None:
    """``data`` (a parsed runtime file) if the kind backend wrote it, else None."""
    if not isinstance(data, dict) or data.get("backend") != "kind" or "endpoints" not in data:
        return None
    return data


def forget_kind_runtime(settings: Settings) -> None:
    """Remove ``runtime.json`` unless the embedded backend wrote it. ``lab --backend kind down``
    used to delete it whatever it recorded, and an embedded lab running from the same LAB_HOME
    was orphaned: `lab down` no longer saw it, and `lab up` met its ports busy."""
    data = _read_json(settings.runtime_file)
    if isinstance(data, dict) and data.get("backend") == "embedded":
        return
    with contextlib.suppress(FileNotFoundError):
        settings.runtime_file.unlink()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Doctor


def kind_doctor(
    which: Callable[[str], str | None] = shutil.which, run: Runner = run_command
) -> list[DoctorCheck]:
    """docker (engine answers), kind and kubectl (installed, versions), plus the pinned images."""
    checks = [check_docker()]
    clis = (("kind", ["kind", "version"]), ("kubectl", ["kubectl", "version", "--client"]))
    for name, argv in clis:
        installed = check_cli(name, argv, which, run)
        checks.append(installed)
        if installed.ok:
            checks.append(tested_version_check(name, installed.detail))
    pins = ", ".join(f"{k} {v}" for k, v in versions.pinned().items())
    checks.append(DoctorCheck("kind backend versions", True, pins, required=False))
    return checks


def check_docker() -> DoctorCheck:
    try:
        client = docker_client()
    except BackendError as exc:
        return DoctorCheck("docker engine", False, exc.message, exc.fix)
    version = str(client.version().get("Version", "?"))
    return docker_version_check(version)


def docker_version_check(version: str) -> DoctorCheck:
    """An engine older than the tested minimum answers but may refuse what kind asks of it."""
    found = _version_tuple(version)
    if found is not None and found < (_version_tuple(versions.DOCKER_MIN_VERSION) or ()):
        return DoctorCheck(
            "docker engine",
            False,
            f"Docker Engine {version} answers; the lab is tested with "
            f"{versions.DOCKER_MIN_VERSION} or newer",
            f"upgrade Docker Engine to {versions.DOCKER_MIN_VERSION} or newer",
        )
    return DoctorCheck("docker engine", True, f"Docker Engine {version} answers")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    """``v0.29.0`` / ``Client Version: v1.33.1`` / ``27.3.1`` -> (0, 29, 0) …; None if absent."""
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def tested_version_check(name: str, detail: str) -> DoctorCheck:
    """The installed kind/kubectl against the tested release (a mismatch is a warning).

    kind supports only the node images its own release built (the pinned image carries that
    release's digest); kubectl is supported within one minor of the cluster (version skew policy).
    """
    found = _version_tuple(detail)
    if name == "kind":
        wanted = _version_tuple(versions.KIND_VERSION)
        ok = found is not None and found == wanted
        expect = f"kind {versions.KIND_VERSION}"
    else:
        wanted = _version_tuple(versions.KUBECTL_VERSION) or (0, 0)
        ok = found is not None and found[0] == wanted[0] and abs(found[1] - wanted[1]) <= 1
        expect = f"kubectl {versions.KUBECTL_VERSION} (within one minor)"
    if ok:
        return DoctorCheck(f"{name} version", True, f"{detail} (tested: {expect})", required=False)
    return DoctorCheck(
        f"{name} version",
        False,
        f"{detail or 'unknown version'}; the lab is tested with {expect}",
        _INSTALL_FIX[name],
        required=False,
    )


def check_cli(
    name: str, argv: list[str], which: Callable[[str], str | None], run: Runner
) -> DoctorCheck:
    if which(name) is None:
        return DoctorCheck(name, False, f"`{name}` is not on PATH", _INSTALL_FIX[name])
    try:
        output = run(argv).stdout.strip().splitlines()
    except BackendError as exc:
        return DoctorCheck(name, False, exc.message, _INSTALL_FIX[name])
    return DoctorCheck(name, True, output[0] if output else "installed")
