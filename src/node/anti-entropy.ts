import { assert } from '../core/assert.js';
import {
  answerRequest, childrenOf, createTree, keyVersionHash, nextStep, requestSizeBytes, rootHash, segmentHash, segmentOf, startExchange, updateKey,
  type LevelRequest, type MerkleTree, type MerkleTreeOptions,
} from '../core/merkle-tree.js';
import { mark } from '../core/simulation-hooks.js';
import { partitionTokenPrefixes, prefixPartition } from '../core/token.js';
import { replicaSet } from '../core/transfer-plan.js';
import type { Ring } from '../core/ring-state.js';
import type { MessageBody } from '../net/peer-messenger.js';
import { sleep, type TimerHandle } from '../world/clock.js';
import type { NodeContext } from './coordinator.js';
import { batchBytesMax, batchEntriesMax, sendObjects, throttle, type HandedOffObject } from './hinted-handoff.js';
import { engineKeyTokenPrefix, parseStorageKey } from './storage-key.js';
import { transferMessages, type PendingTransfersAnswer } from './transfers.js';
import { decodeHistory, objectVersionHash } from './stored-object.js';

/**
 * Active anti-entropy (Dynamo §4.7, the Tictac way of Riak 2.9+): every replica keeps one Merkle
 * tree per partition it replicates (src/core/merkle-tree.ts), over (storage key, hash of the
 * stored object). The tree follows every change the key-value service makes (ChangeObserver), so
 * it is built once, from a scan, and then kept. Replicas compare trees on a schedule:
 *
 * 1. Every `intervalMs` a node takes the next peer it shares partitions with and asks it for the
 *    roots of all of them in one message (equal roots: done, 8 bytes a partition).
 * 2. For up to `partitionsPerRoundMax` partitions whose roots differ it walks the trees level by
 *    level (one round trip a level), down to the differing segments.
 * 3. Both sides list (key, version hash) for those segments from their stores; the objects that
 *    differ are fetched from the peer and merged here, and sent to the peer to merge there (DVV
 *    sync both ways: nothing either side holds is lost). Only keys both nodes are primaries of are
 *    repaired (on a ring change, transfers move data; anti-entropy does not undo them).
 *
 * Repair traffic is throttled to `bytesPerSecond`; one round runs at a time. A tree that disagrees
 * with its own store (a segment's hash differs from the one the listed keys give, while nothing
 * changed in between: writes an engine restart lost) is rebuilt.
 *
 * Tombstones (versioned deletes) are reaped here: the first replica of a partition removes a
 * tombstone older than `tombstoneGraceMs` only when every replica of the partition is up and holds
 * the same tombstone, and then asks each to remove it (compare-and-delete, so a newer write wins).
 */

/**
 * 8 x 8 x 8 x 8 = 4,096 segments, 37 KiB a tree: at 4,000 keys a partition (10^6 keys, Q = 256),
 * about one key a segment; one differing key costs 4 levels x 8 hashes (Tictac's wider, shallower
 * trees send more hashes per level: docs/merkle-exchange.md).
 */
export const antiEntropyTreeShape: MerkleTreeOptions = { fanout: 8, depth: 4 };
/** Partitions whose trees are walked in one round (the rest: the next round, which starts at once). */
const partitionsPerRoundMax = 32;
/** Partition walks of one round running at once. */
const walksInFlightMax = 4;
/** Keys listed for one exchange's differing segments, per side; more wait for the next exchange. */
const listedKeysMax = 4096;
/** Hashes in one level response: the whole segment level of the tree. */
const hashesPerResponseMax = 4096;
/** Objects looked at between two yields to the event loop while a tree is built or keys are listed. */
const scanSliceEntries = 512;
/** Tombstones checked for reaping at once. */
const reapBatchMax = 256;
/** A reap pass every this many rounds. */
const reapEveryRounds = 5;
/**
 * How long a partition this node gained on a ring change waits for its transfer before
 * anti-entropy takes it up anyway (the sender may have lost its disk, or left for good).
 */
const awaitTransferMsMax = 60 * 60_000;
/**
 * While partitions wait for their transfer, every this often the other members are asked which of
 * them they still have to send here; a partition nobody owes any more is taken up (a transfer
 * that was cut short — a sender wiped, removed, or that replanned — never says it completed).
 */
const awaitCheckIntervalMs = 10_000;

