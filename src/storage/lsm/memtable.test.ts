import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../../core/assert.js';
import { Memtable, memtableEntryOverheadBytes, type MemtableEntry, type MemtableRange } from './memtable.js';

/** The oracle: a Map from hex key to the newest entry, sorted on demand by unsigned byte order. */
class MemtableModel {
  readonly entries = new Map<string, { key: Uint8Array; value: Uint8Array | null; sequence: number }>();

  write(key: Uint8Array, value: Uint8Array | null, sequence: number): void {
    const copy = value === null ? null : Uint8Array.from(value);
    this.entries.set(Buffer.from(key).toString('hex'), { key: Uint8Array.from(key), value: copy, sequence });
  }

  get(key: Uint8Array): { value: Uint8Array | null; sequence: number } | undefined {
    const entry = this.entries.get(Buffer.from(key).toString('hex'));
    return entry === undefined ? undefined : { value: entry.value, sequence: entry.sequence };
  }

  range(range: MemtableRange, reverse: boolean): MemtableEntry[] {
    const inRange = [...this.entries.values()].filter(({ key }) => {
      const aboveStart = range.gte === undefined || Buffer.compare(key, range.gte) >= 0;
      return aboveStart && (range.lt === undefined || Buffer.compare(key, range.lt) < 0);
    });
    inRange.sort((a, b) => Buffer.compare(a.key, b.key));
    return reverse ? inRange.reverse() : inRange;
  }

  /** The documented formula: key bytes + value bytes + a constant per entry. */
  sizeBytes(): number {
    let total = 0;
    for (const { key, value } of this.entries.values()) total += key.length + (value?.length ?? 0) + memtableEntryOverheadBytes;
    return total;
  }
}

/** Plain arrays, so deepEqual compares bytes and not Buffer vs Uint8Array. */
const plain = (entries: Iterable<MemtableEntry>): { key: number[]; value: number[] | null; sequence: number }[] =>
  [...entries].map(({ key, value, sequence }) => ({ key: [...key], value: value === null ? null : [...value], sequence }));

// Few distinct keys so that writes collide; bytes >= 0x80 check that latin1 order is byte order.
const keyArbitrary = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 2, max: 2 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2 }).map((key) => key.map((byte) => byte | 0x80)) },
);
const rangeArbitrary = fc.record({ gte: fc.option(keyArbitrary, { nil: undefined }), lt: fc.option(keyArbitrary, { nil: undefined }) });

type Command =
  | { readonly type: 'put'; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: 'delete'; readonly key: Uint8Array }
  | { readonly type: 'get'; readonly key: Uint8Array }
  | { readonly type: 'range'; readonly range: MemtableRange; readonly reverse: boolean }
  | { readonly type: 'snapshot'; readonly range: MemtableRange; readonly reverse: boolean; readonly taken: number };

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant('put' as const), key: keyArbitrary, value: fc.uint8Array({ maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('delete' as const), key: keyArbitrary }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('get' as const), key: keyArbitrary }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('range' as const), range: rangeArbitrary, reverse: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constant('snapshot' as const), range: rangeArbitrary, reverse: fc.boolean(), taken: fc.nat(4) }),
  },
);

/** An iterator opened on the active memtable, with what the model said when it was opened. */
interface OpenSnapshot {
  readonly iterator: Iterator<MemtableEntry>;
  readonly expected: MemtableEntry[];
  readonly read: MemtableEntry[];
}

function drain(snapshot: OpenSnapshot): void {
  for (let step = snapshot.iterator.next(); step.done !== true; step = snapshot.iterator.next()) snapshot.read.push(step.value);
  assert.deepEqual(plain(snapshot.read), plain(snapshot.expected));
}

function runCommands(commands: readonly Command[]): { memtable: Memtable; model: MemtableModel } {
  const memtable = new Memtable();
  const model = new MemtableModel();
  const open: OpenSnapshot[] = [];
  let sequence = 0;
  for (const command of commands) {
    switch (command.type) {
      case 'put':
        sequence++;
        memtable.put(command.key, command.value, sequence);
        model.write(command.key, command.value, sequence);
        break;
      case 'delete':
        sequence++;
        memtable.delete(command.key, sequence);
        model.write(command.key, null, sequence);
        break;
      case 'get':
        assert.deepEqual(plain(toEntry(command.key, memtable.get(command.key))), plain(toEntry(command.key, model.get(command.key))));
        break;
      case 'range':
        assert.deepEqual(plain(memtable.entries(command.range, command.reverse)), plain(model.range(command.range, command.reverse)));
        break;
      case 'snapshot': {
        // Read a few entries now, the rest after later writes: the snapshot must not see them.
        const snapshot: OpenSnapshot = {
          iterator: memtable.entries(command.range, command.reverse),
          expected: model.range(command.range, command.reverse),
          read: [],
        };
        for (let index = 0; index < command.taken; index++) {
          const step = snapshot.iterator.next();
          if (step.done === true) break;
          snapshot.read.push(step.value);
        }
        open.push(snapshot);
        break;
      }
    }
    assert.equal(memtable.count, model.entries.size);
    assert.equal(memtable.sizeBytes, model.sizeBytes());
  }
  for (const snapshot of open) drain(snapshot);
  memtable.invariants();
  return { memtable, model };
}

