// The TypeScript MCP client 2.x, unmodified, as an AI client uses the lab gateway: over stdio
// (it launches `lab gateway --stdio`) or Streamable HTTP (the gateway's URL). It lists the tools
// and calls list_docs, then prints both as JSON (run by tests/gateway/test_gateway_stack.py and
// tests/gateway/test_stdio_without_lab.py). The SDK comes from the npm cache
// (LAB_TS_CLIENT_DIR, the package directory).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const load = (file) => import(pathToFileURL(join(env("LAB_TS_CLIENT_DIR"), "dist", file)).href);

const { Client, StreamableHTTPClientTransport } = await load("index.mjs");
let transport;
if (env("LAB_GW_TRANSPORT") === "stdio") {
  const { StdioClientTransport } = await load("stdio.mjs");
  const [command, ...args] = JSON.parse(env("LAB_GW_COMMAND"));
  transport = new StdioClientTransport({
    command,
    args,
    env: JSON.parse(env("LAB_GW_ENV")),
    stderr: "pipe",
  });
  transport.stderr?.on("data", (chunk) => process.stderr.write(chunk));
} else {
  transport = new StreamableHTTPClientTransport(new URL(env("LAB_GW_URL")));
}
const errors = [];
const client = new Client({ name: "lab-ts-gateway-client", version: "1.0.0" });
client.onerror = (error) => errors.push(String(error));
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: "list_docs", arguments: {} });
await client.close();
process.stdout.write(
  JSON.stringify({ tools: tools.tools.map((tool) => tool.name), result, errors }) + "\n",
);
