"""Put the gateway together and run it over stdio or Streamable HTTP.

``wire`` builds the agent (the lab's :class:`~lab.agent.Agent`, identified by a ``User-Agent``
that names the gateway), the token keeper, the hop log and the upstream MCP client for one lab;
``Gateway.create`` does it for a lab already up, ``Gateway.find_lab`` at each request for
whichever lab runs then (:mod:`lab.gateway.attach`); ``run_stdio`` and ``run_http`` serve it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

import anyio
import uvicorn
from mcp.server.lowlevel import Server

from lab.agent import Agent, Exchange, Recorder
from lab.config import Endpoints, Settings
from lab.gateway.attach import Attachment, Locate, Wiring, record_mark
from lab.gateway.chain import SignInPlan, TokenKeeper
from lab.gateway.changes import ToolChanges
from lab.gateway.hops import HopLog
from lab.gateway.http import build_http_app, gateway_url, new_secret
from lab.gateway.links import ChainBroken
from lab.gateway.listing import SavedListing
from lab.gateway.proxy import GatewayProxy
from lab.gateway.server import build_server, package_version
from lab.gateway.settings import PORT_VARIABLE, check_bind
from lab.gateway.state import clear_state, write_state
from lab.gateway.stdio import serve_stdio
from lab.gateway.upstream import Upstream
from lab.serving import bind_socket, uvicorn_config

log = logging.getLogger("lab.gateway")


class Gateway:
    """The SDK server and the proxy behind it, attached to a lab now or at each request."""

    def __init__(
        self, proxy: GatewayProxy, server: Server[Any], changes: ToolChanges | None = None
    ) -> None:
        self.proxy = proxy
        self.server = server
        #: How clients are told to list the tools again (None: the lab is fixed, never told).
        self.changes = changes

    async def watch_lab(self) -> None:
        """Until cancelled: tell the clients when the lab comes up after a listing it did not
        give was served (:mod:`lab.gateway.changes`)."""
        if self.changes is not None:
            await self.changes.watch(self.proxy.lab_came_up)

    @classmethod
    def create(
        cls,
        settings: Settings,
        endpoints: Endpoints,
        plan: SignInPlan,
        *,
        margin_s: float | None = None,
        reuse: bool = True,
        retain_exchanges: list[Exchange] | None = None,
    ) -> Gateway:
        """A gateway for the lab at ``endpoints`` (a step run, a test: the lab is up)."""
        wiring = wire(settings, endpoints, plan, margin_s, reuse, retain_exchanges)
        proxy = GatewayProxy(Attachment.fixed(wiring))
        return cls(proxy, build_server(proxy))

    @classmethod
    def find_lab(
        cls,
        settings: Settings,
        locate: Locate,
        plan: SignInPlan,
        *,
        margin_s: float | None = None,
        reuse: bool = True,
    ) -> Gateway:
        """A gateway that finds the running lab at each request (``lab gateway``): it starts
        and speaks MCP with no lab up, and follows the lab through restarts."""

        def build(endpoints: Endpoints) -> Wiring:
            return wire(settings, endpoints, plan, margin_s, reuse, None)

        attachment = Attachment(locate, build, record_mark(settings.runtime_file))
        proxy = GatewayProxy(attachment, saved=SavedListing(settings.home))
        changes = ToolChanges()
        return cls(proxy, build_server(proxy, changes), changes)

    @property
    def agent(self) -> Agent:
        return self.proxy.wiring.agent

    @property
    def keeper(self) -> TokenKeeper:
        return self.proxy.wiring.keeper

    @property
    def hops(self) -> HopLog:
        return self.proxy.wiring.hops

    def close(self) -> None:
        self.proxy.attachment.close()

    async def warm_up(self) -> None:
        """Sign in and fetch a token now; a refusal is logged, and named again at each call."""
        try:
            await self.proxy.warm_up()
        except ChainBroken as broken:
            log.warning("%s", broken.explain())
        else:
            log.info("the chain is ready: access token for %s", self.keeper.subject)


def wire(
    settings: Settings,
    endpoints: Endpoints,
    plan: SignInPlan,
    margin_s: float | None,
    reuse: bool,
    retain_exchanges: list[Exchange] | None,
) -> Wiring:
    """The agent (named ``idjag-lab-gateway`` in ``User-Agent``), its token keeper, the hop log
    and the upstream MCP client, for the lab at ``endpoints``."""
    recorder = Recorder()
    agent = Agent(endpoints, settings, recorder)
    user_agent = f"idjag-lab-gateway/{package_version()}"
    agent.http.headers["User-Agent"] = user_agent
    keeper_options: dict[str, Any] = {} if margin_s is None else {"margin_s": margin_s}
    keeper = TokenKeeper(agent, plan, reuse=reuse, **keeper_options)
    names = {endpoints.idp_issuer: "idp", endpoints.zts: "pdp", endpoints.mcp: "mcp"}
    hops = HopLog(recorder, names, retain_exchanges)
    upstream = Upstream(endpoints.mcp, recorder, {"User-Agent": user_agent})
    return Wiring(agent, keeper, upstream, hops)


async def run_stdio(gateway: Gateway) -> None:
    """Serve one AI client on stdin/stdout (the client launched us); sign in on first use.
    Returns on EOF, SIGTERM, SIGINT or SIGHUP (:mod:`lab.gateway.stdio`)."""
    await serve_stdio(gateway.server, gateway.watch_lab)


async def run_http(
    gateway: Gateway,
    settings: Settings,
    host: str,
    port: int,
    *,
    allow_remote: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve Streamable HTTP at ``http://host:port/<secret>/mcp`` until cancelled."""
    check_bind(host, allow_remote)
    sock = bind_socket(host, port, PORT_VARIABLE)
    bound_port = int(sock.getsockname()[1])
    secret = new_secret()
    url = gateway_url(host, bound_port, secret)
    app = build_http_app(gateway.server, host, bound_port, secret)
    server = uvicorn.Server(uvicorn_config(app))
    write_state(settings.home, url)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        async with anyio.create_task_group() as group:

            async def serve() -> None:
                try:
                    await server.serve(sockets=[sock])
                except (GatewayStopped, KeyboardInterrupt):
                    pass  # uvicorn shut down, then re-raised the signal it caught
                finally:
                    group.cancel_scope.cancel()  # a browser sign-in still waiting ends too

            group.start_soon(serve)
            group.start_soon(gateway.watch_lab)  # list_changed, on each session's own channel
            while not server.started:
                await anyio.sleep(0.02)
            announce(url)
            await gateway.warm_up()
    finally:
        signal.signal(signal.SIGTERM, previous)
        clear_state(settings.home)
        sock.close()


class GatewayStopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown: leave through the ``finally`` blocks."""


def _stop(signum: int, frame: object) -> None:
    raise GatewayStopped()
