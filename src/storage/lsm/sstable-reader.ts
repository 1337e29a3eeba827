import { uncompressSync } from 'snappy';
import { assert } from '../../core/assert.js';
import type { MaybePromise } from '../engine.js';
import type { FileHandle, FileSystem } from '../../world/file-system.js';
import type { BlockCache } from './block-cache.js';
import { BloomFilter } from './bloom-filter.js';
import type { SyncReadGate } from './sync-read-gate.js';
import {
  blockChecksum,
  blockTrailerBytes,
  BlockType,
  ByteReader,
  ByteWriter,
  compareBytes,
  compareRange,
  corruption,
  DataBlockCursor,
  decodeFooter,
  footerBytes,
  readUint32,
  type BlockHandle,
} from './sstable-format.js';
import type { SstableEntry, SstableInfo } from './sstable-writer.js';

export type { SstableEntry, SstableInfo } from './sstable-writer.js';

/** Distinguishes two opens of the same path in the shared cache (a path may be reused). */
let openCount = 0;

/**
 * Reads one SSTable (docs/format/sstable.md). `open` reads and verifies the footer, filter,
 * index and properties and keeps them in memory; data blocks are read on demand, verified,
 * uncompressed and put in the shared BlockCache. A block whose checksum fails is reported as a
 * RingkvError(CORRUPTION) naming the file and offset, and is never cached nor served.
 *
 * Returned keys and values are copies the caller owns.
 */
