import { createServer, type Server, type Socket } from 'node:net';
import type { QuorumOptions } from '../node/kv-service.js';
import type { Logger } from '../node/logger.js';
import { RespParser, RespProtocolError, type RespParserLimits } from './resp-parser.js';
import { RespWriter } from './resp-writer.js';
import { executeCommand, type CommandContext, type ConnectionState, type Reply } from './resp-commands.js';

export interface RespServerOptions {
  readonly host: string;
  readonly port: number;
  readonly connectionsMax: number;
  readonly parserLimits: RespParserLimits;
  readonly defaultNamespace: string;
  readonly commands: CommandContext;
  readonly logger: Logger;
}

/** How long a refused connection may stay open to read its error before it is destroyed. */
const refusedLingerMs = 1000;

/** Commands of one connection whose replies are still awaited; beyond it, reading pauses. */
const repliesInFlightMax = 1024;

/**
 * On shutdown a connection keeps serving what its client already sent (a pipeline may still sit
 * in the socket buffers) and ends once it has been quiet this long with no reply pending.
 */
const shutdownQuietMs = 50;

/** One queued reply, in command order: bytes once known. */
interface QueuedReply {
  bytes: Buffer | undefined;
}

/**
 * A Redis-protocol connection. Commands run as they arrive (pipelining); replies leave in
 * command order. While every command completes synchronously, the replies to one received chunk
 * are encoded into one buffer and written once; when a command must wait for the engine, later
 * replies queue behind it.
 */
class RespConnection implements ConnectionState {
  namespace: string;
  name = '';
  closing = false;
  quorum: QuorumOptions = {};
  readonly id: number;
  private readonly parser: RespParser;
  private readonly writer = new RespWriter();
  private readonly queue: QueuedReply[] = [];
  private pausedForQueue = false;
  private shuttingDown = false;
  private drainScheduled = false;
  private quietTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly socket: Socket,
    id: number,
    private readonly server: RespServer,
    private readonly options: RespServerOptions,
  ) {
    this.id = id;
    this.namespace = options.defaultNamespace;
    this.parser = new RespParser(options.parserLimits);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.resumeIfPossible());
    socket.on('error', (error) => options.logger.debug({ err: error, connection: id }, 'resp connection error'));
    socket.on('close', () => server.forget(this));
  }

  get resp3(): boolean {
    return this.writer.resp3;
  }

  set resp3(enabled: boolean) {
    this.writer.resp3 = enabled;
  }

  get idle(): boolean {
    return this.queue.length === 0;
  }

  /** Finishes the commands the client already sent, then ends the connection (see shutdownQuietMs). */
  shutdown(): void {
    this.shuttingDown = true;
    this.endWhenQuiet();
  }

  private endWhenQuiet(): void {
    if (!this.shuttingDown || this.closing || this.queue.length > 0) return;
    clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => {
      if (this.queue.length > 0) return; // the reply that empties the queue arms the timer again
      this.closing = true;
      this.socket.end();
    }, shutdownQuietMs);
  }

  private onData(chunk: Buffer): void {
    if (this.closing) return;
    clearTimeout(this.quietTimer);
    try {
      this.parser.feed(chunk, (args) => this.dispatch(args));
    } catch (error) {
      if (!(error instanceof RespProtocolError)) throw error;
      this.options.logger.warn({ connection: this.id, reason: error.message }, 'resp protocol error; closing the connection');
      // The error answers the bytes after every command already taken, so it queues behind them.
      if (this.queue.length === 0) this.writer.error(`ERR ${error.message}`);
      else {
        const scratch = new RespWriter(256);
        scratch.error(`ERR ${error.message}`);
        this.queue.push({ bytes: scratch.take() });
      }
      this.closing = true;
    }
    this.flushWriter();
    if (this.closing && this.queue.length === 0) this.socket.end();
    this.endWhenQuiet();
  }

  private dispatch(args: Buffer[]): void {
    if (this.closing) return;
    this.server.commandsProcessed++;
    if (this.queue.length === 0) {
      const pending = this.run(args, this.writer);
      if (pending !== undefined) {
        this.flushWriter();
        this.enqueue(pending);
      }
      return;
    }
    const scratch = new RespWriter(256);
    scratch.resp3 = this.writer.resp3;
    const pending = this.run(args, scratch);
    if (pending !== undefined) this.enqueue(pending);
    else this.queue.push({ bytes: scratch.take() });
  }

  private run(args: Buffer[], out: RespWriter): Promise<Reply> | undefined {
    try {
      return executeCommand(this.options.commands, this, args, out);
    } catch (error) {
      this.options.logger.error({ err: error, command: args[0]?.toString('latin1') }, 'resp command failed');
      out.error('ERR internal error; see the node log');
      return undefined;
    }
  }

  private enqueue(pending: Promise<Reply>): void {
    const entry: QueuedReply = { bytes: undefined };
    this.queue.push(entry);
    const settle = (reply: Reply): void => {
      const scratch = new RespWriter(256);
      scratch.resp3 = this.writer.resp3;
      reply(scratch);
      entry.bytes = scratch.take();
      this.scheduleDrain();
    };
    pending.then(settle, (error: unknown) => {
      this.options.logger.error({ err: error }, 'resp command failed');
      settle((out) => out.error('ERR internal error; see the node log'));
    });
    if (this.queue.length >= repliesInFlightMax && !this.pausedForQueue) {
      this.pausedForQueue = true;
      this.socket.pause();
    }
  }

  /**
   * Replies that finish asynchronously often finish together (a group commit acknowledges a
   * whole batch of writes at once): draining on the next turn of the event loop sends them in
   * one socket write instead of one write each.
   */
  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    setImmediate(() => {
      this.drainScheduled = false;
      this.drainQueue();
    });
  }

  private drainQueue(): void {
    const ready: Buffer[] = [];
    while (this.queue.length > 0 && this.queue[0]?.bytes !== undefined) ready.push((this.queue.shift() as QueuedReply).bytes as Buffer);
    if (ready.length > 0 && !this.socket.destroyed) this.write(ready.length === 1 ? (ready[0] as Buffer) : Buffer.concat(ready));
    if (this.queue.length === 0 && this.closing) this.socket.end();
    this.resumeIfPossible();
    this.endWhenQuiet();
  }

  private flushWriter(): void {
    if (this.writer.byteLength === 0 || this.socket.destroyed) return;
    this.write(this.writer.take());
  }

  private write(bytes: Buffer): void {
    if (!this.socket.write(bytes)) this.socket.pause();
  }

  private resumeIfPossible(): void {
    if (this.closing || this.socket.writableNeedDrain) return;
    if (this.pausedForQueue && this.queue.length >= repliesInFlightMax / 2) return;
    this.pausedForQueue = false;
    this.socket.resume();
  }
}

