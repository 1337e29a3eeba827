import { assert } from '../core/assert.js';
import { mark, simulationBugs } from '../core/simulation-hooks.js';
import { absorbs, clientWrite, join, overwrite, sync, update, values, type VersionVector } from '../core/dvv.js';
import { ErrorCode, failure, RingkvError, success, type Failure, type Result } from '../core/errors.js';
import { then, type BatchOperation, type Engine, type MaybePromise, type ScanRange } from '../storage/engine.js';
import type { Clock } from '../world/clock.js';
import { decodeClock, decodeContext, decodeHistory, decodeNewestValue, decodeObject, encodeContext, encodeObject, encodeOverwrite, objectVersionHash, summarizeHistory, type Sibling, type StoredObject } from './stored-object.js';
import { partitionTokenPrefixes } from '../core/token.js';
import { engineKeyTokenPrefix, hintKey, hintRange, parseHintKey, parseStorageKey, partitionRange, storageKey } from './storage-key.js';

export interface KvLimits {
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly siblingsMax: number;
}

export interface ReadResult {
  /** Live siblings (tombstones left out); one when there is no conflict. */
  readonly siblings: readonly Sibling[];
  /** Opaque causal context to send back with the next write to this key (encoded on demand). */
  readonly context: string;
}

export interface WriteOptions {
  /**
   * The context of the read this write is based on. Absent: a blind write, kept beside whatever
   * is stored as a sibling. 'current': supersede everything stored now (Redis SET semantics).
   */
  readonly context?: string | 'current';
  readonly contentType?: string;
  /** Only write when the key has no live value (Redis SET NX). */
  readonly onlyIfAbsent?: boolean;
  /** Only write when the key has a live value (Redis SET XX). */
  readonly onlyIfPresent?: boolean;
  /**
   * A delete writes its tombstone even when no live value is stored here: a cluster replica that
   * lags may coordinate a delete of values other replicas hold, which the tombstone must reach.
   */
  readonly recordTombstone?: boolean;
  /**
   * Called once the write is handed to the engine (visible to reads, not yet durable), with its
   * outcome: a coordinator starts replicating then instead of after the local fsync.
   */
  readonly onIssued?: (outcome: WriteOutcome) => void;
  /**
   * This node takes the write as a fallback for the primary replica `hintFor` (sloppy quorum):
   * a hint marker naming it is written in the same atomic batch, and hinted handoff later
   * delivers the object to it (src/node/hinted-handoff.ts).
   */
  readonly hintFor?: string;
}

export interface WriteOutcome {
  /** False when a condition (onlyIfAbsent, onlyIfPresent, a delete of nothing) left the key as it was. */
  readonly written: boolean;
  /** Whether the key had a live value before this operation. */
  readonly previouslyPresent: boolean;
  /** The context of the stored object after the operation (encoded on demand). */
  readonly context: string;
  /** The stored object after the operation, encoded (what the other replicas merge), if any. */
  readonly encoded: Uint8Array | undefined;
}

/** Per-request quorum settings; absent ones come from the namespace (cluster coordinator only). */
export interface QuorumOptions {
  readonly n?: number;
  readonly r?: number;
  readonly w?: number;
  /** Of the R replies, how many must come from primary replicas, not fallbacks (Riak's `pr`); default 0. */
  readonly pr?: number;
  /** Of the W acks, how many must come from primary replicas (Riak's `pw`): no sloppy quorum for them; default 0. */
  readonly pw?: number;
}

/** The names of QuorumOptions, in the order they are shown. */
export const quorumNames = ['n', 'r', 'w', 'pr', 'pw'] as const;

/**
 * What the client-facing APIs (HTTP, RESP) read and write through: the local store on a single
 * node, the quorum coordinator in a cluster (src/node/coordinator.ts).
 */
export interface KeyValueStore {
  get(namespace: string, key: Uint8Array, options?: QuorumOptions): MaybePromise<Result<ReadResult | undefined>>;
  getNewest(namespace: string, key: Uint8Array, options?: QuorumOptions): MaybePromise<Result<Uint8Array | undefined>>;
  put(namespace: string, key: Uint8Array, value: Uint8Array, options?: WriteOptions & QuorumOptions): MaybePromise<Result<WriteOutcome>>;
  delete(namespace: string, key: Uint8Array, options?: Pick<WriteOptions, 'context' | 'onIssued'> & QuorumOptions): MaybePromise<Result<WriteOutcome>>;
  keys(namespace: string, options: { readonly limit: number; readonly after?: Uint8Array }): Promise<Result<Uint8Array[]>>;
}

