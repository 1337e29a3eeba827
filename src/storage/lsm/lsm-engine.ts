import { Buffer } from 'node:buffer';
import { assert } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import type { Clock } from '../../world/clock.js';
import { mkdirDurable, type FileSystem } from '../../world/file-system.js';
import type { BatchOperation, Engine, EngineEntry, EngineStats, KeyRange, MaybePromise, ScanRange } from '../engine.js';
import { BlockCache } from './block-cache.js';
import { bloomKeyHash } from './bloom-filter.js';
import { CommitLogWriter, type LogOperation, type SyncPolicy } from './commit-log-writer.js';
import { deleteSegmentsBefore, listSegments, replayCommitLog } from './commit-log-reader.js';
import { emptyManifest, orphanFiles, readManifest, tableFileName, writeManifest, type ManifestFile, type ManifestState } from './manifest.js';
import { Memtable, type RangeTombstone } from './memtable.js';
import { compareBytes } from './sstable-format.js';
import { SyncReadGate } from './sync-read-gate.js';
import { SstableReader, type SstableEntry } from './sstable-reader.js';
import { SstableWriter } from './sstable-writer.js';
import { mark } from '../../core/simulation-hooks.js';

/**
 * The log-structured engine (DESIGN.md, "Storage engine"): commit log -> memtable -> SSTables,
 * assembled from the pieces in this folder.
 *
 * Writes. A batch takes its sequence numbers, is queued for the commit log (group commit) and is
 * applied to the active memtable in the same synchronous step; the Promise the caller gets
 * settles when the log has it durable per the sync policy (Redis' order with appendfsync always:
 * apply, then fsync before the reply). So the next read-modify-write of a hot key does not wait
 * for the disk, and a write that a crash takes back is one that was never acknowledged.
 *
 * Flush. When the active memtable reaches `memtableSizeBytes`, it is frozen and the log rotated
 * in one synchronous step, so the frozen memtable holds exactly the writes of the segments before
 * the rotation. The background worker writes the frozen memtable as a level-0 table,
 * records it in the manifest together with the new log floor (the segment the rotation opened),
 * then deletes the segments below the floor. Recovery replays the segments from the floor.
 *
 * Compaction: leveled, as LevelDB (docs/storage-engine.md has the reasoning and the measured
 * amplification). Level 0 holds flushed tables, which may overlap; when it has
 * `level0CompactionTrigger` tables they are merged with the overlapping level-1 tables into new
 * level-1 tables. Level n >= 1 holds non-overlapping tables and may grow to
 * `level1BytesMax * levelSizeMultiplier^(n-1)`; above that, one of its tables (round robin over
 * the key space) is merged into level n+1. A merge keeps the newest entry of each key; a
 * tombstone is dropped when no deeper level holds a table overlapping the merge, so nothing older
 * can be under it. Compaction runs on the main thread in bounded slices: it yields to the event
 * loop every `compactionSliceEntries` entries, so client requests interleave with it.
 *
 * Versions. The set of frozen memtables and tables readers see is an immutable Version, swapped
 * on each flush and compaction. A scan, and a point read that has to wait for a block, holds a
 * reference to the version it started on; a table dropped by compaction is closed and deleted
 * only once no version holding it is referenced.
 *
 * Back-pressure. Writes wait (they are not refused) while `frozenMemtablesMax` memtables are
 * waiting for their flush or level 0 holds `level0StopWritesTrigger` tables.
 */

export interface LsmOptions {
  readonly syncPolicy: SyncPolicy;
  readonly syncIntervalMs: number;
  readonly memtableSizeBytes: number;
  readonly blockCacheBytes: number;
  readonly blockBytes: number;
  readonly compression: 'snappy' | 'none';
  readonly bloomBitsPerKey: number;
  readonly logSegmentBytesMax: number;
  readonly tableBytesTarget: number;
  readonly level0CompactionTrigger: number;
  readonly level0StopWritesTrigger: number;
  readonly level1BytesMax: number;
  readonly levelSizeMultiplier: number;
  readonly frozenMemtablesMax: number;
  readonly compactionSliceEntries: number;
  /**
   * Point reads that miss the block cache read their block on the calling thread while such reads
   * stay fast (page cache hits), else in the thread pool (SyncReadGate); false: always the pool.
   */
  readonly syncReads: boolean;
}

export const lsmDefaults: LsmOptions = {
  syncPolicy: 'always',
  syncIntervalMs: 1000,
  memtableSizeBytes: 64 * 1024 * 1024,
  blockCacheBytes: 64 * 1024 * 1024,
  blockBytes: 8192,
  compression: 'snappy',
  bloomBitsPerKey: 10,
  logSegmentBytesMax: 64 * 1024 * 1024,
  tableBytesTarget: 8 * 1024 * 1024,
  level0CompactionTrigger: 4,
  level0StopWritesTrigger: 12,
  level1BytesMax: 64 * 1024 * 1024,
  levelSizeMultiplier: 10,
  frozenMemtablesMax: 2,
  compactionSliceEntries: 512,
  syncReads: true,
};

/** Delay before failed background work (a flush or compaction that hit a disk error) is tried again. */
export const backgroundRetryMs = 1000;

/** Levels 0..levelsMax-1; the last one has no size limit. */
export const levelsMax = 7;

/** What the engine reports as it works (the node logs these). */
export type LsmEvent =
  | { readonly kind: 'recovered'; readonly records: number; readonly operations: number; readonly truncatedBytes: number; readonly tables: number; readonly orphansRemoved: number; readonly ms: number }
  | { readonly kind: 'flushed'; readonly entries: number; readonly fileBytes: number; readonly ms: number }
  | { readonly kind: 'compacted'; readonly level: number; readonly inputTables: number; readonly outputTables: number; readonly bytesRead: number; readonly bytesWritten: number; readonly ms: number }
  | { readonly kind: 'background-error'; readonly message: string }
  /** The commit log cannot be written (disk full, I/O error): writes fail until the engine is reopened. */
  | { readonly kind: 'log-failed'; readonly message: string };

