// Argument checks the official Pusher server SDKs make before sending anything.

import { ComnestorValidationError } from './errors.js';

const CHANNEL_RE = /^[-a-zA-Z0-9_=@,.;]+$/;
const SOCKET_ID_RE = /^\d+\.\d+$/;

export const MAX_CHANNEL_NAME_LENGTH = 200;
export const MAX_EVENT_NAME_LENGTH = 200;
export const MAX_CHANNELS_PER_EVENT = 100;
export const MAX_BATCH_SIZE = 10;
export const MAX_USER_ID_LENGTH = 200;
export const ENCRYPTED_PREFIX = 'private-encrypted-';
export const SERVER_TO_USER_PREFIX = '#server-to-user-';

export function isEncryptedChannel(channel: string): boolean {
  return channel.startsWith(ENCRYPTED_PREFIX);
}

export function validateChannel(channel: unknown, operation: string, field = 'channel'): asserts channel is string {
  if (typeof channel !== 'string' || channel === '') {
    throw new ComnestorValidationError(`${operation}: ${field} must be a non-empty string`, { operation, field });
  }
  if (channel.length > MAX_CHANNEL_NAME_LENGTH) {
    throw new ComnestorValidationError(
      `${operation}: channel name is ${channel.length} characters, the limit is ${MAX_CHANNEL_NAME_LENGTH}: ${channel.slice(0, 40)}...`,
      { operation, field },
    );
  }
  if (!CHANNEL_RE.test(channel)) {
    throw new ComnestorValidationError(
      `${operation}: invalid channel name ${JSON.stringify(channel)} (allowed: A-Z a-z 0-9 _ - = @ , . ;)`,
      { operation, field },
    );
  }
}

export function validateSocketId(socketId: unknown, operation: string, field = 'socket_id'): asserts socketId is string {
  if (typeof socketId !== 'string' || !SOCKET_ID_RE.test(socketId)) {
    throw new ComnestorValidationError(
      `${operation}: invalid socket id ${JSON.stringify(socketId)} (expected digits.digits, such as 123.456)`,
      { operation, field },
    );
  }
}

export function validateEventName(event: unknown, operation: string, field = 'event'): asserts event is string {
  if (typeof event !== 'string' || event === '') {
    throw new ComnestorValidationError(`${operation}: ${field} must be a non-empty string`, { operation, field });
  }
  if (event.length > MAX_EVENT_NAME_LENGTH) {
    throw new ComnestorValidationError(
      `${operation}: event name is ${event.length} characters, the limit is ${MAX_EVENT_NAME_LENGTH}`,
      { operation, field },
    );
  }
}

export function validateUserId(userId: unknown, operation: string, field = 'user_id'): asserts userId is string {
  if (typeof userId !== 'string' || userId === '') {
    throw new ComnestorValidationError(`${operation}: ${field} must be a non-empty string`, { operation, field });
  }
  if (userId.length > MAX_USER_ID_LENGTH) {
    throw new ComnestorValidationError(
      `${operation}: user id is ${userId.length} characters, the limit is ${MAX_USER_ID_LENGTH}`,
      { operation, field },
    );
  }
}

export function validateChannels(channels: unknown, operation: string): asserts channels is string[] {
  if (!Array.isArray(channels) || channels.length === 0) {
    throw new ComnestorValidationError(`${operation}: give at least one channel`, { operation, field: 'channels' });
  }
  if (channels.length > MAX_CHANNELS_PER_EVENT) {
    throw new ComnestorValidationError(
      `${operation}: ${channels.length} channels, the limit is ${MAX_CHANNELS_PER_EVENT}`,
      { operation, field: 'channels' },
    );
  }
  for (const c of channels) validateChannel(c, operation, 'channels');
}
