// Property tests for the GET quorum state machine (get-coordinator.ts) against a naive oracle.
//
// Replica contents are reachable DVVSets: a few nodes take client writes (with or without the
// context of an earlier read) and sync with each other. A request script picks the preference
// list, the quorum options, each replica's fate (reply, error, silence), an arrival order with
// duplicated messages, and maybe a timeout. The oracle recomputes every prefix of the replies
// from scratch and folds the objects in node-id order, not arrival order, so DVV sync's order
// independence is checked along the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clientWrite, join, sync, update, values, vectorDescends, type DvvSet } from './dvv.js';
import { start, step, type GetInput, type GetOutput, type GetReply, type GetState, type ReplicaTarget } from './get-coordinator.js';

const nodes = ['a', 'b', 'c', 'd', 'e'];
const historyMax = 12;
const numRuns = 2000;

type HistoryOp = { readonly kind: 'write'; readonly at: number; readonly contextFrom: number | null } | { readonly kind: 'sync'; readonly from: number; readonly to: number };

const nodeIndex = fc.integer({ min: 0, max: nodes.length - 1 });
const historyArbitrary = fc.array(
  fc.oneof(
    fc.record({ kind: fc.constant('write' as const), at: nodeIndex, contextFrom: fc.option(nodeIndex) }),
    fc.record({ kind: fc.constant('sync' as const), from: nodeIndex, to: nodeIndex }),
  ),
  { maxLength: historyMax, size: 'max' },
);

/** Runs writes and syncs on the nodes; undefined for a node that never received the key. */
function replicaContents(history: readonly HistoryOp[]): (DvvSet<number> | undefined)[] {
  const stored: (DvvSet<number> | undefined)[] = nodes.map(() => undefined);
  let nextValue = 0;
  for (const op of history) {
    if (op.kind === 'write') {
      const read = op.contextFrom === null ? undefined : stored[op.contextFrom];
      const write = clientWrite(nextValue++, read === undefined ? [] : join(read));
      stored[op.at] = update(write, nodes[op.at] as string, stored[op.at]);
    } else {
      const from = stored[op.from];
      const to = stored[op.to];
      if (from !== undefined) stored[op.to] = to === undefined ? from : sync(to, from);
    }
  }
  return stored;
}

interface Script {
  readonly n: number;
  readonly r: number;
  readonly pr: number;
  readonly notfoundOk: boolean;
  readonly basicQuorum: boolean;
  readonly replicas: readonly ReplicaTarget[];
  readonly events: readonly GetInput<number>[];
}

const scriptArbitrary: fc.Arbitrary<Script> = fc
  .record({
    history: historyArbitrary,
    n: fc.integer({ min: 1, max: nodes.length }),
    // Mostly a full preference list, as when every node is up; sometimes a short one.
    replicaCount: fc.oneof({ weight: 3, arbitrary: fc.constant(nodes.length) }, { weight: 2, arbitrary: fc.nat() }),
    r: fc.nat(),
    pr: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }),
    notfoundOk: fc.boolean(),
    basicQuorum: fc.boolean(),
    order: fc.shuffledSubarray(nodes, { minLength: nodes.length, maxLength: nodes.length }),
    primary: fc.array(fc.constantFrom(true, true, true, false), { minLength: nodes.length, maxLength: nodes.length }),
    fate: fc.array(fc.constantFrom('reply', 'reply', 'reply', 'reply', 'error', 'silent'), { minLength: nodes.length, maxLength: nodes.length }),
    arrival: fc.array(fc.nat(), { minLength: nodes.length, maxLength: nodes.length }),
    duplicates: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
    timeoutAt: fc.option(fc.nat()),
  })
  .map((raw) => {
    const contents = replicaContents(raw.history);
    const n = raw.n;
    const replicas: ReplicaTarget[] = raw.order.slice(0, raw.replicaCount === nodes.length ? n : raw.replicaCount % (n + 1)).map((nodeId, index) => ({ nodeId, role: raw.primary[index] ? 'primary' : 'fallback' }));
    const deliveries: { key: number; event: GetInput<number> }[] = [];
    replicas.forEach((replica, index) => {
      const fate = raw.fate[index];
      const object: GetReply<number> = contents[nodes.indexOf(replica.nodeId)] ?? 'notfound';
      if (fate === 'reply') deliveries.push({ key: raw.arrival[index] as number, event: { type: 'reply', from: replica.nodeId, object } });
      if (fate === 'error') deliveries.push({ key: raw.arrival[index] as number, event: { type: 'error', from: replica.nodeId } });
    });
    const events = deliveries.sort((x, y) => x.key - y.key).map((delivery) => delivery.event);
    for (const [which, position] of raw.duplicates) {
      const original = events[which % Math.max(events.length, 1)];
      if (original !== undefined) events.splice(position % (events.length + 1), 0, original);
    }
    if (raw.timeoutAt !== null) events.splice(raw.timeoutAt % (events.length + 1), 0, { type: 'timeout' });
    return { n, r: 1 + (raw.r % n), pr: raw.pr % (n + 1), notfoundOk: raw.notfoundOk, basicQuorum: raw.basicQuorum, replicas, events };
  });