/** A hint marker: this node holds the object under `engineKey` for `target` (hinted handoff). */
export interface HintMarker {
  readonly target: string;
  readonly engineKey: Buffer;
  /** Wall-clock time of the hinted write. */
  readonly writtenAtMs: number;
  /** Size of the hinted object then. */
  readonly bytes: number;
}

/**
 * Hears every change to a stored object, in the key's turn, as the engine takes it (anti-entropy
 * keeps its Merkle trees with it, transfers notice late writes). Must not throw or block.
 */
export interface ChangeObserver {
  /** `before` / `after`: the encoded object replaced and the one stored; undefined: absent, removed. */
  changed(engineKey: Buffer, before: Uint8Array | undefined, after: Uint8Array | undefined): void;
  /**
   * Objects under token prefixes [first, end) may have changed without a `changed` call (a
   * partition dropped, the engine reopened after a failure): what was learnt of them is stale.
   */
  invalidated(first: number, end: number): void;
}

/** One stored object of a partition, as `KvService.partitionObjects` yields it. */
export interface PartitionObject {
  readonly namespace: string;
  readonly key: Uint8Array;
  /** The storage key (storage-key.ts), the position of the object in the engine. */
  readonly engineKey: Uint8Array;
  /** The encoded object (stored-object.ts), siblings and tombstones included. */
  readonly object: Uint8Array;
}

const namespacePattern = /^[A-Za-z0-9_.-]{1,64}$/;
const validNamespacesMax = 4096;
/** Content types are stored with every sibling; HTTP allows 256 bytes too. */
const contentTypeLengthMax = 256;

/**
 * The versioned key-value store of one node: reads and writes of (namespace, key) with causal
 * versions and siblings (DVV sets, src/core/dvv.ts) on top of an Engine. Each key's
 * read-modify-write is serialized: when the engine answers synchronously the whole update runs
 * without yielding; when it does not, later operations on that key wait for it.
 */
/** Keys of a dropped partition deleted at once (dropHandedOff). */
const dropChunkKeys = 256;

export class KvService implements KeyValueStore {
  private readonly inFlight = new Map<string, Promise<unknown>>();
  /** Namespaces already checked against the pattern; bounded, as clients choose the names. */
  private readonly validNamespaces = new Set<string>();
  private attached: Engine | undefined;
  /** The engine served last, attached or not: another one attached means a reopen. */
  private served: Engine | undefined;
  /** The DVV actor new versions are written as: the node id, or its epoch (actor-epoch.ts). */
  private actor: string;
  private readonly observers = new Set<ChangeObserver>();
  /**
   * Token prefixes (storage-key.ts) of which this node dropped objects since its actor began: a
   * write there must first renew the actor (`renewActor`), as the dots the dropped objects held
   * under the current actor are no longer known here.
   */
  private readonly dropped = new Uint8Array(1 << 16);
  private droppedCount = 0;
  /**
   * Per token prefix, the highest counter the current actor had in a tombstone reaped there
   * (0: none). A reaped key is absent, so a write to it would start its history at counter 1 and
   * give dots the actor gave before — dots that contexts clients still hold may cover, which
   * would let a stale context supersede a write it never saw (found by the simulator). A write
   * to an absent key starts past this floor instead; a history that seems to cover dots the key
   * never had is harmless. In memory only: an actor that reaped is not kept across a restart
   * (`droppedUnderActor`), and a new actor never gave a dot to any key.
   */
  private readonly reapedCounters = new Float64Array(1 << 16);
  private reapedUnderActor = false;
  /** A write issued under the current actor failed in the engine: its dot may live elsewhere. */
  private dotsGivenAway = false;
  private renewActor: (() => Promise<string>) | undefined;
  private renewing: Promise<void> | undefined;

  constructor(
    engine: Engine | undefined,
    private readonly options: { readonly actor: string; readonly clock: Clock; readonly limits: KvLimits },
  ) {
    assert(options.actor.length > 0, 'actor (node id) must not be empty');
    this.attached = engine;
    this.served = engine;
    this.actor = options.actor;
  }

  /** Serves from `engine` (after the engine service started or restarted), writing versions as `actor`. */
  attach(engine: Engine, actor = this.actor): void {
    assert(actor.length > 0, 'actor must not be empty');
    const replaced = this.served !== undefined && this.served !== engine;
    this.attached = engine;
    this.served = engine;
    if (actor !== this.actor) this.clearDropped();
    this.actor = actor;
    // A reopened engine holds what was durable, which may be less than what observers were told.
    if (replaced) this.invalidate(0, 1 << 16);
  }

