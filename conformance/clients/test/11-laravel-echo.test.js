import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, PusherClient, pusherOptions, waitConnected } from '../lib/harness.js';
import { deferred } from '../lib/wait.js';

const h = await createHarness();

// Resolves once Echo's channel reports pusher:subscription_succeeded.
function echoSubscribed(channel, label) {
  const d = deferred(`Echo subscription to ${label}`);
  channel.subscribed(() => d.resolve());
  channel.error((e) => d.reject(new Error(`Echo subscription to ${label} failed: ${JSON.stringify(e)}`)));
  return d.promise;
}

function collector(label) {
  const items = [];
  let waiter = null;
  const fn = (...args) => {
    items.push(args);
    if (waiter && items.length >= waiter.n) waiter.d.resolve(items.slice());
  };
  fn.items = items;
  fn.wait = (n = 1) => {
    if (items.length >= n) return Promise.resolve(items.slice());
    waiter = { n, d: deferred(`${n} x ${label}`) };
    return waiter.d.promise;
  };
  return fn;
}

for (const broadcaster of ['reverb', 'pusher']) {
  describe(`Laravel Echo (broadcaster: '${broadcaster}')`, () => {
    test(`${broadcaster}: connects and exposes a digits.digits socketId()`, async (t) => {
      const s = h.scope(t);
      const echo = await s.echo(broadcaster);
      assert.match(echo.socketId(), /^\d+\.\d+$/);
      assert.equal(echo.connector.pusher.connection.state, 'connected');
    });

    test(`${broadcaster}: Echo.channel(orders).listen('.order.shipped') receives an SDK event`, async (t) => {
      const s = h.scope(t);
      const echo = await s.echo(broadcaster);
      const name = h.uid('orders');
      const got = collector('.order.shipped');
      const channel = echo.channel(name).listen('.order.shipped', got);
      await echoSubscribed(channel, name);
      await h.sdk.trigger(name, 'order.shipped', { order: { id: 1001, total: '9.99' } });
      const [[data]] = await got.wait(1);
      assert.deepEqual(data, { order: { id: 1001, total: '9.99' } });
    });

    test(`${broadcaster}: listen('OrderShipped') receives the event named App\\Events\\OrderShipped`, async (t) => {
      const s = h.scope(t);
      const echo = await s.echo(broadcaster);
      const name = h.uid('orders');
      const got = collector('OrderShipped');
      const channel = echo.channel(name).listen('OrderShipped', got);
      await echoSubscribed(channel, name);
      // This is the name Laravel broadcasts: namespace with backslashes.
      await h.sdk.trigger(name, 'App\\Events\\OrderShipped', { id: 7 });
      const [[data]] = await got.wait(1);
      assert.deepEqual(data, { id: 7 });
    });

    test(`${broadcaster}: Echo.private(chat) authorizes through authEndpoint and receives events`, async (t) => {
      const s = h.scope(t);
      const echo = await s.echo(broadcaster);
      const base = h.uid('chat');
      const got = collector('.message.sent');
      const channel = echo.private(base).listen('.message.sent', got);
      await echoSubscribed(channel, `private-${base}`);
      const call = h.auth.requests.find((r) => r.body.channel_name === `private-${base}`);
      assert.ok(call, 'Echo (via pusher-js) called the absolute authEndpoint');
      assert.equal(call.body.socket_id, echo.socketId());
      await h.sdk.trigger(`private-${base}`, 'message.sent', { body: 'hello' });
      const [[data]] = await got.wait(1);
      assert.deepEqual(data, { body: 'hello' });
    });

    test(`${broadcaster}: Echo.private(...).error() fires when the auth endpoint answers 403`, async (t) => {
      const s = h.scope(t);
      const echo = await s.echo(broadcaster);
      const base = h.uid('forbidden');
      h.auth.denyChannel(`private-${base}`);
      const d = deferred('Echo .error() callback');
      echo.private(base).error((e) => d.resolve(e));
      const err = await d.promise;
      assert.equal(err.status, 403);
    });

    test(`${broadcaster}: Echo.join(room).here/joining/leaving`, async (t) => {
      const s = h.scope(t);
      const room = h.uid('room');
      const echo1 = await s.echo(broadcaster, { userId: 'e-1', userInfo: { id: 'e-1', name: 'Echo One' } });
      const echo2 = await s.echo(broadcaster, { userId: 'e-2', userInfo: { id: 'e-2', name: 'Echo Two' } });

      const here1 = collector('here (1)');
      const joining1 = collector('joining (1)');
      const leaving1 = collector('leaving (1)');
      echo1.join(room).here(here1).joining(joining1).leaving(leaving1);
      const [[members1]] = await here1.wait(1);
      assert.deepEqual(members1, [{ id: 'e-1', name: 'Echo One' }]);

      const here2 = collector('here (2)');
      echo2.join(room).here(here2);
      const [[members2]] = await here2.wait(1);
      assert.deepEqual(
        members2.map((m) => m.id).sort(),
        ['e-1', 'e-2'],
      );

      const [[joined]] = await joining1.wait(1);
      assert.deepEqual(joined, { id: 'e-2', name: 'Echo Two' });

      echo2.leave(room);
      const [[left]] = await leaving1.wait(1);
      assert.deepEqual(left, { id: 'e-2', name: 'Echo Two' });
      assert.equal(joining1.items.length, 1);
    });

    test(`${broadcaster}: whisper / listenForWhisper on a private channel`, async (t) => {
      const s = h.scope(t);
      const chat = h.uid('whisper');
      const echo1 = await s.echo(broadcaster);
      const echo2 = await s.echo(broadcaster);
      const ch1 = echo1.private(chat);
      const heard1 = collector('whisper on sender');
      ch1.listenForWhisper('typing', heard1);
      const heard2 = collector('whisper on receiver');
      const ch2 = echo2.private(chat).listenForWhisper('typing', heard2);
      await Promise.all([echoSubscribed(ch1, chat), echoSubscribed(ch2, chat)]);

      ch1.whisper('typing', { name: 'Taylor', typing: true });
      const [[data]] = await heard2.wait(1);
      assert.deepEqual(data, { name: 'Taylor', typing: true });
      // Fence: an SDK event sent after the whisper reaches the sender after
      // anything the server would have sent it before.
      const fenced = collector('fence on sender');
      ch1.listen('.conformance-fence', fenced);
      await h.sdk.trigger(`private-${chat}`, 'conformance-fence', { n: 1 });
      await fenced.wait(1);
      assert.equal(heard1.items.length, 0, 'whispers are not echoed to the sender');
    });

    test(`${broadcaster}: whisper / listenForWhisper on a presence channel`, async (t) => {
      const s = h.scope(t);
      const room = h.uid('whisper-room');
      const echo1 = await s.echo(broadcaster, { userId: 'w-1' });
      const echo2 = await s.echo(broadcaster, { userId: 'w-2' });
      const ch1 = echo1.join(room);
      const heard = collector('presence whisper');
      const ch2 = echo2.join(room).listenForWhisper('typing', heard);
      await Promise.all([echoSubscribed(ch1, room), echoSubscribed(ch2, room)]);
      ch1.whisper('typing', { who: 'w-1' });
      const [[data, metadata]] = await heard.wait(1);
      assert.deepEqual(data, { who: 'w-1' });
      assert.equal(metadata?.user_id, 'w-1');
    });
  });
}

test('Echo with a ready pusher-js instance passed as options.client', async (t) => {
  const s = h.scope(t);
  const client = new PusherClient(h.env.key, pusherOptions(h.auth));
  t.after(() => client.disconnect());
  await waitConnected(client);
  const echo = await s.echo('pusher', { client });
  assert.equal(echo.connector.pusher, client);
  const name = h.uid('orders');
  const got = collector('.order.shipped');
  const channel = echo.channel(name).listen('.order.shipped', got);
  await echoSubscribed(channel, name);
  await h.sdk.trigger(name, 'order.shipped', { via: 'client option' });
  const [[data]] = await got.wait(1);
  assert.deepEqual(data, { via: 'client option' });
});
