import { createHash } from 'node:crypto';
import { sync, type DvvSet } from '../core/dvv.js';
import { viewInvariants } from '../core/membership.js';
import { preferenceList } from '../core/preference-list.js';
import { SeededRandom, type Random } from '../core/random.js';
import { assertionFailuresSeen, markCounts, resetAssertionFailures, resetMarks, setSimulationBugs, type BugName, type MarkName } from '../core/simulation-hooks.js';
import { keyPartition } from '../core/token.js';
import { decodeObject, type Sibling } from '../node/stored-object.js';
import { canonicalObject, check, type FinalKey, type Violation } from './checkers.js';
import { Scheduler } from './scheduler.js';
import { SimCluster, type SimNode } from './sim-cluster.js';
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
  const cluster = new SimCluster({ nodes: options.nodes, scheduler, random: new SeededRandom(random.nextUint32()), trace, clockSkewMsMax: options.clockSkewMsMax });
  const faultCounts: Record<string, number> = {};
  const violations: Violation[] = [];
  const phases: Phase[] = [];
  let phaseStart = { name: 'form', simulatedMs: 0, wallMs: performance.now() };
  const phase = (next: string): void => {
    phases.push({ name: phaseStart.name, simulatedMs: scheduler.nowMs - phaseStart.simulatedMs, wallMs: performance.now() - phaseStart.wallMs });
    phaseStart = { name: next, simulatedMs: scheduler.nowMs, wallMs: performance.now() };
  };
  let workload: Workload | undefined;
  try {
    await formCluster(cluster, trace, violations);
    workload = new Workload(cluster, new SeededRandom(random.nextUint32()), trace, {
      clients: options.clients,
      keys: options.keys,
      coldKeys: 400,
      thinkMsMax: 40,
      writeQuorums: [2, 3],
      readQuorums: [1, 2, 3],
      clientTimeoutMs: 6000,
      valuePaddingMax: options.valuePaddingMax,
    });
    if (violations.length === 0) {
      const loadEndMs = scheduler.nowMs + options.loadMs;
      phase('load');
      workload.start();
      const injector = options.faults ? new FaultInjector(cluster, new SeededRandom(random.nextUint32()), trace, options.faultyMax, faultCounts) : undefined;
      injector?.start(loadEndMs);
      await runWithInvariants(cluster, loadEndMs, violations);
      phase('drain and heal');
      const stopping = workload.stop();
      let stopped = false;
      void stopping.then(() => (stopped = true));
      await runWithInvariants(cluster, scheduler.nowMs + 20_000, violations, () => stopped);
      injector?.stop();
      await heal(cluster, trace, violations);
      phase('check');
      if (violations.length === 0) {
        const finals = await finalState(cluster, workload.history);
        violations.push(...check(workload.history, finals));
        if (violations.length === 0) violations.push(...(await corruptionIsDetected(cluster, finals, new SeededRandom(random.nextUint32()), trace)));
      }
    }
    phase('end');
  } catch (error) {
    violations.push({ checker: 'assertion', message: `the simulation itself failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}` });
  } finally {
    for (const node of cluster.nodes) node.crash(false, 'end of run');
    // Let the dead incarnations' last continuations run before the hooks are reset for the next run.
    await scheduler.runFor(0);
    process.off('unhandledRejection', onUnhandled);
  }
  for (const message of assertionFailuresSeen()) violations.push({ checker: 'assertion', message: `an assertion failed in production code: ${message}` });
  for (const message of unhandled) violations.push({ checker: 'assertion', message: `unhandled rejection: ${message}` });
  const marks = markCounts();
  setSimulationBugs([]);
  const history = workload?.history ?? [];
  const wallMs = performance.now() - wallStartMs;
  const operations = { pending: 0, ok: 0, fail: 0, timeout: 0 };
  for (const operation of history) operations[operation.outcome] += 1;
  return {
    seed: options.seed,
    options,
    violations,
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
      faults: faultCounts,
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
    for (const node of cluster.nodes) {
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
  for (const node of cluster.nodes) {
    const ring = node.ringkv?.cluster.membership?.ring;
    if (ring === undefined || new Set(ring.owners).size !== cluster.nodes.length) return false;
    epochs.add(ring.epoch);
  }
  return epochs.size === 1;
}

/** Faults stop: the network heals and turns reliable, down nodes restart, and everyone sees everyone up again. */
async function heal(cluster: SimCluster, trace: Trace, violations: Violation[]): Promise<void> {
  const scheduler = cluster.scheduler;
  cluster.network.heal();
  Object.assign(cluster.faults, { dropRate: 0, duplicateRate: 0, jitterMs: 0 });
  trace.add('sim', 'healing: network healed and reliable; restarting down nodes');
  const healed = (): boolean =>
    agreedRing(cluster) && cluster.nodes.every((node) => cluster.nodes.every((other) => node.ringkv?.cluster.membership?.isUp(other.nodeId) === true));
  const deadlineMs = scheduler.nowMs + 60_000;
  while (!healed() && scheduler.nowMs < deadlineMs) {
    for (const node of cluster.nodes) if (node.state === 'down') void node.start();
    await scheduler.runFor(1000, healed);
  }
  if (!healed()) {
    const states = cluster.nodes.map((node) => `${node.nodeId}:${node.state}`).join(' ');
    violations.push({ checker: 'convergence', message: `the cluster did not heal within 60 s of simulated time (${states})` });
    return;
  }
  await scheduler.runFor(2000);
  trace.add('sim', 'healed: every node up and seen up by every node');
}

/**
 * Reads every key the clients touched through every node with R = N (which read-repairs the
 * replicas), then takes each primary replica's stored object straight from its engine.
 */
async function finalState(cluster: SimCluster, history: readonly HistoryOperation[]): Promise<FinalKey[]> {
  const scheduler = cluster.scheduler;
  const slots = [...new Set(history.map((operation) => `${operation.namespace}/${operation.key}`))].sort().map((slot) => slot.split('/') as [string, string]);
  const readThrough = async (node: SimNode, namespace: string, key: string): Promise<readonly string[] | string> => {
    const store = node.store;
    if (store === undefined) return `${node.nodeId} is down`;
    const answer = await store.get(namespace, Buffer.from(key), { r: 3 });
    if (!answer.ok) return `${answer.code}: ${answer.message}`;
    return (answer.value?.siblings ?? []).filter((sibling) => sibling.value !== null).map((sibling) => Buffer.from(sibling.value!).toString('utf8')).sort();
  };
  const inspect = async ([namespace, key]: [string, string]): Promise<FinalKey> => {
    const reads = await Promise.all(cluster.nodes.map(async (node) => ({ nodeId: node.nodeId, values: await readThrough(node, namespace, key) })));
    const ring = cluster.nodes[0]!.ringkv!.cluster.membership!.ring;
    const primaries = preferenceList(ring, keyPartition(namespace, Buffer.from(key), ring.partitionCount), 3, () => true).filter((entry) => entry.role === 'primary');
    const replicas: { nodeId: string; canonical: string }[] = [];
    let merged: DvvSet<Sibling> | undefined;
    for (const primary of primaries) {
      const kv = cluster.node(primary.nodeId).ringkv?.kv;
      const stored = kv === undefined ? undefined : await kv.readObject(namespace, Buffer.from(key));
      if (stored === undefined || !stored.ok) {
        replicas.push({ nodeId: primary.nodeId, canonical: stored === undefined ? 'node down' : `unreadable: ${stored.message}` });
        continue;
      }
      const object = stored.value === undefined ? undefined : decodeObject(stored.value);
      if (object !== undefined) merged = merged === undefined ? object : sync(merged, object);
      replicas.push({ nodeId: primary.nodeId, canonical: canonicalObject(object) });
    }
    const live = new Map<string, { dot: readonly [string, number]; writtenAtMs: number }>();
    for (const entry of merged?.entries ?? []) {
      for (const [index, sibling] of entry.values.entries()) {
        if (sibling.value !== null) live.set(Buffer.from(sibling.value).toString('utf8'), { dot: [entry.actor, entry.counter - index], writtenAtMs: sibling.writtenAtMs });
      }
    }
    return { namespace, key, replicas, reads, live };
  };
  /** Runs `work` over every key, 32 at a time, on virtual time. */
  const overKeys = async <T>(work: (slot: [string, string]) => Promise<T>): Promise<T[]> => {
    const results: T[] = [];
    for (let start = 0; start < slots.length; start += 32) {
      const batch = await scheduler.settle(Promise.all(slots.slice(start, start + 32).map(work)), 60_000);
      if (batch === undefined) throw new Error('reading the final state did not finish within 60 s of simulated time');
      results.push(...batch.value);
    }
    return results;
  };
  // One repairing read per key, then time for the repairs to land; then every node's view.
  await overKeys(([namespace, key]) => readThrough(cluster.nodes[0]!, namespace, key));
  await scheduler.runFor(3000);
  return overKeys(inspect);
}

/**
 * Bit rot at the end of a run: a few bits flipped in every node's SSTables, then every replica of
 * every key read again straight from its engine. Each read must give exactly the object it gave
 * before or fail with CORRUPTION (a checksum caught it); never different bytes.
 */
async function corruptionIsDetected(cluster: SimCluster, finals: readonly FinalKey[], random: Random, trace: Trace): Promise<Violation[]> {
  const scheduler = cluster.scheduler;
  let flips = 0;
  for (const node of cluster.nodes) {
    const tables = node.disk.listFiles().filter((path) => path.endsWith('.sst'));
    for (let flip = 0; flip < 3 && tables.length > 0; flip++) {
      const path = tables[random.nextInt(tables.length)]!;
      const size = (await node.disk.readFile(path)).length;
      if (size === 0) continue;
      node.disk.flipBit(path, random.nextInt(size), random.nextInt(8));
      flips += 1;
    }
  }
  const violations: Violation[] = [];
  let detected = 0;
  const reread = async (final: FinalKey): Promise<void> => {
    for (const replica of final.replicas) {
      const kv = cluster.node(replica.nodeId).ringkv?.kv;
      if (kv === undefined) continue;
      const stored = await kv.readObject(final.namespace, Buffer.from(final.key));
      if (!stored.ok) {
        if (stored.code === 'CORRUPTION') detected += 1;
        else violations.push({ checker: 'phantom-value', message: `${final.namespace}/${final.key} on ${replica.nodeId} after bit flips: ${stored.code} ${stored.message}` });
        continue;
      }
      const canonical = canonicalObject(stored.value === undefined ? undefined : decodeObject(stored.value));
      if (canonical !== replica.canonical) {
        violations.push({ checker: 'phantom-value', message: `${final.namespace}/${final.key} on ${replica.nodeId}: after bit flips it reads {${canonical.slice(0, 200)}} instead of {${replica.canonical.slice(0, 200)}}: corruption served` });
      }
    }
  };
  for (let start = 0; start < finals.length; start += 32) {
    const done = await scheduler.settle(Promise.all(finals.slice(start, start + 32).map(reread)), 60_000);
    if (done === undefined) violations.push({ checker: 'assertion', message: 're-reading after bit flips did not finish' });
  }
  trace.add('sim', `bit rot: ${flips} bits flipped in SSTables; ${detected} replica reads failed with CORRUPTION, the rest read what they read before`);
  return violations;
}

/**
 * Faults while the clients run, every 0.5-3.5 s of virtual time: a node crashes (its last write
 * torn half the time) and restarts later; a node is cut off from the others (both ways or one
 * way) and healed later; the network turns lossy (drops, duplicates, reordering) for a while;
 * a node's disk fills up for a few writes; now and then the whole cluster loses power at once. At most `faultyMax` nodes are down or cut off.
 */
class FaultInjector {
  private stopped = false;
  private readonly faulty = new Set<string>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: Random,
    private readonly trace: Trace,
    private readonly faultyMax: number,
    private readonly counts: Record<string, number>,
  ) {}

  start(untilMs: number): void {
    const scheduler = this.cluster.scheduler;
    const next = (): void => {
      if (this.stopped || scheduler.nowMs >= untilMs) return;
      this.inject();
      scheduler.schedule(500 + this.random.nextFloat() * 3000, next);
    };
    scheduler.schedule(500 + this.random.nextFloat() * 3000, next);
  }

  stop(): void {
    this.stopped = true;
  }

  private count(kind: string): void {
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
  }

  private later(ms: number, action: () => void): void {
    this.cluster.scheduler.schedule(ms, () => {
      if (!this.stopped) action();
    });
  }

  private pickHealthy(): SimNode | undefined {
    const healthy = this.cluster.nodes.filter((node) => node.state === 'up' && !this.faulty.has(node.nodeId));
    return healthy.length === 0 ? undefined : healthy[this.random.nextInt(healthy.length)];
  }

  private inject(): void {
    const roll = this.random.nextFloat();
    const room = this.faulty.size < this.faultyMax;
    if (roll < 0.3 && room) this.crash();
    else if (roll < 0.52 && room) this.partition();
    else if (roll < 0.75) this.weather();
    else if (roll < 0.85) this.diskFull();
    else if (this.faulty.size === 0) this.powerLoss();
  }

  private crash(): void {
    const node = this.pickHealthy();
    if (node === undefined) return;
    this.count('crash');
    this.faulty.add(node.nodeId);
    node.crash(this.random.nextFloat() < 0.5);
    this.later(500 + this.random.nextFloat() * 7500, () => {
      if (node.state === 'down') void node.start();
      this.faulty.delete(node.nodeId);
    });
  }

  private partition(): void {
    const node = this.pickHealthy();
    if (node === undefined) return;
    const direction = this.random.nextFloat();
    const kind = direction < 0.6 ? 'both ways' : direction < 0.8 ? 'outgoing' : 'incoming';
    this.count(`partition (${kind})`);
    this.faulty.add(node.nodeId);
    const others = this.cluster.nodes.filter((other) => other !== node);
    for (const other of others) {
      if (kind === 'both ways') this.cluster.network.partition(node.nodeId, other.nodeId, 'both');
      else if (kind === 'outgoing') this.cluster.network.partition(node.nodeId, other.nodeId, 'one-way');
      else this.cluster.network.partition(other.nodeId, node.nodeId, 'one-way');
    }
    this.trace.add('sim', `partition: ${node.nodeId} cut off from the others (${kind})`);
    this.later(500 + this.random.nextFloat() * 7500, () => {
      for (const other of others) this.cluster.network.heal(node.nodeId, other.nodeId);
      this.faulty.delete(node.nodeId);
      this.trace.add('sim', `partition healed: ${node.nodeId}`);
    });
  }

  private weather(): void {
    const faults = this.cluster.faults;
    faults.dropRate = this.random.nextFloat() * 0.05;
    faults.duplicateRate = this.random.nextFloat() * 0.02;
    faults.jitterMs = this.random.nextFloat() * 30;
    this.count('lossy network');
    this.trace.add('sim', `network: drop ${(faults.dropRate * 100).toFixed(1)}%, duplicate ${(faults.duplicateRate * 100).toFixed(1)}%, jitter up to ${faults.jitterMs.toFixed(1)} ms`);
    this.later(1000 + this.random.nextFloat() * 7000, () => {
      Object.assign(faults, { dropRate: 0, duplicateRate: 0, jitterMs: 0 });
      this.trace.add('sim', 'network: reliable again');
    });
  }

  /** The next few writes to one node's disk fail with ENOSPC: its commit log fails and the supervisor reopens the engine. */
  private diskFull(): void {
    const node = this.pickHealthy();
    if (node === undefined) return;
    const writes = 1 + this.random.nextInt(4);
    this.count('disk full');
    node.disk.failNextWrites(writes, 'ENOSPC');
    this.trace.add('sim', `disk full: the next ${writes} writes on ${node.nodeId} fail with ENOSPC`);
  }

  private powerLoss(): void {
    this.count('power loss');
    this.trace.add('sim', 'power loss: every node crashes at once');
    for (const node of this.cluster.nodes) {
      this.faulty.add(node.nodeId);
      node.crash(this.random.nextFloat() < 0.5, 'power loss');
    }
    this.later(500 + this.random.nextFloat() * 2500, () => {
      for (const node of this.cluster.nodes) {
        if (node.state === 'down') void node.start();
        this.faulty.delete(node.nodeId);
      }
    });
  }
}
