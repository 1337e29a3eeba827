import { assert } from './assert.js';

/**
 * The ring as a value (riak_core's chstate, reduced): which node owns each of Q equal partitions
 * (Dynamo's partitioning strategy 3). Only the claimant — the lowest live node id — computes a
 * new ring (src/core/claim.ts) and gives it the next epoch; gossip carries rings, and every node
 * keeps the result of `reconcileRing`, so all nodes converge on one ring.
 */
export interface Ring {
  /** Q: a power of two from 8 to 4096, fixed when the cluster is created. */
  readonly partitionCount: number;
  /** owners[p] is the node id owning partition p. */
  readonly owners: readonly string[];
  /** Incremented by the claimant on every change. */
  readonly epoch: number;
  /** The node that computed this ring (empty for the initial one). */
  readonly claimant: string;
}

export const partitionCountMin = 8;
export const partitionCountMax = 4096;
export const partitionCountDefault = 256;

export function isValidPartitionCount(count: number): boolean {
  return Number.isInteger(count) && count >= partitionCountMin && count <= partitionCountMax && (count & (count - 1)) === 0;
}

/** A ring of one node owning every partition: what a new cluster starts from. */
export function singleNodeRing(nodeId: string, partitionCount = partitionCountDefault): Ring {
  assert(isValidPartitionCount(partitionCount), () => `partition count must be a power of two in [${partitionCountMin}, ${partitionCountMax}]`);
  assert(nodeId.length > 0, 'node id must not be empty');
  return { partitionCount, owners: new Array<string>(partitionCount).fill(nodeId), epoch: 0, claimant: '' };
}

/**
 * Of two rings, the one every node keeps: the higher epoch; at equal epochs (two claimants
 * during a partition) the one with the greater claimant, then the greater owner list — a total
 * order, so the choice is commutative, associative and idempotent, and gossip in any order
 * converges. The losing claimant's change is recomputed from the membership it still sees.
 */
export function reconcileRing(mine: Ring, theirs: Ring): Ring {
  assert(mine.partitionCount === theirs.partitionCount, 'rings of different partition counts cannot be reconciled');
  return compareRings(mine, theirs) >= 0 ? mine : theirs;
}

/** A total order on rings of one cluster (see reconcileRing). */
export function compareRings(a: Ring, b: Ring): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  if (a.claimant !== b.claimant) return a.claimant < b.claimant ? -1 : 1;
  for (let partition = 0; partition < a.owners.length; partition++) {
    const ownerA = a.owners[partition] as string;
    const ownerB = b.owners[partition] as string;
    if (ownerA !== ownerB) return ownerA < ownerB ? -1 : 1;
  }
  return 0;
}

/** Checks the ring's invariants; throws an AssertionError naming the broken one. */
export function ringInvariants(ring: Ring): void {
  assert(isValidPartitionCount(ring.partitionCount), 'partition count is not a power of two in range');
  assert(ring.owners.length === ring.partitionCount, 'one owner per partition');
  assert(ring.owners.every((owner) => owner.length > 0), 'every partition has an owner');
  assert(Number.isSafeInteger(ring.epoch) && ring.epoch >= 0, 'epoch is a natural number');
}