export interface LsmWorld {
  readonly fs: FileSystem;
  readonly clock: Clock;
  /** Lets other work run between compaction slices; default: the next turn of the event loop. */
  readonly yieldNow?: (() => Promise<void>) | undefined;
  readonly onEvent?: (event: LsmEvent) => void;
}

/** Figures for status and benchmarks. */
export interface LsmDetails {
  readonly levels: readonly { readonly tables: number; readonly bytes: number }[];
  readonly memtableBytes: number;
  readonly frozenMemtables: number;
  /** `syncReadsToPool`: times slow synchronous block reads sent reads to the thread pool a while (SyncReadGate). */
  readonly cache: { readonly bytes: number; readonly hits: number; readonly misses: number; readonly slowSyncReads: number; readonly syncReadsToPool: number };
  /** Bytes written to tables by flushes and compactions, to the commit log, and bytes the clients wrote (keys + values), since open. */
  readonly bytesFlushed: number;
  readonly bytesLogged: number;
  readonly bytesCompacted: number;
  readonly userBytesWritten: number;
}

/** An open SSTable and how many versions hold it. */
class Table {
  versionRefs = 0;
  dropped = false;

  constructor(
    readonly file: ManifestFile,
    readonly reader: SstableReader,
    readonly path: string,
  ) {}
}

/** What readers see besides the active memtable. Immutable once built. */
class Version {
  /** The engine's own reference plus one per running scan or waiting point read. */
  refs = 1;

  constructor(
    /** Newest first. */
    readonly frozen: readonly Memtable[],
    /** levels[0]: newest first, may overlap. levels[n >= 1]: ascending, disjoint key ranges. */
    readonly levels: readonly (readonly Table[])[],
    /** Range deletions of the frozen memtables and of the manifest (the active memtable's are read live). */
    readonly ranges: readonly RangeTombstone[],
  ) {}

  *tables(): Generator<Table> {
    for (const level of this.levels) yield* level;
  }
}

interface PendingFlush {
  readonly memtable: Memtable;
  /** The log segment opened when this memtable froze: segments below it hold only its writes and older ones. */
  readonly segment: Promise<number>;
}

interface CompactionPlan {
  readonly level: number;
  readonly inputs: readonly Table[];
  readonly outputLevel: number;
}

/** Thrown inside a compaction that stops because the engine is closing. */
class CompactionStopped extends Error {}

