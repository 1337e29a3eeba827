import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createTree, rootHash, updateKey } from '../../src/core/merkle-tree.js';
import { createMemoryNetwork } from '../../src/net/memory-messenger.js';
import { keyPartition } from '../../src/core/token.js';
import { antiEntropyTreeShape, type AntiEntropyReport } from '../../src/node/anti-entropy.js';
import { resolveConfig } from '../../src/node/config.js';
import { silentLogger } from '../../src/node/logger.js';
import { RingkvNode } from '../../src/node/ringkv-node.js';
import { objectVersionHash } from '../../src/node/stored-object.js';
import { SystemClock, sleep } from '../../src/world/clock.js';
import { createMemoryFileSystem } from '../../src/world/memory-file-system.js';
import { createRandom } from '../../src/world/random.js';
import { withInProcessCluster } from '../helpers/in-process-cluster.js';

const clock = new SystemClock();

describe('anti-entropy: three replicas in one process on the in-memory network', () => {
  it('anti-entropy: keys one replica\'s store alone holds reach the others; trees kept on every write equal a rebuild from the store', async () => {
    await withInProcessCluster({ antiEntropyIntervalMs: 100 }, async (nodes) => {
      const [a, b, c] = nodes;
      // The cluster formed by joins: their transfers end first, or they would carry the keys below.
      await eventually('no transfer under way, no partition waiting for one', 20_000, () => nodes.every(settled));
      for (let index = 0; index < 60; index++) assert.ok((await a.cluster.store.put('ns', Buffer.from(`both-${index}`), Buffer.from('v'), { w: 3 })).ok);
      // Written into one store only, bypassing the coordinator: what a lost replication leaves.
      const lonely = Array.from({ length: 25 }, (_, index) => Buffer.from(`lonely-${index}`));
      for (const key of lonely) assert.ok((await a.kv.put('ns', key, Buffer.from('only-a'))).ok);
      assert.ok((await b.kv.put('ns', Buffer.from('lonely-b'), Buffer.from('only-b'))).ok);
      await eventually('every replica holds every key', 20_000, async () => {
        for (const node of [b, c]) {
          for (const key of lonely) {
            const held = await node.kv.readObject('ns', key);
            if (!held.ok || held.value === undefined) return false;
          }
        }
        const fromB = await c.kv.getNewest('ns', Buffer.from('lonely-b'));
        return fromB.ok && fromB.value !== undefined && Buffer.from(fromB.value).toString() === 'only-b';
      });
      await eventually('every partition\'s roots agree on all three replicas', 20_000, async () => rootsAgree(nodes));
      const reports = nodes.map(reportOf);
      const repaired = reports.reduce((sum, report) => sum + report.keysRepaired, 0);
      assert.ok(repaired >= lonely.length * 2 + 2, `at least ${lonely.length * 2 + 2} objects repaired, got ${repaired}`);
      assert.ok(reports.every((report) => report.exchanges > 0 && report.rootBytes > 0 && report.levelBytes > 0));
      // The same counters on GET /metrics, in Prometheus' text format.
      for (const node of nodes) {
        const response = await fetch(`http://127.0.0.1:${node.config.httpPort}/metrics`);
        assert.equal(response.status, 200);
        const text = await response.text();
        const repairedHere = new RegExp(`^ringkv_anti_entropy_objects_repaired_total\\{node="${node.nodeId}"\\} (\\d+)$`, 'm').exec(text);
        assert.equal(Number(repairedHere?.[1]), reportOf(node).keysRepaired, text.slice(0, 400));
        assert.match(text, new RegExp(`^ringkv_anti_entropy_trees\\{state="built",node="${node.nodeId}"\\} 256$`, 'm'));
      }
      // The trees followed every write: each equals a tree built afresh from the store's objects.
      for (const node of nodes) {
        const report = reportOf(node);
        for (const { partition, root } of report.trees.slice(0, 64)) {
          const rebuilt = createTree(antiEntropyTreeShape);
          for await (const object of node.kv.partitionObjects(partition, 256)) updateKey(rebuilt, object.engineKey, undefined, objectVersionHash(object.object));
          assert.equal(root, rootHash(rebuilt).toString(16).padStart(16, '0'), `${node.nodeId} partition ${partition}`);
        }
      }
    });
  });

  it('anti-entropy: a delete one replica missed reaches it, then the tombstone is reaped everywhere and the value stays deleted', async () => {
    await withInProcessCluster({ antiEntropyIntervalMs: 100, tombstoneGraceMs: 0 }, async (nodes) => {
      const [a, b, c] = nodes;
      const key = Buffer.from('deleted-late');
      assert.ok((await a.cluster.store.put('ns', key, Buffer.from('v1'), { w: 3 })).ok);
      // The delete reaches a and b only; c keeps v1.
      assert.ok((await a.kv.delete('ns', key, { context: 'current' })).ok);
      const tombstone = await a.kv.readObject('ns', key);
      assert.ok(tombstone.ok && tombstone.value !== undefined);
      assert.ok((await b.kv.mergeObject('ns', key, tombstone.value)).ok);
      await eventually('the tombstone is reaped on every replica', 20_000, async () => {
        for (const node of nodes) {
          const held = await node.kv.readObject('ns', key);
          if (!held.ok || held.value !== undefined) return false;
        }
        return true;
      });
      assert.ok(nodes.some((node) => reportOf(node).reapedTombstones > 0));
      await sleep(clock, 1000); // ten more rounds: nothing brings v1 back
      const read = await c.cluster.store.get('ns', key, { r: 3 });
      assert.ok(read.ok);
      assert.equal(read.value, undefined);
      await eventually('roots agree after the reap', 10_000, async () => rootsAgree(nodes));
    });
  });

  it('anti-entropy: no tombstone is reaped while one of its replicas is down', async () => {
    await withInProcessCluster({ antiEntropyIntervalMs: 100, tombstoneGraceMs: 0 }, async (nodes) => {
      const [a, b, c] = nodes;
      const key = Buffer.from('deleted-while-down');
      assert.ok((await a.cluster.store.put('ns', key, Buffer.from('v1'), { w: 3 })).ok);
      await c.stop();
      await eventually('a sees c down', 20_000, async () => a.cluster.membership?.isUp('mem-3') === false && b.cluster.membership?.isUp('mem-3') === false);
      assert.ok((await a.cluster.store.delete('ns', key, { w: 2, context: 'current' })).ok);
      await sleep(clock, 1500);
      for (const node of [a, b]) {
        const held = await node.kv.readObject('ns', key);
        assert.ok(held.ok && held.value !== undefined, `${node.nodeId} still holds the tombstone`);
        assert.equal(reportOf(node).reapedTombstones, 0);
      }
    });
  });
});

