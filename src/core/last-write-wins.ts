import { assert } from './assert.js';
import { assertTimestamp, compare, type HlcTimestamp } from './hybrid-logical-clock.js';

/**
 * The last-write-wins register: the value model of namespaces that choose LWW instead of
 * dotted version vectors (DESIGN.md, "Data model and versions"; the Cassandra cell model). Every
 * replica keeps one value per key, stamped with the hybrid-logical-clock timestamp of its write,
 * and `merge` keeps the greater. Merge is commutative, associative and idempotent, so replicas
 * converge whatever order read repair, hinted handoff and anti-entropy deliver writes in.
 *
 * The price, which users of this mode accept: of two concurrent writes one is silently dropped
 * (Jepsen measured 30-70% lost writes in Riak with allow_mult=false). Use DVV mode to keep both.
 */

/** A delete: kept as a value with a timestamp so that an older write cannot resurrect the key. */
export const tombstone: unique symbol = Symbol('ringkv.tombstone');
export type Tombstone = typeof tombstone;

export interface LwwValue<V> {
  readonly timestamp: HlcTimestamp;
  readonly value: V | Tombstone;
}

/**
 * A total order on values, consulted only when two writes carry the same timestamp. An HLC never
 * issues one timestamp twice (nodeIds differ, each node's clock strictly increases), so this only
 * arises from bugs or hand-made timestamps — but merge must stay commutative even then, so the
 * order must be total and return 0 only for values the caller considers equal.
 */
export type ValueOrder<V> = (a: V, b: V) => number;

/**
 * Picks the survivor of two versions of one key: the greater timestamp; on equal timestamps the
 * tombstone (a delete is never undone by a tie, as Cassandra's `Cells.reconcile` does), then the
 * greater value under `order` (Cassandra also falls back to comparing value bytes). Returns one
 * of its arguments, never a copy.
 */
export function merge<V>(a: LwwValue<V>, b: LwwValue<V>, order: ValueOrder<V>): LwwValue<V> {
  assertTimestamp(a.timestamp);
  assertTimestamp(b.timestamp);
  const byTimestamp = compare(a.timestamp, b.timestamp);
  if (byTimestamp !== 0) return byTimestamp > 0 ? a : b;
  if (a.value === tombstone || b.value === tombstone) return a.value === tombstone ? a : b;
  return order(a.value, b.value) >= 0 ? a : b;
}

/**
 * Applies a write (or, with `tombstone`, a delete) stamped `timestamp` to the stored version
 * `current` (undefined when the key was never written here). The result is the merge: a write
 * older than what is stored is a no-op, which is what makes replaying hints idempotent.
 */
export function write<V>(current: LwwValue<V> | undefined, value: V | Tombstone, timestamp: HlcTimestamp, order: ValueOrder<V>): LwwValue<V> {
  const written: LwwValue<V> = { timestamp, value };
  if (current !== undefined) return merge(current, written, order);
  assertTimestamp(timestamp);
  return written;
}

/** The survivor of a non-empty set of versions (from replicas, or concurrent writes): their merge. */
export function survivor<V>(versions: readonly LwwValue<V>[], order: ValueOrder<V>): LwwValue<V> {
  assert(versions.length > 0, 'survivor needs at least one version');
  let best = versions[0] as LwwValue<V>;
  for (const version of versions) best = merge(best, version, order);
  return best;
}

/** What a read returns: the value, or undefined when the key is absent or deleted. */
export function liveValue<V>(version: LwwValue<V> | undefined): V | undefined {
  return version === undefined || version.value === tombstone ? undefined : version.value;
}

/** Lexicographic byte order, the `ValueOrder` for opaque byte values (shorter prefix first). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const difference = (a[index] as number) - (b[index] as number);
    if (difference !== 0) return difference;
  }
  return a.length - b.length;
}
