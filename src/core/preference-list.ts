import { assert } from './assert.js';
import { ringInvariants, type Ring } from './ring-state.js';

/**
 * Preference lists (Dynamo §4.3 and §4.6, riak_core_apl): who stores a partition's keys.
 *
 * The primaries are the owners of the first N partitions, walking clockwise from the key's
 * partition, that belong to distinct nodes (a partition whose owner is already listed is
 * skipped, so a ring with fewer than N nodes gives fewer primaries rather than repeats). A
 * primary that is down is replaced by the next up node further clockwise that is not in the
 * list yet — a sloppy-quorum fallback, which keeps the write as a hint for the primary it
 * stands in for and hands it back when that primary returns (hinted handoff, Dynamo §4.6).
 */

export interface PreferenceEntry {
  readonly nodeId: string;
  /** The partition this replica stands for: the primary's own partition, also for a fallback. */
  readonly partition: number;
  readonly role: 'primary' | 'fallback';
  /** For a fallback: the down primary whose data it holds as hints. */
  readonly standsInFor?: string;
}

export type IsUp = (nodeId: string) => boolean;

/**
 * The preference list of `partition`, in ring order of the primaries, each down primary
 * replaced in place by its fallback. Length: min(n, up nodes of the ring) — a down primary
 * without an up node left to stand in for it is simply missing.
 */
export function preferenceList(ring: Ring, partition: number, n: number, isUp: IsUp): PreferenceEntry[] {
  checkArguments(ring, partition);
  assert(Number.isInteger(n) && n >= 1, 'n must be a positive integer');
  const primaries = distinctOwners(ring, partition, () => true, n);
  return withFallbacks(ring, partition, primaries, () => () => true, isUp);
}

/**
 * The datacenter-aware variant (Cassandra's NetworkTopologyStrategy, Riak MDC's per-cluster
 * n_val): per datacenter d, the first nPerDatacenter[d] distinct owners in d walking clockwise
 * are its primaries, and a down primary is replaced by the next up node of the same datacenter,
 * so each datacenter keeps its own replica count through failures. Datacenters not named in
 * nPerDatacenter get no replicas. Entries come in ring order of the primaries.
 */
export function preferenceListPerDatacenter(
  ring: Ring,
  partition: number,
  nPerDatacenter: Readonly<Record<string, number>>,
  datacenterOf: (nodeId: string) => string,
  isUp: IsUp,
): PreferenceEntry[] {
  checkArguments(ring, partition);
  const quota = new Map<string, number>();
  for (const [datacenter, count] of Object.entries(nPerDatacenter)) {
    assert(Number.isInteger(count) && count >= 0, () => `replica count of datacenter ${datacenter} must be a natural number`);
    quota.set(datacenter, count);
  }
  const taken = new Map<string, number>();
  const wanted = (nodeId: string): boolean => {
    const datacenter = datacenterOf(nodeId);
    const used = taken.get(datacenter) ?? 0;
    if (used >= (quota.get(datacenter) ?? 0)) return false;
    taken.set(datacenter, used + 1);
    return true;
  };
  const total = [...quota.values()].reduce((sum, count) => sum + count, 0);
  const primaries = distinctOwners(ring, partition, wanted, total);
  const sameDatacenter = (primary: string) => (candidate: string) => datacenterOf(candidate) === datacenterOf(primary);
  return withFallbacks(ring, partition, primaries, sameDatacenter, isUp);
}

function checkArguments(ring: Ring, partition: number): void {
  ringInvariants(ring);
  assert(Number.isInteger(partition) && partition >= 0 && partition < ring.partitionCount, () => `partition ${partition} out of range`);
}

interface Primary {
  readonly nodeId: string;
  readonly partition: number;
}

/**
 * Walks the ring once clockwise from `start`, collecting up to `countMax` distinct owners that
 * `accept` takes (accept is called once per new owner, in walk order). Bounded by Q steps.
 */
function distinctOwners(ring: Ring, start: number, accept: (nodeId: string) => boolean, countMax: number): Primary[] {
  const seen = new Set<string>();
  const found: Primary[] = [];
  for (let step = 0; step < ring.partitionCount && found.length < countMax; step++) {
    const partition = (start + step) % ring.partitionCount;
    const nodeId = ring.owners[partition] as string;
    if (seen.has(nodeId)) continue;
    seen.add(nodeId);
    if (accept(nodeId)) found.push({ nodeId, partition });
  }
  return found;
}

/**
 * Keeps up primaries in place and replaces each down one, in list order, by the first up node
 * walking clockwise from the key's partition that is neither a primary nor already a fallback
 * and that `eligible(primary)` accepts. (Every owner met before the last primary's partition is
 * a primary, so this is the walk "further clockwise" of Dynamo §4.6.)
 */
function withFallbacks(ring: Ring, start: number, primaries: readonly Primary[], eligible: (primary: string) => (candidate: string) => boolean, isUp: IsUp): PreferenceEntry[] {
  const used = new Set(primaries.map((primary) => primary.nodeId));
  const list: PreferenceEntry[] = [];
  for (const primary of primaries) {
    if (isUp(primary.nodeId)) {
      list.push({ nodeId: primary.nodeId, partition: primary.partition, role: 'primary' });
      continue;
    }
    const accepts = eligible(primary.nodeId);
    const fallback = distinctOwners(ring, start, (nodeId) => !used.has(nodeId) && accepts(nodeId) && isUp(nodeId), 1)[0];
    if (fallback === undefined) continue;
    used.add(fallback.nodeId);
    list.push({ nodeId: fallback.nodeId, partition: primary.partition, role: 'fallback', standsInFor: primary.nodeId });
  }
  assert(new Set(list.map((entry) => entry.nodeId)).size === list.length, 'a preference list names each node once');
  return list;
}
