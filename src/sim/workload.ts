import { join, values } from '../core/dvv.js';
import type { Random } from '../core/random.js';
import type { KeyValueStore, ReadResult, WriteOutcome } from '../node/kv-service.js';
import { decodeObject } from '../node/stored-object.js';
import type { Result } from '../core/errors.js';
import type { Scheduler } from './scheduler.js';
import type { SimCluster } from './sim-cluster.js';
import type { Trace } from './sim-world.js';

/** The namespaces the virtual clients use: causal siblings (the default mode) and last-write-wins. */
export const siblingsNamespace = 'sib';
export const lwwNamespace = 'lww';

/** One client operation, from its invocation to its completion (or the client giving up on it). */
export interface HistoryOperation {
  readonly id: number;
  readonly client: number;
  readonly node: string;
  readonly kind: 'put' | 'get' | 'delete';
  readonly namespace: string;
  readonly key: string;
  /** A put's value: unique in the run (`client.sequence`). */
  readonly value?: string;
  /** The causal context the client sent; absent: a blind write. */
  readonly context?: string;
  /** Per-request N; absent: the namespace's (3). */
  readonly n?: number;
  readonly r?: number;
  readonly w?: number;
  readonly invokedAtMs: number;
  completedAtMs?: number;
  /** ok: acknowledged; fail: an error answer; timeout: no answer in time (it may or may not have happened). */
  outcome: 'pending' | 'ok' | 'fail' | 'timeout';
  error?: string;
  /** A get's answer: the live sibling values, sorted, and the context. */
  read?: { readonly values: readonly string[]; readonly context: string };
  /** An acknowledged put: the dot its value got at the coordinating replica, and its timestamp. */
  dot?: readonly [string, number];
  writtenAtMs?: number;
  /** An acknowledged blind delete: the clock of the object it left and the live values it kept (what it superseded is the rest). */
  after?: { readonly clock: readonly (readonly [string, number])[]; readonly values: readonly string[] };
}

export interface WorkloadOptions {
  readonly clients: number;
  readonly keys: number;
  /** Cold keys: a quarter of the operations spread over them. */
  readonly coldKeys: number;
  /** Virtual ms between a client's operations, drawn from [0, thinkMsMax]. */
  readonly thinkMsMax: number;
  /** Write quorums the clients choose from per request. */
  readonly writeQuorums: readonly number[];
  readonly readQuorums: readonly number[];
  /** A client gives up on an operation after this long (virtual ms): outcome `timeout`. */
  readonly clientTimeoutMs: number;
  /** Values of cold keys are `client.sequence` padded with up to this many bytes, so memtables fill, flush and compact. */
  readonly valuePaddingMax: number;
}

/**
 * Virtual clients against random coordinators: blind puts, puts with a possibly stale context,
 * gets, updates (get, then put with its context), deletes with and without context, each with a
 * per-request R or W, recorded in the history as invoked and completed.
 */
