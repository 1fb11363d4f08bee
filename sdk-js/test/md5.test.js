import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';

import { md5Hex } from '../dist/index.js';

// RFC 1321 appendix A.5 test suite.
const RFC1321 = [
  ['', 'd41d8cd98f00b204e9800998ecf8427e'],
  ['a', '0cc175b9c0f1b6a831c399e269772661'],
  ['abc', '900150983cd24fb0d6963f7d28e17f72'],
  ['message digest', 'f96b697d7cb7938d525a2f31aaf161d0'],
  ['abcdefghijklmnopqrstuvwxyz', 'c3fcd3d76192e4007dfb496cca67e13b'],
  ['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 'd174ab98d277d9f5a5611c2c9f419d9f'],
  ['12345678901234567890123456789012345678901234567890123456789012345678901234567890', '57edf4a22be3c955ac49da2e2107b67a'],
];

test('md5: RFC 1321 test suite', () => {
  for (const [input, expected] of RFC1321) assert.equal(md5Hex(input), expected, JSON.stringify(input));
});

test('md5: pusher-protocol.md §7 V4 (trigger body) and V12 constants', () => {
  assert.equal(
    md5Hex('{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'),
    'ec365a775a4cd0599faeb73354201b6f',
  );
  assert.equal(md5Hex('{}'), '99914b932bd37a50b983c5e7c90ae93b');
  assert.equal(md5Hex(''), 'd41d8cd98f00b204e9800998ecf8427e');
});

test('md5: UTF-8 strings hash as their UTF-8 bytes', () => {
  const text = '{"message":"zażółć gęślą jaźń €","emoji":"🎉"}';
  assert.equal(md5Hex(text), createHash('md5').update(text, 'utf8').digest('hex'));
  assert.equal(md5Hex(new TextEncoder().encode(text)), md5Hex(text));
});

test('md5: every length around the 64-byte block and padding boundaries matches node:crypto', () => {
  for (let n = 0; n <= 300; n++) {
    const bytes = randomBytes(n);
    assert.equal(md5Hex(new Uint8Array(bytes)), createHash('md5').update(bytes).digest('hex'), `length ${n}`);
  }
});

test('md5: large random inputs match node:crypto', () => {
  for (const n of [1000, 65_536, 1_000_003]) {
    const bytes = randomBytes(n);
    assert.equal(md5Hex(new Uint8Array(bytes)), createHash('md5').update(bytes).digest('hex'), `length ${n}`);
  }
});

test('md5: throughput (diagnostic)', (t) => {
  const bytes = new Uint8Array(randomBytes(1 << 20));
  const start = performance.now();
  for (let i = 0; i < 10; i++) md5Hex(bytes);
  const ms = (performance.now() - start) / 10;
  t.diagnostic(`md5 of 1 MiB: ${ms.toFixed(1)} ms (${(1 / (ms / 1000)).toFixed(0)} MiB/s)`);
});
