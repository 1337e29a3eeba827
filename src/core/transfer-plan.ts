import { assert } from './assert.js';
import { preferenceList } from './preference-list.js';
import type { Ring } from './ring-state.js';

/**
 * Ownership handoff planning (riak_core's ownership transfers, for replica sets): when the ring
 * changes from `previous` to `current`, which partitions must this node send where.
 *
 * A partition's replica set is the first n distinct owners walking clockwise from it (the
 * primaries of its preference list). For each partition, comparing the two rings:
 *
 * - `lost`: nodes that held it and no longer do; `gained`: nodes that must now hold it;
 *   `staying`: nodes in both.
 * - The j-th gained node gets the data from the j-th lost node (both in replica-set order); gained
 *   nodes beyond the lost ones get it from the first staying node. So each new replica receives
 *   one copy — on a join the new node receives exactly its share, nothing else moves unless the
 *   claim moved it.
 * - A lost node always sends its copy before dropping it (to its paired gained node, or, with
 *   none left to pair, to a gained node or the first current replica), so a replica that held a
 *   write the others missed does not take it away with it.
 *
 * Pure and deterministic: every node computes its own part from the two rings.
 */
export interface PlannedTransfer {
  readonly partition: number;
  /** Nodes to send this node's copy of the partition to. */
  readonly targets: readonly string[];
  /** This node is no longer a replica of the partition: drop its copy once the targets have it. */
  readonly drop: boolean;
}

/** The nodes that keep a partition's keys: its first n distinct owners. */
export function replicaSet(ring: Ring, partition: number, n: number): string[] {
  return preferenceList(ring, partition, n, () => true).map((entry) => entry.nodeId);
}

/** This node's transfers for the change from `previous` to `current`, in partition order. */
export function planTransfers(previous: Ring, current: Ring, self: string, n: number): PlannedTransfer[] {
  assert(previous.partitionCount === current.partitionCount, 'rings of one cluster have one partition count');
  const planned: PlannedTransfer[] = [];
  for (let partition = 0; partition < current.partitionCount; partition++) {
    const transfer = planPartition(replicaSet(previous, partition, n), replicaSet(current, partition, n), self, partition);
    if (transfer !== undefined) planned.push(transfer);
  }
  return planned;
}

/** Who sends to whom for one partition, from this node's side. */
export function planPartition(before: readonly string[], after: readonly string[], self: string, partition = 0): PlannedTransfer | undefined {
  assert(after.length > 0, 'a partition always has a replica');
  const lost = before.filter((nodeId) => !after.includes(nodeId));
  const gained = after.filter((nodeId) => !before.includes(nodeId));
  const staying = before.filter((nodeId) => after.includes(nodeId));
  const targets = gained.filter((_, index) => sourceOf(index, lost, staying) === self);
  const lostIndex = lost.indexOf(self);
  if (lostIndex >= 0) {
    if (targets.length === 0) targets.push(gained.length > 0 ? (gained[lostIndex % gained.length] as string) : (after[0] as string));
    return { partition, targets, drop: true };
  }
  return targets.length === 0 ? undefined : { partition, targets, drop: false };
}

/** The node that sends the partition to the `index`-th gained node. */
function sourceOf(index: number, lost: readonly string[], staying: readonly string[]): string | undefined {
  if (index < lost.length) return lost[index];
  return staying[0] ?? lost[index % Math.max(1, lost.length)];
}
