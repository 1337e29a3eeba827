import { join as joinPath } from 'node:path';
import { mark } from '../core/simulation-hooks.js';
import type { Ring } from '../core/ring-state.js';
import { keyPartition, prefixPartition } from '../core/token.js';
import { planTransfers, replanTransfer, replicaSet } from '../core/transfer-plan.js';
import type { TimerHandle } from '../world/clock.js';
import { writeFileAtomic, type FileSystem } from '../world/file-system.js';
import type { NodeContext } from './coordinator.js';
import { batchBytesMax, batchEntriesMax, sendObjects, throttle, type HandedOffObject } from './hinted-handoff.js';
import { engineKeyTokenPrefix } from './storage-key.js';

/**
 * Ownership handoff: when the ring changes, the partitions this node no longer keeps (or must feed
 * to a new replica) stream to their new replicas in the background (src/core/transfer-plan.ts
 * says who sends what to whom).
 *
 * - Bounded: at most `transferLimit` partitions move at once (Riak's transfer_limit, default 2),
 *   in batches of at most 256 objects / 1 MiB, each acknowledged by every target before the next
 *   (back-pressure), throttled to `bytesPerSecond`.
 * - Resumable: each transfer's cursor (the last engine key every target acknowledged) is kept in
 *   `<dataDir>/transfers.json` after each batch, so a restart continues where it stopped instead
 *   of starting the partition over (the pain Riak users reported most).
 * - Nothing lost: a write that reaches this node for a partition it is handing off (from a
 *   coordinator that has not seen the new ring yet) is applied here and forwarded to the targets
 *   before it is acknowledged (`forwardTargets`); the copy is dropped only after every batch was
 *   acknowledged, key by key, keeping the objects that wait here as hints.
 * - A partition this node holds data of but is no replica of, with no transfer for it (a write
 *   that arrived after a transfer finished), gets one, found by a sweep at start, after every
 *   ring change and every minute.
 * - A node that leaves hands everything off and then calls `onLeft` (the process exits).
 */

export type TransferState = 'pending' | 'sending' | 'sent' | 'done';

export interface Transfer {
  readonly partition: number;
  readonly partitionCount: number;
  targets: string[];
  /** This node is no longer a replica: its copy is dropped once sent. */
  drop: boolean;
  state: TransferState;
  /** Hex of the last engine key every target acknowledged; null before the first batch. */
  cursor: string | null;
  /** Objects in the partition when the transfer started (the progress bar's total). */
  totalObjects: number | null;
  sentObjects: number;
  sentBytes: number;
  /** Ring epoch the transfer was planned for. */
  epoch: number;
  createdAtMs: number;
  startedAtMs: number | null;
  finishedAtMs: number | null;
  /** Why the last attempt stopped, while it waits for the next (a target down, a failed batch). */
  waiting: string | null;
}

export interface TransferServiceOptions extends NodeContext {
  readonly fs: FileSystem;
  readonly dataDir: string;
  /** The widest N any key is stored with: the replica sets transfers follow. */
  readonly replicaCount: () => number;
  readonly transferLimit: number;
  readonly bytesPerSecond: number;
  readonly intervalMs: number;
  readonly requestTimeoutMs: number;
  /** Hints still waiting on this node (a leaving node stays until they are delivered). */
  readonly pendingHints: () => number;
  /** The nodes this node holds hints for: objects with their markers are not dropped with a partition. */
  readonly hintTargets: () => readonly string[];
  /** Called once, when this node left the cluster and handed everything off. */
  readonly onLeft?: (() => void) | undefined;
}

export interface TransferReport {
  readonly nodeId: string;
  readonly transferLimit: number;
  readonly transfers: readonly (Transfer & { readonly bytesPerSecond: number })[];
}

const stateFile = 'transfers.json';

/**
 * `complete` {partition}: the sender has sent the target everything of the partition (its
 * anti-entropy then takes the partition up: until then it would fetch what the transfer brings).
 */
export const transferMessages = { complete: 'handoff.partition-complete', pending: 'handoff.transfers-pending' } as const;

/**
 * `pending` {target, partitions}: which of `partitions` this node still has to send to `target`,
 * with the ring it planned by (a receiver trusts a "none" only from a node on the same ring).
 */
export interface PendingTransfersAnswer {
  readonly epoch: number;
  readonly claimant: string;
  readonly partitions: number[];
}
const sweepIntervalMs = 60_000;
/** Finished transfers shown in reports for this long. */
const doneShownMs = 10 * 60_000;

interface Batch {
  readonly objects: HandedOffObject[];
  readonly lastKey: Uint8Array | undefined;
  readonly bytes: number;
}