/** An output and the index of the event that caused it (-1: `start`). */
interface Timed {
  readonly at: number;
  readonly output: GetOutput<number>;
}

function runMachine(script: Script): Timed[] {
  const started = start<number>(script);
  const timed: Timed[] = started.outputs.map((output) => ({ at: -1, output }));
  let state: GetState<number> = started.state;
  script.events.forEach((event, index) => {
    const next = step(state, event);
    state = next.state;
    timed.push(...next.outputs.map((output) => ({ at: index, output })));
  });
  return timed;
}

interface Delivered {
  readonly index: number;
  readonly replica: ReplicaTarget;
  readonly reply: GetReply<number> | 'error';
}

/** The oracle's merge: objects folded in node-id order. */
function naiveMerge(delivered: readonly Delivered[]): GetReply<number> {
  const objects = [...delivered]
    .sort((x, y) => (x.replica.nodeId < y.replica.nodeId ? -1 : 1))
    .flatMap((entry) => (entry.reply === 'error' || entry.reply === 'notfound' ? [] : [entry.reply]));
  return objects.reduce<GetReply<number>>((merged, object) => (merged === 'notfound' ? object : sync(merged, object)), 'notfound');
}

function naiveCounts(script: Script, delivered: readonly Delivered[]) {
  const isSuccess = (entry: Delivered): boolean => entry.reply !== 'error' && (entry.reply !== 'notfound' || script.notfoundOk);
  const primaries = script.replicas.filter((replica) => replica.role === 'primary');
  return {
    successes: delivered.filter(isSuccess).length,
    primarySuccesses: delivered.filter((entry) => isSuccess(entry) && entry.replica.role === 'primary').length,
    primariesPending: primaries.filter((replica) => !delivered.some((entry) => entry.replica.nodeId === replica.nodeId)).length,
    failures: delivered.filter((entry) => !isSuccess(entry)).length,
    onlyNotfounds: delivered.length > 0 && delivered.every((entry) => entry.reply === 'notfound'),
  };
}

/** What Riak's get core would say after exactly these replies, or undefined to keep waiting. */
function naiveDecision(script: Script, delivered: readonly Delivered[]): GetOutput<number> | undefined {
  const counts = naiveCounts(script, delivered);
  if (counts.successes >= script.r && counts.primarySuccesses >= script.pr) return { type: 'answer', object: naiveMerge(delivered) };
  const unreachable = counts.successes + script.replicas.length - delivered.length < script.r;
  const majorityFailed = script.basicQuorum && counts.failures > script.n / 2;
  if (unreachable || majorityFailed) {
    if (!script.notfoundOk && counts.onlyNotfounds) return { type: 'answer', object: 'notfound' };
    return { type: 'fail', reason: unreachable ? 'unreachable' : 'basic-quorum', quorum: 'r', replied: counts.successes, needed: script.r };
  }
  if (counts.primarySuccesses + counts.primariesPending < script.pr) {
    return { type: 'fail', reason: 'unreachable', quorum: 'pr', replied: counts.primarySuccesses, needed: script.pr };
  }
  return undefined;
}

