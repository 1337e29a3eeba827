// Laws of the hybrid logical clock (hybrid-logical-clock.ts), after Kulkarni et al., "Logical
// Physical Clocks" (2014): monotonic under any physical clock, happens-before respected (checked
// against an oracle of explicit causal histories), bounded drift, and a total order that encode
// preserves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AssertionError } from './assert.js';
import {
  compare,
  createClock,
  decode,
  encode,
  logicalMax,
  now,
  receive,
  wallMsMax,
  type HlcState,
  type HlcTimestamp,
} from './hybrid-logical-clock.js';

const numRuns = 1000;
const maxDriftMs = 500;

const nodeIds = ['a', 'b', 'node-1', 'node-10', 'node-2', 'A.b_c', 'z'];
const nodeIdArbitrary = fc.constantFrom(...nodeIds);
// Small ranges mixed in so that ties on wallMs and logical are common.
const wallMsArbitrary = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: wallMsMax }));
const logicalArbitrary = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: logicalMax }));
const timestampArbitrary: fc.Arbitrary<HlcTimestamp> = fc.record({ wallMs: wallMsArbitrary, logical: logicalArbitrary, nodeId: nodeIdArbitrary });

const sign = (n: number): number => (n > 0 ? 1 : n < 0 ? -1 : 0);
const stringOrder = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

// ---------------------------------------------------------------------------------------------
// One node under an arbitrary physical clock.

type Event =
  | { readonly kind: 'now'; readonly physicalMs: number }
  | { readonly kind: 'receive'; readonly physicalMs: number; readonly aheadMs: number; readonly logical: number; readonly nodeId: string };

const physicalMsArbitrary = fc.integer({ min: 0, max: 20_000 });
const eventArbitrary: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ kind: fc.constant('now' as const), physicalMs: physicalMsArbitrary }),
  fc.record({
    kind: fc.constant('receive' as const),
    physicalMs: physicalMsArbitrary,
    // Remote wallMs relative to local physical time: mostly behind or slightly ahead, sometimes
    // beyond the drift bound.
    aheadMs: fc.integer({ min: -20_000, max: maxDriftMs * 2 }),
    logical: logicalArbitrary,
    nodeId: nodeIdArbitrary,
  }),
);

test('hlc: every issued timestamp exceeds the previous one and every received one (backwards-jumping physical clock)', () => {
  fc.assert(
    fc.property(fc.array(eventArbitrary, { maxLength: 60 }), (events) => {
      let state = createClock({ nodeId: 'self', maxDriftMs });
      let previous: HlcTimestamp | undefined;
      for (const event of events) {
        let issued: HlcTimestamp;
        if (event.kind === 'now') {
          ({ state, timestamp: issued } = now(state, event.physicalMs));
        } else {
          const remote = { wallMs: Math.max(0, event.physicalMs + event.aheadMs), logical: event.logical, nodeId: event.nodeId };
          const result = receive(state, remote, event.physicalMs);
          if (!result.ok) {
            assert.ok(remote.wallMs - event.physicalMs > maxDriftMs, 'only timestamps beyond the drift bound are rejected');
            assert.equal(result.reason, 'clockDriftExceeded');
            continue;
          }
          assert.ok(remote.wallMs - event.physicalMs <= maxDriftMs, 'timestamps within the drift bound are accepted');
          ({ state, timestamp: issued } = result);
          assert.equal(compare(issued, remote), 1, 'receive > remote');
          assert.ok(issued.wallMs > remote.wallMs || issued.logical > remote.logical, 'greater without the nodeId tie-break');
        }
        assert.ok(issued.wallMs >= event.physicalMs, 'never behind physical time');
        if (previous !== undefined) assert.equal(compare(issued, previous), 1, 'strictly monotonic');
        previous = issued;
      }
    }),
    { numRuns },
  );
});

