import { assert } from '../core/assert.js';
import { mark, simulationBugs } from '../core/simulation-hooks.js';
import { join, sync, type DvvSet } from '../core/dvv.js';
import { ErrorCode, failure, success, type Failure, type Result } from '../core/errors.js';
import * as getCoordinator from '../core/get-coordinator.js';
import { preferenceList, type PreferenceEntry } from '../core/preference-list.js';
import * as putCoordinator from '../core/put-coordinator.js';
import { keyPartition } from '../core/token.js';
import type { MessageBody, PeerMessenger } from '../net/peer-messenger.js';
import { then, type MaybePromise } from '../storage/engine.js';
import type { Clock } from '../world/clock.js';
import type { ClusterMembership } from './cluster-membership.js';
import {
  quorumNames,
  readResultOf,
  type KeyValueStore,
  type KvService,
  type QuorumOptions,
  type ReadResult,
  type WriteOptions,
  type WriteOutcome,
} from './kv-service.js';
import type { HintLedger } from './hinted-handoff.js';
import type { Logger } from './logger.js';
import type { NamespaceRegistry } from './namespace-registry.js';
import { decodeObject, encodeContext, encodeObject, newestSibling, type Sibling, type StoredObject } from './stored-object.js';
import { storageKey } from './storage-key.js';

/** Peer message types of the replica protocol. */
export const replicaMessages = {
  get: 'replica.get',
  coordinate: 'replica.coordinate',
  merge: 'replica.merge',
  keys: 'replica.keys',
} as const;

export interface QuorumDefaults {
  readonly n: number;
  readonly r: number;
  readonly w: number;
}

/** The quorum of one request: N, R, W and how many of R / W must be primaries (PR, PW). */
interface Quorum extends QuorumDefaults {
  readonly pr: number;
  readonly pw: number;
}

/** What the coordinator and both kinds of handoff work with: this node, its store, its peers. */
export interface NodeContext {
  readonly self: string;
  readonly local: KvService;
  readonly membership: ClusterMembership;
  readonly messenger: PeerMessenger;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface CoordinatorOptions extends NodeContext {
  readonly defaults: QuorumDefaults;
  /** Per-namespace settings; namespaces without any use `defaults`. */
  readonly namespaces?: NamespaceRegistry;
  readonly requestTimeoutMs: number;
  /** Hinted handoff's books: whether this node may take another hint; absent: it takes them all. */
  readonly hints?: HintLedger;
  /** A primary down longer than this gets no fallback (no hint); default: always one. */
  readonly hintWindowMs?: number;
  /**
   * Nodes a replica write to this node must also reach before it is acknowledged: the targets of
   * a partition this node is handing off (src/node/transfers.ts); absent: none.
   */
  readonly forwardTargets?: (namespace: string, key: Uint8Array) => readonly string[];
}

/** The largest N a request may ask for (claim's spacing bound). */
const nMax = 8;

interface CoordinateBody {
  readonly namespace: string;
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
  readonly options: WriteOptions;
}

interface EncodedOutcome {
  readonly written: boolean;
  readonly previouslyPresent: boolean;
  readonly encoded: Uint8Array | null;
}

/**
 * The coordinator of a cluster node (Dynamo §4.5): any node takes any request, sends it to the
 * N replicas of the key's preference list in parallel, answers once R replies / W acks are in
 * (the quorum state machines of src/core/), and repairs stale replicas in the background.
 *
 * A write is applied first on one replica, the coordinating replica — this node when it is in
 * the preference list, else the list's first — which gives the new version its dot (its node id
 * is the DVV actor); the resulting object is then merged into the other replicas. So every
 * version is created by a node, never by a client, and concurrent writes become siblings.
 */
export class Coordinator implements KeyValueStore {
  /** Distinct owners of the ring, by epoch: computed once per ring. */
  private owners = { epoch: -1, count: 0, onlySelf: false };

  constructor(private readonly options: CoordinatorOptions) {
    this.registerHandlers();
  }

