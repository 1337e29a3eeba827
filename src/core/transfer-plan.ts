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

/** A transfer this node has for a partition when the ring changes again. */
export interface TransferUnderWay {
  readonly targets: readonly string[];
  readonly drop: boolean;
  /** Some batches are not acknowledged by every target yet (state pending or sending). */
  readonly sending: boolean;
  /** Everything sent and, for a drop, dropped. */
  readonly done: boolean;
}

/**
 * What becomes of a partition's transfer on this node when the ring changes again while it may
 * still be under way:
 * - `none`: no transfer (none planned, none left);
 * - `keep`: the transfer goes on unchanged;
 * - `retarget`: it goes on from its cursor with these targets and drop flag (every target
 *   removed is no replica any more; every one kept has had every batch so far);
 * - `restart`: a new transfer from the start (a target was added, which has had nothing yet);
 * - `finish`: this node is a replica again and owes nobody anything: the transfer ends, its copy stays.
 * A target still owed batches that remains a replica keeps getting them: a second change must not
 * leave a new replica with part of the partition (its anti-entropy waits for the transfer).
 */
export type Replan =
  | { readonly kind: 'none' }
  | { readonly kind: 'keep' }
  | { readonly kind: 'finish' }
  | { readonly kind: 'retarget'; readonly targets: readonly string[]; readonly drop: boolean }
  | { readonly kind: 'restart'; readonly targets: readonly string[]; readonly drop: boolean };

export function replanTransfer(existing: TransferUnderWay | undefined, planned: PlannedTransfer | undefined, replicas: readonly string[], self: string): Replan {
  const owed = existing === undefined || !existing.sending ? [] : existing.targets.filter((target) => target !== self && replicas.includes(target));
  if (planned !== undefined) {
    const targets = [...planned.targets, ...owed.filter((target) => !planned.targets.includes(target))];
    if (existing !== undefined && !existing.done && existing.drop === planned.drop && sameMembers(existing.targets, targets)) return { kind: 'keep' };
    return { kind: 'restart', targets, drop: planned.drop };
  }
  if (existing === undefined) return { kind: 'none' };
  if (replicas.includes(self)) {
    if (owed.length === 0) return { kind: 'finish' };
    return !existing.drop && sameMembers(owed, existing.targets) ? { kind: 'keep' } : { kind: 'retarget', targets: owed, drop: false };
  }
  // Still handing the partition off: keep the targets that are replicas now, else the first.
  const targets = existing.targets.filter((target) => replicas.includes(target));
  if (targets.length === 0) return { kind: existing.done ? 'retarget' : 'restart', targets: [replicas[0] as string], drop: true };
  return sameMembers(targets, existing.targets) ? { kind: 'keep' } : { kind: 'retarget', targets, drop: true };
}

function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((entry) => b.includes(entry));
}