const toEntry = (key: Uint8Array, found: { value: Uint8Array | null; sequence: number } | undefined): MemtableEntry[] =>
  found === undefined ? [] : [{ key, value: found.value, sequence: found.sequence }];

describe('memtable', () => {
  it('memtable: random put/delete/get/range/snapshot sequences match a sorted-map oracle (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(commandArbitrary, { maxLength: 120, size: 'medium' }), (commands) => {
        runCommands(commands);
      }),
      { numRuns: 500 },
    );
  });

  it('memtable: a scan of the active memtable is a snapshot at the call (overwrite, delete, insert after it)', () => {
    const memtable = new Memtable();
    memtable.put(Buffer.from('a'), Buffer.from('1'), 1);
    memtable.put(Buffer.from('b'), Buffer.from('2'), 2);
    const iterator = memtable.entries();
    memtable.put(Buffer.from('b'), Buffer.from('3'), 3);
    memtable.delete(Buffer.from('a'), 4);
    memtable.put(Buffer.from('c'), Buffer.from('5'), 5);
    assert.deepEqual(plain(iterator), plain([
      { key: Buffer.from('a'), value: Buffer.from('1'), sequence: 1 },
      { key: Buffer.from('b'), value: Buffer.from('2'), sequence: 2 },
    ]));
  });

  const commandsArbitrary = fc.array(commandArbitrary, { maxLength: 80, size: 'medium' });
  it('memtable: frozen is immutable, its lazy iteration and gets match the oracle, writes assert (fast-check)', () => {
    fc.assert(
      fc.property(commandsArbitrary, rangeArbitrary, fc.boolean(), keyArbitrary, (commands, range, reverse, key) => {
        const { memtable, model } = runCommands(commands);
        const sizeBytes = memtable.sizeBytes;
        memtable.freeze();
        assert.equal(memtable.frozen, true);
        const iterator = memtable.entries(range, reverse);
        assert.throws(() => memtable.put(key, new Uint8Array([1]), Number.MAX_SAFE_INTEGER), AssertionError);
        assert.throws(() => memtable.delete(key, Number.MAX_SAFE_INTEGER), AssertionError);
        assert.deepEqual(plain(iterator), plain(model.range(range, reverse)));
        assert.deepEqual(plain(toEntry(key, memtable.get(key))), plain(toEntry(key, model.get(key))));
        assert.equal(memtable.sizeBytes, sizeBytes);
        assert.equal(memtable.count, model.entries.size);
        memtable.freeze();
        memtable.invariants();
      }),
      { numRuns: 200 },
    );
  });

  it('memtable: a write at or below the key\'s stored sequence is a bug (asserts), other keys unaffected', () => {
    const memtable = new Memtable();
    const key = Buffer.from('k');
    memtable.put(key, Buffer.from('v'), 10);
    assert.throws(() => memtable.put(key, Buffer.from('w'), 10), AssertionError);
    assert.throws(() => memtable.delete(key, 9), AssertionError);
    assert.throws(() => memtable.put(key, Buffer.from('w'), -1), AssertionError);
    assert.throws(() => memtable.put(key, Buffer.from('w'), 11.5), AssertionError);
    memtable.put(Buffer.from('other'), Buffer.from('x'), 5);
    assert.deepEqual(memtable.get(key), { value: Buffer.from('v'), sequence: 10 });
    memtable.delete(key, 12);
    assert.deepEqual(memtable.get(key), { value: null, sequence: 12 });
    assert.equal(memtable.smallestSequence, 5);
    assert.equal(memtable.largestSequence, 12);
    memtable.invariants();
  });

  it('memtable: keys and values are copies in both directions', () => {
    const memtable = new Memtable();
    const key = Uint8Array.from([1, 2, 3]);
    const backing = Uint8Array.from([9, 8, 7, 6, 5]);
    memtable.put(key, backing.subarray(1, 4), 1);
    key[0] = 0;
    backing.fill(0);
    const found = memtable.get(Uint8Array.from([1, 2, 3]));
    assert.deepEqual([...(found?.value ?? [])], [8, 7, 6]);
    found?.value?.fill(0);
    const [entry] = [...memtable.entries()];
    assert.deepEqual([...(entry?.key ?? [])], [1, 2, 3]);
    assert.deepEqual([...(entry?.value ?? [])], [8, 7, 6]);
    assert.equal(memtable.get(Uint8Array.from([0, 2, 3])), undefined);
  });

  it('memtable: empty: no entries, zero size, no sequence bounds', () => {
    const memtable = new Memtable();
    assert.equal(memtable.count, 0);
    assert.equal(memtable.sizeBytes, 0);
    assert.equal(memtable.smallestSequence, undefined);
    assert.equal(memtable.largestSequence, undefined);
    assert.deepEqual([...memtable.entries({ gte: Buffer.from('b'), lt: Buffer.from('a') })], []);
    memtable.freeze();
    assert.deepEqual([...memtable.entries()], []);
  });

  it('memtable: a tombstone for an absent key is kept and counted (it shadows older tables)', () => {
    const memtable = new Memtable();
    memtable.delete(Buffer.from('gone'), 3);
    assert.equal(memtable.count, 1);
    assert.equal(memtable.sizeBytes, 4 + memtableEntryOverheadBytes);
    assert.deepEqual(plain(memtable.entries()), [{ key: [...Buffer.from('gone')], value: null, sequence: 3 }]);
  });
});