export class LsmEngine implements Engine {
  readonly kind = 'lsm';
  private active = new Memtable();
  private version: Version;
  private readonly flushQueue: PendingFlush[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  private closedCleanlyValue = false;
  private background: Promise<void> | undefined;
  private retryTimer: { cancel(): void } | undefined;
  /** The error of the last background step while its retry waits. */
  private retryPending: Error | undefined;
  /** Writes waiting for room (a write stall), oldest first: they go in this order, before any later write. */
  private readonly roomQueue: { readonly write: () => Promise<void>; readonly resolve: () => void; readonly reject: (error: unknown) => void }[] = [];
  /**
   * Writes waiting for room (a write stall), by key (latin1): the newest value (undefined: a
   * delete) and how many of them wait, so that reads see them before they reach the memtable.
   */
  private readonly waitingForRoom = new Map<string, { value: Uint8Array | undefined; writes: number }>();
  private readonly compactPointers: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(levelsMax).fill(undefined);
  private bytesFlushed = 0;
  private bytesCompacted = 0;
  private userBytesWritten = 0;
  /** File ids handed to tables being written, not yet recorded in the manifest. */
  private reservedIds = 0;
  /** Set when the commit log failed: every later call fails with it (see `append`). */
  private logFailure: RingkvError | undefined;
  /** Range deletions whose fully covered tables the background worker has yet to drop. */
  private readonly pendingRangeDrops: RangeTombstone[] = [];
  private readonly yieldNow: () => Promise<void>;

  private constructor(
    private readonly world: LsmWorld,
    private readonly dir: string,
    private readonly options: LsmOptions,
    private readonly cache: BlockCache,
    private readonly syncReads: SyncReadGate | undefined,
    private writer: CommitLogWriter,
    private manifest: ManifestState,
    levels: Table[][],
    recovered: Memtable,
  ) {
    this.active = recovered;
    this.version = new Version([], levels, manifestRanges(manifest));
    for (const table of this.version.tables()) table.versionRefs += 1;
    this.yieldNow = world.yieldNow ?? (() => new Promise<void>((resolve) => setImmediate(resolve)));
  }

  /** Opens (or creates) the engine in `dir`: reads the manifest, removes orphans, replays the log. */
  static async open(world: LsmWorld, dir: string, options: Partial<LsmOptions> = {}): Promise<LsmEngine> {
    const resolved: LsmOptions = { ...lsmDefaults, ...options };
    checkOptions(resolved);
    const { fs, clock } = world;
    const startedMs = clock.nowMs();
    // The directory's own entry (and its parents') must be durable before anything in it can be.
    await mkdirDurable(fs, dir);
    const manifest = (await readManifest(fs, dir)) ?? emptyManifest();
    const orphans = await orphanFiles(fs, dir, manifest);
    for (const orphan of orphans) await fs.unlink(`${dir}/${orphan}`);
    await deleteSegmentsBefore(fs, dir, manifest.logSegmentFloor);

    const cache = new BlockCache(resolved.blockCacheBytes);
    const syncReads = resolved.syncReads ? new SyncReadGate(clock) : undefined;
    const levels: Table[][] = Array.from({ length: levelsMax }, () => []);
    try {
      for (const file of manifest.files) {
        const path = `${dir}/${tableFileName(file.id)}`;
        levels[file.level]!.push(new Table(file, await SstableReader.open(fs, path, cache, syncReads), path));
      }
    } catch (error) {
      for (const table of levels.flat()) await table.reader.close();
      throw error;
    }
    levels[0]!.sort((left, right) => right.file.id - left.file.id);
    for (const level of levels.slice(1)) level.sort((left, right) => compareBytes(left.file.smallestKey, right.file.smallestKey));

    const closeTables = async (): Promise<void> => {
      for (const table of levels.flat()) await table.reader.close();
    };
    const recovered = new Memtable();
    const replay = await withCleanup(closeTables, () => replayCommitLog(fs, dir, manifest.logSegmentFloor, (firstSequence, operations) => {
      operations.forEach((operation, index) => {
        const sequence = firstSequence + index;
        if (sequence <= manifest.lastFlushedSequence) return;
        if (operation.type === 'put') recovered.put(operation.key, operation.value, sequence);
        else if (operation.type === 'delete') recovered.delete(operation.key, sequence);
        else recovered.deleteRange(operation.key, operation.end, sequence);
      });
    }));
    const segments = await listSegments(fs, dir);
    const nextSegment = Math.max(manifest.logSegmentFloor, ...segments.map((segment) => segment + 1));
    const tablesLargest = Math.max(0, ...manifest.files.map((file) => file.largestSequence));
    const nextSequence = Math.max(replay.lastSequence, manifest.lastFlushedSequence, tablesLargest) + 1;
    const writer = await withCleanup(closeTables, () => CommitLogWriter.open(
      fs,
      dir,
      {
        syncPolicy: resolved.syncPolicy,
        syncIntervalMs: resolved.syncIntervalMs,
        segmentBytesMax: resolved.logSegmentBytesMax,
        clock,
        recordBytesMax: resolved.logSegmentBytesMax,
      },
      { segment: nextSegment, nextSequence },
    ));
    const engine = new LsmEngine(world, dir, resolved, cache, syncReads, writer, manifest, levels, recovered);
    if (replay.records > 0) mark('commit-log.replayed');
    world.onEvent?.({
      kind: 'recovered',
      records: replay.records,
      operations: replay.operations,
      truncatedBytes: replay.truncatedBytes,
      tables: manifest.files.length,
      orphansRemoved: orphans.length,
      ms: Math.round(clock.nowMs() - startedMs),
    });
    engine.maybeFreeze();
    engine.kick();
    return engine;
  }

  get(key: Uint8Array): MaybePromise<Uint8Array | undefined> {
    this.checkOpen();
    if (this.waitingForRoom.size > 0) {
      const waiting = this.waitingForRoom.get(Buffer.from(key.buffer, key.byteOffset, key.length).toString('latin1'));
      if (waiting !== undefined) return waiting.value;
    }
    const version = this.version;
    const hit = this.active.get(key);
    if (hit !== undefined) return this.visible(version, key, hit);
    for (const memtable of version.frozen) {
      const found = memtable.get(key);
      if (found !== undefined) return this.visible(version, key, found);
    }
    const tables = candidateTables(version, key);
    return tables.length === 0 ? undefined : this.getFromTables(version, tables, 0, key, bloomKeyHash(key));
  }

  /** The newest entry's value, unless a newer range deletion covers the key. */
  private visible(version: Version, key: Uint8Array, entry: { readonly value: Uint8Array | null; readonly sequence: number }): Uint8Array | undefined {
    if (entry.value === null) return undefined;
    const active = this.active.rangeTombstones;
    if (version.ranges.length === 0 && active.length === 0) return entry.value;
    return Math.max(coveringSequence(version.ranges, key), coveringSequence(active, key)) > entry.sequence ? undefined : entry.value;
  }

  put(key: Uint8Array, value: Uint8Array): Promise<void> {
    return this.write([{ type: 'put', key, value }]);
  }

  delete(key: Uint8Array): Promise<void> {
    return this.write([{ type: 'delete', key }]);
  }

  batch(operations: readonly BatchOperation[]): Promise<void> {
    return this.write(operations);
  }

  deleteRange(range: KeyRange): Promise<void> {
    return settledAsPromise(() => this.deleteRangeNow(range));
  }

  private deleteRangeNow(range: KeyRange): Promise<void> {
    this.checkOpen();
    const start = Buffer.from(range.gte ?? new Uint8Array(0));
    const end = range.lt === undefined ? undefined : Buffer.from(range.lt);
    if (end !== undefined && compareBytes(start, end) >= 0) return Promise.resolve();
    return this.whenRoom(() => this.append([{ type: 'deleteRange', key: start, end }]));
  }

  scan(range: ScanRange = {}): AsyncIterable<EngineEntry> {
    return this.scanEntries(range);
  }

  stats(): EngineStats {
    this.checkOpen();
    let keyCount = this.active.liveCount;
    let sizeBytes = this.active.liveBytes;
    for (const memtable of this.version.frozen) {
      keyCount += memtable.liveCount;
      sizeBytes += memtable.liveBytes;
    }
    for (const table of this.version.tables()) {
      keyCount += table.file.entries;
      sizeBytes += table.file.fileBytes;
    }
    return { keyCount, sizeBytes };
  }

  details(): LsmDetails {
    this.checkOpen();
    return {
      levels: this.version.levels.map((level) => ({ tables: level.length, bytes: levelBytes(level) })),
      memtableBytes: this.active.sizeBytes,
      frozenMemtables: this.version.frozen.length,
      cache: { bytes: this.cache.sizeBytes, hits: this.cache.hits, misses: this.cache.misses, slowSyncReads: this.syncReads?.slowReads ?? 0, syncReadsToPool: this.syncReads?.switchesToPool ?? 0 },
      bytesFlushed: this.bytesFlushed,
      bytesLogged: this.writer.bytesWritten,
      bytesCompacted: this.bytesCompacted,
      userBytesWritten: this.userBytesWritten,
    };
  }

  /** Resolves once no flush or compaction is due (for tests and benchmarks). */
  async settle(): Promise<void> {
    for (;;) {
      this.checkOpen();
      // Background work failed and waits for its retry: report why instead of spinning.
      if (this.retryPending !== undefined) throw this.retryPending;
      if (this.background !== undefined) await this.background;
      else if (this.flushQueue.length > 0 || this.pickCompaction() !== undefined) this.kick();
      else return;
    }
  }

  /** Freezes the active memtable now and waits for everything to be flushed and compacted. */
  async flush(): Promise<void> {
    this.checkOpen();
    if (!this.active.empty) this.freeze();
    await this.settle();
  }

  /**
   * True once close() finished with every accepted write durable: no commit-log failure, the
   * final fsync done. False while open, and after a close that may have lost unsynced writes.
   */
  get closedCleanly(): boolean {
    return this.closedCleanlyValue;
  }

  close(): Promise<void> {
    if (this.closing === undefined) {
      this.closed = true;
      this.retryTimer?.cancel();
      this.closing = (async () => {
        await this.background?.catch(() => undefined);
        this.closedCleanlyValue = await this.writer.close().then(
          () => this.logFailure === undefined && !this.writer.failed,
          () => false,
        );
        this.wakeWaiters();
        for (const table of this.version.tables()) await table.reader.close();
      })();
    }
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closed) throw new RingkvError(ErrorCode.engineClosed, 'the lsm engine is closed');
    if (this.logFailure !== undefined) throw this.logFailure;
  }

