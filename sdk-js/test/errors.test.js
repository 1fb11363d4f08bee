// Errors are typed: status, problem body, which call; never a bare string.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
  Comnestor,
  ComnestorApiError,
  ComnestorError,
  ComnestorNetworkError,
  ComnestorTimeoutError,
  ComnestorValidationError,
} from '../dist/index.js';
import { startRecorder } from './lib/recorder.js';

const APP = { appId: '7', key: 'k', secret: 's' };
let stub;
let answer;
before(async () => {
  stub = await startRecorder((req) => answer(req));
});
after(() => stub.close());

const problem = { type: 'https://comnestor.dev/problems/conflict', title: 'Conflict', status: 409, detail: 'this Idempotency-Key was already used with a different request' };

test('an /api error carries status, the problem, the operation and no secrets in the URL', async () => {
  answer = () => ({ status: 409, contentType: 'application/problem+json', body: JSON.stringify(problem) });
  const c = new Comnestor({ ...APP, baseUrl: stub.url });
  const err = await c.sendEvent({ channel: 'c', event: 'e', data: {} }, { idempotencyKey: 'k1' }).catch((e) => e);
  assert.ok(err instanceof ComnestorApiError);
  assert.ok(err instanceof ComnestorError);
  assert.equal(err.status, 409);
  assert.equal(err.operation, 'sendEvent');
  assert.deepEqual(err.problem, problem);
  assert.equal(err.serverMessage, problem.detail);
  assert.equal(err.method, 'POST');
  assert.equal(err.url, `${stub.url}/api/events`);
  assert.match(err.message, /^sendEvent failed: POST .* answered 409: this Idempotency-Key/);
  const req = stub.requests.at(-1);
  assert.equal(req.headers['idempotency-key'], 'k1');
  assert.equal(req.headers.authorization, `Basic ${Buffer.from('k:s').toString('base64')}`);
});

test('a 429 exposes Retry-After', async () => {
  answer = () => ({
    status: 429,
    contentType: 'application/problem+json',
    headers: { 'retry-after': '3' },
    body: JSON.stringify({ ...problem, status: 429, title: 'Too Many Requests', detail: 'slow down' }),
  });
  const err = await new Comnestor({ ...APP, baseUrl: stub.url }).listEvents().catch((e) => e);
  assert.equal(err.status, 429);
  assert.equal(err.retryAfter, 3);
  assert.equal(err.operation, 'listEvents');
});

test('a Pusher API error carries the {"error"} message', async () => {
  answer = () => ({ status: 401, body: JSON.stringify({ error: 'Invalid signature' }) });
  const err = await new Comnestor({ ...APP, baseUrl: stub.url }).trigger('c', 'e', {}).catch((e) => e);
  assert.ok(err instanceof ComnestorApiError);
  assert.equal(err.status, 401);
  assert.equal(err.problem, undefined);
  assert.equal(err.serverMessage, 'Invalid signature');
  assert.equal(err.operation, 'trigger');
  assert.equal(err.url, `${stub.url}/apps/7/events`);
});

test('a plain-text error body is kept', async () => {
  answer = () => ({ status: 500, contentType: 'text/plain', body: 'boom' });
  const err = await new Comnestor({ ...APP, baseUrl: stub.url }).channels().catch((e) => e);
  assert.equal(err.status, 500);
  assert.equal(err.body, 'boom');
  assert.equal(err.serverMessage, 'boom');
});

test('connection refused is a ComnestorNetworkError naming the call', async () => {
  const closed = await startRecorder();
  const url = closed.url;
  await closed.close();
  const err = await new Comnestor({ ...APP, baseUrl: url }).getEvent('x').catch((e) => e);
  assert.ok(err instanceof ComnestorNetworkError);
  assert.equal(err.operation, 'getEvent');
  assert.equal(err.url, `${url}/api/events/x`);
});

test('no answer within timeoutMs is a ComnestorTimeoutError', async () => {
  answer = () => ({ hang: true });
  const err = await new Comnestor({ ...APP, baseUrl: stub.url, timeoutMs: 200 }).users('presence-x').catch((e) => e);
  assert.ok(err instanceof ComnestorTimeoutError);
  assert.ok(err instanceof ComnestorNetworkError);
  assert.equal(err.timeoutMs, 200);
  assert.equal(err.operation, 'users');
});

test('bad arguments are refused before sending, naming the field', async () => {
  answer = () => ({ status: 200, body: '{}' });
  const c = new Comnestor({ ...APP, baseUrl: stub.url });
  const before = stub.requests.length;
  const cases = [
    [() => c.trigger('bad channel!', 'e', {}), 'channels'],
    [() => c.trigger('c', 'e', {}, { socket_id: 'nope' }), 'socket_id'],
    [() => c.trigger(Array.from({ length: 101 }, (_, i) => `c${i}`), 'e', {}), 'channels'],
    [() => c.sendEvent({ event: 'e', data: {} }), 'channels'],
    [() => c.sendEvent({ channel: 'c', event: 'e', data: {} }, { idempotencyKey: 'x'.repeat(256) }), 'idempotencyKey'],
    [() => c.authorizeChannel('1.2', 'presence-x', { user_info: {} }), 'user_id'],
    [() => c.authenticateUser('1.2', { name: 'no id' }), 'id'],
    [() => c.triggerBatch(Array.from({ length: 11 }, () => ({ channel: 'c', name: 'e', data: 1 }))), 'batch'],
  ];
  for (const [call, field] of cases) {
    await assert.rejects(call, (err) => {
      assert.ok(err instanceof ComnestorValidationError, String(err));
      assert.equal(err.field, field);
      return true;
    });
  }
  assert.equal(stub.requests.length, before, 'nothing was sent');
  assert.throws(() => new Comnestor({ ...APP, baseUrl: 'ftp://x' }), ComnestorValidationError);
  assert.throws(() => new Comnestor({ ...APP, baseUrl: stub.url, encryptionMasterKeyBase64: 'c2hvcnQ=' }), { name: 'ComnestorEncryptionError' });
  await assert.rejects(c.authorizeChannel('1.2', 'private-encrypted-x'), { name: 'ComnestorEncryptionError' });
});

test('apiAuth: "signature" signs /api requests instead of sending the secret', async () => {
  answer = () => ({ status: 200, body: '{"events":[]}' });
  const c = new Comnestor({ ...APP, baseUrl: `${stub.url}/prefix/`, apiAuth: 'signature' });
  await c.listEvents({ channel: 'orders', limit: 5 });
  const req = stub.requests.at(-1);
  assert.equal(req.path, '/prefix/api/events');
  assert.equal(req.headers.authorization, undefined);
  const q = Object.fromEntries(req.query);
  assert.equal(q.auth_key, 'k');
  assert.equal(q.channel, 'orders');
  assert.equal(q.limit, '5');
  assert.match(q.auth_signature, /^[0-9a-f]{64}$/);
});
