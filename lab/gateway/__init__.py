"""The AI Client Gateway: a local MCP endpoint for the learner's own AI client.

Toward the AI client (Claude Code, Codex, Cursor, VS Code, MCP Inspector) it is an MCP server on
loopback, over stdio or Streamable HTTP, asking for no credentials. Toward the lab it is the
agent ``ai.agent``: it signs the user in, obtains an ID-JAG and an access token through
:mod:`lab.agent`, and re-lists the protected MCP server's tools as its own. A broken link comes
back to the AI client as a tool error that names it (F1–F3), so a learner can break the chain
from their own assistant.

Modules, one job each: ``settings`` (port, host, bind policy), ``links`` (a broken link and its
wording), ``hops`` (token fingerprints in the log), ``chain`` (tokens kept fresh), ``upstream``
(MCP calls to the lab's server), ``attach`` (the running lab, found at each request),
``listing`` (the tool listing kept for a gateway started before the lab), ``changes`` (telling
clients to list the tools again, as each transport and protocol era listens), ``proxy`` (the
gateway's tools), ``server`` (the SDK server), ``http`` (loopback guard and secret path),
``stdio`` (the bounded stdio transport), ``state`` (the running gateway's URL) and ``clients``
(configuration snippets for each AI client).
"""
