import { assert } from './assert.js';

/**
 * Hybrid logical clocks (HLC), after Kulkarni, Demirbas, Madappa, Avva, Leone, "Logical Physical
 * Clocks" (OPODIS 2014). They timestamp writes in last-write-wins namespaces: a timestamp stays
 * within the clock skew of physical time (so "last" means roughly what a user expects), yet it
 * never goes backwards on a node and always exceeds every timestamp the node has received, even
 * when the physical clock jumps back (NTP step, VM migration). Pure physical timestamps, as in
 * Cassandra, lose a later write to an earlier one under skew (aphyr, "The trouble with
 * timestamps"); an HLC at least keeps causally later writes later.
 *
 * The clock is a state machine: `now` (a local or send event) and `receive` take the state and
 * the physical time as a number (the runtime reads its `Clock`), and return the next state with
 * the issued timestamp. Nothing here reads a clock.
 */

/** Wall-clock milliseconds fit in 48 bits (until the year 10889), the width CockroachDB-style packing assumes. */
export const wallMsMax = 2 ** 48 - 1;

/**
 * The logical counter fits in 16 bits, so (wallMs, logical) packs into 64. Kulkarni et al.
 * bound the counter by the number of events within one clock-skew interval (N·(ε+1)); when a
 * burst still overflows it, the counter carries into wallMs (see `issue`), which keeps every
 * law at the cost of running the clock 1 ms ahead.
 */
export const logicalMax = 0xffff;

/** Node ids are printable ASCII (the node config allows [A-Za-z0-9_.-]), so string order is byte order. */
export const nodeIdLengthMax = 64;

/**
 * Default bound on how far a received timestamp may run ahead of local physical time. CockroachDB
 * rejects remote clocks ahead by more than its `--max-offset` (default 500 ms); without such a
 * bound one node with a clock a year fast would stamp writes that win every conflict for a year.
 */
export const maxDriftMsDefault = 500;

export interface HlcTimestamp {
  /** max(physical time seen), in ms since the Unix epoch: Kulkarni's `l`. */
  readonly wallMs: number;
  /** Events since wallMs last advanced: Kulkarni's `c`. */
  readonly logical: number;
  /** The issuing node; breaks ties so that distinct nodes never issue equal timestamps. */
  readonly nodeId: string;
}

export interface HlcState {
  readonly nodeId: string;
  /** Reject remote timestamps with wallMs > physicalMs + maxDriftMs. */
  readonly maxDriftMs: number;
  /** The last timestamp issued (wallMs 0, logical 0 before the first event). */
  readonly wallMs: number;
  readonly logical: number;
}

export interface HlcEvent {
  readonly state: HlcState;
  readonly timestamp: HlcTimestamp;
}

/** A remote timestamp too far in the future: the state is unchanged and nothing is issued. */
export interface HlcDriftRejected {
  readonly ok: false;
  readonly reason: 'clockDriftExceeded';
  /** How far the remote wallMs is ahead of local physical time. */
  readonly driftMs: number;
  readonly maxDriftMs: number;
}

export type HlcReceiveResult = ({ readonly ok: true } & HlcEvent) | HlcDriftRejected;

export function createClock(options: { nodeId: string; maxDriftMs?: number }): HlcState {
  const maxDriftMs = options.maxDriftMs ?? maxDriftMsDefault;
  assertNodeId(options.nodeId);
  assert(Number.isSafeInteger(maxDriftMs) && maxDriftMs >= 0, () => `maxDriftMs must be a non-negative integer, got ${maxDriftMs}`);
  return { nodeId: options.nodeId, maxDriftMs, wallMs: 0, logical: 0 };
}

/** A local or send event (Kulkarni et al., the HLC algorithm, "send or local event"). */
export function now(state: HlcState, physicalMs: number): HlcEvent {
  assertPhysicalMs(physicalMs);
  const wallMs = Math.max(state.wallMs, physicalMs);
  const logical = wallMs === state.wallMs ? state.logical + 1 : 0;
  return issue(state, wallMs, logical);
}

/**
 * A receive event (Kulkarni et al., the HLC algorithm, "receive event of message m"): the
 * result exceeds both the local state and `remote`, so happens-before is respected. Rejected,
 * with the state unchanged, when `remote` is more than `maxDriftMs` ahead of `physicalMs`.
 */
