import { createHash } from 'node:crypto';
import { viewInvariants } from '../core/membership.js';
import { SeededRandom } from '../core/random.js';
import { assertionFailuresSeen, markCounts, resetAssertionFailures, resetMarks, setSimulationBugs, type BugName, type MarkName } from '../core/simulation-hooks.js';
import { check, type Violation } from './checkers.js';
import { FaultInjector } from './fault-injector.js';
import { treesConverge } from './anti-entropy-check.js';
import { corruptionIsDetected, finalState, handoffCompletes } from './final-state.js';
import { Scheduler } from './scheduler.js';
import { SimCluster } from './sim-cluster.js';
import { Trace } from './sim-world.js';
import { lwwNamespace, siblingsNamespace, Workload, type HistoryOperation } from './workload.js';

export interface SimulationOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Virtual ms of client load with faults. */
  readonly loadMs: number;
  readonly clients: number;
  readonly keys: number;
  /** Inject faults (crashes, partitions, power loss, lossy network); false: a clean run. */
  readonly faults: boolean;
  /** Nodes that may be down or cut off at once (besides a whole-cluster power loss). */
  readonly faultyMax: number;
  /** Nodes run active anti-entropy (false: read repair and handoff alone heal replicas). */
  readonly antiEntropy: boolean;
  /** Also pause nodes (SIGSTOP) and continue them; false gives a seed its schedule from before pauses existed. */
  readonly pauses: boolean;
  readonly clockSkewMsMax: number;
  /** Values carry up to this many bytes of padding, so memtables flush and tables compact. */
  readonly valuePaddingMax: number;
  readonly bugs: readonly BugName[];
}

export const defaultSimulationOptions: Omit<SimulationOptions, 'seed'> = {
  nodes: 5,
  loadMs: 30_000,
  clients: 6,
  keys: 12,
  faults: true,
  faultyMax: 1,
  antiEntropy: true,
  pauses: true,
  clockSkewMsMax: 300,
  valuePaddingMax: 800,
  bugs: [],
};

/** Simulated and wall-clock time of one phase of a run: form, load, drain and heal, check. */
export interface Phase {
  readonly name: string;
  readonly simulatedMs: number;
  readonly wallMs: number;
}

export interface SimulationResult {
  readonly seed: number;
  readonly options: SimulationOptions;
  readonly violations: readonly Violation[];
  readonly history: readonly HistoryOperation[];
  /** SHA-256 of the history's canonical text: equal for two runs of one seed. */
  readonly historyDigest: string;
  readonly trace: readonly string[];
  /** The simulator's own events of the whole run: faults injected and healed, nodes started, phases. */
  readonly events: readonly string[];
  readonly marks: ReadonlyMap<MarkName, number>;
  readonly stats: {
    readonly simulatedMs: number;
    readonly wallMs: number;
    /** Simulated seconds times nodes, per wall-clock second. */
    readonly nodeSecondsPerSecond: number;
    readonly events: number;
    readonly phases: readonly Phase[];
    /** The load phase alone: simulated node-seconds per wall second while clients and faults run. */
    readonly loadNodeSecondsPerSecond: number;
    readonly operations: Readonly<Record<HistoryOperation['outcome'], number>>;
    readonly faults: Readonly<Record<string, number>>;
  };
}

/** The history as text, one operation per line, for digests and byte-for-byte comparison of replays. */
export function historyText(history: readonly HistoryOperation[]): string {
  return history.map((operation) => JSON.stringify(operation)).join('\n');
}

/**
 * One simulated run: form a cluster, run the clients while faults are injected, stop the faults,
 * heal, read every key through every node, and check the history and the final state.
 */
/** The state of one run, shared by its phases. */
interface Run {
  readonly options: SimulationOptions;
  readonly scheduler: Scheduler;
  readonly random: SeededRandom;
  readonly trace: Trace;
  readonly cluster: SimCluster;
  readonly violations: Violation[];
  readonly faultCounts: Record<string, number>;
  readonly phases: Phase[];
  phaseStart: { readonly name: string; readonly simulatedMs: number; readonly wallMs: number };
  workload: Workload | undefined;
}

