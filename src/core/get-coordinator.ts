import { assert } from './assert.js';
import { join, size, sync, vectorEquals, type DvvSet } from './dvv.js';

/**
 * The quorum bookkeeping of one GET (Dynamo §4.5 "execution of get() and put() operations",
 * §4.7 read repair; riak_kv_get_fsm + riak_kv_get_core), as a pure state machine: `start` with
 * the request's options, then `step` with each replica reply, error or the request's timeout.
 * The outputs say when to answer the client and which replicas to repair; the runtime sends
 * the requests, runs the timer and performs the outputs, in the order given.
 *
 * Counting follows Riak. A reply counts toward R ("a success") if it holds an object, or if it
 * is notfound and `notfoundOk` (Riak's default: a replica without the key is a valid answer).
 * The client is answered as soon as R successes, PR of them from primaries, are in. The request
 * fails as soon as R or PR can no longer be reached with the replicas still pending, or, with
 * `basicQuorum`, once a majority of N replied with errors or (not ok) notfounds. One exception,
 * as Riak: with `notfoundOk` false, a request that fails having seen only notfounds (no object,
 * no error) answers notfound — the replicas agree the key is absent, and reporting an outage
 * for every read of a missing key would be wrong. A timeout before the answer always fails.
 *
 * After the answer, the machine keeps collecting until every replica replied or the timeout,
 * then emits read repair for every replica whose reply is causally behind the merge of all
 * replies (notfound replicas included); errors and silent replicas are not repaired, since
 * what they hold is unknown (anti-entropy covers them).
 */
export type ReplicaRole = 'primary' | 'fallback';

/** One entry of the key's preference list: a node the request is sent to. */
export interface ReplicaTarget {
  readonly nodeId: string;
  readonly role: ReplicaRole;
}

export interface GetOptions {
  /** The preference list entries asked, primaries and fallbacks, distinct nodes; at most n. */
  readonly replicas: readonly ReplicaTarget[];
  readonly n: number;
  /** Successful replies needed to answer: 1 ≤ r ≤ n. */
  readonly r: number;
  /** Of those, replies needed from primaries (Riak `pr`), 0 ≤ pr ≤ n; default 0. */
  readonly pr?: number;
  /** Whether a notfound reply counts toward R (Riak `notfound_ok`); default true. */
  readonly notfoundOk?: boolean;
  /** Fail once a majority of N replied with errors or not-ok notfounds (Riak `basic_quorum`); default false. */
  readonly basicQuorum?: boolean;
}

export type GetReply<V> = DvvSet<V> | 'notfound';

export type GetInput<V> =
  | { readonly type: 'reply'; readonly from: string; readonly object: GetReply<V> }
  | { readonly type: 'error'; readonly from: string }
  | { readonly type: 'timeout' };

/** `unreachable`: too few replicas left; `basic-quorum`: a majority failed; `timeout`: time ran out. */
export type GetFailReason = 'unreachable' | 'basic-quorum' | 'timeout';

export interface ReadRepairTarget<V> {
  readonly nodeId: string;
  /** The merge of all replies: writing it makes the replica descend everything read. */
  readonly object: DvvSet<V>;
}

export type GetOutput<V> =
  /** Exactly once per request, unless it fails: the merge (DVV sync) of the replies so far. */
  | { readonly type: 'answer'; readonly object: GetReply<V> }
  /** Exactly once per request, unless it is answered. `quorum` names the count that fell short. */
  | { readonly type: 'fail'; readonly reason: GetFailReason; readonly quorum: 'r' | 'pr'; readonly replied: number; readonly needed: number }
  /** At most once, after the answer or failure, when every replica replied or on the timeout. */
  | { readonly type: 'read-repair'; readonly targets: readonly ReadRepairTarget<V>[] };

/** `waiting`: no answer yet; `responded`: answered or failed, collecting for read repair; `finished`: ignores input. */
export type GetPhase = 'waiting' | 'responded' | 'finished';

export interface GetReceived<V> {
  readonly nodeId: string;
  readonly role: ReplicaRole;
  readonly reply: GetReply<V> | 'error';
}

