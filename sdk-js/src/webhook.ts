// Verifying webhooks: X-Pusher-Signature = hex(HMAC-SHA256(secret, raw body)), X-Pusher-Key =
// app key. Verify over the raw bytes you received, never over re-serialized JSON.

import { constantTimeEqual, toBytes, utf8Decode } from './encoding.js';
import { ComnestorWebhookError } from './errors.js';
import { hmacSha256Hex } from './hmac.js';

/** The events a webhook carries. */
export type WebhookEvent =
  | { name: 'channel_occupied'; channel: string }
  | { name: 'channel_vacated'; channel: string }
  | { name: 'member_added'; channel: string; user_id: string }
  | { name: 'member_removed'; channel: string; user_id: string }
  | {
      name: 'client_event';
      channel: string;
      event: string;
      /** The client's data, a string (JSON) or an object; on encrypted channels `{"nonce","ciphertext"}`. */
      data: unknown;
      socket_id: string;
      /** Presence channels only. */
      user_id?: string;
    }
  | { name: 'cache_miss'; channel: string }
  | { name: 'subscription_count'; channel: string; subscription_count: number }
  | { name: string; channel?: string; [field: string]: unknown };

/** A verified webhook body. */
export interface WebhookPayload {
  /** Unix ms when the server created the webhook. */
  time_ms: number;
  events: WebhookEvent[];
}

/** Anything that has headers: a fetch `Headers`, or Node's `req.headers` object. */
export type HeadersLike =
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>;

export interface WebhookRequest {
  headers: HeadersLike;
  /** The raw body, exactly as received (Express: `express.raw()`; fetch: `await request.text()`). */
  body: string | Uint8Array | ArrayBuffer;
}

export interface VerifyWebhookOptions {
  /**
   * Refuse webhooks whose `time_ms` is further than this from now (ms). Off by default, as in
   * pusher-http-node; pusher-http-python uses 300000 (5 minutes).
   */
  toleranceMs?: number;
  /** "Now" in Unix ms, for tests. */
  now?: number;
}

export interface WebhookCredentials {
  key: string;
  secret: string;
}

export function header(headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  const wanted = name.toLowerCase();
  for (const [k, v] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (k.toLowerCase() !== wanted || v === undefined) continue;
    return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/**
 * Checks a webhook's key and signature and returns its parsed body. Throws
 * {@link ComnestorWebhookError} (with a `reason`) when it is not authentic. `credentials` may
 * list several key/secret pairs, for key rotation.
 */
export async function verifyWebhook(
  credentials: WebhookCredentials | readonly WebhookCredentials[],
  request: WebhookRequest,
  options: VerifyWebhookOptions = {},
): Promise<WebhookPayload> {
  const operation = 'verifyWebhook';
  const fail = (reason: ComnestorWebhookError['reason'], message: string): never => {
    throw new ComnestorWebhookError(`${operation}: ${message}`, { operation, reason });
  };
  const body = request.body as unknown;
  if (!(typeof body === 'string' || body instanceof Uint8Array || body instanceof ArrayBuffer)) {
    fail(
      'invalid_body',
      'the body must be the raw string or bytes as received (it looks already parsed; use express.raw() or await request.text())',
    );
  }
  const raw = toBytes(request.body);
  const signature = header(request.headers, 'x-pusher-signature');
  if (!signature) fail('missing_signature', 'no X-Pusher-Signature header');
  const key = header(request.headers, 'x-pusher-key');
  if (!key) fail('missing_key', 'no X-Pusher-Key header');
  const contentType = header(request.headers, 'content-type');
  if (contentType !== undefined && !/^application\/json\s*(;|$)/i.test(contentType.trim())) {
    fail('invalid_content_type', `Content-Type is ${JSON.stringify(contentType)}, expected application/json`);
  }
  const candidates = (Array.isArray(credentials) ? credentials : [credentials]) as readonly WebhookCredentials[];
  const matching = candidates.filter((c) => constantTimeEqual(c.key, key!));
  if (matching.length === 0) fail('unknown_key', `X-Pusher-Key ${JSON.stringify(key)} is not this app's key`);
  let valid = false;
  for (const c of matching) {
    if (constantTimeEqual(await hmacSha256Hex(c.secret, raw), signature!.trim().toLowerCase())) valid = true;
  }
  if (!valid) fail('invalid_signature', 'X-Pusher-Signature does not match the body');

  let payload: unknown;
  try {
    payload = JSON.parse(utf8Decode(raw));
  } catch {
    fail('invalid_body', 'the body is not UTF-8 JSON');
  }
  const p = payload as Partial<WebhookPayload> | null;
  if (!p || typeof p !== 'object' || typeof p.time_ms !== 'number' || !Array.isArray(p.events)) {
    fail('invalid_body', 'the body is not {"time_ms": number, "events": [...]}');
  }
  if (options.toleranceMs !== undefined) {
    const now = options.now ?? Date.now();
    if (Math.abs(now - p!.time_ms!) > options.toleranceMs) {
      fail('expired', `time_ms ${p!.time_ms} is more than ${options.toleranceMs} ms from now`);
    }
  }
  return p as WebhookPayload;
}

/** Computes the headers the server sends with a webhook body (for tests and forwarding). */
export async function signWebhook(credentials: WebhookCredentials, body: string | Uint8Array): Promise<Record<string, string>> {
  return {
    'Content-Type': 'application/json',
    'X-Pusher-Key': credentials.key,
    'X-Pusher-Signature': await hmacSha256Hex(credentials.secret, body),
  };
}
