import { createTree, rootHash, updateKey } from '../core/merkle-tree.js';
import { replicaSet } from '../core/transfer-plan.js';
import { antiEntropyTreeShape } from '../node/anti-entropy.js';
import { objectVersionHash } from '../node/stored-object.js';
import type { Violation } from './checkers.js';
import type { SimCluster } from './sim-cluster.js';
import type { Trace } from './sim-world.js';

/** Simulated time the replicas get, after the final reads, for their Merkle roots to agree. */
const convergeMsMax = 60_000;

/**
 * After healing and the final reads: anti-entropy brings every partition's replicas to equal
 * Merkle roots within convergeMsMax, and every node's tree equals a tree built afresh from its
 * store (the trees followed every change: writes, merges, drops, reaped tombstones, restarts).
 */
export async function treesConverge(cluster: SimCluster, trace: Trace): Promise<Violation[]> {
  const scheduler = cluster.scheduler;
  const startedMs = scheduler.nowMs;
  const disagreeing = (): string[] => {
    const ring = cluster.members[0]?.ringkv?.cluster.membership?.ring;
    if (ring === undefined) return ['no ring'];
    const roots = new Map(cluster.members.map((node) => [node.nodeId, new Map((node.ringkv?.cluster.adminApi().antiEntropy() as { ok: true; value: { trees: { partition: number; root: string | null }[] } } | undefined)?.value.trees.map((tree) => [tree.partition, tree.root]) ?? [])]));
    const found: string[] = [];
    for (let partition = 0; partition < ring.partitionCount; partition++) {
      const replicas = replicaSet(ring, partition, 3);
      const seen = replicas.map((nodeId) => `${nodeId}=${roots.get(nodeId)?.get(partition) ?? 'none'}`);
      if (new Set(replicas.map((nodeId) => roots.get(nodeId)?.get(partition) ?? `none ${nodeId}`)).size !== 1) found.push(`partition ${partition}: ${seen.join(' ')}`);
    }
    return found;
  };
  await scheduler.runFor(convergeMsMax, () => disagreeing().length === 0);
  const left = disagreeing();
  if (left.length > 0) {
    return [{ checker: 'anti-entropy', message: `${left.length} partitions' replicas still disagree ${convergeMsMax / 1000} s after the final reads; ${left.slice(0, 3).join('; ')}` }];
  }
  trace.add('sim', `anti-entropy: every partition's replicas agree ${((scheduler.nowMs - startedMs) / 1000).toFixed(1)} s after the final reads`);
  const violations: Violation[] = [];
  for (const node of cluster.members) {
    const ringkv = node.ringkv;
    if (ringkv === undefined) continue;
    const report = ringkv.cluster.adminApi().antiEntropy();
    if (!report.ok) continue;
    const trees = (report.value as { trees: { partition: number; root: string | null }[] }).trees;
    const partitionCount = ringkv.cluster.membership?.ring.partitionCount ?? 0;
    const rebuild = async (): Promise<void> => {
      for (const { partition, root } of trees) {
        const tree = createTree(antiEntropyTreeShape);
        for await (const object of ringkv.kv.partitionObjects(partition, partitionCount)) updateKey(tree, object.engineKey, undefined, objectVersionHash(object.object));
        const rebuilt = rootHash(tree).toString(16).padStart(16, '0');
        if (rebuilt !== root) violations.push({ checker: 'anti-entropy', message: `${node.nodeId}'s tree of partition ${partition} has root ${root ?? 'none'}, its store gives ${rebuilt}` });
      }
    };
    const done = await scheduler.settle(rebuild(), 60_000);
    if (done === undefined) violations.push({ checker: 'assertion', message: `rebuilding ${node.nodeId}'s trees did not finish` });
    if (violations.length > 0) break;
  }
  return violations;
}