export interface GetState<V> {
  readonly options: GetSettings;
  /** In arrival order, at most one per replica. */
  readonly received: readonly GetReceived<V>[];
  /** The sync of every object received; notfound while none was. */
  readonly merged: GetReply<V>;
  readonly phase: GetPhase;
}

/** The options with their defaults filled in. */
export interface GetSettings {
  readonly replicas: readonly ReplicaTarget[];
  readonly n: number;
  readonly r: number;
  readonly pr: number;
  readonly notfoundOk: boolean;
  readonly basicQuorum: boolean;
}

export interface GetTransition<V> {
  readonly state: GetState<V>;
  readonly outputs: readonly GetOutput<V>[];
}

/**
 * A new GET. If the replicas cannot reach R or PR even before any request is sent (too many
 * nodes down), the first output is the failure and the machine is already finished: the runtime
 * sends nothing.
 */
export function start<V>(options: GetOptions): GetTransition<V> {
  const settings: GetSettings = {
    replicas: options.replicas,
    n: options.n,
    r: options.r,
    pr: options.pr ?? 0,
    notfoundOk: options.notfoundOk ?? true,
    basicQuorum: options.basicQuorum ?? false,
  };
  assertSettings(settings);
  const state: GetState<V> = { options: settings, received: [], merged: 'notfound', phase: 'waiting' };
  const decided = decide(state);
  if (decided === undefined) return { state, outputs: [] };
  return { state: { ...state, phase: 'finished' }, outputs: [decided] };
}

/** The one entry for input. A second reply from one replica (a duplicated message) is ignored. */
export function step<V>(state: GetState<V>, input: GetInput<V>): GetTransition<V> {
  if (state.phase === 'finished') return { state, outputs: [] };
  if (input.type === 'timeout') return onTimeout(state);
  const target = state.options.replicas.find((replica) => replica.nodeId === input.from);
  assert(target !== undefined, () => `get: reply from ${input.from}, which was not asked`);
  if (state.received.some((received) => received.nodeId === input.from)) return { state, outputs: [] };
  const reply = input.type === 'error' ? 'error' : input.object;
  let next: GetState<V> = {
    options: state.options,
    received: [...state.received, { nodeId: target.nodeId, role: target.role, reply }],
    merged: reply === 'error' || reply === 'notfound' ? state.merged : mergeReply(state.merged, reply),
    phase: state.phase,
  };
  const outputs: GetOutput<V>[] = [];
  if (next.phase === 'waiting') {
    const decided = decide(next);
    if (decided !== undefined) {
      outputs.push(decided);
      next = { ...next, phase: 'responded' };
    }
  }
  if (next.received.length === next.options.replicas.length) {
    assert(next.phase === 'responded', 'get: every replica replied but nothing was decided');
    return finish(next, outputs);
  }
  return { state: next, outputs };
}

/** The tallies the decision rests on; recomputed from the replies (n is small). */
export interface GetTally {
  readonly successes: number;
  readonly primarySuccesses: number;
  readonly objects: number;
  readonly notfounds: number;
  readonly errors: number;
  readonly pending: number;
  readonly pendingPrimaries: number;
}

export function tally<V>(state: GetState<V>): GetTally {
  const { notfoundOk, replicas } = state.options;
  let successes = 0;
  let primarySuccesses = 0;
  let objects = 0;
  let notfounds = 0;
  let errors = 0;
  let pendingPrimaries = replicas.filter((replica) => replica.role === 'primary').length;
  for (const received of state.received) {
    if (received.role === 'primary') pendingPrimaries--;
    if (received.reply === 'error') errors++;
    else if (received.reply === 'notfound') notfounds++;
    else objects++;
    const success = received.reply !== 'error' && (received.reply !== 'notfound' || notfoundOk);
    if (success) successes++;
    if (success && received.role === 'primary') primarySuccesses++;
  }
  return { successes, primarySuccesses, objects, notfounds, errors, pending: replicas.length - state.received.length, pendingPrimaries };
}

