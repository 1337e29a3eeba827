import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { SystemClock } from '../../world/clock.js';
import { NodeFileSystem } from '../../world/file-system.js';
import { BlockCache } from './block-cache.js';
import { SyncReadGate } from './sync-read-gate.js';
import { footerBytes } from './sstable-format.js';
import { SstableReader } from './sstable-reader.js';
import { SstableWriter, type SstableEntry, type SstableOptions } from './sstable-writer.js';

// The in-memory FileSystem (src/world/memory-file-system.ts) did not exist when these tests were
// written: they run on the real disk in a temporary directory and flip bits with node:fs.
const fs = new NodeFileSystem();
let directory = '';
let fileNumber = 0;
const nextPath = (): string => join(directory, `${++fileNumber}.sst`);

/** Both ways a cold get reads its block: in the thread pool, and on this thread (SyncReadGate). */
const readPaths = ['pool', 'sync'] as const;
type ReadPath = (typeof readPaths)[number];
function openTable(path: string, cache: BlockCache, reads: ReadPath = 'pool'): Promise<SstableReader> {
  return SstableReader.open(fs, path, cache, reads === 'sync' ? new SyncReadGate(new SystemClock()) : undefined);
}

before(async () => {
  directory = await mkdtemp(join(tmpdir(), 'ringkv-sstable-'));
});
after(async () => {
  await rm(directory, { recursive: true, force: true });
});

function compare(left: Uint8Array, right: Uint8Array): number {
  return Buffer.compare(left, right);
}

async function writeTable(path: string, entries: readonly SstableEntry[], options: Partial<SstableOptions> = {}) {
  const writer = await SstableWriter.create(fs, path, options);
  for (const entry of entries) await writer.add(entry);
  return writer.finish();
}

async function collect(iterable: AsyncIterable<SstableEntry>): Promise<SstableEntry[]> {
  const entries: SstableEntry[] = [];
  for await (const entry of iterable) entries.push(entry);
  return entries;
}

function assertEntry(actual: SstableEntry | undefined, expected: SstableEntry | undefined): void {
  if (expected === undefined) {
    assert.equal(actual, undefined);
    return;
  }
  assert.ok(actual !== undefined, `missing ${Buffer.from(expected.key).toString('hex')}`);
  assert.deepEqual(Buffer.from(actual.key), Buffer.from(expected.key));
  assert.equal(actual.sequence, expected.sequence);
  if (expected.value === null) assert.equal(actual.value, null);
  else {
    assert.ok(actual.value !== null, 'a value, not a tombstone');
    assert.deepEqual(Buffer.from(actual.value), Buffer.from(expected.value));
  }
}

function isCorruption(error: unknown): boolean {
  return error instanceof RingkvError && error.code === ErrorCode.corruption;
}

/** Keys share prefixes on purpose: a few prefixes, then short binary suffixes. */
const keyArbitrary = fc
  .tuple(fc.constantFrom('', 'user/', 'user/0001/', '\u00ff\u00ff', 'p'), fc.uint8Array({ maxLength: 6 }))
  .map(([prefix, suffix]) => {
    const key = new Uint8Array(Buffer.byteLength(prefix, 'latin1') + suffix.length);
    key.set(Buffer.from(prefix, 'latin1'));
    key.set(suffix, key.length - suffix.length);
    return key;
  });

const valueArbitrary: fc.Arbitrary<Uint8Array | null> = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 9000 }).map((length) => new Uint8Array(length).map((_byte, index) => index % 7)) },
);

const entriesArbitrary = fc
  .array(fc.record({ key: keyArbitrary, sequence: fc.nat({ max: Number.MAX_SAFE_INTEGER }), value: valueArbitrary }), {
    minLength: 1,
    maxLength: 300,
    size: 'max',
  })
  .map((entries) => {
    const sorted = [...entries].sort((left, right) => compare(left.key, right.key));
    return sorted.filter((entry, index) => index === 0 || compare(sorted[index - 1]!.key, entry.key) !== 0);
  });

