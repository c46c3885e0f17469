"""The requesting client end to end: sign in → ID-JAG → access token → MCP tools.

``Agent`` exposes each link separately (steps assert on each, including refusals);
``run_prompt`` runs the whole chain for ``lab agent "get docs"`` and stops at the first
broken link, saying which one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lab.agent import held
from lab.agent.client_auth import PRIVATE_KEY_JWT, ClientAuthError, ClientCredentials
from lab.agent.config import AgentConfig
from lab.agent.connections import transport_options
from lab.agent.discovery import (
    AuthorizationServer,
    Discovery,
    DiscoveryError,
    discover_cached,
    fetch_authorization_server,
)
from lab.agent.mcp_client import ToolCall, ToolResult, call_tools, list_tools
from lab.agent.pdp_client import PdpClient, TokenResponse, not_sent
from lab.agent.planner import Plan, plan_rules, plan_with_llm
from lab.agent.recorder import Exchange, Recorder
from lab.agent.signin import (
    DEFAULT_REALM_FILE,
    IdpClient,
    SignIn,
    SignInFailed,
    browser_like,
    sign_in_browser,
    sign_in_with_code,
    sign_in_with_password,
)
from lab.agent.token_endpoint import TokenEndpoint
from lab.config import AGENT_PRINCIPAL, Endpoints, Settings
from lab.oauth import http as lab_http
from lab.oauth.jose import SigningKey

#: The roles the agent asks an ID-JAG for (STEPS.md step 11).
DEFAULT_SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"
HTTP_TIMEOUT_S = 30.0

#: Code-flow failures that mean "this login page cannot be driven", not "wrong password":
#: only these fall back to the password grant, and only when the caller asks for a fallback.
_FALLBACK_ERRORS = frozenset({"login_form_missing", "unexpected_response", "too_many_redirects"})

_MCP = object()  # sentinel: "the MCP server's URL" as the default RFC 8707 resource


@dataclass
class PromptResult:
    plan: Plan
    tool_results: list[ToolResult] = field(default_factory=list)
    sign_in: SignIn | None = None
    id_jag: TokenResponse | None = None
    access: TokenResponse | None = None
    #: Which link broke: "sign_in", "id_jag", "redeem", "tools" or None when nothing did.
    stopped_at: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.stopped_at is None
            and self.plan.understood
            and all(not result.is_error for result in self.tool_results)
        )

    @property
    def message(self) -> str:
        """One line for a person: what happened, or where and why the chain stopped."""
        if self.stopped_at == "sign_in" and self.sign_in is not None:
            detail = self.sign_in.error_description or ""
            return f"sign-in failed: {self.sign_in.error}: {detail}".rstrip(": ")
        if self.stopped_at == "id_jag" and self.id_jag is not None:
            return _refusal("the PDP refused the ID-JAG", self.id_jag)
        if self.stopped_at == "redeem" and self.access is not None:
            return _refusal("the PDP refused the jwt-bearer grant", self.access)
        if not self.plan.understood:
            return self.plan.message or ""
        errors = [r.text for r in self.tool_results if r.is_error]
        return "; ".join(errors) if errors else f"{len(self.tool_results)} tool call(s) succeeded"


def _refusal(what: str, response: TokenResponse) -> str:
    if response.status == 0:  # never sent: no metadata, no common auth method, unreachable
        return f"the agent could not make the request ({response.error}): {response.message}"
    return f"{what} ({response.status} {response.error}): {response.message}"


class Agent:
    """The agent ``ai.agent``: one HTTP client, every exchange recorded.

    The PDP's token endpoint and its client authentication methods are discovered from the MCP
    server (RFC 9728 → RFC 8414, ``lab.agent.discovery``) the first time they are needed, and
    reused by later agents of the same process for a few minutes (``DiscoveryCache``); those
    metadata requests are kept apart in ``discovery_exchanges`` so a step's own exchanges stay
    the token requests and tool calls it asserts on.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        settings: Settings,
        recorder: Recorder | None = None,
        *,
        realm_file: Path = DEFAULT_REALM_FILE,
        idp_client: IdpClient | None = None,
        key: SigningKey | None = None,
        config: AgentConfig | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self.config = config if config is not None else AgentConfig.from_env()
        self.recorder = recorder if recorder is not None else Recorder()
        # Cookies as a browser keeps them: Keycloak marks its login cookies Secure on loopback.
        self.http = browser_like(
            lab_http.client(
                event_hooks=self.recorder.sync_hooks(),
                timeout=HTTP_TIMEOUT_S,
                follow_redirects=False,
                **transport_options(),
            )
        )
        self._discovery_recorder = Recorder()
        self._metadata_http = lab_http.client(
            event_hooks=self._discovery_recorder.sync_hooks(),
            timeout=HTTP_TIMEOUT_S,
            follow_redirects=False,
            **transport_options(),
        )
        self._realm_file = realm_file
        self._idp_client = idp_client
        self._key = key
        self._discovery: Discovery | None = None
        self._server: AuthorizationServer | None = None
        self.discovery_error: str | None = None

    # -- lazily loaded credentials ---------------------------------------------------------

    @property
    def idp_client(self) -> IdpClient:
        if self._idp_client is None:
            self._idp_client = held.idp_client(self._realm_file)
        return self._idp_client

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = held.signing_key(self.settings.key_file(AGENT_PRINCIPAL))
        return self._key

    @property
    def issuer(self) -> str:
        """The authorization server this agent is provisioned for (SEP-990: configuration)."""
        return self.config.issuer or self.endpoints.zts

    @property
    def credentials(self) -> ClientCredentials:
        """The agent's client at the PDP: its key unless a secret method is configured."""
        method = self.config.auth_method
        wants_key = method in (None, PRIVATE_KEY_JWT)
        return ClientCredentials(
            self.config.client_id,
            key=self.key if wants_key else None,
            secret=self.config.client_secret,
            method=method,
        )

    @property
    def discovery(self) -> Discovery | None:
        """RFC 9728 → RFC 8414 from the MCP server's URL (None if the chain of metadata broke;
        ``discovery_error`` says where)."""
        if self._discovery is None and self.discovery_error is None:
            try:
                self._discovery = discover_cached(
                    self._metadata_http, self.endpoints.mcp, issuer=self.issuer
                )
            except DiscoveryError as exc:
                self.discovery_error = str(exc)
        return self._discovery

    @property
    def authorization_server(self) -> AuthorizationServer:
        """The PDP's metadata: found through the MCP server, else at the configured issuer."""
        if self._server is None:
            found = self.discovery
            self._server = (
                found.authorization_server
                if found is not None
                else fetch_authorization_server(self._metadata_http, self.issuer)
            )
        return self._server

    @property
    def discovery_exchanges(self) -> list[Exchange]:
        return self._discovery_recorder.exchanges

    @property
    def pdp(self) -> PdpClient:
        try:
            server: AuthorizationServer | None = self.authorization_server
        except DiscoveryError:
            server = None  # PdpClient reports the missing metadata as a refusal
        return PdpClient(self.http, self.endpoints, credentials=self.credentials, server=server)

    def close(self) -> None:
        self.http.close()
        self._metadata_http.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the links ----------------------------------------------------------------------------

    def sign_in(
        self, username: str, password: str, method: str = "code", *, fallback: bool = False
    ) -> SignIn:
        """Sign the user in with ``method``; no silent fallback.

        Only with ``fallback=True`` does a code flow whose login page cannot be driven (never a
        refused password) fall back to the password grant; the result then says so
        (``method`` ``password``, ``fallback_from`` the code flow's error).
        """
        issuer = self.endpoints.idp_issuer
        if method == "password":
            return sign_in_with_password(self.http, issuer, self.idp_client, username, password)
        if method == "browser":  # a person types the credentials into the real page
            return self.sign_in_browser()
        if method != "code":
            raise ValueError(
                f"unknown sign-in method {method!r}: use 'code', 'password' or 'browser'"
            )
        try:
            result = sign_in_with_code(self.http, issuer, self.idp_client, username, password)
        except httpx.HTTPError as exc:
            return SignIn(None, None, None, "code", None, "unreachable", str(exc))
        if not (fallback and result.error in _FALLBACK_ERRORS):
            return result
        fallen = sign_in_with_password(self.http, issuer, self.idp_client, username, password)
        fallen.fallback_from = f"{result.error}: {result.error_description or ''}".rstrip(": ")
        return fallen

    def sign_in_browser(self, opener: Any = None, timeout_s: float = 300.0) -> SignIn:
        """Open the login page in a browser for a person (see signin.sign_in_browser)."""
        kwargs: dict[str, Any] = {"timeout_s": timeout_s}
        if opener is not None:
            kwargs["opener"] = opener
        try:
            return sign_in_browser(self.http, self.endpoints.idp_issuer, self.idp_client, **kwargs)
        except SignInFailed as failure:
            return SignIn(
                None, None, None, "browser", failure.status, failure.error, failure.description
            )

    def request_id_jag(
        self, id_token: str, scope: str = DEFAULT_SCOPE, resource: Any = _MCP
    ) -> TokenResponse:
        target = self.endpoints.mcp if resource is _MCP else resource
        return self.pdp.request_id_jag(id_token, scope, target)

    def redeem_id_jag(self, id_jag: str, scope: str | None = None) -> TokenResponse:
        return self.pdp.redeem_id_jag(id_jag, scope)

    def request_id_jag_at_idp(
        self,
        id_token: str,
        scope: str | None = None,
        resource: Any = _MCP,
        audience: str | None = None,
    ) -> TokenResponse:
        """Draft -04's topology (§9.3): the enterprise IdP issues the ID-JAG by RFC 8693 at its
        own token endpoint, for ``audience`` = the PDP's issuer and ``resource`` = the MCP
        server (SEP-990 sends both); the agent authenticates as the IdP's client."""
        target = self.endpoints.mcp if resource is _MCP else resource
        try:
            endpoint = self.idp_token_endpoint()
            audience = audience or self.authorization_server.issuer
        except (DiscoveryError, ClientAuthError) as exc:
            return not_sent(exc)
        return endpoint.request_id_jag(id_token, audience=audience, resource=target, scope=scope)

    def idp_token_endpoint(self) -> TokenEndpoint:
        """The IdP's token endpoint (configured, else from its OpenID/RFC 8414 metadata)."""
        client = self.idp_client
        credentials = ClientCredentials(
            client.client_id, secret=client.client_secret, method=self.config.idp_auth_method
        )
        issuer = self.endpoints.idp_issuer
        if self.config.idp_token_endpoint:
            return TokenEndpoint(
                self.http, self.config.idp_token_endpoint, credentials, audience=issuer
            )
        metadata = fetch_authorization_server(self._metadata_http, issuer)
        return TokenEndpoint(
            self.http,
            metadata.token_endpoint,
            credentials,
            audience=metadata.issuer,
            advertised=metadata.auth_methods,
        )

    def list_tools(self, access_token: str | None) -> list[dict[str, Any]]:
        return list_tools(self.endpoints.mcp, access_token, self.recorder)

    def call_tool(
        self, access_token: str | None, name: str, arguments: dict[str, Any] | None = None
    ) -> ToolResult:
        return call_tools(
            self.endpoints.mcp, access_token, [ToolCall(name, dict(arguments or {}))], self.recorder
        )[0]

    def plan(self, text: str, access_token: str | None) -> Plan:
        """Rules by default; the LLM planner only when ``settings.llm_url`` is set."""
        if not self.settings.llm_url:
            return plan_rules(text)
        try:
            tools = self.list_tools(access_token)
        except Exception as exc:  # noqa: BLE001 - without the tool list the model cannot plan
            return Plan(
                text, [], f"could not list the MCP server's tools for the LLM planner: {exc}", "llm"
            )
        return plan_with_llm(self.http, self.settings.llm_url, text, tools)

    def prompt(self, text: str, access_token: str | None) -> PromptResult:
        plan = self.plan(text, access_token)
        if not plan.calls:
            return PromptResult(plan, [], exchanges=self.recorder.exchanges)
        results = call_tools(self.endpoints.mcp, access_token, plan.calls, self.recorder)
        return PromptResult(plan, results, exchanges=self.recorder.exchanges)