  /** How a new actor is obtained when a write needs one (see `dropped`); absent: never renewed. */
  onActorRenewal(renew: () => Promise<string>): void {
    this.renewActor = renew;
  }

  /** Whether objects were dropped under the current actor (its epoch must not be kept as clean). */
  get droppedUnderActor(): boolean {
    return this.droppedCount > 0 || this.reapedUnderActor || this.dotsGivenAway;
  }

  private markDropped(first: number, end: number): void {
    for (let prefix = first; prefix < end; prefix++) {
      if (this.dropped[prefix] === 0) this.droppedCount++;
      this.dropped[prefix] = 1;
    }
  }

  private clearDropped(): void {
    if (this.reapedUnderActor) this.reapedCounters.fill(0);
    this.reapedUnderActor = false;
    if (this.droppedCount === 0) return;
    this.dropped.fill(0);
    this.droppedCount = 0;
  }

  /** Renews the actor once for every write that waits on it. */
  private renew(): Promise<void> {
    const renewActor = this.renewActor;
    if (renewActor === undefined) return Promise.resolve();
    this.renewing ??= renewActor().then(
      (actor) => {
        this.actor = actor;
        this.clearDropped();
        this.dotsGivenAway = false;
        this.renewing = undefined;
      },
      (error: unknown) => {
        this.renewing = undefined;
        throw error;
      },
    );
    return this.renewing;
  }

  /** Stops serving: until the next attach every operation fails with UNAVAILABLE. */
  detach(): void {
    this.attached = undefined;
  }

  private get engine(): Engine {
    assert(this.attached !== undefined, 'engine used while detached');
    return this.attached;
  }

  get(namespace: string, key: Uint8Array): MaybePromise<Result<ReadResult | undefined>> {
    const invalid = this.validate(namespace, key, undefined);
    if (invalid !== undefined) return invalid;
    const engineKey = storageKey(namespace, key);
    return this.serialized(engineKey, () => then(this.engine.get(engineKey), (bytes) => success(readResult(bytes))));
  }

  /** The stored object of a key, encoded, for a coordinator that merges replicas' answers. */
  readObject(namespace: string, key: Uint8Array): MaybePromise<Result<Uint8Array | undefined>> {
    const invalid = this.validate(namespace, key, undefined);
    if (invalid !== undefined) return invalid;
    const engineKey = storageKey(namespace, key);
    return this.serialized(engineKey, () => then(this.engine.get(engineKey), (bytes) => success(bytes)));
  }

  /**
   * Merges an object another replica holds (replication of a coordinated write, read repair):
   * the stored object becomes the DVV sync of both, so nothing either side holds is lost.
   */
  mergeObject(namespace: string, key: Uint8Array, incoming: Uint8Array, hintFor?: string): MaybePromise<Result<void>> {
    const invalid = this.validate(namespace, key, undefined);
    if (invalid !== undefined) return invalid;
    const engineKey = storageKey(namespace, key);
    const theirs = decodeObject(incoming);
    return this.serialized(engineKey, () =>
      then(this.engine.get(engineKey), (bytes) => {
        let merged = incoming;
        if (bytes !== undefined) {
          // Usually the incoming object was built on what this replica holds: it is the merge.
          const clock = decodeClock(bytes);
          if (simulationBugs['merge-overwrites']) merged = incoming;
          else if (!absorbs(theirs, clock.entries, clock.anonymousCount)) {
            merged = encodeObject(sync(decodeObject(bytes), theirs));
            mark('kv.merge-changed-replica');
          }
        }
        return issued(this.store(engineKey, bytes, merged, hintFor), success(undefined));
      }),
    );
  }

  /** Tells `observer` of every change from now on, until the returned function is called. */
  observeChanges(observer: ChangeObserver): () => void {
    this.observers.add(observer);
    return () => this.observers.delete(observer);
  }

  private changed(engineKey: Buffer, before: Uint8Array | undefined, after: Uint8Array | undefined): void {
    for (const observer of this.observers) observer.changed(engineKey, before, after);
  }

  private invalidate(first: number, end: number): void {
    for (const observer of this.observers) observer.invalidated(first, end);
  }

