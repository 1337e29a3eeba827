import { compressSync } from 'snappy';
import { assert } from '../../core/assert.js';
import type { FileHandle, FileSystem } from '../../world/file-system.js';
import { BloomFilterBuilder } from './bloom-filter.js';
import {
  blockBytesMax,
  blockChecksum,
  BlockType,
  ByteWriter,
  compareBytes,
  DataBlockBuilder,
  encodeFooter,
  restartInterval,
  type BlockHandle,
} from './sstable-format.js';

/**
 * Writes one SSTable (format: docs/format/sstable.md) from entries in strictly increasing key
 * order, one version per key. Blocks are buffered and written in chunks of about
 * `writeChunkBytes`; `finish` appends the filter, index and properties blocks and the footer,
 * fsyncs and closes. The caller makes the directory entry durable (FileSystem.syncDirectory)
 * before it records the table anywhere (the manifest).
 */

export interface SstableOptions {
  /** Target uncompressed size of a data block: a block is cut once it reaches this. 4-16 KiB. */
  readonly blockBytes: number;
  /** Per-block compression; a block that snappy shrinks by less than 1/8 is stored raw. */
  readonly compression: 'snappy' | 'none';
  /** Bloom filter bits per key: 10 gives about 1% false positives. */
  readonly bloomBitsPerKey: number;
}

export const sstableDefaults: SstableOptions = { blockBytes: 8192, compression: 'snappy', bloomBitsPerKey: 10 };
export const blockBytesMin = 1024;
export const blockBytesLimit = 64 * 1024;
/** Output is written to the file in chunks of this size (fewer syscalls than one per block). */
const writeChunkBytes = 256 * 1024;

export interface SstableEntry {
  readonly key: Uint8Array;
  /** An integer in [0, 2^53]. */
  readonly sequence: number;
  /** null is a tombstone. */
  readonly value: Uint8Array | null;
}

export interface SstableInfo {
  readonly path: string;
  readonly entries: number;
  readonly fileBytes: number;
  readonly smallestKey: Uint8Array;
  readonly largestKey: Uint8Array;
  readonly smallestSequence: number;
  readonly largestSequence: number;
}

const resolved: Promise<void> = Promise.resolve();

export class SstableWriter {
  private readonly block: DataBlockBuilder;
  private readonly bloom: BloomFilterBuilder;
  /** Index entries: the last key of each data block and its handle. */
  private readonly index = new ByteWriter(4096);
  private readonly output = new ByteWriter(writeChunkBytes + blockBytesLimit);
  /** File offset of output[0]. */
  private outputOffset = 0;
  private writing: Promise<void> = resolved;
  private failure: unknown = undefined;
  private previousKey: Uint8Array | undefined;
  private previousIndexKey: Uint8Array = new Uint8Array(0);
  private smallestKey: Uint8Array | undefined;
  private entries = 0;
  private smallestSequence = Number.MAX_SAFE_INTEGER;
  private largestSequence = 0;
  private state: 'open' | 'finished' | 'aborted' = 'open';

  private constructor(
    private readonly fs: FileSystem,
    private readonly path: string,
    private readonly handle: FileHandle,
    private readonly options: SstableOptions,
  ) {
    this.block = new DataBlockBuilder(restartInterval);
    this.bloom = new BloomFilterBuilder(options.bloomBitsPerKey);
  }

  /** Creates (or truncates) `path`. */
  static async create(fs: FileSystem, path: string, options: Partial<SstableOptions> = {}): Promise<SstableWriter> {
    const resolvedOptions: SstableOptions = { ...sstableDefaults, ...options };
    const { blockBytes } = resolvedOptions;
    assert(
      Number.isInteger(blockBytes) && blockBytes >= blockBytesMin && blockBytes <= blockBytesLimit,
      () => `blockBytes out of range [${blockBytesMin}, ${blockBytesLimit}]: ${blockBytes}`,
    );
    const handle = await fs.open(path, { create: true });
    await handle.truncate(0);
    return new SstableWriter(fs, path, handle, resolvedOptions);
  }

