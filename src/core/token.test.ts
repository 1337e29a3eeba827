// Properties of key hashing and partitioning (token.ts) against naive oracles: the oracle
// encodes with Buffer.concat, hashes with the native xxHash addon (an implementation independent
// of the WebAssembly one token.ts uses) and divides the token space with BigInt division.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xxh64 as nativeXxh64 } from '@node-rs/xxhash';
import fc from 'fast-check';
import { xxh64 } from './xxhash.js';
import { keyPartition, keyToken, keyTokenPrefix, partitionOf, partitionStart, partitionTokenPrefixes, prefixPartition } from './token.js';

const partitionCounts = [8, 16, 64, 256, 1024, 4096] as const;
const tokenSpace = 1n << 64n;

function naiveToken(namespace: string, key: Uint8Array): bigint {
  const name = Buffer.from(namespace, 'utf8');
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(name.length);
  return nativeXxh64(Buffer.concat([prefix, name, key]), 0n);
}

function naivePartition(token: bigint, partitionCount: number): number {
  return Number(token / (tokenSpace / BigInt(partitionCount)));
}

const arbitraryToken = fc.bigInt({ min: 0n, max: tokenSpace - 1n });
const arbitraryCount = fc.constantFrom(...partitionCounts);
const arbitraryKey = fc.record({ namespace: fc.string({ maxLength: 40, unit: 'grapheme' }), key: fc.uint8Array({ maxLength: 300 }) });

test('token: equals xxh64 of the length-prefixed encoding (seed 0)', () => {
  fc.assert(
    fc.property(arbitraryKey, ({ namespace, key }) => {
      assert.equal(keyToken(namespace, key), naiveToken(namespace, key));
    }),
    { numRuns: 2000 },
  );
});

test('token: the namespace/key boundary is unambiguous ("ab"+"c" vs "a"+"bc")', () => {
  const encode = (text: string) => new TextEncoder().encode(text);
  assert.notEqual(keyToken('ab', encode('c')), keyToken('a', encode('bc')));
  assert.notEqual(keyToken('', encode('abc')), keyToken('abc', new Uint8Array(0)));
});

test('token: a long namespace and key grow the scratch buffer and still match the oracle', () => {
  const namespace = 'ü'.repeat(500);
  const key = new Uint8Array(10_000).map((_, index) => index & 0xff);
  assert.equal(keyToken(namespace, key), naiveToken(namespace, key));
  assert.equal(keyToken('n', new Uint8Array([1])), naiveToken('n', new Uint8Array([1])));
});

test('token: partitionOf equals the division oracle and keyPartition agrees (all Q)', () => {
  fc.assert(
    fc.property(arbitraryToken, arbitraryCount, (token, partitionCount) => {
      assert.equal(partitionOf(token, partitionCount), naivePartition(token, partitionCount));
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(arbitraryKey, arbitraryCount, ({ namespace, key }, partitionCount) => {
      assert.equal(keyPartition(namespace, key, partitionCount), partitionOf(keyToken(namespace, key), partitionCount));
    }),
    { numRuns: 2000 },
  );
});

test('token: partitionOf is monotone and partitions are contiguous ranges (all Q)', () => {
  fc.assert(
    fc.property(arbitraryToken, arbitraryToken, arbitraryCount, (a, b, partitionCount) => {
      const [low, high] = a <= b ? [a, b] : [b, a];
      assert.ok(partitionOf(low, partitionCount) <= partitionOf(high, partitionCount));
      const partition = partitionOf(a, partitionCount);
      assert.ok(partitionStart(partition, partitionCount) <= a && a < partitionStart(partition + 1, partitionCount));
    }),
    { numRuns: 3000 },
  );
  assert.equal(partitionOf(0n, 256), 0);
  assert.equal(partitionOf(tokenSpace - 1n, 256), 255);
  assert.equal(partitionStart(256, 256), tokenSpace);
});

test('token: partitions of a fixed set of 65,536 keys are uniform (chi-square, Q = 64 and 256)', () => {
  // Deterministic: the keys are fixed, so the statistic is a constant and the test cannot flake.
  // With Q - 1 degrees of freedom the chi-square statistic of a uniform hash is about Q - 1 with
  // standard deviation sqrt(2(Q - 1)); the bound Q - 1 + 6 sqrt(2(Q - 1)) is six sigmas.
  const keyCount = 65_536;
  for (const partitionCount of [64, 256]) {
    const counts = new Array<number>(partitionCount).fill(0);
    const key = new Uint8Array(8);
    const view = new DataView(key.buffer);
    for (let index = 0; index < keyCount; index++) {
      view.setUint32(0, index);
      view.setUint32(4, index * 2654435761);
      counts[keyPartition('users', key, partitionCount)]! += 1;
    }
    const expected = keyCount / partitionCount;
    const chiSquare = counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
    const bound = partitionCount - 1 + 6 * Math.sqrt(2 * (partitionCount - 1));
    assert.ok(chiSquare < bound, `chi-square ${chiSquare.toFixed(1)} >= ${bound.toFixed(1)} for Q=${partitionCount}`);
  }
});

test('token: cost per call (informational, 200,000 keys of 16 bytes)', (context) => {
  const keys = Array.from({ length: 1000 }, (_, index) => new TextEncoder().encode(`key-${String(index).padStart(12, '0')}`));
  const rounds = 200;
  let sink = 0;
  const time = (run: (key: Uint8Array) => number): number => {
    const start = performance.now();
    for (let round = 0; round < rounds; round++) for (const key of keys) sink ^= run(key);
    return ((performance.now() - start) * 1e6) / (rounds * keys.length);
  };
  time((key) => keyPartition('users', key, 256)); // warm-up
  const rawHash = time((key) => Number(xxh64(key, 0n) & 0xffn));
  const fast = time((key) => keyPartition('users', key, 256));
  const viaToken = time((key) => partitionOf(keyToken('users', key), 256));
  context.diagnostic(`xxh64 alone ${rawHash.toFixed(0)} ns, keyPartition ${fast.toFixed(0)} ns, partitionOf(keyToken) ${viaToken.toFixed(0)} ns per call (sink ${sink & 1})`);
  assert.ok(fast < 20_000, 'keyPartition is absurdly slow');
});

test('token: a key token prefix lies in its partition\'s prefixes, and prefixPartition finds that partition (property)', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z]{1,8}$/), fc.uint8Array({ maxLength: 32 }), fc.integer({ min: 3, max: 12 }), (namespace, key, bits) => {
      const partitionCount = 2 ** bits;
      const prefix = keyTokenPrefix(namespace, key);
      const partition = keyPartition(namespace, key, partitionCount);
      const { first, end } = partitionTokenPrefixes(partition, partitionCount);
      assert.ok(prefix >= first && prefix < end);
      assert.equal(prefixPartition(prefix, partitionCount), partition);
      assert.equal(prefixPartition(first, partitionCount), partition);
      assert.equal(prefixPartition(end - 1, partitionCount), partition);
    }),
  );
});
