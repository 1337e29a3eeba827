import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Ring } from '../../src/core/ring-state.js';
import { keyPartition } from '../../src/core/token.js';
import { replicaSet } from '../../src/core/transfer-plan.js';
import { clusterArgs, eventually, startCluster, statusOf } from '../helpers/cluster.js';
import { runCli, startNode, type RunningNode } from '../helpers/ringkv-process.js';

interface TransferEntry {
  partition: number;
  targets: string[];
  state: string;
  sentObjects: number;
  totalObjects: number | null;
}

interface TransfersAnswer {
  nodes: { nodeId: string; transfers: { transfers: TransferEntry[] } | null; hints: { pendingHints: number } | null }[];
  unreachable: string[];
}

async function ringOf(node: RunningNode): Promise<Ring> {
  return (await (await fetch(`${node.baseUrl}/admin/ring`)).json()) as Ring;
}

async function transfersOf(node: RunningNode): Promise<TransfersAnswer> {
  const response = await fetch(`${node.baseUrl}/admin/transfers`);
  assert.equal(response.status, 200);
  return (await response.json()) as TransfersAnswer;
}

async function holds(node: RunningNode, key: string): Promise<boolean> {
  const response = await fetch(`${node.baseUrl}/admin/replica/default/${key}`);
  await response.arrayBuffer();
  assert.ok(response.status === 200 || response.status === 404, `replica read on ${node.baseUrl}: ${response.status}`);
  return response.status === 200;
}

/** Writes each key (value = key) with W=3 through the nodes in turn. */
async function writeEverywhere(nodes: readonly RunningNode[], keys: readonly string[]): Promise<void> {
  for (const [index, key] of keys.entries()) {
    const response = await fetch(`${nodes[index % nodes.length]!.baseUrl}/kv/default/${key}?w=3`, { method: 'PUT', body: key });
    assert.equal(response.status, 204, `PUT ${key}`);
  }
}

/** `key` is on exactly its replicas (N=3) on `ring`; nodes[i] is node-(i+1). */
async function assertOnReplicasOnly(nodes: readonly RunningNode[], ring: Ring, key: string): Promise<void> {
  const replicas = replicaSet(ring, keyPartition('default', Buffer.from(key), ring.partitionCount), 3);
  for (const [index, node] of nodes.entries()) {
    const replica = replicas.includes(`node-${index + 1}`);
    assert.equal(await holds(node, key), replica, `node-${index + 1} ${replica ? 'lacks' : 'still holds'} ${key}`);
  }
}

/** Every member of `nodes` on one ring of exactly `owners`, with nothing left to transfer. */
async function settled(nodes: readonly RunningNode[], owners: number): Promise<Ring> {
  return eventually(`ring of ${owners} owners agreed and every transfer done`, 60_000, async () => {
    const rings = await Promise.all(nodes.map(ringOf));
    if (new Set(rings.map((ring) => ring.epoch)).size !== 1 || new Set(rings[0]!.owners).size !== owners) return undefined;
    const report = await transfersOf(nodes[0]!);
    if (report.unreachable.length > 0) return undefined;
    const open = report.nodes.flatMap((node) => node.transfers?.transfers.filter((transfer) => transfer.state !== 'done') ?? []);
    return open.length === 0 ? rings[0] : undefined;
  });
}

/** Writes unique keys through `nodes` in turn until `stop`; returns the acknowledged ones. */
function writeLoad(nodes: () => readonly RunningNode[], prefix: string, stop: () => boolean): Promise<string[]> {
  return (async () => {
    const acknowledged: string[] = [];
    for (let index = 0; index < 3000 && !stop(); index++) {
      const key = `${prefix}-${index}`;
      const list = nodes();
      const node = list[index % list.length]!;
      try {
        const response = await fetch(`${node.baseUrl}/kv/default/${key}?w=2`, { method: 'PUT', body: key });
        if (response.status === 204) acknowledged.push(key);
        else await response.arrayBuffer();
      } catch {
        // not acknowledged: may or may not be there
      }
    }
    return acknowledged;
  })();
}

