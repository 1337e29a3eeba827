import { Buffer } from 'node:buffer';
import { assert } from '../../core/assert.js';

/**
 * The memtable: the newest entry per key written since the last flush, sorted by key (LevelDB's
 * MemTable, one entry per key instead of one per sequence number). A delete is an entry too, a
 * tombstone with value null, so that it shadows older values in frozen memtables and SSTables.
 *
 * Layout. Keys and values are held as latin1 strings, one char per byte (as in the memory
 * engine): JS string order is then unsigned byte order, and a string is a private copy that
 * never pins the buffer the bytes arrived in. A Map serves point reads and overwrites in O(1);
 * key order is kept lazily (`SortedKeys`): a key seen for the first time is appended to a pending
 * list, and the first ordered read after that sorts the pending keys (one native string sort)
 * and merges them into the sorted array. Writes thus cost a Map operation, not an ordered insert
 * (a skip list insert took a quarter of the CPU of a random fill: pointer chasing and string
 * compares on every level); ordered reads are rare — a flush, a scan. Both structures point at
 * one mutable `Cell` per key, so an overwrite allocates only the new value string.
 *
 * Lifecycle. A memtable takes writes until the engine calls `freeze()` (when `sizeBytes` reaches
 * `--memtable-size-bytes`); from then on it is immutable, a write is a bug (assertion), and it
 * is read and flushed while a new memtable takes writes.
 *
 * Iteration and concurrent writes. `entries()` on a frozen memtable walks the sorted keys lazily:
 * nothing can change under it. On an active memtable it copies the entries of the range at the
 * call (not at the first `next()`) and iterates the copy: a snapshot, O(entries in range) time
 * and memory, unaffected by later writes. Long scans should therefore be bounded ranges or read
 * frozen memtables.
 *
 * Sequence numbers. Every write carries its own sequence number (a batch of n operations takes n
 * of them, as in LevelDB), and a key's sequence only grows: writing a key with a sequence at or
 * below the one stored for it is a bug (assertion), because a reader merging this memtable with
 * older ones and SSTables orders versions of a key by sequence alone.
 */

/**
 * Bytes charged per entry on top of its key and value bytes: the V8 heap cost of one key — the
 * cell, the Map slot, the sorted-array slot and two string headers. Measured on Node 20 with the
 * earlier skip-list layout (its nodes cost more than array slots), 1e6 entries of 16-byte keys and
 * 10-, 100- and 1000-byte values: 216-222 bytes; kept as a conservative bound. `sizeBytes` is an
 * estimate for deciding when to flush, not a heap count.
 */
export const memtableEntryOverheadBytes = 224;


export interface MemtableEntry {
  readonly key: Uint8Array;
  /** null: a tombstone. */
  readonly value: Uint8Array | null;
  readonly sequence: number;
}

/** Every key in [start, end) (end undefined: to the end) written before `sequence` is deleted. */
export interface RangeTombstone {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
  readonly sequence: number;
}

export interface MemtableLookup {
  /** null: the key was deleted (a tombstone shadows older data). */
  readonly value: Uint8Array | null;
  readonly sequence: number;
}

/** A key range: `gte` inclusive, `lt` exclusive; an absent bound is open. */
export interface MemtableRange {
  readonly gte?: Uint8Array | undefined;
  readonly lt?: Uint8Array | undefined;
}


/** The newest entry of one key; mutated in place on overwrite while the memtable is active. */
interface Cell {
  /** latin1 bytes of the value; null for a tombstone. */
  value: string | null;
  sequence: number;
}

export class Memtable {
  private readonly cells = new Map<string, Cell>();
  private readonly keysOrdered = new SortedKeys(this.cells);
  private frozenFlag = false;
  private sizeBytesTotal = 0;
  private readonly ranges: RangeTombstone[] = [];
  private liveKeys = 0;
  private liveBytesTotal = 0;
  private sequenceSmallest = Number.POSITIVE_INFINITY;
  private sequenceLargest = Number.NEGATIVE_INFINITY;

