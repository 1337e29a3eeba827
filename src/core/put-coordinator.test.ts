// Property tests for the PUT quorum state machine (put-coordinator.ts) against a naive oracle:
// for every prefix of the distinct replies, recount acks from scratch and ask whether W and PW
// are met or can no longer be met.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ReplicaTarget } from './get-coordinator.js';
import { start, step, type PutInput, type PutOptions, type PutOutput, type PutState } from './put-coordinator.js';

const nodes = ['a', 'b', 'c', 'd', 'e'];
const numRuns = 3000;

interface Script {
  readonly options: Required<PutOptions>;
  readonly events: readonly PutInput[];
}

const scriptArbitrary: fc.Arbitrary<Script> = fc
  .record({
    n: fc.integer({ min: 1, max: nodes.length }),
    // Mostly a full preference list, as when every node is up; sometimes a short one.
    replicaCount: fc.oneof({ weight: 3, arbitrary: fc.constant(nodes.length) }, { weight: 2, arbitrary: fc.nat() }),
    w: fc.nat(),
    pw: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat() }),
    order: fc.shuffledSubarray(nodes, { minLength: nodes.length, maxLength: nodes.length }),
    primary: fc.array(fc.constantFrom(true, true, true, false), { minLength: nodes.length, maxLength: nodes.length }),
    fate: fc.array(fc.constantFrom('ack', 'ack', 'ack', 'error', 'silent'), { minLength: nodes.length, maxLength: nodes.length }),
    arrival: fc.array(fc.nat(), { minLength: nodes.length, maxLength: nodes.length }),
    duplicates: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
    timeoutAt: fc.option(fc.nat()),
  })
  .map((raw) => {
    const n = raw.n;
    const replicas: ReplicaTarget[] = raw.order.slice(0, raw.replicaCount === nodes.length ? n : raw.replicaCount % (n + 1)).map((nodeId, index) => ({ nodeId, role: raw.primary[index] ? 'primary' : 'fallback' }));
    const deliveries: { key: number; event: PutInput }[] = [];
    replicas.forEach((replica, index) => {
      const fate = raw.fate[index];
      if (fate === 'ack' || fate === 'error') deliveries.push({ key: raw.arrival[index] as number, event: { type: fate, from: replica.nodeId } });
    });
    const events = deliveries.sort((x, y) => x.key - y.key).map((delivery) => delivery.event);
    for (const [which, position] of raw.duplicates) {
      const original = events[which % Math.max(events.length, 1)];
      if (original !== undefined) events.splice(position % (events.length + 1), 0, original);
    }
    if (raw.timeoutAt !== null) events.splice(raw.timeoutAt % (events.length + 1), 0, { type: 'timeout' });
    return { options: { replicas, n, w: 1 + (raw.w % n), pw: raw.pw % (n + 1) }, events };
  });

interface Timed {
  readonly at: number;
  readonly output: PutOutput;
}

function runMachine(script: Script): { timed: Timed[]; finishedAt: number | undefined } {
  const started = start(script.options);
  const timed: Timed[] = started.outputs.map((output) => ({ at: -1, output }));
  let state: PutState = started.state;
  let finishedAt = state.phase === 'finished' ? -1 : undefined;
  script.events.forEach((event, index) => {
    const next = step(state, event);
    state = next.state;
    timed.push(...next.outputs.map((output) => ({ at: index, output })));
    if (finishedAt === undefined && state.phase === 'finished') finishedAt = index;
  });
  return { timed, finishedAt };
}

interface Delivered {
  readonly index: number;
  readonly replica: ReplicaTarget;
  readonly acked: boolean;
}

function naiveDecision(script: Script, delivered: readonly Delivered[]): PutOutput | undefined {
  const { w, pw, replicas } = script.options;
  const acks = delivered.filter((entry) => entry.acked).length;
  const primaryAcks = delivered.filter((entry) => entry.acked && entry.replica.role === 'primary').length;
  const primariesLeft = replicas.filter((replica) => replica.role === 'primary' && !delivered.some((entry) => entry.replica.nodeId === replica.nodeId)).length;
  if (acks >= w && primaryAcks >= pw) return { type: 'answer' };
  if (acks + replicas.length - delivered.length < w) return { type: 'fail', reason: 'unreachable', quorum: 'w', acked: acks, needed: w };
  if (primaryAcks + primariesLeft < pw) return { type: 'fail', reason: 'unreachable', quorum: 'pw', acked: primaryAcks, needed: pw };
  return undefined;
}