test('hlc: logical resets to 0 when physical time passes the clock (now and receive)', () => {
  fc.assert(
    fc.property(fc.array(eventArbitrary, { maxLength: 30 }), fc.integer({ min: 1, max: 1000 }), (events, stepMs) => {
      let state = createClock({ nodeId: 'self', maxDriftMs });
      let physicalMs = 0;
      for (const event of events) {
        physicalMs = Math.max(physicalMs, event.physicalMs);
        if (event.kind === 'now') state = now(state, event.physicalMs).state;
      }
      const ahead = Math.max(state.wallMs, physicalMs) + stepMs;
      const local = now(state, ahead).timestamp;
      assert.deepEqual([local.wallMs, local.logical], [ahead, 0]);
      const received = receive(state, { wallMs: ahead - 1, logical: logicalMax, nodeId: 'b' }, ahead);
      assert.ok(received.ok);
      assert.deepEqual([received.timestamp.wallMs, received.timestamp.logical], [ahead, 0]);
    }),
    { numRuns },
  );
});

test('hlc: logical stays 0 while physical time advances every event (1000 events, 1 ms apart)', () => {
  let state = createClock({ nodeId: 'self' });
  for (let physicalMs = 1; physicalMs <= 1000; physicalMs++) {
    const event = now(state, physicalMs);
    assert.deepEqual([event.timestamp.wallMs, event.timestamp.logical], [physicalMs, 0]);
    state = event.state;
  }
});

test('hlc: logical overflow carries into wallMs (logicalMax + 2 events in one ms)', () => {
  let state = createClock({ nodeId: 'self' });
  let previous: HlcTimestamp | undefined;
  for (let index = 0; index < logicalMax + 2; index++) {
    const event = now(state, 5000);
    if (previous !== undefined) assert.equal(compare(event.timestamp, previous), 1);
    previous = event.timestamp;
    state = event.state;
  }
  assert.deepEqual(previous, { wallMs: 5001, logical: 0, nodeId: 'self' });
});

// ---------------------------------------------------------------------------------------------
// Several nodes with skewed clocks exchanging messages; the oracle is each event's explicit causal
// history (the set of event ids that happened before it, Lamport's relation).

interface SimulatedNode {
  clock: HlcState;
  skewMs: number;
  /** Ids of every event in this node's causal past, including its own latest. */
  history: Set<number>;
}

type Step = { readonly node: number; readonly advanceMs: number; readonly deliver: number | undefined };

test('hlc: happens-before implies timestamp order, drift stays below the skew (3 nodes, skew ±200 ms)', () => {
  const stepArbitrary: fc.Arbitrary<Step> = fc.record({
    node: fc.integer({ min: 0, max: 2 }),
    advanceMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 })),
    deliver: fc.option(fc.nat(), { nil: undefined }),
  });
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -200, max: 200 }), { minLength: 3, maxLength: 3 }), fc.array(stepArbitrary, { maxLength: 80 }), (skews, steps) => {
      const nodes: SimulatedNode[] = skews.map((skewMs, index) => ({ clock: createClock({ nodeId: `n${index}`, maxDriftMs }), skewMs, history: new Set() }));
      const events: { timestamp: HlcTimestamp; history: Set<number> }[] = [];
      const inFlight: { timestamp: HlcTimestamp; history: Set<number> }[] = [];
      let trueMs = 1000;
      for (const step of steps) {
        trueMs += step.advanceMs;
        const node = nodes[step.node] as SimulatedNode;
        const physicalMs = trueMs + node.skewMs;
        const id = events.length;
        let timestamp: HlcTimestamp;
        if (step.deliver !== undefined && inFlight.length > 0) {
          const [message] = inFlight.splice(step.deliver % inFlight.length, 1);
          assert.ok(message !== undefined);
          const result = receive(node.clock, message.timestamp, physicalMs);
          assert.ok(result.ok, 'skew below maxDriftMs is never rejected');
          ({ state: node.clock, timestamp } = result);
          for (const past of message.history) node.history.add(past);
        } else {
          ({ state: node.clock, timestamp } = now(node.clock, physicalMs));
          inFlight.push({ timestamp, history: new Set([...node.history, id]) });
        }
        node.history.add(id);
        // Kulkarni et al.: l never exceeds the furthest-ahead physical clock (l - pt < ε).
        assert.ok(timestamp.wallMs <= trueMs + Math.max(...skews), 'bounded by the fastest physical clock');
        for (const past of node.history) {
          if (past !== id) assert.equal(compare((events[past] as { timestamp: HlcTimestamp }).timestamp, timestamp), -1, `event ${past} happened before ${id}`);
        }
        events.push({ timestamp, history: new Set(node.history) });
      }
    }),
    { numRuns },
  );
});