  /** Approximate memory: the sum over entries of key bytes + value bytes + memtableEntryOverheadBytes. */
  get sizeBytes(): number {
    return this.sizeBytesTotal;
  }

  /** Keys held, tombstones included. */
  get count(): number {
    return this.cells.size;
  }

  /** True when nothing was written: no key and no range deletion. */
  get empty(): boolean {
    return this.cells.size === 0 && this.ranges.length === 0;
  }

  /** Range deletions written here, oldest first. */
  get rangeTombstones(): readonly RangeTombstone[] {
    return this.ranges;
  }

  /** Keys whose newest entry here is a value, not a tombstone. */
  get liveCount(): number {
    return this.liveKeys;
  }

  /** Key plus value bytes of the live keys (no overhead): what the engine reports as data size. */
  get liveBytes(): number {
    return this.liveBytesTotal;
  }

  get frozen(): boolean {
    return this.frozenFlag;
  }

  /** The smallest sequence number of any write applied (overwritten ones too); undefined when empty. */
  get smallestSequence(): number | undefined {
    return this.empty ? undefined : this.sequenceSmallest;
  }

  /** The largest sequence number of any write applied; undefined when empty. */
  get largestSequence(): number | undefined {
    return this.empty ? undefined : this.sequenceLargest;
  }

  put(key: Uint8Array, value: Uint8Array, sequence: number): void {
    assert(value instanceof Uint8Array, 'memtable put: value must be a Uint8Array');
    this.write(key, latin1FromBytes(value), sequence);
  }

  /** Records a tombstone for `key` (even when the key is not here: older data may hold it). */
  delete(key: Uint8Array, sequence: number): void {
    this.write(key, null, sequence);
  }

  /**
   * Records a range deletion, and turns the live keys it covers here into tombstones (so counts
   * stay exact and a flush writes less). Older memtables and tables are not touched: readers
   * compare sequences (an entry under a newer range tombstone is deleted), and flushes and
   * compactions drop covered entries.
   */
  deleteRange(start: Uint8Array, end: Uint8Array | undefined, sequence: number): void {
    assert(!this.frozenFlag, 'memtable: range deletion in a frozen memtable');
    assert(Number.isSafeInteger(sequence) && sequence >= 1, () => `memtable deleteRange: sequence must be a safe integer >= 1, got ${sequence}`);
    const last = this.ranges[this.ranges.length - 1];
    assert(last === undefined || sequence > last.sequence, 'memtable deleteRange: sequences must grow');
    this.ranges.push({ start: Buffer.from(start), end: end === undefined ? undefined : Buffer.from(end), sequence });
    const bounds = { gte: latin1FromBytes(start), lt: end === undefined ? undefined : latin1FromBytes(end) };
    for (const [key, cell] of this.keysOrdered.entries(bounds)) {
      if (cell.value === null) continue;
      this.liveKeys -= 1;
      this.liveBytesTotal -= key.length + cell.value.length;
      this.sizeBytesTotal -= cell.value.length;
      cell.value = null;
      cell.sequence = sequence;
    }
    this.sizeBytesTotal += start.length + (end?.length ?? 0) + memtableEntryOverheadBytes;
    if (sequence < this.sequenceSmallest) this.sequenceSmallest = sequence;
    if (sequence > this.sequenceLargest) this.sequenceLargest = sequence;
  }

  /** The newest entry of `key`, its value a fresh copy; undefined when this memtable has none. */
  get(key: Uint8Array): MemtableLookup | undefined {
    assert(key instanceof Uint8Array, 'memtable get: key must be a Uint8Array');
    const cell = this.cells.get(latin1FromBytes(key));
    if (cell === undefined) return undefined;
    return { value: cell.value === null ? null : Buffer.from(cell.value, 'latin1'), sequence: cell.sequence };
  }

