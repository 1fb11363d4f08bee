// Webhooks end to end: this file ALWAYS starts its own server (target/debug/comnestor, never the
// one COMNESTOR_URL names) with the app's webhook URL pointing at a node:http receiver on an
// ephemeral loopback port, a 50 ms batch window and a 300 ms removal delay. pusher-js clients
// subscribe and leave; the receiver checks every request with the SDK's `verifyWebhook` and
// records the verified events. A missing binary fails the file (startServer throws).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import PusherClient from 'pusher-js';

import { Comnestor, ComnestorWebhookError } from '../dist/index.js';
import { startServer } from './lib/server.js';
import { startAuthApp } from './lib/auth-app.js';
import { waitForEvent, waitUntil } from './lib/wait.js';

const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let n = 0;
const uid = (prefix) => `${prefix}-wh-${RUN}-${++n}`;

// Batching plus the removal delay plus delivery, with a wide margin for slow CI machines.
const WEBHOOK_TIMEOUT_MS = 8000;

let receiver;
let server;
let sdk;
let auth;
const clients = new Set();

// The app's webhook endpoint: verifies each request with verifyWebhook, answers 200 when it is
// authentic and 401 when not, and keeps both.
function startReceiver(verifier) {
  const state = { verified: [], refused: [], requests: [] };
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks);
      const request = { method: req.method, path: req.url, headers: req.headers, body };
      state.requests.push(request);
      try {
        const payload = await verifier().verifyWebhook({ headers: req.headers, body }, { toleranceMs: 5 * 60_000 });
        state.verified.push({ ...request, payload });
        res.writeHead(200).end();
      } catch (err) {
        state.refused.push({ ...request, error: err });
        res.writeHead(401).end(String(err?.message ?? err));
      }
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      resolve({
        ...state,
        port,
        url: `http://127.0.0.1:${port}/webhooks/comnestor`,
        events: () => state.verified.flatMap((r) => r.payload.events.map((event) => ({ event, request: r }))),
        close: () =>
          new Promise((r) => {
            srv.closeAllConnections?.();
            srv.close(() => r());
          }),
      });
    });
  });
}

// Waits for a verified event matching `match`; returns it with the request that carried it.
async function waitForWebhook(label, match, timeoutMs = WEBHOOK_TIMEOUT_MS) {
  try {
    return await waitUntil(() => receiver.events().find(({ event }) => match(event)), `a verified ${label} webhook`, timeoutMs);
  } catch (err) {
    const refused = receiver.refused.map((r) => `${r.error?.reason ?? r.error}: ${r.body}`);
    err.message +=
      ` (${receiver.requests.length} webhook requests received, ${refused.length} refused: ${JSON.stringify(refused)}; ` +
      `verified events: ${JSON.stringify(receiver.events().map((e) => e.event))})\nserver output:\n${server.log.join('')}`;
    throw err;
  }
}

before(async () => {
  receiver = await startReceiver(() => sdk);
  server = await startServer({
    dedicated: true,
    env: {
      COMNESTOR_APP_WEBHOOK_URL: receiver.url,
      COMNESTOR_WEBHOOK_BATCH_MS: '50',
      COMNESTOR_WEBHOOK_REMOVAL_DELAY_MS: '300',
      COMNESTOR_WEBHOOK_MAX_ATTEMPTS: '3',
      COMNESTOR_WEBHOOK_BACKOFF_MS: '100',
    },
  });
  assert.equal(server.external, false, 'the webhook test runs its own server');
  sdk = new Comnestor({ appId: server.appId, key: server.key, secret: server.secret, baseUrl: server.url });
  auth = await startAuthApp(sdk);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await auth?.close();
  await server?.stop();
  await receiver?.close();
});

async function connect({ userId } = {}) {
  const url = new URL(server.url);
  const params = userId === undefined ? {} : { user_id: userId };
  const client = new PusherClient(server.key, {
    cluster: 'mt1',
    wsHost: url.hostname,
    wsPort: Number(url.port),
    wssPort: Number(url.port),
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: { endpoint: auth.channelAuthEndpoint, transport: 'ajax', params },
  });
  clients.add(client);
  if (client.connection.state !== 'connected') await waitForEvent(client.connection, 'connected');
  return client;
}

