// The client: Comnestor's /api (durable publish, event log, history) and the Pusher HTTP API
// (trigger, channels, users), plus channel/user auth, webhooks and encryption bound to one app.

import {
  authenticateUser,
  authorizeChannel,
  type ChannelAuthResponse,
  type PresenceData,
  type UserAuthResponse,
  type UserData,
} from './auth.js';
import { toBase64, toBytes } from './encoding.js';
import { decryptEventData, encryptEventData, parseMasterKey } from './encryption.js';
import {
  ComnestorApiError,
  ComnestorEncryptionError,
  ComnestorNetworkError,
  ComnestorTimeoutError,
  ComnestorValidationError,
} from './errors.js';
import {
  API_BASE_PATH,
  operations,
  type ChannelHistoryQuery,
  type ChannelHistoryResponse,
  type EventRecord,
  type GetEventResponse,
  type ListEventsQuery,
  type ListEventsResponse,
  type OperationId,
  type Problem,
  type PublishEventBody,
  type PublishEventResponse,
  type ReplayEventResponse,
} from './generated/api.js';
import { signRequest } from './signing.js';
import {
  isEncryptedChannel,
  MAX_BATCH_SIZE,
  SERVER_TO_USER_PREFIX,
  validateChannel,
  validateChannels,
  validateEventName,
  validateSocketId,
  validateUserId,
} from './validation.js';
import {
  verifyWebhook,
  type VerifyWebhookOptions,
  type WebhookCredentials,
  type WebhookPayload,
  type WebhookRequest,
} from './webhook.js';

export interface ComnestorOptions {
  appId: string;
  key: string;
  secret: string;
  /**
   * Where the server is, such as `https://realtime.example.com` or `http://127.0.0.1:6001`.
   * A path (`https://example.com/realtime`) is prepended to every request but not signed,
   * for a reverse proxy that strips it.
   */
  baseUrl: string;
  /** 32 bytes, base64: enables `private-encrypted-` channels (auth, trigger, sendEvent). */
  encryptionMasterKeyBase64?: string;
  /**
   * How `/api` requests authenticate: `basic` (default; key and secret as HTTP Basic, fine over
   * TLS) or `signature` (Pusher-style HMAC in the query, the secret never leaves the process).
   * The Pusher HTTP API (`/apps/...`) is always signed.
   */
  apiAuth?: 'basic' | 'signature';
  /** Per-request timeout; default 10000 ms. */
  timeoutMs?: number;
  /** A fetch implementation; defaults to `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Earlier key/secret pairs still accepted by `verifyWebhook` during a key rotation. */
  webhookCredentials?: WebhookCredentials[];
}

/** Per-call options. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SendEventOptions extends RequestOptions {
  /**
   * Makes a retried request return the first answer instead of creating a second event.
   * Use one per logical event (e.g. `crypto.randomUUID()`, or your own message id), at most
   * 255 characters. Reusing it for a different request fails with 409.
   */
  idempotencyKey?: string;
}

/** Attributes a trigger may ask for. */
export interface TriggerParams {
  /** Leave this connection out (the sender's own), as `123.456`. */
  socket_id?: string;
  /** Comma-separated: `user_count` (presence), `subscription_count`. */
  info?: string;
}

export interface ChannelAttributes {
  user_count?: number;
  subscription_count?: number;
}

/** `POST /apps/{id}/events`: `{}`, or the attributes asked for with `info`. */
export interface TriggerResponse {
  channels?: Record<string, ChannelAttributes>;
}

export interface BatchEvent {
  channel: string;
  name: string;
  data: unknown;
  socket_id?: string;
  info?: string;
}

/** `POST /apps/{id}/batch_events`: `{}`, or one attributes entry per item when asked with `info`. */
export interface TriggerBatchResponse {
  batch?: ChannelAttributes[];
}

export interface ChannelsParams {
  filter_by_prefix?: string;
  /** `user_count`, only with `filter_by_prefix: 'presence-'`. */
  info?: string;
}

