import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryNetwork } from '../../src/net/memory-messenger.js';
import { resolveConfig } from '../../src/node/config.js';
import { silentLogger } from '../../src/node/logger.js';
import { RingkvNode } from '../../src/node/ringkv-node.js';
import { SystemClock, sleep } from '../../src/world/clock.js';
import { NodeFileSystem } from '../../src/world/file-system.js';
import { createRandom } from '../../src/world/random.js';
import { freePort, temporaryDirectory } from '../helpers/ringkv-process.js';

// The node runtime takes its network from its world: the seam the simulator (issue 6) will use.
describe('node: a cluster in one process on the in-memory network', () => {
  it('node: three nodes on createMemoryNetwork join, replicate and read each other (N=3 R=2 W=2)', async () => {
    await withCluster(async ([a, b, c]) => {
      const written = await a.put('ns', Buffer.from('k'), Buffer.from('v'));
      assert.ok(written.ok);
      for (const store of [b, c]) {
        const read = await store.getNewest('ns', Buffer.from('k'), { r: 3 });
        assert.ok(read.ok, read.ok ? '' : read.message);
        assert.equal(Buffer.from(read.value ?? []).toString(), 'v');
      }
    });
  });

  it('node: a coordinated delete with a context removes what that read saw and keeps a write it did not see', async () => {
    // Found by the simulator (issue 6): the coordinator dropped the client's context and deleted
    // whatever a quorum held, a concurrent write the client never read included.
    await withCluster(async ([a, b, c]) => {
      const key = Buffer.from('deleted');
      assert.ok((await a.put('ns', key, Buffer.from('seen'))).ok);
      const read = await b.get('ns', key, { r: 3 });
      assert.ok(read.ok && read.value !== undefined);
      assert.ok((await c.put('ns', key, Buffer.from('unseen'))).ok); // blind: concurrent with the read
      const deleted = await b.delete('ns', key, { context: read.value.context, w: 3 });
      assert.ok(deleted.ok, deleted.ok ? '' : deleted.message);
      const after = await a.get('ns', key, { r: 3 });
      assert.ok(after.ok);
      assert.deepEqual(after.value?.siblings.map((sibling) => Buffer.from(sibling.value ?? []).toString()), ['unseen']);
    });
  });
});

type Store = RingkvNode['cluster']['store'];

/** Three nodes on one in-memory network (real timers, real files), joined; `body` gets their stores. */
async function withCluster(body: (stores: [Store, Store, Store]) => Promise<void>): Promise<void> {
  const clock = new SystemClock();
  const network = createMemoryNetwork({ clock });
  const nodes: RingkvNode[] = [];
  const keepAlive = setInterval(() => {}, 1000);
  try {
    for (let index = 1; index <= 3; index++) {
      const config = resolveConfig({
        flags: {
          nodeId: `mem-${index}`, dataDir: temporaryDirectory(), httpPort: await freePort(), respPort: await freePort(),
          peerPort: 9000 + index, gossipIntervalMs: 100, join: index === 1 ? '' : '127.0.0.1:9001',
        },
        environment: {},
        file: undefined,
      });
      assert.ok(config.ok, config.ok ? '' : config.message);
      const world = {
        clock, random: createRandom(index), fs: new NodeFileSystem(), logger: silentLogger(),
        createMessenger: (identity: { nodeId: string; host: string; port: number }) => network.messenger({ nodeId: identity.nodeId, address: { host: identity.host, port: identity.port } }),
      };
      nodes.push(await RingkvNode.start(config.value, world, () => {}));
    }
    const deadline = clock.nowMs() + 10_000;
    while (!nodes.every((node) => new Set(node.cluster.membership?.ring.owners).size === 3)) {
      assert.ok(clock.nowMs() < deadline, 'the ring did not reach three owners');
      await sleep(clock, 50);
    }
    await body(nodes.map((node) => node.cluster.store) as [Store, Store, Store]);
  } finally {
    clearInterval(keepAlive);
    for (const node of nodes.reverse()) await node.stop();
  }
}
