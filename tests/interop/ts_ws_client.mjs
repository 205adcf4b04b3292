// Interop client: the official MCP TypeScript SDK's WebSocket client (npm
// @modelcontextprotocol/sdk, `client/websocket.js`) against Patchbay's `/mcp/ws`.
//
// Usage (Node 22, whose global WebSocket the SDK's transport uses; the SDK is loaded from
// .tools/npm, installed by scripts/test-deps, or from the folder named by PATCHBAY_NODE_MODULES):
//   node ts_ws_client.mjs ws://127.0.0.1:PORT/mcp/ws
//
// Steps: initialize, tools/list, `search`, `schema`, a `call` of fx.echo, and a `call` of
// fx.progress with a progress handler. Prints one JSON summary line on stdout; a failing step
// is recorded under "errors" and the next step still runs; exit code 1 if any step failed.

import { pathToFileURL } from 'node:url';

const nodeModules = process.env.PATCHBAY_NODE_MODULES
  ? pathToFileURL(process.env.PATCHBAY_NODE_MODULES + '/')
  : new URL('../../.tools/npm/node_modules/', import.meta.url);
const sdk = (path) => new URL(`@modelcontextprotocol/sdk/dist/esm/${path}`, nodeModules).href;
const { Client } = await import(sdk('client/index.js'));
const { WebSocketClientTransport } = await import(sdk('client/websocket.js'));

const TIMEOUT = { timeout: 20000 };
const url = process.argv[2];
const summary = { errors: {} };

function structured(result, what) {
  if (result.isError) throw new Error(`${what} returned isError: ${JSON.stringify(result)}`);
  if (typeof result.structuredContent !== 'object' || result.structuredContent === null) {
    throw new Error(`${what} has no structuredContent: ${JSON.stringify(result)}`);
  }
  return result.structuredContent;
}

const step = async (name, body) => {
  try {
    await body();
  } catch (e) {
    summary.errors[name] = String(e?.stack ?? e).slice(0, 3000);
  }
};

const client = new Client({ name: 'ts-sdk-ws', version: '1.0.0' });
const transport = new WebSocketClientTransport(new URL(url));
await step('initialize', async () => {
  await client.connect(transport, TIMEOUT);
  summary.server = client.getServerVersion()?.name;
});
const callTool = (name, args, options = {}) =>
  client.callTool({ name, arguments: args }, undefined, { ...TIMEOUT, ...options });

await step('tools/list', async () => {
  const { tools } = await client.listTools(undefined, TIMEOUT);
  summary.tools = tools.map((t) => t.name).sort();
});
await step('search', async () => {
  const found = structured(await callTool('search', { q: 'echo text back' }), 'search');
  summary.search = (found.results ?? []).map((r) => r.tool);
});
await step('schema', async () => {
  const s = structured(await callTool('schema', { tool: 'fx.echo' }), 'schema');
  summary.schema_tool = s.tool;
});
await step('call', async () => {
  const called = structured(
    await callTool('call', { calls: [{ tool: 'fx.echo', input: { text: 'hello over websocket' } }] }),
    'call',
  );
  const item = called.results[0];
  if (!item.success) throw new Error(`call failed: ${JSON.stringify(item)}`);
  summary.echo = item.result.structuredContent.text;
});
await step('call with progress', async () => {
  summary.progress = 0;
  const called = structured(
    await callTool(
      'call',
      { calls: [{ tool: 'fx.progress', input: { steps: 3, interval_ms: 20 } }] },
      { onprogress: () => summary.progress++ },
    ),
    'call with progress',
  );
  if (!called.results[0].success) throw new Error(`progress call failed: ${JSON.stringify(called)}`);
});
await step('close', async () => {
  await client.close();
});

console.log(JSON.stringify(summary));
process.exit(Object.keys(summary.errors).length === 0 ? 0 : 1);