export async function runSimulation(options: SimulationOptions): Promise<SimulationResult> {
  const wallStartMs = performance.now();
  resetMarks();
  resetAssertionFailures();
  setSimulationBugs(options.bugs);
  const unhandled: string[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(String(reason instanceof Error ? (reason.stack ?? reason.message) : reason));
  };
  process.on('unhandledRejection', onUnhandled);
  const scheduler = new Scheduler();
  const random = new SeededRandom(options.seed);
  const trace = new Trace(scheduler);
  const cluster = new SimCluster({ nodes: options.nodes, scheduler, random: new SeededRandom(random.nextUint32()), trace, clockSkewMsMax: options.clockSkewMsMax, ...(options.antiEntropy ? {} : { configFlags: { antiEntropyIntervalMs: 0 } }) });
  const run: Run = {
    options, scheduler, random, trace, cluster, violations: [], faultCounts: {}, phases: [],
    phaseStart: { name: 'form', simulatedMs: 0, wallMs: performance.now() },
    workload: undefined,
  };
  try {
    await simulate(run);
  } catch (error) {
    run.violations.push({ checker: 'assertion', message: `the simulation itself failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}` });
  } finally {
    for (const node of cluster.nodes) node.crash(false, 'end of run');
    // Let the dead incarnations' last continuations run before the hooks are reset for the next run.
    await scheduler.runFor(0);
    process.off('unhandledRejection', onUnhandled);
  }
  for (const message of assertionFailuresSeen()) run.violations.push({ checker: 'assertion', message: `an assertion failed in production code: ${message}` });
  for (const message of unhandled) run.violations.push({ checker: 'assertion', message: `unhandled rejection: ${message}` });
  const marks = markCounts();
  setSimulationBugs([]);
  return resultOf(run, performance.now() - wallStartMs, marks);
}

/** Ends the current phase and starts `next`. */
function phase(run: Run, next: string): void {
  const { scheduler, phaseStart } = run;
  run.phases.push({ name: phaseStart.name, simulatedMs: scheduler.nowMs - phaseStart.simulatedMs, wallMs: performance.now() - phaseStart.wallMs });
  run.phaseStart = { name: next, simulatedMs: scheduler.nowMs, wallMs: performance.now() };
}

/** The phases: form, load with faults, drain and heal, check; each stops at the first violation. */
async function simulate(run: Run): Promise<void> {
  const { options, scheduler, random, trace, cluster, violations } = run;
  await formCluster(cluster, trace, violations);
  if (violations.length > 0) return;
  const workload = new Workload(cluster, new SeededRandom(random.nextUint32()), trace, {
    clients: options.clients,
    keys: options.keys,
    coldKeys: 400,
    thinkMsMax: 40,
    writeQuorums: [2, 3],
    readQuorums: [1, 2, 3],
    clientTimeoutMs: 6000,
    valuePaddingMax: options.valuePaddingMax,
  });
  run.workload = workload;
  const loadEndMs = scheduler.nowMs + options.loadMs;
  phase(run, 'load');
  workload.start();
  const injector = options.faults ? new FaultInjector(cluster, new SeededRandom(random.nextUint32()), trace, options.faultyMax, run.faultCounts, (action) => workload.afterNextAck(action), options.pauses) : undefined;
  injector?.start(loadEndMs);
  await runWithInvariants(cluster, loadEndMs, violations);
  phase(run, 'drain and heal');
  let stopped = false;
  void workload.stop().then(() => (stopped = true));
  await runWithInvariants(cluster, scheduler.nowMs + 20_000, violations, () => stopped);
  injector?.stop();
  await heal(cluster, trace, violations);
  phase(run, 'check');
  if (violations.length === 0) violations.push(...(await handoffCompletes(cluster, trace)));
  if (violations.length === 0) {
    const finals = await finalState(cluster, workload.history);
    violations.push(...check(workload.history, finals));
    if (violations.length === 0 && run.options.antiEntropy) violations.push(...(await treesConverge(cluster, trace)));
    if (violations.length === 0) violations.push(...(await corruptionIsDetected(cluster, finals, new SeededRandom(random.nextUint32()), trace)));
  }
  phase(run, 'end');
}

function resultOf(run: Run, wallMs: number, marks: ReadonlyMap<MarkName, number>): SimulationResult {
  const { options, scheduler, trace, phases } = run;
  const history = run.workload?.history ?? [];
  const operations = { pending: 0, ok: 0, fail: 0, timeout: 0 };
  for (const operation of history) operations[operation.outcome] += 1;
  return {
    seed: options.seed,
    options,
    violations: run.violations,
    history,
    historyDigest: createHash('sha256').update(historyText(history)).digest('hex'),
    trace: trace.last(),
    events: trace.simulatorLines,
    marks,
    stats: {
      simulatedMs: scheduler.nowMs,
      wallMs,
      nodeSecondsPerSecond: (scheduler.nowMs / 1000) * options.nodes / (wallMs / 1000),
      events: scheduler.eventsRun,
      phases,
      loadNodeSecondsPerSecond: nodeSecondsPerSecond(phases.find((entry) => entry.name === 'load'), options.nodes),
      operations,
      faults: run.faultCounts,
    },
  };
}