export interface ChannelsResponse {
  channels: Record<string, { user_count?: number }>;
}

export interface ChannelParams {
  /** Comma-separated: `user_count` (presence), `subscription_count`, `cache` (cache channels). */
  info?: string;
}

export interface ChannelResponse {
  occupied: boolean;
  user_count?: number;
  subscription_count?: number;
  cache?: { data: string; ttl: number } | null;
}

export interface UsersResponse {
  users: Array<{ id: string }>;
}

interface CallSpec {
  operation: string;
  method: 'GET' | 'POST';
  /** The path the server sees (signed), without the base URL's own path. */
  path: string;
  query?: Array<[string, string]>;
  body?: unknown;
  auth: 'basic' | 'signature';
  headers?: Record<string, string>;
  options?: RequestOptions | undefined;
}

function queryEntries(query: object | undefined): Array<[string, string]> {
  if (!query) return [];
  return Object.entries(query)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => [k, String(v)]);
}

// Percent-encodes a path segment but keeps characters that are legal in one (RFC 3986 pchar),
// so a normal channel name is sent and signed byte-for-byte as pusher-http-node does.
function segment(value: string): string {
  return encodeURIComponent(value).replace(/%(21|24|26|27|28|29|2A|2B|2C|3B|3D|3A|40)/gi, (m) =>
    decodeURIComponent(m),
  );
}

function apiPath(id: OperationId, params: Record<string, string> = {}): string {
  const template: string = operations[id].path;
  return API_BASE_PATH + template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return segment(value);
  });
}

function isProblem(value: unknown): value is Problem {
  if (!value || typeof value !== 'object') return false;
  const v = value as Record<string, unknown>;
  return typeof v.status === 'number' && typeof v.title === 'string' && typeof v.type === 'string';
}

export class Comnestor {
  readonly appId: string;
  readonly key: string;
  readonly baseUrl: string;
  readonly #secret: string;
  readonly #masterKey: Uint8Array | undefined;
  readonly #apiAuth: 'basic' | 'signature';
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;
  readonly #webhookCredentials: WebhookCredentials[];
  readonly #origin: string;
  readonly #prefix: string;

  constructor(options: ComnestorOptions) {
    const operation = 'new Comnestor';
    for (const field of ['appId', 'key', 'secret', 'baseUrl'] as const) {
      if (typeof options?.[field] !== 'string' || options[field] === '') {
        throw new ComnestorValidationError(`${operation}: ${field} is required`, { operation, field });
      }
    }
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch (cause) {
      throw new ComnestorValidationError(`${operation}: baseUrl is not a URL: ${options.baseUrl}`, {
        operation,
        field: 'baseUrl',
        cause,
      });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ComnestorValidationError(`${operation}: baseUrl must be http:// or https://`, {
        operation,
        field: 'baseUrl',
      });
    }
    this.appId = options.appId;
    this.key = options.key;
    this.#secret = options.secret;
    this.#origin = url.origin;
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.baseUrl = this.#origin + this.#prefix;
    this.#masterKey =
      options.encryptionMasterKeyBase64 === undefined
        ? undefined
        : parseMasterKey(options.encryptionMasterKeyBase64, operation);
    this.#apiAuth = options.apiAuth ?? 'basic';
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    const f = options.fetch ?? (globalThis.fetch as typeof fetch | undefined);
    if (typeof f !== 'function') {
      throw new ComnestorValidationError(`${operation}: no fetch available; pass options.fetch`, {
        operation,
        field: 'fetch',
      });
    }
    this.#fetch = f;
    this.#headers = { ...options.headers };
    this.#webhookCredentials = [{ key: options.key, secret: options.secret }, ...(options.webhookCredentials ?? [])];
  }

  // ---------------------------------------------------------------------------------------
  // Comnestor /api: durable publish, the event log and channel history.