  private write(operations: readonly BatchOperation[]): Promise<void> {
    return settledAsPromise(() => this.writeNow(operations));
  }

  private writeNow(operations: readonly BatchOperation[]): Promise<void> {
    this.checkOpen();
    if (operations.length === 0) return Promise.resolve();
    // Applied now, the log record and the memtable copy the bytes before this returns. A write
    // that has to wait for room takes private copies: the caller may reuse its buffers.
    if (!this.mustWait()) return this.append(operations);
    const copies = operations.map((operation): BatchOperation =>
      operation.type === 'put'
        ? { type: 'put', key: Buffer.from(operation.key), value: Buffer.from(operation.value) }
        : { type: 'delete', key: Buffer.from(operation.key) },
    );
    // Reads see the write at once, as the Engine contract says, while it waits: a caller's next
    // read-modify-write of the key must build on it (the simulator found a dot given twice when
    // a coordinated write stalled and the next write of its key read the value before it).
    const names = copies.map((operation) => Buffer.from(operation.key).toString('latin1'));
    copies.forEach((operation, index) => {
      const name = names[index] as string;
      const waiting = this.waitingForRoom.get(name);
      const value = operation.type === 'put' ? operation.value : undefined;
      this.waitingForRoom.set(name, { value, writes: (waiting?.writes ?? 0) + 1 });
    });
    const applied = (): void => {
      for (const name of names) {
        const waiting = this.waitingForRoom.get(name);
        if (waiting === undefined) continue;
        if (waiting.writes <= 1) this.waitingForRoom.delete(name);
        else waiting.writes -= 1;
      }
    };
    return this.whenRoom(() => {
      // In the memtable from here on (or failed, and then nothing is served until a reopen).
      applied();
      return this.append(copies);
    });
  }

  /**
   * Appends to the log and applies to the active memtable at once (as Redis applies a write
   * before its fsync): a later read of the key, and the next read-modify-write of it, see the
   * write without waiting for the disk; the returned Promise settles when the write is durable.
   * A crash before that loses the write, which was never acknowledged.
   */
  private append(operations: readonly LogOperation[]): Promise<void> {
    this.checkOpen();
    const firstSequence = this.writer.nextSequence;
    const durable = this.writer.append(operations);
    // The writer takes sequence numbers only for appends it accepted.
    if (this.writer.nextSequence === firstSequence + operations.length) this.apply(operations, firstSequence);
    return durable.then(
      () => undefined,
      (error: unknown) => {
        if (this.writer.failed && this.logFailure === undefined) {
          // Fail-stop: the memtable may hold writes the log lost, so nothing more is served
          // until the engine is reopened from what is durable (the node's supervisor does it).
          const message = error instanceof Error ? error.message : String(error);
          this.logFailure = new RingkvError(ErrorCode.unavailable, `${message}; the engine serves nothing more until it is reopened`);
          this.world.onEvent?.({ kind: 'log-failed', message });
          this.wakeWaiters(); // writes waiting for room fail now instead of waiting for a flush
        }
        throw error;
      },
    );
  }

  /** Puts a durable batch into the active memtable (in log order: sequences only grow). */
  private apply(operations: readonly LogOperation[], firstSequence: number): void {
    operations.forEach((operation, index) => {
      const sequence = firstSequence + index;
      if (operation.type === 'put') {
        this.active.put(operation.key, operation.value, sequence);
        this.userBytesWritten += operation.key.length + operation.value.length;
      } else if (operation.type === 'delete') {
        this.active.delete(operation.key, sequence);
        this.userBytesWritten += operation.key.length;
      } else {
        this.active.deleteRange(operation.key, operation.end, sequence);
        this.pendingRangeDrops.push({ start: operation.key, end: operation.end, sequence });
        this.kick();
      }
    });
    this.maybeFreeze();
  }

  /** Runs `write` now, or once flushes and compactions have made room (write stall). */
  private whenRoom(write: () => Promise<void>): Promise<void> {
    // Behind the writes already waiting even when there is room now: a write that overtook a
    // waiting one of the same key would be overwritten by it (the simulator found the older
    // value back after a stall).
    if (!this.mustWait()) return settledAsPromise(write);
    mark('lsm.write-stalled');
    return new Promise<void>((resolve, reject) => this.roomQueue.push({ write, resolve, reject }));
  }

  /** A write now waits: no room, or earlier writes still wait for it. */
  private mustWait(): boolean {
    return this.roomQueue.length > 0 || this.stalled();
  }

