// Laws of the last-write-wins register (last-write-wins.ts): merge is a join (commutative,
// associative, idempotent), and the survivor of any set of writes is the naive maximum — sort
// every version by (encoded timestamp, tombstone last, value bytes) and take the last.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AssertionError } from './assert.js';
import { createClock, encode, logicalMax, now, receive, type HlcTimestamp } from './hybrid-logical-clock.js';
import { compareBytes, liveValue, merge, survivor, tombstone, write, type LwwValue, type Tombstone } from './last-write-wins.js';

const numRuns = 1000;
type Bytes = Uint8Array;

// Few distinct timestamps and values, so that equal timestamps (the tie-break paths) are common.
const timestampArbitrary: fc.Arbitrary<HlcTimestamp> = fc.record(
  { wallMs: fc.integer({ min: 0, max: 3 }), logical: fc.integer({ min: 0, max: 2 }), nodeId: fc.constantFrom('a', 'b') },
  { noNullPrototype: true },
);
const valueArbitrary: fc.Arbitrary<Bytes | Tombstone> = fc.oneof(
  fc.uint8Array({ maxLength: 2 }).map((bytes) => bytes.map((byte) => byte % 3)),
  fc.constant(tombstone),
);
const versionArbitrary: fc.Arbitrary<LwwValue<Bytes>> = fc.record({ timestamp: timestampArbitrary, value: valueArbitrary }, { noNullPrototype: true });

const mergeBytes = (a: LwwValue<Bytes>, b: LwwValue<Bytes>): LwwValue<Bytes> => merge(a, b, compareBytes);

/** The oracle: a sort key that orders versions the way LWW must, without any merge logic. */
function naiveSurvivor(versions: readonly LwwValue<Bytes>[]): LwwValue<Bytes> {
  const key = (version: LwwValue<Bytes>): string =>
    `${encode(version.timestamp)}\u0000${version.value === tombstone ? '2' : `1${[...version.value].map((byte) => String.fromCharCode(byte + 0x41)).join('')}`}`;
  const sorted = [...versions].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
  return sorted[sorted.length - 1] as LwwValue<Bytes>;
}

test('lww: merge is commutative, associative and idempotent (values equal up to identity)', () => {
  fc.assert(
    fc.property(versionArbitrary, versionArbitrary, versionArbitrary, (a, b, c) => {
      assert.deepEqual(mergeBytes(a, b), mergeBytes(b, a));
      assert.deepEqual(mergeBytes(mergeBytes(a, b), c), mergeBytes(a, mergeBytes(b, c)));
      assert.equal(mergeBytes(a, a), a);
      const merged = mergeBytes(a, b);
      assert.ok(merged === a || merged === b, 'merge picks one of its arguments');
    }),
    { numRuns },
  );
});

test('lww: the survivor of any set of writes is the naive maximum, in any order (1..20 versions)', () => {
  fc.assert(
    fc.property(fc.array(versionArbitrary, { minLength: 1, maxLength: 20 }), fc.func(fc.integer()), (versions, shuffleKey) => {
      const expected = naiveSurvivor(versions);
      assert.deepEqual(survivor(versions, compareBytes), expected);
      const shuffled = [...versions].sort((x, y) => shuffleKey(x) - shuffleKey(y));
      assert.deepEqual(survivor(shuffled, compareBytes), expected);
      let applied: LwwValue<Bytes> | undefined;
      for (const version of shuffled) applied = write(applied, version.value, version.timestamp, compareBytes);
      assert.deepEqual(applied, expected, 'writing one by one agrees with the survivor');
    }),
    { numRuns },
  );
});

test('lww: a tombstone wins a timestamp tie, a live value never resurrects an older delete', () => {
  const at = (wallMs: number, logical = 0): HlcTimestamp => ({ wallMs, logical, nodeId: 'a' });
  const value = new Uint8Array([9]);
  const deleted = write<Bytes>(undefined, tombstone, at(10), compareBytes);
  assert.equal(write(deleted, value, at(10), compareBytes), deleted, 'tie: delete wins');
  assert.equal(liveValue(write(deleted, value, at(9, logicalMax), compareBytes)), undefined, 'older write loses');
  assert.deepEqual(liveValue(write(deleted, value, at(10, 1), compareBytes)), value, 'newer write wins');
  assert.equal(liveValue<Bytes>(undefined), undefined);
});

test('lww: a write stamped by receive() after reading supersedes what was read (skewed clocks)', () => {
  // The HLC's happens-before law is what LWW relies on: node b, whose physical clock is 300 ms
  // behind, reads a's write and overwrites it; the overwrite must win despite the skew.
  const fromA = now(createClock({ nodeId: 'a' }), 10_000).timestamp;
  const stored = write<Bytes>(undefined, new Uint8Array([1]), fromA, compareBytes);
  const clockB = receive(createClock({ nodeId: 'b' }), stored.timestamp, 9_700);
  assert.ok(clockB.ok);
  const overwrite = now(clockB.state, 9_701).timestamp;
  assert.deepEqual(liveValue(write(stored, new Uint8Array([2]), overwrite, compareBytes)), new Uint8Array([2]));
});

test('lww: compareBytes is lexicographic with the shorter prefix first', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4 }), fc.uint8Array({ maxLength: 4 }), (a, b) => {
      const naive = Buffer.compare(Buffer.from(a), Buffer.from(b));
      assert.equal(Math.sign(compareBytes(a, b)), naive);
    }),
    { numRuns },
  );
});

test('lww: survivor of nothing and malformed timestamps are bugs', () => {
  assert.throws(() => survivor<Bytes>([], compareBytes), AssertionError);
  assert.throws(() => write<Bytes>(undefined, tombstone, { wallMs: -1, logical: 0, nodeId: 'a' }, compareBytes), AssertionError);
});