async function subscribe(client, name) {
  const channel = client.subscribe(name);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`subscription to ${name} timed out`)), 5000);
    channel.bind('pusher:subscription_succeeded', () => {
      clearTimeout(timer);
      resolve();
    });
    channel.bind('pusher:subscription_error', (e) => {
      clearTimeout(timer);
      reject(new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`));
    });
  });
  return channel;
}

function assertNothingRefused() {
  // Tampered requests this file sends itself carry a marker header; anything else refused is
  // a webhook from the server that did not verify.
  const fromServer = receiver.refused.filter((r) => !r.headers['x-test-tampered']);
  assert.deepEqual(
    fromServer.map((r) => `${r.error?.reason}: ${r.error?.message} (body ${r.body})`),
    [],
    'every webhook the server sent passed verifyWebhook',
  );
}

test('channel_occupied, then channel_vacated after unsubscribe, each verified by verifyWebhook', async (t) => {
  const client = await connect();
  const name = uid('orders');
  await subscribe(client, name);

  const occupied = await waitForWebhook(`channel_occupied ${name}`, (e) => e.name === 'channel_occupied' && e.channel === name);
  assert.deepEqual(occupied.event, { name: 'channel_occupied', channel: name });
  // The request as §4 says: exact headers, the app key, time_ms when the webhook was created.
  assert.equal(occupied.request.method, 'POST');
  assert.equal(occupied.request.path, '/webhooks/comnestor');
  assert.equal(occupied.request.headers['content-type'], 'application/json');
  assert.equal(occupied.request.headers['x-pusher-key'], server.key);
  assert.match(occupied.request.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
  assert.ok(Math.abs(Date.now() - occupied.request.payload.time_ms) < 60_000, 'time_ms is recent');

  const unsubscribedAt = Date.now();
  client.unsubscribe(name);
  const vacated = await waitForWebhook(`channel_vacated ${name}`, (e) => e.name === 'channel_vacated' && e.channel === name);
  assert.deepEqual(vacated.event, { name: 'channel_vacated', channel: name });
  t.diagnostic(`channel_vacated arrived ${Date.now() - unsubscribedAt} ms after unsubscribe (removal delay 300 ms)`);
  assertNothingRefused();
});

test('a presence channel: member_added with the user_id, then member_removed and channel_vacated after disconnect', async () => {
  const userId = `u-${RUN}`;
  const client = await connect({ userId });
  const name = uid('presence-room');
  await subscribe(client, name);

  const added = await waitForWebhook(`member_added ${name}`, (e) => e.name === 'member_added' && e.channel === name);
  assert.deepEqual(added.event, { name: 'member_added', channel: name, user_id: userId });
  await waitForWebhook(`channel_occupied ${name}`, (e) => e.name === 'channel_occupied' && e.channel === name);

  client.disconnect();
  clients.delete(client);
  const removed = await waitForWebhook(`member_removed ${name}`, (e) => e.name === 'member_removed' && e.channel === name);
  assert.deepEqual(removed.event, { name: 'member_removed', channel: name, user_id: userId });
  await waitForWebhook(`channel_vacated ${name}`, (e) => e.name === 'channel_vacated' && e.channel === name);
  assertNothingRefused();
});

test('a tampered webhook body is refused by verifyWebhook (invalid_signature)', async () => {
  const client = await connect();
  const name = uid('tamper');
  await subscribe(client, name);
  const { request } = await waitForWebhook(`channel_occupied ${name}`, (e) => e.name === 'channel_occupied' && e.channel === name);
  const original = request.body.toString('utf8');
  const tampered = original.replace(name, `${name}-forged`);
  assert.notEqual(tampered, original);

  // The genuine request verifies; the same headers over an altered body do not.
  await sdk.verifyWebhook({ headers: request.headers, body: request.body });
  await assert.rejects(
    sdk.verifyWebhook({ headers: request.headers, body: tampered }),
    (err) => err instanceof ComnestorWebhookError && err.reason === 'invalid_signature',
  );
  const signed = {
    'content-type': request.headers['content-type'],
    'x-pusher-key': request.headers['x-pusher-key'],
    'x-pusher-signature': request.headers['x-pusher-signature'],
  };
  // A fetch Request too (Hono, Workers, Next.js).
  await assert.rejects(
    sdk.verifyWebhook(new Request(receiver.url, { method: 'POST', headers: signed, body: tampered })),
    (err) => err instanceof ComnestorWebhookError && err.reason === 'invalid_signature',
  );

  // And over HTTP: the receiver answers 401 and records the refusal, not the forged event.
  const headers = { ...signed, 'x-test-tampered': '1' };
  const res = await fetch(receiver.url, { method: 'POST', headers, body: tampered });
  assert.equal(res.status, 401);
  const refused = receiver.refused.find((r) => r.headers['x-test-tampered'] && r.body.toString('utf8') === tampered);
  assert.ok(refused, 'the tampered request was refused');
  assert.equal(refused.error.reason, 'invalid_signature');
  assert.ok(!receiver.events().some(({ event }) => event.channel === `${name}-forged`), 'the forged event was not accepted');
  assertNothingRefused();
});

test('verifyWebhook over a Node Buffer that shares its pool (express.raw(), Buffer.concat) hashes only its bytes', async () => {
  // §7 V10. A small Buffer.from() lives in Node's shared 8 KB pool: its .buffer holds other bytes.
  const body = Buffer.from('{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}');
  assert.ok(body.byteOffset > 0 || body.buffer.byteLength > body.byteLength, 'the Buffer is a view into a larger pool');
  const headers = { 'x-pusher-key': '123456789', 'x-pusher-signature': 'c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5', 'content-type': 'application/json' };
  const v10 = new Comnestor({ appId: '1', key: '123456789', secret: 'tofu', baseUrl: 'http://127.0.0.1:9' });
  const payload = await v10.verifyWebhook({ headers, body });
  assert.deepEqual(payload.events, [{ channel: 'test_channel', name: 'channel_vacated' }]);
});
