import type { Random } from '../core/random.js';
import type { SimCluster, SimNode } from './sim-cluster.js';
import type { Trace } from './sim-world.js';

/**
 * Faults while the clients run, every 0.5-3.5 s of virtual time: a node crashes (its last write
 * torn half the time) and restarts later; a node is cut off from the others (both ways or one
 * way) and healed later; the network turns lossy (drops, duplicates, reordering) for a while;
 * a node's disk fills up for a few writes; now and then the whole cluster loses power at once. At most `faultyMax` nodes are down or cut off.
 */
export class FaultInjector {
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
