import { join as joinPath } from 'node:path';
import { assert } from '../core/assert.js';
import { claim } from '../core/claim.js';
import { mark } from '../core/simulation-hooks.js';
import {
  advanceStatus,
  bumpHeartbeat,
  claimant,
  createView,
  findMember,
  join,
  leave,
  markRemoved,
  memberState,
  mergeViews,
  owningMembers,
  restartMember,
  setRing,
  viewInvariants,
  type Member,
  type MemberState,
  type MembershipView,
  type NewMember,
} from '../core/membership.js';
import { createDetector, heartbeat, isAvailable, phi, type PhiAccrualState } from '../core/phi-accrual.js';
import type { Random } from '../core/random.js';
import type { Ring } from '../core/ring-state.js';
import type { MessageBody, PeerAddress, PeerMessenger } from '../net/peer-messenger.js';
import { sleep, type Clock, type TimerHandle } from '../world/clock.js';
import { writeFileAtomic, type FileSystem } from '../world/file-system.js';
import type { Logger } from './logger.js';

export interface ClusterMembershipOptions {
  readonly self: NewMember;
  readonly partitionCount: number;
  /** The spacing claim aims for (Riak's target_n_val): the default N of the cluster. */
  readonly nVal: number;
  readonly seeds: readonly PeerAddress[];
  readonly gossipIntervalMs: number;
  readonly phiThreshold: number;
  readonly messenger: PeerMessenger;
  readonly clock: Clock;
  readonly random: Random;
  readonly fs: FileSystem;
  readonly dataDir: string;
  readonly logger: Logger;
  /** Other state that rides on gossip rounds (namespace settings): pushed and pulled with the view. */
  readonly riders?: readonly GossipRider[];
}

/** A CRDT spread by the membership's gossip rounds, to the same random peer, push-pull. */
export interface GossipRider {
  readonly type: string;
  payload(): unknown;
  receive(body: unknown): void;
}

/** What a member looks like from here: for status pages and `ringkv status`. */
export interface MemberReport {
  readonly nodeId: string;
  readonly status: Member['status'];
  readonly state: MemberState;
  readonly address: string;
  readonly datacenter: string;
  readonly weight: number;
  readonly partitions: number;
  readonly phi: number | null;
  readonly self: boolean;
}

const viewFile = 'membership.json';
/** Attempts to join through the seeds at start, `joinRetryDelayMs` apart. */
const joinAttemptsMax = 15;
const joinRetryDelayMs = 1000;
/** Peer message types of the membership protocol. */
export const membershipMessages = { gossip: 'membership.gossip', join: 'membership.join', heartbeat: 'membership.heartbeat' } as const;

/**
 * The membership of one node (Dynamo §4.8): its view of who is in the cluster and the ring,
 * spread by push-pull gossip to a random peer every interval, liveness judged by a phi-accrual
 * detector per peer fed by heartbeats (sent directly to every member each interval, so the
 * detector sees the real interval). The claimant — the lowest valid node believed up —
 * computes new rings when members join or leave. The view is kept in `<dataDir>/membership.json`
 * so a restarted node rejoins with what it knew.
 */
export class ClusterMembership {
  private view: MembershipView;
  private readonly detectors = new Map<string, { detector: PhiAccrualState; heartbeat: number }>();
  private timer: TimerHandle | undefined;
  private persistedKey = '';
  private previous: Ring | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private readonly startedAtMs: number;
  private readonly ringListeners: ((previous: Ring, current: Ring) => void)[] = [];
  /** The members, weights and datacenters of the last claim this node ran as claimant. */
  private claimedInput = '';

  private constructor(
    private readonly options: ClusterMembershipOptions,
    view: MembershipView,
  ) {
    this.view = view;
    this.startedAtMs = options.clock.nowMs();
  }

