import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { DvvSet, VersionVector } from '../core/dvv.js';
import { overwrite } from '../core/dvv.js';
import { decodeClock, decodeContext, decodeHistory, decodeNewestValue, decodeObject, encodeContext, encodeObject, encodeOverwrite, newestSibling, summarizeHistory, type Sibling } from './stored-object.js';

const sibling: fc.Arbitrary<Sibling> = fc.record({
  value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }),
  writtenAtMs: fc.oneof(fc.integer({ min: 0, max: 2 }), fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER), fc.integer({ min: 1_600_000_000_000, max: 2_000_000_000_000 })),
  contentType: fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
});

const actors = fc.uniqueArray(fc.stringMatching(/^[a-z0-9-]{1,20}$/), { maxLength: 5 }).map((names) => [...names].sort());

const object: fc.Arbitrary<DvvSet<Sibling>> = actors.chain((names) =>
  fc.record({
    entries: fc.tuple(...names.map((actor) => fc.record({ actor: fc.constant(actor), counter: fc.integer({ min: 3, max: 2 ** 40 }), values: fc.array(sibling, { maxLength: 3 }) }))),
    anonymous: fc.array(sibling, { maxLength: 2 }),
  }),
);

function plain(set: DvvSet<Sibling>): unknown {
  const siblingPlain = (entry: Sibling) => ({ ...entry, value: entry.value === null ? null : [...entry.value] });
  return { entries: set.entries.map((entry) => ({ ...entry, values: entry.values.map(siblingPlain) })), anonymous: set.anonymous.map(siblingPlain) };
}

test('stored object: decode(encode(x)) equals x (random objects, binary values, tombstones)', () => {
  fc.assert(fc.property(object, (set) => assert.deepEqual(plain(decodeObject(encodeObject(set))), plain(set))), { numRuns: 500 });
});

test('stored object: numbers at every varint length boundary round-trip, in the LEB128 bytes the format documents', () => {
  for (let bits = 0; bits <= 53; bits++) {
    for (const value of [2 ** bits - 1, 2 ** bits, 2 ** bits + 1].filter((candidate) => candidate >= 0 && Number.isSafeInteger(candidate))) {
      const set: DvvSet<Sibling> = { entries: [{ actor: 'a', counter: value, values: [{ value: null, writtenAtMs: value, contentType: '' }] }], anonymous: [] };
      const bytes = encodeObject(set);
      assert.deepEqual(plain(decodeObject(bytes)), plain(set), `value ${value}`);
      // version, entry count, actor length, 'a', then the counter: 7 bits a byte, low first.
      const expected: number[] = [];
      for (let rest = value; ; rest = Math.floor(rest / 128)) {
        if (rest < 128) {
          expected.push(rest);
          break;
        }
        expected.push((rest % 128) | 0x80);
      }
      assert.deepEqual([...bytes.subarray(4, 4 + expected.length)], expected, `counter ${value}`);
    }
  }
});

test('stored object: encodeOverwrite writes the bytes of encodeObject(overwrite(history)), for a new, an existing, a first and a last actor', () => {
  // Actors of the generated objects are [a-z0-9-]; these sort before, among and after them.
  const writer = fc.oneof(fc.stringMatching(/^[a-z0-9-]{1,20}$/), fc.constantFrom('', '-', '0', 'zzzzzzzzzzzzzzzzzzzzz', 'node-1'));
  fc.assert(
    fc.property(object, writer, sibling, fc.boolean(), (set, candidate, written, reuse) => {
      // Half the runs write as an actor the object already has.
      const actor = reuse && set.entries.length > 0 ? (set.entries[set.entries.length >> 1] as { actor: string }).actor : candidate === '' ? 'a' : candidate;
      const stored = encodeObject(set);
      const expected = encodeObject(overwrite(decodeHistory(stored).history, actor, written));
      assert.deepEqual([...encodeOverwrite(stored, actor, written)], [...expected]);
      const { present, newestWrittenAtMs } = decodeHistory(stored);
      assert.deepEqual(summarizeHistory(stored), { present, newestWrittenAtMs });
    }),
    { numRuns: 1000 },
  );
});

