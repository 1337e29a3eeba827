import { assert } from '../../core/assert.js';

/**
 * Verified, uncompressed SSTable blocks, shared by every open table of a node, bounded by bytes
 * and evicted least recently used first. Only blocks whose checksum passed are ever put here
 * (the reader's job), so a corrupt block can never be served from the cache.
 *
 * A block is charged its byteLength; a block larger than the whole bound is not cached.
 * Callers must not mutate a block they get or set: it is shared.
 */
interface Node {
  readonly fileId: string;
  readonly blockOffset: number;
  readonly block: Uint8Array;
  newer: Node | undefined;
  older: Node | undefined;
}

export class BlockCache {
  private readonly files = new Map<string, Map<number, Node>>();
  /** Most recently used end of the list. */
  private newest: Node | undefined;
  /** Least recently used end: evicted first. */
  private oldest: Node | undefined;
  private bytes = 0;
  private hitCount = 0;
  private missCount = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 0, `block cache bytesMax must be an integer >= 0: ${bytesMax}`);
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

  get(fileId: string, blockOffset: number): Uint8Array | undefined {
    const node = this.files.get(fileId)?.get(blockOffset);
    if (node === undefined) {
      this.missCount++;
      return undefined;
    }
    this.hitCount++;
    this.unlink(node);
    this.pushNewest(node);
    return node.block;
  }

  set(fileId: string, blockOffset: number, block: Uint8Array): void {
    const existing = this.files.get(fileId)?.get(blockOffset);
    if (existing !== undefined) this.remove(existing);
    if (block.byteLength > this.bytesMax) return;
    while (this.bytes + block.byteLength > this.bytesMax) this.remove(this.oldest as Node);
    const node: Node = { fileId, blockOffset, block, newer: undefined, older: undefined };
    let blocks = this.files.get(fileId);
    if (blocks === undefined) {
      blocks = new Map();
      this.files.set(fileId, blocks);
    }
    blocks.set(blockOffset, node);
    this.pushNewest(node);
    this.bytes += block.byteLength;
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
    this.bytes -= node.block.byteLength;
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
