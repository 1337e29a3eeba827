import { Buffer } from 'node:buffer';
import { assert, unreachable } from '../core/assert.js';
import { ErrorCode, RingkvError } from '../core/errors.js';
import { SeededRandom, type Random } from '../core/random.js';
import type { BatchOperation, Engine, EngineEntry, EngineStats, KeyRange, ScanRange } from './engine.js';
import { SkipList } from './skip-list.js';

/**
 * The in-process engine (like Erlang's ETS): tests, caches, and the RESP hot path.
 *
 * Layout. Keys are held as latin1 strings (one char per byte, so JS string order is unsigned
 * byte order). `values` (a Map) serves point reads and writes; `keysOrdered` (a skip list)
 * serves scans and is touched only when a key appears or disappears, never when a value is
 * replaced. Values are held as latin1 strings too: a string is a private copy on V8's heap,
 * made in about a tenth of the time of a right-sized Uint8Array (whose backing store is
 * allocated outside the heap), compacted by the GC, and never pins the 64 KiB socket chunk a
 * value may have arrived in. A read hands out a fresh Buffer of the value. Point operations are
 * synchronous.
 *
 * Scan snapshots (copy-on-write, per open scan). A scan reads the live structures in chunks of
 * at most `scanChunkEntries` entries, each chunk copied synchronously, so a chunk is always
 * consistent. Between chunks, every write first offers the key's current value (or "absent") to
 * each open scan whose unread part of the range holds the key; the scan keeps the first such
 * value in an overlay and later prefers it to the live one. Costs: nothing for writes while no
 * scan is open; O(open scans × log) per write otherwise; an overlay entry per key written ahead
 * of a scan's cursor. A scan's snapshot is taken at its first `next()`, and it is released when
 * the scan ends, is abandoned through `return()` (a `break` out of `for await`), or the engine
 * closes. An iterator dropped mid-way without `return()` stays registered until `close()`.
 */

/** Entries copied from the live structures per step of a scan (and held per open scan). */
export const scanChunkEntriesMax = 256;

/** The seed of the level source when none is given: the shape of the skip list is reproducible. */
const levelSeedDefault = 0x5eed;

export interface MemoryEngineOptions {
  /** Source of skip-list levels; default a `SeededRandom` with a fixed seed. */
  readonly random?: Random;
  /**
   * Entries a scan copies per step, in [1, scanChunkEntriesMax]; default scanChunkEntriesMax.
   * Tests set it low so that writes land between chunks and exercise the snapshot overlay.
   */
  readonly scanChunkEntries?: number;
}

/** Opens an empty memory engine (same as `new MemoryEngine(options)`). */
export function openMemoryEngine(options: MemoryEngineOptions = {}): MemoryEngine {
  return new MemoryEngine(options);
}

export class MemoryEngine implements Engine {
  readonly kind = 'memory';
  private readonly values = new Map<string, string>();
  private readonly keysOrdered: SkipList<null>;
  private readonly random: Random;
  private readonly scanChunkEntries: number;
  /** Scans that have started and not finished: writes record pre-images for them. */
  private readonly scansOpen = new Set<ScanSnapshot>();
  /** The key last converted by keyString, and its string. */
  private lastKey: Uint8Array | undefined;
  private lastKeyString = '';
  /** Sum of key and value lengths of live entries. */
  private sizeBytes = 0;
  private closed = false;

  constructor(options: MemoryEngineOptions = {}) {
    this.random = options.random ?? new SeededRandom(levelSeedDefault);
    this.scanChunkEntries = options.scanChunkEntries ?? scanChunkEntriesMax;
    assert(
      Number.isInteger(this.scanChunkEntries) && this.scanChunkEntries >= 1 && this.scanChunkEntries <= scanChunkEntriesMax,
      () => `scanChunkEntries must be an integer in [1, ${scanChunkEntriesMax}], got ${this.scanChunkEntries}`,
    );
    this.keysOrdered = new SkipList<null>(this.random);
  }

  /** Scans started and not yet finished, returned or closed (each costs writes a little). */
  get scansOpenCount(): number {
    return this.scansOpen.size;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    this.checkOpen();
    assert(key instanceof Uint8Array, 'get: key must be a Uint8Array');
    const value = this.values.get(this.keyString(key));
    return value === undefined ? undefined : Buffer.from(value, 'latin1');
  }

  put(key: Uint8Array, value: Uint8Array): void {
    this.checkOpen();
    assert(key instanceof Uint8Array && value instanceof Uint8Array, 'put: key and value must be Uint8Arrays');
    this.putString(this.keyString(key), key.length, value);
  }

  delete(key: Uint8Array): void {
    this.checkOpen();
    assert(key instanceof Uint8Array, 'delete: key must be a Uint8Array');
    this.deleteString(this.keyString(key));
  }

