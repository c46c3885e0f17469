"""The lab's resettable state: snapshot, restore, baseline and per-step checkpoints.

Everything a step changes lives behind an HTTP API, so reset works the same on both backends:

| piece | read | write |
|---|---|---|
| PDP (ZMS) domains, roles, policies, services | ``GET {zms}/lab/state`` | ``PUT {zms}/lab/state`` |
| document API documents | ``GET {docapi_protected}/lab/state`` | ``PUT .../lab/state`` |
| MCP server settings | ``GET {mcp origin}/lab/settings`` | ``PUT .../lab/settings`` |
| trusted identity providers | ``backend.get_providers()`` | ``backend.set_providers()`` |
| the step engine's captures | ``$LAB_HOME/captures.json`` | same file |
| where this run's audit trail starts | ``$LAB_HOME/run.json`` | same file |

Each call carries a fresh admin assertion signed by ``user.athenz_admin`` (contracts §2).
A checkpoint is the snapshot taken after step N passed (``checkpoints/after-NN.json``);
``reset --to N`` restores the checkpoint after N-1, or the nearest earlier one and runs the steps
in between (fast-forward). Step results for ``lab steps`` live in ``$LAB_HOME/results.json``.

The PDP's audit trail is never reset: it is hash-chained and sealed, and a reset that deleted
records would be the very tampering step 17 teaches to detect. Instead every reset records where
the current run starts in the trail (``run.json``: the last ``seq`` before it); step 17 and
``lab audit`` show only the records after it, while ``lab audit --verify`` still checks the whole
trail. A reset to the baseline starts the run at the trail's end; a reset served by a checkpoint
takes the run start stored in that checkpoint, since the decisions that built the restored state
are part of this run's story.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lab.config import ADMIN_PRINCIPAL, Endpoints, Settings

if TYPE_CHECKING:
    from lab.backends.base import Backend
    from lab.oauth.jose import SigningKey

#: Documents the document API starts with (contracts §6).
DEFAULT_DOCS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "first default doc", "content": "hello world"},
    {"id": 2, "name": "second default doc", "content": "how are you?"},
)
DEFAULT_MCP_SETTINGS: dict[str, Any] = {"require_access": False}
STATE_TIMEOUT_S = 10.0
#: A checkpoint is not restored when a token among its captures expires within this margin (an
#: ID-JAG lives minutes): the next step would fail on it, so reset replays from an earlier state.
TOKEN_MARGIN_S = 60.0
#: Nor when it is older than this: a day-old room has moved on.
CHECKPOINT_MAX_AGE_S = 24 * 3600.0


class StateError(RuntimeError):
    """A part refused or failed a state read/write; ``fix`` says what to try."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass
class Snapshot:
    """Everything reset restores. Serialised as one JSON document per checkpoint."""

    zms: dict[str, Any]
    docapi: dict[str, Any]
    mcp: dict[str, Any]
    providers: list[dict[str, Any]] = field(default_factory=list)
    captures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "zms": self.zms,
            "docapi": self.docapi,
            "mcp": self.mcp,
            "providers": self.providers,
            "captures": self.captures,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            zms=dict(data["zms"]),
            docapi=dict(data["docapi"]),
            mcp=dict(data["mcp"]),
            providers=list(data.get("providers", [])),
            captures=dict(data.get("captures", {})),
        )


# ---------------------------------------------------------------------- files in $LAB_HOME


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def baseline_file() -> Path:
    """The PDP's starting data (written by the PDP part; same format as ``GET /lab/state``)."""
    return project_root() / "athenz" / "baseline.json"


def captures_file(settings: Settings) -> Path:
    return settings.home / "captures.json"


def results_file(settings: Settings) -> Path:
    return settings.home / "results.json"


def run_file(settings: Settings) -> Path:
    return settings.home / "run.json"


