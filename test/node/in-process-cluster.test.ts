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
      const [a, b, c] = nodes.map((node) => node.cluster.store) as [typeof nodes[0]['cluster']['store'], typeof nodes[0]['cluster']['store'], typeof nodes[0]['cluster']['store']];
      const written = await a.put('ns', Buffer.from('k'), Buffer.from('v'));
      assert.ok(written.ok);
      for (const store of [b, c]) {
        const read = await store.getNewest('ns', Buffer.from('k'), { r: 3 });
        assert.ok(read.ok, read.ok ? '' : read.message);
        assert.equal(Buffer.from(read.value ?? []).toString(), 'v');
      }
    } finally {
      clearInterval(keepAlive);
      for (const node of nodes.reverse()) await node.stop();
    }
  });
});
