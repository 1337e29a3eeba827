import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom } from '../core/random.js';
import { RpcError, type MessageBody, type PeerIdentity, type PeerMessenger, type RpcErrorCode } from './peer-messenger.js';

/**
 * The one suite every PeerMessenger implementation passes (STYLE.md: Level/abstract-level), run
 * on real time. Each test gets a fresh started pair from `createPair` and calls its cleanup.
 * Scenario names read `messenger conformance (LABEL): area: situation`.
 */
export interface MessengerPair {
  readonly a: PeerMessenger;
  /** The current b: restartB replaces it. */
  readonly b: PeerMessenger;
  /** Closes everything the pair opened (including a restarted b); the process must be able to exit. */
  cleanup(): Promise<void>;
  /** Resets the connections between a and b as the network would (pending requests fail). */
  breakConnection?(): void;
  /** Closes b and starts a new messenger with b's identity at b's address; returns it. */
  restartB?(): Promise<PeerMessenger>;
}

/** What a scenario may do with its running test: skip it, stating why. */
interface ScenarioContext {
  skip(reason: string): void;
}

type Scenario = (area: string, situation: string, body: (pair: MessengerPair, context: ScenarioContext) => Promise<void>) => void;

/** Timing slack for a loaded 2-core machine: a timeout fires no earlier than asked, and at most this late. */
const lateMsMax = 1000;

export function messengerConformanceSuite(label: string, createPair: () => Promise<MessengerPair>): void {
  const scenario: Scenario = (area, situation, body) => {
    it(`messenger conformance (${label}): ${area}: ${situation}`, async (test) => {
      const pair = await createPair();
      try {
        await body(pair, test);
      } finally {
        await pair.cleanup();
      }
    });
  };
  describe(`messenger conformance (${label})`, () => {
    requestScenarios(scenario);
    failureScenarios(scenario);
    notifyScenarios(scenario);
    lifecycleScenarios(scenario);
  });
}

function requestScenarios(scenario: Scenario): void {
  scenario('request', 'a round trip carries binary and nested bodies exactly, and names the sender', async ({ a, b }) => {
    const senders: PeerIdentity[] = [];
    b.handle('echo', (body, from) => {
      senders.push(from);
      return body;
    });
    const random = new SeededRandom(11);
    const bytes = (length: number): Uint8Array => Uint8Array.from({ length }, () => random.nextInt(256));
    const bodies: MessageBody[] = [
      bytes(0),
      bytes(1),
      bytes(1000),
      bytes(300_000),
      { key: bytes(16), list: [1, -2.5, 'ü€😀', null, true, false, bytes(3)], nested: { deep: [[bytes(2)]] } },
      'a string',
      0,
      2 ** 40,
      null,
      [],
    ];
    for (const body of bodies) assert.deepEqual(await a.request(b.self.address, 'echo', body, { timeoutMs: 5000 }), body);
    const binary = (await a.request(b.self.address, 'echo', bytes(5), { timeoutMs: 5000 })) as Uint8Array;
    assert.ok(binary instanceof Uint8Array, 'a Uint8Array arrives as a Uint8Array');
    assert.deepEqual(senders.at(-1), a.self, 'the handler sees the sender identity, with its advertised address');
  });

  scenario('request', 'both directions work at once; a handler returning nothing resolves with null', async ({ a, b }) => {
    a.handle('who', () => a.self.nodeId);
    b.handle('who', () => b.self.nodeId);
    b.handle('nothing', () => undefined);
    const [fromB, fromA] = await Promise.all([
      a.request(b.self.address, 'who', null, { timeoutMs: 5000 }),
      b.request(a.self.address, 'who', null, { timeoutMs: 5000 }),
    ]);
    assert.equal(fromB, b.self.nodeId);
    assert.equal(fromA, a.self.nodeId);
    assert.equal(await a.request(b.self.address, 'nothing', null, { timeoutMs: 5000 }), null);
  });

  scenario('request', '1000 concurrent requests with random reply delays each get their own reply', async ({ a, b }) => {
    const random = new SeededRandom(5);
    b.handle('double', (body) => {
      const { n } = body as { n: number };
      const delayMs = random.nextInt(20);
      return new Promise((resolve) => setTimeout(() => resolve({ n: n * 2 }), delayMs));
    });
    b.handle('offset', (body) => ({ n: (body as { n: number }).n + 1_000_000 }));
    const replies = await Promise.all(
      Array.from({ length: 1000 }, (_unused, n) =>
        a.request(b.self.address, n % 3 === 0 ? 'offset' : 'double', { n }, { timeoutMs: 10_000 }),
      ),
    );
    replies.forEach((reply, n) => assert.deepEqual(reply, { n: n % 3 === 0 ? n + 1_000_000 : n * 2 }, `reply ${n}`));
  });
}