def load_run_start(settings: Settings) -> int:
    """The audit ``seq`` after which the current run's records start (0: the whole trail, for
    a lab never reset since its stores were made)."""
    data = _read_json(run_file(settings), {})
    value = data.get("audit_since") if isinstance(data, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def save_run_start(settings: Settings, audit_since: int) -> None:
    _write_json(
        run_file(settings),
        {
            "audit_since": audit_since,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


def forget_run_start(settings: Settings) -> None:
    """After ``lab reset --hard`` the trail starts again at seq 1: the old marker is void."""
    run_file(settings).unlink(missing_ok=True)


def checkpoint_file(settings: Settings, after_step: int) -> Path:
    return settings.checkpoints_dir / f"after-{after_step:02d}.json"


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return default


def _write_json(path: Path, data: Any) -> None:
    """Atomic write, 0600: checkpoints carry captured tokens.

    Compact: ``indent`` makes ``json`` use its pure-Python encoder, 4× the CPU of the C one, and
    `lab verify` writes ~2 MB of checkpoints and run records (issue #21). Programs read these
    files (`lab reset --to`, `lab ui`); `python -m json.tool` shows one to a person."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, sort_keys=True, default=str, separators=(",", ":")))
    tmp.replace(path)


def load_captures(settings: Settings) -> dict[str, Any]:
    """The engine's captures file as an opaque document (its format belongs to lab.steps)."""
    data = _read_json(captures_file(settings), {})
    return data if isinstance(data, dict) else {}


def save_captures(settings: Settings, document: Mapping[str, Any]) -> None:
    """Write the captures document back; it holds tokens, so 0600 like the keys."""
    path = captures_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(document), indent=2, default=str))
    os.chmod(path, 0o600)


def baseline(settings: Settings) -> Snapshot:
    """The state before step 1: baseline ZMS data, default docs, no providers, no captures."""
    path = baseline_file()
    zms = _read_json(path, None)
    if not isinstance(zms, dict):
        raise StateError(f"the PDP baseline {path} is missing or not JSON", "restore it from git")
    return Snapshot(
        zms=zms,
        docapi={"docs": [dict(d) for d in DEFAULT_DOCS]},
        mcp=dict(DEFAULT_MCP_SETTINGS),
    )


# ---------------------------------------------------------------------- HTTP with admin assertions


class StateClient:
    """Reads and writes each part's state over HTTP as ``user.athenz_admin``."""

    def __init__(self, settings: Settings, endpoints: Endpoints, backend: Backend) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.backend = backend
        self._key: SigningKey | None = None

    @contextlib.contextmanager
    def _client(self) -> Iterator[JsonClient]:
        client = JsonClient(timeout_s=STATE_TIMEOUT_S)
        try:
            yield client
        finally:
            client.close()

    def _admin_header(self, audience: str) -> dict[str, str]:
        from lab.oauth.admin import make_admin_assertion
        from lab.oauth.jose import SigningKey

        if self._key is None:
            self._key = SigningKey.load_or_create(self.settings.key_file(ADMIN_PRINCIPAL))
        return {
            "Authorization": f"Bearer {make_admin_assertion(ADMIN_PRINCIPAL, self._key, audience)}"
        }

    def _targets(self) -> dict[str, tuple[str, str]]:
        """piece -> (URL, admin audience) (contracts §2: ZMS uses its URL, others their origin)."""
        return {
            "zms": (f"{self.endpoints.zms}/lab/state", self.endpoints.zms),
            "docapi": (
                f"{self.endpoints.docapi_protected}/lab/state",
                _origin(self.endpoints.docapi_protected),
            ),
            "mcp": (f"{_origin(self.endpoints.mcp)}/lab/settings", _origin(self.endpoints.mcp)),
        }

    def _call(
        self, client: JsonClient, method: str, piece: str, body: Any = None
    ) -> dict[str, Any]:
        url, audience = self._targets()[piece]
        try:
            status, text = client.request(method, url, self._admin_header(audience), body)
        except OSError as exc:
            raise StateError(
                f"{piece} did not answer at {url} ({type(exc).__name__})",
                "check that the lab is up: `lab status`",
            ) from None
        if status >= 300:
            raise StateError(
                f"{method} {url} answered {status}: {text[:300]}",
                f"see `lab logs {piece}`",
            )
        try:
            data = json.loads(text)
        except ValueError:
            raise StateError(f"{method} {url} answered with a body that is not JSON") from None
        return data if isinstance(data, dict) else {"value": data}

    def _call_each(self, method: str, bodies: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The same call to each piece at once, one thread and connection each; the answers by
        piece, or the first piece's error in ``bodies``' order.

        The pieces are independent (their own stores), and a checkpoint after every step of
        `lab verify` and every `lab reset` wait for all of them: in turn, their latencies add
        up, and on a busy machine each is mostly waiting for a share of a core (issue #21)."""
        import threading

        if self._key is None:  # loaded once, before the threads sign with it
            self._admin_header(self.endpoints.zms)
        answers: dict[str, dict[str, Any]] = {}
        errors: dict[str, BaseException] = {}

        def call(piece: str) -> None:
            try:
                with self._client() as client:
                    answers[piece] = self._call(client, method, piece, bodies[piece])
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                errors[piece] = exc

        threads = [threading.Thread(target=call, args=(piece,)) for piece in bodies]
        for thread in threads[1:]:
            thread.start()
        call(next(iter(bodies)))  # the first in this thread: one thread fewer to start
        for thread in threads[1:]:
            thread.join()
        for piece in bodies:
            if piece in errors:
                raise errors[piece]
        return answers

    def snapshot(self) -> Snapshot:
        answers = self._call_each("GET", {"zms": None, "docapi": None, "mcp": None})
        return Snapshot(
            zms=answers["zms"],
            docapi=answers["docapi"],
            mcp=answers["mcp"],
            providers=self.backend.get_providers(),
            captures=load_captures(self.settings),
        )

    def audit_head(self) -> int:
        """The ``seq`` of the PDP's latest audit record (0 when the trail is empty)."""
        url = f"{self.endpoints.zms}/lab/audit?last=1"
        with self._client() as client:
            try:
                status, text = client.request("GET", url, self._admin_header(self.endpoints.zms))
            except OSError as exc:
                raise StateError(
                    f"the PDP did not answer at {url} ({type(exc).__name__})",
                    "check that the lab is up: `lab status`",
                ) from None
        if status != 200:
            raise StateError(f"GET {url} answered {status}: {text[:300]}", "see `lab logs pdp`")
        try:
            last_seq = json.loads(text).get("last_seq")
        except (ValueError, AttributeError):
            raise StateError(f"GET {url} answered with a body that is not JSON") from None
        return last_seq if isinstance(last_seq, int) else 0

    def restore(self, snapshot: Snapshot) -> None:
        pieces = {"zms": snapshot.zms, "docapi": snapshot.docapi, "mcp": snapshot.mcp}
        self._call_each("PUT", pieces)
        if self.backend.get_providers() != snapshot.providers:
            self.backend.set_providers(snapshot.providers)
        save_captures(self.settings, snapshot.captures)


class JsonClient:
    """JSON over one keep-alive connection per origin, with the standard library.

    ``lab reset`` is a command people run between steps, so its start-up counts: importing
    httpx (which pulls in its own CLI's rich and pygments) costs more than the three requests
    a reset makes (issue #21). Same rule as ``probe_part``: plain ``http.client`` on this path.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def request(
        self, method: str, url: str, headers: Mapping[str, str], body: Any = None
    ) -> tuple[int, str]:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        payload = None if body is None else json.dumps(body).encode()
        sent = {**headers, "Accept": "application/json"}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection = self._connection(parts.scheme, parts.hostname or "127.0.0.1", parts.port)
            try:
                connection.request(method, path or "/", body=payload, headers=sent)
                response = connection.getresponse()
                return response.status, response.read().decode("utf-8", "replace")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop(parts.scheme, parts.hostname or "127.0.0.1", parts.port)
                if attempt == 2:  # a kept-alive connection the server had closed: retry once
                    raise
            except http.client.HTTPException as exc:
                self._drop(parts.scheme, parts.hostname or "127.0.0.1", parts.port)
                raise OSError(str(exc)) from None
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        key = (scheme, host, port or (443 if scheme == "https" else 80))
        connection = self._connections.get(key)
        if connection is None:
            if scheme == "https":
                import ssl

                connection = http.client.HTTPSConnection(
                    host, key[2], timeout=self.timeout_s, context=ssl.create_default_context()
                )
            else:
                connection = http.client.HTTPConnection(host, key[2], timeout=self.timeout_s)
            self._connections[key] = connection
        return connection

    def _drop(self, scheme: str, host: str, port: int | None) -> None:
        key = (scheme, host, port or (443 if scheme == "https" else 80))
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# ---------------------------------------------------------------------- checkpoints and reset


def save_checkpoint(state: StateClient, after_step: int) -> Path:
    """Snapshot the lab as it is after ``after_step`` passed."""
    path = checkpoint_file(state.settings, after_step)
    document = {
        **state.snapshot().as_dict(),
        "taken": time.time(),
        "endpoints": state.endpoints.as_dict(),
        # Where the run that built this state starts in the audit trail (see the module doc).
        "audit_since": load_run_start(state.settings),
    }
    _write_json(path, document)
    return path


def load_checkpoint(
    settings: Settings,
    after_step: int,
    max_age_s: float | None = CHECKPOINT_MAX_AGE_S,
    endpoints: Endpoints | None = None,
) -> Snapshot | None:
    """The checkpoint after ``after_step``, or None if missing, unreadable, too old, or taken
    against other endpoints (its captured tokens and URLs name the old issuer and ports)."""
    data = _read_json(checkpoint_file(settings, after_step), None)
    if not isinstance(data, dict):
        return None
    if max_age_s is not None and time.time() - float(data.get("taken", 0)) > max_age_s:
        return None
    if _tokens_expire_soon(data.get("captures")):
        return None
    if endpoints is not None and data.get("endpoints") != endpoints.as_dict():
        return None
    try:
        return Snapshot.from_dict(data)
    except (KeyError, TypeError, ValueError):
        return None


def drop_checkpoints(settings: Settings, from_step: int = 0) -> None:
    """Forget checkpoints taken after ``from_step`` or later (they describe a future now undone)."""
    if not settings.checkpoints_dir.exists():
        return
    for path in settings.checkpoints_dir.glob("after-*.json"):
        with contextlib.suppress(ValueError):
            if int(path.stem.removeprefix("after-")) >= from_step:
                path.unlink()


def reset_to_baseline(state: StateClient) -> ResetOutcome:
    """Back to the state before step 1. Checkpoints survive: they are still valid snapshots."""
    return reset_to_step(state, 1)


#: ``run_step(number) -> passed`` — how reset fast-forwards through steps without a checkpoint.
StepRunner = Callable[[int], bool]


@dataclass(frozen=True)
class ResetOutcome:
    target: int  # the step the lab is now ready to run (1 = baseline)
    restored_from: int  # checkpoint used: state after this step (0 = baseline)
    replayed: tuple[int, ...] = ()  # steps run to fast-forward
    duration_ms: float = 0.0


def reset_to_step(
    state: StateClient, step: int, run_step: StepRunner | None = None
) -> ResetOutcome:
    """Put the lab in the state just before ``step`` (``step`` = 1 is the baseline).

    Uses the checkpoint after ``step - 1`` when there is one; otherwise restores the nearest
    earlier checkpoint (or the baseline) and runs the steps in between with ``run_step``, taking a
    checkpoint after each so the next reset is instant.
    """
    started = time.perf_counter()
    if step < 1:
        raise StateError(f"there is no step {step}", "steps are numbered from 1")
    source = _nearest_checkpoint(state, step - 1)
    # The outcomes after the restored point describe a state this reset undoes: forget them
    # first, so a reset stopped part-way (Ctrl-C, a failed replay) leaves no step shown as
    # passed on top of a lab that no longer holds it.
    clear_results(state.settings, from_step=source + 1)
    if source == 0:
        state.restore(baseline(state.settings))
        run_start = state.audit_head()
    else:
        snapshot = load_checkpoint(state.settings, source, endpoints=state.endpoints)
        assert snapshot is not None  # _nearest_checkpoint only returns loadable ones
        state.restore(snapshot)
        run_start = _checkpoint_run_start(state.settings, source)
    # Before any replay: the checkpoints the replay takes record this run start.
    save_run_start(state.settings, run_start)
    replayed: list[int] = []
    for number in range(source + 1, step):
        if run_step is None:
            raise StateError(
                f"there is no checkpoint after step {number} to reset to",
                f"run the steps first (`lab run --to {step - 1}`), then reset again",
            )
        if not run_step(number):
            raise StateError(
                f"step {number} failed while fast-forwarding to step {step}",
                f"run `lab step {number}` to see why, or `lab reset` to start over",
            )
        replayed.append(number)
        save_checkpoint(state, number)
    clear_results(state.settings, from_step=step)
    mark_restored(state.settings, up_to=source)
    return ResetOutcome(step, source, tuple(replayed), (time.perf_counter() - started) * 1000)


def _checkpoint_run_start(settings: Settings, after_step: int) -> int:
    """The run start a checkpoint recorded; 0 (the whole trail) for one taken before runs
    were recorded, so a restored step 17 still finds the decisions that built its state."""
    data = _read_json(checkpoint_file(settings, after_step), {})
    value = data.get("audit_since") if isinstance(data, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def _nearest_checkpoint(state: StateClient, at_most: int) -> int:
    for number in range(at_most, 0, -1):
        if load_checkpoint(state.settings, number, endpoints=state.endpoints) is not None:
            return number
    return 0


# ---------------------------------------------------------------------- step results


def load_results(settings: Settings) -> dict[int, dict[str, Any]]:
    """Last outcome per step: ``{number: {"status", "duration_ms", "at", "slug"}}``."""
    data = _read_json(results_file(settings), {})
    results: dict[int, dict[str, Any]] = {}
    if isinstance(data, dict):
        for key, value in data.get("steps", {}).items():
            with contextlib.suppress(ValueError):
                results[int(key)] = dict(value)
    return results


def record_result(
    settings: Settings, number: int, slug: str, status: str, duration_ms: float
) -> None:
    results = load_results(settings)
    results[number] = {
        "slug": slug,
        "status": status,
        "duration_ms": round(duration_ms, 1),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_results(settings, results)


def clear_results(settings: Settings, from_step: int = 1) -> None:
    """Forget outcomes of steps from ``from_step`` on: after a reset they have not run yet."""
    results = load_results(settings)
    kept = {n: r for n, r in results.items() if n < from_step}
    if kept != results:
        _write_results(settings, kept)


def mark_interrupted(settings: Settings, number: int, during: str = "reset") -> None:
    """Step ``number``, or the reset to it (``during``), was stopped part-way: the one
    interrupted outcome."""
    results = {n: r for n, r in load_results(settings).items() if r.get("status") != "interrupted"}
    results[number] = {
        "slug": "",
        "during": during,
        "status": "interrupted",
        "duration_ms": 0.0,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_results(settings, results)


def _write_results(settings: Settings, results: Mapping[int, dict[str, Any]]) -> None:
    _write_json(results_file(settings), {"steps": {str(n): r for n, r in sorted(results.items())}})


def runs_dir(settings: Settings) -> Path:
    """Where the last run model of each step is kept (``lab ui`` draws it)."""
    return settings.home / "runs"


def save_run_model(settings: Settings, number: int, record: Mapping[str, Any]) -> None:
    """Keep the run model (:func:`lab.render.run_model.step_model`) of step ``number``'s last
    run, 0600 like the checkpoints: it holds the step's tokens (secrets already redacted)."""
    _write_json(runs_dir(settings) / f"step-{number:02d}.json", dict(record))


def load_run_model(settings: Settings, number: int) -> dict[str, Any] | None:
    data = _read_json(runs_dir(settings) / f"step-{number:02d}.json", None)
    return data if isinstance(data, dict) else None


def last_passed_step(results: Mapping[int, Mapping[str, Any]]) -> int:
    """The highest N such that steps 1..N all passed (0 when step 1 has not passed)."""
    number = 0
    while results.get(number + 1, {}).get("status") == "passed":
        number += 1
    return number


def mark_restored(settings: Settings, up_to: int) -> None:
    """Steps 1..up_to are done in a restored checkpoint: show them as passed in ``lab steps``."""
    if up_to < 1:
        return
    results = load_results(settings)
    changed = False
    for number in range(1, up_to + 1):
        if results.get(number, {}).get("status") != "passed":
            results[number] = {"status": "passed", "restored": True, "duration_ms": 0.0}
            changed = True
    if changed:
        _write_results(settings, results)


# ---------------------------------------------------------------------- one-call entry points


def state_client(settings: Settings, backend: Backend | None = None) -> StateClient:
    """A client for the running backend (``settings.backend`` unless one is given)."""
    if backend is None:
        from lab.backends import get_backend

        backend = get_backend(None, settings)
    return StateClient(settings, backend.endpoints(), backend)


def engine_runner(state: StateClient) -> StepRunner:
    """Fast-forward with the step engine: run step N quietly, record its outcome.

    The step files are read on the first replay only: a reset served by a checkpoint skips it.
    """
    steps: dict[int, Any] = {}

    def run(number: int) -> bool:
        from lab.steps.engine import RunContext, run_step

        if not steps:
            from lab.steps import load_steps

            steps.update({step.number: step for step in load_steps()})
        if number not in steps:
            raise StateError(f"there is no step {number} to replay", "see `lab steps`")
        result = run_step(steps[number], RunContext(state.settings, state.endpoints, state.backend))
        record_result(state.settings, number, result.slug, result.status, result.duration_ms)
        return result.passed

    return run


def reset(settings: Settings, backend: Backend | None = None) -> ResetOutcome:
    """``lab reset``: the baseline."""
    return reset_to_baseline(state_client(settings, backend))


def reset_to(settings: Settings, step: int, backend: Backend | None = None) -> ResetOutcome:
    """``lab reset --to N``: ready for step N, replaying earlier steps if no checkpoint is fresh."""
    state = state_client(settings, backend)
    runner = engine_runner(state) if step > 1 else None
    return reset_to_step(state, step, run_step=runner)


def _tokens_expire_soon(captures: Any, margin_s: float = TOKEN_MARGIN_S) -> bool:
    """Does any JWT among the captured values expire within ``margin_s``?"""
    deadline = time.time() + margin_s
    return any(exp < deadline for exp in _token_expiries(captures))


def _token_expiries(value: Any) -> Iterator[float]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _token_expiries(item)
    elif isinstance(value, list):
        for item in value:
            yield from _token_expiries(item)
    elif isinstance(value, str) and value.count(".") == 2 and value.startswith("ey"):
        exp = _unverified_exp(value)
        if exp is not None:
            yield exp


def _unverified_exp(token: str) -> float | None:
    """The ``exp`` claim, read without verification: only to judge a checkpoint's freshness."""
    import base64

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
