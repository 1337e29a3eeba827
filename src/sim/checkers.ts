import type { DvvSet } from '../core/dvv.js';
import { decodeContext, type Sibling } from '../node/stored-object.js';
import { lwwNamespace, shortValue, siblingsNamespace, type HistoryOperation } from './workload.js';

/** What the cluster holds for one key after healing: each replica's object and each node's read. */
export interface FinalKey {
  readonly namespace: string;
  readonly key: string;
  /** Per primary replica: its stored object in canonical text, or why it could not be read. */
  readonly replicas: readonly { readonly nodeId: string; readonly canonical: string }[];
  /** Per node: the live values a quorum read of all replicas through it returned (sorted), or its error. */
  readonly reads: readonly { readonly nodeId: string; readonly values: readonly string[] | string }[];
  /** Live values of the replicas' merged object, with their dots and timestamps. */
  readonly live: ReadonlyMap<string, { readonly dot: readonly [string, number]; readonly writtenAtMs: number }>;
}

export interface Violation {
  readonly checker: 'lost-write' | 'resurrection' | 'phantom-value' | 'convergence' | 'last-write-wins' | 'handoff' | 'anti-entropy' | 'assertion';
  readonly message: string;
}

/** A stored object as text that is equal for equal versions, whatever the entry order. */
export function canonicalObject(object: DvvSet<Sibling> | undefined): string {
  if (object === undefined) return 'absent';
  const value = (sibling: Sibling): string => (sibling.value === null ? `⊥@${sibling.writtenAtMs}` : `${Buffer.from(sibling.value).toString('utf8')}@${sibling.writtenAtMs}`);
  const entries = [...object.entries].sort((a, b) => (a.actor < b.actor ? -1 : a.actor > b.actor ? 1 : 0)).map((entry) => `${entry.actor}:${entry.counter}[${entry.values.map(value).join(',')}]`);
  return `${entries.join(' ')} | ${object.anonymous.map(value).join(',')}`;
}

function covers(context: string | undefined, dot: readonly [string, number]): boolean {
  if (context === undefined) return false;
  const decoded = decodeContext(context);
  if (!decoded.ok) return false;
  return decoded.value.some(([actor, counter]) => actor === dot[0] && counter >= dot[1]);
}

/**
 * The checkers of a run (issue 6), on the history and the healed cluster's final state:
 * - lost-write: every acknowledged put's value is still a live sibling, unless a write whose
 *   context covers its dot (or a blind delete issued after it) superseded it;
 * - resurrection: no live value was superseded by an acknowledged write (a delete with the
 *   context of a read that saw it, or a put based on such a read);
 * - phantom-value: every value read was written by some put (corruption is never served);
 * - convergence: every primary replica holds the same version, every node reads the same values;
 * - last-write-wins: in the lww namespace the survivor is the acknowledged write with the
 *   highest timestamp (ties: the greater value).
 */
export function check(history: readonly HistoryOperation[], finals: readonly FinalKey[]): Violation[] {
  const violations: Violation[] = [];
  const written = new Set(history.filter((operation) => operation.kind === 'put').map((operation) => operation.value!));
  const byKey = new Map<string, HistoryOperation[]>();
  for (const operation of history) {
    const slot = `${operation.namespace}/${operation.key}`;
    let list = byKey.get(slot);
    if (list === undefined) byKey.set(slot, (list = []));
    list.push(operation);
  }
  for (const operation of history) {
    for (const value of operation.read?.values ?? []) {
      if (!written.has(value)) violations.push({ checker: 'phantom-value', message: `#${operation.id} read ${operation.namespace}/${operation.key} = ${JSON.stringify(shortValue(value))}, a value no put wrote` });
    }
  }
  for (const final of finals) {
    const slot = `${final.namespace}/${final.key}`;
    const operations = byKey.get(slot) ?? [];
    const canonical = new Set(final.replicas.map((replica) => replica.canonical));
    if (canonical.size > 1) {
      violations.push({ checker: 'convergence', message: `${slot}: replicas differ after healing: ${final.replicas.map((replica) => `${replica.nodeId}={${replica.canonical}}`).join('; ')}` });
    }
    const reads = new Set(final.reads.map((read) => JSON.stringify(read.values)));
    if (reads.size > 1 || final.reads.some((read) => typeof read.values === 'string')) {
      violations.push({ checker: 'convergence', message: `${slot}: nodes read differently after healing: ${final.reads.map((read) => `${read.nodeId}=${JSON.stringify(read.values)}`).join('; ')}` });
    }
    for (const read of final.reads) {
      if (typeof read.values === 'string') continue;
      for (const value of read.values) if (!written.has(value)) violations.push({ checker: 'phantom-value', message: `${slot}: ${read.nodeId} reads ${JSON.stringify(shortValue(value))}, a value no put wrote` });
    }
    if (final.namespace === siblingsNamespace) checkSiblings(slot, operations, final, violations);
    if (final.namespace === lwwNamespace) checkLastWriteWins(slot, operations, final, violations);
  }
  return violations;
}