  /**
   * Entries within `range` in key order (descending when `reverse`), keys and values as fresh
   * copies. Frozen: a lazy walk. Active: a snapshot copied now (see the module comment).
   */
  entries(range: MemtableRange = {}, reverse = false): IterableIterator<MemtableEntry> {
    const bounds = {
      gte: range.gte === undefined ? undefined : latin1FromBytes(range.gte),
      lt: range.lt === undefined ? undefined : latin1FromBytes(range.lt),
      reverse,
    };
    if (this.frozenFlag) return toEntries(this.keysOrdered.entries(bounds));
    const snapshot: [string, Cell][] = [];
    for (const [key, cell] of this.keysOrdered.entries(bounds)) {
      // A copy of the cell: the live one is mutated by later overwrites.
      snapshot.push([key, { value: cell.value, sequence: cell.sequence }]);
    }
    return toEntries(snapshot.values());
  }

  /** Makes the memtable immutable; later writes fail an assertion. Idempotent. */
  freeze(): void {
    this.frozenFlag = true;
  }

  /** Checks the structure and the size accounting: O(n). For tests, not the hot path. */
  invariants(): void {
    this.keysOrdered.invariants();
    assert(this.keysOrdered.size === this.cells.size, 'memtable: sorted keys and map disagree on count');
    let sizeBytes = 0;
    let live = 0;
    let liveBytes = 0;
    for (const [key, cell] of this.keysOrdered.entries()) {
      if (cell.value !== null) {
        live += 1;
        liveBytes += key.length + cell.value.length;
      }
      assert(this.cells.get(key) === cell, () => `memtable: map and skip list disagree on ${JSON.stringify(key)}`);
      assert(cell.sequence >= this.sequenceSmallest && cell.sequence <= this.sequenceLargest, 'memtable: sequence out of bounds');
      sizeBytes += entrySizeBytes(key, cell.value);
    }
    for (const range of this.ranges) sizeBytes += range.start.length + (range.end?.length ?? 0) + memtableEntryOverheadBytes;
    assert(sizeBytes === this.sizeBytesTotal, () => `memtable: sizeBytes ${this.sizeBytesTotal}, entries add up to ${sizeBytes}`);
    assert(live === this.liveKeys && liveBytes === this.liveBytesTotal, () => `memtable: live ${this.liveKeys}/${this.liveBytesTotal}, entries add up to ${live}/${liveBytes}`);
  }

  private write(keyBytes: Uint8Array, value: string | null, sequence: number): void {
    assert(!this.frozenFlag, 'memtable: write to a frozen memtable');
    assert(keyBytes instanceof Uint8Array, 'memtable write: key must be a Uint8Array');
    assert(Number.isSafeInteger(sequence) && sequence >= 0, () => `memtable write: sequence must be a safe integer >= 0, got ${sequence}`);
    const key = latin1FromBytes(keyBytes);
    const cell = this.cells.get(key);
    if (cell === undefined) {
      const created: Cell = { value, sequence };
      this.cells.set(key, created);
      this.keysOrdered.add(key);
      this.sizeBytesTotal += entrySizeBytes(key, value);
    } else {
      assert(sequence > cell.sequence, () => `memtable write: sequence ${sequence} is not above the key's stored ${cell.sequence}`);
      if (cell.value !== null) {
        this.liveKeys -= 1;
        this.liveBytesTotal -= key.length + cell.value.length;
      }
      this.sizeBytesTotal += valueBytes(value) - valueBytes(cell.value);
      cell.value = value;
      cell.sequence = sequence;
    }
    if (value !== null) {
      this.liveKeys += 1;
      this.liveBytesTotal += key.length + value.length;
    }
    if (sequence < this.sequenceSmallest) this.sequenceSmallest = sequence;
    if (sequence > this.sequenceLargest) this.sequenceLargest = sequence;
  }
}

/** The size accounting of one entry; the test's model restates it. */
function entrySizeBytes(key: string, value: string | null): number {
  return key.length + valueBytes(value) + memtableEntryOverheadBytes;
}

