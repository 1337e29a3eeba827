import { assert } from './assert.js';
import type { ReplicaTarget } from './get-coordinator.js';

/**
 * The quorum bookkeeping of one PUT (Dynamo §4.5; riak_kv_put_fsm), as a pure state machine:
 * `start` with the request's options, then `step` with each replica's ack or error, or the
 * request's timeout. The coordinator has already applied the client's write to its stored
 * version (dvv.ts `update`) and sends the result to every replica; if it is a replica itself,
 * its own local write arrives here as an ack like any other.
 *
 * The client is answered after W acks, PW of them from primaries (a hinted write to a fallback
 * counts toward W but not PW: sloppy quorum, Dynamo §4.6). The request fails as soon as W or PW
 * can no longer be reached with the replicas still pending, or on the timeout. Retrying a failed
 * replica on the next fallback is the runtime's business: it starts a new request.
 *
 * No DW: a replica acks once the write is in its engine under the node's commit-log sync policy,
 * so with sync `always` every ack is already durable, and a separate durable-write count would
 * only repeat it. (Riak's dw counts acks after the backend write; ours are all of that kind.)
 */
export interface PutOptions {
  /** The preference list entries written, primaries and fallbacks, distinct nodes; at most n. */
  readonly replicas: readonly ReplicaTarget[];
  readonly n: number;
  /** Acks needed to answer: 1 ≤ w ≤ n. */
  readonly w: number;
  /** Of those, acks needed from primaries (Riak `pw`), 0 ≤ pw ≤ n; default 0. */
  readonly pw?: number;
}

export type PutInput =
  | { readonly type: 'ack'; readonly from: string }
  | { readonly type: 'error'; readonly from: string }
  | { readonly type: 'timeout' };

/** `unreachable`: too few replicas left to reach the quorum; `timeout`: time ran out first. */
export type PutFailReason = 'unreachable' | 'timeout';

export type PutOutput =
  /** Exactly once per request, unless it fails. */
  | { readonly type: 'answer' }
  /** Exactly once per request, unless it is answered. `quorum` names the count that fell short. */
  | { readonly type: 'fail'; readonly reason: PutFailReason; readonly quorum: 'w' | 'pw'; readonly acked: number; readonly needed: number };

/** `waiting`: no answer yet; `responded`: answered or failed, counting stragglers; `finished`: ignores input. */
export type PutPhase = 'waiting' | 'responded' | 'finished';

export interface PutReceived {
  readonly nodeId: string;
  readonly role: ReplicaTarget['role'];
  readonly acked: boolean;
}

/** The options with their defaults filled in. */
export interface PutSettings {
  readonly replicas: readonly ReplicaTarget[];
  readonly n: number;
  readonly w: number;
  readonly pw: number;
}

export interface PutState {
  readonly options: PutSettings;
  /** In arrival order, at most one per replica. */
  readonly received: readonly PutReceived[];
  readonly phase: PutPhase;
}

export interface PutTransition {
  readonly state: PutState;
  readonly outputs: readonly PutOutput[];
}

/**
 * A new PUT. If the replicas cannot reach W or PW even before anything is sent, the first
 * output is the failure and the machine is already finished: the runtime sends nothing.
 */
export function start(options: PutOptions): PutTransition {
  const settings: PutSettings = { replicas: options.replicas, n: options.n, w: options.w, pw: options.pw ?? 0 };
  assertSettings(settings);
  const state: PutState = { options: settings, received: [], phase: 'waiting' };
  const decided = decide(state);
  if (decided === undefined) return { state, outputs: [] };
  return { state: { ...state, phase: 'finished' }, outputs: [decided] };
}

/** The one entry for input. A second ack or error from one replica (a duplicated message) is ignored. */
export function step(state: PutState, input: PutInput): PutTransition {
  if (state.phase === 'finished') return { state, outputs: [] };
  if (input.type === 'timeout') {
    if (state.phase === 'responded') return { state: { ...state, phase: 'finished' }, outputs: [] };
    const counts = tally(state);
    const failed: PutOutput =
      counts.acks < state.options.w
        ? { type: 'fail', reason: 'timeout', quorum: 'w', acked: counts.acks, needed: state.options.w }
        : { type: 'fail', reason: 'timeout', quorum: 'pw', acked: counts.primaryAcks, needed: state.options.pw };
    return { state: { ...state, phase: 'finished' }, outputs: [failed] };
  }
  const target = state.options.replicas.find((replica) => replica.nodeId === input.from);
  assert(target !== undefined, () => `put: reply from ${input.from}, which was not asked`);
  if (state.received.some((received) => received.nodeId === input.from)) return { state, outputs: [] };
  let next: PutState = { ...state, received: [...state.received, { nodeId: target.nodeId, role: target.role, acked: input.type === 'ack' }] };
  const outputs: PutOutput[] = [];
  if (next.phase === 'waiting') {
    const decided = decide(next);
    if (decided !== undefined) {
      outputs.push(decided);
      next = { ...next, phase: 'responded' };
    }
  }
  if (next.received.length === next.options.replicas.length) {
    assert(next.phase === 'responded', 'put: every replica replied but nothing was decided');
    next = { ...next, phase: 'finished' };
  }
  return { state: next, outputs };
}

export interface PutTally {
  readonly acks: number;
  readonly primaryAcks: number;
  readonly errors: number;
  readonly pending: number;
  readonly pendingPrimaries: number;
}

export function tally(state: PutState): PutTally {
  const { replicas } = state.options;
  let acks = 0;
  let primaryAcks = 0;
  let pendingPrimaries = replicas.filter((replica) => replica.role === 'primary').length;
  for (const received of state.received) {
    if (received.role === 'primary') pendingPrimaries--;
    if (received.acked) acks++;
    if (received.acked && received.role === 'primary') primaryAcks++;
  }
  return { acks, primaryAcks, errors: state.received.length - acks, pending: replicas.length - state.received.length, pendingPrimaries };
}

/** The answer or failure the acks so far decide, if any. */
function decide(state: PutState): PutOutput | undefined {
  const { w, pw } = state.options;
  const counts = tally(state);
  if (counts.acks >= w && counts.primaryAcks >= pw) return { type: 'answer' };
  if (counts.acks + counts.pending < w) return { type: 'fail', reason: 'unreachable', quorum: 'w', acked: counts.acks, needed: w };
  if (counts.primaryAcks + counts.pendingPrimaries < pw) return { type: 'fail', reason: 'unreachable', quorum: 'pw', acked: counts.primaryAcks, needed: pw };
  return undefined;
}

function assertSettings(settings: PutSettings): void {
  const { replicas, n, w, pw } = settings;
  assert(Number.isSafeInteger(n) && n >= 1, () => `put: n must be a positive integer, got ${n}`);
  assert(Number.isSafeInteger(w) && w >= 1 && w <= n, () => `put: need 1 <= w <= n, got w=${w} n=${n}`);
  assert(Number.isSafeInteger(pw) && pw >= 0 && pw <= n, () => `put: need 0 <= pw <= n, got pw=${pw} n=${n}`);
  assert(replicas.length <= n, () => `put: ${replicas.length} replicas for n=${n}`);
  assert(new Set(replicas.map((replica) => replica.nodeId)).size === replicas.length, 'put: replicas must be distinct nodes');
}