  private stalled(): boolean {
    return (
      !this.closed &&
      this.logFailure === undefined &&
      (this.version.frozen.length >= this.options.frozenMemtablesMax || (this.version.levels[0]?.length ?? 0) >= this.options.level0StopWritesTrigger)
    );
  }

  /** Room may have come (or writing failed for good): waiting writes go, in order, while there is room. */
  private wakeWaiters(): void {
    while (this.roomQueue.length > 0 && !this.stalled()) {
      const next = this.roomQueue.shift()!;
      settledAsPromise(next.write).then(next.resolve, next.reject);
    }
  }

  /** `hash`: the key's bloomKeyHash, computed once for every table asked. */
  private getFromTables(version: Version, tables: readonly Table[], start: number, key: Uint8Array, hash: Uint32Array): MaybePromise<Uint8Array | undefined> {
    for (let index = start; index < tables.length; index++) {
      const found = tables[index]!.reader.get(key, hash);
      if (found instanceof Promise) {
        version.refs += 1;
        return found
          .then((entry) => (entry === undefined ? this.getFromTables(version, tables, index + 1, key, hash) : this.visible(version, key, entry)))
          .finally(() => this.release(version));
      }
      if (found !== undefined) return this.visible(version, key, found);
    }
    return undefined;
  }

  private async *scanEntries(range: ScanRange): AsyncGenerator<EngineEntry> {
    this.checkOpen();
    const { gte, lt, limit, reverse = false } = range;
    if (limit === 0 || (gte !== undefined && lt !== undefined && compareBytes(gte, lt) >= 0)) return;
    const version = this.version;
    version.refs += 1;
    const ranges = [...version.ranges, ...this.active.rangeTombstones];
    const sources: AsyncIterator<SstableEntry>[] = [
      fromSync(this.active.entries({ gte, lt }, reverse)),
      ...version.frozen.map((memtable) => fromSync(memtable.entries({ gte, lt }, reverse))),
      ...version.levels[0]!.map((table) => tableScan(table, { gte, lt }, reverse)),
      ...version.levels.slice(1).map((level) => levelScan(level, { gte, lt }, reverse)),
    ];
    const merged = mergeSources(sources, reverse);
    try {
      let yielded = 0;
      for (;;) {
        let next: IteratorResult<SstableEntry>;
        try {
          next = await merged.next();
        } catch (error) {
          // Closing the engine closes the tables under a running scan: report that, not the symptom.
          this.checkOpen();
          throw error;
        }
        this.checkOpen();
        if (next.done === true) return;
        const entry = next.value;
        if (entry.value === null || (ranges.length > 0 && coveringSequence(ranges, entry.key) > entry.sequence)) continue;
        yield { key: entry.key, value: entry.value };
        yielded += 1;
        if (limit !== undefined && yielded >= limit) return;
      }
    } finally {
      await merged.return(undefined).catch(() => undefined);
      await Promise.all(sources.map((source) => source.return?.()));
      this.release(version);
    }
  }

  /** Freezes the active memtable when it is full (and no freeze is under way). */
  private maybeFreeze(): void {
    if (this.closed || this.active.sizeBytes < this.options.memtableSizeBytes) return;
    this.freeze();
  }

  /**
   * Freezes the active memtable and rotates the log in the same synchronous step: every append
   * made so far is in the memtable and in the segments before the rotation, every later one in
   * the new memtable and segment. The flush waits for the rotation to settle.
   */
  private freeze(): void {
    const segment = this.writer.rotate();
    segment.catch(() => undefined); // the flush that awaits it reports a failure
    const memtable = this.active;
    memtable.freeze();
    this.active = new Memtable();
    this.install(this.makeVersion([memtable, ...this.version.frozen], this.version.levels));
    this.flushQueue.push({ memtable, segment });
    this.kick();
  }

  /** Starts the background worker unless it runs. */
  private kick(): void {
    if (this.background !== undefined || this.closed) return;
    this.background = this.runBackground()
      .catch((error: unknown) => {
        if (error instanceof CompactionStopped) return;
        this.reportBackgroundError(error);
        this.retryPending = error instanceof Error ? error : new Error(String(error));
        this.retryTimer = this.world.clock.setTimer(backgroundRetryMs, () => {
          this.retryPending = undefined;
          this.kick();
        });
      })
      .finally(() => {
        this.background = undefined;
        this.wakeWaiters();
        // Work queued between the worker's last look and now (a freeze in that gap) starts here.
        if (this.retryPending === undefined && (this.flushQueue.length > 0 || this.pendingRangeDrops.length > 0)) this.kick();
      });
  }

  private async runBackground(): Promise<void> {
    while (!this.closed) {
      const flush = this.flushQueue[0];
      const rangeDrop = this.pendingRangeDrops.shift();
      if (rangeDrop !== undefined) {
        await this.dropCoveredTables(rangeDrop);
      } else if (flush !== undefined) {
        await this.flushMemtable(flush);
        this.flushQueue.shift();
      } else {
        const plan = this.pickCompaction();
        if (plan === undefined) return;
        await this.compact(plan);
      }
      this.wakeWaiters();
    }
  }

  private async flushMemtable(flush: PendingFlush): Promise<void> {
    const startedMs = this.world.clock.nowMs();
    const { memtable } = flush;
    const segment = await flush.segment;
    const added: Table[] = [];
    if (memtable.count > 0) {
      const outputs = await this.writeTables(fromSync(memtable.entries()), 0, false, Number.POSITIVE_INFINITY);
      added.push(...outputs);
    }
    const largest = memtable.largestSequence ?? 0;
    await this.commitOrDiscard(added, {
      removed: [],
      added,
      logSegmentFloor: segment,
      lastFlushedSequence: Math.max(this.manifest.lastFlushedSequence, largest),
      newRanges: memtable.rangeTombstones,
    });
    const newest = this.version.frozen.filter((candidate) => candidate !== memtable);
    this.install(this.makeVersion(newest, withTables(this.version.levels, [], added)));
    await deleteSegmentsBefore(this.world.fs, this.dir, segment);
    const fileBytes = added.reduce((sum, table) => sum + table.file.fileBytes, 0);
    this.bytesFlushed += fileBytes;
    mark('lsm.flushed');
    this.world.onEvent?.({ kind: 'flushed', entries: memtable.count, fileBytes, ms: Math.round(this.world.clock.nowMs() - startedMs) });
  }

