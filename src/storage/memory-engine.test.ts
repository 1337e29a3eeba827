import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../core/assert.js';
import { ErrorCode, RingkvError } from '../core/errors.js';
import { SeededRandom, type Random } from '../core/random.js';
import type { BatchOperation } from './engine.js';
import { engineConformanceSuite } from './engine-conformance.js';
import { MemoryEngine, openMemoryEngine, scanChunkEntriesMax } from './memory-engine.js';
import { levelsMax, SkipList } from './skip-list.js';

engineConformanceSuite('memory', () => Promise.resolve(openMemoryEngine()));
// One entry per scan step: every write during a scan lands between chunks, in the overlay.
engineConformanceSuite('memory, scan chunk 1', () => Promise.resolve(openMemoryEngine({ scanChunkEntries: 1 })));
engineConformanceSuite('memory, scan chunk 3', () => Promise.resolve(openMemoryEngine({ scanChunkEntries: 3 })));

const encoder = new TextEncoder();
const text = (value: string): Uint8Array => encoder.encode(value);

/** A Random that counts its draws: the skip list draws once per inserted key, never otherwise. */
class CountingRandom implements Random {
  draws = 0;
  private readonly inner = new SeededRandom(7);
  nextUint32(): number {
    this.draws++;
    return this.inner.nextUint32();
  }
  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }
  nextInt(bound: number): number {
    return Math.floor(this.nextFloat() * bound);
  }
}

