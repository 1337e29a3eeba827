import { assert } from '../core/assert.js';
import { SeededRandom, type Random } from '../core/random.js';
import { createMemoryNetwork, type MemoryMessenger, type MemoryNetwork } from '../net/memory-messenger.js';
import { resolveConfig, type Config } from '../node/config.js';
import type { KeyValueStore } from '../node/kv-service.js';
import { RingkvNode } from '../node/ringkv-node.js';
import { createMemoryFileSystem, type MemoryFileSystem } from '../world/memory-file-system.js';
import type { Scheduler } from './scheduler.js';
import { Incarnation, incarnationDisk, traceLogger, type Trace } from './sim-world.js';

/** How the simulated network and disks misbehave; changed by the simulation between phases. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  dropRate: number;
  /** Probability that a message arrives twice. */
  duplicateRate: number;
  /** Extra delay drawn uniformly from [0, jitterMs] per copy: messages of one link overtake each other. */
  jitterMs: number;
}

export interface SimClusterOptions {
  readonly nodes: number;
  readonly scheduler: Scheduler;
  readonly random: Random;
  readonly trace: Trace;
  /** Node settings on top of the defaults (small memtables, so flushes and compactions happen). */
  readonly configFlags?: Record<string, unknown>;
  /** Largest clock skew of a node, in ms (drawn per node, either sign). */
  readonly clockSkewMsMax: number;
}

const peerPort = 7800;
/** How long the simulated process supervisor waits before starting a node whose supervisor gave up. */
const processRestartDelayMs = 2000;
const baseDelayMs = 0.2;

/**
 * A ringkv cluster in one process: real RingkvNodes (supervisor, engine, cluster service,
 * coordinator) on the scheduler's virtual time, the in-memory network with seeded loss,
 * duplication, delay and partitions, and a MemoryFileSystem per node that forgets unsynced data
 * when the node crashes.
 */
export class SimCluster {
  readonly nodes: SimNode[] = [];
  readonly network: MemoryNetwork;
  readonly faults: NetworkFaults = { dropRate: 0, duplicateRate: 0, jitterMs: 0 };
  private readonly random: Random;

  constructor(readonly options: SimClusterOptions) {
    this.random = options.random;
    this.network = createMemoryNetwork({ clock: options.scheduler.clock(), deliveryPlan: () => this.plan() });
    for (let index = 1; index <= options.nodes; index++) {
      const skewMs = options.clockSkewMsMax === 0 ? 0 : Math.round((this.random.nextFloat() * 2 - 1) * options.clockSkewMsMax);
      this.nodes.push(new SimNode(this, `n${index}`, index, skewMs, this.freshDisk()));
    }
  }

  get scheduler(): Scheduler {
    return this.options.scheduler;
  }

  /** The nodes that have not left the cluster for good. */
  get members(): SimNode[] {
    return this.nodes.filter((node) => node.state !== 'left');
  }

  /** A new node, down until started; it joins through the other members. */
  addNode(): SimNode {
    const index = this.nodes.length + 1;
    const skewMs = this.options.clockSkewMsMax === 0 ? 0 : Math.round((this.random.nextFloat() * 2 - 1) * this.options.clockSkewMsMax);
    const node = new SimNode(this, `n${index}`, index, skewMs, this.freshDisk());
    this.nodes.push(node);
    return node;
  }

  freshDisk(): MemoryFileSystem {
    return createMemoryFileSystem({ random: new SeededRandom(this.random.nextUint32()) });
  }

  get trace(): Trace {
    return this.options.trace;
  }

  node(nodeId: string): SimNode {
    const found = this.nodes.find((node) => node.nodeId === nodeId);
    assert(found !== undefined, () => `no simulated node ${nodeId}`);
    return found;
  }

  config(node: SimNode): Config {
    const resolved = resolveConfig({
      flags: {
        nodeId: node.nodeId,
        dataDir: '/data',
        host: node.nodeId,
        peerPort,
        // The first node founds the cluster; every other start without a kept view (a new
        // node, a wiped disk) joins through the members.
        join: node.founds ? '' : this.members.filter((other) => other !== node).map((other) => `${other.nodeId}:${peerPort}`).join(','),
        memtableSizeBytes: 16 * 1024,
        blockCacheBytes: 32 * 1024,
        requestTimeoutMs: 2000,
        // Short, so the runs reap tombstones (a real node keeps them for a day).
        tombstoneGraceMs: 3000,
        ...this.options.configFlags,
      },
      environment: {},
      file: undefined,
    });
    assert(resolved.ok, resolved.ok ? '' : resolved.message);
    return resolved.value;
  }

  private plan(): number[] {
    const { dropRate, duplicateRate, jitterMs } = this.faults;
    const random = this.random;
    if (dropRate > 0 && random.nextFloat() < dropRate) return [];
    const copies = duplicateRate > 0 && random.nextFloat() < duplicateRate ? 2 : 1;
    const delays: number[] = [];
    for (let copy = 0; copy < copies; copy++) delays.push(baseDelayMs + (jitterMs > 0 ? random.nextFloat() * jitterMs : 0));
    return delays;
  }
}

/** `left`: the node left the cluster, handed everything off and stopped for good. */
export type SimNodeState = 'down' | 'starting' | 'up' | 'left';

/** One simulated node: its disk outlives its incarnations (process lives). */
export class SimNode {
  private incarnation: Incarnation | undefined;
  private running: RingkvNode | undefined;
  private messenger: MemoryMessenger | undefined;
  private incarnations = 0;
  state: SimNodeState = 'down';