export class TransferService {
  private readonly transfers = new Map<number, Transfer>();
  private readonly running = new Set<number>();
  private timer: TimerHandle | undefined;
  private stopped = false;
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;
  private writing = false;
  private lastSweepMs = Number.NEGATIVE_INFINITY;
  private sweeping: Promise<void> | undefined;
  private left = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** Transfers whose partition was written to while its copy was being dropped. */
  private readonly touchedWhileDropping = new Set<Transfer>();
  /** While a sweep runs: the partitions with hints, and those written to since it began. */
  private writtenWhileSweeping: Set<number> | undefined;

  private stopObserving: () => void = () => undefined;

  private constructor(private readonly options: TransferServiceOptions) {}

  static async open(options: TransferServiceOptions): Promise<TransferService> {
    const service = new TransferService(options);
    service.stopObserving = options.local.observeChanges({
      changed: (engineKey, _before, after) => {
        if (after !== undefined) service.written(engineKey);
      },
      invalidated: () => undefined,
    });
    const path = joinPath(options.dataDir, stateFile);
    if (await options.fs.exists(path)) {
      const kept = JSON.parse(Buffer.from(await options.fs.readFile(path)).toString('utf8')) as { transfers?: Transfer[] };
      for (const transfer of kept.transfers ?? []) service.transfers.set(transfer.partition, { ...transfer, waiting: null });
      const open = [...service.transfers.values()].filter((transfer) => transfer.state !== 'done');
      if (open.length > 0) options.logger.info({ transfers: open.length, partitions: open.map((transfer) => transfer.partition) }, 'resuming partition transfers');
    }
    return service;
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
    await Promise.all([...this.inFlight, this.sweeping]);
    await this.saving;
  }

  /** The ring changed from `previous` to `current`: plan this node's part of the handoff. */
  ringChanged(previous: Ring, current: Ring): void {
    const n = this.options.replicaCount();
    const planned = new Map(planTransfers(previous, current, this.options.self, n).map((transfer) => [transfer.partition, transfer]));
    const now = this.options.clock.wallMs();
    for (let partition = 0; partition < current.partitionCount; partition++) {
      const existing = this.transfers.get(partition);
      const underWay = existing === undefined ? undefined : { targets: existing.targets, drop: existing.drop, sending: existing.state === 'pending' || existing.state === 'sending', done: existing.state === 'done' };
      const next = replanTransfer(underWay, planned.get(partition), replicaSet(current, partition, n), this.options.self);
      if (next.kind === 'none' || next.kind === 'keep') continue;
      if (next.kind === 'restart') this.transfers.set(partition, this.newTransfer(partition, current, [...next.targets], next.drop, now));
      else if (existing === undefined) continue;
      else if (next.kind === 'finish') {
        // A replica again (a change undone) that owes nobody: its copy stays and a transfer
        // under way never drops it.
        Object.assign(existing, { drop: false, state: 'done', finishedAtMs: existing.finishedAtMs ?? now });
        this.transfers.delete(partition);
      } else {
        // Goes on from its cursor (every target kept has had every batch so far).
        Object.assign(existing, { targets: [...next.targets], drop: next.drop });
      }
    }
    this.save();
    this.lastSweepMs = Number.NEGATIVE_INFINITY;
  }

  /**
   * Where a write to a key of a partition this node is handing off must also go before it is
   * acknowledged: the targets of a transfer under way; empty when the partition is not being
   * handed off.
   */
  forwardTargets(namespace: string, key: Uint8Array): readonly string[] {
    if (this.transfers.size === 0) return [];
    const ring = this.options.membership.ring;
    const partition = keyPartition(namespace, key, ring.partitionCount);
    const transfer = this.transfers.get(partition);
    // Once the copy is dropped, a late write stays here and reopens the transfer (`written`).
    if (transfer === undefined || !transfer.drop || transfer.state === 'done') return [];
    return this.replicates(partition) ? [] : transfer.targets;
  }

  /**
   * An object was stored here. In a partition whose handoff finished (a late hint, a write from a
   * coordinator on an old ring — already forwarded to the targets), the copy left behind is
   * handed off again rather than kept.
   */
  private written(engineKey: Buffer): void {
    if (this.transfers.size === 0 && this.writtenWhileSweeping === undefined) return;
    const partition = prefixPartition(engineKeyTokenPrefix(engineKey), this.options.membership.ring.partitionCount);
    this.writtenWhileSweeping?.add(partition);
    const transfer = this.transfers.get(partition);
    if (transfer === undefined || !transfer.drop) return;
    if (transfer.state === 'sent') this.touchedWhileDropping.add(transfer);
    if (transfer.state === 'done') this.reopen(transfer);
  }

