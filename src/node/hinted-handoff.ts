import { mark } from '../core/simulation-hooks.js';
import type { MessageBody, PeerMessenger } from '../net/peer-messenger.js';
import { sleep, type Clock, type TimerHandle } from '../world/clock.js';
import type { ClusterMembership } from './cluster-membership.js';
import type { NodeContext } from './coordinator.js';
import type { HintMarker, KvService } from './kv-service.js';
import { parseStorageKey } from './storage-key.js';

/**
 * Hinted handoff (Dynamo §4.6). When a primary replica is down, the coordinator writes to the
 * next healthy node instead — a fallback — which stores the object in its engine as usual (so it
 * serves reads of it) together with a hint marker naming the primary, in one atomic batch
 * (KvService `hintFor`). This service gives the data back: once gossip says the primary is up, it
 * reads the markers for it in batches, sends the current objects, and on the primary's ack
 * removes each marker and, when this node is not a replica of the key itself, its copy.
 *
 * Resumable: the markers are the state, kept in the engine, removed batch by batch; a restart
 * continues with what is left. Throttled to `bytesPerSecond`. A primary that left the cluster for
 * good gets nothing; its hints go to the key's current primaries instead. Bounded: beyond
 * `storageBytesMax` of hinted objects this node refuses to stand in for anyone (the coordinator
 * then counts it as a failed replica), and a primary down for longer than the hint window gets no
 * new hints at all (Coordinator `hintWindowMs`).
 */

/** What the coordinator asks of hinted handoff when this node is a fallback. */
export interface HintLedger {
  /** Whether this node may take one more hint (its hint storage is not full). */
  admits(): boolean;
  /** A hint for `target` of an object of `bytes` was written. */
  recorded(target: string, bytes: number): void;
}

export interface HintedHandoffOptions extends NodeContext {
  /** The nodes that keep a key for good (Coordinator.primariesOf). */
  readonly primariesOf: (namespace: string, key: Uint8Array) => readonly string[];
  readonly storageBytesMax: number;
  readonly bytesPerSecond: number;
  /** How often pending hints are looked at. */
  readonly intervalMs: number;
  readonly requestTimeoutMs: number;
}

export interface HandoffReport {
  /** Hints kept now, per target node; bytes are those of the hinted objects when written. */
  readonly pending: readonly { readonly target: string; readonly hints: number; readonly bytes: number; readonly up: boolean }[];
  readonly pendingHints: number;
  readonly pendingBytes: number;
  readonly storageBytesMax: number;
  /** Since this node started. */
  readonly deliveredHints: number;
  readonly deliveredBytes: number;
  readonly refusedHints: number;
}

/** Peer messages of handoff: objects merged into the receiver (hints and partition transfers), and each node's handoff report. */
export const handoffMessages = { objects: 'handoff.objects', report: 'handoff.report' } as const;

export interface HandedOffObject {
  readonly namespace: string;
  readonly key: Uint8Array;
  readonly object: Uint8Array;
}

/**
 * The receiving side of every handoff. Only objects of keys this node is a replica of, on its own
 * ring, are taken (`accepts`): a node whose ring is behind, or that is handing the partition off
 * itself, refuses the rest, and the sender tries again later or elsewhere — data never lands
 * where it would be dropped. Taken objects are merged (DVV sync, so nothing either side holds is
 * lost) and then acknowledged; the answer lists the positions of the refused ones.
 */
export function receiveHandedOffObjects(messenger: PeerMessenger, local: KvService, accepts: (namespace: string, key: Uint8Array) => boolean): void {
  messenger.handle(handoffMessages.objects, async (body) => {
    const { objects } = body as { objects: HandedOffObject[] };
    const refused: number[] = [];
    const taken = objects.filter((entry, index) => {
      if (accepts(entry.namespace, entry.key)) return true;
      refused.push(index);
      return false;
    });
    const results = await Promise.all(taken.map((entry) => local.mergeObject(entry.namespace, entry.key, entry.object)));
    const failed = results.find((result) => !result.ok);
    if (failed !== undefined && !failed.ok) throw new Error(`merging handed-off objects failed: ${failed.message}`);
    return { merged: taken.length, refused };
  });
}

/** Sends handed-off objects to a node; the objects it refused (it is not their replica on its ring). */
export async function sendObjects(messenger: PeerMessenger, membership: ClusterMembership, nodeId: string, objects: readonly HandedOffObject[], timeoutMs: number): Promise<HandedOffObject[]> {
  const address = membership.addressOf(nodeId);
  if (address === undefined) throw new Error(`no address known for ${nodeId}`);
  const reply = (await messenger.request(address, handoffMessages.objects, { objects } as unknown as MessageBody, { timeoutMs })) as { refused?: number[] };
  return (reply.refused ?? []).map((index) => objects[index] as HandedOffObject);
}

