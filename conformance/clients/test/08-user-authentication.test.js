import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe } from '../lib/harness.js';
import { waitFor, waitUntil, record, sleep } from '../lib/wait.js';

const h = await createHarness();

// Signs in and waits until pusher-js has processed pusher:signin_success and
// its #server-to-user- channel subscription has succeeded.
async function signin(client) {
  const success = waitFor(client.connection, 'message', 5000, (m) => m.event === 'pusher:signin_success');
  client.signin();
  const frame = await success;
  await waitUntil(() => client.user.serverToUserChannel?.subscribed, 'the #server-to-user- channel subscription');
  return frame;
}

test('user sign-in: pusher:signin_success carries the signed user_data', async (t) => {
  const s = h.scope(t);
  const userId = h.uid('user');
  const client = await s.pusher({ userId, userInfo: { name: 'Signed In' } });
  const frame = await signin(client);
  const userData = JSON.parse(frame.data.user_data);
  assert.equal(userData.id, userId);
  assert.deepEqual(userData.user_info, { name: 'Signed In' });
  assert.deepEqual(client.user.user_data, userData);
  assert.equal(client.user.serverToUserChannel.name, `#server-to-user-${userId}`);
});

test('user sign-in: sendToUser reaches pusher.user.bind(event) on every connection of that user only', async (t) => {
  const s = h.scope(t);
  const userId = h.uid('user');
  const [c1, c2, other] = await Promise.all([
    s.pusher({ userId }),
    s.pusher({ userId }),
    s.pusher({ userId: h.uid('other') }),
  ]);
  await Promise.all([signin(c1), signin(c2), signin(other)]);
  const on1 = record(c1.user, 'notification');
  const on2 = record(c2.user, 'notification');
  const onOther = record(other.user, 'notification');

  const res = await h.sdk.sendToUser(userId, 'notification', { text: 'hi there', n: 1 });
  assert.equal(res.status, 200);
  const [[m1], [m2]] = await Promise.all([on1.waitCount(1), on2.waitCount(1)]);
  assert.deepEqual(m1.data, { text: 'hi there', n: 1 });
  assert.deepEqual(m2.data, { text: 'hi there', n: 1 });

  // Fence for the other user: a message to them arrives after anything earlier.
  await h.sdk.sendToUser(other.user.user_data.id, 'notification', { text: 'yours' });
  const [mine] = await onOther.waitCount(1);
  assert.deepEqual(mine.data, { text: 'yours' }, 'other users must not receive the first message');
  assert.equal(on1.count, 1);
});

test('user sign-in: a failed user-auth (403) does not sign the connection in', async (t) => {
  const s = h.scope(t);
  const client = await s.pusher({ userId: h.uid('user'), deny: true });
  const failed = waitFor(client.user, 'pusher:signin_error');
  client.signin();
  const err = await failed;
  assert.equal(err.type, 'AuthError');
  assert.equal(err.status, 403);
  assert.equal(client.user.user_data, null);
  assert.equal(client.connection.state, 'connected');
});

test('user sign-in: terminateUserConnections disconnects that user\'s connections only', async (t) => {
  const s = h.scope(t);
  const userId = h.uid('user');
  const victim = await s.pusher({ userId });
  const bystander = await s.pusher({ userId: h.uid('bystander') });
  await signin(victim);
  await signin(bystander);
  const victimSocket = victim.connection.socket_id;
  const states = record(victim.connection, 'state_change');
  const bystanderStates = record(bystander.connection, 'state_change');

  const res = await h.sdk.terminateUserConnections(userId);
  assert.equal(res.status, 200);
  await states.waitMatch((i) => i.data.previous === 'connected', 'the terminated client to leave state "connected"');
  // Either it stays down (close code 4009: pusher-js does not reconnect) or it
  // reconnects as a brand-new connection.
  if (victim.connection.state === 'connected') {
    assert.notEqual(victim.connection.socket_id, victimSocket);
  }

  // The bystander keeps its connection and still works.
  const ch = await subscribe(bystander, h.uid('still-alive'));
  const got = waitFor(ch, 'ping-check');
  await h.sdk.trigger(ch.name, 'ping-check', { ok: true });
  assert.deepEqual(await got, { ok: true });
  assert.equal(bystanderStates.count, 0, 'the bystander connection must not change state');
});

test('user sign-in: a connection that only joined a presence channel is not terminated', async (t) => {
  const s = h.scope(t);
  const userId = h.uid('user');
  const presenceOnly = await s.pusher({ userId });
  await subscribe(presenceOnly, h.uid('presence-term'));
  const states = record(presenceOnly.connection, 'state_change');
  await h.sdk.terminateUserConnections(userId);
  await sleep(1000);
  assert.equal(states.count, 0, 'only signed-in connections are terminated (§2.11)');
  assert.equal(presenceOnly.connection.state, 'connected');
});

test('watchlist: A watching B gets "online" for B when B signs in, and "offline" when B leaves', async (t) => {
  const s = h.scope(t);
  const a = h.uid('watcher');
  const b = h.uid('watched');
  const clientA = await s.pusher({ userId: a, watchlist: [b] });
  const online = record(clientA.user.watchlist, 'online');
  const offline = record(clientA.user.watchlist, 'offline');
  await signin(clientA);
  await sleep(300);
  assert.ok(
    !online.items.some((i) => i.data.user_ids.includes(b)),
    'B is not online before signing in',
  );

  const clientB = await s.pusher({ userId: b });
  await signin(clientB);
  const ev = await online.waitMatch((i) => i.data.user_ids.includes(b), `watchlist "online" containing ${b}`);
  assert.equal(ev.data.name, 'online');
  assert.deepEqual(ev.data.user_ids, [b]);

  clientB.disconnect();
  const off = await offline.waitMatch((i) => i.data.user_ids.includes(b), `watchlist "offline" containing ${b}`);
  assert.equal(off.data.name, 'offline');
});

test('watchlist: a watched user already online is reported right after sign-in', async (t) => {
  const s = h.scope(t);
  const a = h.uid('watcher');
  const b = h.uid('watched');
  const clientB = await s.pusher({ userId: b });
  await signin(clientB);
  const clientA = await s.pusher({ userId: a, watchlist: [b, h.uid('nobody')] });
  const online = record(clientA.user.watchlist, 'online');
  await signin(clientA);
  const ev = await online.waitMatch((i) => i.data.user_ids.includes(b), `initial watchlist "online" containing ${b}`);
  assert.deepEqual(ev.data.user_ids, [b]);
});