export const antiEntropyMessages = {
  roots: 'aae.roots',
  level: 'aae.level',
  keys: 'aae.keys',
  fetch: 'aae.fetch',
  reapCheck: 'aae.reap-check',
  reap: 'aae.reap',
} as const;

export interface AntiEntropyOptions extends NodeContext {
  /** The widest N any key is stored with: the replica sets trees follow. */
  readonly replicaCount: () => number;
  /** Whether both nodes keep the key for good (both are among Coordinator.primariesOf). */
  readonly primariesOf: (namespace: string, key: Uint8Array) => readonly string[];
  /** How often an exchange round starts; 0: never (trees are still kept). */
  readonly intervalMs: number;
  readonly bytesPerSecond: number;
  readonly requestTimeoutMs: number;
  readonly tombstoneGraceMs: number;
  /** Ownership handoff under way on this node: tombstones are not reaped meanwhile. */
  readonly handoffBusy: () => boolean;
}

export interface AntiEntropyReport {
  readonly nodeId: string;
  readonly treeShape: MerkleTreeOptions;
  /** Partitions this node replicates with another node: the root of each tree (16 hex digits), when built. */
  readonly trees: readonly { readonly partition: number; readonly root: string | null; readonly built: boolean }[];
  /** Partitions gained on the last ring change whose transfer is not complete: not exchanged yet. */
  readonly awaitingTransfer: number;
  /** Since this node started: */
  readonly rounds: number;
  readonly exchanges: number;
  readonly exchangesDiffering: number;
  /** Objects merged here from a peer, and sent to a peer that merged them. */
  readonly keysRepaired: number;
  readonly keysFetched: number;
  readonly keysPushed: number;
  /** Every anti-entropy byte this node sent (requests, answers, key lists, objects). */
  readonly bytesSent: number;
  /**
   * Tree data of the exchanges this node started, both directions: the root comparisons (4 bytes
   * a partition asked for, 8 a root answered) and the level walks (requests and hashes).
   */
  readonly rootBytes: number;
  readonly levelBytes: number;
  readonly treesRebuilt: number;
  readonly reapedTombstones: number;
  readonly lastRoundAtMs: number | null;
}

interface PartitionTree {
  tree: MerkleTree;
  built: boolean;
  /** While building: the hash the scan put in the tree, per key (latin1). */
  scanned: Map<string, bigint> | undefined;
  /** While building: the last state of every key changed since the build began. */
  pending: Map<string, { readonly engineKey: Buffer; readonly after: bigint | undefined }> | undefined;
  /** Changes seen, to tell whether a store listing and the tree describe the same moment. */
  changes: number;
}

interface ListedKey {
  readonly engineKey: Uint8Array;
  readonly hash: bigint;
}

export class AntiEntropy {
  private readonly trees = new Map<number, PartitionTree>();
  private timer: TimerHandle | undefined;
  private stopped = true;
  private round: Promise<void> | undefined;
  private building: Promise<void> | undefined;
  private peerCursor = 0;
  /** The last round found differences: the next one starts without waiting for the interval. */
  private again = false;
  private reapCursor = 0;
  private readonly stopObserving: () => void;
  private counters = { rounds: 0, exchanges: 0, exchangesDiffering: 0, keysFetched: 0, keysPushed: 0, bytesSent: 0, rootBytes: 0, levelBytes: 0, treesRebuilt: 0, reapedTombstones: 0 };
  private lastRoundAtMs: number | null = null;
  private lastAwaitCheckMs = Number.NEGATIVE_INFINITY;
  /**
   * Partitions this node gained on the last ring change whose transfer has not completed: the
   * transfer brings their data, so exchanges leave them alone until then (else anti-entropy would
   * fetch the same objects the transfer sends, doubling what a join moves). Value: expiry time.
   */
  private readonly awaitingTransfer = new Map<number, number>();

  constructor(private readonly options: AntiEntropyOptions) {
    assert(options.intervalMs >= 0 && options.bytesPerSecond > 0, 'anti-entropy: interval >= 0 and a positive rate');
    this.stopObserving = options.local.observeChanges({
      changed: (engineKey, before, after) => this.changed(engineKey, before, after),
      invalidated: (first, end) => this.invalidated(first, end),
    });
    this.registerHandlers();
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopObserving();
    this.timer?.cancel();
    this.timer = undefined;
    // A round may wait on a peer for up to a request timeout: it is not waited for. What it does
    // after the stop fails (messenger closed, engine detached) and is dropped; trees go with the
    // service.
    await this.building;
  }