  get(namespace: string, key: Uint8Array, quorum: QuorumOptions = {}): MaybePromise<Result<ReadResult | undefined>> {
    const lww = this.options.namespaces?.get(namespace)?.conflictMode === 'lww';
    const pending = this.servesAlone(quorum) ? this.options.local.get(namespace, key) : this.read(namespace, key, { ...this.namespaceQuorum(namespace), ...withoutUndefined(quorum) }).then((result) => {
      if (!result.ok) return result;
      return success(result.value === undefined ? undefined : readResultOf(result.value));
    });
    return lww ? then(pending, newestOnly) : pending;
  }

  getNewest(namespace: string, key: Uint8Array, quorum: QuorumOptions = {}): MaybePromise<Result<Uint8Array | undefined>> {
    if (this.servesAlone(quorum)) return this.options.local.getNewest(namespace, key);
    return this.read(namespace, key, { ...this.namespaceQuorum(namespace), ...withoutUndefined(quorum) }).then((result) => {
      if (!result.ok) return result;
      const read = result.value === undefined ? undefined : readResultOf(result.value);
      return success(read === undefined ? undefined : (newestSibling(read.siblings)?.value ?? undefined));
    });
  }

  put(namespace: string, key: Uint8Array, value: Uint8Array, options: WriteOptions & QuorumOptions = {}): MaybePromise<Result<WriteOutcome>> {
    // Last-write-wins namespaces: every write replaces what its coordinating replica holds.
    const lww = this.options.namespaces?.get(namespace)?.conflictMode === 'lww';
    // Alone, the options go to the local store as they are (it ignores n, r, w): no copy per write.
    if (this.servesAlone(options)) return this.options.local.put(namespace, key, value, lww ? { ...options, context: 'current' } : options);
    const write: WriteOptions = lww ? { ...writeOptionsOf(options), context: 'current' } : writeOptionsOf(options);
    return this.write({ namespace, key, value, options: write }, { ...this.namespaceQuorum(namespace), ...withoutUndefined(options) });
  }

  /**
   * Deletes what the client saw (its context) or, without one, what a read quorum sees now: the
   * tombstone supersedes exactly that, so a concurrent write elsewhere survives.
   */
  delete(namespace: string, key: Uint8Array, options: Pick<WriteOptions, 'context'> & QuorumOptions = {}): MaybePromise<Result<WriteOutcome>> {
    if (this.servesAlone(options)) return this.options.local.delete(namespace, key, options.context === undefined ? {} : { context: options.context });
    // The client's context goes along: without it the delete would supersede whatever a quorum
    // holds now, concurrent writes the client never saw included (found by the simulator).
    const context = options.context === undefined ? {} : { context: options.context };
    return this.deleteCoordinated(namespace, key, { ...this.namespaceQuorum(namespace), ...withoutUndefined(options), ...context });
  }

  private async deleteCoordinated(namespace: string, key: Uint8Array, options: Pick<WriteOptions, 'context'> & QuorumOptions): Promise<Result<WriteOutcome>> {
    if (options.context !== undefined && options.context !== 'current') {
      return this.write({ namespace, key, value: null, options: { context: options.context } }, options);
    }
    const seen = await this.read(namespace, key, options);
    if (!seen.ok) return seen;
    if (seen.value === undefined || readResultOf(seen.value) === undefined) {
      return success({ written: false, previouslyPresent: false, context: '', encoded: undefined });
    }
    return this.write({ namespace, key, value: null, options: { context: encodeContext(join(seen.value)) } }, options);
  }

  /** Keys of a namespace across the cluster: every member's keys, merged in engine-key order. */
  async keys(namespace: string, options: { readonly limit: number; readonly after?: Uint8Array }): Promise<Result<Uint8Array[]>> {
    const members = this.options.membership.current.members.filter((member) => member.status !== 'removed' && this.options.membership.isUp(member.nodeId));
    const answers = await Promise.all(
      members.map((member) =>
        member.nodeId === this.options.self
          ? this.options.local.keys(namespace, options)
          : this.ask(member.nodeId, replicaMessages.keys, { namespace, limit: options.limit, after: options.after ?? null }).then(
              (reply) => success((reply as Uint8Array[]).map((bytes) => Buffer.from(bytes))),
              (error: unknown) => failure(ErrorCode.unavailable, `listing keys on ${member.nodeId} failed: ${String(error)}`),
            ),
      ),
    );
    const failed = answers.find((answer) => !answer.ok);
    if (failed !== undefined) return failed;
    // Every node lists in engine-key order, so the first `limit` of the merge are the cluster's first `limit`.
    const unique = new Map<string, Uint8Array>();
    for (const answer of answers) if (answer.ok) for (const found of answer.value) unique.set(storageKey(namespace, found).toString('latin1'), found);
    return success([...unique.keys()].sort().slice(0, options.limit).map((engineKey) => unique.get(engineKey) as Uint8Array));
  }