function checkSiblings(slot: string, operations: readonly HistoryOperation[], final: FinalKey, violations: Violation[]): void {
  const writes = operations.filter((operation) => operation.kind === 'put' || operation.kind === 'delete');
  // A dot names one write. Two values under one dot mean a replica lost a write it had given
  // the dot to and gave it again: every context covering the dot now "supersedes" both.
  const byDot = new Map<string, HistoryOperation>();
  for (const put of writes) {
    if (put.kind !== 'put' || put.outcome !== 'ok' || put.dot === undefined) continue;
    const name = put.dot.join(':');
    const earlier = byDot.get(name);
    if (earlier !== undefined && earlier.value !== put.value) {
      violations.push({ checker: 'lost-write', message: `${slot}: acknowledged #${earlier.id} put ${shortValue(earlier.value!)} and #${put.id} put ${shortValue(put.value!)} both got dot ${name}: the first was lost by its replica and its dot given again` });
    }
    byDot.set(name, put);
  }
  for (const [value, { dot }] of final.live) {
    const owner = byDot.get(dot.join(':'));
    if (owner !== undefined && owner.value !== value) {
      violations.push({ checker: 'lost-write', message: `${slot}: ${shortValue(value)} holds dot ${dot.join(':')}, which acknowledged #${owner.id} put ${shortValue(owner.value!)} got: that write was lost and its dot given again` });
    }
  }
  for (const put of writes) {
    if (put.kind !== 'put' || put.outcome !== 'ok' || put.dot === undefined || final.live.has(put.value!)) continue;
    const dot = put.dot;
    const superseded = writes.some((other) => other !== put && (covers(other.context, dot) || blindDeleteSuperseded(other, put, dot)));
    if (!superseded) {
      violations.push({ checker: 'lost-write', message: `${slot}: #${put.id} put ${shortValue(put.value!)} (dot ${dot.join(':')}, w=${put.w}, via ${put.node}) was acknowledged and is gone, and no write superseded it; live now: [${[...final.live.keys()].map(shortValue).join(' ')}]` });
    }
  }
  for (const [value, { dot }] of final.live) {
    const killer = writes.find((other) => other.outcome === 'ok' && covers(other.context, dot));
    if (killer !== undefined) {
      violations.push({ checker: 'resurrection', message: `${slot}: ${shortValue(value)} (dot ${dot.join(':')}) is live, but acknowledged ${killer.kind} #${killer.id} superseded it` });
    }
  }
}

/**
 * Whether a blind delete may have superseded `put`: an acknowledged one did if the object it left
 * covers the put's dot without keeping its value; one without an answer may have, if it was still
 * running after the put began (its read of what to delete can come late), or if the client gave up on it.
 */
function blindDeleteSuperseded(other: HistoryOperation, put: HistoryOperation, dot: readonly [string, number]): boolean {
  if (other.kind !== 'delete' || other.context !== undefined) return false;
  if (other.after === undefined) return other.outcome === 'timeout' || (other.outcome === 'fail' && (other.completedAtMs ?? Infinity) >= put.invokedAtMs);
  return other.after.clock.some(([actor, counter]) => actor === dot[0] && counter >= dot[1]) && !other.after.values.includes(put.value!);
}

function checkLastWriteWins(slot: string, operations: readonly HistoryOperation[], final: FinalKey, violations: Violation[]): void {
  const acknowledged = operations.filter((operation) => operation.kind === 'put' && operation.outcome === 'ok' && operation.writtenAtMs !== undefined);
  if (acknowledged.length === 0) return;
  let best = acknowledged[0]!;
  for (const put of acknowledged) if (newer(put, best)) best = put;
  const survivors = final.reads.find((read) => typeof read.values !== 'string')?.values;
  if (survivors === undefined || typeof survivors === 'string') return;
  const survivor = survivors[0];
  const survivorInfo = survivor === undefined ? undefined : final.live.get(survivor);
  if (survivor === undefined || survivorInfo === undefined) {
    violations.push({ checker: 'last-write-wins', message: `${slot}: nothing survives, but #${best.id} put ${shortValue(best.value!)} (at ${best.writtenAtMs}) was acknowledged` });
    return;
  }
  const survivorKey = { writtenAtMs: survivorInfo.writtenAtMs, value: survivor };
  if (newer(best, survivorKey)) {
    violations.push({ checker: 'last-write-wins', message: `${slot}: ${shortValue(survivor)} (at ${survivorInfo.writtenAtMs}) survives, but acknowledged #${best.id} put ${shortValue(best.value!)} has the higher timestamp ${best.writtenAtMs}` });
  }
}

function newer(a: { readonly writtenAtMs?: number | undefined; readonly value?: string | undefined }, b: { readonly writtenAtMs?: number | undefined; readonly value?: string | undefined }): boolean {
  if (a.writtenAtMs! !== b.writtenAtMs!) return a.writtenAtMs! > b.writtenAtMs!;
  return Buffer.compare(Buffer.from(a.value!), Buffer.from(b.value!)) > 0;
}
