import { Decoder, Encoder } from '@msgpack/msgpack';
import { assert } from '../core/assert.js';
import { SystemClock, type Clock, type TimerHandle } from '../world/clock.js';
import { frameBytesMaxDefault } from './frame-codec.js';
import {
  RpcError,
  addressKey,
  errorMessage,
  isThenable,
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
 * The in-memory network: PeerMessengers in one process, every delivery a timer of the injected
 * Clock (so the simulator drives it on virtual time). Same semantics and error codes as TCP:
 *
 * - Bodies are MessagePack-encoded when sent and decoded when delivered, so nodes never share
 *   objects and exactly the values TCP can carry arrive (Uint8Array stays Uint8Array).
 * - Delivery is asynchronous, after deliveryDelayMs (default 0), never inside the sender's call,
 *   and in order per (sender, destination) pair, like one TCP connection.
 * - An address with no started messenger at delivery time: a request rejects UNREACHABLE (a
 *   refused or reset connection), a notify is dropped.
 * - A partition drops messages silently in the blocked direction, checked at delivery time:
 *   requests across it TIMEOUT, as on a real network whose packets vanish, and so does a request
 *   whose reply direction is cut (one-way partition). Notifies across it are lost.
 * - The send queue per (sender, destination) counts undelivered request/notify bytes; over
 *   sendQueueBytesMax a request gets QUEUE_FULL and a notify 'queue-full'.
 * - Replies go to the requesting messenger instance, not its address: a requester that closed
 *   and restarted on the same address never gets its predecessor's replies.
 */

export interface MemoryNetworkOptions {
  /** Default: SystemClock. */
  readonly clock?: Clock;
  /** Delay of every delivery; default 0 (still a timer: never re-entrant). */
  readonly deliveryDelayMs?: number;
  /** Undelivered bytes per (sender, destination) before QUEUE_FULL; default 64 MiB. */
  readonly sendQueueBytesMax?: number;
  /** Largest encoded body; default 16 MiB, as TCP. */
  readonly frameBytesMax?: number;
  /**
   * The fate of each message, for the simulator's faulty network: the delays (ms) after which
   * copies of it arrive. None: lost; two or more: duplicated; different delays reorder messages
   * of one channel. Absent: one copy after deliveryDelayMs, in order per channel (like TCP).
   */
  readonly deliveryPlan?: ((message: PlannedMessage) => readonly number[]) | undefined;
}

/** What a delivery plan is told of a message. */
export interface PlannedMessage {
  readonly from: string;
  readonly to: string;
  readonly kind: 'request' | 'notify' | 'response' | 'error';
  readonly type: string;
  readonly bytes: number;
}

export type PartitionDirection = 'both' | 'one-way';

export interface MemoryNetwork {
  /** A messenger for `identity`; it joins the network on start(). */
  messenger(identity: PeerIdentity): MemoryMessenger;
  /**
   * Cuts the link between nodes `a` and `b` (node ids): 'both' (default) drops messages either
   * way, 'one-way' only from a to b. Messages in flight are dropped at delivery.
   */
  partition(a: string, b: string, direction?: PartitionDirection): void;
  /** Heals the partition between a and b (both directions), or every partition when called bare. */
  heal(a?: string, b?: string): void;
  /**
   * The node's process is stopped (SIGSTOP): messages to and from it wait, as in a socket buffer,
   * until `resume`, then arrive in order (requests their senders may have given up on included).
   */
  pause(nodeId: string): void;
  resume(nodeId: string): void;
}

export function createMemoryNetwork(options: MemoryNetworkOptions = {}): MemoryNetwork {
  const network = new MemoryNetworkState({
    clock: options.clock ?? new SystemClock(),
    deliveryDelayMs: options.deliveryDelayMs ?? 0,
    sendQueueBytesMax: options.sendQueueBytesMax ?? 64 * 1024 * 1024,
    frameBytesMax: options.frameBytesMax ?? frameBytesMaxDefault,
    deliveryPlan: options.deliveryPlan,
  });
  return {
    messenger: (identity) => new MemoryMessenger(network, identity),
    partition: (a, b, direction = 'both') => network.partition(a, b, direction),
    heal: (a, b) => network.heal(a, b),
    pause: (nodeId) => network.pause(nodeId),
    resume: (nodeId) => network.resume(nodeId),
  };
}

interface Settings {
  readonly clock: Clock;
  readonly deliveryDelayMs: number;
  readonly sendQueueBytesMax: number;
  readonly frameBytesMax: number;
  readonly deliveryPlan: ((message: PlannedMessage) => readonly number[]) | undefined;
}

type Message =
  | { readonly kind: 'request'; readonly id: number; readonly type: string; readonly payload: Uint8Array }
  | { readonly kind: 'notify'; readonly type: string; readonly payload: Uint8Array }
  | { readonly kind: 'response'; readonly id: number; readonly payload: Uint8Array }
  | { readonly kind: 'error'; readonly id: number; readonly code: RpcErrorCode; readonly message: string };

interface QueuedMessage {
  readonly message: Message;
  readonly bytes: number;
  /** Set when the connection was dropped before delivery: no copy arrives. */
  dropped: boolean;
}

/** Messages in flight from one sender to one destination, delivered head first (unless planned). */
class Channel {
  readonly queue: QueuedMessage[] = [];
  queuedBytes = 0;
  constructor(
    readonly sender: MemoryMessenger,
    /** An address key for requests and notifies; the requesting instance for replies. */
    readonly destination: string | MemoryMessenger,
  ) {}
}

class MemoryNetworkState {
  readonly encoder = new Encoder();
  readonly decoder = new Decoder();
  private readonly registry = new Map<string, MemoryMessenger>();
  /** The node id last started at each address, so a partition also covers a stopped peer. */
  private readonly nodeIdAt = new Map<string, string>();
  private readonly blocked = new Set<string>();
  private readonly paused = new Set<string>();
  /** Messages that arrived while their sender or destination was paused, in arrival order. */
  private held: { readonly channel: Channel; readonly message: Message; readonly nodes: readonly string[] }[] = [];

  constructor(readonly settings: Settings) {
    assert(settings.deliveryDelayMs >= 0, 'deliveryDelayMs must be >= 0');
    assert(settings.sendQueueBytesMax >= 1 && settings.frameBytesMax >= 1, 'bounds must be positive');
  }

  register(messenger: MemoryMessenger): void {
    const key = addressKey(messenger.self.address);
    assert(!this.registry.has(key), () => `address ${key} is already in use on the memory network`);
    this.registry.set(key, messenger);
    this.nodeIdAt.set(key, messenger.self.nodeId);
  }

  unregister(messenger: MemoryMessenger): void {
    const key = addressKey(messenger.self.address);
    if (this.registry.get(key) === messenger) this.registry.delete(key);
  }

  partition(a: string, b: string, direction: PartitionDirection): void {
    this.blocked.add(linkKey(a, b));
    if (direction === 'both') this.blocked.add(linkKey(b, a));
  }

  heal(a?: string, b?: string): void {
    if (a === undefined || b === undefined) {
      assert(a === undefined && b === undefined, 'heal takes two node ids or none');
      this.blocked.clear();
      return;
    }
    this.blocked.delete(linkKey(a, b));
    this.blocked.delete(linkKey(b, a));
  }

  /** Queues `message` on `channel` and schedules its delivery. */
  send(channel: Channel, message: Message, bytes: number): void {
    const entry: QueuedMessage = { message, bytes, dropped: false };
    const plan = this.settings.deliveryPlan;
    if (plan === undefined) {
      channel.queue.push(entry);
      channel.queuedBytes += bytes;
      this.settings.clock.setTimer(this.settings.deliveryDelayMs, () => this.deliverHead(channel));
      return;
    }
    const to = typeof channel.destination === 'string' ? (this.nodeIdAt.get(channel.destination) ?? channel.destination) : channel.destination.self.nodeId;
    const type = message.kind === 'request' || message.kind === 'notify' ? message.type : '';
    const delays = plan({ from: channel.sender.self.nodeId, to, kind: message.kind, type, bytes });
    if (delays.length === 0) return;
    channel.queue.push(entry);
    channel.queuedBytes += bytes;
    let arrived = false;
    for (const delayMs of delays) {
      this.settings.clock.setTimer(delayMs, () => {
        if (entry.dropped) return;
        if (!arrived) {
          arrived = true;
          channel.queue.splice(channel.queue.indexOf(entry), 1);
          channel.queuedBytes -= bytes;
        }
        this.deliver(channel, message);
      });
    }
  }

  private deliverHead(channel: Channel): void {
    const entry = channel.queue.shift();
    if (entry === undefined) return; // Dropped by the sender's close() or dropConnections().
    channel.queuedBytes -= entry.bytes;
    this.deliver(channel, entry.message);
  }

  pause(nodeId: string): void {
    this.paused.add(nodeId);
  }

  resume(nodeId: string): void {
    if (!this.paused.delete(nodeId)) return;
    const ready = this.held.filter((entry) => entry.nodes.every((node) => !this.paused.has(node)));
    this.held = this.held.filter((entry) => !ready.includes(entry));
    for (const { channel, message } of ready) this.settings.clock.setTimer(0, () => this.deliver(channel, message));
  }

  private deliver(channel: Channel, message: Message): void {
    const { sender } = channel;
    if (this.paused.size > 0) {
      const to = typeof channel.destination === 'string' ? this.nodeIdAt.get(channel.destination) : channel.destination.self.nodeId;
      const nodes = to === undefined ? [sender.self.nodeId] : [sender.self.nodeId, to];
      if (nodes.some((node) => this.paused.has(node))) {
        this.held.push({ channel, message, nodes });
        return;
      }
    }
    if (typeof channel.destination !== 'string') {
      const requester = channel.destination;
      if (!this.blocked.has(linkKey(sender.self.nodeId, requester.self.nodeId))) requester.receiveReply(message);
      return;
    }
    const destinationNodeId = this.nodeIdAt.get(channel.destination);
    if (destinationNodeId !== undefined && this.blocked.has(linkKey(sender.self.nodeId, destinationNodeId))) return;
    const target = this.registry.get(channel.destination);
    if (target === undefined) {
      if (message.kind === 'request') sender.receiveReply({ kind: 'error', id: message.id, code: 'UNREACHABLE', message: `nothing listens at ${channel.destination}` });
      return;
    }
    target.receive(message, sender);
  }
}

function linkKey(from: string, to: string): string {
  return `${from}\u0000${to}`;
}

interface PendingRequest {
  readonly resolve: (body: MessageBody) => void;
  readonly reject: (error: RpcError) => void;
  readonly timer: TimerHandle;
}

export class MemoryMessenger implements PeerMessenger {
  readonly self: PeerIdentity;
  private readonly handlers = new Map<string, RequestHandler>();
  private readonly channels = new Map<string, Channel>();
  private readonly replyChannels = new Map<MemoryMessenger, Channel>();
  private readonly pending = new Map<number, PendingRequest>();
  private nextId = 0;
  private state: 'new' | 'started' | 'closed' = 'new';

  constructor(
    private readonly network: MemoryNetworkState,
    identity: PeerIdentity,
  ) {
    assert(identity.nodeId.length > 0, 'nodeId must not be empty');
    this.self = { nodeId: identity.nodeId, address: { host: identity.address.host, port: identity.address.port } };
  }

  start(): Promise<void> {
    assert(this.state === 'new', 'start() is called once, before close()');
    this.network.register(this);
    this.state = 'started';
    return Promise.resolve();
  }

  request(to: PeerAddress, type: string, body: MessageBody, options: RequestOptions): Promise<MessageBody> {
    assert(Number.isFinite(options.timeoutMs) && options.timeoutMs >= 0, () => `timeoutMs must be finite and >= 0, got ${options.timeoutMs}`);
    if (this.state === 'closed') return Promise.reject(new RpcError('CLOSED', 'the messenger is closed'));
    assert(this.state === 'started', 'start() must complete before sending');
    const payload = this.network.encoder.encode(body);
    if (payload.byteLength > this.network.settings.frameBytesMax) {
      return Promise.reject(new RpcError('FRAME_TOO_LARGE', `request "${type}" is over frameBytesMax ${this.network.settings.frameBytesMax}`));
    }
    const channel = this.channelTo(to);
    if (channel.queuedBytes + payload.byteLength > this.network.settings.sendQueueBytesMax) {
      return Promise.reject(new RpcError('QUEUE_FULL', `send queue to ${addressKey(to)} is full (${channel.queuedBytes} bytes)`));
    }
    const id = this.nextId++;
    return new Promise<MessageBody>((resolve, reject) => {
      const timer = this.network.settings.clock.setTimer(options.timeoutMs, () => {
        if (this.pending.delete(id)) reject(new RpcError('TIMEOUT', `request "${type}" to ${addressKey(to)} timed out after ${options.timeoutMs} ms`));
      });
      this.pending.set(id, { resolve, reject, timer });
      this.network.send(channel, { kind: 'request', id, type, payload }, payload.byteLength);
    });
  }

  notify(to: PeerAddress, type: string, body: MessageBody): NotifyOutcome {
    if (this.state === 'closed') return 'queued';
    assert(this.state === 'started', 'start() must complete before sending');
    const payload = this.network.encoder.encode(body);
    if (payload.byteLength > this.network.settings.frameBytesMax) {
      throw new RpcError('FRAME_TOO_LARGE', `notify "${type}" is over frameBytesMax ${this.network.settings.frameBytesMax}`);
    }
    const channel = this.channelTo(to);
    if (channel.queuedBytes + payload.byteLength > this.network.settings.sendQueueBytesMax) return 'queue-full';
    this.network.send(channel, { kind: 'notify', type, payload }, payload.byteLength);
    return 'queued';
  }

  handle(type: string, handler: RequestHandler): void {
    assert(!this.handlers.has(type), () => `a handler for "${type}" is already registered`);
    this.handlers.set(type, handler);
  }

  close(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    this.state = 'closed';
    this.network.unregister(this);
    this.dropInFlight(new RpcError('CLOSED', 'the messenger was closed'));
    return Promise.resolve();
  }

  /** Undelivered bytes towards `to`, for tests and metrics. */
  sendQueueBytes(to: PeerAddress): number {
    return this.channels.get(addressKey(to))?.queuedBytes ?? 0;
  }

  /** Loses everything in flight from this messenger and fails its pending requests, as a reset would. */
  dropConnections(): void {
    this.dropInFlight(new RpcError('UNREACHABLE', 'connection dropped by dropConnections()'));
  }

  /** Called by the network: a request or notify from `sender` arrives. */
  receive(message: Message, sender: MemoryMessenger): void {
    if (message.kind === 'notify') return this.receiveNotify(message.type, message.payload, sender);
    assert(message.kind === 'request', 'only requests and notifies travel to an address');
    const replyTo = (reply: Message, bytes: number): void => {
      if (this.state === 'closed') return;
      this.network.send(this.replyChannelTo(sender), reply, bytes);
    };
    const replyError = (code: RpcErrorCode, text: string): void => replyTo({ kind: 'error', id: message.id, code, message: text }, 0);
    const handler = this.handlers.get(message.type);
    if (handler === undefined) return replyError('NO_HANDLER', `no handler for message type "${message.type}" on ${this.self.nodeId}`);
    const reply = (value: MessageBody): void => {
      let payload: Uint8Array;
      try {
        payload = this.network.encoder.encode(value);
      } catch (error) {
        return replyError('REMOTE', `the reply to "${message.type}" cannot be encoded: ${errorMessage(error)}`);
      }
      if (payload.byteLength > this.network.settings.frameBytesMax) return replyError('FRAME_TOO_LARGE', `the reply to "${message.type}" is over frameBytesMax`);
      replyTo({ kind: 'response', id: message.id, payload }, payload.byteLength);
    };
    try {
      const result = handler(this.network.decoder.decode(message.payload), sender.self);
      if (isThenable(result)) result.then(reply, (error: unknown) => replyError('REMOTE', errorMessage(error)));
      else reply(result);
    } catch (error) {
      replyError('REMOTE', errorMessage(error));
    }
  }

  /** Called by the network: the answer to one of this messenger's requests arrives. */
  receiveReply(message: Message): void {
    assert(message.kind === 'response' || message.kind === 'error', 'a reply is a response or an error');
    const request = this.pending.get(message.id);
    if (request === undefined) return; // Timed out, or this messenger closed.
    this.pending.delete(message.id);
    request.timer.cancel();
    if (message.kind === 'response') request.resolve(this.network.decoder.decode(message.payload));
    else request.reject(new RpcError(message.code, message.message));
  }

  private receiveNotify(type: string, payload: Uint8Array, sender: MemoryMessenger): void {
    const handler = this.handlers.get(type);
    if (handler === undefined) return;
    try {
      const result = handler(this.network.decoder.decode(payload), sender.self);
      if (isThenable(result)) result.then(undefined, () => undefined);
    } catch {
      // A notification's outcome is dropped, as over TCP (which logs it).
    }
  }

  private dropInFlight(error: RpcError): void {
    for (const channel of [...this.channels.values(), ...this.replyChannels.values()]) {
      for (const entry of channel.queue) entry.dropped = true;
      channel.queue.length = 0;
      channel.queuedBytes = 0;
    }
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const request of pending) {
      request.timer.cancel();
      request.reject(error);
    }
  }

  private channelTo(to: PeerAddress): Channel {
    const key = addressKey(to);
    let channel = this.channels.get(key);
    if (channel === undefined) {
      channel = new Channel(this, key);
      this.channels.set(key, channel);
    }
    return channel;
  }

  private replyChannelTo(requester: MemoryMessenger): Channel {
    let channel = this.replyChannels.get(requester);
    if (channel === undefined) {
      channel = new Channel(this, requester);
      this.replyChannels.set(requester, channel);
    }
    return channel;
  }
}
