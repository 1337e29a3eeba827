import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { claim } from './claim.js';
import { singleNodeRing, type Ring } from './ring-state.js';
import { planPartition, planTransfers, replanTransfer, replicaSet, type TransferUnderWay } from './transfer-plan.js';

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

  it('transfer plan: a second ring change while transfers are under way leaves no replica owed part of a partition (property)', () => {
    const ringTriple = fc.tuple(ringPair, fc.array(fc.constantFrom(...nodes), { minLength: 16, maxLength: 16 })).map(([pair, third]) => ({ ...pair, next: ringOf(third, 3) }));
    fc.assert(
      fc.property(ringTriple, ({ previous, current, next, n }) => {
        for (let partition = 0; partition < 16; partition++) {
          const replicasNext = replicaSet(next, partition, n);
          // Every node's transfer of the first change, none finished; then the second change.
          const first = new Map(nodes.map((nodeId) => [nodeId, planTransfers(previous, current, nodeId, n).find((entry) => entry.partition === partition)]));
          const after = new Map<string, { targets: readonly string[]; drop: boolean }>();
          for (const nodeId of nodes) {
            const planned = first.get(nodeId);
            const underWay: TransferUnderWay | undefined = planned === undefined ? undefined : { targets: planned.targets, drop: planned.drop, sending: true, done: false };
            const second = planTransfers(current, next, nodeId, n).find((entry) => entry.partition === partition);
            const replan = replanTransfer(underWay, second, replicasNext, nodeId);
            if (replan.kind === 'keep') after.set(nodeId, underWay!);
            else if (replan.kind === 'retarget' || replan.kind === 'restart') after.set(nodeId, replan);
            else if (replan.kind === 'finish') assert.ok(underWay !== undefined, 'finish only ends a transfer that exists');
          }
          const fed = new Set([...after.values()].flatMap((transfer) => transfer.targets));
          for (const transfer of after.values()) for (const target of transfer.targets) assert.ok(replicasNext.includes(target), `target ${target} is a replica after the second change`);
          for (const [nodeId, planned] of first) {
            for (const target of planned?.targets ?? []) {
              if (replicasNext.includes(target) && target !== nodeId) assert.ok(fed.has(target), `${target}, owed partition ${partition} by ${nodeId} and still a replica, is still fed`);
            }
          }
          const newcomers = replicasNext.filter((nodeId) => !replicaSet(current, partition, n).includes(nodeId));
          for (const nodeId of newcomers) assert.ok(fed.has(nodeId), `new replica ${nodeId} of partition ${partition} is fed`);
        }
      }),
    );
  });

  it('transfer plan: a transfer to a new replica survives a later join that keeps it a replica (the case that left anti-entropy waiting)', () => {
    const underWay: TransferUnderWay = { targets: ['d'], drop: false, sending: true, done: false };
    assert.deepEqual(replanTransfer(underWay, undefined, ['a', 'd', 'e'], 'a'), { kind: 'keep' });
    assert.deepEqual(replanTransfer(underWay, undefined, ['a', 'b', 'e'], 'a'), { kind: 'finish' });
    assert.deepEqual(replanTransfer({ ...underWay, sending: false, done: true }, undefined, ['a', 'd', 'e'], 'a'), { kind: 'finish' });
    assert.deepEqual(replanTransfer(underWay, { partition: 0, targets: ['e'], drop: true }, ['d', 'e', 'f'], 'a'), { kind: 'restart', targets: ['e', 'd'], drop: true });
    assert.deepEqual(replanTransfer({ targets: ['d', 'e'], drop: true, sending: true, done: false }, undefined, ['b', 'd', 'f'], 'a'), { kind: 'retarget', targets: ['d'], drop: true });
  });
});
