// HMAC-SHA256 and SHA-256 through WebCrypto (globalThis.crypto.subtle), available on Node 18+,
// Deno, Bun, Cloudflare Workers and Vercel Edge.

import { toBytes, toHex } from './encoding.js';

function subtle(): SubtleCrypto {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (!c?.subtle) {
    throw new Error(
      'WebCrypto (globalThis.crypto.subtle) is not available. Node 18 needs `--experimental-global-webcrypto` ' +
        'or run Node 19+; Deno, Bun, Cloudflare Workers and Vercel Edge have it.',
    );
  }
  return c.subtle;
}

// An ArrayBuffer-backed copy of exactly these bytes: WebCrypto's types refuse SharedArrayBuffer
// views. Not `bytes.slice()`: on a Node Buffer (express.raw(), Buffer.concat) `slice` is a view,
// and its `.buffer` is the whole shared pool, so the HMAC would cover other bytes.
function buffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    key = subtle().importKey('raw', buffer(toBytes(secret)), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    if (keyCache.size > 16) keyCache.clear();
    keyCache.set(secret, key);
    key.catch(() => keyCache.delete(secret));
  }
  return key;
}

/** Raw HMAC-SHA256 of `message` (UTF-8 when a string) with `secret` as the key. */
export async function hmacSha256(secret: string, message: string | Uint8Array): Promise<Uint8Array> {
  const key = await hmacKey(secret);
  return new Uint8Array(await subtle().sign('HMAC', key, buffer(toBytes(message))));
}

/** Lower-case hex HMAC-SHA256, the form every Pusher signature uses. */
export async function hmacSha256Hex(secret: string, message: string | Uint8Array): Promise<string> {
  return toHex(await hmacSha256(secret, message));
}

/** Raw SHA-256 digest. */
export async function sha256(message: string | Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await subtle().digest('SHA-256', buffer(toBytes(message))));
}
