// The shared conformance vectors (conformance/vectors/*.json), checked against the built package.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  authenticateUser,
  authorizeChannel,
  channelSharedSecret,
  decryptPayload,
  encryptPayload,
  fromBase64,
  md5Hex,
  signRequest,
  signWebhook,
  toBase64,
  toHex,
  verifyWebhook,
} from '../dist/index.js';
import { loadVectors } from './lib/vectors.js';

for (const v of loadVectors('channel-auth.json')) {
  test(`channel-auth: ${v.name}`, async () => {
    const masterKey = v.master_key_base64 ? fromBase64(v.master_key_base64) : undefined;
    const response = await authorizeChannel(
      { key: v.key, secret: v.secret, masterKey },
      v.socket_id,
      v.channel_name,
      v.channel_data,
    );
    assert.deepEqual(response, v.expected.response);
    assert.equal(response.auth, v.expected.auth);
    if (v.expected.shared_secret) assert.equal(response.shared_secret, v.expected.shared_secret);
    // The object form serializes to the same bytes when the vector's JSON is compact.
    if (v.channel_data && JSON.stringify(JSON.parse(v.channel_data)) === v.channel_data && JSON.parse(v.channel_data).user_id !== undefined) {
      const again = await authorizeChannel({ key: v.key, secret: v.secret, masterKey }, v.socket_id, v.channel_name, JSON.parse(v.channel_data));
      assert.deepEqual(again, v.expected.response);
    }
  });
}

for (const v of loadVectors('user-auth.json')) {
  test(`user-auth: ${v.name}`, async () => {
    const response = await authenticateUser({ key: v.key, secret: v.secret }, v.socket_id, v.user_data);
    assert.deepEqual(response, v.expected.response);
    if (JSON.stringify(JSON.parse(v.user_data)) === v.user_data) {
      assert.deepEqual(await authenticateUser({ key: v.key, secret: v.secret }, v.socket_id, JSON.parse(v.user_data)), v.expected.response);
    }
  });
}

for (const v of loadVectors('request-signing.json')) {
  test(`request-signing: ${v.name}`, async () => {
    const signed = await signRequest({
      key: v.key,
      secret: v.secret,
      method: v.method,
      path: v.path,
      params: v.params,
      body: v.body,
      timestamp: v.timestamp,
    });
    assert.equal(signed.bodyMd5, v.expected.body_md5 ?? undefined);
    if (v.body !== null) assert.equal(md5Hex(v.body), v.expected.body_md5);
    assert.equal(signed.stringToSign, v.expected.string_to_sign);
    assert.equal(signed.authSignature, v.expected.auth_signature);
    // The URL query carries the same parameters, auth_signature last.
    const sent = [...new URLSearchParams(signed.query)];
    assert.deepEqual(sent.at(-1), ['auth_signature', v.expected.auth_signature]);
    assert.equal(sent.slice(0, -1).map(([k, val]) => `${k}=${val}`).join('&'), v.expected.string_to_sign.split('\n')[2]);
  });
}

for (const v of loadVectors('webhook.json')) {
  test(`webhook: ${v.name}`, async () => {
    const headers = await signWebhook({ key: v.key, secret: v.secret }, v.body);
    assert.equal(headers['X-Pusher-Signature'], v.expected.signature);
    assert.equal(headers['X-Pusher-Key'], v.expected.headers['X-Pusher-Key']);
    const payload = await verifyWebhook({ key: v.key, secret: v.secret }, { headers: v.expected.headers, body: v.body });
    assert.deepEqual(payload, JSON.parse(v.body));
    // Also as bytes and with a fetch Headers object.
    const bytes = new TextEncoder().encode(v.body);
    await verifyWebhook({ key: v.key, secret: v.secret }, { headers: new Headers(v.expected.headers), body: bytes });
  });
}

for (const v of loadVectors('encryption.json')) {
  test(`encryption: ${v.name}`, async () => {
    const masterKey = fromBase64(v.master_key_base64);
    const secret = await channelSharedSecret(v.channel_name, masterKey);
    assert.equal(toHex(secret), v.expected.shared_secret_hex);
    assert.equal(toBase64(secret), v.expected.shared_secret_base64);
    if (v.plaintext !== undefined) {
      const data = await encryptPayload(v.channel_name, v.plaintext, masterKey, fromBase64(v.nonce_base64));
      assert.equal(data, v.expected.event_data);
      assert.equal(JSON.parse(data).ciphertext, v.expected.ciphertext_base64);
      assert.equal(await decryptPayload(v.channel_name, v.expected.event_data, masterKey), v.plaintext);
    }
  });
}
