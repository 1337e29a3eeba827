// The φ accrual failure detector (phi-accrual.ts) on synthetic heartbeat sequences — steady,
// jittery, stopped — with crossing times derived by hand from φ = t / (mean · ln 10), and
// properties against a naive detector that keeps every interval it ever recorded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AssertionError } from './assert.js';
import { SeededRandom } from './random.js';
import {
  createDetector,
  heartbeat,
  isAvailable,
  meanIntervalMs,
  phi,
  phiAccrualDefaults,
  suspicionDelayMs,
  windowSizeMax,
  type PhiAccrualOptions,
  type PhiAccrualState,
} from './phi-accrual.js';

const numRuns = 500;

/** Feeds `count` heartbeats `intervalMs` apart starting at `startMs`. */
function steady(state: PhiAccrualState, count: number, intervalMs: number, startMs = 0): PhiAccrualState {
  let next = state;
  for (let index = 0; index < count; index++) next = heartbeat(next, startMs + index * intervalMs);
  return next;
}

function lastArrival(state: PhiAccrualState): number {
  assert.ok(state.lastArrivalMs !== undefined);
  return state.lastArrivalMs;
}

// ---------------------------------------------------------------------------------------------
// Steady, then stopped.

test('phi: steady beats, then silence, cross φ=8 at 8·ln10·mean after the last beat (1000 ms beats, window 1000)', () => {
  // 1001 beats record the 2000 ms first-heartbeat estimate and 1000 intervals of 1000 ms; the
  // window keeps the last 1000, so the estimate is gone and mean = 1000 exactly.
  const state = steady(createDetector(), 1001, 1000);
  assert.equal(state.intervalsMs.length, 1000);
  assert.equal(meanIntervalMs(state), 1000);
  const last = lastArrival(state);
  const crossingMs = 8 * Math.log(10) * 1000; // 18420.68 ms
  assert.ok(phi(state, last + 1) < 0.001, 'just after a beat φ is near 0');
  assert.ok(Math.abs(phi(state, last + 1000) - 1 / Math.log(10)) < 1e-12, 'one interval late: φ = 1/ln10 ≈ 0.434');
  assert.ok(Math.abs((suspicionDelayMs(state) ?? 0) - crossingMs) < 1e-9);
  assert.equal(isAvailable(state, last + 18_420), true);
  assert.equal(isAvailable(state, last + 18_421), false);
});

test('phi: after the beats stop, φ grows strictly and linearly with the silence (0..60 s)', () => {
  const state = steady(createDetector(), 50, 1000);
  const last = lastArrival(state);
  let previous = phi(state, last);
  assert.equal(previous, 0);
  for (let elapsedMs = 250; elapsedMs <= 60_000; elapsedMs += 250) {
    const current = phi(state, last + elapsedMs);
    assert.ok(current > previous, `φ rises at ${elapsedMs} ms`);
    assert.ok(Math.abs(current - elapsedMs / (meanIntervalMs(state) * Math.LN10)) < 1e-9);
    previous = current;
  }
});

test('phi: an acceptable pause shifts the crossing by the pause (1000 ms beats, pause 3000 ms)', () => {
  const state = steady(createDetector({ acceptableHeartbeatPauseMs: 3000 }), 1001, 1000);
  const last = lastArrival(state);
  assert.equal(phi(state, last + 3000), 0);
  assert.equal(isAvailable(state, last + 21_420), true); // 3000 + 18420.68
  assert.equal(isAvailable(state, last + 21_421), false);
});

// ---------------------------------------------------------------------------------------------
// First heartbeats.

test('phi: before any heartbeat φ is 0 and the peer is not suspected', () => {
  const state = createDetector();
  assert.equal(phi(state, 1_000_000), 0);
  assert.equal(isAvailable(state, 1_000_000), true);
  assert.equal(suspicionDelayMs(state), undefined);
});

