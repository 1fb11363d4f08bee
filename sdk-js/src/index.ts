// @comnestor/realtime: the server SDK for Comnestor Realtime (Pusher-compatible).

export { Comnestor } from './client.js';
export type {
  BatchEvent,
  ChannelAttributes,
  ChannelParams,
  ChannelResponse,
  ChannelsParams,
  ChannelsResponse,
  ComnestorOptions,
  RequestOptions,
  SendEventOptions,
  TriggerBatchResponse,
  TriggerParams,
  TriggerResponse,
  UsersResponse,
} from './client.js';

export {
  ComnestorApiError,
  ComnestorEncryptionError,
  ComnestorError,
  ComnestorNetworkError,
  ComnestorTimeoutError,
  ComnestorValidationError,
  ComnestorWebhookError,
} from './errors.js';
export type { WebhookFailure } from './errors.js';

export { authenticateUser, authorizeChannel } from './auth.js';
export type { ChannelAuthResponse, Credentials, PresenceData, UserAuthResponse, UserData } from './auth.js';

export { signWebhook, verifyWebhook } from './webhook.js';
export type { HeadersLike, VerifyWebhookOptions, WebhookCredentials, WebhookEvent, WebhookPayload, WebhookRequest } from './webhook.js';

export {
  channelSharedSecret,
  decryptEventData,
  decryptPayload,
  encryptEventData,
  encryptPayload,
  parseMasterKey,
} from './encryption.js';

export { signRequest } from './signing.js';
export type { SignRequestInput, SignedRequest } from './signing.js';

export { md5, md5Hex } from './md5.js';
export { hmacSha256, hmacSha256Hex, sha256 } from './hmac.js';
export { fromBase64, fromHex, toBase64, toHex } from './encoding.js';

/** The types of Comnestor's `/api`, generated from the server's OpenAPI spec. */
export type * from './generated/api.js';
export { API_BASE_PATH, EventStatusValues, operations } from './generated/api.js';
