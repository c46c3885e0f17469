// The TypeScript MCP client 2.x's CrossAppAccessProvider, unmodified and with its defaults,
// through the whole lab chain to a list_docs result (run by tests/agent/test_sdk_clients.py).
//
// Leg 1 is the SDK's own helper discoverAndRequestJwtAuthGrant at the enterprise IdP (RFC 8693,
// ID-JAG draft -04 §4.3); leg 2 and discovery (RFC 9728 -> RFC 8414, jwt-bearer with
// client_secret_basic) are the provider's. Configuration comes from the environment; the SDK
// is loaded from the npm cache the test installed it into (LAB_TS_CLIENT_ENTRY).
import { pathToFileURL } from "node:url";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const sdk = await import(pathToFileURL(env("LAB_TS_CLIENT_ENTRY")).href);
const { Client, CrossAppAccessProvider, StreamableHTTPClientTransport, discoverAndRequestJwtAuthGrant } = sdk;

const seen = { assertionContexts: [] };
const provider = new CrossAppAccessProvider({
  assertion: async (ctx) => {
    seen.assertionContexts.push({
      authorizationServerUrl: String(ctx.authorizationServerUrl),
      resourceUrl: String(ctx.resourceUrl),
      scope: ctx.scope ?? null,
    });
    const result = await discoverAndRequestJwtAuthGrant({
      idpUrl: env("LAB_IDP_ISSUER"),
      audience: ctx.authorizationServerUrl,
      resource: ctx.resourceUrl,
      idToken: env("LAB_ID_TOKEN"),
      clientId: env("LAB_IDP_CLIENT_ID"),
      clientSecret: env("LAB_IDP_CLIENT_SECRET"),
      scope: ctx.scope,
      fetchFn: ctx.fetchFn,
    });
    return result.jwtAuthGrant;
  },
  clientId: env("LAB_CLIENT_ID"),
  clientSecret: env("LAB_CLIENT_SECRET"),
  expectedIssuer: env("LAB_AS_ISSUER"),
});

const client = new Client({ name: "lab-ts-cross-app-access", version: "1.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(env("LAB_MCP_URL")), {
  authProvider: provider,
});
await client.connect(transport);
const tools = await client.listTools();
const result = await client.callTool({ name: "list_docs", arguments: {} });
await client.close();
console.log(
  JSON.stringify({
    tools: tools.tools.map((t) => t.name),
    isError: Boolean(result.isError),
    structuredContent: result.structuredContent ?? null,
    text: (result.content ?? []).map((c) => c.text ?? "").join("\n"),
    assertionContexts: seen.assertionContexts,
  }),
);
