import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribed, fence } from '../lib/harness.js';
import { waitFor, record } from '../lib/wait.js';

const h = await createHarness();

// Subscribes while recording every event (bind_global) from the start, so the
// order of subscription_succeeded / cached event / cache_miss is observable.
function subscribeRecording(client, name) {
  const channel = client.subscribe(name);
  const all = record(channel, '*');
  return { channel, all, ready: subscribed(channel) };
}

test('cache channel: a new subscriber receives the last cached event first', async (t) => {
  const s = h.scope(t);
  const name = h.uid('cache-prices');
  const first = await s.pusher();
  const sub1 = subscribeRecording(first, name);
  await sub1.ready;

  const got1 = waitFor(sub1.channel, 'price');
  await h.sdk.trigger(name, 'price', { eur: 1 });
  assert.deepEqual(await got1, { eur: 1 });
  const got2 = waitFor(sub1.channel, 'price');
  await h.sdk.trigger(name, 'price', { eur: 2 });
  assert.deepEqual(await got2, { eur: 2 });

  const second = await s.pusher();
  const sub2 = subscribeRecording(second, name);
  await sub2.ready;
  const cached = await sub2.all.waitMatch((i) => i.event === 'price', 'the cached "price" event');
  assert.deepEqual(cached.data, { eur: 2 }, 'the most recent event is the cached one');

  await fence(h.sdk, [sub2.channel]);
  const names = sub2.all.items.map((i) => i.event);
  const nonInternal = names.filter((n) => !n.startsWith('pusher:'));
  assert.equal(nonInternal[0], 'price', `the cached event must be the first event on the channel, got ${JSON.stringify(names)}`);
  assert.equal(names.filter((n) => n === 'price').length, 1, 'the cached event is delivered exactly once');
  assert.ok(!names.includes('pusher:cache_miss'), 'no cache_miss when something is cached');
  assert.ok(
    names.indexOf('pusher:subscription_succeeded') < names.indexOf('price'),
    'subscription_succeeded comes before the cached event',
  );
  sub1.all.stop();
  sub2.all.stop();
});

test('cache channel: an event triggered while nobody is subscribed is delivered on the next subscribe', async (t) => {
  const s = h.scope(t);
  const name = h.uid('cache-offline');
  await h.sdk.trigger(name, 'status', 'all systems go');
  const client = await s.pusher();
  const sub = subscribeRecording(client, name);
  await sub.ready;
  const cached = await sub.all.waitMatch((i) => i.event === 'status', 'the cached "status" event');
  assert.equal(cached.data, 'all systems go');
  sub.all.stop();
});

test('cache channel: subscribing to an empty cache channel yields pusher:cache_miss', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const name = h.uid('cache-empty');
  const sub = subscribeRecording(client, name);
  await sub.ready;
  await sub.all.waitMatch((i) => i.event === 'pusher:cache_miss', 'pusher:cache_miss');
  await fence(h.sdk, [sub.channel]);
  assert.equal(sub.all.items.filter((i) => i.event === 'pusher:cache_miss').length, 1);
  sub.all.stop();
});

test('cache channel: private-cache- channels are cached too', async (t) => {
  const s = h.scope(t);
  const name = h.uid('private-cache-state');
  await h.sdk.trigger(name, 'state', { v: 'cached-private' });
  const client = await s.pusher();
  const sub = subscribeRecording(client, name);
  await sub.ready;
  const cached = await sub.all.waitMatch((i) => i.event === 'state', 'the cached "state" event');
  assert.deepEqual(cached.data, { v: 'cached-private' });
  sub.all.stop();
});