  /**
   * Adds the next entry; keys must be strictly increasing. The entry's bytes are copied before
   * this returns, so the caller may reuse its buffers. Resolves once any block write it started
   * is done; a caller may also add again without awaiting (writes stay in order).
   */
  add(entry: SstableEntry): Promise<void> {
    assert(this.state === 'open', () => `SstableWriter.add after ${this.state}`);
    const { key, sequence, value } = entry;
    assert(
      this.previousKey === undefined || compareBytes(this.previousKey, key) < 0,
      'SSTable keys must be strictly increasing',
    );
    assert(Number.isSafeInteger(sequence) && sequence >= 0, () => `sequence out of range: ${sequence}`);
    const keyCopy = new Uint8Array(key); // a copy even of a Buffer (whose slice is a view)
    this.block.add(keyCopy, sequence, value);
    this.bloom.add(keyCopy);
    this.previousKey = keyCopy;
    this.smallestKey ??= keyCopy;
    this.entries++;
    if (sequence < this.smallestSequence) this.smallestSequence = sequence;
    if (sequence > this.largestSequence) this.largestSequence = sequence;
    if (this.block.sizeBytes < this.options.blockBytes) return resolved;
    this.cutBlock();
    return this.output.length >= writeChunkBytes ? this.flushOutput() : resolved;
  }

  /** Writes the tail, fsyncs and closes. A table has at least one entry (else: abort). */
  async finish(): Promise<SstableInfo> {
    assert(this.state === 'open', () => `SstableWriter.finish after ${this.state}`);
    assert(this.entries > 0 && this.previousKey !== undefined && this.smallestKey !== undefined, 'an empty SSTable is never written: abort it');
    this.state = 'finished';
    if (this.block.entries > 0) this.cutBlock();
    // The filter is incompressible; index and properties follow the table's compression.
    const filter = this.appendBlock(this.bloom.finish(), false);
    const index = this.appendBlock(this.index.view(), true);
    const properties = this.appendBlock(this.encodeProperties(), true);
    this.output.putBytes(encodeFooter({ filter, index, properties }));
    const fileBytes = this.outputOffset + this.output.length;
    try {
      await this.flushOutput();
      await this.handle.sync();
    } catch (error) {
      // A table that did not reach the disk whole is deleted, not left for the next open to find.
      await this.handle.close().catch(() => undefined);
      await this.fs.unlink(this.path).catch(() => undefined);
      throw error;
    }
    await this.handle.close();
    return {
      path: this.path,
      entries: this.entries,
      fileBytes,
      smallestKey: this.smallestKey,
      largestKey: this.previousKey,
      smallestSequence: this.smallestSequence,
      largestSequence: this.largestSequence,
    };
  }

  /** Stops writing and deletes the partial file. Idempotent. */
  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.writing.catch(() => undefined);
    await this.handle.close();
    await this.fs.unlink(this.path);
  }

  /** Ends the current data block: appends it and its index entry. */
  private cutBlock(): void {
    const handle = this.appendBlock(this.block.finish(), true);
    const lastKey = this.previousKey as Uint8Array;
    let shared = 0;
    const limit = Math.min(lastKey.length, this.previousIndexKey.length);
    while (shared < limit && lastKey[shared] === this.previousIndexKey[shared]) shared++;
    this.index.putVarint(shared);
    this.index.putVarint(lastKey.length - shared);
    this.index.putBytes(lastKey, shared);
    this.index.putVarint(handle.offset);
    this.index.putVarint(handle.size);
    this.previousIndexKey = lastKey;
    this.block.reset();
  }

  /** Appends `contents` (compressed when allowed and worth it) with its trailer. */
  private appendBlock(contents: Uint8Array, compressible: boolean): BlockHandle {
    let stored = contents;
    let type: BlockType = BlockType.none;
    if (compressible && this.options.compression === 'snappy') {
      const compressed = compressSync(contents);
      if (compressed.length < contents.length - contents.length / 8) {
        stored = compressed;
        type = BlockType.snappy;
      }
    }
    assert(stored.length <= blockBytesMax, 'block above the u32 size limit');
    const offset = this.outputOffset + this.output.length;
    this.output.putBytes(stored);
    this.output.putUint8(type);
    this.output.putUint32(blockChecksum(stored, type));
    return { offset, size: stored.length };
  }

  private encodeProperties(): Uint8Array {
    const writer = new ByteWriter(64);
    const smallestKey = this.smallestKey as Uint8Array;
    const largestKey = this.previousKey as Uint8Array;
    writer.putVarint(this.entries);
    writer.putVarint(this.smallestSequence);
    writer.putVarint(this.largestSequence);
    writer.putVarint(smallestKey.length);
    writer.putBytes(smallestKey);
    writer.putVarint(largestKey.length);
    writer.putBytes(largestKey);
    return writer.view();
  }

  /** Hands the buffered output to the file, after any write still in flight. */
  private flushOutput(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const chunk = this.output.view().slice();
    const position = this.outputOffset;
    this.outputOffset += chunk.length;
    this.output.reset();
    this.writing = this.writing.then(() =>
      this.handle.write(chunk, position).catch((error: unknown) => {
        this.failure = error;
        throw error;
      }),
    );
    return this.writing;
  }
}
