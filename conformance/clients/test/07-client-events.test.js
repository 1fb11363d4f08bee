import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe, fence } from '../lib/harness.js';
import { record } from '../lib/wait.js';

const h = await createHarness();

test('client events: client-typing on a private channel reaches the other client, not the sender', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('private-chat');
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const onA = record(chA, 'client-typing');
  const onB = record(chB, 'client-typing');

  const sent = chA.trigger('client-typing', { typing: true, who: 'a', text: 'ünïcödé' });
  assert.equal(sent, true, 'pusher-js accepted the client event');
  const [got] = await onB.waitCount(1);
  assert.deepEqual(got.data, { typing: true, who: 'a', text: 'ünïcödé' });

  // Anything sent to A before the fence has arrived once the fence has.
  await fence(h.sdk, [chA, chB]);
  assert.equal(onA.count, 0, 'client events must not be echoed to the sender');
  assert.equal(onB.count, 1);
});

test('client events: on a presence channel the receiver sees metadata.user_id of the sender', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-chat');
  const a = await s.pusher({ userId: 'typist-a', userInfo: { name: 'A' } });
  const b = await s.pusher({ userId: 'reader-b', userInfo: { name: 'B' } });
  const chA = await subscribe(a, name);
  const chB = await subscribe(b, name);
  const onA = record(chA, 'client-typing');
  const onB = record(chB, 'client-typing');

  chA.trigger('client-typing', { typing: true });
  const [got] = await onB.waitCount(1);
  assert.deepEqual(got.data, { typing: true });
  assert.ok(got.metadata, 'handler receives a metadata argument');
  assert.equal(got.metadata.user_id, 'typist-a', 'presence client events carry the sender user_id');

  // And the other way round.
  chB.trigger('client-typing', { typing: false });
  const [back] = await onA.waitCount(1);
  assert.deepEqual(back.data, { typing: false });
  assert.equal(back.metadata.user_id, 'reader-b');

  await fence(h.sdk, [chA, chB]);
  assert.equal(onA.count, 1);
  assert.equal(onB.count, 1);
});

test('client events: a client event on a channel the sender is not subscribed to is not delivered', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('private-closed');
  const chB = await subscribe(b, name);
  const onB = record(chB, 'client-sneak');
  // Raw frame: pusher-js would refuse to trigger on an unsubscribed channel.
  a.send_event('client-sneak', { x: 1 }, name);
  // Give the server a round trip on A's socket, then fence B.
  await subscribe(a, h.uid('private-probe'));
  await fence(h.sdk, [chB]);
  assert.equal(onB.count, 0);
});

test('client events: a client event on a public channel is not delivered', async (t) => {
  const s = h.scope(t);
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  const name = h.uid('public-chat');
  await subscribe(a, name);
  const chB = await subscribe(b, name);
  const onB = record(chB, 'client-public');
  a.send_event('client-public', { x: 1 }, name);
  await subscribe(a, h.uid('probe'));
  await fence(h.sdk, [chB]);
  assert.equal(onB.count, 0, 'client events are only allowed on private and presence channels (§2.9)');
});