  /** Writes an object over `before`, with the hint marker for `hintFor` in the same atomic batch when given. */
  private store(engineKey: Buffer, before: Uint8Array | undefined, encoded: Uint8Array, hintFor: string | undefined): MaybePromise<void> {
    this.changed(engineKey, before, encoded);
    if (hintFor === undefined) return this.engine.put(engineKey, encoded);
    mark('handoff.hint-stored');
    const marker = Buffer.alloc(12);
    marker.writeDoubleBE(this.options.clock.wallMs(), 0);
    marker.writeUInt32BE(encoded.length, 8);
    return this.engine.batch([
      { type: 'put', key: engineKey, value: encoded },
      { type: 'put', key: hintKey(hintFor, engineKey), value: marker },
    ]);
  }

  /**
   * The hint markers this node keeps, for `target` or for all, in engine order; with `after`,
   * those of `target` past that object's engine key.
   */
  async *hintMarkers(target?: string, after?: Buffer): AsyncGenerator<HintMarker> {
    if (this.attached === undefined) throw new RingkvError(ErrorCode.unavailable, 'the storage engine is not running');
    const range = hintRange(target);
    if (target !== undefined && after !== undefined) range.gte = Buffer.concat([hintKey(target, after), Buffer.of(0)]);
    for await (const entry of this.engine.scan(range)) {
      const parsed = parseHintKey(entry.key);
      assert(parsed !== undefined && entry.value.length === 12, 'every key in the hint range is a hint marker');
      const value = Buffer.from(entry.value.buffer, entry.value.byteOffset, entry.value.length);
      yield { target: parsed.target, engineKey: Buffer.from(parsed.engineKey), writtenAtMs: value.readDoubleBE(0), bytes: value.readUInt32BE(8) };
    }
  }

  /** The stored object under an engine key (from a hint marker), encoded; undefined when absent. */
  readEngineKey(engineKey: Buffer): MaybePromise<Result<Uint8Array | undefined>> {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    return this.serialized(engineKey, () => then(this.engine.get(engineKey), (bytes) => success(bytes)));
  }

  /**
   * A hinted object was delivered to `target` as `delivered` (undefined: it was absent): the
   * marker is removed unless the object changed since (a newer write for the target keeps the
   * marker for the next delivery). With `dropLocal`, this node's copy goes too, unless another
   * target still has a marker for it: a fallback keeps no data it does not own. Answers whether
   * the marker was removed.
   */
  completeHint(target: string, engineKey: Buffer, delivered: Uint8Array | undefined, dropLocal: { readonly otherTargets: readonly string[] } | undefined): MaybePromise<Result<boolean>> {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    return this.serialized(engineKey, () =>
      then(this.engine.get(engineKey), (current) => {
        const unchanged = current === undefined ? delivered === undefined : delivered !== undefined && Buffer.from(current.buffer, current.byteOffset, current.length).equals(delivered);
        if (!unchanged) return success(false);
        const operations: BatchOperation[] = [{ type: 'delete', key: hintKey(target, engineKey) }];
        if (dropLocal === undefined || current === undefined) return issued(this.engine.batch(operations), success(true));
        return then(this.hasHintMarker(dropLocal.otherTargets.filter((other) => other !== target), engineKey), (hinted) => {
          if (!hinted) {
            operations.push({ type: 'delete', key: engineKey });
            this.changed(engineKey, current, undefined);
            const prefix = engineKeyTokenPrefix(engineKey);
            this.markDropped(prefix, prefix + 1);
            mark('handoff.fallback-copy-dropped');
          }
          return issued(this.engine.batch(operations), success(true));
        });
      }),
    );
  }

  /**
   * The one value a client without sibling support sees (`newestSibling`), read without building
   * the siblings: Redis GET, MGET and EXISTS. Undefined when absent or deleted.
   */
  getNewest(namespace: string, key: Uint8Array): MaybePromise<Result<Uint8Array | undefined>> {
    const invalid = this.validate(namespace, key, undefined);
    if (invalid !== undefined) return invalid;
    const engineKey = storageKey(namespace, key);
    return this.serialized(engineKey, () =>
      then(this.engine.get(engineKey), (bytes) => success(bytes === undefined ? undefined : decodeNewestValue(bytes))),
    );
  }

  put(namespace: string, key: Uint8Array, value: Uint8Array, options: WriteOptions = {}): MaybePromise<Result<WriteOutcome>> {
    const invalid = this.validate(namespace, key, value);
    if (invalid !== undefined) return invalid;
    const contentType = options.contentType ?? '';
    if (contentType !== '' && (contentType.length > contentTypeLengthMax || !/^[\x20-\x7e]*$/.test(contentType))) {
      return failure(ErrorCode.badRequest, `the content type must be printable ASCII of at most ${contentTypeLengthMax} characters`);
    }
    const sibling: Sibling = { value, writtenAtMs: this.options.clock.wallMs(), contentType };
    return this.write(storageKey(namespace, key), sibling, options);
  }

