/**
 * What production code tells the simulator (src/sim/), and the one thing the simulator may tell
 * production code. Both are process-wide and cost a Map update or a boolean test on paths that
 * are rare by nature.
 *
 * - Marks: a rare branch (a torn tail truncated, a read repair applied, a peer back up) calls
 *   `mark(name)`; a sweep reports which marks its seeds reached, so we know the faults it injects
 *   get to the code they are meant to test (FoundationDB's TEST() macro).
 * - Deliberate bugs: switches that break a guarantee on purpose, set only by the simulator's
 *   "proof that it bites" tests and `npm run sim -- --bug NAME`. A checker that catches none of
 *   them proves nothing. They are off in every real node: nothing but src/sim/ sets them.
 */

export const markNames = [
  'commit-log.torn-tail-truncated',
  'commit-log.replayed',
  'commit-log.failed',
  'lsm.flushed',
  'lsm.write-stalled',
  'lsm.compacted',
  'lsm.corruption-detected',
  'kv.siblings-created',
  'kv.merge-changed-replica',
  'coordinator.read-repair-applied',
  'coordinator.read-repair-failed',
  'coordinator.read-fell-back-to-all-replicas',
  'coordinator.quorum-failed',
  'coordinator.replica-failed',
  'membership.peer-up-again',
  'membership.ring-changed',
  'supervisor.service-restarted',
  'handoff.hint-stored',
  'handoff.hint-delivered',
  'handoff.fallback-copy-dropped',
  'handoff.transfer-batch-sent',
  'handoff.partition-handed-off',
  'handoff.write-forwarded',
  'handoff.transfer-reopened',
  'kv.actor-renewed',
  'aae.exchange-repaired',
  'aae.tree-rebuilt-stale',
  'aae.tombstone-reaped',
] as const;

export type MarkName = (typeof markNames)[number];

const hits = new Map<MarkName, number>();

/** Records that a rare branch ran. */
export function mark(name: MarkName): void {
  hits.set(name, (hits.get(name) ?? 0) + 1);
}

/** How often each mark was reached since the last reset (marks never reached are absent). */
export function markCounts(): ReadonlyMap<MarkName, number> {
  return new Map(hits);
}

export function resetMarks(): void {
  hits.clear();
}

const assertionFailures: string[] = [];

/** Called by every failed assertion (src/core/assert.ts): a simulation that saw one fails. */
export function recordAssertionFailure(message: string): void {
  if (assertionFailures.length < 100) assertionFailures.push(message);
}

/** Messages of the assertions that failed since the last reset (at most 100). */
export function assertionFailuresSeen(): readonly string[] {
  return [...assertionFailures];
}

export function resetAssertionFailures(): void {
  assertionFailures.length = 0;
}

export const bugNames = ['ack-before-sync', 'skip-read-repair', 'merge-overwrites'] as const;
export type BugName = (typeof bugNames)[number];

/**
 * The deliberate bugs:
 * - ack-before-sync: the commit log acknowledges an append before its fsync (sync `always`);
 * - skip-read-repair: coordinators never repair stale replicas they read;
 * - merge-overwrites: a replica merging another's object keeps the incoming one and drops what
 *   it held, instead of the DVV sync of both.
 */
export const simulationBugs: Record<BugName, boolean> = {
  'ack-before-sync': false,
  'skip-read-repair': false,
  'merge-overwrites': false,
};

/** Turns exactly the given bugs on (and every other off). */
export function setSimulationBugs(enabled: readonly BugName[]): void {
  for (const name of bugNames) simulationBugs[name] = enabled.includes(name);
}
