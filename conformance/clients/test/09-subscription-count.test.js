import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, subscribe } from '../lib/harness.js';
import { record } from '../lib/wait.js';

const h = await createHarness();

test('subscription_count: pusher:subscription_count reports 2 when a second client subscribes', async (t) => {
  if (!h.env.expectSubscriptionCount) {
    t.skip(
      'COMNESTOR_EXPECT_SUBSCRIPTION_COUNT is not 1: the subscription_count feature is a per-app toggle, ' +
        'set COMNESTOR_EXPECT_SUBSCRIPTION_COUNT=1 when the target app has it enabled',
    );
    return;
  }
  const s = h.scope(t);
  const name = h.uid('counted');
  const a = await s.pusher();
  const chA = a.subscribe(name);
  const counts = record(chA, 'pusher:subscription_count');
  await subscribe(a, name);
  const first = await counts.waitMatch((i) => i.data.subscription_count === 1, 'subscription_count 1 after the first subscribe');
  assert.equal(first.data.subscription_count, 1);

  const b = await s.pusher();
  const chB = b.subscribe(name);
  const countsB = record(chB, 'pusher:subscription_count');
  await subscribe(b, name);

  const two = await counts.waitMatch((i) => i.data.subscription_count === 2, 'subscription_count 2 on the first client');
  assert.deepEqual(two.data, { subscription_count: 2 });
  assert.equal(chA.subscriptionCount, 2);
  await countsB.waitMatch((i) => i.data.subscription_count === 2, 'subscription_count 2 on the second client');
  assert.equal(chB.subscriptionCount, 2);

  // And it goes down again when one leaves.
  b.unsubscribe(name);
  await counts.waitMatch(
    (i) => i.data.subscription_count === 1 && counts.items.indexOf(i) > counts.items.indexOf(two),
    'subscription_count back to 1 after an unsubscribe',
  );
  counts.stop();
  countsB.stop();
});