describe('cluster: ownership handoff on join and leave', () => {
  it('transfers: a 4th node joining under load receives exactly the partitions it gained; a node leaving under load hands everything off and exits 0; nothing acknowledged is lost', async () => {
    const nodes = await startCluster(3);
    try {
      const keys = Array.from({ length: 600 }, (_, index) => `seed-${index}`);
      await writeEverywhere(nodes, keys);

      // Join under load.
      let loading = true;
      const duringJoin = writeLoad(() => nodes.slice(0, 3), 'join', () => !loading);
      nodes.push(await startNode({ args: ['--node-id', 'node-4', '--join', `127.0.0.1:${nodes[0]!.peerPort}`, ...clusterArgs] }));
      const grown = await settled(nodes, 4);
      loading = false;
      const acknowledgedDuringJoin = await duringJoin;
      const report = await transfersOf(nodes[0]!);
      const sent = report.nodes.flatMap((node) => node.transfers?.transfers ?? []);
      assert.ok(sent.length > 0, 'partitions moved');
      assert.ok(sent.every((transfer) => transfer.targets.every((target) => target === 'node-4')), 'every partition went to the new node');
      const gained = keys.filter((key) => replicaSet(grown, keyPartition('default', Buffer.from(key), grown.partitionCount), 3).includes('node-4'));
      const movedObjects = sent.reduce((sum, transfer) => sum + transfer.sentObjects, 0);
      const cli = await runCli(['transfers', '--http', `127.0.0.1:${nodes[3]!.httpPort}`]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, new RegExp(`^0 transfers under way, ${sent.length} done in the last 10 minutes; 0 hints waiting$`, 'm'));
      console.log(`join: ${movedObjects} objects moved for ${gained.length} of ${keys.length} seed keys gained by node-4 (plus ${acknowledgedDuringJoin.length} written during the join)`);
      for (const key of keys) await assertOnReplicasOnly(nodes, grown, key);

      // Leave under load: node-2 hands off and exits by itself.
      loading = true;
      const duringLeave = writeLoad(() => [nodes[0]!, nodes[2]!, nodes[3]!], 'leave', () => !loading);
      const leaver = nodes[1]!;
      const exited = new Promise<number | null>((resolve) => leaver.child.once('exit', (code) => resolve(code)));
      assert.equal((await fetch(`${leaver.baseUrl}/admin/leave`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status, 200);
      assert.equal(await Promise.race([exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 60_000))]), 0, 'the leaving node exits 0 once it handed everything off');
      const remaining = [nodes[0]!, nodes[2]!, nodes[3]!];
      await eventually('node-2 removed on the others', 30_000, async () => {
        const views = await Promise.all(remaining.map(statusOf));
        return views.every((view) => view.members.find((member) => member.nodeId === 'node-2')?.state === 'removed') ? true : undefined;
      });
      const shrunk = await settled(remaining, 3);
      loading = false;
      const acknowledgedDuringLeave = await duringLeave;
      assert.ok(!shrunk.owners.includes('node-2'));
      // Keys written with W=3 before the changes are on every replica. Writes acknowledged with
      // W=2 under load may have missed one replica (anti-entropy's business): they must be
      // readable through every node with R=2, which any two of the three replicas answer.
      for (const key of keys) {
        for (const node of remaining) assert.ok(await holds(node, key), `${node.baseUrl} lacks ${key} after node-2 left`);
      }
      for (const key of [...acknowledgedDuringJoin, ...acknowledgedDuringLeave]) {
        for (const node of remaining) {
          const response = await fetch(`${node.baseUrl}/kv/default/${key}?r=2`);
          assert.equal(await response.text(), key, `acknowledged ${key} readable through ${node.baseUrl} after the leave`);
        }
      }
      nodes.splice(1, 1);
    } finally {
      await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    }
  });

  it('transfers: a node restarted with --weight 2 claims a larger share; its new partitions stream to it, the old owners drop theirs, every key stays readable', async () => {
    // Claim keeps N consecutive partitions on distinct nodes, so a node can own at most 1/N of
    // the ring: with 5 nodes and N=3, weight 2 asks for 2/6, which fits.
    const nodes = await startCluster(5);
    try {
      const keys = Array.from({ length: 300 }, (_, index) => `weighed-${index}`);
      await writeEverywhere(nodes, keys);
      const before = await ringOf(nodes[0]!);
      const shareBefore = before.owners.filter((owner) => owner === 'node-5').length;
      const dataDir = nodes[4]!.dataDir;
      await nodes[4]!.stop('SIGTERM');
      nodes[4] = await startNode({ dataDir, args: ['--node-id', 'node-5', '--weight', '2', ...clusterArgs] });
      await eventually('a ring giving node-5 its weighted share', 30_000, async () => {
        const ring = await ringOf(nodes[0]!);
        return ring.owners.filter((owner) => owner === 'node-5').length > shareBefore * 1.4 ? true : undefined;
      });
      const after = await settled(nodes, 5);
      const share = after.owners.filter((owner) => owner === 'node-5').length;
      console.log(`weight 1 -> 2: node-5 owned ${shareBefore} of ${before.partitionCount} partitions, now ${share} (2/6 of the ring: ${Math.round(before.partitionCount / 3)})`);
      for (const key of keys) {
        await assertOnReplicasOnly(nodes, after, key);
        const response = await fetch(`${nodes[0]!.baseUrl}/kv/default/${key}?r=3`);
        assert.equal(await response.text(), key);
      }
    } finally {
      await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    }
  });
});
