// Cross-checks against the official `pusher` npm package (pusher-http-node): the same calls
// produce the same requests and signatures, the same auth answers, webhooks either side accepts,
// and encrypted data either side decrypts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Pusher from 'pusher';
import nacl from 'tweetnacl';

import { Comnestor, signRequest, signWebhook, verifyWebhook, ComnestorWebhookError } from '../dist/index.js';
import { startRecorder } from './lib/recorder.js';

const APP = { appId: '3', key: '278d425bdf160c739803', secret: '7ad3773142a6692b25b8' };
const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');
let recorder;
let official;
let ours;

before(async () => {
  recorder = await startRecorder(() => ({ status: 200, body: '{}' }));
  official = new Pusher({ ...APP, host: '127.0.0.1', port: String(recorder.port), useTLS: false, encryptionMasterKeyBase64: MASTER_KEY });
  ours = new Comnestor({ ...APP, baseUrl: recorder.url, encryptionMasterKeyBase64: MASTER_KEY });
});
after(() => recorder.close());

// Runs the same call through both SDKs and returns the two recorded requests.
async function both(callOfficial, callOurs) {
  const start = recorder.requests.length;
  await callOfficial(official);
  await callOurs(ours);
  assert.equal(recorder.requests.length, start + 2);
  return recorder.requests.slice(start);
}

function withoutAuth(query) {
  return query.filter(([k]) => !['auth_timestamp', 'auth_signature'].includes(k)).sort(([a], [b]) => (a < b ? -1 : 1));
}

// Re-signs `req` with our signRequest at its own timestamp and checks the signature.
async function assertSignedLikeOfficial(req) {
  const q = Object.fromEntries(req.query);
  const params = req.query.filter(([k]) => !['auth_key', 'auth_timestamp', 'auth_version', 'auth_signature', 'body_md5'].includes(k));
  const signed = await signRequest({
    key: APP.key,
    secret: APP.secret,
    method: req.method,
    path: req.rawPath,
    params,
    body: q.body_md5 === undefined ? null : req.body,
    timestamp: Number(q.auth_timestamp),
  });
  assert.equal(signed.bodyMd5, q.body_md5);
  assert.equal(signed.authSignature, q.auth_signature, `signature of ${req.method} ${req.rawPath}`);
}

const cases = [
  ['trigger, one channel', (p) => p.trigger('my-channel', 'my-event', { hello: 'wörld' }), (c) => c.trigger('my-channel', 'my-event', { hello: 'wörld' })],
  [
    'trigger, several channels with socket_id and info',
    (p) => p.trigger(['a', 'presence-b'], 'ev', 'already a string', { socket_id: '123.456', info: 'user_count,subscription_count' }),
    (c) => c.trigger(['a', 'presence-b'], 'ev', 'already a string', { socket_id: '123.456', info: 'user_count,subscription_count' }),
  ],
  [
    'triggerBatch',
    (p) => p.triggerBatch([{ channel: 'a', name: 'e1', data: { n: 1 } }, { channel: 'b', name: 'e2', data: 'x', info: 'subscription_count' }]),
    (c) => c.triggerBatch([{ channel: 'a', name: 'e1', data: { n: 1 } }, { channel: 'b', name: 'e2', data: 'x', info: 'subscription_count' }]),
  ],
  [
    'channels with filter and info',
    (p) => p.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }),
    (c) => c.channels({ filter_by_prefix: 'presence-', info: 'user_count' }),
  ],
  ['channel', (p) => p.get({ path: '/channels/presence-room', params: { info: 'user_count,subscription_count' } }), (c) => c.channel('presence-room', { info: 'user_count,subscription_count' })],
  ['users', (p) => p.get({ path: '/channels/presence-room/users' }), (c) => c.users('presence-room')],
  ['terminateUserConnections', (p) => p.terminateUserConnections('user-42'), (c) => c.terminateUserConnections('user-42')],
  ['sendToUser', (p) => p.sendToUser('user-42', 'note', { text: 'hi' }), (c) => c.sendToUser('user-42', 'note', { text: 'hi' })],
];

for (const [name, callOfficial, callOurs] of cases) {
  test(`same request as pusher-http-node: ${name}`, async () => {
    const [theirs, mine] = await both(callOfficial, callOurs);
    assert.equal(mine.method, theirs.method);
    assert.equal(mine.path, theirs.path);
    assert.equal(mine.body, theirs.body, 'identical body bytes');
    assert.deepEqual(withoutAuth(mine.query), withoutAuth(theirs.query));
    await assertSignedLikeOfficial(theirs);
    await assertSignedLikeOfficial(mine);
  });
}

test('trigger on an encrypted channel: pusher-http-node can decrypt ours and we can decrypt theirs', async () => {
  const channel = 'private-encrypted-secret';
  const [theirs, mine] = await both(
    (p) => p.trigger(channel, 'ev', { msg: 'zażółć' }),
    (c) => c.trigger(channel, 'ev', { msg: 'zażółć' }),
  );
  const key = official.channelSharedSecret(channel);
  for (const req of [theirs, mine]) {
    const body = JSON.parse(req.body);
    assert.deepEqual(body.channels, [channel]);
    const { nonce, ciphertext } = JSON.parse(body.data);
    const plain = nacl.secretbox.open(Buffer.from(ciphertext, 'base64'), Buffer.from(nonce, 'base64'), key);
    assert.ok(plain, 'decrypts with the official shared secret');
    assert.deepEqual(JSON.parse(Buffer.from(plain).toString('utf8')), { msg: 'zażółć' });
    assert.deepEqual(await ours.decryptEvent(channel, body.data), { msg: 'zażółć' });
  }
  await assert.rejects(ours.trigger([channel, 'other'], 'ev', {}), { name: 'ComnestorEncryptionError' });
});