test('phi: the first heartbeat assumes firstHeartbeatEstimateMs, later ones dilute it (1, 2, 10 beats of 1000 ms)', () => {
  const one = steady(createDetector(), 1, 1000, 5000);
  assert.deepEqual(one.intervalsMs, [2000]);
  assert.ok(Math.abs((suspicionDelayMs(one) ?? 0) - 8 * Math.LN10 * 2000) < 1e-9); // 36841.36 ms: errs towards slow
  assert.equal(isAvailable(one, 5000 + 36_841), true);
  assert.equal(isAvailable(one, 5000 + 36_842), false);
  const two = heartbeat(one, 6000);
  assert.deepEqual(two.intervalsMs, [2000, 1000]);
  const ten = steady(createDetector(), 10, 1000);
  assert.equal(meanIntervalMs(ten), 1100); // (2000 + 9 · 1000) / 10
  assert.equal(isAvailable(ten, 9000 + 20_262), true); // 8 · ln10 · 1100 = 20262.75
  assert.equal(isAvailable(ten, 9000 + 20_263), false);
});

// ---------------------------------------------------------------------------------------------
// Jitter and gaps.

test('phi: no false suspicion under jitter (seeded, 1000 ± 500 ms, 5000 beats, 1 in 20 beats lost)', () => {
  const random = new SeededRandom(20_040_101);
  let state = createDetector();
  let arrivalMs = 0;
  let phiMax = 0;
  for (let beat = 0; beat < 5000; beat++) {
    const lost = random.nextInt(20) === 0; // a lost beat doubles the gap, as a skipped gossip round does
    arrivalMs += (lost ? 2 : 1) * (500 + random.nextInt(1001));
    phiMax = Math.max(phiMax, phi(state, arrivalMs));
    assert.ok(isAvailable(state, arrivalMs), `suspected at beat ${beat}`);
    state = heartbeat(state, arrivalMs);
    assert.ok(state.intervalsMs.length <= phiAccrualDefaults.windowSize);
  }
  // Analytically the worst gap is 3000 ms over a mean near 1000 ms: φ ≈ 3000 / (1000 · ln10) ≈ 1.3.
  assert.ok(phiMax < 2, `φ max ${phiMax}`);
});

test('phi: a long partition is not learned (gap 60 s > intervalMsMax 2000 ms)', () => {
  const before = steady(createDetector(), 100, 1000);
  const after = heartbeat(before, lastArrival(before) + 60_000);
  assert.deepEqual(after.intervalsMs, before.intervalsMs);
  assert.equal(after.lastArrivalMs, lastArrival(before) + 60_000);
  assert.equal(phi(after, lastArrival(after)), 0);
});

test('phi: a duplicate heartbeat (same arrival) records no zero interval', () => {
  const state = steady(createDetector(), 3, 1000);
  assert.deepEqual(heartbeat(state, 2000).intervalsMs, state.intervalsMs);
});

// ---------------------------------------------------------------------------------------------
// Properties against a naive detector: every recorded interval kept forever, the mean taken over
// the last windowSize of them.

interface NaiveDetector {
  recorded: number[];
  last: number | undefined;
}

function naiveHeartbeat(naive: NaiveDetector, arrivalMs: number, options: PhiAccrualOptions): void {
  if (naive.last === undefined) naive.recorded.push(options.firstHeartbeatEstimateMs);
  else if (arrivalMs - naive.last > 0 && arrivalMs - naive.last <= options.intervalMsMax) naive.recorded.push(arrivalMs - naive.last);
  naive.last = arrivalMs;
}

function naivePhi(naive: NaiveDetector, nowMs: number, options: PhiAccrualOptions): number {
  if (naive.last === undefined) return 0;
  const window = naive.recorded.slice(-options.windowSize);
  const mean = window.reduce((sum, interval) => sum + interval, 0) / window.length;
  return Math.max(0, nowMs - naive.last - options.acceptableHeartbeatPauseMs) / (mean * Math.log(10));
}

