/**
 * The messenger between nodes: request/response with correlation and timeouts, plus one-way
 * notifications, over any network. This is DESIGN.md's `Transport` interface (see
 * src/world/transport.ts): the TCP messenger (tcp-messenger.ts) and the in-memory network
 * (memory-messenger.ts, which the simulator drives on virtual time) both implement it, and
 * messenger-conformance.ts is the one suite both pass.
 *
 * Bodies cross the wire as MessagePack. A body is anything @msgpack/msgpack encodes: plain
 * objects, arrays, strings, numbers, booleans, null and Uint8Array. Received Uint8Arrays may be
 * views into a receive buffer: copy one before keeping it for long (the engines copy).
 */

export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface PeerIdentity {
  readonly nodeId: string;
  /** The peer's advertised listening address (where others connect to it). */
  readonly address: PeerAddress;
}

/**
 * Stable codes of expected messenger failures; callers, logs and tests match on these.
 * - TIMEOUT: no reply within `timeoutMs` (the request may or may not have run on the peer).
 * - UNREACHABLE: no connection could be made, or it was lost before the reply came.
 * - QUEUE_FULL: the send queue to that peer holds `sendQueueBytesMax` bytes: back off.
 * - REMOTE: the peer's handler threw; the message is the peer's error message.
 * - NO_HANDLER: the peer has no handler for the message type.
 * - CLOSED: this messenger is closed (or was closed while the request was pending).
 * - FRAME_TOO_LARGE: the request or its reply encodes to more than `frameBytesMax`.
 */
export type RpcErrorCode = 'TIMEOUT' | 'UNREACHABLE' | 'QUEUE_FULL' | 'REMOTE' | 'NO_HANDLER' | 'CLOSED' | 'FRAME_TOO_LARGE';

export const rpcErrorCodes: readonly RpcErrorCode[] = [
  'TIMEOUT',
  'UNREACHABLE',
  'QUEUE_FULL',
  'REMOTE',
  'NO_HANDLER',
  'CLOSED',
  'FRAME_TOO_LARGE',
];

export class RpcError extends Error {
  override readonly name = 'RpcError';
  constructor(
    readonly code: RpcErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function isRpcErrorCode(value: unknown): value is RpcErrorCode {
  return typeof value === 'string' && (rpcErrorCodes as readonly string[]).includes(value);
}

/** True when `error` is an RpcError, and (if given) carries `code`. */
export function isRpcError(error: unknown, code?: RpcErrorCode): error is RpcError {
  return error instanceof RpcError && (code === undefined || error.code === code);
}

export type MessageBody = unknown;

export type RequestHandler = (body: MessageBody, from: PeerIdentity) => MessageBody | Promise<MessageBody>;

export type NotifyOutcome = 'queued' | 'queue-full';

export interface RequestOptions {
  readonly timeoutMs: number;
}

export interface PeerMessenger {
  readonly self: PeerIdentity;
  /** Listens (TCP) or registers on the network (memory). Call once, before sending. */
  start(): Promise<void>;
  /**
   * Sends a request and resolves with the reply body. Rejects with RpcError: TIMEOUT after
   * timeoutMs, UNREACHABLE when no connection can be made (or it drops before the reply),
   * QUEUE_FULL when the peer's send queue is at its bound, REMOTE when the handler threw (its
   * message carried), NO_HANDLER for an unknown type, CLOSED after close(), FRAME_TOO_LARGE when
   * the request or reply is over frameBytesMax. Never pending past timeoutMs.
   */
  request(to: PeerAddress, type: string, body: MessageBody, options: RequestOptions): Promise<MessageBody>;
  /**
   * One-way message (gossip). 'queued' or 'queue-full'; delivery is not guaranteed: a notify to
   * an unreachable peer, or after close(), is dropped and still reports 'queued'.
   * Throws RpcError FRAME_TOO_LARGE when the body encodes to more than frameBytesMax (a bug).
   */
  notify(to: PeerAddress, type: string, body: MessageBody): NotifyOutcome;
  /**
   * Registers the handler for a type, for requests and notifications alike (a notification's
   * return value is dropped). One handler per type: registering a second one throws.
   */
  handle(type: string, handler: RequestHandler): void;
  /** Closes the listener and connections; pending requests reject with CLOSED. Idempotent. */
  close(): Promise<void>;
}

/** The map key of an address: `host:port`. */
export function addressKey(address: PeerAddress): string {
  return `${address.host}:${address.port}`;
}

/** The message of a thrown value, for REMOTE error replies. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** True for a Promise or any other thenable a handler may return. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