  /** The replicas of a key: its preference list over the current ring. */
  replicasOf(namespace: string, key: Uint8Array, n: number): PreferenceEntry[] {
    const ring = this.options.membership.ring;
    return preferenceList(ring, keyPartition(namespace, key, ring.partitionCount), n, this.options.membership.isUp);
  }

  /**
   * The nodes that keep a key for good on the current ring: its primary replicas for the widest
   * N it is stored with (the namespace's or the cluster's, whichever is larger). A node outside
   * them holds the key only for a while (a fallback's hint, a previous owner's copy).
   */
  primariesOf(namespace: string, key: Uint8Array): string[] {
    this.servesAlone({});
    const widest = Math.max(this.options.namespaces?.get(namespace)?.n ?? 0, this.options.defaults.n);
    const ring = this.options.membership.ring;
    return preferenceList(ring, keyPartition(namespace, key, ring.partitionCount), Math.min(widest, this.owners.count), () => true).map((entry) => entry.nodeId);
  }

  /**
   * The replicas a write goes to: the preference list, less the fallbacks of primaries down for
   * longer than the hint window (Cassandra's max_hint_window: such a primary is left to
   * anti-entropy rather than piling up hints for it).
   */
  private writeReplicas(namespace: string, key: Uint8Array, n: number): PreferenceEntry[] {
    const windowMs = this.options.hintWindowMs;
    const replicas = this.replicasOf(namespace, key, n);
    if (windowMs === undefined) return replicas;
    return replicas.filter((entry) => entry.standsInFor === undefined || this.options.membership.downForMs(entry.standsInFor) <= windowMs);
  }

  /** The namespace's own N/R/W, capped like the defaults at the ring's distinct owners. */
  private namespaceQuorum(namespace: string): QuorumOptions {
    const settings = this.options.namespaces?.get(namespace);
    if (settings === undefined) return {};
    this.servesAlone({});
    const n = Math.max(1, Math.min(settings.n, this.owners.count));
    return { n, r: Math.min(settings.r, n), w: Math.min(settings.w, n) };
  }

  /**
   * True when this node is the whole ring and the request asks for nothing more than one
   * replica can give: the local store answers directly, without quorum machinery (a single node
   * is as fast as before the cluster existed).
   */
  private servesAlone(options: QuorumOptions): boolean {
    const ring = this.options.membership.ring;
    if (this.owners.epoch !== ring.epoch) {
      const distinct = new Set(ring.owners);
      this.owners = { epoch: ring.epoch, count: distinct.size, onlySelf: distinct.size === 1 && distinct.has(this.options.self) };
    }
    return this.owners.onlySelf && (options.n === undefined || options.n === 1) && (options.r ?? 1) <= 1 && (options.w ?? 1) <= 1 && (options.pr ?? 0) <= 1 && (options.pw ?? 0) <= 1;
  }

