import { assert } from './assert.js';

/**
 * Dotted version vector sets (DVVSet): the causal version of one stored object, after Almeida,
 * Baquero, Gonçalves, Preguiça, Fonte, "Scalable and Accurate Causality Tracking for Eventually
 * Consistent Stores" (DAIS 2014), the structure Riak 2 uses as `dvvset`.
 *
 * A set holds, per actor (a node that coordinated writes), a counter and the values whose dots
 * are still concurrent: `values[i]` has the dot (actor, counter - i), newest first. Values with a
 * client-supplied context but no dot yet sit in `anonymous` (only in a client's write, before the
 * coordinator's `update` gives it a dot). The number of values equals the number of concurrent,
 * unresolved writes — no sibling explosion, unlike per-object vector clocks with client actors.
 *
 * Actors are node ids, so a version vector has at most as many entries as nodes that ever
 * coordinated a write to the key; no pruning is needed for that bound.
 */
export type Actor = string;

export interface DvvEntry<V> {
  readonly actor: Actor;
  readonly counter: number;
  /** Values not yet superseded, newest first: values[i] carries the dot (actor, counter - i). */
  readonly values: readonly V[];
}

export interface DvvSet<V> {
  /** Sorted by actor, one entry per actor. */
  readonly entries: readonly DvvEntry<V>[];
  readonly anonymous: readonly V[];
}

/** A version vector: the causal context handed to readers. Sorted by actor. */
export type VersionVector = readonly (readonly [Actor, number])[];

export function emptyDvv<V>(): DvvSet<V> {
  return { entries: [], anonymous: [] };
}

/**
 * A client's write: `value` with the context of the read it is based on (`context` empty or
 * absent for a blind write, which will end up concurrent with everything stored).
 */
export function clientWrite<V>(value: V, context: VersionVector = []): DvvSet<V> {
  assertVersionVector(context);
  return { entries: context.map(([actor, counter]) => ({ actor, counter, values: [] })), anonymous: [value] };
}

/**
 * The coordinator `actor` applies a client write to the stored set: stored values the client's
 * context has seen are discarded, the rest stay as siblings, and the new value gets the dot
 * (actor, counter + 1). Without `stored`, the write starts a new history.
 */
export function update<V>(write: DvvSet<V>, actor: Actor, stored?: DvvSet<V>): DvvSet<V> {
  assert(write.anonymous.length === 1, 'a client write carries exactly one value');
  const value = write.anonymous[0] as V;
  const contextOnly: DvvSet<V> = { entries: write.entries, anonymous: [] };
  const synced = stored === undefined ? contextOnly : sync(contextOnly, stored);
  return { entries: event(synced.entries, actor, value), anonymous: synced.anonymous };
}

/**
 * A write whose context is everything `stored` holds (a Redis SET: replace what is there):
 * the same result as `update(clientWrite(value, join(stored)), actor, stored)`, without the
 * general merge, because it sits on the hot path.
 */
export function overwrite<V>(stored: DvvSet<V> | undefined, actor: Actor, value: V): DvvSet<V> {
  if (stored === undefined) return { entries: [{ actor, counter: 1, values: [value] }], anonymous: [] };
  const cleared = stored.entries.map((entry) => (entry.values.length === 0 ? entry : { actor: entry.actor, counter: entry.counter, values: [] }));
  return { entries: event(cleared, actor, value), anonymous: stored.anonymous };
}

/** An actor's place in a set, without its values: what a replica needs to compare clocks. */
export interface ClockEntry {
  readonly actor: Actor;
  readonly counter: number;
  /** How many of the actor's newest events still hold a value. */
  readonly valueCount: number;
}

/**
 * True when `sync(a, b)` equals `b` for the set `a` whose clock is given: b has seen every event
 * of a and keeps no value a has discarded. A replica receiving b (a coordinated write built on
 * what it already holds, the usual case) can then store b as it is, skipping the merge.
 */
export function absorbs<V>(b: DvvSet<V>, aEntries: readonly ClockEntry[], aAnonymousCount: number): boolean {
  if (aAnonymousCount > 0 || b.anonymous.length > 0) return false;
  let indexB = 0;
  for (const a of aEntries) {
    while (indexB < b.entries.length && (b.entries[indexB] as DvvEntry<V>).actor < a.actor) indexB++;
    const entry = b.entries[indexB];
    if (entry === undefined || entry.actor !== a.actor) return false;
    // mergeEntry(a, b): at equal counters a's entry is kept, sliced to b's values when a holds more.
    if (entry.counter === a.counter) {
      if (a.valueCount < entry.values.length) return false;
    } else if (entry.counter < a.counter || entry.counter - entry.values.length < a.counter - a.valueCount) {
      return false;
    }
  }
  return true;
}

/** Merges two replicas' sets: the union of their histories, keeping only concurrent values. */
export function sync<V>(a: DvvSet<V>, b: DvvSet<V>): DvvSet<V> {
  let anonymous: readonly V[];
  if (less(a, b)) anonymous = b.anonymous;
  else if (less(b, a)) anonymous = a.anonymous;
  else anonymous = [...a.anonymous, ...b.anonymous];
  return { entries: syncEntries(a.entries, b.entries), anonymous };
}

