import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe } from '../lib/harness.js';
import { waitFor, record } from '../lib/wait.js';

const h = await createHarness();

test('encrypted channel: SDK-encrypted event is decrypted by pusher-js to the plaintext object', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('private-encrypted-vault');
  const channel = await subscribe(client, name);

  // The auth endpoint handed out a shared_secret (never sent to the server).
  const authCall = h.auth.requests.find((r) => r.path === '/pusher/auth' && r.body.channel_name === name);
  assert.ok(authCall?.response?.shared_secret, 'auth response must carry shared_secret');

  // Watch the raw frames: on the wire the data must be {nonce, ciphertext}.
  const raw = record(client.connection, 'message');
  const payload = { secret: 'the eagle lands at dawn', n: 3, list: ['ä', 'ß'] };
  const got = waitFor(channel, 'classified');
  const res = await h.sdk.trigger(name, 'classified', payload);
  assert.equal(res.status, 200);
  assert.deepEqual(await got, payload);

  const frame = raw.items.map((i) => i.data).find((m) => m.event === 'classified');
  assert.ok(frame, 'raw frame seen');
  assert.equal(frame.channel, name);
  assert.equal(typeof frame.data.nonce, 'string');
  assert.equal(typeof frame.data.ciphertext, 'string');
  assert.ok(!JSON.stringify(frame).includes('eagle'), 'the server relays ciphertext only');
  raw.stop();
});

test('encrypted channel: two subscribers on different connections both decrypt the same event', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('private-encrypted-shared');
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const gotA = waitFor(chA, 'note');
  const gotB = waitFor(chB, 'note');
  await h.sdk.trigger(name, 'note', { text: 'for both' });
  assert.deepEqual(await gotA, { text: 'for both' });
  assert.deepEqual(await gotB, { text: 'for both' });
});
