import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BlockCache } from './block-cache.js';

/** The naive model: an array ordered least to most recently used. */
class ModelCache {
  entries: { fileId: string; offset: number; block: Uint8Array }[] = [];
  hits = 0;
  misses = 0;
  constructor(readonly bytesMax: number) {}

  get sizeBytes(): number {
    return this.entries.reduce((sum, entry) => sum + entry.block.byteLength, 0);
  }

  get(fileId: string, offset: number): Uint8Array | undefined {
    const index = this.entries.findIndex((entry) => entry.fileId === fileId && entry.offset === offset);
    if (index === -1) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    const [entry] = this.entries.splice(index, 1);
    this.entries.push(entry!);
    return entry!.block;
  }

  set(fileId: string, offset: number, block: Uint8Array): void {
    this.entries = this.entries.filter((entry) => !(entry.fileId === fileId && entry.offset === offset));
    if (block.byteLength > this.bytesMax) return;
    while (this.sizeBytes + block.byteLength > this.bytesMax) this.entries.shift();
    this.entries.push({ fileId, offset, block });
  }

  evictFile(fileId: string): void {
    this.entries = this.entries.filter((entry) => entry.fileId !== fileId);
  }
}

type Operation =
  | { type: 'get'; file: number; offset: number }
  | { type: 'set'; file: number; offset: number; bytes: number }
  | { type: 'evict'; file: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ type: fc.constant('get' as const), file: fc.nat(3), offset: fc.nat(7) }),
  fc.record({ type: fc.constant('set' as const), file: fc.nat(3), offset: fc.nat(7), bytes: fc.nat(120) }),
  fc.record({ type: fc.constant('evict' as const), file: fc.nat(3) }),
);

describe('block cache', () => {
  it('block cache: LRU by bytes matches a naive model and never exceeds its bound (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 400 }), fc.array(operation, { maxLength: 200 }), (bytesMax, operations) => {
        const cache = new BlockCache(bytesMax);
        const model = new ModelCache(bytesMax);
        for (const op of operations) {
          const fileId = `file-${op.file}`;
          if (op.type === 'get') assert.equal(cache.get(fileId, op.offset), model.get(fileId, op.offset));
          else if (op.type === 'set') {
            const block = new Uint8Array(op.bytes);
            cache.set(fileId, op.offset, block);
            model.set(fileId, op.offset, block);
          } else {
            cache.evictFile(fileId);
            model.evictFile(fileId);
          }
          assert.ok(cache.sizeBytes <= bytesMax);
          assert.equal(cache.sizeBytes, model.sizeBytes);
          assert.equal(cache.blocks, model.entries.length);
        }
        assert.equal(cache.hits, model.hits);
        assert.equal(cache.misses, model.misses);
      }),
      { numRuns: 500 },
    );
  });

  it('block cache: a get makes a block most recently used (evicted last)', () => {
    const cache = new BlockCache(300);
    cache.set('a', 0, new Uint8Array(100));
    cache.set('a', 1, new Uint8Array(100));
    cache.set('a', 2, new Uint8Array(100));
    assert.ok(cache.get('a', 0) !== undefined);
    cache.set('b', 0, new Uint8Array(100));
    assert.equal(cache.get('a', 1), undefined, 'least recently used goes first');
    assert.ok(cache.get('a', 0) !== undefined);
    assert.equal(cache.sizeBytes, 300);
  });

  it('block cache: a block larger than the bound is not cached and evicts nothing', () => {
    const cache = new BlockCache(100);
    cache.set('a', 0, new Uint8Array(50));
    cache.set('a', 1, new Uint8Array(101));
    assert.equal(cache.get('a', 1), undefined);
    assert.ok(cache.get('a', 0) !== undefined);
    assert.equal(cache.sizeBytes, 50);
  });
});
