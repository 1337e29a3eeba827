import type { AdminApi } from '../api/http-server.js';
import { join, values } from '../core/dvv.js';
import { ErrorCode, failure, success, type Failure } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { MessageBody, PeerAddress, PeerMessenger } from '../net/peer-messenger.js';
import { createTcpMessenger } from '../net/tcp-messenger.js';
import type { Clock } from '../world/clock.js';
import type { FileSystem } from '../world/file-system.js';
import { ClusterMembership } from './cluster-membership.js';
import type { Config } from './config.js';
import { Coordinator, type NodeContext } from './coordinator.js';
import { handoffMessages, HintedHandoff, receiveHandedOffObjects, type HandoffReport } from './hinted-handoff.js';
import { TransferService, transferMessages, type TransferReport } from './transfers.js';
import { AntiEntropy } from './anti-entropy.js';
import type { MetricsSource } from './metrics.js';
import { NamespaceRegistry, validateSettings } from './namespace-registry.js';
import type { KeyValueStore, KvService } from './kv-service.js';
import type { Logger } from './logger.js';
import { decodeObject, encodeContext } from './stored-object.js';

export interface ClusterWorld {
  readonly clock: Clock;
  readonly random: Random;
  readonly fs: FileSystem;
  readonly logger: Logger;
  /** The node's messenger on its peer address; absent: TCP (the simulator passes its network). */
  readonly createMessenger?: ((identity: { readonly nodeId: string; readonly host: string; readonly port: number }) => PeerMessenger) | undefined;
  /** Called once this node left the cluster and handed everything off (the process then exits). */
  readonly onLeft?: (() => void) | undefined;
}

/** Parses the --join list: HOST:PORT[,HOST:PORT...] (validated by the config schema). */
export function parseSeeds(join: string): PeerAddress[] {
  if (join === '') return [];
  return join.split(',').map((entry) => {
    const at = entry.lastIndexOf(':');
    return { host: entry.slice(0, at), port: Number(entry.slice(at + 1)) };
  });
}

/**
 * The node's part in the cluster, as one supervised service: the peer messenger on
 * --peer-port, the membership (gossip, failure detection, claim) and the coordinator. While it
 * is not running, `store` answers UNAVAILABLE rather than serve from this node alone.
 */
export class ClusterService {
  private messenger: PeerMessenger | undefined;
  private membershipValue: ClusterMembership | undefined;
  private coordinator: Coordinator | undefined;
  private namespaces: NamespaceRegistry | undefined;
  private handoff: HintedHandoff | undefined;
  private transfers: TransferService | undefined;
  private antiEntropy: AntiEntropy | undefined;
  /** What the client APIs read and write through; stable across restarts of this service. */
  readonly store: KeyValueStore;

  constructor(
    private readonly config: Config,
    private readonly nodeId: string,
    private readonly local: KvService,
    private readonly world: ClusterWorld,
  ) {
    const unavailable = (): Failure => failure(ErrorCode.unavailable, 'the cluster service of this node is not running (starting or restarting)');
    this.store = {
      get: (namespace, key, options) => this.coordinator?.get(namespace, key, options) ?? unavailable(),
      getNewest: (namespace, key, options) => this.coordinator?.getNewest(namespace, key, options) ?? unavailable(),
      put: (namespace, key, value, options) => this.coordinator?.put(namespace, key, value, options) ?? unavailable(),
      delete: (namespace, key, options) => this.coordinator?.delete(namespace, key, options) ?? unavailable(),
      keys: async (namespace, options) => (await this.coordinator?.keys(namespace, options)) ?? unavailable(),
    };
  }

  get membership(): ClusterMembership | undefined {
    return this.membershipValue;
  }

  get peerPort(): number | undefined {
    return this.messenger?.self.address.port;
  }