  /**
   * Writes a versioned tombstone that supersedes what `options.context` saw ('current': all of
   * it). A key without a live value is left alone (`written: false`).
   */
  delete(namespace: string, key: Uint8Array, options: Pick<WriteOptions, 'context' | 'onIssued' | 'recordTombstone' | 'hintFor'> = {}): MaybePromise<Result<WriteOutcome>> {
    const invalid = this.validate(namespace, key, undefined);
    if (invalid !== undefined) return invalid;
    const tombstone: Sibling = { value: null, writtenAtMs: this.options.clock.wallMs(), contentType: '' };
    return this.write(storageKey(namespace, key), tombstone, options);
  }

  /** Keys of a namespace that have a live value, in engine order (storage-key.ts `compareKeys`), from `after` (exclusive). */
  async keys(namespace: string, options: { readonly limit: number; readonly after?: Uint8Array }): Promise<Result<Uint8Array[]>> {
    assert(Number.isInteger(options.limit) && options.limit >= 1, 'keys: limit must be a positive integer');
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    if (!namespacePattern.test(namespace)) return namespaceFailure(namespace);
    // Keys of a namespace are spread over the token prefixes (storage-key.ts): walk the engine
    // from the cursor and skip other namespaces.
    const range = options.after === undefined ? {} : { gte: Buffer.concat([storageKey(namespace, options.after), Buffer.of(0)]) };
    const found: Uint8Array[] = [];
    for await (const entry of this.engine.scan(range)) {
      const parsed = parseStorageKey(entry.key);
      if (parsed?.namespace !== namespace || readResult(entry.value) === undefined) continue;
      found.push(parsed.key);
      if (found.length >= options.limit) break;
    }
    return success(found);
  }

  /**
   * Every stored object of one partition (ring partition count `partitionCount`), in engine
   * order: what handoff streams and anti-entropy hashes. A consistent snapshot of the partition
   * (Engine.scan); tombstones included, since a replica must learn of deletes too. `after`: only
   * the objects past that engine key (a transfer resuming); `limit`: at most that many.
   */
  async *partitionObjects(partition: number, partitionCount: number, options: { readonly after?: Uint8Array; readonly limit?: number } = {}): AsyncGenerator<PartitionObject> {
    if (this.attached === undefined) throw new RingkvError(ErrorCode.unavailable, 'the storage engine is not running');
    const range: ScanRange = { ...partitionRange(partition, partitionCount), ...(options.limit === undefined ? {} : { limit: options.limit }) };
    const scan = options.after === undefined ? range : { ...range, gte: Buffer.concat([options.after, Buffer.of(0)]) };
    for await (const entry of this.engine.scan(scan)) {
      const parsed = parseStorageKey(entry.key);
      assert(parsed !== undefined, 'every engine key in a partition range is a storage key');
      yield { namespace: parsed.namespace, key: parsed.key, engineKey: entry.key, object: entry.value };
    }
  }

  /** Objects and their stored bytes (keys + encoded objects) in one partition; walks the partition. */
  async partitionStats(partition: number, partitionCount: number): Promise<{ objects: number; bytes: number }> {
    let objects = 0;
    let bytes = 0;
    for await (const entry of this.partitionObjects(partition, partitionCount)) {
      objects += 1;
      bytes += entry.key.length + entry.object.length;
    }
    return { objects, bytes };
  }

  /**
   * Deletes a whole partition from this node (after handing it off): one range deletion, cheap
   * on the LSM engine. Not a versioned delete: other replicas keep their copies.
   */
  async dropPartition(partition: number, partitionCount: number): Promise<Result<void>> {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    const { first, end } = partitionTokenPrefixes(partition, partitionCount);
    this.markDropped(first, Math.min(end, 1 << 16));
    this.invalidate(first, Math.min(end, 1 << 16));
    await this.engine.deleteRange(partitionRange(partition, partitionCount));
    return success(undefined);
  }