  /**
   * The most urgent compaction, by LevelDB's scores: level 0's table count over its trigger, a
   * deeper level's bytes over its limit; the highest score at or above 1 wins. (Always serving
   * level 0 first lets level 1 grow far past its limit when keys are random, and then every
   * level-0 compaction rewrites all of it.)
   */
  private pickCompaction(): CompactionPlan | undefined {
    const levels = this.version.levels;
    let best: { level: number; score: number } | undefined;
    const level0Score = levels[0]!.length / this.options.level0CompactionTrigger;
    if (level0Score >= 1) best = { level: 0, score: level0Score };
    for (let level = 1; level < levelsMax - 1; level++) {
      const score = levelBytes(levels[level]!) / this.levelBytesMax(level);
      if (score > 1 && (best === undefined || score > best.score)) best = { level, score };
    }
    if (best === undefined) return undefined;
    if (best.level === 0) {
      const inputs = [...levels[0]!];
      const { smallest, largest } = keySpan(inputs);
      return { level: 0, inputs: [...inputs, ...overlapping(levels[1]!, smallest, largest)], outputLevel: 1 };
    }
    const tables = levels[best.level]!;
    const pointer = this.compactPointers[best.level];
    const chosen = tables.find((table) => pointer === undefined || compareBytes(table.file.smallestKey, pointer) > 0) ?? tables[0]!;
    const below = overlapping(levels[best.level + 1]!, chosen.file.smallestKey, chosen.file.largestKey);
    return { level: best.level, inputs: [chosen, ...below], outputLevel: best.level + 1 };
  }

  private levelBytesMax(level: number): number {
    return this.options.level1BytesMax * this.options.levelSizeMultiplier ** (level - 1);
  }

  private async compact(plan: CompactionPlan): Promise<void> {
    const startedMs = this.world.clock.nowMs();
    // Round robin over the key space: the next compaction of this level starts after these keys.
    if (plan.level > 0) this.compactPointers[plan.level] = plan.inputs[0]!.file.largestKey;
    const { smallest, largest } = keySpan(plan.inputs);
    const deeper = this.version.levels.slice(plan.outputLevel + 1).some((level) => overlapping(level, smallest, largest).length > 0);
    // Newest first, so that the merge keeps the newest entry of a key (sequence decides anyway).
    const sources = plan.inputs.map((table) => table.reader.scan({}, { fillCache: false })[Symbol.asyncIterator]());
    const added = await this.writeTables(mergeSources(sources, false)[Symbol.asyncIterator](), plan.outputLevel, !deeper, this.options.tableBytesTarget);
    await this.commitOrDiscard(added, { removed: plan.inputs, added, logSegmentFloor: this.manifest.logSegmentFloor, lastFlushedSequence: this.manifest.lastFlushedSequence, newRanges: [] });
    for (const table of plan.inputs) table.dropped = true;
    this.install(this.makeVersion(this.version.frozen, withTables(this.version.levels, plan.inputs, added)));
    const bytesRead = plan.inputs.reduce((sum, table) => sum + table.file.fileBytes, 0);
    const bytesWritten = added.reduce((sum, table) => sum + table.file.fileBytes, 0);
    this.bytesCompacted += bytesWritten;
    mark('lsm.compacted');
    this.world.onEvent?.({
      kind: 'compacted',
      level: plan.level,
      inputTables: plan.inputs.length,
      outputTables: added.length,
      bytesRead,
      bytesWritten,
      ms: Math.round(this.world.clock.nowMs() - startedMs),
    });
  }

  /**
   * Writes the entries (key order, unique keys) as tables of `level`, cut at `tableBytesTarget`;
   * tombstones are left out when `dropTombstones`. Yields to the event loop between slices.
   */
  private async writeTables(entries: AsyncIterator<SstableEntry>, level: number, dropTombstones: boolean, tableBytesTarget: number): Promise<Table[]> {
    const written: Table[] = [];
    let writer: SstableWriter | undefined;
    let id = 0;
    let rawBytes = 0;
    let sinceYield = 0;
    const finishTable = async (): Promise<void> => {
      if (writer === undefined) return;
      const info = await writer.finish();
      writer = undefined;
      const file: ManifestFile = { id, level, ...info };
      const reader = await SstableReader.open(this.world.fs, info.path, this.cache, this.syncReads);
      written.push(new Table(file, reader, info.path));
    };
    try {
      for (let next = await entries.next(); next.done !== true; next = await entries.next()) {
        if (this.closed) throw new CompactionStopped();
        const entry = next.value;
        if (entry.value === null && dropTombstones) continue;
        if (this.coveredByRangeDeletion(entry)) continue;
        if (writer === undefined) {
          id = this.manifest.nextFileId + this.reservedIds++;
          writer = await SstableWriter.create(this.world.fs, `${this.dir}/${tableFileName(id)}`, {
            blockBytes: this.options.blockBytes,
            compression: this.options.compression,
            bloomBitsPerKey: this.options.bloomBitsPerKey,
          });
          rawBytes = 0;
        }
        await writer.add(entry);
        rawBytes += entry.key.length + (entry.value?.length ?? 0);
        if (rawBytes >= tableBytesTarget) await finishTable();
        if (++sinceYield >= this.options.compactionSliceEntries) {
          sinceYield = 0;
          await this.yieldNow();
        }
      }
      await finishTable();
      return written;
    } catch (error) {
      await writer?.abort();
      for (const table of written) {
        await table.reader.close();
        await this.world.fs.unlink(table.path).catch(() => undefined);
      }
      throw error;
    } finally {
      await entries.return?.();
    }
  }

