/**
 * The storage engine of one node, behind one interface (DESIGN.md, "Storage engine"). Keys and
 * values are opaque bytes ordered lexicographically (unsigned byte by byte, shorter first on a
 * common prefix). Engines: memory (in-process, like ETS: tests and caches) and, later, lsm.
 * Every engine passes the same conformance suite (engine-conformance.ts).
 *
 * Point operations return a value directly when they finished without waiting for I/O (the
 * memory engine always does; an LSM read served by the block cache will), and a Promise
 * otherwise: the hot path of the RESP server then costs no microtask per operation. Callers
 * that do not care simply `await` the result.
 */
export type MaybePromise<T> = T | Promise<T>;

/** Applies `next` to a value that may or may not be a Promise, staying synchronous when it is not. */
export function then<T, U>(value: MaybePromise<T>, next: (resolved: T) => MaybePromise<U>): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

export interface EngineEntry {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export type BatchOperation =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'delete'; readonly key: Uint8Array };

/** Keys k with gte <= k < lt; an absent bound is open. */
export interface KeyRange {
  readonly gte?: Uint8Array;
  readonly lt?: Uint8Array;
}

/**
 * A key range for scans: `gte` inclusive, `lt` exclusive; either may be absent (open end).
 * A range with `gte >= lt` is empty.
 */
export interface ScanRange {
  readonly gte?: Uint8Array;
  readonly lt?: Uint8Array;
  /** Stop after this many entries (an integer >= 0). */
  readonly limit?: number;
  /** Descending key order. */
  readonly reverse?: boolean;
}

export interface EngineStats {
  /** Live keys (tombstoned keys excluded); an engine that cannot count cheaply may estimate. */
  readonly keyCount: number;
  /** Approximate bytes of live keys plus values. */
  readonly sizeBytes: number;
}

export interface Engine {
  /** The engine's kind, as shown in status: 'memory', 'lsm'. */
  readonly kind: string;
  /** The value stored under `key`, or undefined. The returned bytes must not be mutated. */
  get(key: Uint8Array): MaybePromise<Uint8Array | undefined>;
  /**
   * Stores `value` under `key`. The engine keeps its own copy of both. Like every write method:
   * reads see the write as soon as the call returns; a returned Promise settles when the write is
   * durable per the engine's policy (a crash before that may lose it).
   */
  put(key: Uint8Array, value: Uint8Array): MaybePromise<void>;
  /** Removes `key` (an LSM engine writes a tombstone that hides older values). */
  delete(key: Uint8Array): MaybePromise<void>;
  /**
   * Deletes every key in [gte, lt) (an absent bound is open), atomically: a reader sees all of
   * them or none gone. An LSM engine writes one range tombstone and drops the tables that lie
   * inside the range, so the cost does not grow with the keys deleted (dropping a partition).
   */
  deleteRange(range: KeyRange): MaybePromise<void>;
  /** Applies all operations atomically and in order: a reader sees none or all of them. */
  batch(operations: readonly BatchOperation[]): MaybePromise<void>;
  /**
   * Entries in key order within `range`. The scan sees a consistent snapshot taken at its first
   * step: writes made while it runs are not seen. A caller that stops early must end the
   * iteration (`break` out of `for await`, or `return()`) so the engine can release the snapshot;
   * closing the engine fails every running scan at its next step.
   */
  scan(range?: ScanRange): AsyncIterable<EngineEntry>;
  stats(): EngineStats;
  /**
   * Flushes and releases everything; every later call (stats included) fails with
   * ENGINE_CLOSED. Idempotent.
   */
  close(): Promise<void>;
}
