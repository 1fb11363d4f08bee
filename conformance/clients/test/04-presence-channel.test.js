import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe, fence } from '../lib/harness.js';
import { record, sleep } from '../lib/wait.js';

const h = await createHarness();

const membersList = (channel) => {
  const out = {};
  channel.members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
};

test('presence: members.me, members.count and members.get(id).info on subscription', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-room');
  const aliceInfo = { name: 'Alice', role: 'admin', tags: ['x', 'y'] };
  const alice = await s.pusher({ userId: 'alice', userInfo: aliceInfo });
  const chA = await subscribe(alice, name);

  assert.equal(chA.members.count, 1);
  assert.equal(chA.members.me.id, 'alice');
  assert.deepEqual(chA.members.me.info, aliceInfo);
  assert.deepEqual(chA.members.get('alice').info, aliceInfo);

  const bob = await s.pusher({ userId: 'bob', userInfo: { name: 'Bob' } });
  const chB = await subscribe(bob, name);
  assert.equal(chB.members.count, 2);
  assert.equal(chB.members.me.id, 'bob');
  assert.deepEqual(membersList(chB), { alice: aliceInfo, bob: { name: 'Bob' } });
});

test('presence: member_added and member_removed reach the other member with id and info', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-room');
  const alice = await s.pusher({ userId: 'alice', userInfo: { name: 'Alice' } });
  const chA = await subscribe(alice, name);
  const added = record(chA, 'pusher:member_added');
  const removed = record(chA, 'pusher:member_removed');

  const bob = await s.pusher({ userId: 'bob', userInfo: { name: 'Bob', n: 7 } });
  const chB = await subscribe(bob, name);
  const [add] = await added.waitCount(1);
  assert.equal(add.data.id, 'bob');
  assert.deepEqual(add.data.info, { name: 'Bob', n: 7 });
  assert.equal(chA.members.count, 2);
  assert.deepEqual(chA.members.get('bob').info, { name: 'Bob', n: 7 });

  // The joiner must not get a member_added for itself.
  const addedOnB = record(chB, 'pusher:member_added');
  await fence(h.sdk, [chA, chB]);
  assert.equal(addedOnB.count, 0);

  bob.unsubscribe(name);
  const [rem] = await removed.waitCount(1);
  assert.equal(rem.data.id, 'bob');
  // pusher-js looks the info up in its own member table.
  assert.deepEqual(rem.data.info, { name: 'Bob', n: 7 });
  assert.equal(chA.members.count, 1);
  assert.equal(chA.members.get('bob'), null);
});

test('presence: disconnecting (not just unsubscribing) also produces member_removed', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-room');
  const alice = await s.pusher({ userId: 'alice' });
  const chA = await subscribe(alice, name);
  const removed = record(chA, 'pusher:member_removed');
  const carol = await s.pusher({ userId: 'carol' });
  await subscribe(carol, name);
  carol.disconnect();
  const [rem] = await removed.waitCount(1);
  assert.equal(rem.data.id, 'carol');
  assert.equal(chA.members.count, 1);
});

test('presence: the same user on two connections is one member (one member_added; member_removed only after the last leaves)', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-room');
  const alice = await s.pusher({ userId: 'alice', userInfo: { name: 'Alice' } });
  const chA = await subscribe(alice, name);
  const added = record(chA, 'pusher:member_added');
  const removed = record(chA, 'pusher:member_removed');

  const bob1 = await s.pusher({ userId: 'bob', userInfo: { name: 'Bob' } });
  const chB1 = await subscribe(bob1, name);
  await added.waitCount(1);

  const bob2 = await s.pusher({ userId: 'bob', userInfo: { name: 'Bob' } });
  const chB2 = await subscribe(bob2, name);
  assert.equal(chB2.members.count, 2, 'two distinct users even though there are three connections');
  assert.deepEqual(Object.keys(membersList(chB2)).sort(), ['alice', 'bob']);

  await fence(h.sdk, [chA, chB1, chB2]);
  assert.equal(added.count, 1, 'a second connection of the same user must not produce member_added');
  assert.equal(chA.members.count, 2);

  // First of bob's connections leaves: bob is still present.
  bob1.disconnect();
  await sleep(1000); // let the server process the close before fencing
  await fence(h.sdk, [chA, chB2]);
  assert.equal(removed.count, 0, 'member_removed must wait for the user\'s last connection');
  assert.equal(chA.members.count, 2);

  // Last one leaves: now member_removed fires, exactly once.
  bob2.disconnect();
  const [rem] = await removed.waitCount(1);
  assert.equal(rem.data.id, 'bob');
  await fence(h.sdk, [chA]);
  assert.equal(removed.count, 1);
  assert.equal(chA.members.count, 1);
});

test('presence: numeric-looking and unicode user ids/info round-trip', async (t) => {
  const s = h.scope(t);
  const name = h.uid('presence-room');
  const info = { name: 'Zoë Ødegård 🚀', 'with:colon': 'a:b' };
  const a = await s.pusher({ userId: '12345', userInfo: info });
  const chA = await subscribe(a, name);
  const b = await s.pusher({ userId: 'user@example.com', userInfo: { name: 'E' } });
  const chB = await subscribe(b, name);
  assert.deepEqual(chB.members.get('12345').info, info);
  assert.equal(chA.members.me.id, '12345');
  assert.equal(chB.members.count, 2);
});