  /**
   * Deletes this node's copy of a partition it handed off, except objects that wait here as hints
   * (a marker for one of `hintTargets`): each key in its turn, so a hinted write racing the drop
   * is either seen (and kept) or comes after it. Answers how many objects were deleted.
   */
  async dropHandedOff(partition: number, partitionCount: number, hintTargets: readonly string[]): Promise<Result<number>> {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    const { first, end } = partitionTokenPrefixes(partition, partitionCount);
    this.markDropped(first, Math.min(end, 1 << 16));
    this.invalidate(first, Math.min(end, 1 << 16));
    const keys: Buffer[] = [];
    for await (const entry of this.engine.scan(partitionRange(partition, partitionCount))) keys.push(Buffer.from(entry.key));
    let deleted = 0;
    // Deletes of one chunk are issued together, so they share the commit log's syncs (one at a
    // time, a partition of a few thousand keys took as many fsyncs in a row).
    for (let start = 0; start < keys.length; start += dropChunkKeys) {
      const results = await Promise.all(
        keys.slice(start, start + dropChunkKeys).map((engineKey) =>
          this.serialized(engineKey, () =>
            then(this.hasHintMarker(hintTargets, engineKey), (hinted): Result<boolean> | Issued<Result<boolean>> => (hinted ? success(false) : issued(this.engine.delete(engineKey), success(true)))),
          ),
        ),
      );
      for (const result of results) {
        if (!result.ok) return result;
        if (result.value) deleted++;
      }
    }
    return success(deleted);
  }

  /**
   * Removes the tombstone under `engineKey` for good (anti-entropy reaps a delete every replica
   * holds), if what is stored there is still the object of `versionHash` and holds no live value.
   * Answers whether it was removed.
   */
  reapTombstone(engineKey: Buffer, versionHash: bigint): MaybePromise<Result<boolean>> {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running');
    return this.serialized(engineKey, () =>
      then(this.engine.get(engineKey), (current): Result<boolean> | Issued<Result<boolean>> => {
        if (current === undefined || objectVersionHash(current) !== versionHash) return success(false);
        const { history, present } = decodeHistory(current);
        if (present) return success(false);
        const own = history.entries.find((entry) => entry.actor === this.actor);
        if (own !== undefined) {
          const prefix = engineKeyTokenPrefix(engineKey);
          this.reapedCounters[prefix] = Math.max(this.reapedCounters[prefix] as number, own.counter);
          this.reapedUnderActor = true;
        }
        this.changed(engineKey, current, undefined);
        mark('aae.tombstone-reaped');
        return issued(this.engine.delete(engineKey), success(true));
      }),
    );
  }

  /** Whether a hint marker for any of `targets` names the object under `engineKey`. */
  private hasHintMarker(targets: readonly string[], engineKey: Buffer): MaybePromise<boolean> {
    const markers = targets.map((target) => this.engine.get(hintKey(target, engineKey)));
    const any = (found: readonly (Uint8Array | undefined)[]): boolean => found.some((marker) => marker !== undefined);
    return markers.some((marker) => marker instanceof Promise) ? Promise.all(markers).then(any) : any(markers as (Uint8Array | undefined)[]);
  }

  private write(engineKey: Buffer, sibling: Sibling, options: WriteOptions): MaybePromise<Result<WriteOutcome>> {
    let context: VersionVector | 'current' | undefined;
    if (options.context === 'current' || options.context === undefined) context = options.context;
    else {
      const decoded = decodeContext(options.context);
      if (!decoded.ok) return decoded;
      context = decoded.value;
    }
    const prefix = engineKeyTokenPrefix(engineKey);
    return this.serialized(engineKey, () => {
      const apply = (): MaybePromise<Result<WriteOutcome> | Issued<Result<WriteOutcome>>> =>
        then(this.engine.get(engineKey), (bytes) => this.applyWrite(engineKey, bytes, sibling, context, options));
      // Checked in the key's turn, so a drop that came while the write waited counts: a dot for
      // this key under the current actor may exist elsewhere while this node dropped it, so the
      // write goes out under a new actor.
      const droppedHere = this.droppedCount > 0 && this.dropped[prefix] === 1;
      if ((!droppedHere && !this.dotsGivenAway) || this.renewActor === undefined) return apply();
      mark('kv.actor-renewed');
      return this.renew().then(apply);
    });
  }

