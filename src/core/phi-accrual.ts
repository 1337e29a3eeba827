import { assert } from './assert.js';

/**
 * The φ accrual failure detector of Hayashibara, Défago, Yared, Katayama, "The φ Accrual Failure
 * Detector" (SRDS 2004), in the variant Cassandra runs (`gms/FailureDetector.java`,
 * `ArrivalWindow`). Instead of a yes/no timeout it outputs a suspicion level
 *
 *   φ(t_now) = -log10(P_later(t_now - T_last))                          (paper §3, eq. 1)
 *
 * where P_later(t) is the probability that a heartbeat arrives more than t after the previous
 * one, estimated from a sliding window of past inter-arrival times. The caller picks a threshold:
 * φ = 8 means a 10^-8 chance that the node is merely late (Cassandra's `phi_convict_threshold`).
 *
 * Distribution: the paper fits a normal distribution (as Akka does, with a floor on the standard
 * deviation). We use Cassandra's exponential one, P_later(t) = e^(-t/mean), so
 * φ = t / (mean · ln 10). Why: our heartbeats arrive by gossip, as Cassandra's do — a node learns a
 * peer's new heartbeat only when some random node gossips with it — so inter-arrival times are
 * irregular and closer to a memoryless (exponential) process than to a tight normal one. A normal
 * fit on such data swings with the variance estimate and convicts on one slow gossip round; the
 * exponential needs only the mean, is linear in elapsed time (easy to reason about: φ crosses the
 * threshold exactly `threshold · ln 10 · mean` after the last beat, ~18.4 s for 1 s beats at φ=8),
 * and errs towards slow rather than false conviction. Cassandra kept this choice when CASSANDRA-2597
 * compared it with the paper's normal fit.
 *
 * The state is an immutable value: `heartbeat` copies the window (O(windowSize), at most
 * `windowSizeMax` numbers) and returns a new state; `phi` is O(1). Times are numbers in ms from a
 * monotonic clock, passed in by the runtime; nothing here reads a clock.
 */

/** Upper bound on `windowSize`: the per-peer memory and the per-heartbeat copy. */
export const windowSizeMax = 10_000;

export interface PhiAccrualOptions {
  /** Inter-arrival times kept; Cassandra's `SAMPLE_SIZE` is 1000. 1..windowSizeMax. */
  readonly windowSize: number;
  /** φ above which the peer is suspected; Cassandra's `phi_convict_threshold`, default 8. */
  readonly thresholdPhi: number;
  /**
   * The interval assumed before the second heartbeat gives a real one (Cassandra's
   * `fd_initial_value_ms`, 2000). Deliberately high: too high delays a conviction, too low makes
   * a fresh peer flap.
   */
  readonly firstHeartbeatEstimateMs: number;
  /**
   * Longer intervals are not recorded (Cassandra's `fd_max_interval_ms`, 2000): a peer back from a
   * long partition should not teach the detector to wait that long next time. Must exceed the
   * usual interval, or the window never learns anything.
   */
  readonly intervalMsMax: number;
  /** Silence tolerated before φ starts rising (Akka's `acceptable-heartbeat-pause`); Cassandra has none, default 0. */
  readonly acceptableHeartbeatPauseMs: number;
}

export const phiAccrualDefaults: PhiAccrualOptions = {
  windowSize: 1000,
  thresholdPhi: 8,
  firstHeartbeatEstimateMs: 2000,
  intervalMsMax: 2000,
  acceptableHeartbeatPauseMs: 0,
};

export interface PhiAccrualState {
  readonly options: PhiAccrualOptions;
  /** Recorded inter-arrival times, oldest first, 1..windowSize of them once a heartbeat arrived; all > 0. */
  readonly intervalsMs: readonly number[];
  readonly intervalsSumMs: number;
  /** Arrival of the latest heartbeat; undefined before the first. */
  readonly lastArrivalMs: number | undefined;
}