  /** Commits; when the manifest cannot be written, closes and deletes the tables written for it. */
  private async commitOrDiscard(written: readonly Table[], change: Parameters<LsmEngine['commit']>[0]): Promise<void> {
    try {
      await this.commit(change);
    } catch (error) {
      this.reservedIds = 0;
      for (const table of written) {
        await table.reader.close();
        await this.world.fs.unlink(table.path).catch(() => undefined);
      }
      throw error;
    }
  }

  /** Records a flush or compaction in a new manifest (the one durable step that makes it happen). */
  private async commit(change: {
    removed: readonly Table[];
    added: readonly Table[];
    logSegmentFloor: number;
    lastFlushedSequence: number;
    newRanges: readonly RangeTombstone[];
  }): Promise<void> {
    const removedIds = new Set(change.removed.map((table) => table.file.id));
    const files = [...this.manifest.files.filter((file) => !removedIds.has(file.id)), ...change.added.map((table) => table.file)];
    // A range deletion is kept while some table may hold a key it deletes (one older than it, in its range).
    const ranges = [...manifestRanges(this.manifest), ...change.newRanges].filter((range) =>
      files.some((file) => file.smallestSequence < range.sequence && overlapsRange(file.smallestKey, file.largestKey, range)),
    );
    const next: ManifestState = {
      version: this.manifest.version + 1,
      files,
      logSegmentFloor: change.logSegmentFloor,
      nextFileId: this.manifest.nextFileId + this.reservedIds,
      lastFlushedSequence: change.lastFlushedSequence,
      ...(ranges.length > 0 ? { rangeTombstones: ranges.map((range) => ({ start: range.start, end: range.end, sequence: range.sequence })) } : {}),
    };
    await writeManifest(this.world.fs, this.dir, next);
    this.manifest = next;
    this.reservedIds = 0;
  }

  /**
   * Drops, in one manifest change, every table that lies inside `range` and holds nothing newer
   * than it: the cheap part of a range deletion. Tables that straddle its bounds keep their
   * covered entries until compaction rewrites them.
   */
  private async dropCoveredTables(range: RangeTombstone): Promise<void> {
    const doomed = [...this.version.tables()].filter(
      (table) =>
        table.file.largestSequence < range.sequence &&
        compareBytes(table.file.smallestKey, range.start) >= 0 &&
        (range.end === undefined || compareBytes(table.file.largestKey, range.end) < 0),
    );
    if (doomed.length === 0) return;
    await this.commit({ removed: doomed, added: [], logSegmentFloor: this.manifest.logSegmentFloor, lastFlushedSequence: this.manifest.lastFlushedSequence, newRanges: [] });
    for (const table of doomed) table.dropped = true;
    this.install(this.makeVersion(this.version.frozen, withTables(this.version.levels, doomed, [])));
  }

  private coveredByRangeDeletion(entry: SstableEntry): boolean {
    const active = this.active.rangeTombstones;
    if (this.version.ranges.length === 0 && active.length === 0) return false;
    return Math.max(coveringSequence(this.version.ranges, entry.key), coveringSequence(active, entry.key)) > entry.sequence;
  }

  /** A version of these memtables and tables, with the range deletions of both and of the manifest. */
  private makeVersion(frozen: readonly Memtable[], levels: readonly (readonly Table[])[]): Version {
    return new Version(frozen, levels, [...frozen.flatMap((memtable) => memtable.rangeTombstones), ...manifestRanges(this.manifest)]);
  }

  private install(next: Version): void {
    for (const table of next.tables()) table.versionRefs += 1;
    const previous = this.version;
    this.version = next;
    this.release(previous);
  }

  private release(version: Version): void {
    version.refs -= 1;
    assert(version.refs >= 0, 'lsm: version released more often than referenced');
    if (version.refs > 0) return;
    for (const table of version.tables()) {
      table.versionRefs -= 1;
      if (table.versionRefs === 0 && table.dropped) void this.deleteTable(table);
    }
  }

  private async deleteTable(table: Table): Promise<void> {
    try {
      await table.reader.close();
      await this.world.fs.unlink(table.path);
    } catch (error) {
      // The manifest no longer names it: the next open removes it as an orphan.
      this.reportBackgroundError(error);
    }
  }

  private reportBackgroundError(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.world.onEvent?.({ kind: 'background-error', message });
  }
}

/** `operation()`, with a synchronous throw turned into a rejected Promise (write methods never throw). */
function settledAsPromise(operation: () => Promise<void>): Promise<void> {
  try {
    return operation();
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}

/** Runs `step`; if it throws, runs `cleanup` and rethrows. */
async function withCleanup<T>(cleanup: () => Promise<void>, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    await cleanup();
    throw error;
  }
}

function checkOptions(options: LsmOptions): void {
  const positive: (keyof LsmOptions)[] = [
    'syncIntervalMs',
    'memtableSizeBytes',
    'logSegmentBytesMax',
    'tableBytesTarget',
    'level0CompactionTrigger',
    'level1BytesMax',
    'frozenMemtablesMax',
    'compactionSliceEntries',
  ];
  for (const name of positive) {
    const value = options[name];
    assert(typeof value === 'number' && Number.isSafeInteger(value) && value >= 1, () => `lsm option ${name} must be an integer >= 1, got ${String(value)}`);
  }
  assert(Number.isSafeInteger(options.blockCacheBytes) && options.blockCacheBytes >= 0, 'lsm option blockCacheBytes must be an integer >= 0');
  assert(options.level0StopWritesTrigger > options.level0CompactionTrigger, 'lsm option level0StopWritesTrigger must exceed level0CompactionTrigger');
  assert(options.levelSizeMultiplier >= 2, 'lsm option levelSizeMultiplier must be >= 2');
}