describe('memory engine', () => {
  it('memory engine: a key buffer changed in place between calls is read as its new bytes (the key string is reused only for the same bytes)', () => {
    const engine = new MemoryEngine();
    const key = Buffer.from('aa');
    engine.put(key, text('first'));
    assert.equal(Buffer.from(engine.get(key) as Uint8Array).toString(), 'first');
    key[0] = 0x62; // now 'ba'
    assert.equal(engine.get(key), undefined);
    engine.put(key, text('second'));
    key[1] = 0x62; // now 'bb'
    engine.delete(key);
    assert.equal(Buffer.from(engine.get(Buffer.from('aa')) as Uint8Array).toString(), 'first');
    assert.equal(Buffer.from(engine.get(Buffer.from('ba')) as Uint8Array).toString(), 'second');
    assert.equal(engine.stats().keyCount, 2);
  });
  it('memory engine: point ops: get, put, delete and batch return plain values, not Promises', () => {
    const engine = new MemoryEngine();
    const putResult: unknown = engine.put(text('k'), text('v'));
    assert.equal(putResult, undefined);
    const value: unknown = engine.get(text('k'));
    assert.ok(value instanceof Uint8Array, 'get returns the bytes themselves');
    assert.equal(engine.get(text('missing')), undefined);
    const batchResult: unknown = engine.batch([{ type: 'delete', key: text('k') }]);
    assert.equal(batchResult, undefined);
    const deleteResult: unknown = engine.delete(text('k'));
    assert.equal(deleteResult, undefined);
    assert.equal(engine.get(text('k')), undefined);
    assert.equal(engine.kind, 'memory');
  });

  it('memory engine: copies: a value cut from a 64 KiB socket chunk does not retain the chunk', () => {
    const engine = openMemoryEngine();
    const chunk = new Uint8Array(64 * 1024).map((_byte, index) => index % 251);
    engine.put(chunk.subarray(10, 20), chunk.subarray(100, 132));
    engine.batch([{ type: 'put', key: chunk.subarray(20, 30), value: chunk.subarray(200, 216) }]);
    const stored = engine.get(chunk.subarray(10, 20));
    const storedByBatch = engine.get(chunk.subarray(20, 30));
    assert.ok(stored !== undefined && storedByBatch !== undefined);
    assert.equal(stored.byteLength, 32);
    assert.notEqual(stored.buffer, chunk.buffer, 'the stored value is not a view into the chunk');
    assert.notEqual(storedByBatch.buffer, chunk.buffer);
    assert.equal(storedByBatch.byteLength, 16);
    chunk.fill(0);
    assert.ok(stored.every((byte, index) => byte === 100 + index), 'the stored value does not alias the chunk');
  });

  it('memory engine: overwrite: replacing a value does not touch the skip list', () => {
    const random = new CountingRandom();
    const engine = new MemoryEngine({ random });
    engine.put(text('a'), text('1'));
    engine.put(text('b'), text('2'));
    assert.equal(random.draws, 2, 'one level drawn per new key');
    for (let round = 0; round < 100; round++) engine.put(text('a'), text(`value ${round}`));
    engine.batch([{ type: 'put', key: text('b'), value: text('3') }]);
    assert.equal(random.draws, 2, 'overwrites draw no level');
    assert.equal(new TextDecoder().decode(engine.get(text('a'))), 'value 99');
  });

  it('memory engine: stats: sizeBytes is the exact sum of live key and value lengths', () => {
    const engine = new MemoryEngine();
    engine.put(text('ab'), new Uint8Array(10));
    engine.put(text('cde'), new Uint8Array(5));
    assert.deepEqual(engine.stats(), { keyCount: 2, sizeBytes: 2 + 10 + 3 + 5 });
    engine.put(text('ab'), new Uint8Array(4));
    assert.deepEqual(engine.stats(), { keyCount: 2, sizeBytes: 2 + 4 + 3 + 5 });
    engine.batch([{ type: 'delete', key: text('cde') }, { type: 'delete', key: text('zz') }]);
    assert.deepEqual(engine.stats(), { keyCount: 1, sizeBytes: 2 + 4 });
  });

  it('memory engine: batch: an invalid operation is rejected before any is applied', () => {
    const engine = new MemoryEngine();
    const operations = [
      { type: 'put', key: text('a'), value: text('1') },
      { type: 'put', key: text('b') },
    ] as unknown as BatchOperation[];
    assert.throws(() => engine.batch(operations), AssertionError);
    assert.equal(engine.get(text('a')), undefined);
    assert.equal(engine.stats().keyCount, 0);
  });

  it('memory engine: scan: an open scan is released when it ends, breaks or the engine closes', async () => {
    const engine = new MemoryEngine();
    for (let index = 0; index < 3 * scanChunkEntriesMax; index++) engine.put(text(`k${String(index).padStart(4, '0')}`), text('v'));
    let count = 0;
    for await (const _entry of engine.scan()) count++;
    assert.equal(count, 3 * scanChunkEntriesMax);
    assert.equal(engine.scansOpenCount, 0, 'a finished scan is released');
    for await (const _entry of engine.scan()) {
      assert.equal(engine.scansOpenCount, 1);
      break;
    }
    assert.equal(engine.scansOpenCount, 0, 'a scan left by break is released');
    const iterator = engine.scan()[Symbol.asyncIterator]();
    await iterator.next();
    await engine.close();
    assert.equal(engine.scansOpenCount, 0, 'close releases open scans');
    await assert.rejects(
      async () => iterator.next(),
      (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.engineClosed,
    );
  });

  it('memory engine: scan: a negative or fractional limit is a bug and fails an assertion', async () => {
    const engine = new MemoryEngine();
    for (const limit of [-1, 1.5, Number.NaN]) {
      await assert.rejects(async () => {
        for await (const _entry of engine.scan({ limit })) assert.fail('no entry expected');
      }, AssertionError);
    }
    assert.equal(engine.scansOpenCount, 0);
  });

  it('memory engine: close: get, put, delete and batch throw ENGINE_CLOSED synchronously', async () => {
    const engine = new MemoryEngine();
    await engine.close();
    const closed = (error: unknown): boolean => error instanceof RingkvError && error.code === ErrorCode.engineClosed;
    assert.throws(() => engine.get(text('a')), closed);
    assert.throws(() => engine.put(text('a'), text('1')), closed);
    assert.throws(() => engine.delete(text('a')), closed);
    assert.throws(() => engine.batch([]), closed);
    assert.throws(() => engine.stats(), closed);
  });
});

/** The naive model of the skip list: a Map plus sorting by `<` on demand. */
function oracleEntries(model: Map<string, number>, gte?: string, lt?: string, reverse = false): [string, number][] {
  const entries = [...model.entries()]
    .filter(([key]) => (gte === undefined || key >= gte) && (lt === undefined || key < lt))
    .sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0));
  return reverse ? entries.reverse() : entries;
}

