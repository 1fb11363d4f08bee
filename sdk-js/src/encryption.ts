// End-to-end encrypted channels (`private-encrypted-*`), compatible with pusher-http-node and
// pusher-js: per-channel key = SHA256(channel name UTF-8 || 32-byte master key); event data =
// {"nonce": base64(24 bytes), "ciphertext": base64(NaCl secretbox)}. The server never sees the
// key or the plaintext.

import nacl from 'tweetnacl';

import { fromBase64, toBase64, toBytes, utf8Decode } from './encoding.js';
import { ComnestorEncryptionError } from './errors.js';
import { sha256 } from './hmac.js';

export const MASTER_KEY_LENGTH = 32;
export const NONCE_LENGTH = 24;

/** Decodes and checks a base64 master key (32 bytes, 44 base64 characters). */
export function parseMasterKey(base64: string, operation = 'parseMasterKey'): Uint8Array {
  let key: Uint8Array;
  try {
    key = fromBase64(base64);
  } catch (cause) {
    throw new ComnestorEncryptionError(`${operation}: encryptionMasterKeyBase64 is not valid base64`, { operation, cause });
  }
  if (key.length !== MASTER_KEY_LENGTH) {
    throw new ComnestorEncryptionError(
      `${operation}: encryptionMasterKeyBase64 must decode to ${MASTER_KEY_LENGTH} bytes, got ${key.length}`,
      { operation },
    );
  }
  return key;
}

/** The channel's 32-byte secretbox key: SHA256(channel name || master key). */
export async function channelSharedSecret(channel: string, masterKey: Uint8Array): Promise<Uint8Array> {
  const name = toBytes(channel);
  const input = new Uint8Array(name.length + masterKey.length);
  input.set(name);
  input.set(masterKey, name.length);
  return sha256(input);
}

function randomNonce(): Uint8Array {
  const nonce = new Uint8Array(NONCE_LENGTH);
  globalThis.crypto.getRandomValues(nonce);
  return nonce;
}

/**
 * Encrypts `plaintext` (UTF-8 when a string) as-is for `channel`; returns the event's `data`
 * string. Most callers want {@link encryptEventData}, which JSON-encodes first.
 */
export async function encryptPayload(
  channel: string,
  plaintext: string | Uint8Array,
  masterKey: Uint8Array,
  nonce: Uint8Array = randomNonce(),
): Promise<string> {
  if (nonce.length !== NONCE_LENGTH) {
    throw new ComnestorEncryptionError(`encryptPayload: the nonce must be ${NONCE_LENGTH} bytes`, {
      operation: 'encryptPayload',
    });
  }
  const key = await channelSharedSecret(channel, masterKey);
  const box = nacl.secretbox(toBytes(plaintext), nonce, key);
  return JSON.stringify({ nonce: toBase64(nonce), ciphertext: toBase64(box) });
}

/** Encrypts `JSON.stringify(data)` for `channel`, as pusher-http-node's trigger does. */
export async function encryptEventData(
  channel: string,
  data: unknown,
  masterKey: Uint8Array,
  nonce?: Uint8Array,
): Promise<string> {
  const json = JSON.stringify(data);
  if (json === undefined) {
    throw new ComnestorEncryptionError('encryptEvent: data is not JSON-serializable', { operation: 'encryptEvent' });
  }
  return encryptPayload(channel, json, masterKey, nonce);
}

/** Decrypts an encrypted event's `data` string to the plaintext string. */
export async function decryptPayload(channel: string, data: string, masterKey: Uint8Array): Promise<string> {
  const operation = 'decryptEvent';
  let nonce: Uint8Array;
  let ciphertext: Uint8Array;
  try {
    const parsed = JSON.parse(data) as { nonce?: unknown; ciphertext?: unknown };
    if (typeof parsed.nonce !== 'string' || typeof parsed.ciphertext !== 'string') throw new Error('missing fields');
    nonce = fromBase64(parsed.nonce);
    ciphertext = fromBase64(parsed.ciphertext);
  } catch (cause) {
    throw new ComnestorEncryptionError(`${operation}: data is not {"nonce","ciphertext"} JSON with base64 values`, {
      operation,
      cause,
    });
  }
  if (nonce.length !== NONCE_LENGTH) {
    throw new ComnestorEncryptionError(`${operation}: the nonce is not ${NONCE_LENGTH} bytes`, { operation });
  }
  const key = await channelSharedSecret(channel, masterKey);
  const plain = nacl.secretbox.open(ciphertext, nonce, key);
  if (!plain) {
    throw new ComnestorEncryptionError(`${operation}: decryption failed (wrong channel or master key, or altered data)`, {
      operation,
    });
  }
  try {
    return utf8Decode(plain);
  } catch (cause) {
    throw new ComnestorEncryptionError(`${operation}: the plaintext is not UTF-8`, { operation, cause });
  }
}

/** Decrypts an encrypted event's `data`; returns parsed JSON, or the string when it is not JSON (as pusher-js does). */
export async function decryptEventData(channel: string, data: string, masterKey: Uint8Array): Promise<unknown> {
  const text = await decryptPayload(channel, data, masterKey);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