export function receive(state: HlcState, remote: HlcTimestamp, physicalMs: number): HlcReceiveResult {
  assertPhysicalMs(physicalMs);
  assertTimestamp(remote);
  const driftMs = remote.wallMs - physicalMs;
  if (driftMs > state.maxDriftMs) {
    return { ok: false, reason: 'clockDriftExceeded', driftMs, maxDriftMs: state.maxDriftMs };
  }
  const wallMs = Math.max(state.wallMs, remote.wallMs, physicalMs);
  let logical: number;
  if (wallMs === state.wallMs && wallMs === remote.wallMs) logical = Math.max(state.logical, remote.logical) + 1;
  else if (wallMs === state.wallMs) logical = state.logical + 1;
  else if (wallMs === remote.wallMs) logical = remote.logical + 1;
  else logical = 0;
  return { ok: true, ...issue(state, wallMs, logical) };
}

/** Total order: wallMs, then logical, then nodeId (the deterministic tie-break). Returns -1, 0 or 1. */
export function compare(a: HlcTimestamp, b: HlcTimestamp): -1 | 0 | 1 {
  if (a.wallMs !== b.wallMs) return a.wallMs < b.wallMs ? -1 : 1;
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
  if (a.nodeId !== b.nodeId) return a.nodeId < b.nodeId ? -1 : 1;
  return 0;
}

/**
 * The compact form: 12 lowercase hex digits of wallMs, 4 of logical, then the node id, e.g.
 * `018f3a2b4c5d0001node-a`. Fixed widths make plain string (and byte) order equal `compare`, so
 * encoded timestamps can sit in sorted keys. Grammar: hex{12} hex{4} nodeId, nodeId printable
 * ASCII of 1..nodeIdLengthMax characters.
 */
export function encode(timestamp: HlcTimestamp): string {
  assertTimestamp(timestamp);
  return timestamp.wallMs.toString(16).padStart(12, '0') + timestamp.logical.toString(16).padStart(4, '0') + timestamp.nodeId;
}

const nodeIdPattern = new RegExp(`^[\\x21-\\x7e]{1,${nodeIdLengthMax}}$`);
const encodedPattern = new RegExp(`^[0-9a-f]{16}[\\x21-\\x7e]{1,${nodeIdLengthMax}}$`);

/** The inverse of `encode`; undefined for anything `encode` cannot produce (input from the network). */
export function decode(encoded: string): HlcTimestamp | undefined {
  if (!encodedPattern.test(encoded)) return undefined;
  const timestamp = {
    wallMs: Number.parseInt(encoded.slice(0, 12), 16),
    logical: Number.parseInt(encoded.slice(12, 16), 16),
    nodeId: encoded.slice(16),
  };
  assert(encode(timestamp) === encoded, 'decode must invert encode');
  return timestamp;
}

/** Records the issued timestamp, carrying a logical overflow into wallMs. */
function issue(state: HlcState, wallMsCandidate: number, logicalCandidate: number): HlcEvent {
  let wallMs = wallMsCandidate;
  let logical = logicalCandidate;
  if (logical > logicalMax) {
    wallMs += 1;
    logical = 0;
  }
  assert(wallMs <= wallMsMax, () => `HLC wallMs overflowed 48 bits: ${wallMs}`);
  assert(wallMs > state.wallMs || (wallMs === state.wallMs && logical > state.logical), 'HLC must be strictly monotonic');
  const next: HlcState = { ...state, wallMs, logical };
  return { state: next, timestamp: { wallMs, logical, nodeId: state.nodeId } };
}

function assertPhysicalMs(physicalMs: number): void {
  assert(Number.isSafeInteger(physicalMs) && physicalMs >= 0 && physicalMs <= wallMsMax, () => `physicalMs must be an integer in [0, 2^48), got ${physicalMs}`);
}

function assertNodeId(nodeId: string): void {
  assert(nodeIdPattern.test(nodeId), () => `nodeId must be 1..${nodeIdLengthMax} printable ASCII characters, got ${JSON.stringify(nodeId)}`);
}

export function assertTimestamp(timestamp: HlcTimestamp): void {
  assert(Number.isSafeInteger(timestamp.wallMs) && timestamp.wallMs >= 0 && timestamp.wallMs <= wallMsMax, () => `wallMs out of range: ${timestamp.wallMs}`);
  assert(Number.isSafeInteger(timestamp.logical) && timestamp.logical >= 0 && timestamp.logical <= logicalMax, () => `logical out of range: ${timestamp.logical}`);
  assertNodeId(timestamp.nodeId);
}
