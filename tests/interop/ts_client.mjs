// Interop client: the official MCP TypeScript SDK (npm @modelcontextprotocol/sdk) against Patchbay.
//
// Usage (Node 22; the SDK is loaded from .tools/npm, installed by scripts/test-deps, or from
// the node_modules folder named by PATCHBAY_NODE_MODULES):
//   node ts_client.mjs stdio PATCHBAY_BIN CONFIG   spawns `PATCHBAY_BIN stdio --config CONFIG`
//   node ts_client.mjs http URL                    Streamable HTTP to a running `patchbay serve`
//
// Runs the steps of tests/interop/README.md (initialize, tools/list, `list`, `search`,
// `schema`, `call`, resources/read, prompts/get) and prints one JSON summary line on stdout. A
// failing step is recorded under "errors" and the next step still runs; the exit code is 1 if
// any step failed.

import { pathToFileURL } from 'node:url';

const nodeModules = process.env.PATCHBAY_NODE_MODULES
  ? pathToFileURL(process.env.PATCHBAY_NODE_MODULES + '/')
  : new URL('../../.tools/npm/node_modules/', import.meta.url);
const sdk = (path) => new URL(`@modelcontextprotocol/sdk/dist/esm/${path}`, nodeModules).href;
const { Client } = await import(sdk('client/index.js'));
const { StdioClientTransport } = await import(sdk('client/stdio.js'));
const { StreamableHTTPClientTransport } = await import(sdk('client/streamableHttp.js'));

const ECHO = 'demo.echo';
const RESOURCE = 'test://static-text';
const PROMPT = 'conf.test_simple_prompt';
const CLIENT = 'ts-sdk';
const TIMEOUT = { timeout: 20000 };

function structured(result, what) {
  if (result.isError) throw new Error(`${what} returned isError: ${JSON.stringify(result)}`);
  if (typeof result.structuredContent !== 'object' || result.structuredContent === null) {
    throw new Error(`${what} has no structuredContent: ${JSON.stringify(result)}`);
  }
  return result.structuredContent;
}

async function steps(client, transport, summary) {
  const step = async (name, body) => {
    try {
      await body();
    } catch (e) {
      summary.errors[name] = String(e?.stack ?? e).slice(0, 3000);
    }
  };
  const callTool = (name, args) => client.callTool({ name, arguments: args }, undefined, TIMEOUT);

  await step('tools/list', async () => {
    const { tools } = await client.listTools(undefined, TIMEOUT);
    summary.tools = tools.map((t) => t.name).sort();
  });
  await step('list', async () => {
    // The hub serves before its upstreams are ready (their operations appear when they are);
    // wait with `list` until none is still starting, as an agent would.
    const deadline = Date.now() + 15000;
    for (summary.list_polls = 1; ; summary.list_polls++) {
      const listed = structured(await callTool('list', {}), 'list');
      summary.namespaces = Object.fromEntries((listed.namespaces ?? []).map((n) => [n.namespace, n.state]));
      const states = Object.values(summary.namespaces);
      if (states.length > 0 && !states.includes('starting')) return;
      if (Date.now() > deadline) throw new Error(`upstreams still starting after 15 s: ${JSON.stringify(summary.namespaces)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  await step('search', async () => {
    const found = structured(await callTool('search', { q: 'echo' }), 'search');
    summary.search = (found.results ?? []).map((r) => r.tool);
  });
  await step('schema', async () => {
    const s = structured(await callTool('schema', { tool: ECHO }), 'schema');
    summary.schema_tool = s.tool;
    summary.schema_required = s.inputSchema?.required ?? [];
  });
  await step('call', async () => {
    const text = `hello from ${CLIENT} over ${transport}`;
    const called = structured(await callTool('call', { calls: [{ tool: ECHO, input: { text } }] }), 'call');
    const item = called.results[0];
    if (!item.success) throw new Error(`call of ${ECHO} failed: ${JSON.stringify(item)}`);
    summary.echo = item.result.structuredContent.text;
  });
  await step('resources/read', async () => {
    const read = await client.readResource({ uri: RESOURCE }, TIMEOUT);
    summary.resource = read.contents.filter((c) => typeof c.text === 'string').map((c) => c.text);
  });
  await step('prompts/get', async () => {
    const got = await client.getPrompt({ name: PROMPT }, TIMEOUT);
    summary.prompt = got.messages.filter((m) => m.content.type === 'text').map((m) => m.content.text);
  });
}

async function main() {
  const args = process.argv.slice(2);
  let transport;
  if (args.length === 3 && args[0] === 'stdio') {
    transport = new StdioClientTransport({ command: args[1], args: ['stdio', '--config', args[2]], stderr: 'inherit' });
  } else if (args.length === 2 && args[0] === 'http') {
    transport = new StreamableHTTPClientTransport(new URL(args[1]));
  } else {
    console.error('usage: ts_client.mjs stdio PATCHBAY_BIN CONFIG | http URL');
    process.exit(2);
  }
  const summary = { client: CLIENT, transport: args[0], mode: 'legacy', errors: {} };
  // The SDK hands the negotiated version to the transport (HTTP needs it for its header); note it.
  const setVersion = transport.setProtocolVersion?.bind(transport);
  transport.setProtocolVersion = (v) => {
    summary.protocol_version = v;
    setVersion?.(v);
  };
  const client = new Client({ name: 'patchbay-interop-ts', version: '0.0.0' });
  try {
    await client.connect(transport, TIMEOUT);
    summary.server_name = client.getServerVersion()?.name ?? null;
    await steps(client, args[0], summary);
    if (args[0] === 'http') {
      // End the HTTP session explicitly (DELETE), as a well-behaved client does.
      try {
        await transport.terminateSession();
      } catch (e) {
        summary.errors['session DELETE'] = String(e).slice(0, 3000);
      }
    }
  } catch (e) {
    summary.errors.connect = String(e?.stack ?? e).slice(0, 3000);
  } finally {
    await client.close().catch((e) => {
      summary.errors.close = String(e).slice(0, 3000);
    });
  }
  console.log(JSON.stringify(summary));
  process.exit(Object.keys(summary.errors).length ? 1 : 0);
}

await main();