function failureScenarios(scenario: Scenario): void {
  scenario('request', 'a handler that throws or rejects gives REMOTE with its message', async ({ a, b }) => {
    b.handle('throws', () => {
      throw new Error('disk on fire');
    });
    b.handle('rejects', () => Promise.reject(new Error('quorum lost')));
    await assertRpcError(a.request(b.self.address, 'throws', null, { timeoutMs: 5000 }), 'REMOTE', /disk on fire/);
    await assertRpcError(a.request(b.self.address, 'rejects', null, { timeoutMs: 5000 }), 'REMOTE', /quorum lost/);
    b.handle('ok', () => 'still serving');
    assert.equal(await a.request(b.self.address, 'ok', null, { timeoutMs: 5000 }), 'still serving');
  });

  scenario('request', 'an unknown type gives NO_HANDLER', async ({ a, b }) => {
    await assertRpcError(a.request(b.self.address, 'no-such-type', { x: 1 }, { timeoutMs: 5000 }), 'NO_HANDLER', /no-such-type/);
  });

  scenario('request', 'a handler that never answers gives TIMEOUT no earlier than timeoutMs', async ({ a, b }) => {
    b.handle('never', () => new Promise(() => undefined));
    const timeoutMs = 150;
    const startMs = performance.now();
    await assertRpcError(a.request(b.self.address, 'never', null, { timeoutMs }), 'TIMEOUT');
    const elapsedMs = performance.now() - startMs;
    assert.ok(elapsedMs >= timeoutMs - 1, `timed out after ${elapsedMs} ms, before ${timeoutMs} ms`);
    assert.ok(elapsedMs < timeoutMs + lateMsMax, `timed out after ${elapsedMs} ms`);
  });

  scenario('request', 'a request to a closed peer gives UNREACHABLE or TIMEOUT, never hangs', async ({ a, b }) => {
    b.handle('ping', () => 'pong');
    assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong');
    await b.close();
    const timeoutMs = 300;
    const startMs = performance.now();
    for (let attempt = 0; attempt < 3; attempt++) {
      await assertRpcError(a.request(b.self.address, 'ping', null, { timeoutMs }), ['UNREACHABLE', 'TIMEOUT']);
    }
    assert.ok(performance.now() - startMs < 3 * (timeoutMs + lateMsMax));
  });
}

