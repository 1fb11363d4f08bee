import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe, fence } from '../lib/harness.js';
import { waitFor, record } from '../lib/wait.js';

const h = await createHarness();

test('public channel: subscribe fires pusher:subscription_succeeded', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('public');
  const channel = client.subscribe(name);
  const succeeded = waitFor(channel, 'pusher:subscription_succeeded');
  await succeeded;
  assert.equal(channel.subscribed, true);
  assert.equal(channel.subscriptionPending, false);
});

test('public channel: SDK trigger delivers object data as a parsed object', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const channel = await subscribe(client, h.uid('public'));
  const payload = { id: 42, text: 'héllo wörld ✓', nested: { list: [1, 'two', null, true] } };
  const got = waitFor(channel, 'order-shipped');
  const res = await h.sdk.trigger(channel.name, 'order-shipped', payload);
  assert.equal(res.status, 200);
  assert.deepEqual(await got, payload);
});

test('public channel: SDK trigger delivers plain-string data unchanged', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const channel = await subscribe(client, h.uid('public'));
  const got = waitFor(channel, 'plain');
  await h.sdk.trigger(channel.name, 'plain', 'just a string, not JSON');
  assert.equal(await got, 'just a string, not JSON');
});

test('public channel: SDK trigger to several channels reaches each subscriber once', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const chA = await subscribe(a, h.uid('multi-a'));
  const chB = await subscribe(b, h.uid('multi-b'));
  const recA = record(chA, 'multi');
  const recB = record(chB, 'multi');
  await h.sdk.trigger([chA.name, chB.name], 'multi', { n: 1 });
  await recA.waitCount(1);
  await recB.waitCount(1);
  await fence(h.sdk, [chA, chB]);
  assert.equal(recA.count, 1);
  assert.equal(recB.count, 1);
  assert.deepEqual(recA.items[0].data, { n: 1 });
});

test('public channel: trigger with socket_id excludes that connection but not another', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('exclude');
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const recA = record(chA, 'excluded-event');
  const recB = record(chB, 'excluded-event');

  await h.sdk.trigger(name, 'excluded-event', { from: 'a' }, { socket_id: a.connection.socket_id });
  const [gotB] = await recB.waitCount(1);
  assert.deepEqual(gotB.data, { from: 'a' });
  // Everything sent to A before the fence has arrived once the fence has.
  await fence(h.sdk, [chA, chB]);
  assert.equal(recA.count, 0, 'the excluded socket must not receive the event');
  assert.equal(recB.count, 1);
});

test('public channel: after unsubscribe no more events are delivered', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('unsub');
  await subscribe(a, name);
  const chB = await subscribe(b, name);
  const recA = record(a, 'after-unsub'); // global binding on the client survives unsubscribe
  a.unsubscribe(name);
  // A is no longer subscribed: the server must stop routing to it. Use B as
  // the fence and then give A's socket a further server round trip.
  const probe = await subscribe(a, h.uid('probe'));
  const gotB = waitFor(chB, 'after-unsub');
  await h.sdk.trigger(name, 'after-unsub', { x: 1 });
  await gotB;
  await fence(h.sdk, [probe]);
  assert.equal(recA.count, 0);
});
