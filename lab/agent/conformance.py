"""``python -m lab.agent.conformance URL``: the lab's agent as the client under test of the
official MCP conformance suite (npm ``@modelcontextprotocol/conformance``).

The harness runs ``<command> <server URL>`` and describes the deployment in the environment:
``MCP_CONFORMANCE_SCENARIO`` and ``MCP_CONFORMANCE_CONTEXT`` (JSON). For the SEP-990 scenarios
(``auth/cross-app-access-complete-flow`` in 0.1.x, ``auth/enterprise-managed-authorization`` in
0.2) the context carries what an enterprise provisions a client with: ``client_id`` /
``client_secret`` at the MCP server's authorization server, ``idp_client_id`` (and optionally
``idp_client_secret``) at the IdP, ``idp_issuer`` / ``idp_token_endpoint``, and the user's
``idp_id_token``. Each maps to the same configuration the agent always uses
(``lab.agent.enterprise``); everything else is discovered from the server URL. Options on the
command line win over the context.

Exit code 0 when the tools were listed and called, 1 when a link broke (stderr says which).
Tokens and secrets are never printed: only their fingerprints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from lab.agent.client_auth import ClientCredentials
from lab.agent.enterprise import (
    EnterpriseConfig,
    EnterpriseTokens,
    IdentityProvider,
    obtain_access_token,
)
from lab.agent.mcp_client import ToolCall, call_tools, list_tools
from lab.oauth import http as lab_http
from lab.oauth.jose import token_fingerprint

CONTEXT_VARIABLE = "MCP_CONFORMANCE_CONTEXT"


class ConfigurationError(ValueError):
    """A required piece of client configuration is missing from options and context."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lab.agent.conformance",
        description="SEP-990 client: ID token -> ID-JAG at the IdP -> access token -> MCP tools.",
    )
    parser.add_argument("url", help="the MCP server URL")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--auth-method", help="at the authorization server (default: advertised)")
    parser.add_argument("--issuer", help="the authorization server this client is provisioned for")
    parser.add_argument("--idp-client-id")
    parser.add_argument("--idp-client-secret")
    parser.add_argument("--idp-auth-method")
    parser.add_argument("--idp-issuer")
    parser.add_argument("--idp-token-endpoint")
    parser.add_argument("--id-token", help="the user's ID token (default: the context's)")
    parser.add_argument("--scope")
    return parser.parse_args(list(argv))


def load_context(env: Mapping[str, str]) -> dict[str, Any]:
    raw = env.get(CONTEXT_VARIABLE)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{CONTEXT_VARIABLE} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{CONTEXT_VARIABLE} must be a JSON object")
    return value


def build_config(
    args: argparse.Namespace, context: Mapping[str, Any]
) -> tuple[EnterpriseConfig, str]:
    """The client configuration and the ID token, from options first, then the context."""

    def pick(option: str, key: str) -> str | None:
        value = getattr(args, option)
        if value is None:
            value = context.get(key)
        return str(value) if value not in (None, "") else None

    client_id, id_token = pick("client_id", "client_id"), pick("id_token", "idp_id_token")
    idp_client_id = pick("idp_client_id", "idp_client_id")
    missing = [
        name
        for name, value in (
            ("client_id", client_id),
            ("idp_client_id", idp_client_id),
            ("idp_id_token", id_token),
        )
        if value is None
    ]
    idp_endpoint = pick("idp_token_endpoint", "idp_token_endpoint")
    idp_issuer = pick("idp_issuer", "idp_issuer")
    if idp_endpoint is None and idp_issuer is None:
        missing.append("idp_token_endpoint or idp_issuer")
    if missing:
        raise ConfigurationError(
            f"missing client configuration: {', '.join(missing)} "
            f"(options, or the {CONTEXT_VARIABLE} JSON)"
        )
    assert client_id is not None and idp_client_id is not None and id_token is not None
    idp_secret = pick("idp_client_secret", "idp_client_secret")
    config = EnterpriseConfig(
        client=ClientCredentials(
            client_id,
            secret=pick("client_secret", "client_secret"),
            method=pick("auth_method", "token_endpoint_auth_method"),
        ),
        idp=IdentityProvider(
            # Without a secret the agent is a public client at the IdP (RFC 6749 §2.1).
            ClientCredentials(
                idp_client_id,
                secret=idp_secret,
                method=pick("idp_auth_method", "idp_token_endpoint_auth_method"),
                public=idp_secret is None,
            ),
            token_endpoint=idp_endpoint,
            issuer=idp_issuer,
        ),
        issuer=pick("issuer", "issuer"),
        scope=pick("scope", "scope"),
    )
    return config, id_token


def describe(tokens: EnterpriseTokens) -> list[str]:
    lines = []
    if tokens.discovery is not None:
        found = tokens.discovery
        lines.append(
            f"discovered: resource {found.resource} (metadata {found.resource_metadata_url}), "
            f"authorization server {found.authorization_server.issuer} "
            f"(token endpoint {found.authorization_server.token_endpoint}, accepts "
            f"{', '.join(found.authorization_server.auth_methods)})"
        )
    lines.extend(tokens.notes)
    for label, response in (("ID-JAG", tokens.id_jag), ("access token", tokens.access)):
        if response is None:
            continue
        if response.ok and response.token:
            lines.append(f"{label}: issued (sha256 {token_fingerprint(response.token)})")
        else:
            lines.append(
                f"{label}: refused ({response.status} {response.error}): {response.message}"
            )
    return lines


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    args = parse_args(argv)
    try:
        config, id_token = build_config(args, load_context(env))
    except (ConfigurationError, ValueError) as exc:
        print(f"conformance client: {exc}", file=sys.stderr)
        return 2
    with lab_http.client(timeout=30.0, follow_redirects=False) as http:
        tokens = obtain_access_token(http, args.url, id_token, config)
    for line in describe(tokens):
        print(line, file=sys.stderr)
    if not tokens.ok or tokens.access is None or tokens.access.token is None:
        print(f"conformance client: stopped at {tokens.stopped_at}", file=sys.stderr)
        return 1
    tools = list_tools(args.url, tokens.access.token)
    print(f"tools: {', '.join(t['name'] for t in tools) or 'none'}", file=sys.stderr)
    callable_tools = [t for t in tools if not (t.get("inputSchema") or {}).get("required")]
    if not callable_tools:
        return 0
    (result,) = call_tools(args.url, tokens.access.token, [ToolCall(callable_tools[0]["name"], {})])
    print(f"called {result.name}: {'error' if result.is_error else 'ok'}", file=sys.stderr)
    return 1 if result.is_error else 0


def main() -> None:
    sys.exit(run(sys.argv[1:], os.environ))


if __name__ == "__main__":
    main()