  /**
   * N, R, W of a request: given ones as they are; defaults capped at the ring's distinct owners,
   * since a cluster smaller than N keeps one replica per node.
   */
  private quorum(options: QuorumOptions): Result<Quorum> {
    this.servesAlone({});
    const n = options.n ?? Math.max(1, Math.min(this.options.defaults.n, this.owners.count));
    const r = options.r ?? Math.min(this.options.defaults.r, n);
    const w = options.w ?? Math.min(this.options.defaults.w, n);
    const pr = options.pr ?? 0;
    const pw = options.pw ?? 0;
    for (const [name, value] of [['n', n], ['r', r], ['w', w]] as const) {
      if (!Number.isInteger(value) || value < 1 || value > nMax) return failure(ErrorCode.badRequest, `${name} must be an integer from 1 to ${nMax}, got ${value}`);
    }
    for (const [name, value] of [['pr', pr], ['pw', pw]] as const) {
      if (!Number.isInteger(value) || value < 0 || value > nMax) return failure(ErrorCode.badRequest, `${name} must be an integer from 0 to ${nMax}, got ${value}`);
    }
    if (r > n || w > n || pr > n || pw > n) {
      const primaries = pr > 0 || pw > 0 ? `, pr=${pr}, pw=${pw}` : '';
      return failure(ErrorCode.badRequest, `${primaries === '' ? 'r and w' : 'r, w, pr and pw'} must be at most n (n=${n}, r=${r}, w=${w}${primaries})`);
    }
    // Primaries asked for are replies waited for: R and W are at least PR and PW (as in Riak).
    return success({ n, r: Math.max(r, pr), w: Math.max(w, pw), pr, pw });
  }

  /**
   * A quorum read: the DVV sync of the replies, read-repairing replicas that lag behind it.
   * Replicas the key had on the previous ring are asked too (data does not move with the ring
   * yet): a notfound quorum waits for them, and what they hold is merged and repaired onto the
   * current replicas, so a new owner never answers "not found" for data it has not received.
   */
  private async read(namespace: string, key: Uint8Array, options: QuorumOptions): Promise<Result<StoredObject | undefined>> {
    const quorum = this.quorum(options);
    if (!quorum.ok) return quorum;
    const { n, r, pr } = quorum.value;
    const replicas = this.replicasOf(namespace, key, n);
    const tooFew = tooFewReplicas('read', replicas, quorum.value);
    if (tooFew !== undefined) return tooFew;
    const former = this.formerReplicas(namespace, key, n, replicas);
    const formerObjects = Promise.all(former.map((nodeId) => this.readReplica(nodeId, namespace, key)));
    // Ask R replicas (this node first) — with R + W > N they overlap every acknowledged write —
    // and all N only when one of them fails: half the messages of asking all N every time. A
    // read that needs primaries (PR) asks them all at once.
    const first = pr > 0 ? [...replicas] : readTargets(replicas, r, this.options.self);
    let answer = await this.readQuorum(namespace, key, first, { ...quorum.value, n: first.length });
    if (!answer.ok && first.length < replicas.length) {
      mark('coordinator.read-fell-back-to-all-replicas');
      answer = await this.readQuorum(namespace, key, replicas, quorum.value);
    }
    if (!answer.ok || former.length === 0) return answer;
    const merge = async (): Promise<StoredObject | undefined> => {
      let merged = answer.value;
      for (const object of await formerObjects) if (typeof object === 'object') merged = merged === undefined ? object : sync(merged, object);
      if (merged !== undefined && merged !== answer.value) for (const replica of replicas) if (replica.role === 'primary') this.repair(replica.nodeId, namespace, key, merged);
      return merged;
    };
    if (answer.value !== undefined) {
      void merge();
      return answer;
    }
    return success(await merge());
  }

  /** Nodes that were among the key's first n owners on the previous ring and are not now. */
  private formerReplicas(namespace: string, key: Uint8Array, n: number, current: readonly PreferenceEntry[]): string[] {
    const previous = this.options.membership.previousRing;
    if (previous === undefined) return [];
    const partition = keyPartition(namespace, key, previous.partitionCount);
    const isUp = this.options.membership.isUp;
    return preferenceList(previous, partition, n, isUp)
      .map((entry) => entry.nodeId)
      .filter((nodeId) => current.every((replica) => replica.nodeId !== nodeId));
  }