  /** Loads the kept view, or founds a cluster (no seeds), or joins one through a seed. */
  static async open(options: ClusterMembershipOptions): Promise<ClusterMembership> {
    const kept = await loadView(options.fs, joinPath(options.dataDir, viewFile));
    const self = options.self.nodeId;
    const founder = (): MembershipView => {
      const view = createView(options.self, options.partitionCount);
      // Epoch 1, claimed by the founder: a fresh node's epoch-0 ring can never win a merge.
      return setRing(view, { ...view.ring, epoch: 1, claimant: self });
    };
    const resumed = kept !== undefined && findMember(kept, self) !== undefined;
    const { nodeId: _nodeId, ...attributes } = options.self;
    const view = resumed ? restartMember(kept, self, attributes, heartbeatFloor(options.clock)) : founder();
    const membership = new ClusterMembership(options, view);
    membership.registerHandlers();
    if (kept === undefined && options.seeds.length > 0) await membership.joinWithRetries(options.seeds);
    await membership.persist();
    return membership;
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  get ring(): Ring {
    return this.view.ring;
  }

  /**
   * The ring before the last change this node saw. Until data moves with the ring (handoff,
   * the next piece of work), the previous owners still hold what was written before the change,
   * so coordinators read from them too (see Coordinator.read).
   */
  get previousRing(): Ring | undefined {
    return this.previous;
  }

  /** Calls `listener` on every ring change this node sees, with the ring before and after. */
  onRingChange(listener: (previous: Ring, current: Ring) => void): void {
    this.ringListeners.push(listener);
  }

  private ringChanged(previous: Ring): void {
    for (const listener of this.ringListeners) listener(previous, this.view.ring);
  }

  get current(): MembershipView {
    return this.view;
  }

  /** Whether `nodeId` is believed up: always for this node; for others, phi under the threshold. */
  isUp = (nodeId: string): boolean => {
    if (nodeId === this.options.self.nodeId) return true;
    const entry = this.detectors.get(nodeId);
    if (entry === undefined) return this.inStartGrace();
    return isAvailable(entry.detector, this.options.clock.nowMs());
  };

  /** How long `nodeId` has been silent: since its last heartbeat seen here, or since this node started. */
  downForMs(nodeId: string): number {
    if (nodeId === this.options.self.nodeId) return 0;
    const last = this.detectors.get(nodeId)?.detector.lastArrivalMs ?? this.startedAtMs;
    return this.options.clock.nowMs() - last;
  }

  addressOf(nodeId: string): PeerAddress | undefined {
    return findMember(this.view, nodeId)?.address;
  }

  /** Asks the cluster, through any of `seeds`, to take this node in; adopts the cluster's view. */
  async joinThrough(seeds: readonly PeerAddress[]): Promise<void> {
    let lastError: unknown;
    for (const seed of seeds) {
      try {
        const reply = (await this.options.messenger.request(seed, membershipMessages.join, toWire(this.options.self), { timeoutMs: 5000 })) as { view: unknown; previous: Ring | null };
        // The cluster's view (which now holds us as joining) replaces ours wholesale: our founder
        // ring must not compete with the cluster's. Its previous ring tells where data still is.
        this.view = fromWire(reply.view);
        // A node id the cluster knew (a restart with a wiped disk) comes back with its address now.
        const { nodeId: self, ...attributes } = this.options.self;
        if (findMember(this.view, self) !== undefined) this.view = restartMember(this.view, self, attributes, heartbeatFloor(this.options.clock));
        this.previous = reply.previous ?? undefined;
        this.options.logger.info({ seed: `${seed.host}:${seed.port}`, members: this.view.members.length }, 'joined the cluster');
        await this.persist();
        return;
      } catch (error) {
        lastError = error;
        this.options.logger.warn({ seed: `${seed.host}:${seed.port}`, err: error }, 'join through seed failed');
      }
    }
    throw new Error(`could not join through any seed (${seeds.map((seed) => `${seed.host}:${seed.port}`).join(', ')}): ${String(lastError)}`);
  }

  /** Seeds may still be starting (a dev cluster starts all nodes at once): try for a while. */
  private async joinWithRetries(seeds: readonly PeerAddress[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.joinThrough(seeds);
      } catch (error) {
        if (attempt >= joinAttemptsMax) throw error;
        await sleep(this.options.clock, joinRetryDelayMs);
      }
    }
  }

  /** Marks `nodeId` as leaving; the claimant moves its partitions to the others. */
  async leave(nodeId: string): Promise<void> {
    assert(findMember(this.view, nodeId) !== undefined, () => `unknown member ${nodeId}`);
    this.view = leave(this.view, nodeId);
    await this.persist();
    this.gossipToAll();
  }

