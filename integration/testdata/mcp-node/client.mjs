// The official MCP TypeScript SDK as an MCP client of a server behind
// oauth_protect, for integration/mcp_test.go. It connects, gets the 401,
// discovers the protected resource metadata and the authorization
// server, registers itself there (RFC 7591: nothing is configured for it
// in advance; the SDK reads registration_endpoint from the metadata),
// and starts the code flow with PKCE and `resource`: it prints the
// authorization URL ("AUTHORIZE <url>") for the test to open in
// Chromium, waits for the browser at its loopback callback, finishes the
// flow and calls the tools through the gate. Every line it prints is one
// event for the test: HTTP <method> <url> <status> [<WWW-Authenticate>],
// REGISTERED <json of the client information, secrets left out>,
// AUTHORIZE <url>, CALLBACK <json>, TOKEN <json of the access token's
// claims>, RESULT <json>, ERROR <text>.
//
//   node client.mjs <mcp-server-url> <callback-port>
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverUrl, callbackPort] = process.argv.slice(2);
const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
const say = (kind, v) => process.stdout.write(`${kind} ${typeof v === 'string' ? v : JSON.stringify(v)}\n`);

// Every request the SDK makes, with its answer: the test checks the
// discovery and the challenges from these.
const loggingFetch = async (url, init) => {
  const res = await fetch(url, init);
  const www = res.headers.get('www-authenticate');
  say('HTTP', `${init?.method ?? 'GET'} ${url} ${res.status}${www ? ' ' + www : ''}`);
  return res;
};

// An in-memory OAuthClientProvider with no client information up front:
// the SDK registers the client (the metadata below, with the scope it
// chose) and hands what it got to saveClientInformation, which keeps it
// unchanged (the SDK stamps it with the issuer and drops the RFC 7592
// registration_access_token) for the rest of the flow.
const stateValue = crypto.randomUUID();
const store = {};
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return { client_name: 'oauthgate MCP test', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  state() { return stateValue; },
  clientInformation() { return store.client; },
  saveClientInformation(info) {
    store.client = info;
    const { client_secret, ...shown } = info;
    say('REGISTERED', { ...shown, has_secret: client_secret !== undefined });
  },
  tokens() { return store.tokens; },
  saveTokens(t) { store.tokens = t; },
  redirectToAuthorization(url) { say('AUTHORIZE', url.href); },
  saveCodeVerifier(v) { store.verifier = v; },
  codeVerifier() { return store.verifier; },
};

// The loopback redirect target (RFC 8252 §7.3): the browser brings the
// code here.
const code = new Promise((resolve, reject) => {
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, redirectUrl);
    if (u.pathname !== '/callback') { res.writeHead(404).end(); return; }
    const ok = u.searchParams.get('code') && u.searchParams.get('state') === stateValue;
    res.writeHead(ok ? 200 : 400, { 'Content-Type': 'text/plain' }).end(ok ? 'signed in, back to the MCP client' : 'sign-in failed');
    srv.close();
    if (ok) resolve({ code: u.searchParams.get('code'), iss: u.searchParams.get('iss') });
    else reject(new Error(`callback without code or with the wrong state: ${u.search.replace(/code=[^&]*/, 'code=…')}`));
  });
  srv.listen(Number(callbackPort), '127.0.0.1');
});

const connect = async () => {
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: loggingFetch });
  const client = new Client({ name: 'oauthgate-mcp-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
};

try {
  let first;
  try {
    await connect();
    throw new Error('connected without signing in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    first = e;
  }
  const { code: authCode, iss } = await code;
  say('CALLBACK', { iss });
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider, fetch: loggingFetch });
  await transport.finishAuth(authCode);
  const at = store.tokens.access_token;
  say('TOKEN', JSON.parse(Buffer.from(at.split('.')[1], 'base64url').toString()));
  const { client } = await connect();
  const tools = await client.listTools();
  const whoami = await client.callTool({ name: 'whoami', arguments: {} });
  const add = await client.callTool({ name: 'add', arguments: { a: 2, b: 40 } });
  say('RESULT', { tools: tools.tools.map((t) => t.name).sort(), whoami: whoami.structuredContent, add: add.structuredContent,
    first: first.message });
  await client.close();
  process.exit(0);
} catch (e) {
  say('ERROR', String(e?.stack ?? e));
  process.exit(1);
}