  /**
   * The latin1 string of a key. A read-modify-write (every versioned write) hands the same key
   * to get and then to put: the string made for the get serves the put, once its bytes are
   * checked to be still the same, and V8 has already hashed it for the Map.
   */
  private keyString(key: Uint8Array): string {
    const last = this.lastKeyString;
    if (key === this.lastKey && sameLatin1(key, last)) return last;
    const made = latin1FromBytes(key);
    this.lastKey = key;
    this.lastKeyString = made;
    return made;
  }

  deleteRange(range: KeyRange): void {
    this.checkOpen();
    const bounds = {
      gte: range.gte === undefined ? undefined : latin1FromBytes(range.gte),
      lt: range.lt === undefined ? undefined : latin1FromBytes(range.lt),
    };
    const doomed = [...this.keysOrdered.entries(bounds)].map(([key]) => key);
    for (const key of doomed) this.deleteString(key);
  }

  /** Validates every operation first, then applies them in order without yielding: atomic. */
  batch(operations: readonly BatchOperation[]): void {
    this.checkOpen();
    assert(Array.isArray(operations), 'batch: operations must be an array');
    for (const operation of operations) checkBatchOperation(operation);
    for (const operation of operations) {
      if (operation.type === 'put') {
        this.putString(latin1FromBytes(operation.key), operation.key.length, operation.value);
      } else {
        this.deleteString(latin1FromBytes(operation.key));
      }
    }
  }

  async *scan(range: ScanRange = {}): AsyncGenerator<EngineEntry> {
    this.checkOpen();
    const snapshot = new ScanSnapshot(range);
    if (snapshot.remaining === 0) return;
    this.scansOpen.add(snapshot);
    try {
      while (true) {
        const chunk = this.readChunk(snapshot);
        if (snapshot.finished) this.scansOpen.delete(snapshot);
        for (const entry of chunk) {
          this.checkOpen();
          yield entry;
        }
        if (snapshot.finished) return;
      }
    } finally {
      this.scansOpen.delete(snapshot);
    }
  }

  stats(): EngineStats {
    this.checkOpen();
    return { keyCount: this.values.size, sizeBytes: this.sizeBytes };
  }

  /** Drops all data; later calls throw ENGINE_CLOSED (scans in progress too). Idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.lastKey = undefined;
      this.values.clear();
      this.keysOrdered.clear();
      this.scansOpen.clear();
      this.sizeBytes = 0;
    }
    return Promise.resolve();
  }

  /** `keyLength` is the byte length of `key` (equal to its string length, latin1). */
  private putString(key: string, keyLength: number, value: Uint8Array): void {
    const stored = latin1FromBytes(value);
    if (this.scansOpen.size !== 0) this.recordPreImage(key);
    const previous = this.values.get(key);
    this.values.set(key, stored);
    if (previous === undefined) {
      this.keysOrdered.set(key, null);
      this.sizeBytes += keyLength + stored.length;
    } else {
      this.sizeBytes += stored.length - previous.length;
    }
  }

  private deleteString(key: string): void {
    const previous = this.values.get(key);
    if (previous === undefined) return;
    if (this.scansOpen.size !== 0) this.recordPreImage(key);
    this.values.delete(key);
    const removed = this.keysOrdered.delete(key);
    assert(removed, 'delete: key in the map but not in the ordered keys');
    this.sizeBytes -= key.length + previous.length;
  }

  /** Before `key` changes, hands its current value to every open scan that has yet to read it. */
  private recordPreImage(key: string): void {
    const current = this.values.get(key) ?? null;
    for (const snapshot of this.scansOpen) {
      if (snapshot.isAhead(key)) snapshot.remember(key, current, this.random);
    }
  }