  report(): MemberReport[] {
    const owned = new Map<string, number>();
    for (const owner of this.view.ring.owners) owned.set(owner, (owned.get(owner) ?? 0) + 1);
    const now = this.options.clock.nowMs();
    return this.view.members.map((member) => {
      const entry = this.detectors.get(member.nodeId);
      return {
        nodeId: member.nodeId,
        status: member.status,
        state: memberState(member, this.isUp),
        address: `${member.address.host}:${member.address.port}`,
        datacenter: member.datacenter,
        weight: member.weight,
        partitions: owned.get(member.nodeId) ?? 0,
        phi: entry === undefined ? null : Math.round(phi(entry.detector, now) * 100) / 100,
        self: member.nodeId === this.options.self.nodeId,
      };
    });
  }

  private inStartGrace(): boolean {
    return this.options.clock.nowMs() - this.startedAtMs < 3 * this.options.gossipIntervalMs;
  }

  private registerHandlers(): void {
    const { messenger } = this.options;
    for (const rider of this.options.riders ?? []) {
      messenger.handle(rider.type, (body) => {
        rider.receive(body);
        return rider.payload() as MessageBody;
      });
    }
    messenger.handle(membershipMessages.gossip, (body) => {
      this.receive(fromWire(body));
      return toWire(this.view);
    });
    messenger.handle(membershipMessages.heartbeat, (body) => {
      const { nodeId, heartbeat: beat } = body as { nodeId: string; heartbeat: number };
      this.observeHeartbeat(nodeId, beat);
      return null;
    });
    messenger.handle(membershipMessages.join, async (body) => {
      const node = body as NewMember;
      this.view = join(this.view, node);
      this.options.logger.info({ nodeId: node.nodeId, address: `${node.address.host}:${node.address.port}` }, 'node joining');
      // The claimant takes the joiner in at its next round; the joiner then sees the ring change.
      await this.persist();
      return { view: toWire(this.view), previous: this.previous === undefined ? null : toWire(this.previous) } as MessageBody;
    });
  }

  private schedule(): void {
    this.timer = this.options.clock.setTimer(this.options.gossipIntervalMs, () => {
      this.round().catch((error: unknown) => this.options.logger.error({ err: error }, 'gossip round failed'));
      this.schedule();
    });
  }

  /** One gossip round: heartbeat, claimant duty, push-pull with one random peer. */
  private async round(): Promise<void> {
    const self = this.options.self.nodeId;
    this.view = bumpHeartbeat(this.view, self);
    const beat = findMember(this.view, self)?.heartbeat ?? 0;
    const peers = this.view.members.filter((member) => member.nodeId !== self && member.status !== 'removed');
    for (const peer of peers) this.options.messenger.notify(peer.address, membershipMessages.heartbeat, { nodeId: self, heartbeat: beat });
    this.runClaimant();
    const targets = peers.length > 0 ? [peers[this.options.random.nextInt(peers.length)]!.address] : [...this.options.seeds];
    const timeoutMs = this.options.gossipIntervalMs * 2;
    for (const target of targets) {
      try {
        const reply = await this.options.messenger.request(target, membershipMessages.gossip, toWire(this.view), { timeoutMs });
        this.receive(fromWire(reply));
        for (const rider of this.options.riders ?? []) rider.receive(await this.options.messenger.request(target, rider.type, rider.payload() as MessageBody, { timeoutMs }));
      } catch {
        // An unreachable peer is the failure detector's business, not gossip's.
      }
    }
    await this.persist();
  }

  private gossipToAll(): void {
    for (const member of this.view.members) {
      if (member.nodeId === this.options.self.nodeId || member.status === 'removed') continue;
      this.options.messenger.request(member.address, membershipMessages.gossip, toWire(this.view), { timeoutMs: 2000 }).then(
        (reply) => this.receive(fromWire(reply)),
        () => {},
      );
    }
  }

  private receive(incoming: MembershipView): void {
    viewInvariants(incoming);
    for (const member of incoming.members) this.observeHeartbeat(member.nodeId, member.heartbeat);
    const before = this.view.ring;
    this.view = mergeViews(this.view, incoming);
    if (this.view.ring.epoch !== before.epoch) {
      mark('membership.ring-changed');
      this.previous = before;
      this.options.logger.info({ epoch: this.view.ring.epoch, claimant: this.view.ring.claimant }, 'ring changed');
      this.ringChanged(before);
    }
  }

