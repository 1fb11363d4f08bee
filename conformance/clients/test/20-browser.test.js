// The same target driven by the real pusher-js and Laravel Echo bundles inside
// headless Chromium: what a visitor's browser does, including cross-origin
// calls to the app's auth endpoint.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness } from '../lib/harness.js';
import { startBrowser, browserPusherOptions, until } from '../lib/browser.js';

const h = await createHarness();
const browser = await startBrowser();

// Opens a page and creates a pusher-js client named `name` in it, resolving
// once it is connected. `params` go to the auth endpoints (user_id, ...).
async function pusherPage(name, params = {}) {
  const page = await browser.page();
  const options = browserPusherOptions(h.env, h.auth, params);
  await page.evaluate(
    ({ name, key, options }) => {
      const client = new Pusher(key, options);
      window.__clients[name] = client;
      client.connection.bind('connected', () =>
        window.__record(name, null, 'connected', client.connection.socket_id),
      );
    },
    { name, key: h.env.key, options },
  );
  await until(page, (n) => window.__seen(n, 'connected').length > 0, name);
  return page;
}

// Subscribes `client` in `page` to `channel`, recording `events`, and waits for
// pusher:subscription_succeeded.
async function subscribe(page, client, channel, events) {
  await page.evaluate(
    ({ client, channel, events }) => {
      const ch = window.__clients[client].subscribe(channel);
      for (const event of ['pusher:subscription_succeeded', 'pusher:subscription_error', ...events]) {
        ch.bind(event, (data, meta) => window.__record(client, channel, event, data, meta));
      }
    },
    { client, channel, events },
  );
  await until(
    page,
    ({ client, channel }) =>
      window.__seen(client, 'pusher:subscription_succeeded', channel).length > 0 ||
      window.__seen(client, 'pusher:subscription_error', channel).length > 0,
    { client, channel },
  );
  const failed = await page.evaluate(
    ({ client, channel }) => window.__seen(client, 'pusher:subscription_error', channel),
    { client, channel },
  );
  assert.deepEqual(failed, [], `subscription to ${channel} failed in the browser`);
}

// The events `client` received so far, once at least `count` have arrived.
async function received(page, client, event, channel, count = 1) {
  await until(
    page,
    ({ client, event, channel, count }) => window.__seen(client, event, channel).length >= count,
    { client, event, channel, count },
  );
  return page.evaluate(
    ({ client, event, channel }) => window.__seen(client, event, channel),
    { client, event, channel },
  );
}

function closePage(t, page) {
  t.after(() => page.closeContext());
}

test('browser: pusher-js receives an SDK-triggered event on a public channel', async (t) => {
  const page = await pusherPage('a');
  closePage(t, page);
  const channel = h.uid('browser-public');
  await subscribe(page, 'a', channel, ['order.shipped']);
  const payload = { id: 7, text: 'ünïcode ✓' };
  await h.sdk.trigger(channel, 'order.shipped', payload);
  const [got] = await received(page, 'a', 'order.shipped', channel);
  assert.deepEqual(got.data, payload);
  assert.deepEqual(page.errors, []);
});

test('browser: a private channel is authorized through a cross-origin auth endpoint', async (t) => {
  const page = await pusherPage('a');
  closePage(t, page);
  const channel = `private-${h.uid('browser')}`;
  await subscribe(page, 'a', channel, ['secret']);
  await h.sdk.trigger(channel, 'secret', { ok: true });
  const [got] = await received(page, 'a', 'secret', channel);
  assert.deepEqual(got.data, { ok: true });
});

test('browser: presence members join and leave across two visitors', async (t) => {
  const channel = `presence-${h.uid('browser')}`;
  const alice = await pusherPage('alice', { user_id: 'alice' });
  closePage(t, alice);
  await subscribe(alice, 'alice', channel, ['pusher:member_added', 'pusher:member_removed']);
  const bob = await pusherPage('bob', { user_id: 'bob' });
  await subscribe(bob, 'bob', channel, []);

  const [added] = await received(alice, 'alice', 'pusher:member_added', channel);
  assert.deepEqual(added.data, { id: 'bob', info: { name: 'User bob' } });
  const members = await bob.evaluate(
    (channel) => {
      const ch = window.__clients.bob.channel(channel);
      return { count: ch.members.count, me: ch.members.me.id, ids: Object.keys(ch.members.members).sort() };
    },
    channel,
  );
  assert.deepEqual(members, { count: 2, me: 'bob', ids: ['alice', 'bob'] });

  await bob.closeContext();
  const [removed] = await received(alice, 'alice', 'pusher:member_removed', channel);
  assert.equal(removed.data.id, 'bob');
});

