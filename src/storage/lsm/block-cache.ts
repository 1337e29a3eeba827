import { assert } from '../../core/assert.js';

/**
 * Verified, uncompressed SSTable blocks, shared by every open table of a node, bounded by bytes
 * and evicted least recently used first. Only blocks whose checksum passed are ever put here
 * (the reader's job), so a corrupt block can never be served from the cache.
 *
 * A block is charged its byteLength (a block in a buffer from `allocate`: the whole buffer); a
 * block larger than the whole bound is not cached. Callers must not mutate a block they get or
 * set: it is shared.
 *
 * Buffers come back: a block read into a buffer from `allocate` hands its buffer to the next
 * `allocate` of its size class once it is evicted, as long as nobody was told they may keep it
 * (`get(..., retain)`). A cold read then costs no new ArrayBuffer, which on this machine costs
 * more than the 8 KiB pread itself (docs/storage-engine.md, "Reads that miss the block cache").
 */
interface Node {
  readonly fileId: string;
  readonly blockOffset: number;
  readonly block: Uint8Array;
  /** Bytes charged: the block's length, or its whole buffer when that came from `allocate`. */
  readonly charge: number;
  /** Whether its buffer may be reused once evicted: it came from `allocate` and no caller kept it. */
  recyclable: boolean;
  newer: Node | undefined;
  older: Node | undefined;
}

/** Buffers from `allocate` are sized in steps of this many bytes, so blocks of similar sizes share them. */
const sizeClassBytes = 1024;
/** Evicted buffers kept for reuse, per size class. */
const spareBuffersMax = 16;
/** Buffers larger than this (blocks of big values) are not kept for reuse. */
const spareBufferBytesMax = 64 * 1024;
/** Bytes of spare buffers kept in all, beside the bound on cached bytes. */
const spareBytesMax = 1024 * 1024;

export class BlockCache {
  private readonly files = new Map<string, Map<number, Node>>();
  /** Most recently used end of the list. */
  private newest: Node | undefined;
  /** Least recently used end: evicted first. */
  private oldest: Node | undefined;
  private bytes = 0;
  private hitCount = 0;
  private missCount = 0;
  /** Buffers `allocate` made, so that eviction knows which it may reuse. */
  private readonly allocated = new WeakSet<ArrayBuffer>();
  /** Evicted buffers to reuse, by size class. */
  private readonly spare = new Map<number, ArrayBuffer[]>();
  private spareBytes = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 0, () => `block cache bytesMax must be an integer >= 0: ${bytesMax}`);
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  get hits(): number {
    return this.hitCount;
  }

  get misses(): number {
    return this.missCount;
  }

  /** Blocks held now. */
  get blocks(): number {
    let count = 0;
    for (const blocks of this.files.values()) count += blocks.size;
    return count;
  }

  /**
   * The cached block, or undefined. `retain`: the caller keeps the block past this synchronous
   * call (a scan stepping through it between awaits), so its buffer is never reused.
   */
  get(fileId: string, blockOffset: number, retain = false): Uint8Array | undefined {
    const node = this.files.get(fileId)?.get(blockOffset);
    if (node === undefined) {
      this.missCount++;
      return undefined;
    }
    this.hitCount++;
    if (retain) node.recyclable = false;
    this.unlink(node);
    this.pushNewest(node);
    return node.block;
  }

  /**
   * A buffer of exactly `length` bytes for a block about to be read and cached, reusing an evicted
   * block's buffer when one of its size class is spare. Contents are undefined. A caller that does
   * not cache it may hand it back with `release`.
   */
  allocate(length: number): Uint8Array {
    const sizeClass = Math.max(1, Math.ceil(length / sizeClassBytes)) * sizeClassBytes;
    const reused = this.spare.get(sizeClass)?.pop();
    if (reused !== undefined) this.spareBytes -= reused.byteLength;
    return new Uint8Array(reused ?? this.newBuffer(sizeClass), 0, length);
  }

  /** Gives back a buffer from `allocate` that was not cached and is no longer used. */
  release(bytes: Uint8Array): void {
    if (this.allocated.has(bytes.buffer as ArrayBuffer)) this.keepSpare(bytes.buffer as ArrayBuffer);
  }

  set(fileId: string, blockOffset: number, block: Uint8Array): void {
    const existing = this.files.get(fileId)?.get(blockOffset);
    if (existing !== undefined) {
      // The same buffer set again must not also become spare.
      if (existing.block.buffer === block.buffer) existing.recyclable = false;
      this.remove(existing);
    }
    const owned = this.allocated.has(block.buffer as ArrayBuffer) && block.byteOffset === 0;
    const charge = owned ? block.buffer.byteLength : block.byteLength;
    if (charge > this.bytesMax) {
      if (owned) this.keepSpare(block.buffer as ArrayBuffer);
      return;
    }
    while (this.bytes + charge > this.bytesMax) this.remove(this.oldest as Node);
    const node: Node = { fileId, blockOffset, block, charge, recyclable: owned, newer: undefined, older: undefined };
    let blocks = this.files.get(fileId);
    if (blocks === undefined) {
      blocks = new Map();
      this.files.set(fileId, blocks);
    }
    blocks.set(blockOffset, node);
    this.pushNewest(node);
    this.bytes += charge;
    assert(this.bytes <= this.bytesMax, 'block cache over its bound');
  }

  /** Drops every block of a file (closed, or deleted by compaction). */
  evictFile(fileId: string): void {
    const blocks = this.files.get(fileId);
    if (blocks === undefined) return;
    for (const node of [...blocks.values()]) this.remove(node);
  }

  private remove(node: Node): void {
    this.unlink(node);
    const blocks = this.files.get(node.fileId);
    assert(blocks?.delete(node.blockOffset) === true, 'cached block missing from its file map');
    if (blocks.size === 0) this.files.delete(node.fileId);
    this.bytes -= node.charge;
    if (node.recyclable) this.keepSpare(node.block.buffer as ArrayBuffer);
  }

  private newBuffer(bytes: number): ArrayBuffer {
    const buffer = new ArrayBuffer(bytes);
    this.allocated.add(buffer);
    return buffer;
  }

  private keepSpare(buffer: ArrayBuffer): void {
    if (buffer.byteLength > spareBufferBytesMax || this.spareBytes + buffer.byteLength > spareBytesMax) return;
    let spare = this.spare.get(buffer.byteLength);
    if (spare === undefined) {
      spare = [];
      this.spare.set(buffer.byteLength, spare);
    }
    if (spare.length >= spareBuffersMax || spare.includes(buffer)) return;
    spare.push(buffer);
    this.spareBytes += buffer.byteLength;
  }

  /** Bytes of evicted buffers kept for reuse (at most 1 MiB, not counted in `sizeBytes`). */
  get spareSizeBytes(): number {
    return this.spareBytes;
  }

  private unlink(node: Node): void {
    if (node.newer === undefined) this.newest = node.older;
    else node.newer.older = node.older;
    if (node.older === undefined) this.oldest = node.newer;
    else node.older.newer = node.newer;
    node.newer = undefined;
    node.older = undefined;
  }

  private pushNewest(node: Node): void {
    node.older = this.newest;
    node.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = node;
    this.newest = node;
    if (this.oldest === undefined) this.oldest = node;
  }
}