/** Replicas whose reply does not hold exactly the merge's history and siblings. */
function naiveRepair(script: Script, delivered: readonly Delivered[]): GetOutput<number> | undefined {
  const merged = naiveMerge(delivered);
  if (merged === 'notfound') return undefined;
  const mergedValues = values(merged).sort();
  const stale = (reply: GetReply<number>): boolean =>
    reply === 'notfound' || !vectorDescends(join(reply), join(merged)) || JSON.stringify(values(reply).sort()) !== JSON.stringify(mergedValues);
  const targets = script.replicas
    .filter((replica) => delivered.some((entry) => entry.replica.nodeId === replica.nodeId && entry.reply !== 'error' && stale(entry.reply)))
    .map((replica) => ({ nodeId: replica.nodeId, object: merged }));
  return targets.length === 0 ? undefined : { type: 'read-repair', targets };
}

function oracle(script: Script): Timed[] {
  const delivered: Delivered[] = [];
  const timeoutIndex = script.events.findIndex((event) => event.type === 'timeout');
  for (const [index, event] of script.events.entries()) {
    if (event.type === 'timeout') break;
    if (delivered.some((entry) => entry.replica.nodeId === event.from)) continue;
    const replica = script.replicas.find((candidate) => candidate.nodeId === event.from) as ReplicaTarget;
    delivered.push({ index, replica, reply: event.type === 'error' ? 'error' : event.object });
  }
  const expected: Timed[] = [];
  for (let count = 0; count <= delivered.length && expected.length === 0; count++) {
    const decision = naiveDecision(script, delivered.slice(0, count));
    if (decision !== undefined) expected.push({ at: count === 0 ? -1 : (delivered[count - 1] as Delivered).index, output: decision });
  }
  if (expected[0]?.at === -1) return expected;
  if (expected.length === 0 && timeoutIndex >= 0) {
    const counts = naiveCounts(script, delivered);
    const output: GetOutput<number> =
      counts.successes < script.r
        ? { type: 'fail', reason: 'timeout', quorum: 'r', replied: counts.successes, needed: script.r }
        : { type: 'fail', reason: 'timeout', quorum: 'pr', replied: counts.primarySuccesses, needed: script.pr };
    expected.push({ at: timeoutIndex, output });
  }
  const completedAt = delivered.length === script.replicas.length ? (delivered.at(-1) as Delivered).index : timeoutIndex;
  const repair = naiveRepair(script, delivered);
  if (completedAt >= 0 && repair !== undefined) expected.push({ at: completedAt, output: repair });
  return expected;
}

test('get: outputs equal the naive oracle (random preference lists, quorums, reply orders, errors, duplicates, timeouts)', () => {
  fc.assert(
    fc.property(scriptArbitrary, (script) => {
      assert.deepEqual(runMachine(script), oracle(script));
    }),
    { numRuns },
  );
});

test('get: answer or fail exactly once, never both, nothing but read repair after it (random scripts)', () => {
  fc.assert(
    fc.property(scriptArbitrary, (script) => {
      const timed = runMachine(script);
      const decisions = timed.filter((entry) => entry.output.type !== 'read-repair');
      const repairs = timed.filter((entry) => entry.output.type === 'read-repair');
      assert.ok(decisions.length <= 1, 'at most one answer or failure');
      assert.ok(repairs.length <= 1, 'at most one read repair');
      const repair = repairs[0];
      if (repair !== undefined) assert.ok(decisions.length === 1 && (decisions[0] as Timed).at <= repair.at, 'read repair comes after the decision');
      const timedOut = script.events.some((event) => event.type === 'timeout');
      if (timedOut) assert.equal(decisions.length, 1, 'a timeout forces a decision');
    }),
    { numRuns },
  );
});

test('get: the answer and repair are the same in any arrival order (reachable DVVSets, n=r=5, 2 orders)', () => {
  const permutation = fc.shuffledSubarray([0, 1, 2, 3, 4], { minLength: 5, maxLength: 5 });
  fc.assert(
    fc.property(historyArbitrary, permutation, (history, order) => {
      const contents = replicaContents(history);
      const replicas: ReplicaTarget[] = nodes.map((nodeId) => ({ nodeId, role: 'primary' }));
      const replies: GetInput<number>[] = nodes.map((nodeId, index) => ({ type: 'reply', from: nodeId, object: contents[index] ?? 'notfound' }));
      const shuffled = order.map((index) => replies[index] as GetInput<number>);
      const [inOrder, reordered] = [replies, shuffled].map((events) => runMachine({ n: 5, r: 5, pr: 0, notfoundOk: true, basicQuorum: false, replicas, events }));
      assert.deepEqual(
        inOrder?.map((entry) => entry.output),
        reordered?.map((entry) => entry.output),
      );
    }),
    { numRuns: 500 },
  );
});