/** Bounds of one handoff batch (hints and partition transfers): objects, and bytes (at least one object). */
export const batchEntriesMax = 256;
export const batchBytesMax = 1024 * 1024;

/** Waits, after `sentBytes` went out from `startedMs` on, until the rate is down to `bytesPerSecond`. */
export async function throttle(clock: Clock, sentBytes: number, bytesPerSecond: number, startedMs: number): Promise<void> {
  const dueMs = (sentBytes / bytesPerSecond) * 1000 - (clock.nowMs() - startedMs);
  if (dueMs > 0) await sleep(clock, dueMs);
}

interface Pending {
  hints: number;
  bytes: number;
  /** Hints recorded since this node started (a delivery pass counts those that came in meanwhile). */
  recordedHints: number;
  recordedBytes: number;
}

interface Delivery {
  readonly marker: HintMarker;
  readonly namespace: string;
  readonly key: Uint8Array;
  readonly object: Uint8Array | undefined;
}

export class HintedHandoff implements HintLedger {
  private readonly pending = new Map<string, Pending>();
  private readonly totals = { deliveredHints: 0, deliveredBytes: 0, refusedHints: 0 };
  private timer: TimerHandle | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  private constructor(private readonly options: HintedHandoffOptions) {}

  /** Counts the hints kept on disk (what an earlier run left). */
  static async open(options: HintedHandoffOptions): Promise<HintedHandoff> {
    const handoff = new HintedHandoff(options);
    for await (const marker of options.local.hintMarkers()) handoff.recorded(marker.target, marker.bytes);
    const kept = handoff.report();
    if (kept.pendingHints > 0) options.logger.info({ hints: kept.pendingHints, bytes: kept.pendingBytes, targets: kept.pending.map((entry) => entry.target) }, 'hints to hand off found');
    return handoff;
  }

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Stops delivering; a batch in flight finishes (its markers stay if it was not acknowledged). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }

  admits(): boolean {
    if (this.pendingBytes() < this.options.storageBytesMax) return true;
    this.totals.refusedHints += 1;
    return false;
  }


  report(): HandoffReport {
    const pending = [...this.pending].map(([target, entry]) => ({ target, hints: entry.hints, bytes: entry.bytes, up: this.options.membership.isUp(target) }));
    return {
      pending,
      pendingHints: pending.reduce((sum, entry) => sum + entry.hints, 0),
      pendingBytes: this.pendingBytes(),
      storageBytesMax: this.options.storageBytesMax,
      ...this.totals,
    };
  }

  /** The nodes this node holds hints for now. */
  targets(): string[] {
    return [...this.pending.keys()];
  }

  private pendingBytes(): number {
    let bytes = 0;
    for (const entry of this.pending.values()) bytes += entry.bytes;
    return bytes;
  }

  recorded(target: string, bytes: number): void {
    const entry = this.pending.get(target) ?? { hints: 0, bytes: 0, recordedHints: 0, recordedBytes: 0 };
    entry.hints += 1;
    entry.bytes += bytes;
    entry.recordedHints += 1;
    entry.recordedBytes += bytes;
    this.pending.set(target, entry);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(this.options.intervalMs, () => {
      this.running = this.deliverAll()
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'hinted handoff round failed'))
        .finally(() => {
          this.running = undefined;
          this.schedule();
        });
    });
  }

  /** One round: every target that can take its hints now gets all of them, one batch at a time. */
  private async deliverAll(): Promise<void> {
    for (const target of [...this.pending.keys()]) {
      if (this.stopped) return;
      const destination = this.destination(target);
      if (destination === 'wait') continue;
      await this.deliverTo(target);
    }
  }

  /**
   * Where `target`'s hints go now: to it when it is a member believed up; to each key's current
   * primaries when it left the cluster for good, or is down while this node is leaving; nowhere
   * yet when it is down.
   */
  private destination(target: string): 'target' | 'primaries' | 'wait' {
    const members = this.options.membership.current.members;
    const member = members.find((candidate) => candidate.nodeId === target);
    if (member === undefined || member.status === 'removed') return 'primaries';
    if (this.options.membership.isUp(target)) return 'target';
    // A node on its way out cannot wait for a down target: the key's primaries get the hints.
    const self = members.find((candidate) => candidate.nodeId === this.options.self);
    return self !== undefined && self.status !== 'valid' && self.status !== 'joining' ? 'primaries' : 'wait';
  }

  /**
   * Walks the markers for `target` once, batch by batch. At the end the target's count is what
   * the walk left behind plus what was recorded meanwhile (perhaps behind the walk).
   */
  private async deliverTo(target: string): Promise<void> {
    let after: Buffer | undefined;
    const left = { hints: 0, bytes: 0 };
    const before = { ...(this.pending.get(target) as Pending) };
    for (;;) {
      if (this.stopped || this.destination(target) === 'wait') return;
      const batch = await this.readBatch(target, after);
      if (batch.length === 0) break;
      after = batch[batch.length - 1]!.marker.engineKey;
      const startedMs = this.options.clock.nowMs();
      const sentBytes = await this.sendBatch(target, batch);
      if (sentBytes === undefined) return; // the target failed: the next round tries again
      const completed = await this.complete(target, batch);
      for (const delivery of batch) {
        if (completed.has(delivery)) continue;
        left.hints += 1;
        left.bytes += delivery.marker.bytes;
      }
      await throttle(this.options.clock, sentBytes, this.options.bytesPerSecond, startedMs);
    }
    const now = this.pending.get(target) ?? before;
    const hints = left.hints + now.recordedHints - before.recordedHints;
    const bytes = left.bytes + now.recordedBytes - before.recordedBytes;
    if (hints === 0) this.pending.delete(target);
    else this.pending.set(target, { ...now, hints, bytes });
  }

  private async readBatch(target: string, after: Buffer | undefined): Promise<Delivery[]> {
    const batch: Delivery[] = [];
    let bytes = 0;
    for await (const marker of this.options.local.hintMarkers(target, after)) {
      const parsed = parseStorageKey(marker.engineKey);
      if (parsed === undefined) continue;
      const read = await this.options.local.readEngineKey(marker.engineKey);
      if (!read.ok) throw new Error(`reading a hinted object failed: ${read.message}`);
      batch.push({ marker, namespace: parsed.namespace, key: Buffer.from(parsed.key), object: read.value === undefined ? undefined : Buffer.from(read.value) });
      bytes += read.value?.length ?? 0;
      if (batch.length >= batchEntriesMax || bytes >= batchBytesMax) break;
    }
    return batch;
  }

  /**
   * Sends a batch to where it goes: the target, or each key's primaries; objects the target
   * refuses (its ring says it is no replica of them) go to the key's other primaries. The bytes
   * sent, or undefined when a destination failed or an object found nobody to take it.
   */
  private async sendBatch(target: string, batch: readonly Delivery[]): Promise<number | undefined> {
    const self = this.options.self;
    const primariesOf = (delivery: Delivery | HandedOffObject, skip: string): string[] =>
      this.options.primariesOf(delivery.namespace, delivery.key).filter((nodeId) => nodeId !== self && nodeId !== skip && this.options.membership.isUp(nodeId));
    const toPrimaries = this.destination(target) === 'primaries';
    const perNode = new Map<string, HandedOffObject[]>();
    const add = (nodeId: string, entry: HandedOffObject): void => {
      const list = perNode.get(nodeId) ?? [];
      list.push(entry);
      perNode.set(nodeId, list);
    };
    for (const delivery of batch) {
      if (delivery.object === undefined) continue;
      const entry = { namespace: delivery.namespace, key: delivery.key, object: delivery.object };
      const nodes = toPrimaries ? primariesOf(delivery, '') : [target];
      // A leaving node with no primary up to take a hint keeps it (and so stays) until one is.
      if (nodes.length === 0) return undefined;
      for (const nodeId of nodes) add(nodeId, entry);
    }
    let sent = 0;
    const { messenger, membership, requestTimeoutMs } = this.options;
    try {
      const refusedBy = await Promise.all([...perNode].map(async ([nodeId, objects]) => {
        const refused = await sendObjects(messenger, membership, nodeId, objects, requestTimeoutMs);
        for (const entry of objects) sent += entry.object.length;
        return { nodeId, refused };
      }));
      for (const { nodeId, refused } of refusedBy) {
        for (const entry of refused) {
          const others = primariesOf(entry, nodeId);
          if (others.length === 0) return undefined;
          for (const other of others) if ((await sendObjects(messenger, membership, other, [entry], requestTimeoutMs)).length > 0) return undefined;
        }
      }
    } catch (error) {
      this.options.logger.info({ target, err: error }, 'hint delivery failed; will retry');
      return undefined;
    }
    return sent;
  }

  /** Removes the markers of a delivered batch (and the copies this node does not own). */
  private async complete(target: string, batch: readonly Delivery[]): Promise<Set<Delivery>> {
    const completed = new Set<Delivery>();
    const otherTargets = [...this.pending.keys()].filter((other) => other !== target);
    for (const delivery of batch) {
      const ownsKey = this.options.primariesOf(delivery.namespace, delivery.key).includes(this.options.self);
      const result = await this.options.local.completeHint(target, delivery.marker.engineKey, delivery.object, ownsKey ? undefined : { otherTargets });
      if (!result.ok) throw new Error(`removing a delivered hint failed: ${result.message}`);
      if (!result.value) continue;
      completed.add(delivery);
      mark('handoff.hint-delivered');
      this.totals.deliveredHints += 1;
      this.totals.deliveredBytes += delivery.object?.length ?? 0;
    }
    return completed;
  }
}
