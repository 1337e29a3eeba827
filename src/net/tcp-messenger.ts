import { Buffer } from 'node:buffer';
import { createServer, connect, isIP, type Server, type Socket, type TcpNetConnectOpts } from 'node:net';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { assert } from '../core/assert.js';
import type { Logger } from '../node/logger.js';
import type { Clock, TimerHandle } from '../world/clock.js';
import { FrameDecoder, encodeFrame, frameBytesMaxDefault, frameBytesLimit, frameHeaderBytes } from './frame-codec.js';
import {
  RpcError,
  addressKey,
  errorMessage,
  isThenable,
  isRpcErrorCode,
  type MessageBody,
  type NotifyOutcome,
  type PeerAddress,
  type PeerIdentity,
  type PeerMessenger,
  type RequestHandler,
  type RequestOptions,
  type RpcErrorCode,
} from './peer-messenger.js';

/**
 * The TCP PeerMessenger. Wire protocol, inside the frames of frame-codec.ts (each payload one
 * MessagePack value):
 *
 *   connection = handshake message*          (each direction sends its handshake first)
 *   handshake  = { magic: "ringkv-peer", protocolVersion: uint, nodeId: str, host: str, port: uint }
 *   message    = request | response | error | notify
 *   request    = [0, id: uint, type: str, body]     requester -> listener, on the requester's socket
 *   response   = [1, id: uint, body]                 listener -> requester, same socket
 *   error      = [2, id: uint, code: str, message: str]   code: REMOTE | NO_HANDLER | FRAME_TOO_LARGE
 *   notify     = [3, type: str, body]                requester -> listener
 *
 * Each node dials one outbound connection per peer address (from its own listen address when
 * that is one specific IP: dialOptions) and sends its requests and notifies there; replies come
 * back on that same socket, so no reverse connection is needed. Ids are per outbound
 * connection. A frame over frameBytesMax, undecodable MessagePack, a bad handshake, a
 * protocol version other than ours or a message of the wrong shape closes that connection with a
 * warn log; the node and its other connections carry on.
 *
 * Reconnect policy: connections are made lazily on the first send. A connection that fails
 * before its handshake completes (refused, reset, connectTimeoutMs elapsed) puts the address in
 * back-off: initial reconnectBackoffInitialMs, doubled per consecutive failure up to
 * reconnectBackoffMaxMs; while backing off, requests fail fast with UNREACHABLE and notifies are
 * dropped. A completed handshake resets the back-off; an established connection that drops is
 * redialled on the next send at once. Requests pending on a connection that drops reject with
 * UNREACHABLE. All timing goes through the injected Clock.
 *
 * Writes are batched per event-loop turn: frames queue on the connection and go out in one
 * socket.write on setImmediate. The send queue of a connection (batched bytes plus the socket's own
 * buffer) is bounded by sendQueueBytesMax: a send that would pass it gets QUEUE_FULL /
 * 'queue-full'. A requester that stops reading its replies is disconnected once its reply queue
 * reaches the same bound.
 */

export const protocolMagic = 'ringkv-peer';
export const protocolVersionDefault = 1;
/** Room for any error reply (its message is cut to errorMessageCharsMax characters). */
const frameBytesMin = 4096;
const errorMessageCharsMax = 1000;

export interface TcpMessengerOptions {
  readonly nodeId: string;
  /** The address to listen on and to advertise in handshakes. */
  readonly host: string;
  /** 0 picks a free port; `self.address.port` is the bound port after start(). */
  readonly port: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The largest frame payload sent or accepted; default 16 MiB. */
  readonly frameBytesMax?: number;
  /** Bytes queued per connection before sends get QUEUE_FULL; default 64 MiB, >= frameBytesMax + 4. */
  readonly sendQueueBytesMax?: number;
  /** Time for a dial plus handshake (and for an inbound peer to send its handshake); default 5000. */
  readonly connectTimeoutMs?: number;
  /** First back-off after a failed dial; default 100. */
  readonly reconnectBackoffInitialMs?: number;
  /** Cap of the doubling back-off; default 5000. */
  readonly reconnectBackoffMaxMs?: number;
  /** Sent in the handshake; a peer with another version is refused. Default 1. */
  readonly protocolVersion?: number;
  /** Inbound connections accepted at once; default 1024. */
  readonly inboundConnectionsMax?: number;
}