export class Workload {
  readonly history: HistoryOperation[] = [];
  private nextId = 0;
  private stopped = false;
  private readonly running: Promise<void>[] = [];
  private readonly ackWatchers: (() => void)[] = [];

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: Random,
    private readonly trace: Trace,
    private readonly options: WorkloadOptions,
  ) {}

  start(): void {
    for (let client = 1; client <= this.options.clients; client++) this.running.push(this.client(client));
  }

  /** Clients issue nothing new; resolves once every operation in flight has completed or timed out. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.running);
  }

  get completed(): number {
    return this.history.filter((operation) => operation.outcome !== 'pending').length;
  }

  private get scheduler(): Scheduler {
    return this.cluster.scheduler;
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => this.scheduler.schedule(ms, resolve));
  }

  private async client(client: number): Promise<void> {
    const random = this.random;
    const contexts = new Map<string, string>();
    let sequence = 0;
    while (!this.stopped) {
      await this.pause(random.nextFloat() * this.options.thinkMsMax);
      if (this.stopped) break;
      const up = this.cluster.nodes.filter((node) => node.store !== undefined);
      if (up.length === 0) continue;
      const node = up[random.nextInt(up.length)]!;
      const lww = random.nextFloat() < 0.25;
      const namespace = lww ? lwwNamespace : siblingsNamespace;
      // Most operations go to a few hot keys (conflicts, siblings); the rest spread over many cold
      // keys, so memtables fill, flush and compact.
      const hot = random.nextFloat() < 0.75;
      const key = hot ? `k${random.nextInt(this.options.keys)}` : `c${random.nextInt(this.options.coldKeys)}`;
      const slot = `${namespace}/${key}`;
      // Cold keys get the padding: hot keys gather siblings, and every write rewrites them all.
      const nextValue = (): string => `${client}.${++sequence}${hot ? '' : '~'.repeat(random.nextInt(this.options.valuePaddingMax + 1))}`;
      const choice = random.nextFloat();
      if (lww) {
        if (choice < 0.6) await this.put(client, node.nodeId, namespace, key, nextValue(), undefined);
        else await this.get(client, node.nodeId, namespace, key);
        continue;
      }
      if (choice < 0.25) {
        await this.put(client, node.nodeId, namespace, key, nextValue(), undefined);
      } else if (choice < 0.35) {
        // A context from an earlier read, perhaps stale by now ('' when that read found nothing).
        const context = contexts.get(slot);
        await this.put(client, node.nodeId, namespace, key, nextValue(), context === '' ? undefined : context);
      } else if (choice < 0.65) {
        const read = await this.get(client, node.nodeId, namespace, key);
        if (read !== undefined) contexts.set(slot, read.context);
      } else if (choice < 0.85) {
        // An update: read, then write back with the read's context.
        const read = await this.get(client, node.nodeId, namespace, key);
        if (read !== undefined && !this.stopped) await this.put(client, node.nodeId, namespace, key, nextValue(), read.values.length > 0 ? read.context : undefined);
      } else if (choice < 0.95) {
        const read = await this.get(client, node.nodeId, namespace, key);
        if (read !== undefined && read.values.length > 0 && !this.stopped) await this.delete(client, node.nodeId, namespace, key, read.context);
      } else {
        await this.delete(client, node.nodeId, namespace, key, undefined);
      }
    }
  }

  private begin(fields: Omit<HistoryOperation, 'id' | 'invokedAtMs' | 'outcome'>): HistoryOperation {
    const operation: HistoryOperation = { id: this.nextId++, invokedAtMs: this.scheduler.nowMs, outcome: 'pending', ...fields };
    this.history.push(operation);
    return operation;
  }

  /** The store's answer, or 'timeout' once the client stops waiting. */
  private async call<T>(node: string, run: (store: KeyValueStore) => Result<T> | Promise<Result<T>>): Promise<Result<T> | 'timeout' | 'down'> {
    const store = this.cluster.node(node).store;
    if (store === undefined) return 'down';
    let timer: { cancel(): void } | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = this.scheduler.schedule(this.options.clientTimeoutMs, () => resolve('timeout'))));
    const answer = await Promise.race([Promise.resolve(run(store)), timeout]);
    timer?.cancel();
    return answer;
  }

  private finish<T>(operation: HistoryOperation, answer: Result<T> | 'timeout' | 'down'): T | undefined {
    operation.completedAtMs = this.scheduler.nowMs;
    if (answer === 'timeout') operation.outcome = 'timeout';
    else if (answer === 'down') {
      operation.outcome = 'fail';
      operation.error = 'the node is down';
    } else if (!answer.ok) {
      operation.outcome = 'fail';
      operation.error = `${answer.code}: ${answer.message}`;
    } else {
      operation.outcome = 'ok';
      if (operation.kind !== 'get' && this.ackWatchers.length > 0) for (const watcher of this.ackWatchers.splice(0)) watcher();
      return answer.value;
    }
    return undefined;
  }

  /** Calls `watcher` once, at the moment the next write or delete is acknowledged to its client. */
  afterNextAck(watcher: () => void): void {
    this.ackWatchers.push(watcher);
  }

  private describe(operation: HistoryOperation): string {
    const quorum = `${operation.n === undefined ? '' : ` n=${operation.n}`}${operation.r !== undefined ? ` r=${operation.r}` : operation.w !== undefined ? ` w=${operation.w}` : ''}`;
    const what = operation.kind === 'put' ? ` = ${shortValue(operation.value!)}${operation.context === undefined ? ' (blind)' : ''}` : operation.kind === 'delete' && operation.context === undefined ? ' (blind)' : '';
    const result = operation.outcome === 'ok' ? (operation.read === undefined ? 'ok' : `[${operation.read.values.map(shortValue).join(' ')}]`) : `${operation.outcome}${operation.error === undefined ? '' : ` (${operation.error.slice(0, 120)})`}`;
    return `#${operation.id} ${operation.kind} ${operation.namespace}/${operation.key}${what}${quorum} @${operation.node} -> ${result}`;
  }

  /**
   * A request's quorum: usually the namespace's N (3) with an R or W from the choices; one in
   * five asks for N=2 (and R or W within it).
   */
  private quorum(kind: 'r' | 'w'): { n?: number; r?: number; w?: number } {
    const choices = kind === 'r' ? this.options.readQuorums : this.options.writeQuorums;
    const value = choices[this.random.nextInt(choices.length)]!;
    if (this.random.nextFloat() >= 0.2) return { [kind]: value };
    return { n: 2, [kind]: Math.min(value, 2) };
  }

  private async get(client: number, node: string, namespace: string, key: string): Promise<HistoryOperation['read']> {
    const quorum = this.quorum('r');
    const operation = this.begin({ client, node, kind: 'get', namespace, key, ...quorum });
    const answer = await this.call(node, (store) => store.get(namespace, Buffer.from(key), quorum));
    const value: ReadResult | undefined | null = this.finish(operation, answer) ?? (operation.outcome === 'ok' ? undefined : null);
    if (value !== null) {
      const values = (value?.siblings ?? []).filter((sibling) => sibling.value !== null).map((sibling) => Buffer.from(sibling.value!).toString('utf8')).sort();
      operation.read = { values, context: value === undefined ? '' : value.context };
    }
    this.trace.add(`c${client}`, this.describe(operation));
    return operation.read;
  }

  private async put(client: number, node: string, namespace: string, key: string, value: string, context: string | undefined): Promise<void> {
    const quorum = this.quorum('w');
    const operation = this.begin({ client, node, kind: 'put', namespace, key, value, ...quorum, ...(context === undefined ? {} : { context }) });
    const answer = await this.call(node, (store) => store.put(namespace, Buffer.from(key), Buffer.from(value), { ...quorum, ...(context === undefined ? {} : { context }) }));
    const outcome: WriteOutcome | undefined = this.finish(operation, answer);
    if (outcome?.encoded !== undefined) {
      const found = findValue(outcome.encoded, value);
      if (found !== undefined) {
        operation.dot = found.dot;
        operation.writtenAtMs = found.writtenAtMs;
      }
    }
    this.trace.add(`c${client}`, this.describe(operation));
  }

  private async delete(client: number, node: string, namespace: string, key: string, context: string | undefined): Promise<void> {
    const quorum = this.quorum('w');
    const operation = this.begin({ client, node, kind: 'delete', namespace, key, ...quorum, ...(context === undefined ? {} : { context }) });
    const answer = await this.call(node, (store) => store.delete(namespace, Buffer.from(key), { ...quorum, ...(context === undefined ? {} : { context }) }));
    const outcome: WriteOutcome | undefined = this.finish(operation, answer);
    if (outcome !== undefined && context === undefined) {
      const object = outcome.encoded === undefined ? undefined : decodeObject(outcome.encoded);
      operation.after = {
        clock: object === undefined ? [] : join(object),
        values: object === undefined ? [] : values(object).filter((sibling) => sibling.value !== null).map((sibling) => Buffer.from(sibling.value!).toString('utf8')),
      };
    }
    this.trace.add(`c${client}`, this.describe(operation));
  }
}

/** A value without its padding, for traces: `3.17~(212)`. */
export function shortValue(value: string): string {
  const padding = value.indexOf('~');
  return padding < 0 ? value : `${value.slice(0, padding)}~(${value.length - padding})`;
}

/** The dot and timestamp of `value` in an encoded stored object, if it is a sibling there. */
export function findValue(encoded: Uint8Array, value: string): { dot: readonly [string, number]; writtenAtMs: number } | undefined {
  const object = decodeObject(encoded);
  for (const entry of object.entries) {
    for (const [index, sibling] of entry.values.entries()) {
      if (sibling.value !== null && Buffer.from(sibling.value).toString('utf8') === value) return { dot: [entry.actor, entry.counter - index], writtenAtMs: sibling.writtenAtMs };
    }
  }
  return undefined;
}
