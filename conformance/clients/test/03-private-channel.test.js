import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe } from '../lib/harness.js';
import { waitFor } from '../lib/wait.js';

const h = await createHarness();

test('private channel: subscribe through the auth endpoint and receive an SDK-triggered event', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('private-orders');
  const channel = await subscribe(client, name);
  assert.equal(channel.subscribed, true);

  // The auth endpoint was called by pusher-js with this socket and channel.
  const authCall = h.auth.requests.find((r) => r.path === '/pusher/auth' && r.body.channel_name === name);
  assert.ok(authCall, 'pusher-js must call the auth endpoint');
  assert.equal(authCall.body.socket_id, client.connection.socket_id);
  assert.equal(authCall.status, 200);

  const got = waitFor(channel, 'secret-plan');
  await h.sdk.trigger(name, 'secret-plan', { step: 1, of: 3 });
  assert.deepEqual(await got, { step: 1, of: 3 });
});

test('private channel: an auth endpoint 403 produces pusher:subscription_error client-side', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('private-forbidden');
  h.auth.denyChannel(name);
  const channel = client.subscribe(name);
  const errored = waitFor(channel, 'pusher:subscription_error');
  const err = await errored;
  assert.equal(err.type, 'AuthError');
  assert.equal(err.status, 403);
  assert.equal(channel.subscribed, false);
  // The connection itself stays up.
  assert.equal(client.connection.state, 'connected');
});

test('private channel: a subscribe with a forged signature is not accepted by the server', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('private-forged');
  // Sign for a different socket id: the server must reject it (§2.3, §2.5).
  const forged = h.sdk.authorizeChannel('1.1', name);
  const channel = client.channels.add(name, client);
  const succeeded = [];
  channel.bind('pusher:subscription_succeeded', () => succeeded.push(true));
  const errors = [];
  client.connection.bind('error', (e) => errors.push(e));
  channel.bind('pusher:subscription_error', (e) => errors.push(e));
  channel.subscriptionPending = true;
  client.send_event('pusher:subscribe', { auth: forged.auth, channel: name });
  // Either style of rejection (pusher:error on the connection, or a
  // per-channel pusher:subscription_error) is acceptable; success is not.
  const deadline = Date.now() + 5000;
  while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  assert.equal(succeeded.length, 0, 'a forged auth must not be accepted');
  assert.ok(errors.length > 0, 'the server should report the rejected subscription with pusher:error or pusher:subscription_error');
});