interface Settings {
  readonly frameBytesMax: number;
  readonly sendQueueBytesMax: number;
  readonly connectTimeoutMs: number;
  readonly reconnectBackoffInitialMs: number;
  readonly reconnectBackoffMaxMs: number;
  readonly protocolVersion: number;
  readonly inboundConnectionsMax: number;
}

function settingsOf(options: TcpMessengerOptions): Settings {
  const settings: Settings = {
    frameBytesMax: options.frameBytesMax ?? frameBytesMaxDefault,
    sendQueueBytesMax: options.sendQueueBytesMax ?? 64 * 1024 * 1024,
    connectTimeoutMs: options.connectTimeoutMs ?? 5000,
    reconnectBackoffInitialMs: options.reconnectBackoffInitialMs ?? 100,
    reconnectBackoffMaxMs: options.reconnectBackoffMaxMs ?? 5000,
    protocolVersion: options.protocolVersion ?? protocolVersionDefault,
    inboundConnectionsMax: options.inboundConnectionsMax ?? 1024,
  };
  assert(options.nodeId.length > 0, 'nodeId must not be empty');
  assert(Number.isInteger(options.port) && options.port >= 0 && options.port <= 0xffff, () => `port must be in [0, 65535], got ${options.port}`);
  assert(settings.frameBytesMax >= frameBytesMin && settings.frameBytesMax <= frameBytesLimit, () => `frameBytesMax must be in [${frameBytesMin}, 2^32 - 1]`);
  assert(settings.sendQueueBytesMax >= settings.frameBytesMax + frameHeaderBytes, 'sendQueueBytesMax must hold one frame of frameBytesMax');
  assert(settings.connectTimeoutMs > 0, 'connectTimeoutMs must be positive');
  assert(settings.reconnectBackoffInitialMs > 0, 'reconnectBackoffInitialMs must be positive');
  assert(settings.reconnectBackoffMaxMs >= settings.reconnectBackoffInitialMs, 'reconnectBackoffMaxMs must be >= reconnectBackoffInitialMs');
  assert(Number.isSafeInteger(settings.protocolVersion) && settings.protocolVersion >= 0, 'protocolVersion must be a non-negative integer');
  assert(Number.isSafeInteger(settings.inboundConnectionsMax) && settings.inboundConnectionsMax >= 1, 'inboundConnectionsMax must be >= 1');
  return settings;
}

/**
 * Where to dial `to` from. A node listening on one specific IP address also dials from it, so a
 * peer (and a firewall) sees its traffic come from the address it advertises — on a multi-homed
 * host the kernel would otherwise pick the source by route. A wildcard (0.0.0.0, ::) or a host
 * name leaves the choice to the kernel. A peer given by name is looked up in the dialler's address
 * family only, since a socket bound to an IPv4 address cannot reach an IPv6 one (and back).
 */
export function dialOptions(ownHost: string, to: PeerAddress): TcpNetConnectOpts {
  const family = isIP(ownHost);
  const unspecified = ownHost === '0.0.0.0' || ownHost === '::';
  const peerFamily = isIP(to.host);
  if (family === 0 || unspecified || (peerFamily !== 0 && peerFamily !== family)) return { host: to.host, port: to.port };
  return peerFamily === 0 ? { host: to.host, port: to.port, localAddress: ownHost, family } : { host: to.host, port: to.port, localAddress: ownHost };
}

export function createTcpMessenger(options: TcpMessengerOptions): TcpMessenger {
  return new TcpMessenger(options);
}

const kindRequest = 0;
const kindResponse = 1;
const kindError = 2;
const kindNotify = 3;

