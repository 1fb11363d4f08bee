// Webhooks produced by real pusher-js clients, received on a local port and
// validated with the `pusher` package's webhook validator. The server under
// test must send its app's webhooks to COMNESTOR_WEBHOOK_URL (.ci/test starts it
// with COMNESTOR_APP_WEBHOOK_URL set to that URL and a 1 s rejoin delay).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { createHarness, subscribe, waitConnected } from '../lib/harness.js';
import { startWebhookReceiver, is } from '../lib/webhook-receiver.js';

const h = await createHarness();
const receiver = await startWebhookReceiver(h.sdk);
after(() => receiver.close());

// The rejoin delay plus batching and delivery; vacated and member_removed wait.
const REMOVAL_TIMEOUT_MS = 10000;

test('webhooks: every request passes pusher.webhook(request).isValid()', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('validated');
  await subscribe(client, name);
  await receiver.waitFor(is('channel_occupied', name), `channel_occupied ${name}`);
  assert.deepEqual(receiver.invalid, [], 'no request failed validation');
  const hook = receiver.hooks.find((x) => x.events.some(is('channel_occupied', name)));
  assert.equal(hook.headers['content-type'], 'application/json');
  assert.ok(Math.abs(Date.now() - hook.time.getTime()) < 300000, 'time_ms is the creation time');
});

test('webhooks: channel_occupied, subscription_count and channel_vacated from a public channel', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('room');
  await subscribe(client, name);
  const seen = await receiver.waitFor(is('subscription_count', name), `subscription_count ${name}`);
  assert.ok(seen.some(is('channel_occupied', name)));
  assert.deepEqual(seen.find(is('subscription_count', name)), { name: 'subscription_count', channel: name, subscription_count: 1 });
  client.unsubscribe(name);
  await receiver.waitFor(is('channel_vacated', name), `channel_vacated ${name}`, REMOVAL_TIMEOUT_MS);
});

test('webhooks: member_added and member_removed from presence channels, once per user', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-lobby');
  const a = await s.pusher({ userId: 'wh-a', userInfo: { name: 'A' } });
  const b1 = await s.pusher({ userId: 'wh-b', userInfo: { name: 'B' } });
  const b2 = await s.pusher({ userId: 'wh-b', userInfo: { name: 'B' } });
  await subscribe(a, name);
  await subscribe(b1, name);
  await subscribe(b2, name);
  const added = (u) => (e) => e.name === 'member_added' && e.channel === name && e.user_id === u;
  const removed = (u) => (e) => e.name === 'member_removed' && e.channel === name && e.user_id === u;
  await receiver.waitFor(added('wh-b'), 'member_added wh-b');
  await receiver.waitFor(added('wh-a'), 'member_added wh-a');

  b1.unsubscribe(name); // wh-b still has b2 in the channel
  b2.unsubscribe(name);
  const seen = await receiver.waitFor(removed('wh-b'), 'member_removed wh-b', REMOVAL_TIMEOUT_MS);
  assert.equal(seen.filter(added('wh-b')).length, 1, 'two tabs of one user are one member');
  assert.equal(seen.filter(removed('wh-b')).length, 1);
  assert.ok(!seen.some(removed('wh-a')), 'wh-a is still there');
  assert.ok(!seen.some(is('subscription_count', name)), 'no subscription_count on presence channels');
});

test('webhooks: client_event with the event, data, socket_id and, on presence, user_id', async (t) => {
  const s = h.scope(t);
  const a = await s.pusher({ userId: 'wh-typist' });
  const b = await s.pusher({ userId: 'wh-reader' });
  const priv = h.uid('private-chat');
  const pres = h.uid('presence-chat');
  const chA = await subscribe(a, priv);
  await subscribe(b, priv);
  const prA = await subscribe(a, pres);
  await subscribe(b, pres);
  chA.trigger('client-typing', { typing: true });
  prA.trigger('client-wave', { hi: 1 });

  const seen = await receiver.waitFor(
    (e) => e.name === 'client_event' && e.channel === pres,
    'client_event on the presence channel',
  );
  const onPrivate = seen.find((e) => e.name === 'client_event' && e.channel === priv);
  assert.deepEqual(onPrivate, {
    name: 'client_event', channel: priv, event: 'client-typing',
    data: JSON.stringify({ typing: true }), socket_id: a.connection.socket_id,
  });
  const onPresence = seen.find((e) => e.name === 'client_event' && e.channel === pres);
  assert.equal(onPresence.user_id, 'wh-typist');
  assert.equal(onPresence.socket_id, a.connection.socket_id);
  assert.deepEqual(JSON.parse(onPresence.data), { hi: 1 });
});

test('webhooks: cache_miss when subscribing to an empty cache channel', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('cache-news');
  await Promise.all([subscribe(a, name), subscribe(b, name)]);
  const seen = await receiver.waitFor(is('cache_miss', name), `cache_miss ${name}`);
  // Two subscribers, one miss each at most; the de-duplication within a batch window
  // is pinned down with paused time in the server's batcher tests.
  assert.ok(seen.filter(is('cache_miss', name)).length <= 2);
});

test('webhooks: a reconnect within the delay sends neither member_removed nor a second member_added', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-reload');
  const first = await s.pusher({ userId: 'wh-reloader' });
  await subscribe(first, name);
  await receiver.waitFor((e) => e.name === 'member_added' && e.channel === name, 'member_added');

  // A page reload: the old connection goes, a new one joins as the same user.
  first.disconnect();
  const second = await waitConnected(await s.pusher({ userId: 'wh-reloader' }));
  await subscribe(second, name);

  // A channel left after the reload: its vacated comes after any vacated the
  // reload would have caused, which therefore would already be here.
  const marker = h.uid('marker');
  await subscribe(second, marker);
  second.unsubscribe(marker);
  const seen = await receiver.waitFor(is('channel_vacated', marker), 'marker vacated', REMOVAL_TIMEOUT_MS);
  const about = seen.filter((e) => e.channel === name);
  assert.deepEqual(
    about.map((e) => e.name),
    ['channel_occupied', 'member_added'],
    'the reload produced no webhooks',
  );
});
