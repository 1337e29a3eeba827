import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Encoder } from '@msgpack/msgpack';
import { pino } from 'pino';
import { silentLogger, type Logger } from '../node/logger.js';
import { SystemClock } from '../world/clock.js';
import { encodeFrame } from './frame-codec.js';
import { messengerConformanceSuite } from './messenger-conformance.js';
import { RpcError, type PeerAddress, type RpcErrorCode } from './peer-messenger.js';
import { createTcpMessenger, dialOptions, encodeHandshakeFrame, protocolMagic, type TcpMessenger, type TcpMessengerOptions } from './tcp-messenger.js';

const host = '127.0.0.1';

function messenger(nodeId: string, overrides: Partial<TcpMessengerOptions> = {}): TcpMessenger {
  return createTcpMessenger({
    nodeId,
    host,
    port: 0,
    clock: new SystemClock(),
    logger: silentLogger(),
    connectTimeoutMs: 2000,
    reconnectBackoffInitialMs: 10,
    reconnectBackoffMaxMs: 100,
    ...overrides,
  });
}

messengerConformanceSuite('tcp', async () => {
  const a = messenger('a');
  let b = messenger('b');
  await a.start();
  await b.start();
  assert.ok(a.self.address.port > 0 && b.self.address.port > 0, 'port 0 binds a free port');
  return {
    a,
    get b() {
      return b;
    },
    cleanup: async () => {
      await a.close();
      await b.close();
    },
    breakConnection: () => a.dropConnections(),
    restartB: async () => {
      const { port } = b.self.address;
      await b.close();
      b = messenger('b', { port });
      await b.start();
      return b;
    },
  };
});

/** A logger whose warn lines the test can read. */
function capturingLogger(): { logger: Logger; warnings: () => string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
  const warnings = (): string[] => lines.map((line) => JSON.parse(line) as { level: number; msg: string; reason?: string }).filter((entry) => entry.level === 40).map((entry) => `${entry.msg}: ${entry.reason ?? ''}`);
  return { logger, warnings };
}

async function assertRpcError(promise: Promise<unknown>, code: RpcErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => error instanceof RpcError && error.code === code);
}

async function rawClient(address: PeerAddress): Promise<Socket> {
  const socket = connect(address.port, address.host);
  await once(socket, 'connect');
  socket.on('error', () => undefined);
  socket.resume(); // Read, so that the peer's close is seen.
  return socket;
}