test('authorizeChannel and authenticateUser answer exactly what pusher-http-node answers', async () => {
  const socket = '1234.5678';
  for (const channel of ['private-orders', 'private-encrypted-orders']) {
    assert.deepEqual(await ours.authorizeChannel(socket, channel), official.authorizeChannel(socket, channel));
  }
  const member = { user_id: 'u-1', user_info: { name: 'Zoë', roles: ['admin'] } };
  assert.deepEqual(await ours.authorizeChannel(socket, 'presence-room', member), official.authorizeChannel(socket, 'presence-room', member));
  const numeric = { user_id: 10 };
  assert.deepEqual(await ours.authorizeChannel(socket, 'presence-room', numeric), official.authorizeChannel(socket, 'presence-room', numeric));
  const user = { id: 'u-1', user_info: { name: 'Zoë' }, watchlist: ['u-2', 'u-3'] };
  assert.deepEqual(await ours.authenticateUser(socket, user), official.authenticateUser(socket, user));
});

test('webhooks: bodies signed the way pusher signs them verify here, and ours verify in pusher-http-node', async () => {
  const body = JSON.stringify({
    time_ms: Date.now(),
    events: [
      { name: 'channel_occupied', channel: 'presence-room' },
      { name: 'member_added', channel: 'presence-room', user_id: 'u-1' },
      { name: 'client_event', channel: 'private-chat', event: 'client-typing', data: '{"text":"€"}', socket_id: '1.2' },
    ],
  });
  // The official SDK's own token signs webhook bodies (HMAC-SHA256 of the raw body).
  const signature = official.config.token.sign(body);
  const headers = { 'x-pusher-key': APP.key, 'x-pusher-signature': signature, 'content-type': 'application/json' };
  const payload = await ours.verifyWebhook({ headers, body });
  assert.equal(payload.events.length, 3);
  assert.equal(payload.events[1].user_id, 'u-1');
  assert.equal(official.webhook({ headers, rawBody: body }).isValid(), true);

  // And a fetch Request, as Hono or Workers hand it over.
  const request = new Request('http://127.0.0.1/webhooks', { method: 'POST', headers, body });
  assert.deepEqual(await ours.verifyWebhook(request), payload);

  // Our signWebhook produces headers pusher-http-node accepts.
  const mine = await signWebhook(APP, body);
  const lower = Object.fromEntries(Object.entries(mine).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(official.webhook({ headers: lower, rawBody: body }).isValid(), true);
});

test('webhooks: whatever pusher-http-node refuses, verifyWebhook refuses too, with a reason', async () => {
  const body = '{"time_ms":1403175510755,"events":[{"channel":"test_channel","name":"channel_vacated"}]}';
  const good = official.config.token.sign(body);
  const base = { 'x-pusher-key': APP.key, 'x-pusher-signature': good, 'content-type': 'application/json' };
  const bad = [
    ['tampered body', base, body.replace('vacated', 'occupied'), 'invalid_signature'],
    ['wrong secret', { ...base, 'x-pusher-signature': new Pusher({ ...APP, secret: 'other' }).config.token.sign(body) }, body, 'invalid_signature'],
    ['wrong key', { ...base, 'x-pusher-key': 'someone-else' }, body, 'unknown_key'],
    ['no signature', { 'x-pusher-key': APP.key, 'content-type': 'application/json' }, body, 'missing_signature'],
    ['not JSON content type', { ...base, 'content-type': 'text/plain' }, body, 'invalid_content_type'],
  ];
  for (const [label, headers, rawBody, reason] of bad) {
    let officialValid;
    try {
      officialValid = official.webhook({ headers, rawBody }).isValid();
    } catch {
      officialValid = false; // pusher-http-node throws on a missing signature
    }
    assert.equal(officialValid, false, `pusher-http-node refuses: ${label}`);
    await assert.rejects(ours.verifyWebhook({ headers, body: rawBody }), (err) => {
      assert.ok(err instanceof ComnestorWebhookError, label);
      assert.equal(err.reason, reason, label);
      assert.equal(err.operation, 'verifyWebhook');
      return true;
    });
  }
  // A parsed body (express.json()) is refused with a clear message instead of a bad signature.
  await assert.rejects(ours.verifyWebhook({ headers: base, body: JSON.parse(body) }), { reason: 'invalid_body', message: /raw/ });
  // Freshness check, opt-in.
  await assert.rejects(verifyWebhook(APP, { headers: base, body }, { toleranceMs: 300_000 }), { reason: 'expired' });
  await verifyWebhook(APP, { headers: base, body }, { toleranceMs: 300_000, now: 1403175510755 + 1000 });
});

test('webhooks: a rotated-out key still verifies when listed in webhookCredentials', async () => {
  const old = { key: 'old-key', secret: 'old-secret' };
  const c = new Comnestor({ ...APP, baseUrl: recorder.url, webhookCredentials: [old] });
  const body = '{"time_ms":1,"events":[]}';
  await c.verifyWebhook({ headers: await signWebhook(old, body), body });
  await assert.rejects(ours.verifyWebhook({ headers: await signWebhook(old, body), body }), { reason: 'unknown_key' });
});
