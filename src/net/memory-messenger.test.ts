import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { createMemoryNetwork, type MemoryMessenger, type MemoryNetwork } from './memory-messenger.js';
import { messengerConformanceSuite } from './messenger-conformance.js';
import { RpcError, type PeerIdentity, type RpcErrorCode } from './peer-messenger.js';

const identity = (nodeId: string, port: number): PeerIdentity => ({ nodeId, address: { host: '10.0.0.1', port } });

messengerConformanceSuite('memory', async () => {
  const network = createMemoryNetwork();
  // The SystemClock's timers do not hold the process open; a test waiting on them needs a handle.
  const keepAlive = setInterval(() => undefined, 1000);
  const a = network.messenger(identity('a', 1));
  let b = network.messenger(identity('b', 2));
  await a.start();
  await b.start();
  return {
    a,
    get b() {
      return b;
    },
    cleanup: async () => {
      await a.close();
      await b.close();
      clearInterval(keepAlive);
    },
    breakConnection: () => a.dropConnections(),
    restartB: async () => {
      await b.close();
      b = network.messenger(identity('b', 2));
      await b.start();
      return b;
    },
  };
});

interface Cluster {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly a: MemoryMessenger;
  readonly b: MemoryMessenger;
}

async function virtualCluster(options: { deliveryDelayMs?: number; sendQueueBytesMax?: number } = {}): Promise<Cluster> {
  const clock = new ManualClock();
  const network = createMemoryNetwork({ clock, ...options });
  const a = network.messenger(identity('a', 1));
  const b = network.messenger(identity('b', 2));
  await a.start();
  await b.start();
  for (const messenger of [a, b]) messenger.handle('ping', (_body, from) => `pong to ${from.nodeId}`);
  return { clock, network, a, b };
}

/** Settles `promise` into its value or its RpcError code, so a test can advance time first. */
function outcome(promise: Promise<unknown>): { readonly value: () => unknown } {
  let settled: unknown = 'pending';
  promise.then(
    (value) => void (settled = { ok: value }),
    (error: unknown) => void (settled = { error: error instanceof RpcError ? error.code : String(error) }),
  );
  return { value: () => settled };
}

const failedWith = (code: RpcErrorCode): unknown => ({ error: code });