/** The causal context of a set: what a reader has seen, to send back with its next write. */
export function join<V>(set: DvvSet<V>): VersionVector {
  return set.entries.map((entry) => [entry.actor, entry.counter] as const);
}

/** Every value still concurrent in the set: the siblings. */
export function values<V>(set: DvvSet<V>): V[] {
  const result = [...set.anonymous];
  for (const entry of set.entries) result.push(...entry.values);
  return result;
}

/** The number of sibling values. */
export function size<V>(set: DvvSet<V>): number {
  let count = set.anonymous.length;
  for (const entry of set.entries) count += entry.values.length;
  return count;
}

/** True when `b`'s history strictly contains `a`'s (a happened before b). */
export function less<V>(a: DvvSet<V>, b: DvvSet<V>): boolean {
  return vectorDescends(join(b), join(a)) && !vectorEquals(join(a), join(b));
}

/** True when version vector `a` has seen everything `b` has (a >= b pointwise). */
export function vectorDescends(a: VersionVector, b: VersionVector): boolean {
  let indexA = 0;
  for (const [actor, counter] of b) {
    while (indexA < a.length && (a[indexA] as readonly [Actor, number])[0] < actor) indexA++;
    const entryA = a[indexA];
    if (entryA === undefined || entryA[0] !== actor) {
      if (counter > 0) return false;
      continue;
    }
    if (entryA[1] < counter) return false;
  }
  return true;
}

export function vectorEquals(a: VersionVector, b: VersionVector): boolean {
  return vectorDescends(a, b) && vectorDescends(b, a);
}

/** Neither descends from the other. */
export function vectorConcurrent(a: VersionVector, b: VersionVector): boolean {
  return !vectorDescends(a, b) && !vectorDescends(b, a);
}

/** Pointwise maximum of two version vectors. */
export function vectorMerge(a: VersionVector, b: VersionVector): VersionVector {
  const counters = new Map<Actor, number>();
  for (const [actor, counter] of [...a, ...b]) counters.set(actor, Math.max(counters.get(actor) ?? 0, counter));
  return [...counters.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
}

/** Checks the structural invariants; throws an AssertionError naming the broken one. */
export function invariants<V>(set: DvvSet<V>): void {
  for (let index = 0; index < set.entries.length; index++) {
    const entry = set.entries[index] as DvvEntry<V>;
    assert(Number.isSafeInteger(entry.counter) && entry.counter >= 0, () => `counter of ${entry.actor} is not a natural number`);
    assert(entry.values.length <= entry.counter, () => `${entry.actor} holds more values than events`);
    const previous = set.entries[index - 1];
    assert(previous === undefined || previous.actor < entry.actor, 'entries are not sorted by actor or repeat one');
  }
}

export function assertVersionVector(vector: VersionVector): void {
  for (let index = 0; index < vector.length; index++) {
    const [actor, counter] = vector[index] as readonly [Actor, number];
    assert(Number.isSafeInteger(counter) && counter >= 0, () => `counter of ${actor} is not a natural number`);
    const previous = vector[index - 1];
    assert(previous === undefined || previous[0] < actor, 'version vector is not sorted by actor or repeats one');
  }
}

function syncEntries<V>(a: readonly DvvEntry<V>[], b: readonly DvvEntry<V>[]): DvvEntry<V>[] {
  const result: DvvEntry<V>[] = [];
  let indexA = 0;
  let indexB = 0;
  while (indexA < a.length || indexB < b.length) {
    const entryA = a[indexA];
    const entryB = b[indexB];
    if (entryB === undefined || (entryA !== undefined && entryA.actor < entryB.actor)) {
      result.push(entryA as DvvEntry<V>);
      indexA++;
    } else if (entryA === undefined || entryB.actor < entryA.actor) {
      result.push(entryB);
      indexB++;
    } else {
      result.push(mergeEntry(entryA, entryB));
      indexA++;
      indexB++;
    }
  }
  return result;
}

/**
 * Both replicas know events 1..counter of this actor; each keeps the values of its newest events.
 * A value survives if neither side has seen a newer write that superseded it: the side with the
 * higher counter wins, except for the values the other side still holds beyond what it discarded.
 */
function mergeEntry<V>(a: DvvEntry<V>, b: DvvEntry<V>): DvvEntry<V> {
  const [high, low] = a.counter >= b.counter ? [a, b] : [b, a];
  if (high.counter - high.values.length >= low.counter - low.values.length) return high;
  const keep = high.counter - low.counter + low.values.length;
  return { actor: high.actor, counter: high.counter, values: high.values.slice(0, keep) };
}

function event<V>(entries: readonly DvvEntry<V>[], actor: Actor, value: V): DvvEntry<V>[] {
  const result: DvvEntry<V>[] = [];
  let inserted = false;
  for (const entry of entries) {
    if (!inserted && entry.actor === actor) {
      result.push({ actor, counter: entry.counter + 1, values: [value, ...entry.values] });
      inserted = true;
    } else if (!inserted && actor < entry.actor) {
      result.push({ actor, counter: 1, values: [value] }, entry);
      inserted = true;
    } else {
      result.push(entry);
    }
  }
  if (!inserted) result.push({ actor, counter: 1, values: [value] });
  return result;
}
