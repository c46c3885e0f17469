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

from lab.agent.mcp_client import ToolCall, ToolResult, call_tools, list_tools
from lab.agent.pdp_client import PdpClient, TokenResponse
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
from lab.config import AGENT_PRINCIPAL, Endpoints, Settings
from lab.oauth import http as lab_http
from lab.oauth.jose import SigningKey

#: The roles the agent asks an ID-JAG for (STEPS.md step 11).
DEFAULT_SCOPE = "api:role.docs-getter api:role.mcp-accessor"
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
    return f"{what} ({response.status} {response.error}): {response.message}"


class Agent:
    """The agent ``ai.agent``: one HTTP client, every exchange recorded."""

    def __init__(
        self,
        endpoints: Endpoints,
        settings: Settings,
        recorder: Recorder | None = None,
        *,
        realm_file: Path = DEFAULT_REALM_FILE,
        idp_client: IdpClient | None = None,
        key: SigningKey | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self.recorder = recorder if recorder is not None else Recorder()
        # Cookies as a browser keeps them: Keycloak marks its login cookies Secure on loopback.
        self.http = browser_like(
            lab_http.client(
                event_hooks=self.recorder.sync_hooks(),
                timeout=HTTP_TIMEOUT_S,
                follow_redirects=False,
            )
        )
        self._realm_file = realm_file
        self._idp_client = idp_client
        self._key = key

    # -- lazily loaded credentials ---------------------------------------------------------

    @property
    def idp_client(self) -> IdpClient:
        if self._idp_client is None:
            self._idp_client = IdpClient.from_realm_file(self._realm_file)
        return self._idp_client

    @property
    def key(self) -> SigningKey:
        if self._key is None:
            self._key = SigningKey.load_or_create(self.settings.key_file(AGENT_PRINCIPAL))
        return self._key

    @property
    def pdp(self) -> PdpClient:
        return PdpClient(self.http, self.endpoints, self.key)

    def close(self) -> None:
        self.http.close()

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
) -> PromptResult:
    """The whole chain: sign in → ID-JAG for ``scope`` (resource = the MCP server) → redeem →
    prompt. Stops at the first refused link and says which (``PromptResult.stopped_at``)."""
    with Agent(endpoints, settings, recorder, realm_file=realm_file) as agent:
        exchanges = agent.recorder.exchanges
        signed_in = agent.sign_in(username, password, method=method)
        if not signed_in.ok or signed_in.id_token is None:
            return PromptResult(
                Plan(prompt), [], signed_in, stopped_at="sign_in", exchanges=exchanges
            )
        id_jag = agent.request_id_jag(signed_in.id_token, scope, endpoints.mcp)
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