  private readQuorum(namespace: string, key: Uint8Array, replicas: readonly PreferenceEntry[], quorum: Quorum): Promise<Result<StoredObject | undefined>> {
    const { n, r, pr } = quorum;
    let machine = getCoordinator.start<Sibling>({ replicas: replicas.map(target), n, r, pr });
    return new Promise((resolve) => {
      let answered = false;
      const apply = (outputs: readonly getCoordinator.GetOutput<Sibling>[]): void => {
        for (const output of outputs) {
          if (output.type === 'answer' && !answered) {
            answered = true;
            resolve(success(output.object === 'notfound' ? undefined : output.object));
          } else if (output.type === 'fail' && !answered) {
            answered = true;
            resolve(quorumFailure('read', output.quorum, output.replied, output.needed, quorum));
          } else if (output.type === 'read-repair') {
            // Fallbacks are not repaired: they hold only what they keep as hints for a primary.
            for (const repair of output.targets) if (replicas.some((replica) => replica.nodeId === repair.nodeId && replica.role === 'primary')) this.repair(repair.nodeId, namespace, key, repair.object);
          }
        }
      };
      apply(machine.outputs);
      if (machine.state.phase === 'finished') return;
      const timer = this.options.clock.setTimer(this.options.requestTimeoutMs, () => {
        machine = getCoordinator.step(machine.state, { type: 'timeout' });
        apply(machine.outputs);
      });
      for (const replica of replicas) {
        this.readReplica(replica.nodeId, namespace, key).then((reply) => {
          if (machine.state.phase === 'finished') return;
          machine = getCoordinator.step(machine.state, reply === 'error' ? { type: 'error', from: replica.nodeId } : { type: 'reply', from: replica.nodeId, object: reply });
          apply(machine.outputs);
          if (machine.state.phase === 'finished') timer.cancel();
        });
      }
    });
  }

  private async readReplica(nodeId: string, namespace: string, key: Uint8Array): Promise<StoredObject | 'notfound' | 'error'> {
    try {
      const bytes =
        nodeId === this.options.self
          ? unwrap(await this.options.local.readObject(namespace, key))
          : ((await this.ask(nodeId, replicaMessages.get, { namespace, key })) as Uint8Array | null);
      return bytes === undefined || bytes === null ? 'notfound' : decodeObject(bytes);
    } catch (error) {
      this.options.logger.debug({ nodeId, err: error }, 'replica read failed');
      mark('coordinator.replica-failed');
      return 'error';
    }
  }

  /** A quorum write: applied on the coordinating replica, then merged into the others. */
  private async write(body: CoordinateBody, options: QuorumOptions): Promise<Result<WriteOutcome>> {
    const quorum = this.quorum(options);
    if (!quorum.ok) return quorum;
    const { n } = quorum.value;
    const replicas = this.writeReplicas(body.namespace, body.key, n);
    const tooFew = tooFewReplicas('write', replicas, quorum.value);
    if (tooFew !== undefined) return tooFew;
    const coordinating = coordinatingReplica(replicas, this.options.self);
    if (coordinating.standsInFor !== undefined) body = { ...body, options: { ...body.options, hintFor: coordinating.standsInFor } };
    if (coordinating.nodeId === this.options.self) return this.writeHere(body, replicas, quorum.value);
    let outcome: EncodedOutcome;
    try {
      outcome = await this.coordinateOn(coordinating.nodeId, body);
    } catch (error) {
      if (error instanceof CoordinationFailure) return error.failure;
      return failure(ErrorCode.unavailable, `the coordinating replica ${coordinating.nodeId} did not answer: ${String(error)}`);
    }
    const result: WriteOutcome = {
      written: outcome.written,
      previouslyPresent: outcome.previouslyPresent,
      encoded: outcome.encoded ?? undefined,
      get context() {
        return outcome.encoded === null ? '' : encodeContext(join(decodeObject(outcome.encoded)));
      },
    };
    if (!outcome.written || outcome.encoded === null) return success(result);
    return this.replicate(body, replicas, coordinating.nodeId, outcome.encoded, quorum.value, result, Promise.resolve(true));
  }

  /**
   * A quorum write coordinated on this node, a replica of the key: replication to the others
   * starts as soon as the local engine has taken the write, not after its fsync, so the local
   * and the remote fsyncs overlap; the local replica counts towards W once durable.
   */
  private async writeHere(body: CoordinateBody, replicas: readonly PreferenceEntry[], quorum: Quorum): Promise<Result<WriteOutcome>> {
    const { namespace, key, value, options } = body;
    const refused = this.refuseHint(options.hintFor);
    if (refused !== undefined) return refused;
    let replication: Promise<Result<WriteOutcome>> | undefined;
    let settleLocal: (ok: boolean) => void = () => {};
    const localDurable = new Promise<boolean>((resolve) => (settleLocal = resolve));
    const onIssued = (outcome: WriteOutcome): void => {
      if (outcome.written && outcome.encoded !== undefined) {
        replication = this.replicate(body, replicas, this.options.self, outcome.encoded, quorum, outcome, localDurable);
      }
    };
    const local = await (value === null ? this.options.local.delete(namespace, key, { ...options, onIssued, recordTombstone: true }) : this.options.local.put(namespace, key, value, { ...options, onIssued }));
    if (local.ok && options.hintFor !== undefined) this.options.hints?.recorded(options.hintFor, local.value.encoded?.length ?? 0);
    settleLocal(local.ok);
    if (replication !== undefined) return replication;
    return local;
  }

