// Channel authorization and user authentication: what an app's auth endpoint answers to
// pusher-js and Laravel Echo.

import { toBase64 } from './encoding.js';
import { channelSharedSecret } from './encryption.js';
import { ComnestorEncryptionError, ComnestorValidationError } from './errors.js';
import { hmacSha256Hex } from './hmac.js';
import { isEncryptedChannel, validateChannel, validateSocketId } from './validation.js';

/** The member a presence channel subscription adds. */
export interface PresenceData {
  /** Unique per user; several connections of one user count once. */
  user_id: string | number;
  /** Anything JSON; other members see it in `members`. */
  user_info?: unknown;
}

/** The auth endpoint's JSON answer for `private-`, `presence-` and `private-encrypted-` channels. */
export interface ChannelAuthResponse {
  auth: string;
  /** Presence channels: the exact JSON string that was signed. */
  channel_data?: string;
  /** Encrypted channels: base64 of the per-channel key. */
  shared_secret?: string;
}

/** The signed-in user (`pusher:signin`). `id` is required; the rest is up to the app. */
export interface UserData {
  id: string;
  user_info?: unknown;
  /** User ids whose online/offline state this user watches. */
  watchlist?: string[];
  [field: string]: unknown;
}

/** The user-authentication endpoint's JSON answer. */
export interface UserAuthResponse {
  auth: string;
  user_data: string;
}

export interface Credentials {
  key: string;
  secret: string;
}

/**
 * Signs `socket_id:channel[:channel_data]`. `presenceData` is serialized with JSON.stringify
 * (as pusher-http-node does); pass a string to sign exact bytes of your own.
 */
export async function authorizeChannel(
  credentials: Credentials & { masterKey?: Uint8Array | undefined },
  socketId: string,
  channel: string,
  presenceData?: PresenceData | string,
): Promise<ChannelAuthResponse> {
  const operation = 'authorizeChannel';
  validateSocketId(socketId, operation);
  validateChannel(channel, operation);
  let channelData: string | undefined;
  if (presenceData !== undefined) {
    if (typeof presenceData === 'string') {
      channelData = presenceData;
    } else {
      const id = presenceData?.user_id;
      if (!(typeof id === 'string' && id !== '') && !(typeof id === 'number' && Number.isFinite(id))) {
        throw new ComnestorValidationError(`${operation}: presence data needs a user_id (string or number)`, {
          operation,
          field: 'user_id',
        });
      }
      channelData = JSON.stringify(presenceData);
    }
  }
  const toSign = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
  const response: ChannelAuthResponse = { auth: `${credentials.key}:${await hmacSha256Hex(credentials.secret, toSign)}` };
  if (channelData !== undefined) response.channel_data = channelData;
  if (isEncryptedChannel(channel)) {
    if (!credentials.masterKey) {
      throw new ComnestorEncryptionError(
        `${operation}: ${channel} is an encrypted channel; configure encryptionMasterKeyBase64 to authorize it`,
        { operation },
      );
    }
    response.shared_secret = toBase64(await channelSharedSecret(channel, credentials.masterKey));
  }
  return response;
}

/**
 * Signs `socket_id::user::user_data` for `pusher:signin`. `userData` is serialized with
 * JSON.stringify; pass a string to sign exact bytes of your own.
 */
export async function authenticateUser(
  credentials: Credentials,
  socketId: string,
  userData: UserData | string,
): Promise<UserAuthResponse> {
  const operation = 'authenticateUser';
  validateSocketId(socketId, operation);
  let parsed: unknown = userData;
  if (typeof userData === 'string') {
    try {
      parsed = JSON.parse(userData);
    } catch {
      parsed = undefined;
    }
  }
  const id = parsed && typeof parsed === 'object' ? (parsed as { id?: unknown }).id : undefined;
  if (typeof id !== 'string' || id === '') {
    throw new ComnestorValidationError(`${operation}: user data needs an id (a non-empty string)`, {
      operation,
      field: 'id',
    });
  }
  const serialized = typeof userData === 'string' ? userData : JSON.stringify(userData);
  const signature = await hmacSha256Hex(credentials.secret, `${socketId}::user::${serialized}`);
  return { auth: `${credentials.key}:${signature}`, user_data: serialized };
}