function notifyScenarios(scenario: Scenario): void {
  scenario('notify', 'a notification arrives with its body and sender; its return value is dropped', async ({ a, b }) => {
    const arrived = deferred<{ body: MessageBody; from: PeerIdentity }>();
    b.handle('gossip', (body, from) => {
      arrived.resolve({ body, from });
      return 'ignored';
    });
    assert.equal(a.notify(b.self.address, 'gossip', { view: [1, 2, 3], digest: new Uint8Array([9, 8]) }), 'queued');
    const { body, from } = await withinMs(arrived.promise, 5000);
    assert.deepEqual(body, { view: [1, 2, 3], digest: new Uint8Array([9, 8]) });
    assert.deepEqual(from, a.self);
  });

  scenario('notify', 'notifications from one peer arrive in the order sent', async ({ a, b }) => {
    const count = 1000;
    const seen: number[] = [];
    const done = deferred<void>();
    b.handle('seq', (body) => {
      seen.push(body as number);
      if (seen.length === count) done.resolve();
    });
    for (let seq = 0; seq < count; seq++) assert.equal(a.notify(b.self.address, 'seq', seq), 'queued');
    await withinMs(done.promise, 10_000);
    assert.deepEqual(seen, Array.from({ length: count }, (_unused, seq) => seq));
  });

  scenario('notify', 'a failing notify handler or an unknown notify type leaves the messenger serving', async ({ a, b }) => {
    b.handle('bad-gossip', () => {
      throw new Error('bad gossip');
    });
    b.handle('ping', () => 'pong');
    a.notify(b.self.address, 'bad-gossip', null);
    a.notify(b.self.address, 'unknown-gossip', null);
    assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong');
  });
}

function lifecycleScenarios(scenario: Scenario): void {
  scenario('close', 'close() rejects pending requests with CLOSED; later requests too; close is idempotent', async ({ a, b }) => {
    b.handle('never', () => new Promise(() => undefined));
    const pending = a.request(b.self.address, 'never', null, { timeoutMs: 30_000 });
    await sleepMs(20);
    await Promise.all([a.close(), a.close()]);
    await assertRpcError(pending, 'CLOSED');
    await assertRpcError(a.request(b.self.address, 'never', null, { timeoutMs: 1000 }), 'CLOSED');
    await a.close();
  });

  scenario('handle', 'a second handler for one type is refused', async ({ b }) => {
    b.handle('once', () => 1);
    assert.throws(() => b.handle('once', () => 2));
  });

  scenario('restart', 'after the peer restarts at the same address, requests succeed again', async (pair, test) => {
    if (pair.restartB === undefined) return test.skip('the pair cannot restart b');
    const { a } = pair;
    pair.b.handle('ping', () => 'first');
    const address = pair.b.self.address;
    assert.equal(await a.request(address, 'ping', null, { timeoutMs: 5000 }), 'first');
    const restarted = await pair.restartB();
    restarted.handle('ping', () => 'second');
    assert.deepEqual(restarted.self.address, address);
    assert.equal(await retryUntilOk(() => a.request(address, 'ping', null, { timeoutMs: 1000 }), 5000), 'second');
  });

  scenario('connection', 'a broken connection fails pending requests, and the next request reconnects', async (pair, test) => {
    if (pair.breakConnection === undefined) return test.skip('the pair cannot break its connection');
    const { a, b } = pair;
    b.handle('never', () => new Promise(() => undefined));
    b.handle('ping', () => 'pong');
    assert.equal(await a.request(b.self.address, 'ping', null, { timeoutMs: 5000 }), 'pong');
    const pending = a.request(b.self.address, 'never', null, { timeoutMs: 5000 });
    await sleepMs(20);
    pair.breakConnection();
    await assertRpcError(pending, ['UNREACHABLE', 'TIMEOUT']);
    assert.equal(await retryUntilOk(() => a.request(b.self.address, 'ping', null, { timeoutMs: 1000 }), 5000), 'pong');
  });
}

async function assertRpcError(promise: Promise<unknown>, codes: RpcErrorCode | RpcErrorCode[], message?: RegExp): Promise<void> {
  const expected = Array.isArray(codes) ? codes : [codes];
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RpcError, `expected an RpcError, got ${String(error)}`);
    assert.ok(expected.includes(error.code), `expected ${expected.join(' or ')}, got ${error.code}: ${error.message}`);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

async function retryUntilOk<T>(attempt: () => Promise<T>, withinMsMax: number): Promise<T> {
  const deadlineMs = performance.now() + withinMsMax;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof RpcError) || performance.now() > deadlineMs) throw error;
      await sleepMs(20);
    }
  }
}

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

function sleepMs(delayMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, delayMs));
}

async function withinMs<T>(promise: Promise<T>, limitMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${limitMs} ms`)), limitMs);
  });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}
