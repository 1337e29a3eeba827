import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { preferenceList } from '../../src/core/preference-list.js';
import type { Ring } from '../../src/core/ring-state.js';
import { keyPartition } from '../../src/core/token.js';
import { clusterArgs, eventually, startCluster, statusOf } from '../helpers/cluster.js';
import { startNode, type RunningNode } from '../helpers/ringkv-process.js';

async function ringOf(node: RunningNode): Promise<Ring> {
  return (await (await fetch(`${node.baseUrl}/admin/ring`)).json()) as Ring;
}

/** The primary replicas (N=3) of a key of the default namespace on `ring`. */
function primariesOf(ring: Ring, key: string): string[] {
  const partition = keyPartition('default', Buffer.from(key), ring.partitionCount);
  return preferenceList(ring, partition, 3, () => true).map((entry) => entry.nodeId);
}

async function pendingHints(nodes: readonly RunningNode[]): Promise<number> {
  const statuses = await Promise.all(nodes.map(statusOf));
  return statuses.reduce((sum, status) => sum + (status.handoff?.pendingHints ?? 0), 0);
}

async function replicaHolds(node: RunningNode, key: string): Promise<string | undefined> {
  const response = await fetch(`${node.baseUrl}/admin/replica/default/${key}`);
  if (response.status === 404) return undefined;
  assert.equal(response.status, 200);
  const body = (await response.json()) as { siblings: { value?: string }[] };
  return body.siblings.map((sibling) => sibling.value ?? '<deleted>').join(',');
}

describe('cluster: sloppy quorum and hinted handoff', () => {
  it('handoff: with a primary killed, W=3 writes succeed through fallbacks; the hints survive a fallback restart and reach the primary when it returns; fallbacks then drop their copies', async () => {
    const nodes = await startCluster(4);
    try {
      const ring = await ringOf(nodes[0]!);
      const victim = nodes[3]!;
      await victim.stop('SIGKILL');
      await eventually('node-4 marked down by the others', 15_000, async () => {
        const views = await Promise.all(nodes.slice(0, 3).map(statusOf));
        return views.every((view) => view.members.find((member) => member.nodeId === 'node-4')?.state === 'down') ? true : undefined;
      });

      // W=3 of N=3: a key with node-4 among its primaries is only writable with a fallback.
      const keys = Array.from({ length: 200 }, (_, index) => `hinted-${index}`);
      const hinted = keys.filter((key) => primariesOf(ring, key).includes('node-4'));
      assert.ok(hinted.length > 50, `${hinted.length} of 200 keys have node-4 as a primary`);
      for (const [index, key] of keys.entries()) {
        const response = await fetch(`${nodes[index % 3]!.baseUrl}/kv/default/${key}?w=3`, { method: 'PUT', body: `value-${index}` });
        assert.equal(response.status, 204, `PUT ${key}: ${await response.text()}`);
      }
      assert.equal(await pendingHints(nodes.slice(0, 3)), hinted.length, 'one hint per write whose primary was down');

      // Callers who want no sloppiness say so: PW=3 / PR=3 fail with a clear error.
      const strictWrite = await fetch(`${nodes[0]!.baseUrl}/kv/default/${hinted[0]}?w=3&pw=3`, { method: 'PUT', body: 'strict' });
      assert.equal(strictWrite.status, 503);
      assert.match(((await strictWrite.json()) as { error: { message: string } }).error.message, /write quorum not met: only 2 of n=3 primary replicas are up, pw=3 needed/);
      const strictRead = await fetch(`${nodes[1]!.baseUrl}/kv/default/${hinted[0]}?pr=3`);
      assert.equal(strictRead.status, 503);
      assert.match(((await strictRead.json()) as { error: { message: string } }).error.message, /read quorum not met: only 2 of n=3 primary replicas are up, pr=3 needed/);
      const sloppyRead = await fetch(`${nodes[1]!.baseUrl}/kv/default/${hinted[0]}?r=3`);
      assert.equal(sloppyRead.status, 200);

      // Hints are durable: a fallback killed and restarted still has its hints.
      const holder = (await Promise.all(nodes.slice(0, 3).map(statusOf))).findIndex((status) => (status.handoff?.pendingHints ?? 0) > 0);
      const before = (await statusOf(nodes[holder]!)).handoff!.pendingHints;
      const holderDir = nodes[holder]!.dataDir;
      await nodes[holder]!.stop('SIGKILL');
      nodes[holder] = await startNode({ dataDir: holderDir, args: ['--node-id', `node-${holder + 1}`, ...clusterArgs] });
      assert.equal((await statusOf(nodes[holder]!)).handoff!.pendingHints, before, 'hints kept across a kill -9');

      nodes[3] = await startNode({ dataDir: victim.dataDir, args: ['--node-id', 'node-4', ...clusterArgs] });
      await eventually('every hint delivered', 30_000, async () => ((await pendingHints(nodes)) === 0 ? true : undefined));
      const delivered = (await Promise.all(nodes.map(statusOf))).reduce((sum, status) => sum + (status.handoff?.deliveredHints ?? 0), 0);
      assert.ok(delivered >= hinted.length - before, `${delivered} hints delivered`);

      // node-4 now holds every key it is a primary of, and no node keeps a key it is not a primary of.
      for (const key of hinted) assert.equal(await replicaHolds(nodes[3]!, key), `value-${keys.indexOf(key)}`, `node-4 holds ${key}`);
      for (const key of keys) {
        const primaries = primariesOf(ring, key);
        for (const [index, node] of nodes.entries()) {
          if (primaries.includes(`node-${index + 1}`)) continue;
          assert.equal(await replicaHolds(node, key), undefined, `node-${index + 1} still holds ${key}, a key it is not a primary of`);
        }
      }
    } finally {
      await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    }
  });
});
