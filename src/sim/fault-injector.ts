import type { Random } from '../core/random.js';
import type { SimCluster, SimNode } from './sim-cluster.js';
import type { Trace } from './sim-world.js';

/**
 * Faults while the clients run, every 0.5-3.5 s of virtual time: a node crashes (its last write
 * torn half the time) and restarts later, sometimes only after the others marked it down; a node is cut off from the others (both ways or one
 * way) and healed later; a node is stopped (SIGSTOP) and continued later; the network turns lossy (drops, duplicates, reordering) for a while;
 * a node's disk fills up for a few writes; a node's disk is lost; a node joins or leaves; now and
 * then the whole cluster loses power at once. At most `faultyMax` nodes are down, cut off or
 * leaving.
 */
export class FaultInjector {
  private stopped = false;
  private readonly faulty = new Set<string>();
  private membershipChanges = 0;
  private disksLost = 0;
  private readonly initialMembers: number;

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: Random,
    private readonly trace: Trace,
    private readonly faultyMax: number,
    private readonly counts: Record<string, number>,
    /** Runs an action at the moment the next write is acknowledged to a client (the workload's). */
    private readonly afterNextAck?: (action: () => void) => void,
    /** Pauses take a share of the partitions' rolls, so without them a seed's schedule is as before. */
    private readonly pauses = true,
  ) {
    this.initialMembers = cluster.members.length;
  }

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
    const healthy = this.cluster.members.filter((node) => node.state === 'up' && !this.faulty.has(node.nodeId));
    return healthy.length === 0 ? undefined : healthy[this.random.nextInt(healthy.length)];
  }

  private inject(): void {
    const roll = this.random.nextFloat();
    const faultyMembers = this.cluster.members.filter((node) => this.faulty.has(node.nodeId)).length;
    const room = faultyMembers < this.faultyMax;
    if (roll < 0.14 && room) this.crash();
    else if (roll < 0.26 && room) this.outage();
    else if (roll < (this.pauses ? 0.38 : 0.45) && room) this.partition();
    else if (roll < 0.45 && room) this.pause();
    else if (roll < 0.51 && room) this.changeMembership();
    else if (roll < 0.55 && room) this.wipe();
    else if (roll < 0.74) this.weather();
    else if (roll < 0.84) this.diskFull();
    // A power loss needs every node up (a partitioned one loses power too), not only healthy
    // ones: with long outages and partitions about, that would make it rare.
    else if (this.cluster.members.every((node) => node.state === 'up')) this.powerLoss();
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

  /**
   * A node crashes and stays down for 8-20 s: long enough for the others to mark it down, so
   * writes for it go to fallbacks as hints, which come back to it once it is up again.
   */
  private outage(): void {
    const node = this.pickHealthy();
    if (node === undefined) return;
    this.count('outage');
    this.faulty.add(node.nodeId);
    node.crash(this.random.nextFloat() < 0.5, 'outage');
    this.later(8000 + this.random.nextFloat() * 12_000, () => {
      if (node.state === 'down') void node.start();
      this.faulty.delete(node.nodeId);
    });
  }

  /**
   * A node is stopped (SIGSTOP) for 2-15 s, long enough for the others to mark it down now and
   * then, and continued: it wakes up to stale requests, late timers and a cluster that moved on.
   */
  private pause(): void {
    const node = this.pickHealthy();
    if (node === undefined || !node.pause()) return;
    this.count('pause');
    this.faulty.add(node.nodeId);
    this.later(2000 + this.random.nextFloat() * 13_000, () => {
      node.resume();
      this.faulty.delete(node.nodeId);
    });
  }

  /**
   * The cluster grows or shrinks by one node, at most twice a run and within one node of its
   * starting size: a new node joins (partitions stream to it), or a member leaves (it hands
   * everything off and stops for good).
   */
  private changeMembership(): void {
    if (this.membershipChanges >= 2) return;
    const members = this.cluster.members.length;
    const grow = members < this.initialMembers || (members === this.initialMembers && this.random.nextFloat() < 0.5);
    this.membershipChanges += 1;
    if (grow) {
      const node = this.cluster.addNode();
      this.count('join');
      this.trace.add('sim', `join: ${node.nodeId} starts and joins the cluster`);
      void node.start();
      return;
    }
    const node = this.pickHealthy();
    if (node === undefined) return;
    const admin = node.ringkv?.cluster.adminApi();
    if (admin === undefined) return;
    this.count('leave');
    this.faulty.add(node.nodeId); // no other fault on it while it hands off
    this.trace.add('sim', `leave: ${node.nodeId} asked to leave the cluster`);
    void admin.leave(undefined).then((result) => {
      if (!result.ok) this.trace.add('sim', `leave of ${node.nodeId} refused: ${result.message}`);
    });
  }

  /**
   * A node's disk is lost: it crashes and comes back 1-5 s later on an empty disk, joining again.
   * Once a run: two lost disks can hold both replicas of an N=2 write, which nothing can save.
   */
  private wipe(): void {
    if (this.disksLost >= 1) return;
    const node = this.pickHealthy();
    if (node === undefined) return;
    this.disksLost += 1;
    this.count('disk lost');
    this.faulty.add(node.nodeId);
    node.wipe();
    this.later(1000 + this.random.nextFloat() * 4000, () => {
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
    const others = this.cluster.members.filter((other) => other !== node);
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

  /**
   * Every node crashes at once; half the time at the moment the next write is acknowledged, the
   * worst moment for a replica that acknowledges before its data is durable.
   */
  private powerLoss(): void {
    if (this.afterNextAck !== undefined && this.random.nextFloat() < 0.5) {
      this.afterNextAck(() => {
        if (!this.stopped && this.cluster.members.every((node) => node.state === 'up')) this.cutPower();
      });
      return;
    }
    this.cutPower();
  }

  private cutPower(): void {
    this.count('power loss');
    this.trace.add('sim', 'power loss: every node crashes at once');
    for (const node of this.cluster.members) {
      this.faulty.add(node.nodeId);
      node.crash(this.random.nextFloat() < 0.5, 'power loss');
    }
    this.later(500 + this.random.nextFloat() * 2500, () => {
      for (const node of this.cluster.members) {
        if (node.state === 'down') void node.start();
        this.faulty.delete(node.nodeId);
      }
    });
  }
}
