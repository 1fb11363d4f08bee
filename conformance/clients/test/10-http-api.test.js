import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, createSdk, subscribe } from '../lib/harness.js';
import { waitFor } from '../lib/wait.js';

const h = await createHarness();

async function json(res) {
  assert.equal(res.status, 200, `expected HTTP 200, got ${res.status}`);
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    assert.fail(`response body is not JSON: ${text}`);
  }
}

async function expectStatus(promise, status) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status} (${err.body})`);
    return true;
  });
}

test('HTTP API: trigger without info answers 200 {}', async () => {
  const body = await json(await h.sdk.trigger(h.uid('nobody-here'), 'evt', { a: 1 }));
  assert.deepEqual(body, {});
});

test('HTTP API: trigger with info=subscription_count,user_count returns a channels object', async (t) => {
  const s = h.scope(t);
  const pub = h.uid('api-public');
  const pres = h.uid('presence-api');
  const [a, b] = await Promise.all([s.pusher({ userId: 'u1' }), s.pusher({ userId: 'u2' })]);
  await subscribe(a, pub);
  await subscribe(b, pub);
  await subscribe(a, pres);
  await subscribe(b, pres);

  const res1 = await json(await h.sdk.trigger(pub, 'counted', { x: 1 }, { info: 'subscription_count' }));
  assert.equal(typeof res1.channels, 'object');
  assert.ok(!Array.isArray(res1.channels));
  assert.deepEqual(res1.channels[pub], { subscription_count: 2 });

  const res2 = await json(await h.sdk.trigger([pub, pres], 'counted', { x: 2 }, { info: 'user_count,subscription_count' }));
  assert.equal(res2.channels[pub].subscription_count, 2);
  assert.equal(res2.channels[pres].user_count, 2);
  assert.ok(!('user_count' in res2.channels[pub]), 'user_count is only reported for presence channels');
});

test('HTTP API: triggerBatch delivers every item and reports per-item info', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher();
  const c1 = await subscribe(client, h.uid('batch-1'));
  const c2 = await subscribe(client, h.uid('batch-2'));
  const got1 = waitFor(c1, 'first');
  const got2 = waitFor(c2, 'second');

  const plain = await json(
    await h.sdk.triggerBatch([
      { channel: c1.name, name: 'first', data: { n: 1 } },
      { channel: c2.name, name: 'second', data: 'two' },
    ]),
  );
  assert.deepEqual(plain, {});
  assert.deepEqual(await got1, { n: 1 });
  assert.equal(await got2, 'two');

  const withInfo = await json(
    await h.sdk.triggerBatch([
      { channel: c1.name, name: 'third', data: { n: 3 }, info: 'subscription_count' },
      { channel: h.uid('batch-empty'), name: 'fourth', data: { n: 4 } },
    ]),
  );
  assert.ok(Array.isArray(withInfo.batch), `batch must be an array, got ${JSON.stringify(withInfo)}`);
  assert.equal(withInfo.batch.length, 2);
  assert.deepEqual(withInfo.batch[0], { subscription_count: 1 });
  assert.deepEqual(withInfo.batch[1], {});
});

test('HTTP API: GET /channels with filter_by_prefix=presence- and info=user_count', async (t) => {
  const s = h.scope(t);
  const pres = h.uid('presence-lobby');
  const pub = h.uid('lobby-public');
  const [a, b, c] = await Promise.all([
    s.pusher({ userId: 'x' }),
    s.pusher({ userId: 'y' }),
    s.pusher({ userId: 'y' }),
  ]);
  await Promise.all([subscribe(a, pres), subscribe(b, pres), subscribe(c, pres), subscribe(a, pub)]);

  const res = await json(await h.sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }));
  assert.equal(typeof res.channels, 'object');
  assert.deepEqual(res.channels[pres], { user_count: 2 }, 'user_count counts distinct users');
  for (const name of Object.keys(res.channels)) assert.ok(name.startsWith('presence-'), `${name} does not match the prefix`);

  const all = await json(await h.sdk.get({ path: '/channels' }));
  assert.deepEqual(all.channels[pub], {});
  assert.deepEqual(all.channels[pres], {});
});

test('HTTP API: GET /channels with info=user_count but no presence- filter is a 400', async () => {
  await expectStatus(h.sdk.get({ path: '/channels', params: { info: 'user_count' } }), 400);
});

test('HTTP API: GET /channels/{name} with info=subscription_count; unoccupied channel', async (t) => {
  const s = h.scope(t);
  const name = h.uid('api-single');
  const [a, b] = await Promise.all([s.pusher(), s.pusher()]);
  await subscribe(a, name);
  await subscribe(b, name);

  const info = await json(await h.sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(info, { occupied: true, subscription_count: 2 });

  const bare = await json(await h.sdk.get({ path: `/channels/${name}` }));
  assert.equal(bare.occupied, true);

  const empty = await json(await h.sdk.get({ path: `/channels/${h.uid('api-nobody')}` }));
  assert.deepEqual(empty, { occupied: false });
});

test('HTTP API: GET /channels/{presence} with info=user_count and /users lists the members', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-api-users');
  const [a, b, b2] = await Promise.all([
    s.pusher({ userId: 'member-1' }),
    s.pusher({ userId: 'member-2' }),
    s.pusher({ userId: 'member-2' }),
  ]);
  await Promise.all([subscribe(a, name), subscribe(b, name), subscribe(b2, name)]);

  const info = await json(await h.sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }));
  assert.equal(info.occupied, true);
  assert.equal(info.user_count, 2);

  const users = await json(await h.sdk.get({ path: `/channels/${name}/users` }));
  assert.ok(Array.isArray(users.users));
  assert.deepEqual(
    users.users.map((u) => u.id).sort(),
    ['member-1', 'member-2'],
  );
});

test('HTTP API: /users on a non-presence channel is a 400', async (t) => {
  const s = h.scope(t);
  const name = h.uid('not-presence');
  await subscribe(await s.pusher(), name);
  await expectStatus(h.sdk.get({ path: `/channels/${name}/users` }), 400);
});

test('HTTP API: requests signed with the wrong secret get 401', async () => {
  const wrong = createSdk({ secret: `${h.env.secret}-wrong` });
  await expectStatus(wrong.get({ path: '/channels' }), 401);
  await expectStatus(wrong.trigger(h.uid('any'), 'evt', { a: 1 }), 401);
});

test('HTTP API: an unknown auth_key gets 401', async () => {
  const wrong = createSdk({ key: `${h.env.key}-unknown` });
  await expectStatus(wrong.get({ path: '/channels' }), 401);
});
