/**
 * Stable error codes: clients, logs and tests match on these, so a code is never renamed.
 * Expected failures travel as `Result` values carrying one of them; bugs throw.
 */
export const ErrorCode = {
  /** A key is longer than `limits.keyBytesMax`. */
  keyTooLarge: 'KEY_TOO_LARGE',
  /** A value is longer than `limits.valueBytesMax`. */
  valueTooLarge: 'VALUE_TOO_LARGE',
  /** A namespace name is empty, too long or has characters outside [A-Za-z0-9_.-]. */
  namespaceInvalid: 'NAMESPACE_INVALID',
  /** A key is empty. */
  keyInvalid: 'KEY_INVALID',
  /** A causal context sent back by a client cannot be decoded. */
  contextInvalid: 'CONTEXT_INVALID',
  /** A key has more siblings than `limits.siblingsMax`; resolve them with a context. */
  tooManySiblings: 'TOO_MANY_SIBLINGS',
  /** The request is malformed (bad parameter, bad body). */
  badRequest: 'BAD_REQUEST',
  /** The key does not exist (or only tombstones remain). */
  notFound: 'NOT_FOUND',
  /** The route or command does not exist. */
  unknownCommand: 'UNKNOWN_COMMAND',
  /** A Redis-protocol frame could not be parsed; the connection is closed. */
  protocolError: 'PROTOCOL_ERROR',
  /** The node is shutting down or a service it needs is restarting. */
  unavailable: 'UNAVAILABLE',
  /** The storage engine is closed. */
  engineClosed: 'ENGINE_CLOSED',
  /** Stored data failed its checksum or does not parse: it is reported, never served. */
  corruption: 'CORRUPTION',
  /** Configuration is invalid. */
  configInvalid: 'CONFIG_INVALID',
  /** An unexpected failure inside the node; it is logged with details. */
  internal: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface Failure {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
}

export interface Success<T> {
  readonly ok: true;
  readonly value: T;
}

export type Result<T> = Success<T> | Failure;

export function success<T>(value: T): Success<T> {
  return { ok: true, value };
}

export function failure(code: ErrorCode, message: string): Failure {
  return { ok: false, code, message };
}

/** An expected failure that must cross an async boundary as an exception (e.g. a closed engine). */
export class RingkvError extends Error {
  override readonly name = 'RingkvError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}