test('hlc: a remote timestamp more than maxDriftMs ahead is rejected, state unchanged (boundary 500 ms)', () => {
  const { state } = now(createClock({ nodeId: 'self', maxDriftMs }), 10_000);
  const atBound = receive(state, { wallMs: 10_000 + maxDriftMs, logical: 7, nodeId: 'b' }, 10_000);
  assert.ok(atBound.ok);
  assert.deepEqual(atBound.timestamp, { wallMs: 10_500, logical: 8, nodeId: 'self' });
  const beyond = receive(state, { wallMs: 10_000 + maxDriftMs + 1, logical: 0, nodeId: 'b' }, 10_000);
  assert.deepEqual(beyond, { ok: false, reason: 'clockDriftExceeded', driftMs: 501, maxDriftMs });
  assert.deepEqual(now(state, 10_000).timestamp, { wallMs: 10_000, logical: 1, nodeId: 'self' }, 'the rejected timestamp left no trace');
});

// ---------------------------------------------------------------------------------------------
// Order and encoding.

test('hlc: compare is a total order (antisymmetric, transitive, 0 only for equal timestamps)', () => {
  fc.assert(
    fc.property(timestampArbitrary, timestampArbitrary, timestampArbitrary, (a, b, c) => {
      assert.equal(compare(a, b), -compare(b, a) || 0);
      assert.equal(compare(a, b) === 0, a.wallMs === b.wallMs && a.logical === b.logical && a.nodeId === b.nodeId);
      if (compare(a, b) <= 0 && compare(b, c) <= 0) assert.ok(compare(a, c) <= 0);
    }),
    { numRuns },
  );
});

test('hlc: encode preserves compare in string and UTF-8 byte order, decode inverts it', () => {
  const encoder = new TextEncoder();
  const byteOrder = (a: string, b: string): number => sign(Buffer.compare(encoder.encode(a), encoder.encode(b)));
  fc.assert(
    fc.property(timestampArbitrary, timestampArbitrary, (a, b) => {
      assert.equal(sign(stringOrder(encode(a), encode(b))), compare(a, b));
      assert.equal(byteOrder(encode(a), encode(b)), compare(a, b));
      assert.deepEqual(decode(encode(a)), { ...a }); // fast-check records have a null prototype
    }),
    { numRuns },
  );
});

test('hlc: encode layout (12 hex wallMs, 4 hex logical, nodeId)', () => {
  assert.equal(encode({ wallMs: 0x18f3a2b4c5d, logical: 1, nodeId: 'node-a' }), '018f3a2b4c5d0001node-a');
  assert.equal(encode({ wallMs: wallMsMax, logical: logicalMax, nodeId: 'z' }), 'ffffffffffffffffz');
});

test('hlc: decode rejects malformed input (wrong widths, uppercase, bad nodeId)', () => {
  for (const malformed of ['', '018f3a2b4c5d0001', '018F3A2B4C5D0001a', '18f3a2b4c5d0001a', '018f3a2b4c5d0001has space', `018f3a2b4c5d0001${'x'.repeat(65)}`]) {
    assert.equal(decode(malformed), undefined, malformed);
  }
});

test('hlc: invalid arguments are bugs (negative or fractional time, bad nodeId, out-of-range remote)', () => {
  const state = createClock({ nodeId: 'self' });
  assert.throws(() => now(state, -1), AssertionError);
  assert.throws(() => now(state, 1.5), AssertionError);
  assert.throws(() => now(state, wallMsMax + 1), AssertionError);
  assert.throws(() => createClock({ nodeId: '' }), AssertionError);
  assert.throws(() => createClock({ nodeId: 'has space' }), AssertionError);
  assert.throws(() => createClock({ nodeId: 'a', maxDriftMs: -1 }), AssertionError);
  assert.throws(() => receive(state, { wallMs: 1, logical: logicalMax + 1, nodeId: 'b' }, 1), AssertionError);
});