function oracleRange(entries: readonly SstableEntry[], gte: Uint8Array | undefined, lt: Uint8Array | undefined): SstableEntry[] {
  return entries.filter((entry) => (gte === undefined || compare(entry.key, gte) >= 0) && (lt === undefined || compare(entry.key, lt) < 0));
}

/** Small entries in a few blocks, for the bit-flip tests. */
function smallTable(): SstableEntry[] {
  return Array.from({ length: 40 }, (_unused, index) => ({
    key: Buffer.from(`key-${String(index).padStart(3, '0')}`),
    sequence: 1000 + index,
    value: index % 9 === 4 ? null : Buffer.from(`value ${index} `.repeat(4)),
  }));
}

describe('sstable', () => {
  for (const compression of ['snappy', 'none'] as const) for (const reads of readPaths) {
    it(`sstable: round trip of random sorted entries (property, compression ${compression}, ${reads} reads, 1 KiB blocks, cache 0 / 4 KiB / 1 MiB)`, async () => {
      await fc.assert(
        fc.asyncProperty(entriesArbitrary, fc.array(keyArbitrary, { maxLength: 40 }), fc.option(keyArbitrary), fc.option(keyArbitrary), fc.constantFrom(0, 4096, 1 << 20), async (entries, probes, gte, lt, cacheBytes) => {
          const path = nextPath();
          const info = await writeTable(path, entries, { blockBytes: 1024, compression });
          assert.equal(info.entries, entries.length);
          assert.deepEqual(Buffer.from(info.smallestKey), Buffer.from(entries[0]!.key));
          assert.deepEqual(Buffer.from(info.largestKey), Buffer.from(entries[entries.length - 1]!.key));
          assert.equal(info.smallestSequence, Math.min(...entries.map((entry) => entry.sequence)));
          assert.equal(info.largestSequence, Math.max(...entries.map((entry) => entry.sequence)));
          const reader = await openTable(path, new BlockCache(cacheBytes), reads);
          try {
            assert.equal(reader.info.fileBytes, info.fileBytes);
            for (const entry of entries) assertEntry(await reader.get(entry.key), entry);
            for (const probe of probes) {
              assertEntry(await reader.get(probe), entries.find((entry) => compare(entry.key, probe) === 0));
            }
            const all = await collect(reader.scan());
            assert.equal(all.length, entries.length);
            all.forEach((entry, index) => assertEntry(entry, entries[index]));
            const range = { ...(gte === null ? {} : { gte }), ...(lt === null ? {} : { lt }) };
            const bounded = await collect(reader.scan(range));
            const expected = oracleRange(entries, range.gte, range.lt);
            assert.equal(bounded.length, expected.length);
            bounded.forEach((entry, index) => assertEntry(entry, expected[index]));
          } finally {
            await reader.close();
          }
        }),
        { numRuns: 40 },
      );
    });
  }

  it('sstable: absent keys before, between and after the table read as undefined (10k keys, 4 KiB blocks)', async () => {
    const entries = Array.from({ length: 10_000 }, (_unused, index) => ({
      key: Buffer.from(`k${String(index * 2 + 10).padStart(8, '0')}`),
      sequence: index,
      value: Buffer.from(`v${index}`),
    }));
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 4096 });
    const reader = await SstableReader.open(fs, path, new BlockCache(1 << 20));
    for (let index = 0; index < entries.length; index += 7) {
      assertEntry(await reader.get(entries[index]!.key), entries[index]);
      assert.equal(await reader.get(Buffer.from(`k${String(index * 2 + 11).padStart(8, '0')}`)), undefined);
    }
    assert.equal(await reader.get(Buffer.from('a')), undefined);
    assert.equal(await reader.get(Buffer.from('k')), undefined);
    assert.equal(await reader.get(Buffer.from('k00000009')), undefined);
    assert.equal(await reader.get(Buffer.from('k999999999')), undefined);
    assert.equal(await reader.get(Buffer.from('z')), undefined);
    assert.equal(await reader.get(new Uint8Array(0)), undefined);
    const scanned = await collect(reader.scan({ gte: Buffer.from('k00000101'), lt: Buffer.from('k00000200') }));
    assert.deepEqual(
      scanned.map((entry) => Buffer.from(entry.key).toString()),
      oracleRange(entries, Buffer.from('k00000101'), Buffer.from('k00000200')).map((entry) => Buffer.from(entry.key).toString()),
    );
    await reader.close();
  });

  it('sstable: values larger than a block (100 KiB, 1 MiB) sit in blocks of their own', async () => {
    const big = new Uint8Array(100 * 1024).map((_byte, index) => (index * 31) % 256);
    const huge = new Uint8Array(1024 * 1024).map((_byte, index) => index % 13);
    const entries: SstableEntry[] = [
      { key: Buffer.from('a'), sequence: 1, value: Buffer.from('small') },
      { key: Buffer.from('b'), sequence: 2, value: big },
      { key: Buffer.from('c'), sequence: 3, value: huge },
      { key: Buffer.from('d'), sequence: 4, value: null },
    ];
    for (const compression of ['snappy', 'none'] as const) {
      const path = nextPath();
      await writeTable(path, entries, { blockBytes: 4096, compression });
      const reader = await SstableReader.open(fs, path, new BlockCache(64 * 1024));
      for (const entry of entries) assertEntry(await reader.get(entry.key), entry);
      (await collect(reader.scan())).forEach((entry, index) => assertEntry(entry, entries[index]));
      await reader.close();
    }
  });

  it('sstable: get is synchronous on a cache hit, on a key outside the range and on a bloom miss', async () => {
    const entries = smallTable();
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 1024 });
    const cache = new BlockCache(1 << 20);
    const reader = await SstableReader.open(fs, path, cache);
    const key = entries[5]!.key;
    const cold = reader.get(key);
    assert.ok(cold instanceof Promise, 'the first read of a block goes to the file');
    assertEntry(await cold, entries[5]);
    const hot = reader.get(key);
    assert.ok(!(hot instanceof Promise), 'a cached block is searched synchronously');
    assertEntry(hot, entries[5]);
    assert.ok(cache.hits >= 1);
    const outside = reader.get(Buffer.from('zzz'));
    assert.equal(outside, undefined);
    let bloomMisses = 0;
    for (let index = 0; index < 200; index++) {
      const absent = Buffer.from(`key-${String(index).padStart(3, '0')}x`);
      if (reader.mayContain(absent)) continue;
      bloomMisses++;
      assert.equal(reader.get(absent), undefined, 'a bloom miss answers without a Promise');
    }
    assert.ok(bloomMisses > 150, `bloom ruled out ${bloomMisses} of 200`);
    await reader.close();
    assert.equal(cache.sizeBytes, 0, 'close drops the table from the cache');
  });

  it('sstable: with sync reads a cold get answers without a Promise, reusing evicted cache buffers; a block a scan holds is never reused', async () => {
    const entries = Array.from({ length: 400 }, (_unused, index) => ({ key: Buffer.from(`key-${String(index).padStart(4, '0')}`), sequence: index + 1, value: Buffer.from(`value ${index} `.repeat(4)) }));
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 1024, compression: 'none' });
    // Room for two of these blocks (each charged a 2 KiB buffer): cold gets keep evicting.
    const cache = new BlockCache(2 * 2048);
    const seen = new Set<ArrayBufferLike>();
    let reused = 0;
    const allocate = cache.allocate.bind(cache);
    cache.allocate = (length: number): Uint8Array => {
      const buffer = allocate(length);
      if (seen.has(buffer.buffer)) reused++;
      seen.add(buffer.buffer);
      return buffer;
    };
    const reader = await openTable(path, cache, 'sync');
    // The first block, read synchronously into a reusable buffer, then taken by a scan from the cache.
    assertEntry(reader.get(entries[0]!.key) as SstableEntry, entries[0]);
    const scan = reader.scan()[Symbol.asyncIterator]();
    const first = await scan.next();
    assertEntry(first.value as SstableEntry, entries[0]);
    for (let round = 0; round < 3; round++) {
      for (const [index, entry] of entries.entries()) {
        const got = reader.get(entry.key);
        assert.ok(!(got instanceof Promise), `get ${index}: a synchronous read answers without a Promise`);
        assertEntry(got, entry);
      }
    }
    assert.ok(cache.misses > 40 && reused > 40, `the cache kept missing (${cache.misses} misses) and reusing buffers (${reused})`);
    // The scan's block was evicted long ago; had its buffer been reused, the rest of it would read
    // another block's entries.
    const rest: SstableEntry[] = [];
    for (let next = await scan.next(); next.done !== true; next = await scan.next()) rest.push(next.value);
    assert.equal(rest.length, entries.length - 1);
    rest.forEach((entry, index) => assertEntry(entry, entries[index + 1]));
    await reader.close();
  });

  it('sstable: a scan with fillCache false and a reverse scan read every entry; only the former leaves the cache empty', async () => {
    const entries = smallTable();
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 1024 });
    const cache = new BlockCache(1 << 20);
    const reader = await SstableReader.open(fs, path, cache);
    const scanned = await collect(reader.scan({}, { fillCache: false }));
    assert.equal(scanned.length, entries.length);
    scanned.forEach((entry, index) => assertEntry(entry, entries[index]));
    assert.equal(cache.blocks, 0, 'no block was cached');
    const reversed = await collect(reader.scanReverse({ gte: entries[3]!.key, lt: entries[entries.length - 2]!.key }));
    assert.deepEqual(reversed.map((entry) => Buffer.from(entry.key).toString()), entries.slice(3, entries.length - 2).reverse().map((entry) => Buffer.from(entry.key).toString()));
    assert.ok(cache.blocks > 0, 'a plain scan fills the cache');
    await reader.close();
  });

  it('sstable: concurrent cold gets of one block share one read and agree', async () => {
    const entries = smallTable();
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 4096 });
    const cache = new BlockCache(1 << 20);
    const reader = await SstableReader.open(fs, path, cache);
    const results = await Promise.all(entries.map((entry) => reader.get(entry.key)));
    results.forEach((result, index) => assertEntry(result, entries[index]));
    assert.equal(cache.blocks, 1);
    await reader.close();
  });

  it('sstable: buffers are copies: the writer copies a reused key Buffer, callers mutating results change nothing', async () => {
    const path = nextPath();
    const writer = await SstableWriter.create(fs, path, { blockBytes: 1024 });
    const key = Buffer.alloc(8);
    const value = Buffer.alloc(64);
    for (let index = 0; index < 100; index++) {
      key.writeUInt32BE(index, 4);
      value.fill(index);
      await writer.add({ key, sequence: index, value });
    }
    await writer.finish();
    for (const compression of [new BlockCache(1 << 20), new BlockCache(0)]) {
      const reader = await SstableReader.open(fs, path, compression);
      for (let round = 0; round < 2; round++) {
        for (let index = 0; index < 100; index++) {
          key.writeUInt32BE(index, 4);
          const entry = await reader.get(key);
          assert.ok(entry?.value != null);
          assert.deepEqual(Buffer.from(entry.value), Buffer.alloc(64, index));
          entry.value.fill(0xee); // must not reach the cached block
          (entry.key as Uint8Array).fill(0xee);
        }
      }
      await reader.close();
    }
  });

  it('sstable: writer asserts strictly increasing keys, refuses an empty table and abort deletes the file', async () => {
    const path = nextPath();
    const writer = await SstableWriter.create(fs, path, {});
    await writer.add({ key: Buffer.from('b'), sequence: 1, value: null });
    assert.throws(() => writer.add({ key: Buffer.from('b'), sequence: 2, value: null }), AssertionError);
    assert.throws(() => writer.add({ key: Buffer.from('a'), sequence: 2, value: null }), AssertionError);
    assert.throws(() => writer.add({ key: Buffer.from('c'), sequence: 2 ** 53 + 2, value: null }), AssertionError);
    await writer.abort();
    assert.equal(await fs.exists(path), false);
    const empty = await SstableWriter.create(fs, path, {});
    await assert.rejects(empty.finish(), AssertionError);
    await empty.abort();
    await assert.rejects(SstableWriter.create(fs, path, { blockBytes: 100 }), AssertionError);
  });

  it('sstable: open reports a file too short, or not an SSTable, as corruption naming the file', async () => {
    const path = nextPath();
    await writeFile(path, Buffer.from('hello'));
    await assert.rejects(SstableReader.open(fs, path, new BlockCache(0)), (error) => isCorruption(error) && String(error).includes(path));
    await writeFile(path, Buffer.alloc(4096, 7));
    await assert.rejects(SstableReader.open(fs, path, new BlockCache(0)), (error) => isCorruption(error) && String(error).includes('magic'));
  });

  for (const reads of readPaths) it(`sstable: a corrupt data block is reported with file and offset, never cached, and readable once repaired (${reads} reads)`, async () => {
    const entries = smallTable();
    const path = nextPath();
    await writeTable(path, entries, { blockBytes: 1024 });
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    damaged[3] = damaged[3]! ^ 0x10; // inside the first data block
    await writeFile(path, damaged);
    const cache = new BlockCache(1 << 20);
    const reader = await openTable(path, cache, reads);
    for (let attempt = 0; attempt < 2; attempt++) {
      await assert.rejects(
        Promise.resolve().then(() => reader.get(entries[0]!.key)),
        (error) => isCorruption(error) && String(error).includes(path) && String(error).includes('offset 0'),
      );
      assert.equal(cache.blocks, 0, 'a block that failed its checksum is not cached');
    }
    await assert.rejects(collect(reader.scan()), isCorruption);
    await writeFile(path, original); // same file, same handle: the next read sees repaired bytes
    assertEntry(await reader.get(entries[0]!.key), entries[0]);
    await reader.close();
  });

  for (const compression of ['snappy', 'none'] as const) for (const reads of readPaths) {
    it(`sstable: every single-bit flip is detected, never served (every byte, compression ${compression}, ${reads} reads)`, async () => {
      const entries = smallTable();
      const path = nextPath();
      const info = await writeTable(path, entries, { blockBytes: 1024, compression });
      const original = await readFile(path);
      assert.equal(original.length, info.fileBytes);
      let detectedOnOpen = 0;
      let detectedOnRead = 0;
      for (let position = 0; position < original.length; position++) {
        const damaged = Buffer.from(original);
        damaged[position] = damaged[position]! ^ (1 << (position % 8));
        await writeFile(path, damaged);
        let reader: SstableReader;
        try {
          reader = await openTable(path, new BlockCache(1 << 20), reads);
        } catch (error) {
          assert.ok(isCorruption(error), `flip at ${position}: ${String(error)}`);
          detectedOnOpen++;
          continue;
        }
        // Open passed: the flip is in a data block. Every get is right or reports corruption...
        for (const entry of entries) {
          try {
            assertEntry(await reader.get(entry.key), entry);
          } catch (error) {
            assert.ok(isCorruption(error), `flip at ${position}, get: ${String(error)}`);
          }
        }
        // ...and a full scan, which reads every block, must hit it: no byte is unchecked.
        await assert.rejects(collect(reader.scan()), isCorruption, `flip at ${position} went unnoticed by a full scan`);
        detectedOnRead++;
        await reader.close();
      }
      assert.equal(detectedOnOpen + detectedOnRead, original.length);
      assert.ok(detectedOnOpen >= footerBytes, 'footer and metadata flips are caught on open');
    });
  }
});