const writeA = update(clientWrite('v1'), 'a');
const writeB = update(clientWrite('v2'), 'b');
const primaries = (...ids: string[]): ReplicaTarget[] => ids.map((nodeId) => ({ nodeId, role: 'primary' as const }));

function drive(options: Parameters<typeof start<string>>[0], events: readonly GetInput<string>[]): GetOutput<string>[] {
  const started = start<string>(options);
  let state = started.state;
  const outputs = [...started.outputs];
  for (const event of events) {
    const next = step(state, event);
    state = next.state;
    outputs.push(...next.outputs);
  }
  return outputs;
}

test('get: answers after R replies with their sync and repairs the notfound replica (n=3, r=2)', () => {
  const outputs = drive({ replicas: primaries('a', 'b', 'c'), n: 3, r: 2 }, [
    { type: 'reply', from: 'a', object: writeA },
    { type: 'reply', from: 'b', object: writeB },
    { type: 'reply', from: 'c', object: 'notfound' },
  ]);
  const merged = sync(writeA, writeB);
  assert.deepEqual(outputs, [
    { type: 'answer', object: merged },
    { type: 'read-repair', targets: [{ nodeId: 'a', object: merged }, { nodeId: 'b', object: merged }, { nodeId: 'c', object: merged }] },
  ]);
});

test('get: notfound_ok=false answers notfound once R cannot be met by objects (n=3, r=2, two notfounds)', () => {
  const outputs = drive({ replicas: primaries('a', 'b', 'c'), n: 3, r: 2, notfoundOk: false }, [
    { type: 'reply', from: 'a', object: 'notfound' },
    { type: 'reply', from: 'b', object: 'notfound' },
  ]);
  assert.deepEqual(outputs, [{ type: 'answer', object: 'notfound' }]);
});

test('get: basic quorum fails after a majority of errors without waiting for the rest (n=3, r=1)', () => {
  const outputs = drive({ replicas: primaries('a', 'b', 'c'), n: 3, r: 1, basicQuorum: true }, [
    { type: 'error', from: 'a' },
    { type: 'error', from: 'b' },
  ]);
  assert.deepEqual(outputs, [{ type: 'fail', reason: 'basic-quorum', quorum: 'r', replied: 0, needed: 1 }]);
});

test('get: fallback replies count toward R but not PR (n=3, r=2, pr=2, one primary)', () => {
  const replicas: ReplicaTarget[] = [{ nodeId: 'a', role: 'primary' }, { nodeId: 'd', role: 'fallback' }, { nodeId: 'e', role: 'fallback' }];
  const outputs = drive({ replicas, n: 3, r: 2, pr: 2 }, []);
  assert.deepEqual(outputs, [{ type: 'fail', reason: 'unreachable', quorum: 'pr', replied: 0, needed: 2 }], 'fails at start, nothing to send');
});

test('get: a timeout fails the request and repairs from the replies in hand (n=3, r=3)', () => {
  const outputs = drive({ replicas: primaries('a', 'b', 'c'), n: 3, r: 3 }, [
    { type: 'reply', from: 'a', object: writeA },
    { type: 'reply', from: 'b', object: 'notfound' },
    { type: 'timeout' },
    { type: 'reply', from: 'c', object: writeB },
  ]);
  assert.deepEqual(outputs, [
    { type: 'fail', reason: 'timeout', quorum: 'r', replied: 2, needed: 3 },
    { type: 'read-repair', targets: [{ nodeId: 'b', object: writeA }] },
  ]);
});

test('get: options out of range and replies from nodes not asked are bugs (assertions)', () => {
  assert.throws(() => start({ replicas: [], n: 3, r: 0 }), /1 <= r <= n/);
  assert.throws(() => start({ replicas: [], n: 3, r: 4 }), /1 <= r <= n/);
  assert.throws(() => start({ replicas: primaries('a', 'b'), n: 1, r: 1 }), /2 replicas for n=1/);
  assert.throws(() => start({ replicas: primaries('a', 'a'), n: 3, r: 1 }), /distinct/);
  const { state } = start<string>({ replicas: primaries('a'), n: 1, r: 1 });
  assert.throws(() => step(state, { type: 'error', from: 'z' }), /not asked/);
});