const optionsArbitrary: fc.Arbitrary<PhiAccrualOptions> = fc
  .record({
    windowSize: fc.integer({ min: 1, max: 8 }),
    thresholdPhi: fc.double({ min: 0.5, max: 16, noNaN: true }),
    firstHeartbeatEstimateMs: fc.integer({ min: 1, max: 3000 }),
    intervalMsMax: fc.integer({ min: 1, max: 3000 }),
    acceptableHeartbeatPauseMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2000 })),
  })
  .map((options) => ({ ...options, intervalMsMax: Math.max(options.intervalMsMax, options.firstHeartbeatEstimateMs) }));

// Gaps between heartbeats (0 makes a duplicate; long ones exceed intervalMsMax), each followed by
// a probe some time after the arrival — φ is a pure query, so it may probe past the next beat.
const gapsArbitrary = fc.array(
  fc.record({
    gapMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3000 }), fc.double({ min: 0, max: 10_000, noNaN: true })),
    probeMs: fc.oneof(fc.integer({ min: 1, max: 20_000 }), fc.double({ min: 0, max: 20_000, noNaN: true })),
  }),
  { minLength: 1, maxLength: 40 },
);

test('phi: agrees with the naive detector; φ ≥ 0; window bounded by windowSize (random gaps and options)', () => {
  fc.assert(
    fc.property(optionsArbitrary, gapsArbitrary, fc.double({ min: 0, max: 10_000, noNaN: true }), (options, gaps, probeMs) => {
      let state = createDetector(options);
      const naive: NaiveDetector = { recorded: [], last: undefined };
      assert.equal(phi(state, probeMs), naivePhi(naive, probeMs, options), 'before any heartbeat');
      let arrivalMs = 1000;
      for (const { gapMs, probeMs } of gaps) {
        arrivalMs += gapMs;
        state = heartbeat(state, arrivalMs);
        naiveHeartbeat(naive, arrivalMs, options);
        assert.ok(state.intervalsMs.length >= 1 && state.intervalsMs.length <= options.windowSize);
        const expected = naivePhi(naive, arrivalMs + probeMs, options);
        const actual = phi(state, arrivalMs + probeMs);
        assert.ok(actual >= 0);
        assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.max(1, expected), `φ ${actual} vs naive ${expected}`);
        assert.equal(isAvailable(state, arrivalMs + probeMs), actual <= options.thresholdPhi);
      }
    }),
    { numRuns },
  );
});

test('phi: non-decreasing in nowMs between heartbeats, and a heartbeat lowers it to 0 (random gaps)', () => {
  fc.assert(
    fc.property(optionsArbitrary, gapsArbitrary, fc.array(fc.double({ min: 0, max: 100_000, noNaN: true }), { minLength: 2, maxLength: 10 }), (options, gaps, offsets) => {
      let state = createDetector(options);
      let arrivalMs = 0;
      for (const { gapMs } of gaps) {
        arrivalMs += gapMs;
        const before = phi(state, arrivalMs);
        state = heartbeat(state, arrivalMs);
        assert.equal(phi(state, arrivalMs), 0);
        assert.ok(phi(state, arrivalMs) <= before);
      }
      const probes = offsets.map((offset) => arrivalMs + offset).sort((a, b) => a - b);
      for (let index = 1; index < probes.length; index++) {
        assert.ok(phi(state, probes[index] as number) >= phi(state, probes[index - 1] as number));
      }
    }),
    { numRuns },
  );
});

test('phi: invalid options and time going backwards are bugs', () => {
  assert.throws(() => createDetector({ windowSize: 0 }), AssertionError);
  assert.throws(() => createDetector({ windowSize: windowSizeMax + 1 }), AssertionError);
  assert.throws(() => createDetector({ thresholdPhi: 0 }), AssertionError);
  assert.throws(() => createDetector({ firstHeartbeatEstimateMs: 3000, intervalMsMax: 2000 }), AssertionError);
  assert.throws(() => createDetector({ acceptableHeartbeatPauseMs: -1 }), AssertionError);
  assert.throws(() => heartbeat(heartbeat(createDetector(), 1000), 999), AssertionError);
  assert.throws(() => phi(createDetector(), Number.NaN), AssertionError);
});