  private observeHeartbeat(nodeId: string, beat: number): void {
    if (nodeId === this.options.self.nodeId) return;
    const known = this.detectors.get(nodeId);
    if (known !== undefined && beat <= known.heartbeat) return;
    const now = this.options.clock.nowMs();
    const detector =
      known?.detector ??
      createDetector({
        thresholdPhi: this.options.phiThreshold,
        firstHeartbeatEstimateMs: this.options.gossipIntervalMs,
        intervalMsMax: this.options.gossipIntervalMs * 10,
      });
    const wasUp = known === undefined || isAvailable(known.detector, now);
    this.detectors.set(nodeId, { detector: heartbeat(detector, now), heartbeat: beat });
    if (!wasUp) {
      mark('membership.peer-up-again');
      this.options.logger.info({ nodeId }, 'node up again');
    }
  }

  /**
   * The claimant's duty: when the set of owning members differs from the ring's owners, compute
   * a new ring; then move members along their life cycle (joining → valid once they own, leaving
   * → exiting once they own nothing, exiting → removed).
   */
  private runClaimant(): void {
    const self = this.options.self.nodeId;
    if (claimant(this.view, this.isUp) !== self) return;
    const owning = owningMembers(this.view).map((member) => ({ nodeId: member.nodeId, weight: member.weight, datacenter: member.datacenter }));
    const ringOwners = new Set(this.view.ring.owners);
    const owningIds = new Set(owning.map((member) => member.nodeId));
    const changed = owning.some((member) => !ringOwners.has(member.nodeId)) || [...ringOwners].some((owner) => !owningIds.has(owner));
    // A weight or datacenter that changed (a node restarted with another --weight) is claimed
    // again too; claim on an unchanged input moves nothing, so no new ring comes of it.
    const input = JSON.stringify(owning.map((member) => [member.nodeId, member.weight, member.datacenter]).sort());
    const reweighed = input !== this.claimedInput;
    this.claimedInput = input;
    const result = (changed || reweighed) && owning.length > 0 ? claim({ ring: this.view.ring, members: owning, nVal: this.options.nVal, claimant: self }) : undefined;
    if (result !== undefined && (changed || result.moves.length > 0)) {
      const before = this.view.ring;
      this.previous = before;
      this.view = setRing(this.view, result.ring);
      this.options.logger.info({ epoch: result.ring.epoch, moves: result.moves.length, violations: result.violations, owners: owning.length }, 'claimed a new ring');
      if (this.view.ring.epoch !== before.epoch) this.ringChanged(before);
    }
    const owners = new Set(this.view.ring.owners);
    for (const member of this.view.members) {
      if (member.status === 'joining' && owners.has(member.nodeId)) this.view = advanceStatus(this.view, member.nodeId, 'valid');
      else if (member.status === 'leaving' && !owners.has(member.nodeId)) this.view = advanceStatus(this.view, member.nodeId, 'exiting');
      else if (member.status === 'exiting') this.view = markRemoved(this.view, member.nodeId);
    }
  }

  /** Keeps the view when anything but heartbeats changed; one write at a time. */
  private persist(): Promise<void> {
    this.persisting = this.persisting.then(() => this.persistNow());
    return this.persisting;
  }

  private async persistNow(): Promise<void> {
    const key = JSON.stringify([this.view.ring.epoch, this.view.members.map((member) => [member.nodeId, member.status, member.incarnation])]);
    if (key === this.persistedKey) return;
    await writeFileAtomic(this.options.fs, joinPath(this.options.dataDir, viewFile), Buffer.from(JSON.stringify(toWire(this.view))));
    this.persistedKey = key;
  }
}

/** Where a restarted node's heartbeat count resumes: its wall clock in ms, beyond any earlier run's count. */
function heartbeatFloor(clock: Clock): number {
  return Math.max(0, Math.floor(clock.wallMs()));
}

/** Views cross the wire and the disk as plain data. */
function toWire(value: MembershipView | NewMember | Ring): unknown {
  return JSON.parse(JSON.stringify(value)) as unknown;
}

function fromWire(body: unknown): MembershipView {
  const view = body as MembershipView;
  assert(typeof view === 'object' && view !== null && Array.isArray(view.members) && typeof view.ring === 'object', 'malformed membership view');
  viewInvariants(view);
  return view;
}

async function loadView(fs: FileSystem, path: string): Promise<MembershipView | undefined> {
  if (!(await fs.exists(path))) return undefined;
  return fromWire(JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')));
}