  /**
   * Copies the next entries of `snapshot` (at most `scanChunkEntries`, and at most what is
   * left of its limit): the live entries past the cursor, except that a key in the overlay
   * shows its value from when the scan started (null: it did not exist then).
   */
  private readChunk(snapshot: ScanSnapshot): EngineEntry[] {
    const chunkEntriesMax = Math.min(this.scanChunkEntries, snapshot.remaining);
    const bounds = snapshot.unreadBounds();
    const live = this.keysOrdered.entries(bounds);
    const overlay = snapshot.overlay?.entries(bounds);
    const chunk: EngineEntry[] = [];
    let liveNext = live.next();
    let overlayNext = overlay?.next();
    while (chunk.length < chunkEntriesMax) {
      const liveKey = liveNext.done === true ? undefined : liveNext.value[0];
      const overlayKey = overlayNext === undefined || overlayNext.done === true ? undefined : overlayNext.value[0];
      if (liveKey === undefined && overlayKey === undefined) break;
      let key: string;
      let value: string | null;
      if (overlayKey === undefined || (liveKey !== undefined && snapshot.precedes(liveKey, overlayKey))) {
        key = liveKey!;
        value = this.values.get(key)!;
        liveNext = live.next();
      } else {
        key = overlayKey;
        value = (overlayNext as IteratorYieldResult<[string, string | null]>).value[1];
        if (liveKey === overlayKey) liveNext = live.next();
        overlayNext = overlay!.next();
      }
      snapshot.cursor = key;
      if (value !== null) chunk.push({ key: Buffer.from(key, 'latin1'), value: Buffer.from(value, 'latin1') });
    }
    live.return(undefined);
    overlay?.return(undefined);
    snapshot.remaining -= chunk.length;
    if (chunk.length < chunkEntriesMax || snapshot.remaining === 0) snapshot.finished = true;
    assert(chunk.length <= chunkEntriesMax, 'scan: chunk over its bound');
    return chunk;
  }

  private checkOpen(): void {
    if (this.closed) throw new RingkvError(ErrorCode.engineClosed, 'the memory engine is closed');
  }
}

/** The state of one open scan: its range, how far it has read, and its copy-on-write overlay. */
class ScanSnapshot {
  readonly gte: string | undefined;
  readonly lt: string | undefined;
  readonly reverse: boolean;
  /** Entries still allowed by the limit. */
  remaining: number;
  /** The last key read (forward: everything <= it is read; reverse: everything >= it). */
  cursor: string | undefined = undefined;
  finished = false;
  /** Values as of the scan's start for keys written since, ahead of the cursor; null = absent. */
  overlay: SkipList<string | null> | undefined = undefined;

  constructor(range: ScanRange) {
    const { limit } = range;
    assert(limit === undefined || (Number.isSafeInteger(limit) && limit >= 0), () => `scan: limit must be a non-negative integer, got ${limit}`);
    assert(range.gte === undefined || range.gte instanceof Uint8Array, 'scan: gte must be a Uint8Array');
    assert(range.lt === undefined || range.lt instanceof Uint8Array, 'scan: lt must be a Uint8Array');
    this.gte = range.gte === undefined ? undefined : latin1FromBytes(range.gte);
    this.lt = range.lt === undefined ? undefined : latin1FromBytes(range.lt);
    this.reverse = range.reverse === true;
    this.remaining = limit ?? Number.POSITIVE_INFINITY;
  }

  /** The part of the range not read yet, as skip-list bounds. */
  unreadBounds(): { gte: string | undefined; lt: string | undefined; reverse: boolean } {
    if (this.cursor === undefined) return { gte: this.gte, lt: this.lt, reverse: this.reverse };
    // Forward: the least string greater than the cursor is the cursor followed by "\0".
    if (!this.reverse) return { gte: `${this.cursor}\u0000`, lt: this.lt, reverse: false };
    return { gte: this.gte, lt: this.cursor, reverse: true };
  }

  /** Whether `key` is in the range and not read yet. */
  isAhead(key: string): boolean {
    if (this.finished) return false;
    if (this.gte !== undefined && key < this.gte) return false;
    if (this.lt !== undefined && key >= this.lt) return false;
    if (this.cursor === undefined) return true;
    return this.reverse ? key < this.cursor : key > this.cursor;
  }

  /** Keeps the first value offered for `key`: the one it had when the scan started. */
  remember(key: string, value: string | null, random: Random): void {
    this.overlay ??= new SkipList<string | null>(random);
    if (!this.overlay.has(key)) this.overlay.set(key, value);
  }

  /** Whether `left` comes before `right` in this scan's order. */
  precedes(left: string, right: string): boolean {
    return this.reverse ? left > right : left < right;
  }
}

function checkBatchOperation(operation: BatchOperation): void {
  assert(operation.key instanceof Uint8Array, 'batch: every key must be a Uint8Array');
  switch (operation.type) {
    case 'put':
      assert(operation.value instanceof Uint8Array, 'batch: every put value must be a Uint8Array');
      return;
    case 'delete':
      return;
    default:
      unreachable(operation, 'batch: unknown operation type');
  }
}

/** The latin1 string of `bytes`: one UTF-16 unit per byte, so string order is byte order. */
function sameLatin1(bytes: Uint8Array, text: string): boolean {
  if (bytes.length !== text.length) return false;
  for (let index = 0; index < bytes.length; index++) if (bytes[index] !== text.charCodeAt(index)) return false;
  return true;
}

function latin1FromBytes(bytes: Uint8Array): string {
  if (Buffer.isBuffer(bytes)) return bytes.toString('latin1');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