  async start(): Promise<void> {
    const { config, world } = this;
    const identity = { nodeId: this.nodeId, host: config.host, port: config.peerPort };
    const messenger = world.createMessenger?.(identity) ?? createTcpMessenger({ ...identity, clock: world.clock, logger: world.logger });
    await messenger.start();
    this.messenger = messenger;
    try {
      const namespaces = await NamespaceRegistry.open(world.fs, config.dataDir, this.nodeId);
      const rider = {
        type: 'namespaces.gossip',
        payload: () => namespaces.list(),
        receive: (body: unknown) => {
          if (namespaces.merge(body)) namespaces.persist().catch((error: unknown) => world.logger.error({ err: error }, 'keeping namespace settings failed'));
        },
      };
      const membership = await ClusterMembership.open({
        riders: [rider],
        self: { nodeId: this.nodeId, address: messenger.self.address, datacenter: config.datacenter, weight: config.weight },
        partitionCount: config.partitionCount,
        nVal: config.nVal,
        seeds: parseSeeds(config.join),
        gossipIntervalMs: config.gossipIntervalMs,
        phiThreshold: config.phiThreshold,
        messenger,
        clock: world.clock,
        random: world.random,
        fs: world.fs,
        logger: world.logger,
        dataDir: config.dataDir,
      });
      const node: NodeContext = { self: this.nodeId, local: this.local, membership, messenger, clock: world.clock, logger: world.logger };
      const primaries: { of?: Coordinator['primariesOf'] } = {};
      const forwarding: { targets?: (namespace: string, key: Uint8Array) => readonly string[] } = {};
      const handoff = await HintedHandoff.open({
        ...node,
        primariesOf: (namespace, key) => primaries.of?.(namespace, key) ?? [],
        storageBytesMax: config.hintStorageBytesMax,
        bytesPerSecond: config.handoffBytesPerSecond,
        intervalMs: config.gossipIntervalMs,
        requestTimeoutMs: config.requestTimeoutMs,
      });
      const coordinator = new Coordinator({
        ...node,
        defaults: { n: config.nVal, r: config.r, w: config.w },
        namespaces,
        requestTimeoutMs: config.requestTimeoutMs,
        hints: handoff,
        hintWindowMs: config.hintWindowMs,
        forwardTargets: (namespace, key) => forwarding.targets?.(namespace, key) ?? [],
      });
      primaries.of = (namespace, key) => coordinator.primariesOf(namespace, key);
      const transfers = await TransferService.open({
        ...node,
        fs: world.fs,
        dataDir: config.dataDir,
        replicaCount: () => Math.max(config.nVal, ...namespaces.list().map((entry) => entry.n)),
        transferLimit: config.transferLimit,
        bytesPerSecond: config.handoffBytesPerSecond,
        intervalMs: config.gossipIntervalMs,
        requestTimeoutMs: config.requestTimeoutMs,
        pendingHints: () => handoff.report().pendingHints,
        hintTargets: () => handoff.targets(),
        onLeft: world.onLeft,
      });
      forwarding.targets = (namespace, key) => transfers.forwardTargets(namespace, key);
      const antiEntropy = new AntiEntropy({
        ...node,
        replicaCount: () => Math.max(config.nVal, ...namespaces.list().map((entry) => entry.n)),
        primariesOf: (namespace, key) => coordinator.primariesOf(namespace, key),
        intervalMs: config.antiEntropyIntervalMs,
        bytesPerSecond: config.antiEntropyBytesPerSecond,
        requestTimeoutMs: config.requestTimeoutMs,
        tombstoneGraceMs: config.tombstoneGraceMs,
        handoffBusy: () => transfers.unfinished > 0 || handoff.report().pendingHints > 0,
      });
      membership.onRingChange((previous, current) => {
        transfers.ringChanged(previous, current);
        antiEntropy.ringChanged(previous, current);
      });
      messenger.handle(transferMessages.complete, (body) => ({ accepted: antiEntropy.transferReceived((body as { partition: number }).partition) }));
      messenger.handle(transferMessages.pending, (body) => {
        const { target, partitions } = body as { target: unknown; partitions: unknown };
        if (typeof target !== 'string' || !Array.isArray(partitions) || !partitions.every((partition) => Number.isInteger(partition))) throw new Error('a pending-transfers request names a target and partitions');
        return transfers.pendingTo(target, partitions as number[]) as unknown as MessageBody;
      });
      receiveHandedOffObjects(messenger, this.local, (namespace, key) => coordinator.primariesOf(namespace, key).includes(this.nodeId));
      messenger.handle(handoffMessages.report, () => this.handoffReport() as unknown as MessageBody);
      this.coordinator = coordinator;
      this.namespaces = namespaces;
      membership.start();
      handoff.start();
      transfers.start();
      antiEntropy.start();
      this.handoff = handoff;
      this.transfers = transfers;
      this.antiEntropy = antiEntropy;
      this.membershipValue = membership;
    } catch (error) {
      await messenger.close();
      this.messenger = undefined;
      throw error;
    }
  }

