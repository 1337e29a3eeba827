// xxhash.ts (the WebAssembly build) against the published test vectors and against an
// independent implementation, the native @node-rs/xxhash addon: every stored and sent hash must
// stay what it was when the data was written, whatever library computes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh32 as nativeXxh32, xxh64 as nativeXxh64 } from '@node-rs/xxhash';
import fc from 'fast-check';
import { xxh32, xxh64 } from './xxhash.js';

test('xxhash: the reference vectors of the empty input and "abc"', () => {
  assert.equal(xxh64(new Uint8Array(0)), 0xef46db3751d8e999n);
  assert.equal(xxh32(new Uint8Array(0)), 0x02cc5d05);
  assert.equal(xxh64(new TextEncoder().encode('abc')), 0x44bc2cf5ad770999n);
  assert.equal(xxh32(new TextEncoder().encode('abc')), 0x32d153ff);
});

test('xxhash: equals the native addon for any bytes and seed (property)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, seed64, seed32) => {
      assert.equal(xxh64(bytes, seed64), nativeXxh64(bytes, seed64));
      assert.equal(xxh64(bytes), nativeXxh64(bytes));
      assert.equal(xxh32(bytes, seed32), nativeXxh32(bytes, seed32) >>> 0);
    }),
    { numRuns: 2000 },
  );
});

test('xxhash: a view into a larger buffer hashes only its own bytes, and inputs larger than the module memory grow it', () => {
  const large = new Uint8Array(3 * 1024 * 1024).map((_, index) => (index * 31) & 0xff);
  assert.equal(xxh64(large), nativeXxh64(large));
  const view = large.subarray(1000, 1100);
  assert.equal(xxh64(view), nativeXxh64(Buffer.from(view)));
  assert.equal(xxh32(view, 7), nativeXxh32(Buffer.from(view), 7) >>> 0);
});
