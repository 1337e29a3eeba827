import assert from 'node:assert/strict';
import { createMemoryNetwork } from '../../src/net/memory-messenger.js';
import { resolveConfig, type ConfigKey } from '../../src/node/config.js';
import { silentLogger } from '../../src/node/logger.js';
import { RingkvNode } from '../../src/node/ringkv-node.js';
import { SystemClock, sleep } from '../../src/world/clock.js';
import { NodeFileSystem } from '../../src/world/file-system.js';
import { createRandom } from '../../src/world/random.js';
import { freePort, temporaryDirectory } from './ringkv-process.js';

/**
 * Three nodes `mem-1..3` in this process on one in-memory network (real timers, real files),
 * joined on a ring of three owners; `body` gets them. Nodes the body stopped are not stopped again.
 */
export async function withInProcessCluster(
  flags: Partial<Record<ConfigKey, unknown>>,
  body: (nodes: [RingkvNode, RingkvNode, RingkvNode]) => Promise<void>,
): Promise<void> {
  const clock = new SystemClock();
  const network = createMemoryNetwork({ clock });
  const nodes: RingkvNode[] = [];
  const stopped = new Set<RingkvNode>();
  const keepAlive = setInterval(() => {}, 1000);
  try {
    for (let index = 1; index <= 3; index++) {
      const config = resolveConfig({
        flags: {
          nodeId: `mem-${index}`, dataDir: temporaryDirectory(), httpPort: await freePort(), respPort: await freePort(),
          peerPort: 9000 + index, gossipIntervalMs: 100, join: index === 1 ? '' : '127.0.0.1:9001', ...flags,
        },
        environment: {},
        file: undefined,
      });
      assert.ok(config.ok, config.ok ? '' : config.message);
      const world = {
        clock, random: createRandom(index), fs: new NodeFileSystem(), logger: silentLogger(),
        createMessenger: (identity: { nodeId: string; host: string; port: number }) => network.messenger({ nodeId: identity.nodeId, address: { host: identity.host, port: identity.port } }),
      };
      const node = await RingkvNode.start(config.value, world, () => {});
      const stop = node.stop.bind(node);
      node.stop = async () => {
        stopped.add(node);
        await stop();
      };
      nodes.push(node);
    }
    const deadline = clock.nowMs() + 10_000;
    while (!nodes.every((node) => new Set(node.cluster.membership?.ring.owners).size === 3)) {
      assert.ok(clock.nowMs() < deadline, 'the ring did not reach three owners');
      await sleep(clock, 50);
    }
    await body(nodes as [RingkvNode, RingkvNode, RingkvNode]);
  } finally {
    clearInterval(keepAlive);
    for (const node of nodes.reverse()) if (!stopped.has(node)) await node.stop();
  }
}