  private replicate(
    body: CoordinateBody,
    replicas: readonly PreferenceEntry[],
    coordinating: string,
    encoded: Uint8Array,
    quorum: Quorum,
    result: WriteOutcome,
    /** Whether the coordinating replica's own write became durable. */
    coordinatingDurable: Promise<boolean>,
  ): Promise<Result<WriteOutcome>> {
    let machine = putCoordinator.start({ replicas: replicas.map(target), n: quorum.n, w: quorum.w, pw: quorum.pw });
    return new Promise((resolve) => {
      let answered = false;
      const apply = (outputs: readonly putCoordinator.PutOutput[]): void => {
        for (const output of outputs) {
          if (answered) continue;
          answered = true;
          resolve(output.type === 'answer' ? success(result) : quorumFailure('write', output.quorum, output.acked, output.needed, quorum));
        }
      };
      const timer = this.options.clock.setTimer(this.options.requestTimeoutMs, () => {
        machine = putCoordinator.step(machine.state, { type: 'timeout' });
        apply(machine.outputs);
      });
      const acknowledge = (nodeId: string, ok: boolean): void => {
        if (machine.state.phase === 'finished') return;
        machine = putCoordinator.step(machine.state, { type: ok ? 'ack' : 'error', from: nodeId });
        apply(machine.outputs);
        if (machine.state.phase === 'finished') timer.cancel();
      };
      apply(machine.outputs);
      void coordinatingDurable.then((ok) => acknowledge(coordinating, ok));
      for (const replica of replicas) {
        if (replica.nodeId === coordinating) continue;
        this.mergeOn(replica.nodeId, body.namespace, body.key, encoded, replica.standsInFor).then(
          () => acknowledge(replica.nodeId, true),
          () => acknowledge(replica.nodeId, false),
        );
      }
    });
  }

  private async coordinateOn(nodeId: string, body: CoordinateBody): Promise<EncodedOutcome> {
    if (nodeId !== this.options.self) {
      const reply = (await this.ask(nodeId, replicaMessages.coordinate, body as unknown as MessageBody)) as EncodedOutcome | { failure: Failure };
      if ('failure' in reply) throw new CoordinationFailure(reply.failure);
      return reply;
    }
    const { namespace, key, value, options } = body;
    const refused = this.refuseHint(options.hintFor);
    if (refused !== undefined) throw new CoordinationFailure(refused);
    // A lagging coordinating replica may hold none of what the delete's context covers: the
    // tombstone is written anyway and replicated (found by the simulator: an acknowledged
    // delete that wrote nothing, its value back on the next read).
    const result = await (value === null ? this.options.local.delete(namespace, key, { ...options, recordTombstone: true }) : this.options.local.put(namespace, key, value, options));
    if (!result.ok) throw new CoordinationFailure(result);
    if (options.hintFor !== undefined) this.options.hints?.recorded(options.hintFor, result.value.encoded?.length ?? 0);
    else if (result.value.encoded !== undefined) await this.forward(namespace, key, result.value.encoded);
    return { written: result.value.written, previouslyPresent: result.value.previouslyPresent, encoded: result.value.encoded ?? null };
  }

  /** Merges an object into a replica; `hintFor`: the replica is a fallback holding it for that primary. */
  private async mergeOn(nodeId: string, namespace: string, key: Uint8Array, encoded: Uint8Array, hintFor?: string): Promise<void> {
    if (nodeId === this.options.self) return this.mergeHere(namespace, key, encoded, hintFor ?? null);
    await this.ask(nodeId, replicaMessages.merge, { namespace, key, object: encoded, hint: hintFor ?? null });
  }