export class SstableReader {
  /** The last key of each data block, ascending; flat, for a cache-friendly binary search. */
  private readonly index: BlockIndex;
  private readonly blocks: number;
  private readonly offsets: Float64Array;
  private readonly sizes: Uint32Array;
  /** Point reads share this cursor: they run synchronously on a cached block. */
  private readonly cursor: DataBlockCursor;
  /** One read per block in flight: concurrent cold gets of a block share it. */
  private readonly loading = new Map<number, Promise<Uint8Array>>();
  private readonly fileId: string;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    private readonly cache: BlockCache,
    private readonly filter: BloomFilter,
    index: BlockIndex,
    readonly info: SstableInfo,
    private readonly syncReads: SyncReadGate | undefined,
  ) {
    this.index = index;
    this.blocks = index.offsets.length;
    this.offsets = index.offsets;
    this.sizes = index.sizes;
    this.cursor = new DataBlockCursor(info.path);
    this.fileId = `${info.path}#${++openCount}`;
  }

  /**
   * `syncReads`: point reads that miss the cache read their block synchronously while the gate
   * allows it and the file system can (FileHandle.readSync); absent: always asynchronously.
   */
  static async open(fs: FileSystem, path: string, cache: BlockCache, syncReads?: SyncReadGate): Promise<SstableReader> {
    const handle = await fs.open(path, { create: false });
    try {
      const fileBytes = await handle.size();
      if (fileBytes < footerBytes) throw corruption(path, `file of ${fileBytes} bytes is shorter than a footer`);
      const footer = decodeFooter(await readExactly(handle, fileBytes - footerBytes, footerBytes, path), fileBytes, path);
      const tailStart = footer.filter.offset;
      const tail = await readExactly(handle, tailStart, fileBytes - footerBytes - tailStart, path);
      const block = (blockHandle: BlockHandle): Uint8Array =>
        verifyBlock(tail.subarray(blockHandle.offset - tailStart, blockHandle.offset - tailStart + blockHandle.size + blockTrailerBytes), blockHandle, path);
      const filter = BloomFilter.decode(block(footer.filter));
      if (filter === undefined) throw corruption(path, 'bad bloom filter block');
      const index = decodeIndex(block(footer.index), tailStart, path);
      const info = decodeProperties(block(footer.properties), path, fileBytes);
      checkIndexAgainstInfo(index, info);
      return new SstableReader(handle, cache, filter, index, info, syncReads);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * False when the key is certainly not in this table (bloom filter or key range). `hash`: the
   * key's bloomKeyHash, when the caller asks several tables about one key.
   */
  mayContain(key: Uint8Array, hash?: Uint32Array): boolean {
    if (compareBytes(key, this.info.smallestKey) < 0 || compareBytes(key, this.info.largestKey) > 0) return false;
    return hash === undefined ? this.filter.mayContain(key) : this.filter.mayContainHashed(hash);
  }

  /**
   * The entry for `key` in this table, or undefined (`hash`: see mayContain). Synchronous (no
   * Promise) when the filter or key range rules the key out, when its block is in the cache, or
   * when the block is read synchronously (see `open`).
   */
  get(key: Uint8Array, hash?: Uint32Array): MaybePromise<SstableEntry | undefined> {
    assert(!this.closed, 'SstableReader.get after close');
    if (!this.mayContain(key, hash)) return undefined;
    const blockIndex = this.blockFor(key);
    assert(blockIndex < this.blocks, 'a key within range has a block');
    let cached = this.cache.get(this.fileId, this.offsets[blockIndex] as number);
    if (cached === undefined) {
      try {
        cached = this.readBlockNow(blockIndex);
      } catch (error) {
        // Failed reads reject, as they do on the thread pool.
        return Promise.reject(error as Error);
      }
    }
    if (cached !== undefined) return this.findInBlock(cached, blockIndex, key);
    return this.loadBlock(blockIndex).then((contents) => this.findInBlock(contents, blockIndex, key));
  }

  /**
   * Entries with gte <= key < lt, in key order, tombstones included. `fillCache: false` (for
   * compaction, which reads every block once) leaves the block cache to the blocks readers use.
   */
  async *scan(range: { readonly gte?: Uint8Array; readonly lt?: Uint8Array } = {}, options: { readonly fillCache?: boolean } = {}): AsyncIterable<SstableEntry> {
    const fillCache = options.fillCache ?? true;
    const { gte, lt } = range;
    const cursor = new DataBlockCursor(this.info.path);
    const firstBlock = gte === undefined ? 0 : this.blockFor(gte);
    for (let blockIndex = firstBlock; blockIndex < this.blocks; blockIndex++) {
      assert(!this.closed, 'SstableReader.scan after close');
      const offset = this.offsets[blockIndex] as number;
      const contents = this.cache.get(this.fileId, offset, true) ?? (await this.loadBlock(blockIndex, fillCache));
      cursor.reset(contents, offset);
      const positioned = gte !== undefined && blockIndex === firstBlock ? cursor.seek(gte) : cursor.step();
      if (!positioned) throw corruption(this.info.path, `block at ${offset} ends before its index key`);
      do {
        if (lt !== undefined && cursor.compareKey(lt) >= 0) return;
        yield { key: cursor.key(), sequence: cursor.sequence, value: cursor.value() };
      } while (cursor.step());
    }
  }

  /**
   * Entries with gte <= key < lt in descending key order, tombstones included. Blocks are walked
   * from the last one that may hold a key below `lt`; each block is decoded whole (a few KiB)
   * and yielded backwards, since its prefix-compressed entries only decode forwards.
   */
  async *scanReverse(range: { readonly gte?: Uint8Array; readonly lt?: Uint8Array } = {}): AsyncIterable<SstableEntry> {
    const { gte, lt } = range;
    const cursor = new DataBlockCursor(this.info.path);
    const lastBlock = lt === undefined ? this.blocks - 1 : Math.min(this.blockFor(lt), this.blocks - 1);
    for (let blockIndex = lastBlock; blockIndex >= 0; blockIndex--) {
      assert(!this.closed, 'SstableReader.scanReverse after close');
      const offset = this.offsets[blockIndex] as number;
      const contents = this.cache.get(this.fileId, offset, true) ?? (await this.loadBlock(blockIndex));
      cursor.reset(contents, offset);
      const inBlock: SstableEntry[] = [];
      while (cursor.step()) {
        if (lt !== undefined && cursor.compareKey(lt) >= 0) break;
        if (gte !== undefined && cursor.compareKey(gte) < 0) continue;
        inBlock.push({ key: cursor.key(), sequence: cursor.sequence, value: cursor.value() });
      }
      for (let index = inBlock.length - 1; index >= 0; index--) yield inBlock[index] as SstableEntry;
      if (gte !== undefined && this.previousBlockEndsBelow(blockIndex, gte)) return;
    }
  }

  /** True when no block before `blockIndex` holds a key >= `key` (its last key, in the index, is below). */
  private previousBlockEndsBelow(blockIndex: number, key: Uint8Array): boolean {
    if (blockIndex === 0) return true;
    const { keys, keyStarts } = this.index;
    const start = keyStarts[blockIndex - 1] as number;
    return compareRange(keys, start, (keyStarts[blockIndex] as number) - start, key) < 0;
  }

  /** Closes the file and drops its blocks from the cache. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cache.evictFile(this.fileId);
    await this.handle.close();
  }

  /** The first block whose last key is >= key (the block count when none). */
  private blockFor(key: Uint8Array): number {
    const { keys, keyStarts } = this.index;
    let low = 0;
    let high = this.blocks;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const start = keyStarts[middle] as number;
      if (compareRange(keys, start, (keyStarts[middle + 1] as number) - start, key) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  private findInBlock(contents: Uint8Array, blockIndex: number, key: Uint8Array): SstableEntry | undefined {
    const cursor = this.cursor;
    cursor.reset(contents, this.offsets[blockIndex] as number);
    if (!cursor.seek(key)) throw corruption(this.info.path, `block at ${this.offsets[blockIndex]} ends before its index key`);
    if (cursor.compareKey(key) !== 0) return undefined;
    return { key: cursor.key(), sequence: cursor.sequence, value: cursor.value() };
  }

  /**
   * Reads, verifies, uncompresses and caches a data block on this thread, when the gate and the
   * file system allow it and no asynchronous read of it is under way; else undefined. Read into a
   * cache buffer (BlockCache.allocate), so a cold read allocates nothing once the cache is full.
   */
  private readBlockNow(blockIndex: number): Uint8Array | undefined {
    const readSync = this.handle.readSync;
    if (this.syncReads === undefined || readSync === undefined) return undefined;
    const offset = this.offsets[blockIndex] as number;
    if (this.loading.has(offset)) return undefined;
    const startedMs = this.syncReads.begin();
    if (startedMs === undefined) return undefined;
    const length = (this.sizes[blockIndex] as number) + blockTrailerBytes;
    const stored = this.cache.allocate(length);
    let contents: Uint8Array;
    try {
      let bytesRead: number;
      try {
        bytesRead = readSync.call(this.handle, offset, stored);
      } finally {
        // A read that failed slowly (a failing disk's timeouts) counts as slow too.
        this.syncReads.finished(startedMs);
      }
      checkReadLength(bytesRead, length, offset, this.info.path);
      contents = verifyBlock(stored, { offset, size: length - blockTrailerBytes }, this.info.path, true);
    } catch (error) {
      this.cache.release(stored);
      throw error;
    }
    // A compressed block was uncompressed into a buffer of its own; the stored bytes are spare.
    if (contents.buffer !== stored.buffer) this.cache.release(stored);
    this.cache.set(this.fileId, offset, contents);
    return contents;
  }

  /** Reads, verifies and uncompresses a data block, then caches it (verified blocks only) when `fillCache`. */
  private loadBlock(blockIndex: number, fillCache = true): Promise<Uint8Array> {
    const offset = this.offsets[blockIndex] as number;
    const inFlight = this.loading.get(offset);
    if (inFlight !== undefined) return inFlight;
    if (!fillCache) {
      const size = this.sizes[blockIndex] as number;
      return readExactly(this.handle, offset, size + blockTrailerBytes, this.info.path).then((stored) => verifyBlock(stored, { offset, size }, this.info.path));
    }
    const size = this.sizes[blockIndex] as number;
    const loading = readExactly(this.handle, offset, size + blockTrailerBytes, this.info.path)
      .then((stored) => {
        const contents = verifyBlock(stored, { offset, size }, this.info.path);
        if (!this.closed) this.cache.set(this.fileId, offset, contents);
        return contents;
      })
      .finally(() => this.loading.delete(offset));
    this.loading.set(offset, loading);
    return loading;
  }
}

interface BlockIndex {
  /** Block i's last key is keys[keyStarts[i], keyStarts[i + 1]). */
  readonly keys: Uint8Array;
  readonly keyStarts: Uint32Array;
  readonly offsets: Float64Array;
  readonly sizes: Uint32Array;
}

async function readExactly(handle: FileHandle, position: number, length: number, path: string): Promise<Uint8Array> {
  const bytes = await handle.read(position, length);
  checkReadLength(bytes.length, length, position, path);
  return plain(bytes);
}

/** A read that came back shorter than the block or metadata it asked for: the file is cut short. */
function checkReadLength(bytesRead: number, length: number, position: number, path: string): void {
  if (bytesRead !== length) throw corruption(path, `short read at ${position}: ${bytesRead} of ${length} bytes`);
}

/**
 * Checks a stored block (contents + trailer) and returns its uncompressed contents, in an array
 * of its own (never a view into a larger buffer, so the cache charges what it holds) unless
 * `ownsBuffer`: `stored` is a BlockCache.allocate buffer, which the cache charges whole.
 */
function verifyBlock(stored: Uint8Array, handle: BlockHandle, path: string, ownsBuffer = false): Uint8Array {
  assert(stored.length === handle.size + blockTrailerBytes, 'verifyBlock takes the block and its trailer');
  const payload = stored.subarray(0, handle.size);
  const type = stored[handle.size] as number;
  if (readUint32(stored, handle.size + 1) !== blockChecksum(payload, type)) {
    throw corruption(path, `block checksum mismatch at offset ${handle.offset}`);
  }
  if (type === BlockType.none) {
    return ownsBuffer || (payload.byteOffset === 0 && payload.buffer.byteLength <= stored.length) ? payload : payload.slice();
  }
  if (type !== BlockType.snappy) throw corruption(path, `unknown block type ${type} at offset ${handle.offset}`);
  try {
    return plain(uncompressSync(payload, { asBuffer: true }) as Uint8Array);
  } catch {
    throw corruption(path, `block at offset ${handle.offset} does not uncompress`);
  }
}

/**
 * The same bytes as a plain Uint8Array. A Buffer's `slice` is a view, not a copy: blocks are
 * held as plain arrays so that copying one (verifyBlock's `slice`) really copies.
 */
function plain(bytes: Uint8Array): Uint8Array {
  return Buffer.isBuffer(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}

/** index := (shared:varint unshared:varint key_suffix offset:varint size:varint)* */
function decodeIndex(contents: Uint8Array, dataEnd: number, path: string): BlockIndex {
  const keys = new ByteWriter(contents.length);
  const keyStarts: number[] = [0];
  const offsets: number[] = [];
  const sizes: number[] = [];
  const reader = new ByteReader(contents, contents.length, path);
  let previous = new Uint8Array(0);
  let expectedOffset = 0;
  while (!reader.done) {
    const shared = reader.varint();
    const suffix = reader.bytesView(reader.varint());
    if (shared > previous.length) throw corruption(path, 'index entry shares more than the previous key');
    const key = new Uint8Array(shared + suffix.length);
    key.set(previous.subarray(0, shared));
    key.set(suffix, shared);
    const offset = reader.varint();
    const size = reader.varint();
    // Data blocks tile the file from 0 to the filter, in key order.
    if (offset !== expectedOffset || (offsets.length > 0 && compareBytes(previous, key) >= 0)) {
      throw corruption(path, 'index entries out of order');
    }
    keys.putBytes(key);
    keyStarts.push(keys.length);
    offsets.push(offset);
    sizes.push(size);
    expectedOffset = offset + size + blockTrailerBytes;
    previous = key;
  }
  if (expectedOffset !== dataEnd || offsets.length === 0) throw corruption(path, 'index does not cover the data blocks');
  return {
    keys: keys.view().slice(),
    keyStarts: Uint32Array.from(keyStarts),
    offsets: Float64Array.from(offsets),
    sizes: Uint32Array.from(sizes),
  };
}

/** properties := entries smallest_sequence largest_sequence smallest_key largest_key */
function decodeProperties(contents: Uint8Array, path: string, fileBytes: number): SstableInfo {
  const reader = new ByteReader(contents, contents.length, path);
  const entries = reader.varint();
  const smallestSequence = reader.varint();
  const largestSequence = reader.varint();
  const smallestKey = reader.bytesView(reader.varint()).slice();
  const largestKey = reader.bytesView(reader.varint()).slice();
  if (!reader.done) throw corruption(path, 'trailing bytes in the properties block');
  return { path, entries, fileBytes, smallestKey, largestKey, smallestSequence, largestSequence };
}

function checkIndexAgainstInfo(index: BlockIndex, info: SstableInfo): void {
  const lastKey = index.keys.subarray(index.keyStarts[index.keyStarts.length - 2]);
  if (compareBytes(lastKey, info.largestKey) !== 0 || compareBytes(info.smallestKey, info.largestKey) > 0) {
    throw corruption(info.path, 'properties disagree with the index');
  }
}