function valueBytes(value: string | null): number {
  return value === null ? 0 : value.length;
}

function* toEntries(cells: Iterator<[string, Cell]> & Iterable<[string, Cell]>): Generator<MemtableEntry> {
  for (const [key, cell] of cells) {
    yield {
      key: Buffer.from(key, 'latin1'),
      value: cell.value === null ? null : Buffer.from(cell.value, 'latin1'),
      sequence: cell.sequence,
    };
  }
}

function latin1FromBytes(bytes: Uint8Array): string {
  if (Buffer.isBuffer(bytes)) return bytes.toString('latin1');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/**
 * Keys in order, kept lazily: `add` appends to a pending list; the first ordered read after adds
 * sorts the pending keys and merges them into the sorted arrays. Keys are never removed (a
 * delete is a tombstone cell). Adding while an iterator is suspended is a bug (asserted).
 */
class SortedKeys {
  private keys: string[] = [];
  private cells: Cell[] = [];
  private pending: string[] = [];
  /** Bumped by every merge, so a suspended iterator notices that the arrays were replaced. */
  private version = 0;

  /** `cellOf` holds every key's cell (the memtable's map): pending keys are resolved through it. */
  constructor(private readonly cellOf: ReadonlyMap<string, Cell>) {}

  get size(): number {
    return this.keys.length + this.pending.length;
  }

  add(key: string): void {
    this.pending.push(key);
  }

  *entries(bounds: { readonly gte?: string | undefined; readonly lt?: string | undefined; readonly reverse?: boolean } = {}): Generator<[string, Cell]> {
    const { gte, lt } = bounds;
    if (gte !== undefined && lt !== undefined && !(gte < lt)) return;
    this.merge();
    const keys = this.keys;
    const cells = this.cells;
    const version = this.version;
    const first = gte === undefined ? 0 : lowerBound(keys, gte);
    const end = lt === undefined ? keys.length : lowerBound(keys, lt);
    if (bounds.reverse === true) {
      for (let index = end - 1; index >= first; index--) {
        yield [keys[index]!, cells[index]!];
        assert(this.version === version && this.pending.length === 0, 'memtable: keys added during iteration');
      }
    } else {
      for (let index = first; index < end; index++) {
        yield [keys[index]!, cells[index]!];
        assert(this.version === version && this.pending.length === 0, 'memtable: keys added during iteration');
      }
    }
  }

  invariants(): void {
    for (let index = 1; index < this.keys.length; index++) assert(this.keys[index - 1]! < this.keys[index]!, 'memtable: sorted keys out of order');
    assert(this.keys.length === this.cells.length, 'memtable: sorted keys and cells differ in length');
    assert(new Set(this.pending).size === this.pending.length, 'memtable: a pending key added twice');
  }

  /** Sorts the pending keys (native string order = unsigned byte order for latin1) and merges them in. */
  private merge(): void {
    if (this.pending.length === 0) return;
    const added = this.pending.sort();
    const keys: string[] = new Array<string>(this.keys.length + added.length);
    const cells: Cell[] = new Array<Cell>(keys.length);
    let left = 0;
    let right = 0;
    for (let out = 0; out < keys.length; out++) {
      if (right >= added.length || (left < this.keys.length && this.keys[left]! < added[right]!)) {
        keys[out] = this.keys[left]!;
        cells[out] = this.cells[left++]!;
      } else {
        const key = added[right++]!;
        keys[out] = key;
        const cell = this.cellOf.get(key);
        assert(cell !== undefined, 'memtable: a pending key without a cell');
        cells[out] = cell;
      }
    }
    this.keys = keys;
    this.cells = cells;
    this.pending = [];
    this.version += 1;
  }
}

/** The first index whose key is >= `key` (the length when none). */
function lowerBound(keys: readonly string[], key: string): number {
  let low = 0;
  let high = keys.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (keys[middle]! < key) low = middle + 1;
    else high = middle;
  }
  return low;
}
