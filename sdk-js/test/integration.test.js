// Against a real server (see lib/server.js): publish through POST /api/events and through the
// Pusher HTTP API and receive with pusher-js; authorize private, presence and encrypted channels
// for pusher-js through a Hono auth endpoint; the event log, history and replay; user sign-in,
// sendToUser and terminate; typed errors from the real server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import PusherClient from 'pusher-js';
import nacl from 'tweetnacl';

import { Comnestor, ComnestorApiError } from '../dist/index.js';
import { startServer } from './lib/server.js';
import { startAuthApp } from './lib/auth-app.js';
import { waitForEvent, waitUntil } from './lib/wait.js';

const MASTER_KEY = randomBytes(32).toString('base64');
const RUN = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
let n = 0;
const uid = (prefix) => `${prefix}-${RUN}-${++n}`;

let server;
let sdk;
let signedSdk;
let auth;
const clients = new Set();
const latencies = { sendEvent: [], trigger: [] };

before(async () => {
  server = await startServer();
  const options = { appId: server.appId, key: server.key, secret: server.secret, baseUrl: server.url, encryptionMasterKeyBase64: MASTER_KEY };
  sdk = new Comnestor(options);
  signedSdk = new Comnestor({ ...options, apiAuth: 'signature' });
  auth = await startAuthApp(sdk);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await auth?.close();
  await server?.stop();
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const report = (t, kind) =>
  t.diagnostic(`${kind} → pusher-js: median ${median(latencies[kind]).toFixed(1)} ms, max ${Math.max(...latencies[kind]).toFixed(1)} ms over ${latencies[kind].length} events`);

// A connected pusher-js client, configured as the README shows for Node.
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
    nacl,
    channelAuthorization: { endpoint: auth.channelAuthEndpoint, transport: 'ajax', params },
    userAuthentication: { endpoint: auth.userAuthEndpoint, transport: 'ajax', params },
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

async function timed(kind, publish, receive) {
  const start = performance.now();
  await Promise.all([publish(), receive]);
  latencies[kind].push(performance.now() - start);
  return receive;
}

test('sendEvent (POST /api/events, HTTP Basic) reaches pusher-js', async (t) => {
  const client = await connect();
  const name = uid('orders');
  const channel = await subscribe(client, name);
  for (let i = 0; i < 20; i++) {
    const got = waitForEvent(channel, 'order.created', 5000, (d) => d.i === i);
    await timed('sendEvent', () => sdk.sendEvent({ channel: name, event: 'order.created', data: { i, total: 12.5, note: 'zażółć' } }), got);
    assert.deepEqual(await got, { i, total: 12.5, note: 'zażółć' });
  }
  report(t, 'sendEvent');
});

test('sendEvent with apiAuth "signature" reaches pusher-js, and a string is relayed as is', async () => {
  const client = await connect();
  const name = uid('signed');
  const channel = await subscribe(client, name);
  const got = waitForEvent(channel, 'App\\Events\\OrderShipped');
  const accepted = await signedSdk.sendEvent({ channels: [name], event: 'App\\Events\\OrderShipped', data: 'plain text' });
  assert.match(accepted.id, /\S/);
  assert.equal(await got, 'plain text');
});

test('trigger (POST /apps/{id}/events, signed) reaches pusher-js on several channels', async (t) => {
  const client = await connect();
  const [a, b] = [uid('a'), uid('b')];
  const [chA, chB] = [await subscribe(client, a), await subscribe(client, b)];
  for (let i = 0; i < 20; i++) {
    const got = Promise.all([waitForEvent(chA, 'ping', 5000, (d) => d.i === i), waitForEvent(chB, 'ping', 5000, (d) => d.i === i)]);
    await timed('trigger', () => sdk.trigger([a, b], 'ping', { i }), got);
  }
  report(t, 'trigger');
  const res = await sdk.trigger(a, 'ping', { i: 99 }, { info: 'subscription_count' });
  assert.deepEqual(res, { channels: { [a]: { subscription_count: 1 } } });
});

test('trigger with socket_id leaves the sender out', async () => {
  const [sender, other] = [await connect(), await connect()];
  const name = uid('excl');
  const [chS, chO] = [await subscribe(sender, name), await subscribe(other, name)];
  let senderGot = 0;
  chS.bind('note', () => senderGot++);
  const got = waitForEvent(chO, 'note');
  await sdk.trigger(name, 'note', { x: 1 }, { socket_id: sender.connection.socket_id });
  await got;
  // A fence on the same channel: once it arrives, the excluded event would have too.
  const fence = waitForEvent(chS, 'fence');
  await sdk.trigger(name, 'fence', {});
  await fence;
  assert.equal(senderGot, 0);
});

test('triggerBatch delivers every item', async () => {
  const client = await connect();
  const [a, b] = [uid('batch-a'), uid('batch-b')];
  const [chA, chB] = [await subscribe(client, a), await subscribe(client, b)];
  const got = Promise.all([waitForEvent(chA, 'one'), waitForEvent(chB, 'two')]);
  const res = await sdk.triggerBatch([
    { channel: a, name: 'one', data: { n: 1 } },
    { channel: b, name: 'two', data: 'two', info: 'subscription_count' },
  ]);
  assert.deepEqual(await got, [{ n: 1 }, 'two']);
  assert.deepEqual(res.batch?.[1], { subscription_count: 1 });
});

test('idempotency key: a retry returns the first event; a different request with it is a 409 problem', async () => {
  const name = uid('idem');
  const key = randomUUID();
  const first = await sdk.sendEvent({ channel: name, event: 'e', data: { n: 1 } }, { idempotencyKey: key });
  const again = await sdk.sendEvent({ channel: name, event: 'e', data: { n: 1 } }, { idempotencyKey: key });
  assert.equal(again.id, first.id);
  const err = await sdk.sendEvent({ channel: name, event: 'e', data: { n: 2 } }, { idempotencyKey: key }).catch((e) => e);
  assert.ok(err instanceof ComnestorApiError, String(err));
  assert.equal(err.status, 409);
  assert.equal(err.operation, 'sendEvent');
  assert.equal(err.problem?.status, 409);
  assert.match(err.problem?.detail ?? '', /Idempotency-Key/);
  const page = await sdk.listEvents({ channel: name });
  assert.equal(page.events.length, 1, 'only one event was logged');
});

test('the event log: getEvent, listEvents, iterateEvents, channelHistory and replayEvent', async () => {
  const client = await connect();
  const name = uid('log');
  const channel = await subscribe(client, name);
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await sdk.sendEvent({ channel: name, event: 'step', data: { i } })).id);

  const record = await waitUntil(async () => {
    const r = await sdk.getEvent(ids[0]);
    return r.status === 'delivered' ? r : undefined;
  }, 'the first event to be delivered');
  assert.deepEqual(record.channels, [name]);
  assert.equal(record.event, 'step');
  assert.equal(record.data, '{"i":0}');
  assert.ok(record.stages.received_at <= record.stages.logged_at);
  assert.ok(Array.isArray(record.attempt_log) && record.attempt_log.length >= 1);

  const page = await signedSdk.listEvents({ channel: name, limit: 2 });
  assert.deepEqual(page.events.map((e) => e.id), ids.slice(0, 2));
  assert.ok(page.next_cursor, 'a second page exists');
  const all = [];
  for await (const e of sdk.iterateEvents({ channel: name, limit: 1 })) all.push(e.id);
  assert.deepEqual(all, ids);

  const history = await sdk.channelHistory(name, { since_id: ids[0] });
  assert.equal(history.channel, name);
  assert.deepEqual(history.events.map((e) => e.id), ids.slice(1));

  const replayed = waitForEvent(channel, 'step', 5000, (d) => d.i === 0);
  const replay = await sdk.replayEvent(ids[0]);
  assert.notEqual(replay.id, ids[0]);
  await replayed;
  assert.equal((await sdk.getEvent(replay.id)).replay_of, ids[0]);
});

