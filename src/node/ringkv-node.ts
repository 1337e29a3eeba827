import { createNodeMetrics, type NodeMetrics } from './metrics.js';
import { join } from 'node:path';
import { HttpServer } from '../api/http-server.js';
import type { NodeInfo } from '../api/resp-commands.js';
import { RespServer } from '../api/resp-server.js';
import { assert } from '../core/assert.js';
import { ErrorCode, RingkvError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import type { Engine, EngineStats } from '../storage/engine.js';
import { LsmEngine, type LsmEvent } from '../storage/lsm/lsm-engine.js';
import { MemoryEngine } from '../storage/memory-engine.js';
import type { Clock } from '../world/clock.js';
import type { FileSystem } from '../world/file-system.js';
import type { Config } from './config.js';
import { beginEpoch, endEpochCleanly, renewEpoch, type ActorEpoch } from './actor-epoch.js';
import { ClusterService, type ClusterWorld } from './cluster-service.js';
import { KvService } from './kv-service.js';
import type { Logger } from './logger.js';
import { resolveNodeId } from './node-identity.js';
import { Supervisor, type EscalationReason, type Service, type ServiceContext } from './supervisor.js';
import { ringkvVersion } from './version.js';

/** The world a node runs in: real for `ringkv start`, simulated later (src/sim/). */
export interface NodeWorld {
  readonly clock: Clock;
  readonly random: Random;
  readonly fs: FileSystem;
  readonly logger: Logger;
  /** The node's peer messenger; absent: TCP on --peer-port. */
  readonly createMessenger?: ClusterWorld['createMessenger'] | undefined;
  /**
   * False: no HTTP and RESP listeners; clients call `cluster.store` in process (the simulator,
   * whose virtual clients must not open sockets). Default true.
   */
  readonly clientApis?: boolean | undefined;
  /** How the storage engine's background work yields between slices; absent: setImmediate. */
  readonly yieldNow?: (() => Promise<void>) | undefined;
  /** Called once the node left the cluster and handed everything off; absent: it keeps running. */
  readonly onLeft?: ClusterWorld['onLeft'];
}

/** Longest restart delay of a failing service. */
const restartBackoffMaxMs = 30_000;

/**
 * One ringkv node: the storage engine, the versioned key-value service and the client-facing
 * servers, each a service under an OTP-style supervisor (one-for-one: a failed service is
 * restarted alone; too many restarts in a window shut the node down).
 */
export class RingkvNode {
  private readonly startedAtMs: number;
  private engine: Engine | undefined;
  /** The actor epoch of the running engine incarnation (actor-epoch.ts). */
  private epoch: ActorEpoch | undefined;
  private stopping: Promise<void> | undefined;
  /** Made anew by each start of the http service (a server is started once). */
  private httpServer: HttpServer | undefined;
  readonly resp: RespServer;
  readonly cluster: ClusterService;
  private metrics: NodeMetrics | undefined;
  private readonly supervisor: Supervisor;

  private constructor(
    readonly config: Config,
    readonly nodeId: string,
    private readonly world: NodeWorld,
    readonly kv: KvService,
    onEscalate: (reason: EscalationReason) => void,
    private readonly freshNode: boolean,
  ) {
    this.startedAtMs = world.clock.nowMs();
    this.supervisor = new Supervisor({
      strategy: 'one-for-one',
      restartsMax: config.restartsMax,
      restartWindowMs: config.restartWindowMs,
      backoffInitialMs: config.restartBackoffMs,
      backoffMaxMs: Math.max(config.restartBackoffMs, restartBackoffMaxMs),
      clock: world.clock,
      logger: world.logger,
      onEscalate,
    });
    const logger = world.logger;
    this.cluster = new ClusterService(config, nodeId, kv, world);
    this.resp = new RespServer({
      host: config.host,
      port: config.respPort,
      connectionsMax: config.respConnectionsMax,
      parserLimits: {
        // The largest bulk is a value; keys over their own limit get a clear error from the store.
        bulkBytesMax: Math.max(config.valueBytesMax, config.keyBytesMax),
        argumentsMax: 1024 * 1024,
        inlineBytesMax: 64 * 1024,
      },
      defaultNamespace: config.defaultNamespace,
      commands: { kv: this.cluster.store, node: this.nodeInfo(), defaultNamespace: config.defaultNamespace },
      logger,
    });
  }

  /** The HTTP server of the running incarnation of the http service. */
  get http(): HttpServer {
    assert(this.httpServer !== undefined, 'the http service is not running');
    return this.httpServer;
  }

  private async startHttp(): Promise<void> {
    this.httpServer = new HttpServer({
      host: this.config.host,
      port: this.config.httpPort,
      kv: this.cluster.store,
      logger: this.world.logger,
      clock: this.world.clock,
      valueBytesMax: this.config.valueBytesMax,
      isReady: () => this.stopping === undefined && this.supervisor.status().every((child) => child.state === 'running'),
      status: () => this.status(),
      admin: this.cluster.adminApi(),
      metrics: () => (this.metrics ??= createNodeMetrics(this.nodeId, this.cluster.metricsSource())),
    });
    await this.httpServer.start();
  }

  /** Starts a node; resolves once every service runs. `onEscalate` is told when the node must stop. */
  static async start(config: Config, world: NodeWorld, onEscalate: (reason: EscalationReason) => void): Promise<RingkvNode> {
    // A node id generated on this start belongs to a node that never wrote anything anywhere.
    const freshNode = config.nodeId === undefined && !(await world.fs.exists(join(config.dataDir, 'node-id')));
    const nodeId = await resolveNodeId(world.fs, world.random, config.dataDir, config.nodeId);
    if (!nodeId.ok) throw new RingkvError(nodeId.code, nodeId.message);
    const limits = { keyBytesMax: config.keyBytesMax, valueBytesMax: config.valueBytesMax, siblingsMax: config.siblingsMax };
    const kv = new KvService(undefined, { actor: nodeId.value, clock: world.clock, limits });
    const node = new RingkvNode(config, nodeId.value, world, kv, onEscalate, freshNode);
    kv.onActorRenewal(() => node.renewActor());
    await node.supervisor.start(node.services());
    const listening = world.clientApis !== false;
    world.logger.info(
      {
        nodeId: nodeId.value,
        http: listening ? `http://${config.host}:${node.http.port()}` : null,
        resp: listening ? `${config.host}:${node.resp.port()}` : null,
        peer: `${config.host}:${node.cluster.peerPort ?? config.peerPort}`,
        engine: config.engine,
        dataDir: config.dataDir,
      },
      'ringkv node ready',
    );
    return node;
  }

  /** A new actor epoch while the engine runs (KvService asks after it dropped objects it wrote). */
  private async renewActor(): Promise<string> {
    const current = this.epoch;
    assert(current !== undefined, 'actor renewed with no epoch begun');
    const next = await renewEpoch(this.world.fs, this.config.dataDir, this.nodeId, this.world.random, current);
    this.epoch = next;
    this.world.logger.info({ epoch: next.epoch, actor: next.actor }, 'new versions are written as this actor (objects written under the previous one were handed off)');
    return next.actor;
  }

  /** Stops accepting, finishes in-flight requests, closes the engine. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.supervisor.stop();
    return this.stopping;
  }

  status(): Record<string, unknown> {
    const stats = this.engineStats();
    return {
      nodeId: this.nodeId,
      version: ringkvVersion,
      uptimeMs: Math.round(this.world.clock.nowMs() - this.startedAtMs),
      engine: this.config.engine,
      keys: stats?.keyCount ?? 0,
      dataBytes: stats?.sizeBytes ?? 0,
      storage: this.engine instanceof LsmEngine ? this.lsmDetails(this.engine) : null,
      respConnections: this.resp.connectionCount,
      respCommandsProcessed: this.resp.commandsProcessed,
      peerPort: this.cluster.peerPort ?? null,
      ring: this.cluster.membership === undefined ? null : { partitionCount: this.cluster.membership.ring.partitionCount, epoch: this.cluster.membership.ring.epoch },
      services: this.supervisor.status(),
    };
  }

  private lsmDetails(engine: LsmEngine): unknown {
    try {
      return engine.details();
    } catch {
      return null;
    }
  }

  /** Engine figures, or undefined while the engine is closed (restarting, shutting down). */
  private engineStats(): EngineStats | undefined {
    try {
      return this.engine?.stats();
    } catch {
      return undefined;
    }
  }

  private nodeInfo(): NodeInfo {
    return {
      nodeId: this.nodeId,
      version: ringkvVersion,
      uptimeMs: () => this.world.clock.nowMs() - this.startedAtMs,
      engineKind: this.config.engine,
      keyCount: () => this.engineStats()?.keyCount ?? 0,
      connectedClients: () => this.resp.connectionCount,
      commandsProcessed: () => this.resp.commandsProcessed,
      tcpPort: this.config.respPort,
    };
  }

  /** The configured engine; an LSM engine whose commit log fails fails the service (the supervisor reopens it). */
  private async openEngine(context: ServiceContext): Promise<Engine> {
    const config = this.config;
    if (config.engine === 'memory') return new MemoryEngine();
    const logger = this.world.logger;
    const onEvent = (event: LsmEvent): void => {
      if (event.kind === 'recovered') logger.info(event, 'storage engine opened: commit log replayed');
      else if (event.kind === 'flushed' || event.kind === 'compacted') logger.debug(event, `storage engine ${event.kind}`);
      else if (event.kind === 'background-error') logger.error(event, 'storage engine background work failed; retrying');
      else {
        logger.error(event, 'storage engine commit log failed; reopening the engine');
        context.fail(new RingkvError(ErrorCode.unavailable, event.message));
      }
    };
    return LsmEngine.open({ fs: this.world.fs, clock: this.world.clock, onEvent, yieldNow: this.world.yieldNow }, join(config.dataDir, 'lsm'), {
      syncPolicy: config.sync,
      syncIntervalMs: config.syncIntervalMs,
      memtableSizeBytes: config.memtableSizeBytes,
      blockCacheBytes: config.blockCacheBytes,
      compression: config.compression,
      bloomBitsPerKey: config.bloomBitsPerKey,
    });
  }

  private services(): Service[] {
    const timeoutMs = this.config.shutdownTimeoutMs;
    const services: Service[] = [
      {
        name: 'engine',
        start: async (context) => {
          const { fs, logger } = this.world;
          const keepsData = this.config.engine === 'lsm';
          const hasData = keepsData && (await fs.exists(join(this.config.dataDir, 'lsm')));
          // The epoch first: a start that fails after the engine opened would leave that engine
          // running beside the next one on the same files (found by the simulator: a full disk
          // failed the epoch write, and two engines wrote one manifest).
          const epoch = await beginEpoch(fs, this.config.dataDir, this.nodeId, this.world.random, { engineKeepsData: keepsData, engineHasData: hasData, freshNode: this.freshNode });
          const engine = await this.openEngine(context);
          if (epoch.actor !== this.epoch?.actor) logger.info({ epoch: epoch.epoch, actor: epoch.actor }, 'new versions are written as this actor');
          this.engine = engine;
          this.epoch = epoch;
          this.kv.attach(engine, epoch.actor);
        },
        stop: async () => {
          this.kv.detach();
          const engine = this.engine;
          await engine?.close();
          // Objects dropped under this epoch's actor: the next start takes a new one (renewEpoch).
          if (engine instanceof LsmEngine && engine.closedCleanly && this.epoch !== undefined && !this.kv.droppedUnderActor) await endEpochCleanly(this.world.fs, this.config.dataDir, this.epoch);
        },
      },
      { name: 'cluster', start: () => this.cluster.start(), stop: () => this.cluster.stop() },
    ];
    if (this.world.clientApis === false) return services;
    return [
      ...services,
      { name: 'http', start: () => this.startHttp(), stop: async () => this.httpServer?.stop(timeoutMs) },
      { name: 'resp', start: (context) => this.resp.start((error) => context.fail(error)), stop: () => this.resp.stop(timeoutMs) },
    ];
  }
}