  private async mergeHere(namespace: string, key: Uint8Array, encoded: Uint8Array, hintFor: string | null): Promise<void> {
    if (hintFor === null) {
      unwrap(await this.options.local.mergeObject(namespace, key, encoded));
      await this.forward(namespace, key, encoded);
      return;
    }
    const refused = this.refuseHint(hintFor);
    if (refused !== undefined) throw new CoordinationFailure(refused);
    unwrap(await this.options.local.mergeObject(namespace, key, encoded, hintFor));
    this.options.hints?.recorded(hintFor, encoded.length);
  }

  /**
   * A write that reached this node for a partition it is handing off (its coordinator has not
   * seen the new ring yet) also goes to the transfer's targets, so the drop of this node's copy
   * cannot take it away.
   */
  private async forward(namespace: string, key: Uint8Array, encoded: Uint8Array): Promise<void> {
    const targets = this.options.forwardTargets?.(namespace, key) ?? [];
    if (targets.length === 0) return;
    mark('handoff.write-forwarded');
    // A forwarded write is not forwarded again: two nodes whose rings disagree for a moment may
    // each hand the partition to the other, and would pass it back and forth until timeouts.
    await Promise.all(
      targets.map(async (target) => {
        if (target === this.options.self) unwrap(await this.options.local.mergeObject(namespace, key, encoded));
        else await this.ask(target, replicaMessages.merge, { namespace, key, object: encoded, hint: null, forwarded: true });
      }),
    );
  }

  /** A failure when this node keeps no more hints (its hint storage is full), else undefined. */
  private refuseHint(hintFor: string | undefined): Failure | undefined {
    if (hintFor === undefined || this.options.hints === undefined || this.options.hints.admits()) return undefined;
    return failure(ErrorCode.unavailable, `this node's hint storage is full: it takes no write as a fallback for ${hintFor}`);
  }

  /** Read repair (Dynamo §4.5): in the background; a failure is left to the next read. */
  private repair(nodeId: string, namespace: string, key: Uint8Array, object: DvvSet<Sibling>): void {
    assert(object.entries.length > 0 || object.anonymous.length > 0, 'read repair with an empty object');
    if (simulationBugs['skip-read-repair']) return;
    this.mergeOn(nodeId, namespace, key, encodeObject(object)).then(
      () => {
        mark('coordinator.read-repair-applied');
        this.options.logger.debug({ nodeId }, 'read repair applied');
      },
      (error: unknown) => {
        mark('coordinator.read-repair-failed');
        this.options.logger.debug({ nodeId, err: error }, 'read repair failed');
      },
    );
  }

  private ask(nodeId: string, type: string, body: MessageBody): Promise<MessageBody> {
    const address = this.options.membership.addressOf(nodeId);
    if (address === undefined) return Promise.reject(new Error(`no address known for ${nodeId}`));
    return this.options.messenger.request(address, type, body, { timeoutMs: this.options.requestTimeoutMs });
  }

