// Pusher HTTP API request signing, exactly as pusher-http-node, -php, -python and -go do it:
//
//   auth_key, auth_timestamp, auth_version=1.0, body_md5 (when there is a body) and every other
//   query parameter; keys lower-cased, sorted by key, joined as k=v with '&', NOT URL-escaped;
//   auth_signature = hex(HMAC-SHA256(secret, METHOD "\n" path "\n" that string)).

import { hmacSha256Hex } from './hmac.js';
import { md5Hex } from './md5.js';

export interface SignRequestInput {
  key: string;
  secret: string;
  method: string;
  /** The path as the server sees it, such as `/apps/3/events`. */
  path: string;
  /** Other query parameters, decoded. */
  params?: Record<string, string | number | boolean | undefined> | ReadonlyArray<readonly [string, string]>;
  /** The exact body. `undefined`/`null`: no body and no `body_md5`; a string, even empty, is a body. */
  body?: string | Uint8Array | null;
  /** `auth_timestamp` in Unix seconds; defaults to now. */
  timestamp?: number;
}

export interface SignedRequest {
  /** Every query parameter, sorted, `auth_signature` last, decoded. */
  params: Array<[string, string]>;
  /** The parameters as a URL query string (values percent-encoded), without `?`. */
  query: string;
  stringToSign: string;
  authSignature: string;
  bodyMd5: string | undefined;
}

function entries(params: SignRequestInput['params']): Array<[string, string]> {
  if (!params) return [];
  if (Array.isArray(params)) return params.map(([k, v]) => [k, v] as [string, string]);
  return Object.entries(params)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => [k, String(v)]);
}

/** Signs a Pusher HTTP API request. */
export async function signRequest(input: SignRequestInput): Promise<SignedRequest> {
  const map = new Map<string, string>();
  map.set('auth_key', input.key);
  map.set('auth_timestamp', String(input.timestamp ?? Math.floor(Date.now() / 1000)));
  map.set('auth_version', '1.0');
  const bodyMd5 = input.body === undefined || input.body === null ? undefined : md5Hex(input.body);
  if (bodyMd5 !== undefined) map.set('body_md5', bodyMd5);
  for (const [k, v] of entries(input.params)) {
    const key = k.toLowerCase();
    if (key === 'auth_signature') continue;
    map.set(key, v);
  }
  const sorted = [...map.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const canonical = sorted.map(([k, v]) => `${k}=${v}`).join('&');
  const stringToSign = `${input.method.toUpperCase()}\n${input.path}\n${canonical}`;
  const authSignature = await hmacSha256Hex(input.secret, stringToSign);
  const params: Array<[string, string]> = [...sorted, ['auth_signature', authSignature]];
  const query = params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeQueryValue(v)}`).join('&');
  return { params, query, stringToSign, authSignature, bodyMd5 };
}

// Percent-encodes what must be, keeping `,` readable (`info=user_count,subscription_count`),
// which servers decode either way.
function encodeQueryValue(value: string): string {
  return encodeURIComponent(value).replace(/%2C/gi, ',');
}
