import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { resolveConfig } from '../../src/node/config.js';
import { silentLogger } from '../../src/node/logger.js';
import { RingkvNode } from '../../src/node/ringkv-node.js';
import type { EscalationReason } from '../../src/node/supervisor.js';
import { SystemClock, sleep } from '../../src/world/clock.js';
import { NodeFileSystem, type FileSystem } from '../../src/world/file-system.js';
import { createMemoryFileSystem } from '../../src/world/memory-file-system.js';
import { SeededRandom } from '../../src/core/random.js';
import { createRandom } from '../../src/world/random.js';
import { freePort, temporaryDirectory } from '../helpers/ringkv-process.js';

async function startTestNode(
  flags: Record<string, unknown>,
  onEscalate: (reason: EscalationReason) => void = () => {},
  fs: FileSystem = new NodeFileSystem(),
): Promise<RingkvNode> {
  const config = resolveConfig({
    flags: { dataDir: temporaryDirectory(), httpPort: await freePort(), respPort: await freePort(), peerPort: await freePort(), ...flags },
    environment: {},
    file: undefined,
  });
  assert.ok(config.ok);
  const world = { clock: new SystemClock(), random: createRandom(7), fs, logger: silentLogger() };
  return RingkvNode.start(config.value, world, onEscalate);
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const clock = new SystemClock();
  const deadline = clock.nowMs() + timeoutMs;
  while (!condition()) {
    assert.ok(clock.nowMs() < deadline, `condition not met within ${timeoutMs} ms`);
    await sleep(clock, 10);
  }
}

describe('node: services under the supervisor', () => {
  it('node: a RESP listener that fails is restarted and serves again (restart backoff 20 ms)', async () => {
    const node = await startTestNode({ restartBackoffMs: 20 });
    // Keep the event loop alive: the supervisor's timers do not hold the process open.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      const port = node.resp.port();
      const first = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      assert.equal(await first.set('kept', 'across restarts'), 'OK');
      first.disconnect();
      const failedListener = node.resp.listener;
      assert.ok(failedListener !== undefined);
      failedListener.emit('error', new Error('injected listener failure'));
      await until(() => node.resp.listener !== undefined && node.resp.listener !== failedListener, 5000);
      const resp = (node.status()['services'] as { name: string; restarts: number; state: string }[]).find((service) => service.name === 'resp');
      assert.equal(resp?.restarts, 1);
      assert.equal(resp?.state, 'running');
      const second = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
      assert.equal(await second.get('kept'), 'across restarts', 'the engine kept its data: only the listener restarted');
      second.disconnect();
    } finally {
      clearInterval(keepAlive);
      await node.stop();
    }
  });

  it('node: a commit log that fails (disk full) fails the write clearly, and the supervisor reopens the engine, which serves again with nothing lost', async () => {
    const disk = createMemoryFileSystem({ random: new SeededRandom(3) });
    const node = await startTestNode({ restartBackoffMs: 20 }, () => {}, disk);
    const keepAlive = setInterval(() => {}, 1000);
    const redis = new Redis({ port: node.resp.port(), host: '127.0.0.1', maxRetriesPerRequest: 0 });
    try {
      assert.equal(await redis.set('kept', 'before the failure'), 'OK');
      disk.failNextWrites(1);
      await assert.rejects(redis.set('refused', 'x'), /ENOSPC/);
      await until(() => (node.status()['services'] as { name: string; restarts: number; state: string }[]).some((service) => service.name === 'engine' && service.restarts === 1 && service.state === 'running'), 5000);
      assert.equal(await redis.set('after', 'the restart'), 'OK');
      assert.equal(await redis.get('kept'), 'before the failure');
      assert.equal(await redis.get('refused'), null, 'a write refused is not stored');
    } finally {
      redis.disconnect();
      clearInterval(keepAlive);
      await node.stop();
    }
  });

  it('node: a service failing more than restarts-max times in the window escalates to a node shutdown (restarts-max 2)', async () => {
    const escalations: EscalationReason[] = [];
    const node = await startTestNode({ restartBackoffMs: 10, restartsMax: 2, restartWindowMs: 60_000 }, (reason) => escalations.push(reason));
    const keepAlive = setInterval(() => {}, 1000);
    try {
      for (let failure = 0; failure < 3; failure++) {
        const listener = node.resp.listener;
        assert.ok(listener !== undefined, `listener running before failure ${failure + 1}`);
        listener.emit('error', new Error(`injected failure ${failure + 1}`));
        if (failure < 2) await until(() => node.resp.listener !== undefined && node.resp.listener !== listener, 5000);
      }
      await until(() => escalations.length > 0, 5000);
      assert.equal(escalations.length, 1);
      assert.equal(escalations[0]?.service, 'resp');
      const states = (node.status()['services'] as { name: string; state: string }[]).map((service) => `${service.name}:${service.state}`);
      assert.deepEqual(states, ['engine:stopped', 'cluster:stopped', 'http:stopped', 'resp:failed']);
    } finally {
      clearInterval(keepAlive);
      await node.stop();
    }
  });
});