describe('skip list', () => {
  const keyArbitrary = fc.string({ unit: fc.constantFrom('\u0000', 'a', 'b', '\u007f', '\u0080', '\u00ff'), maxLength: 4 });
  const commandArbitrary = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), key: keyArbitrary, value: fc.integer() }),
    fc.record({ kind: fc.constant('delete' as const), key: keyArbitrary }),
    fc.record({ kind: fc.constant('get' as const), key: keyArbitrary }),
  );

  it('skip list: model: set, delete and get match a Map, invariants hold after every step', () => {
    fc.assert(
      fc.property(fc.integer(), fc.array(commandArbitrary, { maxLength: 200 }), (seed, commands) => {
        const list = new SkipList<number>(new SeededRandom(seed));
        const model = new Map<string, number>();
        for (const command of commands) {
          if (command.kind === 'set') {
            assert.equal(list.set(command.key, command.value), !model.has(command.key));
            model.set(command.key, command.value);
          } else if (command.kind === 'delete') {
            assert.equal(list.delete(command.key), model.delete(command.key));
          } else {
            assert.equal(list.get(command.key), model.get(command.key));
            assert.equal(list.has(command.key), model.has(command.key));
          }
          list.invariants();
          assert.equal(list.size, model.size);
        }
        assert.deepEqual([...list.entries()], oracleEntries(model));
      }),
      { numRuns: 200 },
    );
  });

  it('skip list: ranges: entries forward and reverse between bounds match the sorted model', () => {
    fc.assert(
      fc.property(
        fc.integer(),
        fc.uniqueArray(keyArbitrary, { maxLength: 80 }),
        fc.option(keyArbitrary, { nil: undefined }),
        fc.option(keyArbitrary, { nil: undefined }),
        fc.boolean(),
        (seed, keys, gte, lt, reverse) => {
          const list = new SkipList<number>(new SeededRandom(seed));
          const model = new Map<string, number>();
          keys.forEach((key, index) => {
            list.set(key, index);
            model.set(key, index);
          });
          assert.deepEqual([...list.entries({ gte, lt, reverse })], oracleEntries(model, gte, lt, reverse));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('skip list: shape: 20000 ascending then deleted keys keep levels logarithmic and bounded', () => {
    const list = new SkipList<number>(new SeededRandom(1));
    const count = 20_000;
    const keyOf = (index: number): string => `key${String(index).padStart(6, '0')}`;
    for (let index = 0; index < count; index++) list.set(keyOf(index), index);
    list.invariants();
    assert.equal(list.size, count);
    assert.deepEqual([...list.entries({ gte: keyOf(19_998) })], [[keyOf(19_998), 19_998], [keyOf(19_999), 19_999]]);
    assert.deepEqual([...list.entries({ lt: keyOf(1), reverse: true })], [[keyOf(0), 0]]);
    for (let index = 0; index < count; index += 2) assert.ok(list.delete(keyOf(index)));
    list.invariants();
    assert.equal(list.size, count / 2);
    assert.equal(list.get(keyOf(1)), 1);
    assert.equal(list.get(keyOf(2)), undefined);
  });

  it('skip list: levels: a Random that always says "taller" is capped at levelsMax', () => {
    const alwaysZero: Random = { nextUint32: () => 0, nextFloat: () => 0, nextInt: () => 0 };
    const list = new SkipList<string>(alwaysZero);
    for (const key of ['c', 'a', 'b', 'd']) list.set(key, key.toUpperCase());
    list.invariants();
    assert.ok(levelsMax >= 8);
    assert.deepEqual([...list.entries({ reverse: true })].map(([key]) => key), ['d', 'c', 'b', 'a']);
    list.clear();
    list.invariants();
    assert.equal(list.size, 0);
    assert.deepEqual([...list.entries()], []);
  });

  it('skip list: iteration: adding a key while an iterator is suspended fails an assertion', () => {
    const list = new SkipList<number>(new SeededRandom(3));
    list.set('a', 1);
    list.set('b', 2);
    const iterator = list.entries();
    assert.deepEqual(iterator.next().value, ['a', 1]);
    list.set('a', 10);
    assert.deepEqual(iterator.next().value, ['b', 2], 'replacing a value is allowed');
    list.set('c', 3);
    assert.throws(() => iterator.next(), AssertionError);
  });
});
