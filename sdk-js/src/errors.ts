// Every error the SDK throws is one of these classes: callers can branch on `instanceof` or on
// `error.code`, and always know which call failed.

import type { Problem } from './generated/api.js';

/** The SDK call that failed, such as `sendEvent` or `trigger`. */
export type Operation = string;

export interface ComnestorErrorOptions {
  operation: Operation;
  cause?: unknown;
}

/** Base class of every error the SDK throws. */
export class ComnestorError extends Error {
  /** A stable machine-readable kind. */
  readonly code: string = 'comnestor_error';
  /** The SDK call that failed. */
  readonly operation: Operation;

  constructor(message: string, options: ComnestorErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.operation = options.operation;
  }
}

/** An argument was refused before anything was sent (bad channel name, socket id, ...). */
export class ComnestorValidationError extends ComnestorError {
  override readonly code = 'validation_error';
  /** The offending argument. */
  readonly field: string;

  constructor(message: string, options: ComnestorErrorOptions & { field: string }) {
    super(message, options);
    this.field = options.field;
  }
}

/** The request never got an HTTP answer: DNS, connection refused, TLS, timeout, abort. */
export class ComnestorNetworkError extends ComnestorError {
  override readonly code: string = 'network_error';
  readonly method: string;
  /** The URL without its query string (which holds the signature). */
  readonly url: string;

  constructor(message: string, options: ComnestorErrorOptions & { method: string; url: string }) {
    super(message, options);
    this.method = options.method;
    this.url = options.url;
  }
}

/** No answer within `timeoutMs`. */
export class ComnestorTimeoutError extends ComnestorNetworkError {
  override readonly code = 'timeout';
  readonly timeoutMs: number;

  constructor(message: string, options: ComnestorErrorOptions & { method: string; url: string; timeoutMs: number }) {
    super(message, options);
    this.timeoutMs = options.timeoutMs;
  }
}

export interface ApiErrorDetails extends ComnestorErrorOptions {
  status: number;
  method: string;
  url: string;
  body: string;
  headers: Headers;
  problem?: Problem;
}

/**
 * The server answered with a non-success status. `/api` endpoints answer with an RFC 9457
 * problem (`problem`); the Pusher HTTP API answers `{"error": "..."}` or plain text
 * (`serverMessage`). `body` is always the raw text.
 */
export class ComnestorApiError extends ComnestorError {
  override readonly code = 'api_error';
  /** The HTTP status. */
  readonly status: number;
  readonly method: string;
  /** The URL without its query string (which holds the signature). */
  readonly url: string;
  /** The raw response body. */
  readonly body: string;
  readonly headers: Headers;
  /** The problem detail, when the server sent `application/problem+json` (every `/api` error). */
  readonly problem: Problem | undefined;
  /** The server's own words: the problem's `detail`, the Pusher API's `error`, or the text body. */
  readonly serverMessage: string;
  /** Seconds to wait, from `Retry-After` (429 and some 503 answers). */
  readonly retryAfter: number | undefined;

  constructor(details: ApiErrorDetails) {
    const serverMessage = ComnestorApiError.messageOf(details);
    super(
      `${details.operation} failed: ${details.method} ${details.url} answered ${details.status}${serverMessage ? `: ${serverMessage}` : ''}`,
      details,
    );
    this.status = details.status;
    this.method = details.method;
    this.url = details.url;
    this.body = details.body;
    this.headers = details.headers;
    this.problem = details.problem;
    this.serverMessage = serverMessage;
    const retry = details.headers.get('retry-after');
    this.retryAfter = retry !== null && /^\d+$/.test(retry.trim()) ? Number(retry.trim()) : undefined;
  }

  private static messageOf(details: ApiErrorDetails): string {
    if (details.problem?.detail) return details.problem.detail;
    try {
      const parsed: unknown = JSON.parse(details.body);
      if (parsed && typeof parsed === 'object') {
        const record = parsed as Record<string, unknown>;
        for (const key of ['error', 'detail', 'message', 'title']) {
          if (typeof record[key] === 'string') return record[key] as string;
        }
      }
    } catch {
      // not JSON
    }
    return details.body.trim().slice(0, 500);
  }
}

/** Why a webhook was refused. */
export type WebhookFailure =
  | 'missing_signature'
  | 'missing_key'
  | 'unknown_key'
  | 'invalid_signature'
  | 'invalid_content_type'
  | 'invalid_body'
  | 'expired';

/** A webhook request that did not come from the server, or was altered or too old. */
export class ComnestorWebhookError extends ComnestorError {
  override readonly code = 'webhook_error';
  readonly reason: WebhookFailure;

  constructor(message: string, options: ComnestorErrorOptions & { reason: WebhookFailure }) {
    super(message, options);
    this.reason = options.reason;
  }
}

/** An encrypted event could not be encrypted or decrypted (no master key, wrong key, bad data). */
export class ComnestorEncryptionError extends ComnestorError {
  override readonly code = 'encryption_error';
}
