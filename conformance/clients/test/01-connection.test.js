import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, waitConnected, PusherClient, pusherOptions } from '../lib/harness.js';
import { waitFor, record } from '../lib/wait.js';

const h = await createHarness();

test('connection: pusher-js connects, gets a digits.digits socket_id and reaches state "connected"', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher({ wait: false });
  const states = record(client.connection, 'state_change');
  const connected = waitFor(client.connection, 'connected');
  await connected;

  assert.equal(client.connection.state, 'connected');
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);
  // pusher-js went connecting -> connected.
  const last = states.items.at(-1).data;
  assert.deepEqual(last, { previous: 'connecting', current: 'connected' });
  states.stop();
});

test('connection: two connections get distinct socket_ids', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  assert.match(a.connection.socket_id, /^\d+\.\d+$/);
  assert.match(b.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(a.connection.socket_id, b.connection.socket_id);
});

test('connection: an unknown app key is refused (pusher-js never reaches "connected")', async (t) => {
  const client = new PusherClient(`unknown-${Date.now()}`, pusherOptions(h.auth));
  t.after(() => client.disconnect());
  const errors = record(client.connection, 'error');
  const states = record(client.connection, 'state_change');
  // 4001 "Application does not exist" (close code, §1.6) makes pusher-js
  // stop without reconnecting: it ends up "disconnected" (or "failed").
  await states.waitMatch(
    (i) => ['disconnected', 'failed', 'unavailable'].includes(i.data.current),
    `the connection to be refused (errors: ${JSON.stringify(errors.items)})`,
  );
  assert.ok(!states.items.some((i) => i.data.current === 'connected'), 'must never be connected');
  errors.stop();
  states.stop();
});

test('connection: disconnect() closes cleanly and reconnect() yields a new socket_id', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const first = client.connection.socket_id;
  client.disconnect();
  assert.equal(client.connection.state, 'disconnected');
  client.connect();
  await waitConnected(client);
  assert.match(client.connection.socket_id, /^\d+\.\d+$/);
  assert.notEqual(client.connection.socket_id, first);
});
