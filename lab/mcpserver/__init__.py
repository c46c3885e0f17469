"""mcpserver"""

#: Where a tools/call result's ``_meta`` carries the MCP server's own calls (lab.mcpserver.hops);
#: the run model (lab.render.run_model) reads it there. Reverse-DNS style, as MCP asks of keys.
HOPS_META_KEY = "lab.idjag/hops"
