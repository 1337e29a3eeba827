// A real RespServer on 127.0.0.1 (port 0) over a real KvService, for tests that talk to it with
// client libraries, redis-cli or raw sockets. Every helper here cleans up after itself or hands
// back something the test must close; `stop()` ends the server so the process can exit.
import { execFile, spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { NodeInfo } from '../../src/api/resp-commands.js';
import type { RespParserLimits } from '../../src/api/resp-parser.js';
import { RespServer } from '../../src/api/resp-server.js';
import { KvService } from '../../src/node/kv-service.js';
import { silentLogger } from '../../src/node/logger.js';
import type { BatchOperation, Engine, EngineEntry, EngineStats, KeyRange, ScanRange } from '../../src/storage/engine.js';
import { MemoryEngine } from '../../src/storage/memory-engine.js';
import { SystemClock } from '../../src/world/clock.js';

export const respParserLimitsDefault: RespParserLimits = { bulkBytesMax: 1024 * 1024, argumentsMax: 1024 * 1024, inlineBytesMax: 64 * 1024 };
export const kvLimitsDefault = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024, siblingsMax: 100 } as const;

export interface RespFixtureOptions {
  readonly connectionsMax?: number;
  readonly parserLimits?: RespParserLimits;
  /** Default: a fresh MemoryEngine (every operation synchronous). */
  readonly engine?: Engine;
}

export interface RespFixture {
  readonly server: RespServer;
  readonly engine: Engine;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  /** Stops the server (idempotent); connections still open after `timeoutMs` are destroyed. */
  stop(timeoutMs?: number): Promise<void>;
}

export async function startRespFixture(options: RespFixtureOptions = {}): Promise<RespFixture> {
  const engine = options.engine ?? new MemoryEngine();
  const clock = new SystemClock();
  const kv = new KvService(engine, { actor: 'node-test', clock, limits: kvLimitsDefault });
  const startedAtMs = clock.nowMs();
  // The node's counters read the server, which is built right below (closures run only later).
  const node: NodeInfo = {
    nodeId: 'node-test',
    version: '0.0.0-test',
    uptimeMs: () => clock.nowMs() - startedAtMs,
    engineKind: engine.kind,
    keyCount: () => engine.stats().keyCount,
    connectedClients: () => server.connectionCount,
    commandsProcessed: () => server.commandsProcessed,
    get tcpPort(): number {
      return server.port();
    },
  };
  const server = new RespServer({
    host: '127.0.0.1',
    port: 0,
    connectionsMax: options.connectionsMax ?? 1000,
    parserLimits: options.parserLimits ?? respParserLimitsDefault,
    defaultNamespace: 'default',
    commands: { kv, node, defaultNamespace: 'default' },
    logger: silentLogger(),
  });
  await server.start();
  let stopped: Promise<void> | undefined;
  return {
    server,
    engine,
    port: server.port(),
    url: `redis://127.0.0.1:${server.port()}`,
    stop: (timeoutMs = 1000) => (stopped ??= server.stop(timeoutMs).then(() => engine.close())),
  };
}

/**
 * An engine whose point operations answer after `delayMs` (as an LSM engine waiting for I/O), so
 * that replies queue behind unfinished commands.
 */
export class DelayedEngine implements Engine {
  readonly kind = 'memory-delayed';
  private readonly inner = new MemoryEngine();

  constructor(private readonly delayMs: number) {}

  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.later(() => this.inner.get(key));
  }

  // Writes take effect at the call and are acknowledged later, as the Engine contract says
  // (an LSM engine applies at once and settles after the commit log's fsync).
  put(key: Uint8Array, value: Uint8Array): Promise<void> {
    this.inner.put(key, value);
    return this.later(() => undefined);
  }

  delete(key: Uint8Array): Promise<void> {
    this.inner.delete(key);
    return this.later(() => undefined);
  }

  deleteRange(range: KeyRange): Promise<void> {
    this.inner.deleteRange(range);
    return this.later(() => undefined);
  }

  batch(operations: readonly BatchOperation[]): Promise<void> {
    this.inner.batch(operations);
    return this.later(() => undefined);
  }

  scan(range?: ScanRange): AsyncIterable<EngineEntry> {
    return this.inner.scan(range);
  }

  stats(): EngineStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private later<T>(operation: () => T | Promise<T>): Promise<T> {
    return new Promise<void>((resolve) => setTimeout(resolve, this.delayMs)).then(operation);
  }
}

// ---------------------------------------------------------------------------------------------
// Raw sockets.

/** A plain TCP client that records every byte the server sends and when it closes. */
export class RawClient {
  private readonly chunks: Buffer[] = [];
  private waiters: (() => void)[] = [];
  /** Resolves when the server has ended or reset the connection. */
  readonly closed: Promise<void>;
  private isClosed = false;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.notify();
    });
    // A reset after the server gave up on us is an expected way to end, seen through `closed`.
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  get hasClosed(): boolean {
    return this.isClosed;
  }

  received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  write(bytes: Buffer | string): void {
    this.socket.write(bytes);
  }

  /** Resolves once `predicate(received)` holds; rejects after `timeoutMs` or on close without it. */
  async waitFor(predicate: (received: Buffer) => boolean, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const received = this.received();
      if (predicate(received)) return received;
      if (this.isClosed) throw new Error(`connection closed; received ${JSON.stringify(received.toString('latin1'))}`);
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`timed out; received ${JSON.stringify(received.toString('latin1'))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the server to close the connection; rejects after `timeoutMs`. */
  async waitForClose(timeoutMs = 5000): Promise<Buffer> {
    await this.waitFor(() => this.isClosed, timeoutMs).catch((error: unknown) => {
      if (!this.isClosed) throw error;
    });
    return this.received();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}

/**
 * Sends `chunks` on a new connection, pausing `gapMs` between them so that the server most likely
 * reads them one by one, and returns everything received until the server closes (the script
 * must end with QUIT or a protocol error).
 */
export async function rawExchange(port: number, chunks: readonly Buffer[], gapMs = 1): Promise<Buffer> {
  const client = await RawClient.connect(port);
  try {
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      client.write(chunk);
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
    return await client.waitForClose();
  } finally {
    client.destroy();
  }
}

/** Encodes a command as a RESP array of bulk strings, as clients send it. */
export function encodeCommand(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------------------------
// redis-cli (from redis-tools; tests that need it skip when it is missing).

export const hasRedisCli = spawnSync('redis-cli', ['--version'], { stdio: 'ignore' }).status === 0;
export const redisCliMissing = 'redis-cli not installed (apt-get install redis-tools)';

/**
 * Runs redis-cli against `port` with `args`, feeding `input` on stdin; resolves with its stdout.
 * Asynchronous on purpose: the server under test runs in this process.
 */
export function runRedisCli(port: number, args: readonly string[], input = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`redis-cli ${args.join(' ')} failed: ${error.message}; stderr: ${stderr}`));
      else resolve(stdout);
    });
    child.stdin?.end(input);
  });
}