/** The tables that may hold `key`, newest data first: every level-0 table, then one table per deeper level. */
function candidateTables(version: Version, key: Uint8Array): Table[] {
  const candidates: Table[] = [];
  const levels = version.levels;
  for (const table of levels[0]!) candidates.push(table);
  for (let level = 1; level < levels.length; level++) {
    const tables = levels[level]!;
    let low = 0;
    let high = tables.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareBytes(tables[middle]!.file.largestKey, key) < 0) low = middle + 1;
      else high = middle;
    }
    const table = tables[low];
    if (table !== undefined && compareBytes(table.file.smallestKey, key) <= 0) candidates.push(table);
  }
  return candidates;
}

function manifestRanges(manifest: ManifestState): RangeTombstone[] {
  return (manifest.rangeTombstones ?? []).map((range) => ({ start: range.start, end: range.end, sequence: range.sequence }));
}

/** The sequence of the newest range deletion covering `key`; 0 when none does. */
function coveringSequence(ranges: readonly RangeTombstone[], key: Uint8Array): number {
  let newest = 0;
  for (const range of ranges) {
    if (range.sequence > newest && compareBytes(key, range.start) >= 0 && (range.end === undefined || compareBytes(key, range.end) < 0)) newest = range.sequence;
  }
  return newest;
}

/** True when [smallest, largest] meets the range's [start, end). */
function overlapsRange(smallest: Uint8Array, largest: Uint8Array, range: RangeTombstone): boolean {
  return compareBytes(largest, range.start) >= 0 && (range.end === undefined || compareBytes(smallest, range.end) < 0);
}

function levelBytes(level: readonly Table[]): number {
  return level.reduce((sum, table) => sum + table.file.fileBytes, 0);
}

function keySpan(tables: readonly Table[]): { smallest: Uint8Array; largest: Uint8Array } {
  let smallest = tables[0]!.file.smallestKey;
  let largest = tables[0]!.file.largestKey;
  for (const table of tables) {
    if (compareBytes(table.file.smallestKey, smallest) < 0) smallest = table.file.smallestKey;
    if (compareBytes(table.file.largestKey, largest) > 0) largest = table.file.largestKey;
  }
  return { smallest, largest };
}

function overlapping(level: readonly Table[], smallest: Uint8Array, largest: Uint8Array): Table[] {
  return level.filter((table) => compareBytes(table.file.largestKey, smallest) >= 0 && compareBytes(table.file.smallestKey, largest) <= 0);
}

/** The levels with `removed` taken out and `added` put in (level 0 newest first, others by key). */
function withTables(levels: readonly (readonly Table[])[], removed: readonly Table[], added: readonly Table[]): Table[][] {
  const gone = new Set(removed);
  const next = levels.map((level) => level.filter((table) => !gone.has(table)));
  for (const table of added) next[table.file.level]!.push(table);
  next[0]!.sort((left, right) => right.file.id - left.file.id);
  for (const level of next.slice(1)) level.sort((left, right) => compareBytes(left.file.smallestKey, right.file.smallestKey));
  return next;
}

function fromSync(entries: Iterator<SstableEntry>): AsyncIterator<SstableEntry> {
  return {
    next: () => Promise.resolve(entries.next()),
    return: () => Promise.resolve(entries.return?.() ?? { done: true, value: undefined }),
  };
}

function tableScan(table: Table, range: { gte?: Uint8Array | undefined; lt?: Uint8Array | undefined }, reverse: boolean): AsyncIterator<SstableEntry> {
  const bounds = { ...(range.gte === undefined ? {} : { gte: range.gte }), ...(range.lt === undefined ? {} : { lt: range.lt }) };
  const iterable = reverse ? table.reader.scanReverse(bounds) : table.reader.scan(bounds);
  return iterable[Symbol.asyncIterator]();
}

/** A level's disjoint tables read one after another, only those overlapping the range. */
async function* levelScanGenerator(level: readonly Table[], range: { gte?: Uint8Array | undefined; lt?: Uint8Array | undefined }, reverse: boolean): AsyncGenerator<SstableEntry> {
  const { gte, lt } = range;
  const inRange = level.filter(
    (table) => (gte === undefined || compareBytes(table.file.largestKey, gte) >= 0) && (lt === undefined || compareBytes(table.file.smallestKey, lt) < 0),
  );
  if (reverse) inRange.reverse();
  for (const table of inRange) {
    const bounds = { ...(gte === undefined ? {} : { gte }), ...(lt === undefined ? {} : { lt }) };
    yield* reverse ? table.reader.scanReverse(bounds) : table.reader.scan(bounds);
  }
}

function levelScan(level: readonly Table[], range: { gte?: Uint8Array | undefined; lt?: Uint8Array | undefined }, reverse: boolean): AsyncIterator<SstableEntry> {
  return levelScanGenerator(level, range, reverse)[Symbol.asyncIterator]();
}

/**
 * Merges sorted sources into one sorted stream with one entry per key: among entries of equal
 * keys the highest sequence wins (tombstones included; the caller skips them).
 */
async function* mergeSources(sources: readonly AsyncIterator<SstableEntry>[], reverse: boolean): AsyncGenerator<SstableEntry> {
  const heads: (SstableEntry | undefined)[] = await Promise.all(sources.map(async (source) => (await source.next()).value as SstableEntry | undefined));
  const direction = reverse ? -1 : 1;
  for (;;) {
    let best: SstableEntry | undefined;
    for (const head of heads) {
      if (head === undefined) continue;
      if (best === undefined) {
        best = head;
        continue;
      }
      const order = compareBytes(head.key, best.key) * direction;
      if (order < 0 || (order === 0 && head.sequence > best.sequence)) best = head;
    }
    if (best === undefined) return;
    const winner = best;
    for (let index = 0; index < heads.length; index++) {
      const head = heads[index];
      if (head !== undefined && compareBytes(head.key, winner.key) === 0) {
        const next = await sources[index]!.next();
        heads[index] = next.done === true ? undefined : next.value;
      }
    }
    yield winner;
  }
}