  /** The ring changed: partitions this node is a replica of now and was not before wait for their transfer. */
  ringChanged(previous: Ring, current: Ring): void {
    const n = this.options.replicaCount();
    const self = this.options.self;
    const untilMs = this.options.clock.nowMs() + awaitTransferMsMax;
    for (let partition = 0; partition < current.partitionCount; partition++) {
      const now = replicaSet(current, partition, n).includes(self);
      if (!now) this.awaitingTransfer.delete(partition);
      else if (previous.partitionCount === current.partitionCount && !replicaSet(previous, partition, n).includes(self)) this.awaitingTransfer.set(partition, untilMs);
    }
  }

  /**
   * A sender has sent this node everything of `partition` (transferMessages.complete). False
   * when this node's ring does not make it a replica of the partition yet (the sender saw the
   * change first): the sender says so again later, else the gain, when it arrives, would wait.
   */
  transferReceived(partition: number): boolean {
    const ring = this.options.membership.ring;
    if (!Number.isInteger(partition) || partition < 0 || partition >= ring.partitionCount) return false;
    if (!replicaSet(ring, partition, this.options.replicaCount()).includes(this.options.self)) return false;
    this.awaitingTransfer.delete(partition);
    return true;
  }

  /**
   * Asks every other member that is up which partitions waiting here it still has to send; those
   * nobody owes are taken up. Skipped while any member answers from another ring (it may not have
   * planned its part yet); a member that does not answer owes nothing it can send now.
   */
  private async checkAwaiting(): Promise<void> {
    const now = this.options.clock.nowMs();
    if (this.awaitingTransfer.size === 0 || now - this.lastAwaitCheckMs < awaitCheckIntervalMs) return;
    this.lastAwaitCheckMs = now;
    const ring = this.options.membership.ring;
    const partitions = [...this.awaitingTransfer.keys()].sort((a, b) => a - b);
    const members = this.options.membership.current.members.filter((member) => member.nodeId !== this.options.self && member.status !== 'removed' && this.options.membership.isUp(member.nodeId));
    const answers = await Promise.all(
      members.map((member) => this.request<PendingTransfersAnswer>(member.nodeId, transferMessages.pending, { target: this.options.self, partitions }).catch(() => undefined)),
    );
    const current = this.options.membership.ring;
    if (current.epoch !== ring.epoch || current.claimant !== ring.claimant) return;
    if (answers.some((answer) => answer !== undefined && (answer.epoch !== ring.epoch || answer.claimant !== ring.claimant))) return;
    const owed = new Set(answers.flatMap((answer) => answer?.partitions ?? []));
    const lifted = partitions.filter((partition) => !owed.has(partition) && this.awaitingTransfer.delete(partition));
    if (lifted.length > 0) this.options.logger.info({ partitions: lifted }, 'no member owes these partitions a transfer any more; anti-entropy takes them up');
  }

  private awaiting(partition: number): boolean {
    const untilMs = this.awaitingTransfer.get(partition);
    if (untilMs === undefined) return false;
    if (this.options.clock.nowMs() < untilMs) return true;
    this.awaitingTransfer.delete(partition);
    return false;
  }

  report(): AntiEntropyReport {
    const trees = this.shared().map((partition) => {
      const entry = this.trees.get(partition);
      const built = entry?.built === true;
      return { partition, built, root: built ? hex(rootHash(entry.tree)) : null };
    });
    const { keysFetched, keysPushed } = this.counters;
    const awaitingTransfer = [...this.awaitingTransfer.keys()].filter((partition) => this.awaiting(partition)).length;
    return { nodeId: this.options.self, treeShape: antiEntropyTreeShape, trees, awaitingTransfer, ...this.counters, keysRepaired: keysFetched + keysPushed, lastRoundAtMs: this.lastRoundAtMs };
  }

  /** The partitions this node is a replica of on its ring (the widest N). */
  private replicated(): number[] {
    return this.replicaPartitions(false);
  }

  /**
   * The partitions this node replicates together with another node: the ones that get a tree.
   * A node alone on its ring (or every partition with N = 1) has nobody to exchange a tree with,
   * and keeping one costs every write six hashes (about a sixth of a SET on the memory engine,
   * measured in process); its trees are built from a scan once a second replica appears, as at
   * start-up.
   */
  private shared(): number[] {
    return this.replicaPartitions(true);
  }

