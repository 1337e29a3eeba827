import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BloomFilter, BloomFilterBuilder, bloomKeyHash, bloomProbes } from './bloom-filter.js';

function keyOf(prefix: number, index: number): Uint8Array {
  const key = new Uint8Array(16);
  const view = new DataView(key.buffer);
  view.setUint32(0, prefix);
  view.setUint32(12, index);
  return key;
}

function build(keys: readonly Uint8Array[], bitsPerKey: number): BloomFilter {
  const builder = new BloomFilterBuilder(bitsPerKey);
  for (const key of keys) builder.add(key);
  const filter = BloomFilter.decode(builder.finish());
  assert.ok(filter !== undefined);
  return filter;
}

function falsePositiveRate(bitsPerKey: number, keys: number, probes: number): number {
  const filter = build(Array.from({ length: keys }, (_unused, index) => keyOf(1, index)), bitsPerKey);
  let positives = 0;
  for (let index = 0; index < probes; index++) if (filter.mayContain(keyOf(2, index))) positives++;
  return positives / probes;
}

describe('bloom filter', () => {
  it('bloom filter: no false negatives (property: any key set, any bits per key)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 24 }), { maxLength: 300 }),
        fc.integer({ min: 1, max: 20 }),
        (keys, bitsPerKey) => {
          const filter = build(keys, bitsPerKey);
          for (const key of keys) assert.ok(filter.mayContain(key));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('bloom filter: asking with a hash computed once answers as asking with the key (property, present and absent keys)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 24 }), { maxLength: 200 }), fc.array(fc.uint8Array({ maxLength: 24 }), { maxLength: 200 }), fc.integer({ min: 1, max: 20 }), (keys, probes, bitsPerKey) => {
        const filter = build(keys, bitsPerKey);
        for (const key of [...keys, ...probes]) assert.equal(filter.mayContainHashed(bloomKeyHash(key)), filter.mayContain(key));
      }),
      { numRuns: 200 },
    );
  });

  it('bloom filter: false-positive rate near target (100k keys, 100k absent keys, 10 bits/key below 2%)', (context) => {
    const rate = falsePositiveRate(10, 100_000, 100_000);
    context.diagnostic(`measured false-positive rate at 10 bits/key: ${(rate * 100).toFixed(3)}% (theory ~0.82%)`);
    assert.ok(rate < 0.02, `rate ${rate}`);
    assert.ok(rate > 0.002, `rate ${rate} is implausibly low: are probes being made?`);
    const rateAt5 = falsePositiveRate(5, 100_000, 100_000);
    context.diagnostic(`measured false-positive rate at 5 bits/key: ${(rateAt5 * 100).toFixed(3)}% (theory ~9.2%)`);
    assert.ok(rateAt5 > rate && rateAt5 < 0.15, `rate at 5 bits/key ${rateAt5}`);
  });

  it('bloom filter: probes are round(bits ln 2), at least 1, at most 30', () => {
    assert.equal(bloomProbes(10), 7);
    assert.equal(bloomProbes(1), 1);
    assert.equal(bloomProbes(32), 22);
  });

  it('bloom filter: empty key set still decodes, and rejects keys', () => {
    const filter = build([], 10);
    assert.equal(filter.mayContain(keyOf(1, 1)), false);
  });

  it('bloom filter: decode refuses bytes that cannot be a filter (no probe count, probe count 0 or > 30)', () => {
    assert.equal(BloomFilter.decode(new Uint8Array([7])), undefined);
    assert.equal(BloomFilter.decode(new Uint8Array([0xff, 0])), undefined);
    assert.equal(BloomFilter.decode(new Uint8Array([0xff, 31])), undefined);
  });
});
