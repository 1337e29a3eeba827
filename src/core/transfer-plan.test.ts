import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { claim } from './claim.js';
import { singleNodeRing, type Ring } from './ring-state.js';
import { planPartition, planTransfers, replicaSet } from './transfer-plan.js';

const nodes = ['a', 'b', 'c', 'd', 'e', 'f'];

function ringOf(owners: readonly string[], epoch: number): Ring {
  return { partitionCount: owners.length, owners, epoch, claimant: 'a' };
}

const ringPair = fc
  .tuple(fc.array(fc.constantFrom(...nodes), { minLength: 16, maxLength: 16 }), fc.array(fc.constantFrom(...nodes), { minLength: 16, maxLength: 16 }), fc.integer({ min: 1, max: 4 }))
  .map(([before, after, n]) => ({ previous: ringOf(before, 1), current: ringOf(after, 2), n }));

describe('transfer plan', () => {
  it('transfer plan: every new replica of a partition gets a copy from an old one; every node that loses it sends it on and drops it; nobody else drops (property)', () => {
    fc.assert(
      fc.property(ringPair, ({ previous, current, n }) => {
        const plans = new Map(nodes.map((nodeId) => [nodeId, planTransfers(previous, current, nodeId, n)]));
        for (let partition = 0; partition < 16; partition++) {
          const before = replicaSet(previous, partition, n);
          const after = replicaSet(current, partition, n);
          const received = new Map<string, string[]>();
          for (const [nodeId, plan] of plans) {
            const transfer = plan.find((entry) => entry.partition === partition);
            if (transfer === undefined) continue;
            assert.ok(before.includes(nodeId), `${nodeId} sends partition ${partition}, which it never held`);
            assert.equal(transfer.drop, !after.includes(nodeId), `${nodeId} drops partition ${partition} exactly when it is no longer a replica`);
            for (const target of transfer.targets) {
              assert.ok(after.includes(target), `target ${target} is a current replica`);
              received.set(target, [...(received.get(target) ?? []), nodeId]);
            }
          }
          for (const nodeId of after.filter((candidate) => !before.includes(candidate))) {
            assert.ok((received.get(nodeId)?.length ?? 0) >= 1, `new replica ${nodeId} of partition ${partition} gets a copy`);
          }
          for (const nodeId of before.filter((candidate) => !after.includes(candidate))) {
            assert.ok(plans.get(nodeId)?.some((entry) => entry.partition === partition && entry.drop), `${nodeId} hands partition ${partition} off`);
          }
        }
      }),
    );
  });

  it('transfer plan: pairs lost with gained nodes in order; extra gained nodes are fed by the first staying node', () => {
    assert.deepEqual(planPartition(['a', 'b', 'c'], ['a', 'b', 'd'], 'c'), { partition: 0, targets: ['d'], drop: true });
    assert.equal(planPartition(['a', 'b', 'c'], ['a', 'b', 'd'], 'a'), undefined);
    assert.deepEqual(planPartition(['a', 'b'], ['a', 'b', 'c'], 'a'), { partition: 0, targets: ['c'], drop: false });
    assert.equal(planPartition(['a', 'b'], ['a', 'b', 'c'], 'b'), undefined);
    assert.deepEqual(planPartition(['a', 'b', 'c'], ['a', 'b'], 'c'), { partition: 0, targets: ['a'], drop: true });
  });

  it('transfer plan: a join moves each partition the new node gains once, from one node, and nothing else (Q=64, 4 -> 5 nodes, N=3)', () => {
    let ring = singleNodeRing('a', 64);
    const members = ['a', 'b', 'c', 'd'].map((nodeId) => ({ nodeId, weight: 1, datacenter: 'dc1' }));
    ring = claim({ ring, members, nVal: 3, claimant: 'a' }).ring;
    const grown = claim({ ring, members: [...members, { nodeId: 'e', weight: 1, datacenter: 'dc1' }], nVal: 3, claimant: 'a' }).ring;
    const sent = ['a', 'b', 'c', 'd', 'e'].flatMap((nodeId) => planTransfers(ring, grown, nodeId, 3).flatMap((transfer) => transfer.targets.map((target) => ({ from: nodeId, target, partition: transfer.partition }))));
    const gainedByE = Array.from({ length: 64 }, (_, partition) => partition).filter((partition) => replicaSet(grown, partition, 3).includes('e'));
    const toOthers = sent.filter((entry) => entry.target !== 'e');
    assert.deepEqual(sent.filter((entry) => entry.target === 'e').map((entry) => entry.partition).sort((x, y) => x - y), gainedByE);
    assert.ok(toOthers.length <= 0.1 * sent.length, `${toOthers.length} of ${sent.length} copies go to nodes other than the new one`);
  });
});