/** The answer or failure the replies so far decide, if any (riak_kv_get_core:enough/response). */
function decide<V>(state: GetState<V>): GetOutput<V> | undefined {
  const { r, pr, n, notfoundOk, basicQuorum } = state.options;
  const counts = tally(state);
  if (counts.successes >= r && counts.primarySuccesses >= pr) return { type: 'answer', object: state.merged };
  const failures = counts.errors + (notfoundOk ? 0 : counts.notfounds);
  const unreachable = counts.successes + counts.pending < r;
  const majorityFailed = basicQuorum && failures >= Math.floor(n / 2) + 1;
  if (unreachable || majorityFailed) {
    if (!notfoundOk && counts.notfounds > 0 && counts.objects === 0 && counts.errors === 0) return { type: 'answer', object: 'notfound' };
    return { type: 'fail', reason: unreachable ? 'unreachable' : 'basic-quorum', quorum: 'r', replied: counts.successes, needed: r };
  }
  if (counts.primarySuccesses + counts.pendingPrimaries < pr) {
    return { type: 'fail', reason: 'unreachable', quorum: 'pr', replied: counts.primarySuccesses, needed: pr };
  }
  return undefined;
}

function onTimeout<V>(state: GetState<V>): GetTransition<V> {
  if (state.phase === 'responded') return finish(state, []);
  const { r, pr } = state.options;
  const counts = tally(state);
  const failed: GetOutput<V> =
    counts.successes < r
      ? { type: 'fail', reason: 'timeout', quorum: 'r', replied: counts.successes, needed: r }
      : { type: 'fail', reason: 'timeout', quorum: 'pr', replied: counts.primarySuccesses, needed: pr };
  return finish({ ...state, phase: 'responded' }, [failed]);
}

/** Ends the request: read repair for the replies behind the final merge, then no more output. */
function finish<V>(state: GetState<V>, outputs: GetOutput<V>[]): GetTransition<V> {
  const targets = readRepairTargets(state);
  if (targets.length > 0) outputs.push({ type: 'read-repair', targets });
  return { state: { ...state, phase: 'finished' }, outputs };
}

/** The replicas that replied with something the merge of all replies supersedes, in preference-list order. */
export function readRepairTargets<V>(state: GetState<V>): ReadRepairTarget<V>[] {
  const merged = state.merged;
  if (merged === 'notfound') return [];
  const targets: ReadRepairTarget<V>[] = [];
  for (const replica of state.options.replicas) {
    const received = state.received.find((entry) => entry.nodeId === replica.nodeId);
    if (received === undefined || received.reply === 'error') continue;
    if (received.reply === 'notfound' || !causallyEqual(received.reply, merged)) targets.push({ nodeId: replica.nodeId, object: merged });
  }
  return targets;
}

/**
 * Same history and same number of siblings. The merge descends every reply, so a reply with the
 * merge's version vector has seen everything; the sibling count guards against a replica whose
 * values differ under equal vectors, which a correct replica never holds.
 */
export function causallyEqual<V>(a: DvvSet<V>, b: DvvSet<V>): boolean {
  return vectorEquals(join(a), join(b)) && size(a) === size(b);
}

function mergeReply<V>(merged: GetReply<V>, object: DvvSet<V>): DvvSet<V> {
  return merged === 'notfound' ? object : sync(merged, object);
}

function assertSettings(settings: GetSettings): void {
  const { replicas, n, r, pr } = settings;
  assert(Number.isSafeInteger(n) && n >= 1, () => `get: n must be a positive integer, got ${n}`);
  assert(Number.isSafeInteger(r) && r >= 1 && r <= n, () => `get: need 1 <= r <= n, got r=${r} n=${n}`);
  assert(Number.isSafeInteger(pr) && pr >= 0 && pr <= n, () => `get: need 0 <= pr <= n, got pr=${pr} n=${n}`);
  assert(replicas.length <= n, () => `get: ${replicas.length} replicas for n=${n}`);
  assert(new Set(replicas.map((replica) => replica.nodeId)).size === replicas.length, 'get: replicas must be distinct nodes');
}