function oracle(script: Script): { timed: Timed[]; finishedAt: number | undefined } {
  const delivered: Delivered[] = [];
  const timeoutIndex = script.events.findIndex((event) => event.type === 'timeout');
  for (const [index, event] of script.events.entries()) {
    if (event.type === 'timeout') break;
    if (delivered.some((entry) => entry.replica.nodeId === event.from)) continue;
    const replica = script.options.replicas.find((candidate) => candidate.nodeId === event.from) as ReplicaTarget;
    delivered.push({ index, replica, acked: event.type === 'ack' });
  }
  for (let count = 0; count <= delivered.length; count++) {
    const decision = naiveDecision(script, delivered.slice(0, count));
    if (decision === undefined) continue;
    const at = count === 0 ? -1 : (delivered[count - 1] as Delivered).index;
    const allReplied = delivered.length === script.options.replicas.length;
    const finishedAt = at === -1 ? -1 : allReplied ? (delivered.at(-1) as Delivered).index : timeoutIndex >= 0 ? timeoutIndex : undefined;
    return { timed: [{ at, output: decision }], finishedAt };
  }
  if (timeoutIndex < 0) return { timed: [], finishedAt: undefined };
  const acks = delivered.filter((entry) => entry.acked);
  const primaryAcks = acks.filter((entry) => entry.replica.role === 'primary').length;
  const { w, pw } = script.options;
  const output: PutOutput =
    acks.length < w
      ? { type: 'fail', reason: 'timeout', quorum: 'w', acked: acks.length, needed: w }
      : { type: 'fail', reason: 'timeout', quorum: 'pw', acked: primaryAcks, needed: pw };
  return { timed: [{ at: timeoutIndex, output }], finishedAt: timeoutIndex };
}

test('put: outputs and completion equal the naive oracle (random preference lists, W/PW, ack orders, errors, duplicates, timeouts)', () => {
  fc.assert(
    fc.property(scriptArbitrary, (script) => {
      assert.deepEqual(runMachine(script), oracle(script));
    }),
    { numRuns },
  );
});

test('put: answered iff W acks (PW from primaries) arrived before the failure condition, exactly once (random scripts)', () => {
  fc.assert(
    fc.property(scriptArbitrary, (script) => {
      const { timed } = runMachine(script);
      assert.ok(timed.length <= 1, 'one answer or one failure, never both');
      const answered = timed.some((entry) => entry.output.type === 'answer');
      if (script.events.some((event) => event.type === 'timeout')) assert.equal(timed.length, 1, 'a timeout forces a decision');
      if (answered) {
        const at = (timed[0] as Timed).at;
        const before = new Map<string, boolean>();
        script.events.slice(0, at + 1).forEach((event) => {
          if (event.type !== 'timeout' && !before.has(event.from)) before.set(event.from, event.type === 'ack');
        });
        const primaryIds = new Set(script.options.replicas.filter((replica) => replica.role === 'primary').map((replica) => replica.nodeId));
        assert.ok([...before.values()].filter(Boolean).length >= script.options.w);
        assert.ok([...before.entries()].filter(([nodeId, acked]) => acked && primaryIds.has(nodeId)).length >= script.options.pw);
      }
    }),
    { numRuns },
  );
});

const primaries = (...ids: string[]): ReplicaTarget[] => ids.map((nodeId) => ({ nodeId, role: 'primary' as const }));

function drive(options: PutOptions, events: readonly PutInput[]): PutOutput[] {
  const started = start(options);
  let state = started.state;
  const outputs = [...started.outputs];
  for (const event of events) {
    const next = step(state, event);
    state = next.state;
    outputs.push(...next.outputs);
  }
  return outputs;
}

test('put: answers after W acks and ignores the late ones (n=3, w=2)', () => {
  const outputs = drive({ replicas: primaries('a', 'b', 'c'), n: 3, w: 2 }, [
    { type: 'ack', from: 'a' },
    { type: 'ack', from: 'a' },
    { type: 'ack', from: 'b' },
    { type: 'error', from: 'c' },
  ]);
  assert.deepEqual(outputs, [{ type: 'answer' }]);
});

test('put: fails as soon as W is out of reach (n=3, w=3, one error)', () => {
  assert.deepEqual(drive({ replicas: primaries('a', 'b', 'c'), n: 3, w: 3 }, [{ type: 'error', from: 'b' }]), [
    { type: 'fail', reason: 'unreachable', quorum: 'w', acked: 0, needed: 3 },
  ]);
});

test('put: a hinted write to a fallback counts toward W but not PW (n=3, w=2, pw=2)', () => {
  const replicas: ReplicaTarget[] = [{ nodeId: 'a', role: 'primary' }, { nodeId: 'b', role: 'primary' }, { nodeId: 'd', role: 'fallback' }];
  assert.deepEqual(
    drive({ replicas, n: 3, w: 2, pw: 2 }, [
      { type: 'ack', from: 'a' },
      { type: 'ack', from: 'd' },
      { type: 'timeout' },
    ]),
    [{ type: 'fail', reason: 'timeout', quorum: 'pw', acked: 1, needed: 2 }],
  );
});

test('put: options out of range and acks from nodes not asked are bugs (assertions)', () => {
  assert.throws(() => start({ replicas: [], n: 3, w: 0 }), /1 <= w <= n/);
  assert.throws(() => start({ replicas: [], n: 2, w: 3 }), /1 <= w <= n/);
  assert.throws(() => start({ replicas: primaries('a'), n: 1, w: 1, pw: 2 }), /0 <= pw <= n/);
  const { state } = start({ replicas: primaries('a'), n: 1, w: 1 });
  assert.throws(() => step(state, { type: 'ack', from: 'z' }), /not asked/);
});