test('private channel: pusher-js is authorized by authorizeChannel', async () => {
  const client = await connect();
  const name = uid('private-orders');
  const channel = await subscribe(client, name);
  const got = waitForEvent(channel, 'secret');
  await sdk.sendEvent({ channel: name, event: 'secret', data: { ok: true } });
  assert.deepEqual(await got, { ok: true });
  assert.ok(auth.requests.some((r) => r.path === '/pusher/auth' && r.status === 200));
});

test('private channel: a refused auth keeps pusher-js out', async () => {
  const url = new URL(server.url);
  const client = new PusherClient(server.key, {
    cluster: 'mt1', wsHost: url.hostname, wsPort: Number(url.port), forceTLS: false, enabledTransports: ['ws'],
    channelAuthorization: { endpoint: auth.channelAuthEndpoint, transport: 'ajax', params: { deny: '1' } },
  });
  clients.add(client);
  const err = await waitForEvent(client.subscribe(uid('private-nope')), 'pusher:subscription_error');
  assert.equal(err.status, 403);
});

test('presence channel: members, users(), channels() and channel() agree', async () => {
  const name = uid('presence-room');
  const [alice, bob] = [await connect({ userId: 'alice' }), await connect({ userId: 'bob' })];
  const chA = await subscribe(alice, name);
  const added = waitForEvent(chA, 'pusher:member_added');
  const chB = await subscribe(bob, name);
  assert.equal((await added).id, 'bob');
  assert.equal(chB.members.count, 2);
  assert.deepEqual(chB.members.get('alice').info, { name: 'User alice' });

  const users = await sdk.users(name);
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob']);
  const list = await sdk.channels({ filter_by_prefix: 'presence-', info: 'user_count' });
  assert.equal(list.channels[name]?.user_count, 2);
  const one = await sdk.channel(name, { info: 'user_count,subscription_count' });
  assert.deepEqual(one, { occupied: true, user_count: 2, subscription_count: 2 });
  assert.deepEqual(await sdk.channel(uid('empty')), { occupied: false });
});