  private applyWrite(
    engineKey: Buffer,
    storedBytes: Uint8Array | undefined,
    written: Sibling,
    context: VersionVector | 'current' | undefined,
    options: WriteOptions,
  ): Result<WriteOutcome> | Issued<Result<WriteOutcome>> {
    let sibling = written;
    let stored: StoredObject | undefined;
    let present = false;
    const overwriting = context === 'current';
    if (storedBytes !== undefined && overwriting) {
      // An overwrite discards every stored value: only the causal history is needed. It is also
      // newer than all of them, so its timestamp is too, whatever this node's clock says (a clock
      // behind another node's would otherwise let a last-write-wins read prefer a replaced value:
      // found by the simulator with skewed clocks).
      const summary = summarizeHistory(storedBytes);
      present = summary.present;
      if (summary.newestWrittenAtMs >= sibling.writtenAtMs) sibling = { ...sibling, writtenAtMs: summary.newestWrittenAtMs + 1 };
    } else if (storedBytes !== undefined) {
      stored = decodeObject(storedBytes);
      present = values(stored).some((existing) => existing.value !== null);
    }
    const skip =
      (options.onlyIfAbsent === true && present) ||
      (options.onlyIfPresent === true && !present) ||
      // Deleting what is not there leaves nothing to supersede, unless the delete is coordinated
      // for a cluster (recordTombstone): another replica may hold what its context covers.
      (sibling.value === null && !present && options.recordTombstone !== true);
    if (skip) return success(new Outcome(false, present, stored ?? storedBytes, storedBytes));
    // Past the counters this actor had in tombstones reaped under this prefix: also when the key
    // is back from another replica without them (a write elsewhere after the reap, merged here;
    // the simulator found it with a reap that reached a paused node late). The reaped tombstone
    // superseded every value of this actor up to its counter, so syncing that knowledge back in
    // discards only deleted values.
    const reapedCounter = this.reapedCounters[engineKeyTokenPrefix(engineKey)] as number;
    if (reapedCounter > 0) {
      if (storedBytes !== undefined && overwriting) stored = decodeHistory(storedBytes).history;
      const floor = { entries: [{ actor: this.actor, counter: reapedCounter, values: [] }], anonymous: [] };
      const own = stored?.entries.find((entry) => entry.actor === this.actor);
      if (stored === undefined) stored = floor;
      else if (own === undefined || own.counter < reapedCounter) stored = sync(floor, stored);
    }
    // Live siblings count: a reader never sees tombstones, so it could not resolve them.
    // An overwrite leaves exactly its own value.
    let next: StoredObject | undefined;
    let encoded: Uint8Array;
    if (overwriting && storedBytes !== undefined && stored === undefined) {
      // The hot path of SET: the new bytes straight from the stored ones (equal to the general path below).
      encoded = encodeOverwrite(storedBytes, this.actor, sibling);
    } else {
      next = overwriting ? overwrite(stored, this.actor, sibling) : update(clientWrite(sibling, context ?? []), this.actor, stored);
      encoded = encodeObject(next);
    }
    const siblingCount = next === undefined || overwriting ? 1 : values(next).filter((candidate) => candidate.value !== null).length;
    if (siblingCount > this.options.limits.siblingsMax) {
      return failure(ErrorCode.tooManySiblings, `the write would leave ${siblingCount} siblings (limit ${this.options.limits.siblingsMax}); read the key and write back with its context`);
    }
    if (siblingCount > 1) mark('kv.siblings-created');
    const outcome = success(new Outcome(true, present, next ?? encoded, encoded));
    const storing = this.store(engineKey, storedBytes, encoded, options.hintFor);
    // The dot is out once the write is issued (a coordinator replicates it before the local
    // fsync); if the engine then fails the write, this replica does not hold it, and its next
    // write of the key would give the same dot to another value: the next write renews the actor.
    if (storing instanceof Promise) storing.then(undefined, () => (this.dotsGivenAway = true));
    const write = issued(storing, outcome);
    options.onIssued?.(outcome.value);
    return write;
  }

  /**
   * Runs a read-modify-write of one key after the previous one on that key has handed its write
   * to the engine (not after it is durable: the engine shows a write to reads at the call, so a
   * hot key is not limited to one fsync per write). Acknowledgements still come in order: the
   * engine settles writes in the order it took them.
   */
  private serialized<T>(engineKey: Buffer, operation: () => MaybePromise<Result<T> | Issued<Result<T>>>): MaybePromise<Result<T>> {
    const run = (): MaybePromise<Result<T> | Issued<Result<T>>> => withEngineFailures(operation);
    if (this.inFlight.size === 0) return this.track(engineKey, run());
    const lockKey = engineKey.toString('latin1');
    const ahead = this.inFlight.get(lockKey);
    if (ahead === undefined) return this.track(engineKey, run(), lockKey);
    return this.track(engineKey, ahead.then(run, run), lockKey);
  }