describe('anti-entropy: a node alone', () => {
  it('anti-entropy: a node that shares no partition keeps no trees (no exchange is possible) and still reaps its old tombstones (N = 1)', async () => {
    // A round every 10 ms: reaping visits one of the 256 partitions every fifth round, so the
    // whole ring in about 13 s whenever the first visit to the key's partition came too early.
    const config = resolveConfig({ flags: { dataDir: '/d', httpPort: 1, respPort: 2, peerPort: 7800, nVal: 1, r: 1, w: 1, antiEntropyIntervalMs: 10, tombstoneGraceMs: 0 }, environment: {}, file: undefined });
    assert.ok(config.ok, config.ok ? '' : config.message);
    const network = createMemoryNetwork({ clock });
    const world = {
      clock, random: createRandom(3), fs: createMemoryFileSystem(), logger: silentLogger(), clientApis: false,
      createMessenger: (identity: { nodeId: string; host: string; port: number }) => network.messenger({ nodeId: identity.nodeId, address: { host: identity.host, port: identity.port } }),
    };
    const node = await RingkvNode.start(config.value, world, () => {});
    const keepAlive = setInterval(() => {}, 1000);
    try {
      // Reaping visits one partition per pass, in order from partition 0: a key there is reaped first.
      let suffix = 0;
      while (keyPartition('ns', Buffer.from(`deleted-alone-${suffix}`), 256) !== 0) suffix++;
      const key = Buffer.from(`deleted-alone-${suffix}`);
      for (let index = 0; index < 50; index++) assert.ok((await node.cluster.store.put('ns', Buffer.from(`kept-${index}`), Buffer.from('v'))).ok);
      assert.ok((await node.cluster.store.put('ns', key, Buffer.from('v'))).ok);
      assert.ok((await node.cluster.store.delete('ns', key, { context: 'current' })).ok);
      await eventually('the tombstone is reaped', 40_000, async () => {
        const held = await node.kv.readObject('ns', key);
        return held.ok && held.value === undefined;
      });
      const report = reportOf(node);
      assert.equal(report.trees.length, 0, 'no trees: no other replica to compare with');
      assert.equal(report.exchanges, 0);
      assert.ok(report.reapedTombstones >= 1);
      const kept = await node.cluster.store.get('ns', Buffer.from('kept-7'));
      assert.ok(kept.ok && kept.value !== undefined, 'live keys stay');
    } finally {
      clearInterval(keepAlive);
      await node.stop();
    }
  });
});

function reportOf(node: RingkvNode): AntiEntropyReport {
  const report = node.cluster.adminApi().antiEntropy();
  assert.ok(report.ok);
  return report.value as unknown as AntiEntropyReport;
}

function settled(node: RingkvNode): boolean {
  const transfers = node.cluster.handoffReport().transfers?.transfers ?? [];
  return reportOf(node).awaitingTransfer === 0 && transfers.every((transfer) => transfer.state === 'done');
}

function rootsAgree(nodes: readonly RingkvNode[]): boolean {
  const roots = new Map<number, string | null>();
  for (const node of nodes) {
    const trees = reportOf(node).trees;
    if (trees.length !== 256 || trees.some((tree) => !tree.built)) return false;
    for (const { partition, root } of trees) {
      if (!roots.has(partition)) roots.set(partition, root);
      else if (roots.get(partition) !== root) return false;
    }
  }
  return true;
}

async function eventually(what: string, timeoutMs: number, probe: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = clock.nowMs() + timeoutMs;
  while (!(await probe())) {
    assert.ok(clock.nowMs() < deadline, `${what}: not within ${timeoutMs} ms`);
    await sleep(clock, 50);
  }
}
