// Properties of preference lists (preference-list.ts) against a naive oracle that lists the
// ring's owners in clockwise order from the key's partition, removes duplicates, and splits the
// result into the first n (primaries) and the rest (fallback candidates, in order).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { preferenceList, preferenceListPerDatacenter } from './preference-list.js';
import type { Ring } from './ring-state.js';

function clockwiseDistinct(ring: Ring, partition: number): { nodeId: string; partition: number }[] {
  const order = ring.owners.map((_, step) => (partition + step) % ring.partitionCount);
  return order.filter((p, index) => order.findIndex((q) => ring.owners[q] === ring.owners[p]) === index).map((p) => ({ nodeId: ring.owners[p] as string, partition: p }));
}

const arbitraryCase = fc.record({
  partitionCount: fc.constantFrom(8, 16, 32, 64),
  owners: fc.array(fc.nat(9), { minLength: 64, maxLength: 64 }),
  partition: fc.nat(63),
  n: fc.integer({ min: 1, max: 6 }),
  down: fc.uniqueArray(fc.nat(9), { maxLength: 10 }),
});

function caseRing(owners: readonly number[], partitionCount: number): Ring {
  return { partitionCount, owners: owners.slice(0, partitionCount).map((id) => `n${id}`), epoch: 1, claimant: 'n0' };
}

test('preference list: primaries are the first N distinct owners clockwise, fallbacks the next up ones (Q 8..64, N 1..6)', () => {
  fc.assert(
    fc.property(arbitraryCase, ({ partitionCount, owners, partition: rawPartition, n, down }) => {
      const ring = caseRing(owners, partitionCount);
      const partition = rawPartition % partitionCount;
      const downIds = new Set(down.map((id) => `n${id}`));
      const isUp = (nodeId: string) => !downIds.has(nodeId);
      const list = preferenceList(ring, partition, n, isUp);
      const distinct = clockwiseDistinct(ring, partition);
      const primaries = distinct.slice(0, n);
      const candidates = distinct.slice(n).filter((entry) => isUp(entry.nodeId));
      const downPrimaries = primaries.filter((entry) => !isUp(entry.nodeId));
      const upOwners = distinct.filter((entry) => isUp(entry.nodeId)).length;

      assert.equal(new Set(list.map((entry) => entry.nodeId)).size, list.length, 'distinct nodes');
      assert.ok(list.every((entry) => isUp(entry.nodeId)), 'every listed node is up');
      assert.equal(list.length, Math.min(n, upOwners), 'length is min(N, up nodes)');
      const listedPrimaries = list.filter((entry) => entry.role === 'primary');
      assert.deepEqual(listedPrimaries.map(({ nodeId, partition: p }) => ({ nodeId, partition: p })), primaries.filter((entry) => isUp(entry.nodeId)));
      const fallbacks = list.filter((entry) => entry.role === 'fallback');
      assert.equal(fallbacks.length, Math.min(downPrimaries.length, candidates.length), 'one fallback per down primary while up nodes remain');
      fallbacks.forEach((entry, index) => {
        assert.equal(entry.nodeId, candidates[index]?.nodeId, 'fallbacks in ring order');
        assert.equal(entry.standsInFor, downPrimaries[index]?.nodeId);
        assert.equal(entry.partition, downPrimaries[index]?.partition, 'a fallback stands for its primary\'s partition');
      });
      if (downIds.size === 0) assert.equal(fallbacks.length, 0, 'all up: no fallbacks');
    }),
    { numRuns: 3000 },
  );
});

test('preference list: a fallback takes the down primary\'s place in the list (example, N 3)', () => {
  const ring: Ring = { partitionCount: 8, owners: ['a', 'b', 'c', 'd', 'a', 'b', 'c', 'd'], epoch: 1, claimant: 'a' };
  assert.deepEqual(preferenceList(ring, 7, 3, (node) => node !== 'a'), [
    { nodeId: 'd', partition: 7, role: 'primary' },
    { nodeId: 'c', partition: 0, role: 'fallback', standsInFor: 'a' },
    { nodeId: 'b', partition: 1, role: 'primary' },
  ]);
});

test('preference list per datacenter: N per datacenter distinct owners, fallbacks from the same datacenter (Q 8..64)', () => {
  fc.assert(
    fc.property(arbitraryCase, fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 }), ({ partitionCount, owners, partition: rawPartition, down }, east, west) => {
      const ring = caseRing(owners, partitionCount);
      const partition = rawPartition % partitionCount;
      const datacenterOf = (nodeId: string) => (Number(nodeId.slice(1)) % 2 === 0 ? 'east' : 'west');
      const downIds = new Set(down.map((id) => `n${id}`));
      const isUp = (nodeId: string) => !downIds.has(nodeId);
      const list = preferenceListPerDatacenter(ring, partition, { east, west }, datacenterOf, isUp);
      assert.equal(new Set(list.map((entry) => entry.nodeId)).size, list.length, 'distinct nodes');
      for (const [datacenter, n] of [['east', east], ['west', west]] as const) {
        const inDatacenter = clockwiseDistinct(ring, partition).filter((entry) => datacenterOf(entry.nodeId) === datacenter);
        const mine = list.filter((entry) => datacenterOf(entry.nodeId) === datacenter);
        const upCount = inDatacenter.filter((entry) => isUp(entry.nodeId)).length;
        assert.equal(mine.length, Math.min(n, upCount), `${datacenter}: min(N, up nodes)`);
        const primaries = inDatacenter.slice(0, n);
        assert.deepEqual(mine.filter((entry) => entry.role === 'primary').map((entry) => entry.nodeId), primaries.filter((entry) => isUp(entry.nodeId)).map((entry) => entry.nodeId));
        for (const entry of mine) if (entry.role === 'fallback') assert.equal(datacenterOf(entry.standsInFor as string), datacenter);
      }
    }),
    { numRuns: 2000 },
  );
});