describe('memory messenger', () => {
  it('memory messenger: clock: nothing is delivered until the clock advances, never inside request()', async () => {
    const { clock, a, b } = await virtualCluster({ deliveryDelayMs: 5 });
    let calls = 0;
    b.handle('count', () => ++calls);
    const reply = outcome(a.request(b.self.address, 'count', null, { timeoutMs: 100 }));
    assert.equal(calls, 0, 'the handler does not run inside request()');
    await clock.advance(4);
    assert.equal(calls, 0, 'not before deliveryDelayMs');
    await clock.advance(1);
    assert.equal(calls, 1);
    assert.equal(reply.value(), 'pending', 'the reply travels for deliveryDelayMs too');
    await clock.advance(5);
    assert.deepEqual(reply.value(), { ok: 1 });
  });

  it('memory messenger: timeout: TIMEOUT fires at exactly timeoutMs of virtual time', async () => {
    const { clock, a, b } = await virtualCluster();
    b.handle('never', () => new Promise(() => undefined));
    const reply = outcome(a.request(b.self.address, 'never', null, { timeoutMs: 250 }));
    await clock.advance(249);
    assert.equal(reply.value(), 'pending');
    await clock.advance(1);
    assert.deepEqual(reply.value(), failedWith('TIMEOUT'));
  });

  it('memory messenger: partition (both): requests either way TIMEOUT, notifies are lost, heal restores', async () => {
    const { clock, network, a, b } = await virtualCluster();
    const gossip: string[] = [];
    b.handle('gossip', (_body, from) => void gossip.push(from.nodeId));
    network.partition('a', 'b');
    const aToB = outcome(a.request(b.self.address, 'ping', null, { timeoutMs: 100 }));
    const bToA = outcome(b.request(a.self.address, 'ping', null, { timeoutMs: 100 }));
    a.notify(b.self.address, 'gossip', null);
    await clock.advance(100);
    assert.deepEqual(aToB.value(), failedWith('TIMEOUT'));
    assert.deepEqual(bToA.value(), failedWith('TIMEOUT'));
    assert.deepEqual(gossip, []);
    network.heal();
    const healed = outcome(a.request(b.self.address, 'ping', null, { timeoutMs: 100 }));
    await clock.advance(1);
    assert.deepEqual(healed.value(), { ok: 'pong to a' });
  });

  it('memory messenger: partition (one-way a to b): a cannot reach b; b reaches a but its replies are lost', async () => {
    const { clock, network, a, b } = await virtualCluster();
    const gossip: string[] = [];
    for (const messenger of [a, b]) messenger.handle('gossip', (_body, from) => void gossip.push(`${from.nodeId}->${messenger.self.nodeId}`));
    let aHandled = 0;
    a.handle('count', () => ++aHandled);
    network.partition('a', 'b', 'one-way');
    const aToB = outcome(a.request(b.self.address, 'ping', null, { timeoutMs: 100 }));
    const bToA = outcome(b.request(a.self.address, 'count', null, { timeoutMs: 100 }));
    a.notify(b.self.address, 'gossip', null);
    b.notify(a.self.address, 'gossip', null);
    await clock.advance(100);
    assert.deepEqual(aToB.value(), failedWith('TIMEOUT'));
    assert.deepEqual(bToA.value(), failedWith('TIMEOUT'), 'the request reached a, the reply was cut');
    assert.equal(aHandled, 1);
    assert.deepEqual(gossip, ['b->a']);
    network.heal('b', 'a');
    const healed = outcome(a.request(b.self.address, 'ping', null, { timeoutMs: 100 }));
    await clock.advance(1);
    assert.deepEqual(healed.value(), { ok: 'pong to a' });
  });

  it('memory messenger: partition: a message in flight when the link is cut is lost', async () => {
    const { clock, network, a, b } = await virtualCluster({ deliveryDelayMs: 10 });
    const reply = outcome(a.request(b.self.address, 'ping', null, { timeoutMs: 100 }));
    await clock.advance(5);
    network.partition('b', 'a');
    await clock.advance(95);
    assert.deepEqual(reply.value(), failedWith('TIMEOUT'));
  });

  it('memory messenger: unreachable: an address nobody started gives UNREACHABLE after one delivery', async () => {
    const { clock, a } = await virtualCluster();
    const reply = outcome(a.request({ host: '10.0.0.9', port: 9 }, 'ping', null, { timeoutMs: 100 }));
    assert.equal(a.notify({ host: '10.0.0.9', port: 9 }, 'gossip', null), 'queued', 'a notify to nowhere is dropped quietly');
    await clock.advance(0);
    assert.deepEqual(reply.value(), failedWith('UNREACHABLE'));
  });

  it('memory messenger: send queue: undelivered bytes are bounded per peer (QUEUE_FULL, queue-full)', async () => {
    const { clock, a, b } = await virtualCluster({ deliveryDelayMs: 10, sendQueueBytesMax: 10_000 });
    const body = new Uint8Array(1000);
    let queued = 0;
    while (a.notify(b.self.address, 'ping', body) === 'queued') queued++;
    assert.ok(queued >= 9 && queued <= 10, `queued ${queued} notifies of ~1 KB in 10 KB`);
    assert.ok(a.sendQueueBytes(b.self.address) <= 10_000);
    const full = outcome(a.request(b.self.address, 'ping', body, { timeoutMs: 100 }));
    await clock.advance(0);
    assert.deepEqual(full.value(), failedWith('QUEUE_FULL'));
    await clock.advance(10);
    assert.equal(a.sendQueueBytes(b.self.address), 0, 'delivery drains the queue');
    assert.equal(a.notify(b.self.address, 'ping', body), 'queued');
  });

  it('memory messenger: address: two started messengers cannot share an address', async () => {
    const { network } = await virtualCluster();
    const twin = network.messenger(identity('b2', 2));
    await assert.rejects(async () => twin.start(), /already in use/);
  });

  it('memory messenger: isolation: the receiver gets a copy, never the sender object', async () => {
    const { clock, a, b } = await virtualCluster();
    let received: unknown;
    b.handle('keep', (body) => {
      received = body;
      return body;
    });
    const sent = { list: [1, 2], bytes: Uint8Array.of(1) };
    const reply = outcome(a.request(b.self.address, 'keep', sent, { timeoutMs: 100 }));
    await clock.advance(0);
    assert.notEqual(received, sent);
    assert.deepEqual(received, sent);
    assert.deepEqual(reply.value(), { ok: sent });
  });
});