  private replicaPartitions(sharedOnly: boolean): number[] {
    const ring = this.options.membership.ring;
    const n = this.options.replicaCount();
    const partitions: number[] = [];
    for (let partition = 0; partition < ring.partitionCount; partition++) {
      const replicas = replicaSet(ring, partition, n);
      if (replicas.includes(this.options.self) && (!sharedOnly || replicas.length > 1)) partitions.push(partition);
    }
    return partitions;
  }

  private partitionOf(engineKey: Uint8Array): number {
    return prefixPartition(engineKeyTokenPrefix(engineKey), this.options.membership.ring.partitionCount);
  }

  private changed(engineKey: Buffer, before: Uint8Array | undefined, after: Uint8Array | undefined): void {
    const entry = this.trees.get(this.partitionOf(engineKey));
    if (entry === undefined) return;
    entry.changes++;
    const afterHash = after === undefined ? undefined : objectVersionHash(after);
    if (entry.pending !== undefined) {
      entry.pending.set(engineKey.toString('latin1'), { engineKey, after: afterHash });
      return;
    }
    updateKey(entry.tree, engineKey, before === undefined ? undefined : objectVersionHash(before), afterHash);
  }

  private invalidated(first: number, end: number): void {
    const partitionCount = this.options.membership.ring.partitionCount;
    for (const partition of [...this.trees.keys()]) {
      const range = partitionTokenPrefixes(partition, partitionCount);
      if (range.first < end && first < range.end) this.trees.delete(partition);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    // Trees are built even when exchanges are off, so roots can be compared from outside.
    const delayMs = this.options.intervalMs === 0 ? 1000 : this.options.intervalMs;
    this.timer = this.options.clock.setTimer(delayMs, () => {
      this.tick();
      this.schedule();
    });
  }

  private tick(): void {
    if (this.stopped) return;
    const shared = new Set(this.shared());
    for (const partition of [...this.trees.keys()]) if (!shared.has(partition)) this.trees.delete(partition);
    if (this.building === undefined) {
      const missing = [...shared].filter((partition) => !this.trees.has(partition));
      if (missing.length > 0) {
        this.building = this.buildTrees(missing)
          .catch((error: unknown) => {
            if (!this.stopped) this.options.logger.warn({ err: error }, 'building anti-entropy trees failed; will retry');
          })
          .finally(() => (this.building = undefined));
      }
    }
    if (this.options.intervalMs > 0 && this.round === undefined) this.startRound();
  }

  private startRound(): void {
    this.again = false;
    this.round = this.exchangeRound()
      .catch((error: unknown) => {
        if (!this.stopped) this.options.logger.info({ err: error }, 'anti-entropy round interrupted');
      })
      .finally(() => {
        this.round = undefined;
        if (this.again && !this.stopped) this.startRound();
      });
  }

  /** Builds the trees of `partitions` one after another, each from a scan of the store. */
  private async buildTrees(partitions: readonly number[]): Promise<void> {
    for (const partition of partitions) {
      if (this.stopped) return;
      if (this.trees.has(partition) || !this.shared().includes(partition)) continue;
      await this.buildTree(partition);
    }
  }

  /**
   * The scan sees some state of each key; writes while it runs are recorded (last state per key)
   * and swapped in for what the scan saw when it ends, so the tree then matches the store exactly.
   */
  private async buildTree(partition: number): Promise<void> {
    const entry: PartitionTree = { tree: createTree(antiEntropyTreeShape), built: false, scanned: new Map(), pending: new Map(), changes: 0 };
    this.trees.set(partition, entry);
    let count = 0;
    for await (const object of this.options.local.partitionObjects(partition, this.options.membership.ring.partitionCount)) {
      if (this.trees.get(partition) !== entry || this.stopped) return;
      const hash = objectVersionHash(object.object);
      updateKey(entry.tree, object.engineKey, undefined, hash);
      entry.scanned?.set(Buffer.from(object.engineKey).toString('latin1'), hash);
      if (++count % scanSliceEntries === 0) await sleep(this.options.clock, 0);
    }
    if (this.trees.get(partition) !== entry) return;
    const { scanned, pending } = entry;
    assert(scanned !== undefined && pending !== undefined, 'a tree being built records what it scanned');
    for (const [name, change] of pending) {
      const seen = scanned.get(name);
      if (seen !== change.after) updateKey(entry.tree, change.engineKey, seen, change.after);
    }
    entry.scanned = undefined;
    entry.pending = undefined;
    entry.built = true;
  }

  /** One round: the next peer's roots, then the walk and repair of the partitions that differ. */
  private async exchangeRound(): Promise<void> {
    this.counters.rounds++;
    this.lastRoundAtMs = this.options.clock.wallMs();
    if (this.counters.rounds % reapEveryRounds === 0) await this.reapPass();
    await this.checkAwaiting();
    const peer = this.nextPeer();
    if (peer === undefined) return;
    const address = this.options.membership.addressOf(peer.nodeId);
    if (address === undefined) return;
    const reply = (await this.options.messenger.request(address, antiEntropyMessages.roots, { partitions: peer.partitions }, { timeoutMs: this.options.requestTimeoutMs })) as { roots: Uint8Array; built: boolean[] };
    this.counters.bytesSent += 4 * peer.partitions.length;
    this.counters.rootBytes += 4 * peer.partitions.length + reply.roots.length;
    const theirs = bytesToHashes(reply.roots);
    const differing = peer.partitions.filter((partition, index) => {
      const mine = this.trees.get(partition);
      return reply.built[index] === true && mine?.built === true && rootHash(mine.tree) !== theirs[index];
    });
    this.counters.exchanges += peer.partitions.length;
    this.counters.exchangesDiffering += differing.length;
    const walked = differing.slice(0, partitionsPerRoundMax);
    const repairedBefore = this.counters.keysFetched + this.counters.keysPushed;
    const walkers = Array.from({ length: Math.min(walksInFlightMax, walked.length) }, async () => {
      for (let partition = walked.shift(); partition !== undefined && !this.stopped; partition = walked.shift()) {
        await this.exchangePartition(peer.nodeId, partition);
      }
    });
    await Promise.all(walkers);
    // Something was repaired and more may be: the next round starts now (with this peer when it
    // had more partitions to walk). Differences that repair nothing wait for the interval.
    const repaired = this.counters.keysFetched + this.counters.keysPushed > repairedBefore;
    if (repaired && differing.length > partitionsPerRoundMax) this.peerCursor--;
    this.again = repaired;
  }

  /** The next up peer (round-robin) and the partitions both replicate whose trees are built here. */
  private nextPeer(): { nodeId: string; partitions: number[] } | undefined {
    const ring = this.options.membership.ring;
    const n = this.options.replicaCount();
    const peers = this.options.membership.current.members
      .filter((member) => member.nodeId !== this.options.self && member.status !== 'removed' && this.options.membership.isUp(member.nodeId))
      .map((member) => member.nodeId)
      .sort();
    for (let attempt = 0; attempt < peers.length; attempt++) {
      const nodeId = peers[this.peerCursor++ % peers.length] as string;
      const partitions: number[] = [];
      for (const [partition, entry] of this.trees) {
        if (entry.built && !this.awaiting(partition) && replicaSet(ring, partition, n).includes(nodeId)) partitions.push(partition);
      }
      if (partitions.length > 0) return { nodeId, partitions: partitions.sort((a, b) => a - b) };
    }
    return undefined;
  }

  private async request<T>(nodeId: string, type: string, body: unknown): Promise<T> {
    const address = this.options.membership.addressOf(nodeId);
    if (address === undefined) throw new Error(`no address known for ${nodeId}`);
    return (await this.options.messenger.request(address, type, body as MessageBody, { timeoutMs: this.options.requestTimeoutMs })) as T;
  }

  /** Walks one partition's trees with `peer` down to the differing segments, then repairs their keys. */
  private async exchangePartition(peer: string, partition: number): Promise<void> {
    let state = startExchange();
    for (;;) {
      const mine = this.trees.get(partition);
      if (mine?.built !== true) return;
      // The request names the parents whose children it wants (the compact form requestSizeBytes counts).
      const { level, nodes } = state.request;
      const parents = level === 0 ? [] : nodes.filter((_, index) => index % mine.tree.fanout === 0).map((node) => node / mine.tree.fanout);
      const reply = await this.request<{ hashes: Uint8Array } | { notBuilt: true }>(peer, antiEntropyMessages.level, { partition, level, parents });
      if ('notBuilt' in reply) return;
      const requestBytes = requestSizeBytes(mine.tree, state.request);
      this.counters.bytesSent += requestBytes;
      this.counters.levelBytes += requestBytes + reply.hashes.length;
      const step = nextStep(mine.tree, state, { level: state.request.level, hashes: bytesToHashes(reply.hashes) }, { hashesPerResponseMax });
      if (step.kind === 'done') {
        if (step.segments.length > 0) await this.repairSegments(peer, partition, step.segments);
        return;
      }
      state = step.state;
    }
  }

  /** Lists both sides' keys of `segments`, then fetches what the peer holds differently and sends what this node does. */
  private async repairSegments(peer: string, partition: number, segments: readonly number[]): Promise<void> {
    const startedMs = this.options.clock.nowMs();
    const listed = await this.listKeys(partition, segments);
    const reply = await this.request<{ entries: [Uint8Array, Uint8Array][] }>(peer, antiEntropyMessages.keys, { partition, segments });
    this.counters.bytesSent += 4 * segments.length;
    if (listed === undefined) return;
    const theirs = new Map(reply.entries.map(([engineKey, hash]) => [Buffer.from(engineKey).toString('latin1'), bytesToHashes(hash)[0] as bigint]));
    const toFetch: Buffer[] = [];
    const toPush: Buffer[] = [];
    const mine = new Set<string>();
    for (const { engineKey, hash } of listed) {
      const name = Buffer.from(engineKey).toString('latin1');
      mine.add(name);
      const other = theirs.get(name);
      if (other === hash || !this.bothPrimaries(engineKey, peer)) continue;
      toPush.push(Buffer.from(engineKey));
      if (other !== undefined) toFetch.push(Buffer.from(engineKey));
    }
    for (const name of theirs.keys()) {
      const engineKey = Buffer.from(name, 'latin1');
      if (!mine.has(name) && this.bothPrimaries(engineKey, peer)) toFetch.push(engineKey);
    }
    if (toFetch.length + toPush.length > 0) mark('aae.exchange-repaired');
    let sentBytes = 0;
    for (let start = 0; start < toFetch.length && !this.stopped; start += batchEntriesMax) {
      await this.fetchAndMerge(peer, toFetch.slice(start, start + batchEntriesMax));
    }
    // Pushed after the fetch, so the peer gets the merge of both sides.
    for (let start = 0; start < toPush.length && !this.stopped;) {
      const batch: HandedOffObject[] = [];
      let batchBytes = 0;
      for (; start < toPush.length && batch.length < batchEntriesMax && (batch.length === 0 || batchBytes < batchBytesMax); start++) {
        const engineKey = toPush[start] as Buffer;
        const read = await this.options.local.readEngineKey(engineKey);
        const parsed = parseStorageKey(engineKey);
        if (!read.ok || read.value === undefined || parsed === undefined) continue;
        // What the fetch merged here may be just what the peer holds (its version was newer).
        if (objectVersionHash(read.value) === theirs.get(engineKey.toString('latin1'))) continue;
        batch.push({ namespace: parsed.namespace, key: parsed.key, object: read.value });
        batchBytes += engineKey.length + read.value.length;
      }
      if (batch.length === 0) continue;
      const refused = await sendObjects(this.options.messenger, this.options.membership, peer, batch, this.options.requestTimeoutMs);
      this.counters.keysPushed += batch.length - refused.length;
      this.counters.bytesSent += batchBytes;
      sentBytes += batchBytes;
      await throttle(this.options.clock, sentBytes, this.options.bytesPerSecond, startedMs);
    }
  }

  private async fetchAndMerge(peer: string, engineKeys: readonly Buffer[]): Promise<void> {
    const reply = await this.request<{ objects: (Uint8Array | null)[] }>(peer, antiEntropyMessages.fetch, { engineKeys });
    this.counters.bytesSent += engineKeys.reduce((sum, key) => sum + key.length, 0);
    // All at once: with sync always the merges share the commit log's fsyncs instead of waiting
    // for one fsync each.
    const merged = await Promise.all(
      reply.objects.map((object, index) => {
        const parsed = parseStorageKey(engineKeys[index] as Buffer);
        return object === null || parsed === undefined ? undefined : this.options.local.mergeObject(parsed.namespace, parsed.key, object);
      }),
    );
    this.counters.keysFetched += merged.filter((result) => result?.ok === true).length;
  }

  private bothPrimaries(engineKey: Uint8Array, peer: string): boolean {
    const parsed = parseStorageKey(engineKey);
    if (parsed === undefined) return false;
    const primaries = this.options.primariesOf(parsed.namespace, parsed.key);
    return primaries.includes(peer) && primaries.includes(this.options.self);
  }

  /**
   * This node's (key, version hash) of the objects in `segments` of a partition, at most
   * listedKeysMax. A segment whose listed keys hash differently from the tree, while the
   * partition saw no change during the listing, means the tree is stale: it is rebuilt, and
   * undefined is answered (nothing to compare against until then).
   */
  private async listKeys(partition: number, segments: readonly number[]): Promise<ListedKey[] | undefined> {
    const entry = this.trees.get(partition);
    if (entry?.built !== true) return undefined;
    const wanted = new Set(segments);
    const changesBefore = entry.changes;
    const segmentHashes = new Map<number, bigint>();
    const listed: ListedKey[] = [];
    let count = 0;
    for await (const object of this.options.local.partitionObjects(partition, this.options.membership.ring.partitionCount)) {
      const segment = segmentOf(entry.tree, object.engineKey);
      if (++count % scanSliceEntries === 0) await sleep(this.options.clock, 0);
      if (!wanted.has(segment)) continue;
      const hash = objectVersionHash(object.object);
      if (listed.length < listedKeysMax) listed.push({ engineKey: Buffer.from(object.engineKey), hash });
      segmentHashes.set(segment, (segmentHashes.get(segment) ?? 0n) ^ keyVersionHash(object.engineKey, hash));
    }
    if (this.trees.get(partition) === entry && entry.changes === changesBefore) {
      const stale = segments.some((segment) => (segmentHashes.get(segment) ?? 0n) !== segmentHash(entry.tree, segment));
      if (stale) {
        mark('aae.tree-rebuilt-stale');
        this.counters.treesRebuilt++;
        this.options.logger.warn({ partition }, 'anti-entropy tree disagreed with the store; rebuilding it');
        this.trees.delete(partition);
        return undefined;
      }
    }
    return listed;
  }

  private registerHandlers(): void {
    const { messenger } = this.options;
    messenger.handle(antiEntropyMessages.roots, (body) => {
      const { partitions } = body as { partitions: number[] };
      const roots = new BigUint64Array(partitions.length);
      const built = partitions.map((partition, index) => {
        const entry = this.trees.get(partition);
        if (entry?.built !== true || this.awaiting(partition)) return false;
        roots[index] = rootHash(entry.tree);
        return true;
      });
      const bytes = hashesToBytes(roots);
      this.counters.bytesSent += bytes.length;
      return { roots: bytes, built };
    });
    messenger.handle(antiEntropyMessages.level, (body) => {
      const { partition, level, parents } = body as { partition: number; level: number; parents: number[] };
      const entry = this.trees.get(partition);
      if (entry?.built !== true) return { notBuilt: true };
      const request: LevelRequest = { level, nodes: level === 0 ? [0] : childrenOf(entry.tree, level - 1, parents) };
      const hashes = hashesToBytes(answerRequest(entry.tree, request).hashes);
      this.counters.bytesSent += hashes.length;
      return { hashes };
    });
    messenger.handle(antiEntropyMessages.keys, async (body) => {
      const { partition, segments } = body as { partition: number; segments: number[] };
      const listed = (await this.listKeys(partition, segments)) ?? [];
      const entries = listed.map(({ engineKey, hash }) => [engineKey, hashesToBytes(BigUint64Array.of(hash))]);
      this.counters.bytesSent += listed.reduce((sum, { engineKey }) => sum + engineKey.length + 8, 0);
      return { entries } as unknown as MessageBody;
    });
    messenger.handle(antiEntropyMessages.fetch, async (body) => {
      const { engineKeys } = body as { engineKeys: Uint8Array[] };
      const objects: (Uint8Array | null)[] = [];
      for (const engineKey of engineKeys.slice(0, batchEntriesMax)) {
        const read = await this.options.local.readEngineKey(Buffer.from(engineKey));
        objects.push(read.ok && read.value !== undefined ? read.value : null);
      }
      this.counters.bytesSent += objects.reduce((sum, object) => sum + (object?.length ?? 0), 0);
      return { objects } as unknown as MessageBody;
    });
    messenger.handle(antiEntropyMessages.reapCheck, async (body) => {
      const { entries } = body as { entries: [Uint8Array, Uint8Array][] };
      const held: number[] = [];
      for (const [index, [engineKey, hash]] of entries.entries()) {
        const read = await this.options.local.readEngineKey(Buffer.from(engineKey));
        if (read.ok && read.value !== undefined && objectVersionHash(read.value) === bytesToHashes(hash)[0]) held.push(index);
      }
      return { held };
    });
    messenger.handle(antiEntropyMessages.reap, async (body) => {
      const { entries } = body as { entries: [Uint8Array, Uint8Array][] };
      let reaped = 0;
      for (const [engineKey, hash] of entries) {
        const result = await this.options.local.reapTombstone(Buffer.from(engineKey), bytesToHashes(hash)[0] as bigint);
        if (result.ok && result.value) reaped++;
      }
      this.counters.reapedTombstones += reaped;
      return { reaped };
    });
  }

  /**
   * Reaps old tombstones of the next partition this node is the first replica of, when every
   * replica is up, no handoff runs here, and each replica holds the same tombstone.
   */
  private async reapPass(): Promise<void> {
    if (this.options.handoffBusy()) return;
    const ring = this.options.membership.ring;
    const n = this.options.replicaCount();
    // Every partition this node is the first replica of, with a tree or not: reaping reads the
    // stores, not the trees (a partition with N = 1 has no tree and still reaps).
    const firsts = this.replicated().filter((partition) => replicaSet(ring, partition, n)[0] === this.options.self);
    if (firsts.length === 0) return;
    const partition = firsts[this.reapCursor++ % firsts.length] as number;
    const replicas = replicaSet(ring, partition, n);
    const others = replicas.filter((nodeId) => nodeId !== this.options.self);
    if (replicas.length < n || !others.every((nodeId) => this.options.membership.isUp(nodeId))) return;
    const candidates = await this.oldTombstones(partition);
    if (candidates.length === 0) return;
    let agreed = candidates.map((_, index) => index);
    for (const nodeId of others) {
      const { held } = await this.request<{ held: number[] }>(nodeId, antiEntropyMessages.reapCheck, { entries: candidates });
      const heldSet = new Set(held);
      agreed = agreed.filter((index) => heldSet.has(index));
    }
    if (agreed.length === 0) return;
    const entries = agreed.map((index) => candidates[index] as [Buffer, Uint8Array]);
    for (const nodeId of others) await this.request<{ reaped: number }>(nodeId, antiEntropyMessages.reap, { entries });
    for (const [engineKey, hash] of entries) {
      const result = await this.options.local.reapTombstone(engineKey, bytesToHashes(hash)[0] as bigint);
      if (result.ok && result.value) this.counters.reapedTombstones++;
    }
  }

  /** Up to reapBatchMax objects of a partition that hold only tombstones, the newest older than the grace period. */
  private async oldTombstones(partition: number): Promise<[Buffer, Uint8Array][]> {
    const cutoffMs = this.options.clock.wallMs() - this.options.tombstoneGraceMs;
    const found: [Buffer, Uint8Array][] = [];
    let count = 0;
    for await (const object of this.options.local.partitionObjects(partition, this.options.membership.ring.partitionCount)) {
      if (++count % scanSliceEntries === 0) await sleep(this.options.clock, 0);
      const { present, newestWrittenAtMs } = decodeHistory(object.object);
      if (present || newestWrittenAtMs > cutoffMs) continue;
      found.push([Buffer.from(object.engineKey), hashesToBytes(BigUint64Array.of(objectVersionHash(object.object)))]);
      if (found.length >= reapBatchMax) break;
    }
    return found;
  }
}

function hex(hash: bigint): string {
  return hash.toString(16).padStart(16, '0');
}

/** 64-bit hashes on the wire: 8 bytes each, big-endian, whatever the machine's byte order. */
function hashesToBytes(hashes: BigUint64Array): Uint8Array {
  const bytes = Buffer.alloc(hashes.length * 8);
  hashes.forEach((hash, index) => bytes.writeBigUInt64BE(hash, index * 8));
  return bytes;
}

function bytesToHashes(bytes: Uint8Array): BigUint64Array {
  assert(bytes.length % 8 === 0, 'hashes come 8 bytes each');
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const hashes = new BigUint64Array(bytes.length / 8);
  for (let index = 0; index < hashes.length; index++) hashes[index] = view.readBigUInt64BE(index * 8);
  return hashes;
}