export function createDetector(options: Partial<PhiAccrualOptions> = {}): PhiAccrualState {
  const resolved: PhiAccrualOptions = { ...phiAccrualDefaults, ...options };
  const { windowSize, thresholdPhi, firstHeartbeatEstimateMs, intervalMsMax, acceptableHeartbeatPauseMs } = resolved;
  assert(Number.isInteger(windowSize) && windowSize >= 1 && windowSize <= windowSizeMax, () => `windowSize must be an integer in 1..${windowSizeMax}, got ${windowSize}`);
  assert(Number.isFinite(thresholdPhi) && thresholdPhi > 0, () => `thresholdPhi must be positive, got ${thresholdPhi}`);
  assert(Number.isFinite(intervalMsMax) && intervalMsMax > 0, () => `intervalMsMax must be positive, got ${intervalMsMax}`);
  assert(
    Number.isFinite(firstHeartbeatEstimateMs) && firstHeartbeatEstimateMs > 0 && firstHeartbeatEstimateMs <= intervalMsMax,
    () => `firstHeartbeatEstimateMs must be in (0, intervalMsMax], got ${firstHeartbeatEstimateMs}`,
  );
  assert(Number.isFinite(acceptableHeartbeatPauseMs) && acceptableHeartbeatPauseMs >= 0, () => `acceptableHeartbeatPauseMs must be >= 0, got ${acceptableHeartbeatPauseMs}`);
  return { options: resolved, intervalsMs: [], intervalsSumMs: 0, lastArrivalMs: undefined };
}

/**
 * A heartbeat from the peer arrived at `arrivalMs` (never earlier than the previous one: the
 * runtime's clock is monotonic). The first heartbeat records `firstHeartbeatEstimateMs`, since
 * there is no interval yet; later ones record the interval unless it is 0 (a duplicate) or longer
 * than `intervalMsMax`. Either way the arrival becomes the new T_last.
 */
export function heartbeat(state: PhiAccrualState, arrivalMs: number): PhiAccrualState {
  assert(Number.isFinite(arrivalMs), () => `arrivalMs must be finite, got ${arrivalMs}`);
  const { lastArrivalMs, options } = state;
  if (lastArrivalMs === undefined) return record(state, options.firstHeartbeatEstimateMs, arrivalMs);
  assert(arrivalMs >= lastArrivalMs, () => `heartbeat arrived before the previous one: ${arrivalMs} < ${lastArrivalMs}`);
  const intervalMs = arrivalMs - lastArrivalMs;
  if (intervalMs > 0 && intervalMs <= options.intervalMsMax) return record(state, intervalMs, arrivalMs);
  return { ...state, lastArrivalMs: arrivalMs };
}

/**
 * The suspicion level at `nowMs`: 0 before any heartbeat (nothing to suspect yet; membership
 * decides about peers never heard from) and for times not after the last arrival plus the
 * acceptable pause, then rising linearly. Always >= 0, non-decreasing in nowMs between heartbeats.
 */
export function phi(state: PhiAccrualState, nowMs: number): number {
  assert(Number.isFinite(nowMs), () => `nowMs must be finite, got ${nowMs}`);
  if (state.lastArrivalMs === undefined) return 0;
  const elapsedMs = Math.max(0, nowMs - state.lastArrivalMs - state.options.acceptableHeartbeatPauseMs);
  const result = elapsedMs / (meanIntervalMs(state) * Math.LN10);
  assert(result >= 0, 'phi is non-negative');
  return result;
}

/** Whether the peer is trusted at `nowMs`: Cassandra convicts only when φ exceeds the threshold. */
export function isAvailable(state: PhiAccrualState, nowMs: number): boolean {
  return phi(state, nowMs) <= state.options.thresholdPhi;
}

/**
 * How long after the last heartbeat φ reaches the threshold (the inverse of `phi`), so the
 * runtime can schedule its next check instead of polling. Undefined before the first heartbeat.
 */
export function suspicionDelayMs(state: PhiAccrualState): number | undefined {
  if (state.lastArrivalMs === undefined) return undefined;
  return state.options.thresholdPhi * Math.LN10 * meanIntervalMs(state) + state.options.acceptableHeartbeatPauseMs;
}

export function meanIntervalMs(state: PhiAccrualState): number {
  assert(state.intervalsMs.length > 0, 'the window is empty before the first heartbeat');
  const mean = state.intervalsSumMs / state.intervalsMs.length;
  assert(mean > 0, 'recorded intervals are positive');
  return mean;
}

/** Appends to the window, evicting the oldest beyond windowSize; the sum is recomputed, so no float error accumulates. */
function record(state: PhiAccrualState, intervalMs: number, arrivalMs: number): PhiAccrualState {
  const kept = state.intervalsMs.length < state.options.windowSize ? state.intervalsMs : state.intervalsMs.slice(1);
  const intervalsMs = [...kept, intervalMs];
  let intervalsSumMs = 0;
  for (const interval of intervalsMs) intervalsSumMs += interval;
  assert(intervalsMs.length <= state.options.windowSize, 'the window is bounded by windowSize');
  return { options: state.options, intervalsMs, intervalsSumMs, lastArrivalMs: arrivalMs };
}