  /**
   * Holds the key's place in line while `result` is still reading (a Promise that resolves once
   * the write is issued) and returns what the caller awaits: the outcome once it is durable.
   */
  private track<T>(engineKey: Buffer, result: MaybePromise<Result<T> | Issued<Result<T>>>, knownLockKey?: string): MaybePromise<Result<T>> {
    if (!(result instanceof Promise)) return result instanceof Issued ? result.settled : result;
    // Made only here: an operation that finished at once (the memory engine, a cached read) needs no lock key.
    const lockKey = knownLockKey ?? engineKey.toString('latin1');
    const turn = result.then(() => undefined);
    this.inFlight.set(lockKey, turn);
    const release = (): void => {
      if (this.inFlight.get(lockKey) === turn) this.inFlight.delete(lockKey);
    };
    turn.then(release, release);
    return result.then((value) => (value instanceof Issued ? value.settled : value));
  }


  private validate(namespace: string, key: Uint8Array, value: Uint8Array | undefined): Failure | undefined {
    if (this.attached === undefined) return failure(ErrorCode.unavailable, 'the storage engine is not running (starting, restarting or shutting down)');
    if (!this.validNamespaces.has(namespace)) {
      if (!namespacePattern.test(namespace)) return namespaceFailure(namespace);
      if (this.validNamespaces.size >= validNamespacesMax) this.validNamespaces.clear();
      this.validNamespaces.add(namespace);
    }
    if (key.length === 0) return failure(ErrorCode.keyInvalid, 'the key must not be empty');
    const { keyBytesMax, valueBytesMax } = this.options.limits;
    if (key.length > keyBytesMax) return failure(ErrorCode.keyTooLarge, `the key is ${key.length} bytes; the limit is ${keyBytesMax}`);
    if (value !== undefined && value.length > valueBytesMax) {
      return failure(ErrorCode.valueTooLarge, `the value is ${value.length} bytes; the limit is ${valueBytesMax}`);
    }
    return undefined;
  }
}

function namespaceFailure(namespace: string): Failure {
  return failure(ErrorCode.namespaceInvalid, `namespace ${JSON.stringify(namespace.slice(0, 80))} must be 1-64 characters of [A-Za-z0-9_.-]`);
}

/** Contexts are encoded only when asked for: a Redis GET or SET never needs one. */
class Read implements ReadResult {
  constructor(
    readonly siblings: readonly Sibling[],
    private readonly object: StoredObject,
  ) {}

  get context(): string {
    return encodeContext(join(this.object));
  }
}

class Outcome implements WriteOutcome {
  constructor(
    readonly written: boolean,
    readonly previouslyPresent: boolean,
    /** The object after the write, or its encoding (decoded only if the context is asked for). */
    private readonly object: StoredObject | Uint8Array | undefined,
    readonly encoded: Uint8Array | undefined,
  ) {}

  get context(): string {
    if (this.object === undefined) return encodeContext([]);
    return encodeContext(join(this.object instanceof Uint8Array ? decodeHistory(this.object).history : this.object));
  }
}

function readResult(bytes: Uint8Array | undefined): ReadResult | undefined {
  return bytes === undefined ? undefined : readResultOf(decodeObject(bytes));
}

/** What a reader of `object` sees: its live siblings and its context; undefined when none live. */
export function readResultOf(object: StoredObject): ReadResult | undefined {
  const live = values(object).filter((sibling) => sibling.value !== null);
  if (live.length === 0) return undefined;
  return new Read(live, object);
}

/** A write handed to the engine: visible to reads already; `settled` resolves once it is durable. */
class Issued<T> {
  constructor(readonly settled: Promise<T>) {}
}

/** The outcome of a write the engine took: at once when it finished synchronously, else once durable. */
function issued<T>(write: MaybePromise<void>, outcome: Result<T>): Result<T> | Issued<Result<T>> {
  return write instanceof Promise ? new Issued(write.then(() => outcome, engineFailure)) : outcome;
}

/**
 * Runs an engine operation, turning the engine's own errors (disk full, corruption, closed while
 * restarting) into failures the client sees with their code and message, instead of an internal
 * error; anything else is a bug and still throws.
 */
function withEngineFailures<T>(operation: () => MaybePromise<Result<T> | Issued<Result<T>>>): MaybePromise<Result<T> | Issued<Result<T>>> {
  try {
    const result = operation();
    return result instanceof Promise ? result.catch(engineFailure) : result;
  } catch (error) {
    return engineFailure(error);
  }
}

function engineFailure(error: unknown): Failure {
  if (error instanceof RingkvError) return failure(error.code, error.message);
  throw error;
}