export interface Handshake {
  readonly magic: string;
  readonly protocolVersion: number;
  readonly nodeId: string;
  readonly host: string;
  readonly port: number;
}

/** One MessagePack codec pair per messenger; encode and decode are synchronous, so sharing is safe. */
class WireCodec {
  private readonly encoder = new Encoder();
  private readonly decoder = new Decoder();

  constructor(private readonly frameBytesMax: number) {}

  /** The frame for `message`, or undefined when its payload is over frameBytesMax. Throws if unencodable. */
  frame(message: unknown): Uint8Array | undefined {
    const payload = this.encoder.encodeSharedRef(message);
    if (payload.byteLength > this.frameBytesMax) return undefined;
    return encodeFrame(payload);
  }

  decode(payload: Uint8Array): unknown {
    return this.decoder.decode(payload);
  }
}

/** The frame of a handshake, exported for tests that speak the protocol from a raw socket. */
export function encodeHandshakeFrame(handshake: Handshake): Uint8Array {
  return encodeFrame(new Encoder().encode(handshake));
}

function parseHandshake(value: unknown): Handshake | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) return 'the first frame is not a handshake map';
  const record = value as Record<string, unknown>;
  const { magic, protocolVersion, nodeId, host, port } = record;
  if (magic !== protocolMagic) return `bad handshake magic ${JSON.stringify(magic)}`;
  if (typeof protocolVersion !== 'number' || !Number.isSafeInteger(protocolVersion)) return 'handshake without a protocolVersion';
  if (typeof nodeId !== 'string' || nodeId.length === 0 || nodeId.length > 1024) return 'handshake with a bad nodeId';
  if (typeof host !== 'string' || host.length > 1024) return 'handshake with a bad host';
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff) return 'handshake with a bad port';
  return { magic, protocolVersion, nodeId, host, port };
}

/** Why an envelope is malformed, or undefined when it is well formed for its kind. */
function envelopeProblem(message: unknown): string | undefined {
  if (!Array.isArray(message)) return 'a message is not an array';
  const isId = (value: unknown): boolean => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  switch (message[0]) {
    case kindRequest:
      return message.length === 4 && isId(message[1]) && typeof message[2] === 'string' ? undefined : 'malformed request';
    case kindResponse:
      return message.length === 3 && isId(message[1]) ? undefined : 'malformed response';
    case kindError:
      return message.length === 4 && isId(message[1]) && isRpcErrorCode(message[2]) && typeof message[3] === 'string' ? undefined : 'malformed error';
    case kindNotify:
      return message.length === 3 && typeof message[1] === 'string' ? undefined : 'malformed notify';
    default:
      return `unknown message kind ${String(message[0])}`;
  }
}

interface ConnectionEvents {
  /** The peer's handshake arrived and is valid; return a reason to refuse it. */
  onHandshake(connection: PeerConnection, handshake: Handshake): string | undefined;
  /** A well-formed message (see envelopeProblem) arrived after the handshake. */
  onMessage(connection: PeerConnection, message: unknown[]): void;
  /** The socket closed, for whatever reason; called exactly once. */
  onClose(connection: PeerConnection, reason: string): void;
}

/**
 * One socket speaking the protocol: frames in, handshake check, envelope check, batched writes
 * out. It owns its socket and its handshake timer; the messenger owns what the messages mean.
 */