test('encrypted channel: pusher-js decrypts events from trigger and from sendEvent; the server only sees ciphertext', async () => {
  const client = await connect();
  const name = uid('private-encrypted-vault');
  const channel = await subscribe(client, name);
  const payload = { secret: 'the eagle lands at dawn', list: ['ä', 'ß', '€'] };

  const raw = [];
  client.connection.bind('message', (m) => m.channel === name && raw.push(m));
  let got = waitForEvent(channel, 'classified');
  await sdk.trigger(name, 'classified', payload);
  assert.deepEqual(await got, payload);

  got = waitForEvent(channel, 'classified');
  const accepted = await sdk.sendEvent({ channel: name, event: 'classified', data: payload });
  assert.deepEqual(await got, payload);

  const stored = await sdk.getEvent(accepted.id);
  assert.deepEqual(Object.keys(JSON.parse(stored.data)), ['nonce', 'ciphertext']);
  assert.doesNotMatch(stored.data, /eagle/);
  assert.deepEqual(await sdk.decryptEvent(name, stored.data), payload);
  for (const m of raw) assert.doesNotMatch(JSON.stringify(m), /eagle/, 'the wire carries ciphertext only');
});

test('user sign-in: authenticateUser and sendToUser reach the signed-in pusher-js user only', async () => {
  const userId = uid('user');
  const client = await connect({ userId });
  const bystander = await connect({ userId: uid('other') });
  for (const c of [client, bystander]) {
    c.signin();
    await waitUntil(() => c.user.serverToUserChannel?.subscribed, 'the #server-to-user- subscription');
  }
  assert.equal(client.user.user_data.id, userId);
  let bystanderGot = 0;
  bystander.user.bind('notification', () => bystanderGot++);
  const got = waitForEvent(client.user, 'notification');
  await sdk.sendToUser(userId, 'notification', { text: 'hi' });
  assert.deepEqual(await got, { text: 'hi' });
  assert.equal(bystanderGot, 0);
});

test('terminateUserConnections disconnects that user\'s pusher-js connection', async (t) => {
  const userId = uid('victim');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./lib/signed-in-client.mjs', import.meta.url)), server.url, server.key, auth.userAuthEndpoint, userId], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGKILL'));
  const lines = [];
  const seen = (pred, label) =>
    waitUntil(() => lines.find(pred), label);
  createInterface({ input: child.stdout }).on('line', (l) => lines.push(JSON.parse(l)));
  await seen((m) => m.signedIn === userId, 'the child to sign in');
  const bystander = await connect({ userId: uid('bystander') });
  assert.deepEqual(await sdk.terminateUserConnections(userId), {});
  await seen((m) => m.state === 'disconnected', 'the terminated connection to disconnect');
  assert.equal(bystander.connection.state, 'connected');
});

test('errors from the real server are typed', async () => {
  const wrong = new Comnestor({ appId: server.appId, key: server.key, secret: 'wrong-secret', baseUrl: server.url });
  const e1 = await wrong.sendEvent({ channel: 'x', event: 'e', data: 1 }).catch((e) => e);
  assert.ok(e1 instanceof ComnestorApiError);
  assert.equal(e1.status, 401);
  assert.equal(e1.problem?.status, 401);
  assert.equal(e1.operation, 'sendEvent');

  const e2 = await wrong.trigger('x', 'e', 1).catch((e) => e);
  assert.ok(e2 instanceof ComnestorApiError);
  assert.equal(e2.status, 401);
  assert.equal(e2.problem, undefined);
  assert.ok(e2.serverMessage.length > 0);
  assert.equal(e2.operation, 'trigger');

  const e3 = await sdk.getEvent('no-such-event').catch((e) => e);
  assert.ok(e3 instanceof ComnestorApiError);
  assert.ok([400, 404].includes(e3.status), `status ${e3.status}`);
  assert.equal(e3.problem?.status, e3.status);
  assert.equal(e3.operation, 'getEvent');

  const e4 = await sdk.channel('presence-x', { info: 'cache,bogus' }).catch((e) => e);
  assert.equal(e4.status, 400);
  assert.equal(e4.operation, 'channel');
});