  /** Whether this node is one of the partition's replicas on its current ring. */
  private replicates(partition: number): boolean {
    return replicaSet(this.options.membership.ring, partition, this.options.replicaCount()).includes(this.options.self);
  }

  /** A handed-off partition holds data again: it is handed off again. */
  private reopen(transfer: Transfer): void {
    Object.assign(transfer, { state: 'pending', cursor: null, totalObjects: null, sentObjects: 0, sentBytes: 0, startedAtMs: null, finishedAtMs: null });
    mark('handoff.transfer-reopened');
    this.save();
  }

  report(): TransferReport {
    const now = this.options.clock.wallMs();
    const transfers = [...this.transfers.values()]
      .filter((transfer) => transfer.state !== 'done' || (transfer.finishedAtMs !== null && now - transfer.finishedAtMs < doneShownMs))
      .sort((a, b) => a.partition - b.partition)
      .map((transfer) => {
        const elapsedMs = transfer.startedAtMs === null ? 0 : (transfer.finishedAtMs ?? now) - transfer.startedAtMs;
        return { ...transfer, targets: [...transfer.targets], bytesPerSecond: elapsedMs > 0 ? Math.round((transfer.sentBytes * 1000) / elapsedMs) : 0 };
      });
    return { nodeId: this.options.self, transferLimit: this.options.transferLimit, transfers };
  }

  /** Of `partitions`, those with a transfer to `target` that has not sent everything yet. */
  pendingTo(target: string, partitions: readonly number[]): PendingTransfersAnswer {
    const ring = this.options.membership.ring;
    const pending = partitions.filter((partition) => {
      const transfer = this.transfers.get(partition);
      return transfer !== undefined && (transfer.state === 'pending' || transfer.state === 'sending') && transfer.targets.includes(target);
    });
    return { epoch: ring.epoch, claimant: ring.claimant, partitions: pending };
  }

  /** Transfers not finished yet (sending or waiting to drop). */
  get unfinished(): number {
    let count = 0;
    for (const transfer of this.transfers.values()) if (transfer.state !== 'done') count++;
    return count;
  }