def run_prompt(
    settings: Settings,
    endpoints: Endpoints,
    prompt: str,
    username: str,
    password: str,
    *,
    recorder: Recorder | None = None,
    method: str = "code",
    scope: str = DEFAULT_SCOPE,
    realm_file: Path = DEFAULT_REALM_FILE,
    config: AgentConfig | None = None,
) -> PromptResult:
    """The whole chain: sign in → ID-JAG for ``scope`` (resource = the MCP server) → redeem →
    prompt. Stops at the first refused link and says which (``PromptResult.stopped_at``)."""
    with Agent(endpoints, settings, recorder, realm_file=realm_file, config=config) as agent:
        exchanges = agent.recorder.exchanges
        signed_in = agent.sign_in(username, password, method=method)
        if not signed_in.ok or signed_in.id_token is None:
            return PromptResult(
                Plan(prompt), [], signed_in, stopped_at="sign_in", exchanges=exchanges
            )
        id_jag = (
            agent.request_id_jag_at_idp(signed_in.id_token, scope, endpoints.mcp)
            if agent.config.id_jag_from == "idp"
            else agent.request_id_jag(signed_in.id_token, scope, endpoints.mcp)
        )
        if not id_jag.ok or id_jag.token is None:
            return PromptResult(
                Plan(prompt), [], signed_in, id_jag, stopped_at="id_jag", exchanges=exchanges
            )
        access = agent.redeem_id_jag(id_jag.token)
        if not access.ok or access.token is None:
            return PromptResult(
                Plan(prompt),
                [],
                signed_in,
                id_jag,
                access,
                stopped_at="redeem",
                exchanges=exchanges,
            )
        result = agent.prompt(prompt, access.token)
        result.sign_in, result.id_jag, result.access = signed_in, id_jag, access
        if result.plan.understood and any(r.is_error for r in result.tool_results):
            result.stopped_at = "tools"
        return result