  /**
   * Publishes an event through `POST /api/events`: logged and queued before the answer, then
   * delivered (with retries). Resolves with the event id and status once accepted (202).
   * Events on a `private-encrypted-` channel are encrypted here (needs the master key).
   */
  async sendEvent(event: PublishEventBody, options: SendEventOptions = {}): Promise<PublishEventResponse> {
    const operation = 'sendEvent';
    if (!event || typeof event !== 'object') {
      throw new ComnestorValidationError(`${operation}: give {channel | channels, event, data}`, {
        operation,
        field: 'event',
      });
    }
    validateEventName(event.event, operation);
    const channels = event.channels ?? (event.channel !== undefined ? [event.channel] : undefined);
    if (event.channels !== undefined && event.channel !== undefined) {
      throw new ComnestorValidationError(`${operation}: give channel or channels, not both`, {
        operation,
        field: 'channels',
      });
    }
    validateChannels(channels, operation);
    if (event.socket_id !== undefined) validateSocketId(event.socket_id, operation);
    if (event.data === undefined) {
      throw new ComnestorValidationError(`${operation}: data is required (any JSON value)`, { operation, field: 'data' });
    }
    const body: PublishEventBody = { ...event };
    if (channels.some(isEncryptedChannel)) {
      body.data = await this.#encryptFor(channels, event.data, operation);
    }
    const headers: Record<string, string> = {};
    if (options.idempotencyKey !== undefined) {
      if (typeof options.idempotencyKey !== 'string' || options.idempotencyKey === '' || options.idempotencyKey.length > 255) {
        throw new ComnestorValidationError(`${operation}: idempotencyKey must be 1 to 255 characters`, {
          operation,
          field: 'idempotencyKey',
        });
      }
      headers['Idempotency-Key'] = options.idempotencyKey;
    }
    return this.#call<PublishEventResponse>({
      operation,
      method: operations.publishEvent.method,
      path: apiPath('publishEvent'),
      body,
      auth: this.#apiAuth,
      headers,
      options,
    });
  }

  /** Lists logged events, oldest first (`GET /api/events`); follow `next_cursor` for more. */
  async listEvents(query: ListEventsQuery = {}, options?: RequestOptions): Promise<ListEventsResponse> {
    return this.#call<ListEventsResponse>({
      operation: 'listEvents',
      method: operations.listEvents.method,
      path: apiPath('listEvents'),
      query: queryEntries(query),
      auth: this.#apiAuth,
      options,
    });
  }

  /** Every event matching `query`, page after page. */
  async *iterateEvents(query: Omit<ListEventsQuery, 'cursor'> = {}, options?: RequestOptions): AsyncGenerator<EventRecord> {
    let cursor: string | undefined;
    do {
      const page = await this.listEvents(cursor === undefined ? query : { ...query, cursor }, options);
      yield* page.events;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** One event with its stages and delivery attempts (`GET /api/events/{id}`). */
  async getEvent(id: string, options?: RequestOptions): Promise<GetEventResponse> {
    this.#requireId(id, 'getEvent');
    return this.#call<GetEventResponse>({
      operation: 'getEvent',
      method: operations.getEvent.method,
      path: apiPath('getEvent', { id }),
      auth: this.#apiAuth,
      options,
    });
  }

  /** Delivers an event again as a new event whose `replay_of` names the original. */
  async replayEvent(id: string, options?: RequestOptions): Promise<ReplayEventResponse> {
    this.#requireId(id, 'replayEvent');
    return this.#call<ReplayEventResponse>({
      operation: 'replayEvent',
      method: operations.replayEvent.method,
      path: apiPath('replayEvent', { id }),
      body: {},
      auth: this.#apiAuth,
      options,
    });
  }

  /** What a channel received after `since_id` or `since` (Unix ms), oldest first. */
  async channelHistory(channel: string, query: ChannelHistoryQuery = {}, options?: RequestOptions): Promise<ChannelHistoryResponse> {
    validateChannel(channel, 'channelHistory');
    return this.#call<ChannelHistoryResponse>({
      operation: 'channelHistory',
      method: operations.channelHistory.method,
      path: apiPath('channelHistory', { channel }),
      query: queryEntries(query),
      auth: this.#apiAuth,
      options,
    });
  }

  // ---------------------------------------------------------------------------------------
  // The Pusher HTTP API, signed exactly as pusher-http-node signs it.

  /**
   * Triggers an event on one or more channels (`POST /apps/{id}/events`), as `pusher.trigger`.
   * Non-string data is JSON-encoded; a string is sent as is. A `private-encrypted-` channel is
   * encrypted here and must be the only channel.
   */
  async trigger(
    channel: string | string[],
    event: string,
    data: unknown,
    params: TriggerParams = {},
    options?: RequestOptions,
  ): Promise<TriggerResponse> {
    const operation = 'trigger';
    const channels = Array.isArray(channel) ? channel : [channel];
    validateChannels(channels, operation);
    return this.#trigger(operation, channels, event, data, params, options);
  }

  /** Triggers up to 10 events in one request (`POST /apps/{id}/batch_events`). */
  async triggerBatch(batch: BatchEvent[], options?: RequestOptions): Promise<TriggerBatchResponse> {
    const operation = 'triggerBatch';
    if (!Array.isArray(batch) || batch.length === 0) {
      throw new ComnestorValidationError(`${operation}: give at least one event`, { operation, field: 'batch' });
    }
    if (batch.length > MAX_BATCH_SIZE) {
      throw new ComnestorValidationError(`${operation}: ${batch.length} events, the limit is ${MAX_BATCH_SIZE}`, {
        operation,
        field: 'batch',
      });
    }
    const items = [];
    for (const item of batch) {
      validateChannel(item.channel, operation);
      validateEventName(item.name, operation, 'name');
      if (item.socket_id !== undefined) validateSocketId(item.socket_id, operation);
      const data = isEncryptedChannel(item.channel)
        ? await this.#encryptFor([item.channel], item.data, operation)
        : this.#ensureJSON(item.data, operation);
      items.push({ ...item, data });
    }
    return this.#pusherCall<TriggerBatchResponse>(operation, 'POST', '/batch_events', [], { batch: items }, options);
  }

  /** Occupied channels (`GET /apps/{id}/channels`). */
  async channels(params: ChannelsParams = {}, options?: RequestOptions): Promise<ChannelsResponse> {
    return this.#pusherCall<ChannelsResponse>('channels', 'GET', '/channels', queryEntries(params), undefined, options);
  }

  /** One channel's state (`GET /apps/{id}/channels/{name}`). */
  async channel(name: string, params: ChannelParams = {}, options?: RequestOptions): Promise<ChannelResponse> {
    validateChannel(name, 'channel');
    return this.#pusherCall<ChannelResponse>('channel', 'GET', `/channels/${segment(name)}`, queryEntries(params), undefined, options);
  }

  /** The users on a presence channel (`GET /apps/{id}/channels/{name}/users`). */
  async users(channel: string, options?: RequestOptions): Promise<UsersResponse> {
    validateChannel(channel, 'users');
    return this.#pusherCall<UsersResponse>('users', 'GET', `/channels/${segment(channel)}/users`, [], undefined, options);
  }

  /** Closes every connection signed in as `userId`. */
  async terminateUserConnections(userId: string, options?: RequestOptions): Promise<Record<string, never>> {
    const operation = 'terminateUserConnections';
    validateUserId(userId, operation);
    return this.#pusherCall(operation, 'POST', `/users/${segment(userId)}/terminate_connections`, [], {}, options);
  }

  /** Sends an event to every connection signed in as `userId` (`#server-to-user-{id}`). */
  async sendToUser(userId: string, event: string, data: unknown, options?: RequestOptions): Promise<TriggerResponse> {
    const operation = 'sendToUser';
    validateUserId(userId, operation);
    return this.#trigger(operation, [`${SERVER_TO_USER_PREFIX}${userId}`], event, data, {}, options);
  }

  // ---------------------------------------------------------------------------------------
  // Auth endpoints, webhooks and encryption.

  /**
   * The auth endpoint's answer for a private, presence or encrypted channel. Presence
   * channels take `{user_id, user_info}`; encrypted channels get `shared_secret` (needs the
   * master key). Decide whether the user may join *before* calling this.
   */
  authorizeChannel(socketId: string, channel: string, presenceData?: PresenceData | string): Promise<ChannelAuthResponse> {
    return authorizeChannel({ key: this.key, secret: this.#secret, masterKey: this.#masterKey }, socketId, channel, presenceData);
  }

  /** The user-authentication endpoint's answer (`pusher:signin`). */
  authenticateUser(socketId: string, userData: UserData | string): Promise<UserAuthResponse> {
    return authenticateUser({ key: this.key, secret: this.#secret }, socketId, userData);
  }

  /**
   * Checks a webhook and returns its body. Pass a fetch `Request` (Hono, Workers, Next.js), or
   * `{headers, body}` with the raw body. Throws {@link ComnestorWebhookError} when it is not
   * authentic; never trust a webhook you did not verify.
   */
  async verifyWebhook(request: Request | WebhookRequest, options?: VerifyWebhookOptions): Promise<WebhookPayload> {
    let input: WebhookRequest;
    if (typeof (request as Request).text === 'function' && typeof (request as Request).arrayBuffer === 'function') {
      const r = request as Request;
      input = { headers: r.headers, body: new Uint8Array(await r.arrayBuffer()) };
    } else {
      input = request as WebhookRequest;
    }
    return verifyWebhook(this.#webhookCredentials, input, options);
  }

  /** Encrypts data for a `private-encrypted-` channel: the `data` string to publish. */
  encryptEvent(channel: string, data: unknown): Promise<string> {
    return this.#encryptFor([channel], data, 'encryptEvent');
  }

  /** Decrypts an encrypted event's `data` (from a webhook, say): parsed JSON, or the string. */
  decryptEvent(channel: string, data: string): Promise<unknown> {
    return decryptEventData(channel, data, this.#requireMasterKey('decryptEvent'));
  }

  // ---------------------------------------------------------------------------------------

  #requireId(id: string, operation: string): void {
    if (typeof id !== 'string' || id === '') {
      throw new ComnestorValidationError(`${operation}: id must be a non-empty string`, { operation, field: 'id' });
    }
  }

  #requireMasterKey(operation: string): Uint8Array {
    if (!this.#masterKey) {
      throw new ComnestorEncryptionError(
        `${operation}: encrypted channels need encryptionMasterKeyBase64 in the Comnestor options`,
        { operation },
      );
    }
    return this.#masterKey;
  }

  async #encryptFor(channels: string[], data: unknown, operation: string): Promise<string> {
    if (channels.length !== 1) {
      throw new ComnestorEncryptionError(
        `${operation}: an event on an encrypted channel must name exactly one channel (each channel has its own key)`,
        { operation },
      );
    }
    const channel = channels[0]!;
    if (!isEncryptedChannel(channel)) {
      throw new ComnestorEncryptionError(`${operation}: ${channel} is not a private-encrypted- channel`, { operation });
    }
    return encryptEventData(channel, data, this.#requireMasterKey(operation));
  }

  #ensureJSON(data: unknown, operation: string): string {
    if (typeof data === 'string') return data;
    const json = JSON.stringify(data);
    if (json === undefined) {
      throw new ComnestorValidationError(`${operation}: data is not JSON-serializable`, { operation, field: 'data' });
    }
    return json;
  }

  async #trigger(
    operation: string,
    channels: string[],
    event: string,
    data: unknown,
    params: TriggerParams,
    options?: RequestOptions,
  ): Promise<TriggerResponse> {
    validateEventName(event, operation);
    if (params.socket_id !== undefined) validateSocketId(params.socket_id, operation);
    const payload = channels.some(isEncryptedChannel)
      ? await this.#encryptFor(channels, data, operation)
      : this.#ensureJSON(data, operation);
    const body: Record<string, unknown> = { name: event, data: payload, channels };
    if (params.socket_id !== undefined) body.socket_id = params.socket_id;
    if (params.info !== undefined) body.info = params.info;
    return this.#pusherCall<TriggerResponse>(operation, 'POST', '/events', [], body, options);
  }

  #pusherCall<T>(
    operation: string,
    method: 'GET' | 'POST',
    subpath: string,
    query: Array<[string, string]>,
    body: unknown,
    options?: RequestOptions,
  ): Promise<T> {
    return this.#call<T>({
      operation,
      method,
      path: `/apps/${segment(this.appId)}${subpath}`,
      query,
      body,
      auth: 'signature',
      options,
    });
  }

  async #call<T>(spec: CallSpec): Promise<T> {
    const bodyText = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    const headers: Record<string, string> = { Accept: 'application/json', ...this.#headers, ...spec.headers };
    if (bodyText !== undefined) headers['Content-Type'] = 'application/json';
    let query: string;
    if (spec.auth === 'signature') {
      const signed = await signRequest({
        key: this.key,
        secret: this.#secret,
        method: spec.method,
        path: spec.path,
        params: spec.query ?? [],
        body: bodyText ?? null,
      });
      query = signed.query;
    } else {
      headers.Authorization = `Basic ${toBase64(toBytes(`${this.key}:${this.#secret}`))}`;
      query = new URLSearchParams(spec.query ?? []).toString();
    }
    const url = `${this.#origin}${this.#prefix}${spec.path}`;
    const timeoutMs = spec.options?.timeoutMs ?? this.#timeoutMs;
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const outer = spec.options?.signal;
    const onAbort = () => controller.abort();
    if (outer) {
      if (outer.aborted) controller.abort();
      else outer.addEventListener('abort', onAbort, { once: true });
    }
    try {
      let response: Response;
      try {
        const init: RequestInit = { method: spec.method, headers, signal: controller.signal };
        if (bodyText !== undefined) init.body = bodyText;
        response = await this.#fetch(query ? `${url}?${query}` : url, init);
      } catch (cause) {
        if (timedOut) {
          throw new ComnestorTimeoutError(`${spec.operation} failed: no answer from ${spec.method} ${url} within ${timeoutMs} ms`, {
            operation: spec.operation,
            method: spec.method,
            url,
            timeoutMs,
            cause,
          });
        }
        const reason = cause instanceof Error ? (cause.cause instanceof Error ? cause.cause.message : cause.message) : String(cause);
        throw new ComnestorNetworkError(`${spec.operation} failed: ${spec.method} ${url}: ${reason}`, {
          operation: spec.operation,
          method: spec.method,
          url,
          cause,
        });
      }
      let text: string;
      try {
        text = await response.text();
      } catch (cause) {
        throw new ComnestorNetworkError(`${spec.operation} failed: reading the answer of ${spec.method} ${url}`, {
          operation: spec.operation,
          method: spec.method,
          url,
          cause,
        });
      }
      if (!response.ok) {
        let problem: Problem | undefined;
        try {
          const parsed: unknown = JSON.parse(text);
          if (isProblem(parsed)) problem = parsed;
        } catch {
          // not JSON: kept as `body`
        }
        throw new ComnestorApiError({
          operation: spec.operation,
          status: response.status,
          method: spec.method,
          url,
          body: text,
          headers: response.headers,
          ...(problem ? { problem } : {}),
        });
      }
      if (text.trim() === '') return {} as T;
      try {
        return JSON.parse(text) as T;
      } catch (cause) {
        throw new ComnestorApiError({
          operation: spec.operation,
          status: response.status,
          method: spec.method,
          url,
          body: text,
          headers: response.headers,
          cause,
        });
      }
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
    }
  }
}