async function closedWithinMs(socket: Socket, limitMs: number): Promise<void> {
  if (socket.closed) return;
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`socket not closed by the peer within ${limitMs} ms`)), limitMs);
  });
  try {
    // Not events.once: a reset ('error' before 'close') is a close too.
    await Promise.race([new Promise((resolve) => socket.once('close', resolve)), limit]);
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

async function listen(server: Server): Promise<PeerAddress> {
  server.listen(0, host);
  await once(server, 'listening');
  return { host, port: (server.address() as AddressInfo).port };
}

async function closeServer(server: Server, sockets: Iterable<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

const encoder = new Encoder();
const handshake = (overrides: Record<string, unknown> = {}): Uint8Array =>
  encodeFrame(encoder.encode({ magic: protocolMagic, protocolVersion: 1, nodeId: 'raw', host, port: 1, ...overrides }));
const frameOf = (value: unknown): Uint8Array => encodeFrame(encoder.encode(value));

describe('tcp messenger', () => {
  const malformedInputs: [string, () => Uint8Array[]][] = [
    ['garbage bytes (an HTTP request)', () => [new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
    ['a length over frameBytesMax', () => [Uint8Array.of(0x00, 0x10, 0x00, 0x01)]],
    ['undecodable MessagePack', () => [encodeFrame(Uint8Array.of(0xc1))]],
    ['a frame with trailing bytes after the value', () => [encodeFrame(Uint8Array.of(0x01, 0x02))]],
    ['a first frame that is not a handshake', () => [frameOf([0, 1, 'ping', null])]],
    ['a handshake with a bad magic', () => [handshake({ magic: 'redis' })]],
    ['a handshake with another protocol version', () => [handshake({ protocolVersion: 2 })]],
    ['a handshake without a node id', () => [handshake({ nodeId: '' })]],
    ['a malformed envelope after the handshake', () => [handshake(), frameOf([0, 'not-an-id', 'ping', null])]],
    ['an unknown message kind after the handshake', () => [handshake(), frameOf([9, 1])]],
    ['a response sent to the listener', () => [handshake(), frameOf([1, 0, null])]],
  ];

  for (const [name, bytes] of malformedInputs) {
    it(`tcp messenger: malformed input: ${name} closes that socket only, with a warn log`, async () => {
      const { logger, warnings } = capturingLogger();
      const a = messenger('a');
      const b = messenger('b', { logger, frameBytesMax: 1024 * 1024 });
      await a.start();
      await b.start();
      b.handle('ping', () => 'pong');
      try {
        assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong');
        const raw = await rawClient(b.self.address);
        for (const chunk of bytes()) raw.write(chunk);
        await closedWithinMs(raw, 2000);
        assert.equal(warnings().length, 1, `one warn line, got ${JSON.stringify(warnings())}`);
        assert.match(warnings()[0]!, /malformed/);
        assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong', 'the established peer is unaffected');
        const c = messenger('c');
        await c.start();
        assert.equal(await c.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong', 'new peers are served');
        await c.close();
      } finally {
        await a.close();
        await b.close();
      }
    });
  }

  it('tcp messenger: handshake: a peer that speaks another protocol version is refused on dial, with a warn log', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.write(handshake({ protocolVersion: 7 }));
    });
    const address = await listen(server);
    const { logger, warnings } = capturingLogger();
    const a = messenger('a', { logger });
    await a.start();
    try {
      await assertRpcError(a.request(address, 'ping', null, { timeoutMs: 5000 }), 'UNREACHABLE');
      assert.equal(warnings().length, 1);
      assert.match(warnings()[0]!, /protocol version 7/);
    } finally {
      await a.close();
      await closeServer(server, sockets);
    }
  });

  it('tcp messenger: handshake: an inbound peer that never sends its handshake is closed after connectTimeoutMs', async () => {
    const b = messenger('b', { connectTimeoutMs: 100 });
    await b.start();
    try {
      const raw = await rawClient(b.self.address);
      const startMs = performance.now();
      await closedWithinMs(raw, 2000);
      assert.ok(performance.now() - startMs >= 95);
    } finally {
      await b.close();
    }
  });

  it('tcp messenger: dial: a listener that never answers the handshake gives UNREACHABLE after connectTimeoutMs', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => void sockets.add(socket));
    const address = await listen(server);
    const a = messenger('a', { connectTimeoutMs: 150 });
    await a.start();
    try {
      const startMs = performance.now();
      await assertRpcError(a.request(address, 'ping', null, { timeoutMs: 10_000 }), 'UNREACHABLE');
      const elapsedMs = performance.now() - startMs;
      assert.ok(elapsedMs >= 145 && elapsedMs < 2000, `failed after ${elapsedMs} ms`);
    } finally {
      await a.close();
      await closeServer(server, sockets);
    }
  });

  it('tcp messenger: back-off: failed dials back off, doubling up to the cap; requests fail fast meanwhile', async () => {
    const clock = new SkewableClock();
    const free = await freePort();
    const a = messenger('a', { clock, reconnectBackoffInitialMs: 10_000, reconnectBackoffMaxMs: 30_000 });
    await a.start();
    const retryInMs = async (): Promise<number> => {
      const error = await a.request(free, 'ping', null, { timeoutMs: 5000 }).then(
        () => assert.fail('expected UNREACHABLE'),
        (caught: unknown) => caught,
      );
      assert.ok(error instanceof RpcError && error.code === 'UNREACHABLE', String(error));
      return Number(/retrying in (\d+) ms/.exec(error.message)?.[1] ?? -1);
    };
    let b: TcpMessenger | undefined;
    try {
      assert.ok((await retryInMs()) <= 0, 'the first failure comes from a refused dial');
      const waitMs = await retryInMs();
      assert.ok(waitMs > 9000 && waitMs <= 10_000, `backing off: ${waitMs} ms`);
      b = messenger('b', { port: free.port });
      await b.start();
      b.handle('ping', () => 'pong');
      assert.ok((await retryInMs()) > 9000, 'no dial while backing off, even though b is up now');
      clock.skewMs += 10_001;
      assert.equal(await a.request(free, 'ping', null, { timeoutMs: 5000 }), 'pong', 'after the back-off the dial succeeds');
      await b.close();
      for (const expectedMs of [10_000, 20_000, 30_000, 30_000]) {
        await retryUntilRefused(a, free);
        const backoffMs = await retryInMs();
        assert.ok(backoffMs > expectedMs - 1000 && backoffMs <= expectedMs, `expected ~${expectedMs} ms, got ${backoffMs}`);
        clock.skewMs += expectedMs + 1;
      }
    } finally {
      await a.close();
      await b?.close();
    }
  });

  it('tcp messenger: send queue: a peer that never reads gets QUEUE_FULL once sendQueueBytesMax is queued', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.pause();
      socket.write(handshake());
    });
    const address = await listen(server);
    const sendQueueBytesMax = 1024 * 1024;
    const a = messenger('a', { sendQueueBytesMax, frameBytesMax: 64 * 1024 });
    await a.start();
    const b = messenger('b');
    await b.start();
    b.handle('ping', () => 'pong');
    try {
      const body = new Uint8Array(32 * 1024);
      let acceptedBytes = 0;
      let outcome: 'queued' | 'queue-full' = 'queued';
      for (let round = 0; round < 10_000 && outcome === 'queued'; round++) {
        for (let index = 0; index < 16 && outcome === 'queued'; index++) {
          outcome = a.notify(address, 'gossip', body);
          if (outcome === 'queued') acceptedBytes += body.byteLength;
          assert.ok(a.sendQueueBytes(address) <= sendQueueBytesMax, 'the queue never passes its bound');
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(outcome, 'queue-full');
      assert.ok(acceptedBytes < 64 * 1024 * 1024, `accepted ${acceptedBytes} bytes: only kernel buffers and the bound`);
      assert.ok(a.sendQueueBytes(address) > sendQueueBytesMax - 64 * 1024);
      await assertRpcError(a.request(address, 'gossip', body, { timeoutMs: 5000 }), 'QUEUE_FULL');
      assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong', 'other peers are unaffected');
    } finally {
      await a.close();
      await b.close();
      await closeServer(server, sockets);
    }
  });

  it('tcp messenger: reply queue: a requester that never reads its replies is disconnected, with a warn log', async () => {
    const { logger, warnings } = capturingLogger();
    const b = messenger('b', { logger, sendQueueBytesMax: 1024 * 1024, frameBytesMax: 512 * 1024 });
    await b.start();
    const reply = new Uint8Array(256 * 1024);
    b.handle('big', () => reply);
    try {
      const raw = await rawClient(b.self.address);
      raw.pause();
      raw.write(handshake());
      for (let id = 0; id < 400; id++) raw.write(frameOf([0, id, 'big', null]));
      const deadline = Date.now() + 5000;
      while (!warnings().some((line) => /does not read its replies/.test(line))) {
        assert.ok(Date.now() < deadline, `no warning within 5000 ms: ${JSON.stringify(warnings())}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // The server closed its side; a paused socket sees the close only once it reads.
      raw.resume();
      await closedWithinMs(raw, 5000);
    } finally {
      await b.close();
    }
  });

  it('tcp messenger: frame size: a request, a reply or a notify over frameBytesMax is refused', async () => {
    const a = messenger('a', { frameBytesMax: 64 * 1024 });
    const b = messenger('b', { frameBytesMax: 64 * 1024 });
    await a.start();
    await b.start();
    b.handle('echo', (body) => body);
    b.handle('inflate', () => new Uint8Array(100 * 1024));
    try {
      await assertRpcError(a.request(b.self.address, 'echo', new Uint8Array(100 * 1024), { timeoutMs: 5000 }), 'FRAME_TOO_LARGE');
      await assertRpcError(a.request(b.self.address, 'inflate', null, { timeoutMs: 5000 }), 'FRAME_TOO_LARGE');
      assert.throws(() => a.notify(b.self.address, 'echo', new Uint8Array(100 * 1024)), (error: unknown) => error instanceof RpcError && error.code === 'FRAME_TOO_LARGE');
      assert.equal((await a.request(b.self.address, 'echo', new Uint8Array(60 * 1024), { timeoutMs: 5000 }) as Uint8Array).byteLength, 60 * 1024);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('tcp messenger: dial: a node on one specific IP dials from it (the peer sees that address); on 0.0.0.0 or a host name the kernel picks', async () => {
    const remotes: string[] = [];
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      remotes.push(socket.remoteAddress ?? '?');
      socket.on('error', () => undefined);
      socket.write(handshake());
    });
    const address = await listen(server);
    // All of 127.0.0.0/8 is loopback on Linux: 127.0.0.2 is an address of this host, not 127.0.0.1.
    const dialers = [messenger('a', { host: '127.0.0.2' }), messenger('b', { host: '0.0.0.0' }), messenger('c', { host: 'localhost' })];
    try {
      for (const dialer of dialers) {
        await dialer.start();
        // The raw listener answers no request: the dial and handshake are what is looked at.
        await assertRpcError(dialer.request(address, 'ping', null, { timeoutMs: 200 }), 'TIMEOUT');
      }
      assert.deepEqual(remotes, ['127.0.0.2', '127.0.0.1', '127.0.0.1']);
      assert.deepEqual(dialOptions('::1', { host: '127.0.0.1', port: 1 }), { host: '127.0.0.1', port: 1 }, 'no IPv6 source for an IPv4 peer');
      assert.deepEqual(dialOptions('127.0.0.2', { host: 'peer.example', port: 1 }), { host: 'peer.example', port: 1, localAddress: '127.0.0.2', family: 4 });
    } finally {
      for (const dialer of dialers) await dialer.close();
      await closeServer(server, sockets);
    }
  });

  it('tcp messenger: handshake frame: encodeHandshakeFrame writes the map the listener expects', async () => {
    const b = messenger('b');
    await b.start();
    b.handle('ping', (_body, from) => `pong to ${from.nodeId} at ${from.address.port}`);
    try {
      const raw = await rawClient(b.self.address);
      raw.write(encodeHandshakeFrame({ magic: protocolMagic, protocolVersion: 1, nodeId: 'raw', host, port: 4242 }));
      raw.write(frameOf([0, 7, 'ping', null]));
      const received: Buffer[] = [];
      raw.on('data', (chunk: Buffer) => received.push(chunk));
      const expected = Buffer.concat([Buffer.from(encodeHandshakeFrame({ magic: protocolMagic, protocolVersion: 1, nodeId: 'b', ...b.self.address })), Buffer.from(frameOf([1, 7, 'pong to raw at 4242']))]);
      for (let waited = 0; Buffer.concat(received).byteLength < expected.byteLength && waited < 200; waited++) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(Buffer.concat(received), expected);
      raw.destroy();
    } finally {
      await b.close();
    }
  });
});

/** The system clock, with monotonic time pushed forward on demand (timers stay real). */
class SkewableClock extends SystemClock {
  skewMs = 0;
  override nowMs(): number {
    return super.nowMs() + this.skewMs;
  }
}

async function freePort(): Promise<PeerAddress> {
  const server = createServer();
  const address = await listen(server);
  await closeServer(server, []);
  return address;
}

/** Requests until one fails from a fresh dial that was refused (not from back-off, not from a dropped connection). */
async function retryUntilRefused(a: TcpMessenger, address: PeerAddress): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const error = await a.request(address, 'ping', null, { timeoutMs: 5000 }).then(() => undefined, (caught: unknown) => caught);
    if (error instanceof RpcError && error.code === 'UNREACHABLE' && /ECONNREFUSED/.test(error.message)) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail('no refused dial');
}

