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

  it('block cache: an evicted buffer from allocate serves the next allocate of its size class, charged whole', () => {
    const cache = new BlockCache(3000);
    const first = cache.allocate(1500);
    assert.equal(first.length, 1500);
    cache.set('a', 0, first);
    assert.equal(cache.sizeBytes, 2048, 'a block in an allocated buffer is charged the whole buffer');
    const second = cache.allocate(1800);
    cache.set('a', 1, second);
    assert.equal(cache.get('a', 0), undefined, 'the first block was evicted to make room');
    const third = cache.allocate(1100);
    assert.equal(third.buffer, first.buffer, 'the evicted buffer is reused');
    assert.notEqual(cache.allocate(1100).buffer, first.buffer, 'and handed out once');
    const released = cache.allocate(5000);
    cache.release(released);
    cache.release(released);
    assert.equal(cache.spareSizeBytes, 5120, 'a buffer given back twice is kept once');
    assert.equal(cache.allocate(4500).buffer, released.buffer, 'a released buffer is reused too');
    assert.notEqual(cache.allocate(4500).buffer, released.buffer);
    const big = cache.allocate(200_000);
    cache.release(big);
    assert.equal(cache.spareSizeBytes, 0, 'buffers of big blocks are not kept');
    for (let index = 0; index < 64; index++) cache.release(cache.allocate(1024 * (1 + index)));
    assert.ok(cache.spareSizeBytes <= 1024 * 1024, `spare buffers stay bounded: ${cache.spareSizeBytes}`);
  });

  it('block cache: setting the same buffer again under its key keeps it out of the spares', () => {
    const cache = new BlockCache(10_000);
    const block = cache.allocate(1000);
    cache.set('a', 0, block);
    cache.set('a', 0, block);
    assert.equal(cache.spareSizeBytes, 0);
    assert.notEqual(cache.allocate(1000).buffer, block.buffer, 'a cached buffer is never handed out');
    assert.equal(cache.get('a', 0), block);
  });

  it('block cache: a buffer is never reused while its block is cached or was retained by a get (property)', () => {
    type Step = { type: 'set'; file: number; offset: number; bytes: number } | { type: 'get'; file: number; offset: number; retain: boolean } | { type: 'evict'; file: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ type: fc.constant('set' as const), file: fc.nat(2), offset: fc.nat(5), bytes: fc.integer({ min: 1, max: 3000 }) }),
      fc.record({ type: fc.constant('get' as const), file: fc.nat(2), offset: fc.nat(5), retain: fc.boolean() }),
      fc.record({ type: fc.constant('evict' as const), file: fc.nat(2) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 12_000 }), fc.array(step, { maxLength: 150 }), (bytesMax, steps) => {
        const cache = new BlockCache(bytesMax);
        const retained: { block: Uint8Array; tag: number }[] = [];
        const cached = new Map<string, { block: Uint8Array; tag: number }>();
        let tag = 0;
        for (const op of steps) {
          const key = `${op.file}/${op.type === 'evict' ? 0 : op.offset}`;
          if (op.type === 'set') {
            tag = (tag % 250) + 1;
            const block = cache.allocate(op.bytes);
            block.fill(tag);
            cache.set(`f${op.file}`, op.offset, block);
            cached.set(key, { block, tag });
          } else if (op.type === 'get') {
            const block = cache.get(`f${op.file}`, op.offset, op.retain);
            if (block !== undefined && op.retain) retained.push({ block, tag: cached.get(key)!.tag });
          } else cache.evictFile(`f${op.file}`);
          for (const [where, entry] of cached) {
            const [file, offset] = where.split('/').map(Number) as [number, number];
            const now = cache.get(`f${file}`, offset);
            if (now === undefined) cached.delete(where);
            else assert.ok(now === entry.block && entry.block.every((byte) => byte === entry.tag), `cached block ${where} kept its bytes`);
          }
          const buffers = [...cached.values()].map((entry) => entry.block.buffer);
          assert.equal(new Set(buffers).size, buffers.length, 'no two cached blocks share a buffer');
          for (const entry of retained) assert.ok(entry.block.every((byte) => byte === entry.tag), 'a retained block kept its bytes');
          assert.ok(cache.sizeBytes <= bytesMax);
        }
      }),
      { numRuns: 300 },
    );
  });
});