function nodeSecondsPerSecond(phase: Phase | undefined, nodes: number): number {
  return phase === undefined || phase.wallMs === 0 ? 0 : (phase.simulatedMs / 1000) * nodes / (phase.wallMs / 1000);
}

/** Runs until `untilMs`, checking the membership views' invariants every simulated second. */
async function runWithInvariants(cluster: SimCluster, untilMs: number, violations: Violation[], stop: () => boolean = () => false): Promise<void> {
  const scheduler = cluster.scheduler;
  while (scheduler.nowMs < untilMs && !stop()) {
    await scheduler.runUntil(Math.min(untilMs, scheduler.nowMs + 1000), stop);
    for (const node of cluster.members) {
      const membership = node.ringkv?.cluster.membership;
      if (membership === undefined) continue;
      try {
        viewInvariants(membership.current);
      } catch (error) {
        violations.push({ checker: 'assertion', message: `${node.nodeId}: membership view invariant: ${String(error)}` });
      }
    }
  }
}

/** Starts every node (the first founds the cluster, the others join it) and waits for one ring of all of them. */
async function formCluster(cluster: SimCluster, trace: Trace, violations: Violation[]): Promise<void> {
  const scheduler = cluster.scheduler;
  for (const node of cluster.nodes) {
    void node.start();
    await scheduler.runFor(50);
  }
  const formed = (): boolean => agreedRing(cluster) && cluster.nodes.every((node) => node.ringkv?.cluster.membership?.current.members.every((member) => member.status === 'valid'));
  await scheduler.runFor(60_000, formed);
  if (!formed()) {
    violations.push({ checker: 'convergence', message: `the cluster did not form within 60 s of simulated time` });
    return;
  }
  const admin = cluster.nodes[0]!.ringkv!.cluster.adminApi();
  const created = await scheduler.settle(
    Promise.all([
      admin.setNamespace(lwwNamespace, { n: 3, r: 2, w: 2, conflictMode: 'lww' }),
      admin.setNamespace(siblingsNamespace, { n: 3, r: 2, w: 2, conflictMode: 'siblings' }),
    ]),
    10_000,
  );
  if (created === undefined) violations.push({ checker: 'assertion', message: 'creating the namespaces did not finish' });
  for (const result of created?.value ?? []) if (!result.ok) violations.push({ checker: 'assertion', message: `creating the namespaces failed: ${result.message}` });
  await scheduler.runFor(5000);
  trace.add('sim', `cluster formed: ${cluster.nodes.length} nodes, ring epoch ${cluster.nodes[0]!.ringkv!.cluster.membership!.ring.epoch}`);
}

/** Every node up, all on the same ring epoch, owned by every node. */
function agreedRing(cluster: SimCluster): boolean {
  const epochs = new Set<number>();
  const members = cluster.members;
  for (const node of members) {
    const ring = node.ringkv?.cluster.membership?.ring;
    if (ring === undefined || new Set(ring.owners).size !== members.length || members.some((member) => !ring.owners.includes(member.nodeId))) return false;
    epochs.add(ring.epoch);
  }
  return epochs.size === 1;
}

/** Faults stop: the network heals and turns reliable, stopped nodes continue, down nodes restart, and everyone sees everyone up again. */
async function heal(cluster: SimCluster, trace: Trace, violations: Violation[]): Promise<void> {
  const scheduler = cluster.scheduler;
  cluster.network.heal();
  for (const node of cluster.members) node.resume();
  Object.assign(cluster.faults, { dropRate: 0, duplicateRate: 0, jitterMs: 0 });
  for (const node of cluster.members) node.disk.failNextWrites(0);
  trace.add('sim', 'healing: network healed and reliable; restarting down nodes');
  const healed = (): boolean =>
    agreedRing(cluster) && cluster.members.every((node) => cluster.members.every((other) => node.ringkv?.cluster.membership?.isUp(other.nodeId) === true));
  const deadlineMs = scheduler.nowMs + 60_000;
  while (!healed() && scheduler.nowMs < deadlineMs) {
    for (const node of cluster.members) if (node.state === 'down') void node.start();
    await scheduler.runFor(1000, healed);
  }
  if (!healed()) {
    const states = cluster.members.map((node) => `${node.nodeId}:${node.state}`).join(' ');
    violations.push({ checker: 'convergence', message: `the cluster did not heal within 60 s of simulated time (${states})` });
    return;
  }
  await scheduler.runFor(2000);
  trace.add('sim', 'healed: every node up and seen up by every node');
}