/** The Redis-protocol listener of a node (one service under the supervisor). */
export class RespServer {
  commandsProcessed = 0;
  private server: Server | undefined;
  private readonly connections = new Set<RespConnection>();
  private nextConnectionId = 1;

  constructor(private readonly options: RespServerOptions) {}

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Listens; a listener error after start is reported to `onFailure` (the supervisor restarts us). */
  async start(onFailure: (error: unknown) => void = () => {}): Promise<void> {
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => {
      this.options.logger.error({ err: error }, 'resp listener failed');
      onFailure(error);
    });
    this.server = server;
  }

  /** The listening socket, while started (tests make it fail on purpose through it). */
  get listener(): Server | undefined {
    return this.server;
  }

  /** The bound port (useful with port 0 in tests). */
  port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.options.port;
  }

  /**
   * Stops accepting, lets every connection finish the commands it already sent, then closes
   * them; connections still busy after `timeoutMs` are destroyed.
   */
  async stop(timeoutMs: number): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const connection of this.connections) connection.shutdown();
    const timer = setTimeout(() => {
      for (const connection of this.connections) connection.socket.destroy();
    }, timeoutMs);
    await closed;
    clearTimeout(timer);
  }

  forget(connection: RespConnection): void {
    this.connections.delete(connection);
  }

  private accept(socket: Socket): void {
    if (this.connections.size >= this.options.connectionsMax) {
      // Refused sockets are not tracked: drain and ignore what they send, and never let one linger.
      socket.on('error', () => {});
      socket.resume();
      socket.end('-ERR max number of clients reached\r\n');
      setTimeout(() => socket.destroy(), refusedLingerMs).unref();
      return;
    }
    this.connections.add(new RespConnection(socket, this.nextConnectionId++, this, this.options));
  }
}