  private newTransfer(partition: number, ring: Ring, targets: string[], drop: boolean, now: number): Transfer {
    return {
      partition, partitionCount: ring.partitionCount, targets, drop, state: 'pending', cursor: null, totalObjects: null,
      sentObjects: 0, sentBytes: 0, epoch: ring.epoch, createdAtMs: now, startedAtMs: null, finishedAtMs: null, waiting: null,
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(this.options.intervalMs, () => {
      this.tick();
      this.schedule();
    });
  }

  private track(work: Promise<void>): void {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
  }

  /** Starts transfers up to the limit, sweeps for leftovers, checks a leave. */
  private tick(): void {
    if (this.stopped) return;
    this.pump();
    const now = this.options.clock.nowMs();
    if (this.sweeping === undefined && now - this.lastSweepMs >= sweepIntervalMs) {
      this.lastSweepMs = now;
      this.sweeping = this.sweep()
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'looking for partitions to hand off failed'))
        .finally(() => (this.sweeping = undefined));
    }
    this.checkLeft();
  }

  /** Starts transfers while fewer than the limit run; each one finished starts the next at once. */
  private pump(): void {
    if (this.stopped) return;
    for (const transfer of [...this.transfers.values()].sort((a, b) => a.partition - b.partition)) {
      if (this.running.size >= this.options.transferLimit) break;
      if (this.running.has(transfer.partition) || transfer.state === 'done') continue;
      const down = transfer.targets.filter((target) => !this.options.membership.isUp(target));
      if (down.length > 0 && transfer.state !== 'sent') {
        transfer.waiting = `target${down.length > 1 ? 's' : ''} ${down.join(', ')} down`;
        continue;
      }
      this.running.add(transfer.partition);
      const before = { state: transfer.state, sent: transfer.sentObjects };
      this.track(
        this.run(transfer)
          .catch((error: unknown) => {
            transfer.waiting = `failed: ${String(error instanceof Error ? error.message : error)}`;
            this.options.logger.info({ partition: transfer.partition, targets: transfer.targets, err: error }, 'partition transfer interrupted; will resume');
          })
          .finally(() => {
            this.running.delete(transfer.partition);
            // A run that moved on makes room for the next one now; one that failed or got
            // nowhere (waiting for hints, for a target) waits for the next tick.
            const moved = transfer.state !== before.state || transfer.sentObjects !== before.sent;
            if (transfer.waiting === null && moved) this.pump();
          }),
      );
    }
  }

  /** One transfer, batch by batch from its cursor, then the drop of this node's copy. */
  private async run(transfer: Transfer): Promise<void> {
    const { local } = this.options;
    if (this.transfers.get(transfer.partition) !== transfer) return;
    if (transfer.state === 'pending') {
      transfer.state = 'sending';
      transfer.startedAtMs = this.options.clock.wallMs();
      transfer.totalObjects = (await local.partitionStats(transfer.partition, transfer.partitionCount)).objects;
      this.options.logger.info({ partition: transfer.partition, targets: transfer.targets, objects: transfer.totalObjects, drop: transfer.drop }, 'partition transfer started');
      this.save();
    }
    transfer.waiting = null;
    while (transfer.state === 'sending') {
      if (this.stopped || this.transfers.get(transfer.partition) !== transfer) return;
      const startedMs = this.options.clock.nowMs();
      const batch = await this.readBatch(transfer);
      if (batch.objects.length === 0) {
        await Promise.all(transfer.targets.map((target) => this.announceComplete(target, transfer.partition)));
        if (this.transfers.get(transfer.partition) !== transfer) return;
        transfer.state = transfer.drop ? 'sent' : 'done';
        if (!transfer.drop) transfer.finishedAtMs = this.options.clock.wallMs();
        this.save();
        break;
      }
      await Promise.all(transfer.targets.map((target) => this.send(target, batch.objects)));
      if (this.transfers.get(transfer.partition) !== transfer) return;
      transfer.cursor = batch.lastKey === undefined ? transfer.cursor : Buffer.from(batch.lastKey).toString('hex');
      transfer.sentObjects += batch.objects.length;
      transfer.sentBytes += batch.bytes * transfer.targets.length;
      mark('handoff.transfer-batch-sent');
      this.save();
      await throttle(this.options.clock, batch.bytes * transfer.targets.length, this.options.bytesPerSecond, startedMs);
    }
    if (transfer.state === 'sent') await this.dropCopy(transfer);
  }

  private async readBatch(transfer: Transfer): Promise<Batch> {
    const objects: HandedOffObject[] = [];
    let bytes = 0;
    let lastKey: Uint8Array | undefined;
    const after = transfer.cursor === null ? {} : { after: Buffer.from(transfer.cursor, 'hex') };
    for await (const entry of this.options.local.partitionObjects(transfer.partition, transfer.partitionCount, { ...after, limit: batchEntriesMax })) {
      objects.push({ namespace: entry.namespace, key: Buffer.from(entry.key), object: Buffer.from(entry.object) });
      bytes += entry.engineKey.length + entry.object.length;
      lastKey = Buffer.from(entry.engineKey);
      if (bytes >= batchBytesMax) break;
    }
    return { objects, lastKey, bytes };
  }

  private async announceComplete(target: string, partition: number): Promise<void> {
    const address = this.options.membership.addressOf(target);
    if (address === undefined) throw new Error(`no address known for ${target}`);
    const answer = await this.options.messenger.request(address, transferMessages.complete, { partition }, { timeoutMs: this.options.requestTimeoutMs });
    if ((answer as { accepted?: unknown }).accepted !== true) throw new Error(`${target} is not a replica of partition ${partition} on its ring yet`);
  }

  /** Sends a batch; a target that refuses any of it (its ring does not make it their replica yet) fails the batch, tried again later. */
  private async send(target: string, objects: readonly HandedOffObject[]): Promise<void> {
    const refused = await sendObjects(this.options.messenger, this.options.membership, target, objects, this.options.requestTimeoutMs);
    if (refused.length > 0) throw new Error(`${target} refused ${refused.length} objects: it is not their replica on its ring yet`);
  }

  /**
   * Drops this node's copy, but the objects that wait here as hints (hinted handoff gives those
   * back and removes them itself).
   */
  private async dropCopy(transfer: Transfer): Promise<void> {
    // Checked right before the drop: the transfer is still the one planned, and this node is
    // still no replica of the partition on its ring.
    if (this.transfers.get(transfer.partition) !== transfer || !transfer.drop) return;
    if (this.replicates(transfer.partition)) {
      // A replica of it after all (a ring change this service was not told of, a wider N): keep it.
      Object.assign(transfer, { drop: false, state: 'done', finishedAtMs: this.options.clock.wallMs(), waiting: null });
      this.transfers.delete(transfer.partition);
      this.save();
      return;
    }
    this.touchedWhileDropping.delete(transfer);
    const dropped = await this.options.local.dropHandedOff(transfer.partition, transfer.partitionCount, this.options.hintTargets());
    if (!dropped.ok) throw new Error(`dropping partition ${transfer.partition} failed: ${dropped.message}`);
    if (this.touchedWhileDropping.delete(transfer)) {
      // Written to while the drop ran (forwarded to the targets first): what it left goes too.
      this.reopen(transfer);
      return;
    }
    transfer.state = 'done';
    transfer.waiting = null;
    transfer.finishedAtMs = this.options.clock.wallMs();
    mark('handoff.partition-handed-off');
    this.options.logger.info({ partition: transfer.partition, targets: transfer.targets, objects: transfer.sentObjects, bytes: transfer.sentBytes, deleted: dropped.value }, 'partition handed off; local copy dropped');
    this.save();
  }

  /**
   * Partitions this node holds data of without being one of their replicas and without a transfer
   * under way (a write that arrived after its transfer finished, a transfer lost with its state
   * file): each gets a transfer to the partition's first replica. Partitions with hints waiting
   * here are left to hinted handoff.
   */
  private async sweep(): Promise<void> {
    const ring = this.options.membership.ring;
    // A node still joining may not know the ring that makes it a replica of what it receives.
    const self = this.options.membership.current.members.find((member) => member.nodeId === this.options.self);
    if (self === undefined || self.status === 'joining') return;
    // A partition written to after the markers were read may have a hint the set misses (a
    // fallback write): it waits for the next sweep rather than being handed off with its hint.
    const hinted = new Set<number>();
    this.writtenWhileSweeping = hinted;
    try {
      for await (const marker of this.options.local.hintMarkers()) hinted.add(prefixPartition(engineKeyTokenPrefix(marker.engineKey), ring.partitionCount));
      await this.sweepPartitions(ring, hinted);
    } finally {
      this.writtenWhileSweeping = undefined;
    }
  }

  private async sweepPartitions(ring: Ring, hinted: ReadonlySet<number>): Promise<void> {
    const n = this.options.replicaCount();
    const now = this.options.clock.wallMs();
    let added = 0;
    for (let partition = 0; partition < ring.partitionCount; partition++) {
      if (this.stopped) return;
      const existing = this.transfers.get(partition);
      if ((existing !== undefined && existing.state !== 'done') || hinted.has(partition)) continue;
      const replicas = replicaSet(ring, partition, n);
      if (replicas.includes(this.options.self)) continue;
      let holds = false;
      for await (const _ of this.options.local.partitionObjects(partition, ring.partitionCount, { limit: 1 })) holds = true;
      if (!holds) continue;
      const targets = existing?.targets.filter((target) => replicas.includes(target)) ?? [];
      this.transfers.set(partition, this.newTransfer(partition, ring, targets.length > 0 ? targets : [replicas[0] as string], true, now));
      added++;
    }
    if (added > 0) {
      this.options.logger.info({ partitions: added }, 'found data of partitions this node is no replica of; handing it off');
      this.save();
    }
  }

  /** A node that left the ring, with nothing left to hand off, is done. */
  private checkLeft(): void {
    if (this.left || this.options.onLeft === undefined) return;
    const self = this.options.membership.current.members.find((member) => member.nodeId === this.options.self);
    if (self === undefined || self.status === 'valid' || self.status === 'joining') return;
    if (this.options.membership.ring.owners.includes(this.options.self)) return;
    if (this.unfinished > 0 || this.sweeping !== undefined || this.lastSweepMs === Number.NEGATIVE_INFINITY || this.options.pendingHints() > 0) return;
    this.left = true;
    this.options.logger.info('left the cluster: every partition and hint handed off');
    this.options.onLeft();
  }

  /**
   * Keeps the transfers in the state file. Saves coalesce: while one is written, later calls mark
   * the state dirty and one more write follows with the state as it is then (a crash in between
   * loses at most the last cursor moves, and a batch is sent again).
   */
  private save(): void {
    this.dirty = true;
    if (this.writing) return;
    this.writing = true;
    this.saving = (async () => {
      while (this.dirty) {
        this.dirty = false;
        const body = Buffer.from(JSON.stringify({ version: 1, transfers: [...this.transfers.values()].map(({ waiting: _waiting, ...kept }) => kept) }));
        await writeFileAtomic(this.options.fs, joinPath(this.options.dataDir, stateFile), body).catch((error: unknown) =>
          this.options.logger.error({ err: error }, 'keeping the transfer state failed'),
        );
      }
      this.writing = false;
    })();
  }
}

