"""Every pinned version the backends use, in one place (``lab doctor`` prints them).

Bump a pin here and nowhere else: the plan, the manifests, the workflow and the docs page read
these names. The Kubernetes version is the one the manifests are validated against offline
(tests/backends/test_manifests.py) and the one the kind node image runs.
"""

from __future__ import annotations

#: Keycloak for the real IdP, both as a local process (``lab up --idp keycloak``, the Maven
#: distribution ``org.keycloak:keycloak-quarkus-dist``) and as the kind backend's container. The
#: newest 26.x patch the lab's machines resolve; 26.6+ runs on Java 25 as well as 21.
KEYCLOAK_VERSION = "26.7.3"
KEYCLOAK_IMAGE = f"quay.io/keycloak/keycloak:{KEYCLOAK_VERSION}"
#: The distribution's Maven coordinates (group:artifact:version:type).
KEYCLOAK_DIST_ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz"
#: Java the pinned Keycloak needs at least (26.x: 21; 25 is supported from 26.6).
KEYCLOAK_MIN_JAVA = 21

#: kind release the workflow installs and the docs page names; its node images include v1.33.x.
KIND_VERSION = "v0.29.0"

#: Kubernetes version of the cluster kind creates (node image built by the kind release above).
KUBERNETES_VERSION = "1.33.1"
#: Digest from the kind v0.29.0 release notes ("Images pre-built for this release"): a tag alone
#: may name an image built for another kind release, which that release does not support.
KIND_NODE_DIGEST = "sha256:050072256b9a903bd914c0b2866828150cb229cea0efe5892e2b644d5dd3b34f"
KIND_NODE_IMAGE = f"kindest/node:v{KUBERNETES_VERSION}@{KIND_NODE_DIGEST}"

#: Schemas the manifests are validated against (kubernetes-validate, bundled, offline).
KUBERNETES_SCHEMA_VERSION = "1.33.0"

#: kubectl the workflow installs (one minor of skew with the cluster is supported upstream).
KUBECTL_VERSION = f"v{KUBERNETES_VERSION}"

#: Oldest Docker Engine the kind backend is tested with (docker-py >= 7.1 talks to newer ones).
DOCKER_MIN_VERSION = "24.0"

#: Base image of the lab image (Dockerfile ``ARG PYTHON_IMAGE`` default must match).
PYTHON_IMAGE = "python:3.11-slim"


def pinned() -> dict[str, str]:
    """The pins as shown by ``lab doctor`` and the dry-run plan."""
    return {
        "keycloak": KEYCLOAK_VERSION,
        "keycloak image": KEYCLOAK_IMAGE,
        "kind": KIND_VERSION,
        "kind node image": KIND_NODE_IMAGE,
        "kubectl": KUBECTL_VERSION,
        "python base image": PYTHON_IMAGE,
    }