test('browser: pusher-js decrypts an event the server SDK encrypted', async (t) => {
  const page = await pusherPage('a');
  closePage(t, page);
  const channel = `private-encrypted-${h.uid('browser')}`;
  await subscribe(page, 'a', channel, ['sealed']);
  const payload = { card: '4242', note: 'end to end' };
  await h.sdk.trigger(channel, 'sealed', payload);
  const [got] = await received(page, 'a', 'sealed', channel);
  assert.deepEqual(got.data, payload);
});

test('browser: a signed-in user receives sendToUser', async (t) => {
  const page = await pusherPage('a', { user_id: 'carol' });
  closePage(t, page);
  await page.evaluate(() => {
    const client = window.__clients.a;
    client.user.bind('invoice.paid', (data) => window.__record('a', null, 'invoice.paid', data));
    client.signin();
  });
  // Signed in (pusher-js keeps the user_data the server confirmed), and
  // subscribed to #server-to-user-carol right after.
  await until(page, () => window.__clients.a.user.user_data?.id === 'carol');
  await until(page, () => window.__clients.a.user.serverToUserChannel?.subscribed === true);
  await h.sdk.sendToUser('carol', 'invoice.paid', { amount: 12 });
  const [got] = await received(page, 'a', 'invoice.paid', null);
  assert.deepEqual(got.data, { amount: 12 });
});

test('browser: Laravel Echo (reverb broadcaster) listens and whispers', async (t) => {
  const channel = h.uid('browser-echo');
  const echoPage = async (name, userId) => {
    const page = await browser.page();
    await page.evaluate(
      ({ name, key, env, auth, userId }) => {
        const echo = new Echo.default({
          broadcaster: 'reverb',
          key,
          wsHost: env.host,
          wsPort: env.port,
          wssPort: env.port,
          forceTLS: env.useTLS,
          enabledTransports: ['ws', 'wss'],
          authEndpoint: auth.channelAuthEndpoint,
          auth: { headers: { 'X-Test-User-Id': userId } },
        });
        window.__clients[name] = echo;
        echo.connector.pusher.connection.bind('connected', () => window.__record(name, null, 'connected'));
      },
      { name, key: h.env.key, env: h.env, auth: { channelAuthEndpoint: h.auth.channelAuthEndpoint }, userId },
    );
    await until(page, (n) => window.__seen(n, 'connected').length > 0, name);
    return page;
  };
  const one = await echoPage('one', '1');
  const two = await echoPage('two', '2');
  closePage(t, one);
  closePage(t, two);

  // Echo.private(name) subscribes private-name; listen('.x') binds the event verbatim,
  // and listen('OrderShipped') binds App\Events\OrderShipped.
  for (const [page, name] of [[one, 'one'], [two, 'two']]) {
    await page.evaluate(
      ({ name, channel }) => {
        window.__clients[name]
          .private(channel)
          .subscribed(() => window.__record(name, channel, 'subscribed'))
          .listen('OrderShipped', (e) => window.__record(name, channel, 'OrderShipped', e))
          .listenForWhisper('typing', (e) => window.__record(name, channel, 'typing', e));
      },
      { name, channel },
    );
    await received(page, name, 'subscribed', channel);
  }

  await h.sdk.trigger(`private-${channel}`, 'App\\Events\\OrderShipped', { order: 3 });
  const [shipped] = await received(two, 'two', 'OrderShipped', channel);
  assert.deepEqual(shipped.data, { order: 3 });

  await one.evaluate((channel) => window.__clients.one.private(channel).whisper('typing', { who: 'one' }), channel);
  const [typing] = await received(two, 'two', 'typing', channel);
  assert.deepEqual(typing.data, { who: 'one' });
  // Never echoed to the sender: the whisper arrived at two, and a later
  // server event reaches one before anything else would.
  await h.sdk.trigger(`private-${channel}`, 'App\\Events\\OrderShipped', { order: 4 });
  await received(one, 'one', 'OrderShipped', channel, 2);
  const echoed = await one.evaluate((channel) => window.__seen('one', 'typing', channel).length, channel);
  assert.equal(echoed, 0);
});