  /** The /admin routes of the HTTP API. */
  adminApi(): AdminApi {
    const notRunning = (): Failure => failure(ErrorCode.unavailable, 'the cluster service of this node is not running');
    return {
      status: () => {
        const membership = this.membershipValue;
        if (membership === undefined) return notRunning();
        const ring = membership.ring;
        return success({
          nodeId: this.nodeId,
          ring: { partitionCount: ring.partitionCount, epoch: ring.epoch, claimant: ring.claimant },
          members: membership.report(),
          handoff: this.handoff?.report() ?? null,
          antiEntropy: this.antiEntropySummary(),
        });
      },
      ring: () => {
        const ring = this.membershipValue?.ring;
        if (ring === undefined) return notRunning();
        return success({ partitionCount: ring.partitionCount, epoch: ring.epoch, claimant: ring.claimant, owners: [...ring.owners] });
      },
      join: async (seed) => {
        const membership = this.membershipValue;
        if (membership === undefined) return notRunning();
        try {
          await membership.joinThrough(parseSeeds(seed));
          return success(undefined);
        } catch (error) {
          return failure(ErrorCode.unavailable, (error as Error).message);
        }
      },
      namespaces: () => {
        const registry = this.namespaces;
        if (registry === undefined) return notRunning();
        return success({ defaults: { n: this.config.nVal, r: this.config.r, w: this.config.w, conflictMode: 'siblings' }, namespaces: registry.list() });
      },
      setNamespace: async (name, input) => {
        const registry = this.namespaces;
        if (registry === undefined) return notRunning();
        const settings = validateSettings(input);
        if (!settings.ok) return settings;
        return registry.set(name, settings.value);
      },
      transfers: async () => {
        if (this.membershipValue === undefined) return notRunning();
        return success(await this.clusterHandoff());
      },
      antiEntropy: () => {
        const report = this.antiEntropy?.report();
        return report === undefined ? notRunning() : success({ ...report });
      },
      replica: async (namespace, key) => {
        const read = await this.local.readObject(namespace, key);
        if (!read.ok || read.value === undefined) return read.ok ? success(undefined) : read;
        const object = decodeObject(read.value);
        const siblings = values(object).map((sibling) =>
          sibling.value === null ? { deleted: true, writtenAtMs: sibling.writtenAtMs } : { value: Buffer.from(sibling.value).toString('utf8'), writtenAtMs: sibling.writtenAtMs },
        );
        return success({ nodeId: this.nodeId, siblings, context: encodeContext(join(object)), bytes: read.value.length });
      },
      leave: async (nodeId) => {
        const membership = this.membershipValue;
        if (membership === undefined) return notRunning();
        const leaving = nodeId ?? this.nodeId;
        if (membership.current.members.every((member) => member.nodeId !== leaving)) return failure(ErrorCode.notFound, `no member ${leaving} in this cluster`);
        await membership.leave(leaving);
        return success(undefined);
      },
    };
  }

  /** What GET /metrics reads at each scrape. */
  metricsSource(): MetricsSource {
    return {
      antiEntropy: () => this.antiEntropy?.report() ?? null,
      hints: () => this.handoff?.report() ?? null,
      transfers: () => this.transfers?.report() ?? null,
    };
  }

  /** Anti-entropy counters for /admin/status, without the per-partition roots. */
  private antiEntropySummary(): Record<string, unknown> | null {
    const report = this.antiEntropy?.report();
    if (report === undefined) return null;
    const { trees, ...counters } = report;
    return { ...counters, trees: trees.length, treesBuilt: trees.filter((tree) => tree.built).length };
  }

  /** This node's handoff: partition transfers and hints. */
  handoffReport(): { transfers: TransferReport | null; hints: HandoffReport | null } {
    return { transfers: this.transfers?.report() ?? null, hints: this.handoff?.report() ?? null };
  }

  /** Every member's handoff report, as `ringkv transfers` shows it; members that do not answer are listed. */
  private async clusterHandoff(): Promise<{ nodes: { nodeId: string; transfers: TransferReport | null; hints: HandoffReport | null }[]; unreachable: string[] }> {
    const membership = this.membershipValue;
    const messenger = this.messenger;
    if (membership === undefined || messenger === undefined) return { nodes: [], unreachable: [] };
    const members = membership.current.members.filter((member) => member.status !== 'removed' || member.nodeId === this.nodeId);
    const answers = await Promise.all(
      members.map(async (member) => {
        if (member.nodeId === this.nodeId) return { nodeId: member.nodeId, ...this.handoffReport() };
        try {
          const reply = (await messenger.request(member.address, handoffMessages.report, null, { timeoutMs: 2000 })) as ReturnType<ClusterService['handoffReport']>;
          return { nodeId: member.nodeId, ...reply };
        } catch {
          return { nodeId: member.nodeId, unreachable: true as const };
        }
      }),
    );
    return {
      nodes: answers.flatMap((answer) => ('unreachable' in answer ? [] : [answer])),
      unreachable: answers.flatMap((answer) => ('unreachable' in answer ? [answer.nodeId] : [])),
    };
  }

  async stop(): Promise<void> {
    // Every service stops scheduling work first; then the messenger closes, so a request still
    // waiting on a peer fails at once (a batch or hint not confirmed is sent again after the
    // restart) instead of holding the stop for up to a request timeout; then local work ends.
    const stopping = [this.antiEntropy?.stop(), this.transfers?.stop(), this.handoff?.stop()];
    this.membershipValue?.stop();
    await this.messenger?.close();
    await Promise.all(stopping);
    this.antiEntropy = undefined;
    this.transfers = undefined;
    this.handoff = undefined;
    this.coordinator = undefined;
    this.membershipValue = undefined;
    this.messenger = undefined;
  }
}