  constructor(
    private readonly cluster: SimCluster,
    readonly nodeId: string,
    readonly index: number,
    readonly clockSkewMs: number,
    /** Replaced by `wipe`. */
    public disk: MemoryFileSystem,
  ) {}

  /** Whether this start founds the cluster: the first start of the first node. */
  get founds(): boolean {
    return this.index === 1 && this.incarnations <= 1 && !this.wiped;
  }

  private wiped = false;

  /** The running node, when up. */
  get ringkv(): RingkvNode | undefined {
    return this.state === 'up' ? this.running : undefined;
  }

  /** What a client connected to this node reads and writes through; undefined when it is not up. */
  get store(): KeyValueStore | undefined {
    return this.ringkv?.cluster.store;
  }

  /** Starts a new process on this node's disk; resolves when it is up or failed to start. */
  start(): Promise<void> {
    assert(this.state === 'down', () => `${this.nodeId} is already ${this.state}`);
    const { scheduler, trace } = this.cluster;
    this.incarnations += 1;
    const incarnation = new Incarnation(this.nodeId, this.incarnations);
    this.incarnation = incarnation;
    this.state = 'starting';
    const seeds = this.cluster.options.random.nextUint32();
    const world = {
      clock: scheduler.clock(incarnation, () => this.clockSkewMs),
      random: new SeededRandom(seeds),
      // Half the incarnations read cold blocks synchronously, half in the "pool" (from the seed
      // already drawn, so schedules of earlier seeds stay as they were).
      fs: incarnationDisk(this.disk, incarnation, scheduler, { syncMs: () => 2 + this.cluster.options.random.nextFloat() * 18 }, { syncReads: (seeds & 1) === 1 }),
      logger: traceLogger(trace, this.nodeId),
      clientApis: false,
      yieldNow: () => new Promise<void>((resolve) => scheduler.clock(incarnation).setTimer(0, resolve)),
      onLeft: () => this.leftCluster(incarnation),
      createMessenger: (identity: { nodeId: string; host: string; port: number }) => {
        const messenger = this.cluster.network.messenger({ nodeId: identity.nodeId, address: { host: identity.host, port: identity.port } });
        if (incarnation.alive) this.messenger = messenger;
        return messenger;
      },
    };
    trace.add('sim', `start ${this.nodeId} (incarnation ${incarnation.number})`);
    return RingkvNode.start(this.cluster.config(this), world, (reason) => {
      trace.add('sim', `${this.nodeId} escalated (${JSON.stringify(reason)}): the process stops`);
      if (!incarnation.alive) return;
      this.crash(false, 'escalation');
      // What `ringkv dev` does one level up: a node process that stopped is started again.
      scheduler.schedule(processRestartDelayMs, () => {
        if (this.state === 'down' && this.incarnation === incarnation) void this.start();
      });
    }).then(
      (node) => {
        if (!incarnation.alive) return;
        this.running = node;
        this.state = 'up';
        trace.add('sim', `${this.nodeId} is up`);
      },
      (error: unknown) => {
        if (!incarnation.alive) return;
        trace.add('sim', `${this.nodeId} failed to start: ${String(error)}`);
        this.crash(false, 'start failure');
      },
    );
  }

  /** The node handed everything off after a leave: it stops cleanly and is gone for good. */
  private leftCluster(incarnation: Incarnation): void {
    if (!incarnation.alive || this.state !== 'up') return;
    const running = this.running;
    this.state = 'left';
    this.running = undefined;
    this.cluster.trace.add('sim', `${this.nodeId} left the cluster; stopping for good`);
    void running?.stop().finally(() => (incarnation.alive = false));
  }

  /** The disk is lost: the node crashes and comes back (when started) on an empty disk. */
  wipe(): void {
    this.crash(false, 'disk lost');
    this.disk = this.cluster.freshDisk();
    this.wiped = true;
  }

  /**
   * SIGSTOP: the process keeps its state but runs nothing: its timers and disk completions wait,
   * messages to and from it wait in the network, and its clients' requests hang. `resume`
   * (SIGCONT) lets all of it happen, late. False when the node is not up.
   */
  pause(): boolean {
    const incarnation = this.incarnation;
    if (incarnation === undefined || !incarnation.alive || this.state !== 'up' || incarnation.paused) return false;
    incarnation.paused = true;
    this.cluster.network.pause(this.nodeId);
    this.cluster.trace.add('sim', `pause (SIGSTOP): ${this.nodeId}`);
    return true;
  }

  resume(): void {
    const incarnation = this.incarnation;
    if (incarnation === undefined || !incarnation.paused) return;
    incarnation.paused = false;
    this.cluster.network.resume(this.nodeId);
    this.cluster.scheduler.release(incarnation);
    this.cluster.trace.add('sim', `resume (SIGCONT): ${this.nodeId}`);
  }

  /**
   * kill -9 / power loss: the process state is gone, in-flight messages to and from it are lost,
   * and the disk keeps only what was synced (with `tear`, the last unsynced write may survive
   * as a torn prefix).
   */
  crash(tear: boolean, why = 'crash'): void {
    const incarnation = this.incarnation;
    if (incarnation === undefined || !incarnation.alive) return;
    // A stopped process can be killed too: what waited for it is lost with it.
    if (incarnation.paused) this.resume();
    incarnation.alive = false;
    this.state = 'down';
    this.running = undefined;
    void this.messenger?.close();
    this.messenger = undefined;
    this.disk.crash({ tearLastWrite: tear });
    this.cluster.trace.add('sim', `${why}: ${this.nodeId} (incarnation ${incarnation.number})${tear ? ', last write torn' : ''}`);
  }
}