  /** The replica side: what other coordinators ask of this node. */
  private registerHandlers(): void {
    const { messenger, local } = this.options;
    messenger.handle(replicaMessages.get, async (body) => {
      const { namespace, key } = body as { namespace: string; key: Uint8Array };
      return unwrap(await local.readObject(namespace, key)) ?? null;
    });
    messenger.handle(replicaMessages.merge, async (body) => {
      const { namespace, key, object, hint, forwarded } = body as { namespace: string; key: Uint8Array; object: Uint8Array; hint?: string | null; forwarded?: boolean };
      if (forwarded !== true) await this.mergeHere(namespace, key, object, hint ?? null);
      // A forwarded write is taken only by a replica on this node's own ring: one that is behind,
      // or hands the partition off itself, refuses, and the write fails rather than land where
      // it would be dropped.
      else if (!this.primariesOf(namespace, key).includes(this.options.self)) throw new Error(`${this.options.self} is no replica of this key on its ring (epoch ${this.options.membership.ring.epoch})`);
      else unwrap(await local.mergeObject(namespace, key, object));
      return null;
    });
    messenger.handle(replicaMessages.coordinate, async (body) => {
      try {
        return (await this.coordinateOn(this.options.self, body as CoordinateBody)) as unknown as MessageBody;
      } catch (error) {
        if (error instanceof CoordinationFailure) return { failure: { ok: false, code: error.failure.code, message: error.failure.message } };
        throw error;
      }
    });
    messenger.handle(replicaMessages.keys, async (body) => {
      const { namespace, limit, after } = body as { namespace: string; limit: number; after: Uint8Array | null };
      return unwrap(await local.keys(namespace, after === null ? { limit } : { limit, after }));
    });
  }
}

class CoordinationFailure extends Error {
  constructor(readonly failure: Failure) {
    super(failure.message);
  }
}

/**
 * The replica that applies a write first and gives it its dot: this node when it is a primary,
 * else the first primary, else (every primary down) this node or the first fallback.
 */
function coordinatingReplica(replicas: readonly PreferenceEntry[], self: string): PreferenceEntry {
  const own = replicas.find((replica) => replica.nodeId === self);
  if (own?.role === 'primary') return own;
  return replicas.find((replica) => replica.role === 'primary') ?? own ?? (replicas[0] as PreferenceEntry);
}

/** The first `r` replicas to read: this node when it is one, then the others in list order. */
function readTargets(replicas: readonly PreferenceEntry[], r: number, self: string): PreferenceEntry[] {
  const local = replicas.filter((replica) => replica.nodeId === self);
  return [...local, ...replicas.filter((replica) => replica.nodeId !== self)].slice(0, r);
}

function newestOnly(result: Result<ReadResult | undefined>): Result<ReadResult | undefined> {
  if (!result.ok || result.value === undefined || result.value.siblings.length <= 1) return result;
  const read = result.value;
  const newest = newestSibling(read.siblings);
  return success({ siblings: newest === undefined ? [] : [newest], get context() {
    return read.context;
  } });
}

function withoutUndefined(options: QuorumOptions): QuorumOptions {
  const defined: { -readonly [K in keyof QuorumOptions]: number } = {};
  for (const name of quorumNames) if (options[name] !== undefined) defined[name] = options[name];
  return defined;
}

function target(entry: PreferenceEntry): getCoordinator.ReplicaTarget {
  return { nodeId: entry.nodeId, role: entry.role };
}

function writeOptionsOf(options: WriteOptions & QuorumOptions): WriteOptions {
  const { n: _n, r: _r, w: _w, pr: _pr, pw: _pw, ...write } = options;
  return write;
}

function quorumFailure(kind: 'read' | 'write', short: 'r' | 'pr' | 'w' | 'pw', answered: number, needed: number, quorum: Quorum): Failure {
  mark('coordinator.quorum-failed');
  const verb = kind === 'read' ? 'answered' : 'acknowledged';
  const which = short === 'pr' || short === 'pw' ? 'primary replicas' : 'replicas';
  return failure(ErrorCode.unavailable, `${kind} quorum not met: ${answered} of ${needed} ${which} ${verb} (${short}=${quorum[short]}, n=${quorum.n})`);
}

/** The failure when too few replicas (or primaries, for PR / PW) are up to reach the quorum. */
function tooFewReplicas(kind: 'read' | 'write', replicas: readonly PreferenceEntry[], quorum: Quorum): Failure | undefined {
  const [count, primaryCount] = kind === 'read' ? [quorum.r, quorum.pr] : [quorum.w, quorum.pw];
  const primaries = replicas.filter((replica) => replica.role === 'primary').length;
  if (replicas.length < count) return failure(ErrorCode.unavailable, `${kind} quorum not met: only ${replicas.length} of n=${quorum.n} replicas are up, ${kind === 'read' ? 'r' : 'w'}=${count} needed`);
  if (primaries < primaryCount) return failure(ErrorCode.unavailable, `${kind} quorum not met: only ${primaries} of n=${quorum.n} primary replicas are up, ${kind === 'read' ? 'pr' : 'pw'}=${primaryCount} needed`);
  return undefined;
}

function unwrap<T>(result: Result<T>): T {
  if (!result.ok) throw new CoordinationFailure(result);
  return result.value;
}
