"""Backends: where the five parts run. ``get_backend`` imports the chosen one lazily.

The kind backend pulls in the docker and kubernetes clients (slow to import); the embedded
backend must stay fast, so neither is imported until asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.backends.base import (
    Backend,
    BackendError,
    BackendNotRunning,
    BackendStatus,
    DoctorCheck,
    PartStatus,
    Progress,
)

if TYPE_CHECKING:
    from lab.config import Settings

BACKEND_NAMES: tuple[str, ...] = ("embedded", "kind")

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendError",
    "BackendNotRunning",
    "BackendStatus",
    "DoctorCheck",
    "PartStatus",
    "Progress",
    "get_backend",
]


def get_backend(
    name: str | None,
    settings: Settings,
    *,
    context: str | None = None,
    namespace: str | None = None,
    dry_run: bool = False,
) -> Backend:
    """The backend called ``name`` (default: ``settings.backend``, i.e. ``LAB_BACKEND``).

    ``context``/``namespace`` (an existing cluster) and ``dry_run`` (describe the plan in
    ``last_plan``, touch no daemon) are the kind backend's; the embedded backend refuses them
    rather than ignore them (a dry run that really started processes would be a surprise).
    """
    name = name or settings.backend
    if name == "embedded":
        from lab.backends.embedded import EmbeddedBackend

        given = [
            option
            for option, value in (
                ("context", context),
                ("namespace", namespace),
                ("dry_run", dry_run),
            )
            if value
        ]
        if given:
            raise BackendError(
                f"the embedded backend takes no {', '.join(given)}",
                "--context and --namespace choose a Kubernetes cluster: use `--backend kind`",
            )
        return EmbeddedBackend(settings)
    if name == "kind":
        try:
            from lab.backends.kind import KindBackend
        except ImportError as exc:
            raise BackendError(
                f"the kind backend cannot be loaded ({exc})",
                "reinstall with `make setup`, or use `--backend embedded`",
            ) from exc
        return KindBackend(settings, context=context, namespace=namespace, dry_run=dry_run)
    raise BackendError(
        f"unknown backend {name!r}",
        f"choose one of: {', '.join(BACKEND_NAMES)} (--backend or LAB_BACKEND)",
    )