test('stored object: encodeOverwrite and summarizeHistory reject truncated or extended bytes', () => {
  fc.assert(
    fc.property(object, fc.nat(), (set, cut) => {
      const bytes = encodeObject(set);
      const written: Sibling = { value: Buffer.from('v'), writtenAtMs: 1, contentType: '' };
      for (const damaged of [bytes.subarray(0, cut % bytes.length), Buffer.concat([bytes, Buffer.of(0)])]) {
        assert.throws(() => encodeOverwrite(damaged, 'a', written));
        assert.throws(() => summarizeHistory(damaged));
      }
    }),
    { numRuns: 300 },
  );
});

test('stored object: truncated, extended or unknown-version bytes are rejected, never decoded', () => {
  fc.assert(
    fc.property(object, fc.nat(), (set, cut) => {
      const bytes = encodeObject(set);
      assert.throws(() => decodeObject(bytes.subarray(0, cut % bytes.length)));
      assert.throws(() => decodeObject(Buffer.concat([bytes, Buffer.of(0)])));
      const wrongVersion = Buffer.from(bytes);
      wrongVersion[0] = 2;
      assert.throws(() => decodeObject(wrongVersion));
    }),
    { numRuns: 300 },
  );
});

test('stored object: contexts round-trip and garbage is CONTEXT_INVALID, never a throw', () => {
  const vector: fc.Arbitrary<VersionVector> = actors.chain((names) => fc.tuple(...names.map((actor) => fc.tuple(fc.constant(actor), fc.nat()))));
  fc.assert(
    fc.property(vector, (context) => {
      const decoded = decodeContext(encodeContext(context));
      assert.ok(decoded.ok);
      assert.deepEqual(decoded.value, context);
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      const decoded = decodeContext(text);
      if (!decoded.ok) assert.equal(decoded.code, 'CONTEXT_INVALID');
    }),
    { numRuns: 1000 },
  );
  for (const text of ['', 'not base64!', 'AA', Buffer.from([1, 5]).toString('base64url'), Buffer.from([1, 2, 1, 98, 1, 1, 97, 1]).toString('base64url')]) {
    const decoded = decodeContext(text);
    assert.ok(!decoded.ok, `${JSON.stringify(text)} must be rejected`);
    assert.equal(decoded.code, 'CONTEXT_INVALID');
  }
});

test('stored object: the one sibling a plain GET sees is the newest, ties broken by value bytes, order-independent', () => {
  const a: Sibling = { value: Buffer.from('a'), writtenAtMs: 10, contentType: '' };
  const b: Sibling = { value: Buffer.from('b'), writtenAtMs: 10, contentType: '' };
  const old: Sibling = { value: Buffer.from('zzz'), writtenAtMs: 9, contentType: '' };
  const tombstone: Sibling = { value: null, writtenAtMs: 11, contentType: '' };
  assert.equal(newestSibling([a, b, old, tombstone]), b);
  assert.equal(newestSibling([tombstone, old, b, a]), b);
  assert.equal(newestSibling([tombstone]), undefined);
});

test('stored object: decodeHistory keeps actors and counters, drops values, and tells whether a value is stored', () => {
  fc.assert(
    fc.property(object, (set) => {
      const { history, present } = decodeHistory(encodeObject(set));
      assert.deepEqual(history.entries.map((entry) => [entry.actor, entry.counter, entry.values.length]), set.entries.map((entry) => [entry.actor, entry.counter, 0]));
      const live = [...set.anonymous, ...set.entries.flatMap((entry) => entry.values)].some((candidate) => candidate.value !== null);
      assert.equal(present, live);
    }),
    { numRuns: 500 },
  );
});

test('stored object: decodeNewestValue picks what newestSibling picks from the decoded object (random objects)', () => {
  fc.assert(
    fc.property(object, (set) => {
      const bytes = encodeObject(set);
      const decoded = decodeObject(bytes);
      const expected = newestSibling([...decoded.anonymous, ...decoded.entries.flatMap((entry) => entry.values)]);
      const fast = decodeNewestValue(bytes);
      assert.equal(fast === undefined, expected === undefined);
      if (fast !== undefined && expected?.value != null) assert.deepEqual([...fast], [...expected.value]);
    }),
    { numRuns: 1000 },
  );
});

test('stored object: decodeClock gives each actor its counter and value count (random objects)', () => {
  fc.assert(
    fc.property(object, (set) => {
      const clock = decodeClock(encodeObject(set));
      assert.deepEqual(clock.entries, set.entries.map((entry) => ({ actor: entry.actor, counter: entry.counter, valueCount: entry.values.length })));
      assert.equal(clock.anonymousCount, set.anonymous.length);
    }),
    { numRuns: 300 },
  );
});