class PeerConnection {
  peer: PeerIdentity | undefined;
  closed = false;
  private readonly decoder: FrameDecoder;
  private readonly outFrames: Uint8Array[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private closeReason = 'closed by peer';
  private readonly handshakeTimer: TimerHandle;

  constructor(
    readonly socket: Socket,
    readonly remote: string,
    private readonly codec: WireCodec,
    private readonly events: ConnectionEvents,
    private readonly logger: Logger,
    settings: Settings,
    clock: Clock,
    handshakeFrame: Uint8Array,
  ) {
    this.decoder = new FrameDecoder(settings.frameBytesMax);
    this.handshakeTimer = clock.setTimer(settings.connectTimeoutMs, () => this.destroy(`no handshake within ${settings.connectTimeoutMs} ms`));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error: Error) => {
      this.closeReason = error.message;
    });
    socket.on('close', () => this.onSocketClose());
    this.send(handshakeFrame);
  }

  /** Bytes accepted but not yet handed to the kernel. */
  queuedBytes(): number {
    return this.outBytes + this.socket.writableLength;
  }

  send(frame: Uint8Array): void {
    if (this.closed) return;
    this.outFrames.push(frame);
    this.outBytes += frame.byteLength;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate, not nextTick: the frames made while the event loop handles every socket
      // that was readable in this turn (many clients' requests) leave in one write per peer.
      // Measured with npm run bench:cluster: 3-node SET from 37% to 46% of a single node.
      setImmediate(() => this.flush());
    }
  }

  /** Closes the socket now and reports `reason` to onClose before returning. */
  destroy(reason: string): void {
    if (this.closed) return;
    this.closeReason = reason;
    this.socket.destroy();
    this.onSocketClose();
  }

  /** A protocol violation: warn, then close this connection only. */
  fail(reason: string): void {
    if (this.closed) return;
    this.logger.warn({ remote: this.remote, peerNodeId: this.peer?.nodeId, reason }, 'peer connection closed: malformed input');
    this.destroy(`malformed input: ${reason}`);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed || this.outFrames.length === 0) return;
    const data = this.outFrames.length === 1 ? this.outFrames[0]! : Buffer.concat(this.outFrames, this.outBytes);
    this.outFrames.length = 0;
    this.outBytes = 0;
    this.socket.write(data);
  }

  private onData(chunk: Buffer): void {
    // A plain Uint8Array view, so that decoded binary bodies are Uint8Array, not Buffer (as in memory).
    const result = this.decoder.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    if (!result.ok) return this.fail(result.message);
    for (const payload of result.frames) {
      if (this.closed) return;
      let message: unknown;
      try {
        message = this.codec.decode(payload);
      } catch (error) {
        return this.fail(`undecodable MessagePack: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (this.peer === undefined) {
        this.onHandshakeMessage(message);
        continue;
      }
      const problem = envelopeProblem(message);
      if (problem !== undefined) return this.fail(problem);
      this.events.onMessage(this, message as unknown[]);
    }
  }

  private onHandshakeMessage(message: unknown): void {
    const handshake = parseHandshake(message);
    if (typeof handshake === 'string') return this.fail(handshake);
    const refusal = this.events.onHandshake(this, handshake);
    if (refusal !== undefined) return this.fail(refusal);
    this.handshakeTimer.cancel();
    this.peer = { nodeId: handshake.nodeId, address: { host: handshake.host, port: handshake.port } };
  }

  private onSocketClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.handshakeTimer.cancel();
    this.outFrames.length = 0;
    this.outBytes = 0;
    this.events.onClose(this, this.closeReason);
  }
}

interface PendingRequest {
  readonly resolve: (body: MessageBody) => void;
  readonly reject: (error: RpcError) => void;
  readonly timer: TimerHandle;
}

/** The outbound side towards one peer address: its connection, back-off and pending requests. */
class OutboundLink {
  connection: PeerConnection | undefined;
  failuresInRow = 0;
  backoffUntilMs = Number.NEGATIVE_INFINITY;
  nextId = 0;
  readonly pending = new Map<number, PendingRequest>();

  constructor(
    readonly address: PeerAddress,
    readonly key: string,
  ) {}

  rejectAll(error: RpcError): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const request of pending) {
      request.timer.cancel();
      request.reject(error);
    }
  }
}

export class TcpMessenger implements PeerMessenger {
  private identity: PeerIdentity;
  private readonly settings: Settings;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly codec: WireCodec;
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly links = new Map<string, OutboundLink>();
  private readonly inbound = new Set<PeerConnection>();
  private server: Server | undefined;
  private handshakeFrame: Uint8Array | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: TcpMessengerOptions) {
    this.settings = settingsOf(options);
    this.identity = { nodeId: options.nodeId, address: { host: options.host, port: options.port } };
    this.clock = options.clock;
    this.logger = options.logger.child({ component: 'tcp-messenger', nodeId: options.nodeId });
    this.codec = new WireCodec(this.settings.frameBytesMax);
  }

  get self(): PeerIdentity {
    return this.identity;
  }

  async start(): Promise<void> {
    assert(this.server === undefined && this.closing === undefined, 'start() is called once, before close()');
    const server = createServer((socket) => this.onInboundSocket(socket));
    server.maxConnections = this.settings.inboundConnectionsMax;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.identity.address.port, this.identity.address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.logger.error({ err: error }, 'peer listener error'));
    const bound = server.address();
    assert(bound !== null && typeof bound === 'object', 'a TCP server has an address after listen');
    this.identity = { nodeId: this.identity.nodeId, address: { host: this.identity.address.host, port: bound.port } };
    this.handshakeFrame = encodeHandshakeFrame({ magic: protocolMagic, protocolVersion: this.settings.protocolVersion, nodeId: this.identity.nodeId, ...this.identity.address });
    this.logger.info({ address: addressKey(this.identity.address) }, 'peer messenger listening');
  }

  request(to: PeerAddress, type: string, body: MessageBody, options: RequestOptions): Promise<MessageBody> {
    assert(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0, () => `timeoutMs must be finite and >= 0, got ${options.timeoutMs}`);
    if (this.closing !== undefined) return Promise.reject(new RpcError('CLOSED', 'the messenger is closed'));
    const link = this.linkTo(to);
    const connection = this.connectionOf(link);
    if (connection === undefined) return Promise.reject(this.unreachable(link));
    const id = link.nextId++;
    const frame = this.codec.frame([kindRequest, id, type, body]);
    if (frame === undefined) return Promise.reject(new RpcError('FRAME_TOO_LARGE', `request "${type}" is over frameBytesMax ${this.settings.frameBytesMax}`));
    if (connection.queuedBytes() + frame.byteLength > this.settings.sendQueueBytesMax) {
      return Promise.reject(new RpcError('QUEUE_FULL', `send queue to ${link.key} is full (${connection.queuedBytes()} bytes)`));
    }
    return new Promise<MessageBody>((resolve, reject) => {
      const timer = this.clock.setTimer(options.timeoutMs, () => {
        if (link.pending.delete(id)) reject(new RpcError('TIMEOUT', `request "${type}" to ${link.key} timed out after ${options.timeoutMs} ms`));
      });
      link.pending.set(id, { resolve, reject, timer });
      connection.send(frame);
    });
  }

  notify(to: PeerAddress, type: string, body: MessageBody): NotifyOutcome {
    if (this.closing !== undefined) return 'queued';
    const link = this.linkTo(to);
    const connection = this.connectionOf(link);
    if (connection === undefined) return 'queued';
    const frame = this.codec.frame([kindNotify, type, body]);
    if (frame === undefined) throw new RpcError('FRAME_TOO_LARGE', `notify "${type}" is over frameBytesMax ${this.settings.frameBytesMax}`);
    if (connection.queuedBytes() + frame.byteLength > this.settings.sendQueueBytesMax) return 'queue-full';
    connection.send(frame);
    return 'queued';
  }

  handle(type: string, handler: RequestHandler): void {
    assert(!this.handlers.has(type), () => `a handler for "${type}" is already registered`);
    this.handlers.set(type, handler);
  }

  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  /** Bytes queued towards `to` (batched plus in the socket), for tests and metrics. */
  sendQueueBytes(to: PeerAddress): number {
    return this.links.get(addressKey(to))?.connection?.queuedBytes() ?? 0;
  }

  /** Destroys every connection, as a network reset would (tests, fault injection). */
  dropConnections(): void {
    for (const link of this.links.values()) link.connection?.destroy('dropped by dropConnections()');
    for (const connection of this.inbound) connection.destroy('dropped by dropConnections()');
  }

  private async closeNow(): Promise<void> {
    const closed = new RpcError('CLOSED', 'the messenger was closed');
    for (const link of this.links.values()) {
      link.rejectAll(closed);
      link.connection?.destroy('messenger closed');
    }
    for (const connection of this.inbound) connection.destroy('messenger closed');
    const server = this.server;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.logger.info('peer messenger closed');
  }

  private linkTo(address: PeerAddress): OutboundLink {
    const key = addressKey(address);
    let link = this.links.get(key);
    if (link === undefined) {
      link = new OutboundLink({ host: address.host, port: address.port }, key);
      this.links.set(key, link);
    }
    return link;
  }

  /** The link's connection, dialling one if there is none; undefined while backing off. */
  private connectionOf(link: OutboundLink): PeerConnection | undefined {
    if (link.connection !== undefined) return link.connection;
    if (this.clock.nowMs() < link.backoffUntilMs) return undefined;
    assert(this.handshakeFrame !== undefined, 'start() must complete before sending');
    const socket = connect(dialOptions(this.identity.address.host, link.address));
    link.connection = new PeerConnection(socket, link.key, this.codec, this.outboundEvents(link), this.logger, this.settings, this.clock, this.handshakeFrame);
    return link.connection;
  }

  private unreachable(link: OutboundLink): RpcError {
    const waitMs = Math.max(0, Math.ceil(link.backoffUntilMs - this.clock.nowMs()));
    return new RpcError('UNREACHABLE', `${link.key} is unreachable (retrying in ${waitMs} ms)`);
  }

  private outboundEvents(link: OutboundLink): ConnectionEvents {
    return {
      onHandshake: (_connection, handshake) => {
        if (handshake.protocolVersion !== this.settings.protocolVersion) {
          return `peer speaks protocol version ${handshake.protocolVersion}, this node ${this.settings.protocolVersion}`;
        }
        link.failuresInRow = 0;
        link.backoffUntilMs = Number.NEGATIVE_INFINITY;
        return undefined;
      },
      onMessage: (connection, message) => this.onOutboundMessage(link, connection, message),
      onClose: (connection, reason) => this.onOutboundClose(link, connection, reason),
    };
  }

  private onOutboundMessage(link: OutboundLink, connection: PeerConnection, message: unknown[]): void {
    const kind = message[0];
    if (kind !== kindResponse && kind !== kindError) return connection.fail(`a listener sent message kind ${String(kind)}`);
    const id = message[1] as number;
    const request = link.pending.get(id);
    if (request === undefined) return; // Answered after its timeout: dropped.
    link.pending.delete(id);
    request.timer.cancel();
    if (kind === kindResponse) request.resolve(message[2]);
    else request.reject(new RpcError(message[2] as RpcErrorCode, message[3] as string));
  }

  private onOutboundClose(link: OutboundLink, connection: PeerConnection, reason: string): void {
    if (link.connection !== connection) return;
    link.connection = undefined;
    if (this.closing !== undefined) return;
    if (connection.peer === undefined) {
      link.failuresInRow++;
      const backoffMs = Math.min(this.settings.reconnectBackoffMaxMs, this.settings.reconnectBackoffInitialMs * 2 ** Math.min(link.failuresInRow - 1, 30));
      link.backoffUntilMs = this.clock.nowMs() + backoffMs;
      const level = link.failuresInRow === 1 ? 'info' : 'debug';
      this.logger[level]({ peer: link.key, reason, backoffMs, failuresInRow: link.failuresInRow }, 'peer connection failed');
    } else {
      this.logger.info({ peer: link.key, peerNodeId: connection.peer.nodeId, reason }, 'peer connection lost');
    }
    link.rejectAll(new RpcError('UNREACHABLE', `connection to ${link.key} lost: ${reason}`));
  }

  private onInboundSocket(socket: Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.closing !== undefined || this.handshakeFrame === undefined) {
      socket.destroy();
      return;
    }
    const connection = new PeerConnection(socket, remote, this.codec, this.inboundEvents(), this.logger, this.settings, this.clock, this.handshakeFrame);
    this.inbound.add(connection);
  }

  private inboundEvents(): ConnectionEvents {
    return {
      onHandshake: (_connection, handshake) =>
        handshake.protocolVersion === this.settings.protocolVersion
          ? undefined
          : `peer speaks protocol version ${handshake.protocolVersion}, this node ${this.settings.protocolVersion}`,
      onMessage: (connection, message) => this.onInboundMessage(connection, message),
      onClose: (connection) => {
        this.inbound.delete(connection);
      },
    };
  }

  private onInboundMessage(connection: PeerConnection, message: unknown[]): void {
    const from = connection.peer;
    assert(from !== undefined, 'messages are dispatched only after the handshake');
    if (message[0] === kindNotify) return this.onNotify(connection, message[1] as string, message[2], from);
    if (message[0] !== kindRequest) return connection.fail(`a requester sent message kind ${String(message[0])}`);
    const id = message[1] as number;
    const type = message[2] as string;
    const handler = this.handlers.get(type);
    if (handler === undefined) return this.replyError(connection, id, 'NO_HANDLER', `no handler for message type "${type}" on ${this.identity.nodeId}`);
    let result: unknown;
    try {
      result = handler(message[3], from);
    } catch (error) {
      return this.replyError(connection, id, 'REMOTE', errorMessage(error));
    }
    if (!isThenable(result)) return this.reply(connection, id, type, result);
    result.then(
      (value) => this.reply(connection, id, type, value),
      (error: unknown) => this.replyError(connection, id, 'REMOTE', errorMessage(error)),
    );
  }

  private onNotify(connection: PeerConnection, type: string, body: MessageBody, from: PeerIdentity): void {
    const handler = this.handlers.get(type);
    if (handler === undefined) {
      this.logger.debug({ remote: connection.remote, type }, 'notify of an unknown type dropped');
      return;
    }
    const logFailure = (error: unknown): void => this.logger.warn({ err: error, type, peerNodeId: from.nodeId }, 'notify handler failed');
    try {
      const result = handler(body, from);
      if (isThenable(result)) result.then(undefined, logFailure);
    } catch (error) {
      logFailure(error);
    }
  }

  private reply(connection: PeerConnection, id: number, type: string, value: MessageBody): void {
    if (connection.closed) return;
    let frame: Uint8Array | undefined;
    try {
      frame = this.codec.frame([kindResponse, id, value]);
    } catch (error) {
      return this.replyError(connection, id, 'REMOTE', `the reply to "${type}" cannot be encoded: ${errorMessage(error)}`);
    }
    if (frame === undefined) return this.replyError(connection, id, 'FRAME_TOO_LARGE', `the reply to "${type}" is over frameBytesMax ${this.settings.frameBytesMax}`);
    this.sendReply(connection, frame);
  }

  private replyError(connection: PeerConnection, id: number, code: RpcErrorCode, message: string): void {
    if (connection.closed) return;
    const frame = this.codec.frame([kindError, id, code, message.slice(0, errorMessageCharsMax)]);
    assert(frame !== undefined, 'an error reply fits in a frame');
    this.sendReply(connection, frame);
  }

  /** A requester that does not read its replies is cut off rather than buffered without bound. */
  private sendReply(connection: PeerConnection, frame: Uint8Array): void {
    if (connection.queuedBytes() + frame.byteLength > this.settings.sendQueueBytesMax) {
      this.logger.warn({ remote: connection.remote, queuedBytes: connection.queuedBytes() }, 'peer does not read its replies: connection closed');
      connection.destroy('reply queue full');
      return;
    }
    connection.send(frame);
  }
}
