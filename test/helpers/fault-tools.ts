// Fault injection for clusters of real `ringkv` processes on loopback (test/cluster/faults.test.ts):
// a cluster whose nodes each listen on a loopback address of their own, so that a firewall rule
// can cut one off; kill -9, SIGSTOP, partitions, joins, leaves and wiped disks; a bounded write
// and delete load that records what was acknowledged; the checks that nothing acknowledged is
// lost, nothing deleted comes back and every replica converges (equal Merkle roots); and the
// figures of data moved by hints, transfers and anti-entropy.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { Ring } from '../../src/core/ring-state.js';
import { keyPartition } from '../../src/core/token.js';
import { replicaSet } from '../../src/core/transfer-plan.js';
import { clusterArgs, startCluster } from './cluster.js';
import { startNode, temporaryDirectory, type NodePorts, type RunningNode } from './ringkv-process.js';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `body` over `items` with at most `concurrency` at once; results in the items' order. */
export async function mapConcurrent<T, R>(items: readonly T[], concurrency: number, body: (item: T) => Promise<R>): Promise<R[]> {
  assert.ok(concurrency >= 1);
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await body(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}

// ---------------------------------------------------------------------------------------------
// HTTP with a deadline: a stopped or cut-off node must not hang the test.

export interface HttpAnswer {
  /** 0: no answer (refused, reset, or no reply within the deadline). */
  readonly status: number;
  readonly text: string;
  readonly context: string | null;
}

export const httpTimeoutMsDefault = 8000;

export async function http(url: string, init: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  const { timeoutMs = httpTimeoutMsDefault, ...request } = init;
  try {
    const response = await fetch(url, { ...request, signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, text: await response.text(), context: response.headers.get('x-ringkv-context') };
  } catch (error) {
    return { status: 0, text: error instanceof Error ? `${error.name}: ${error.message}` : String(error), context: null };
  }
}

async function getJson<T>(node: RunningNode, path: string): Promise<T> {
  const answer = await http(`${node.baseUrl}${path}`, { timeoutMs: 5000 });
  assert.equal(answer.status, 200, `GET ${path} on ${node.baseUrl}: ${answer.status} ${answer.text.slice(0, 200)}`);
  return JSON.parse(answer.text) as T;
}

// ---------------------------------------------------------------------------------------------
// The cluster: nodes on 127.0.0.11, 127.0.0.12, ... that can be killed, paused, wiped, restarted.

/** node-(index + 1) listens on 127.0.0.(11 + index): all of 127.0.0.0/8 is loopback on Linux. */
export function loopbackHost(index: number): string {
  assert.ok(index >= 0 && index < 200);
  return `127.0.0.${11 + index}`;
}

export type SlotState = 'up' | 'killed' | 'paused' | 'leaving' | 'left';

/** One node of the cluster across its incarnations: the same id, address, ports and data dir. */
export interface NodeSlot {
  readonly nodeId: string;
  readonly host: string;
  readonly ports: NodePorts;
  readonly dataDir: string;
  state: SlotState;
  /** The running (or paused) process; undefined once killed or left. */
  process: RunningNode | undefined;
}

export class FaultCluster {
  private constructor(
    readonly slots: NodeSlot[],
    private readonly nodeArgs: readonly string[],
  ) {}

  /** Starts `count` nodes on their own loopback addresses, one founding, the others joining it. */
  static async start(count: number, nodeArgs: readonly string[]): Promise<FaultCluster> {
    const nodes = await startCluster(count, nodeArgs, { hostOf: loopbackHost });
    const slots = nodes.map((node, index): NodeSlot => ({
      nodeId: `node-${index + 1}`, host: node.host, ports: portsOf(node), dataDir: node.dataDir, state: 'up', process: node,
    }));
    return new FaultCluster(slots, nodeArgs);
  }

  slot(nodeId: string): NodeSlot {
    const slot = this.slots.find((candidate) => candidate.nodeId === nodeId);
    assert.ok(slot !== undefined, `no node ${nodeId}`);
    return slot;
  }

  /** Nodes that answer clients: up, or leaving but not gone yet. */
  live(): RunningNode[] {
    return this.slots.flatMap((slot) => ((slot.state === 'up' || slot.state === 'leaving') && slot.process !== undefined ? [slot.process] : []));
  }

  liveSlots(): NodeSlot[] {
    return this.slots.filter((slot) => slot.state === 'up' || slot.state === 'leaving');
  }

  /** kill -9: no clean shutdown, nothing unsynced survives. */
  async kill(slot: NodeSlot): Promise<void> {
    assert.ok(slot.process !== undefined && slot.state !== 'left', `${slot.nodeId} is not running`);
    await slot.process.stop('SIGKILL');
    slot.process = undefined;
    slot.state = 'killed';
  }

  /** Restarts a killed node on its address, ports and data dir; `join` for one whose data dir is empty. */
  async restart(slot: NodeSlot, options: { join?: boolean } = {}): Promise<void> {
    assert.equal(slot.state, 'killed', `${slot.nodeId} must be killed before it restarts`);
    const seed = this.liveSlots()[0];
    assert.ok(seed !== undefined, 'a live node to join');
    const join = options.join === true ? ['--join', `${seed.host}:${seed.ports.peerPort}`] : [];
    slot.process = await startNode({ dataDir: slot.dataDir, host: slot.host, ports: slot.ports, args: ['--node-id', slot.nodeId, ...join, ...clusterArgs, ...this.nodeArgs] });
    slot.state = 'up';
  }

  /** kill -9, then the data directory removed: the disk is lost. */
  async wipe(slot: NodeSlot): Promise<void> {
    await this.kill(slot);
    rmSync(slot.dataDir, { recursive: true, force: true });
  }

  /** SIGSTOP: the process holds its sockets but answers nothing. */
  pause(slot: NodeSlot): void {
    assert.ok(slot.process !== undefined && slot.state === 'up');
    assert.ok(slot.process.child.kill('SIGSTOP'));
    slot.state = 'paused';
  }

  resume(slot: NodeSlot): void {
    assert.ok(slot.process !== undefined && slot.state === 'paused');
    assert.ok(slot.process.child.kill('SIGCONT'));
    slot.state = 'up';
  }

  /** A new node on the next loopback address, joining through the first live node. */
  async join(): Promise<NodeSlot> {
    const index = this.slots.length;
    const seed = this.liveSlots()[0];
    assert.ok(seed !== undefined);
    const nodeId = `node-${index + 1}`;
    const dataDir = temporaryDirectory();
    const running = await startNode({ dataDir, host: loopbackHost(index), args: ['--node-id', nodeId, '--join', `${seed.host}:${seed.ports.peerPort}`, ...clusterArgs, ...this.nodeArgs] });
    const slot: NodeSlot = { nodeId, host: running.host, ports: portsOf(running), dataDir, state: 'up', process: running };
    this.slots.push(slot);
    return slot;
  }

  /**
   * POST /admin/leave to the node itself; resolves with its exit code once it has handed everything
   * off and exited by itself, or 'still running' after `timeoutMs`.
   */
  async leave(slot: NodeSlot, timeoutMs: number): Promise<{ code: number | null | 'still running'; leftAfterMs: number }> {
    const running = slot.process;
    assert.ok(running !== undefined && slot.state === 'up');
    const startMs = performance.now();
    const exited = new Promise<number | null>((resolve) => running.child.once('exit', (code) => resolve(code)));
    const answer = await http(`${running.baseUrl}/admin/leave`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    assert.equal(answer.status, 200, `POST /admin/leave: ${answer.text}`);
    slot.state = 'leaving';
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), timeoutMs)))]);
    clearTimeout(timer);
    if (code !== 'still running') {
      slot.state = 'left';
      slot.process = undefined;
    }
    return { code, leftAfterMs: performance.now() - startMs };
  }

  /** Kills every process (a paused one too) and removes the data directories. */
  async stopAll(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.process?.stop('SIGKILL')));
    for (const slot of this.slots) rmSync(slot.dataDir, { recursive: true, force: true });
  }
}

function portsOf(node: RunningNode): NodePorts {
  return { httpPort: node.httpPort, respPort: node.respPort, peerPort: node.peerPort };
}

// ---------------------------------------------------------------------------------------------
// Partitions: iptables rules on loopback, tagged with this process's pid.

const ruleTagPrefix = 'ringkv-test-';
const ruleTag = `${ruleTagPrefix}${process.pid}`;

function iptables(args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile('iptables', ['-w', '5', ...args], { timeout: 10_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/** The rules of OUTPUT tagged `tag` (or, with a predicate, any of our tags), as `-A ...` argument lists. */
function taggedRules(listing: string, isOurs: (tag: string) => boolean): string[][] {
  return listing
    .split('\n')
    .filter((line) => line.startsWith('-A OUTPUT '))
    .map((line) => line.trim().split(/\s+/))
    .filter((words) => {
      const at = words.indexOf('--comment');
      const tag = at < 0 ? undefined : words[at + 1]?.replace(/^"|"$/g, '');
      return tag !== undefined && tag.startsWith(ruleTagPrefix) && isOurs(tag);
    });
}

function removeRulesSync(isOurs: (tag: string) => boolean): void {
  const listing = spawnSync('iptables', ['-w', '5', '-S', 'OUTPUT'], { encoding: 'utf8' });
  if (listing.status !== 0) return;
  for (const rule of taggedRules(listing.stdout, isOurs)) spawnSync('iptables', ['-w', '5', '-D', ...rule.slice(1)], { stdio: 'ignore' });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Rules left by a test run that crashed (its pid is gone): removed so they cannot cut this run's nodes. */
function removeStaleRulesSync(): void {
  removeRulesSync((tag) => {
    const pid = Number(tag.slice(ruleTagPrefix.length));
    return Number.isInteger(pid) && pid !== process.pid && !isAlive(pid);
  });
}

/**
 * Whether partitions can be made here: iptables is installed, runs (root), and takes a tagged DROP
 * rule on loopback. Decided once, at load, so a test can be skipped with the reason.
 */
export const loopbackFirewall: { readonly usable: true } | { readonly usable: false; readonly reason: string } = (() => {
  const probe = ['OUTPUT', '-p', 'tcp', '-s', '127.0.0.254', '-d', '127.0.0.253', '-m', 'comment', '--comment', ruleTag, '-j', 'DROP'];
  const added = spawnSync('iptables', ['-w', '5', '-A', ...probe], { encoding: 'utf8' });
  if (added.error !== undefined) return { usable: false, reason: `iptables cannot run (${added.error.message}; apt-get install iptables, as root)` } as const;
  if (added.status !== 0) return { usable: false, reason: `iptables refused a loopback DROP rule: ${added.stderr.trim()}` } as const;
  spawnSync('iptables', ['-w', '5', '-D', ...probe], { stdio: 'ignore' });
  removeStaleRulesSync();
  return { usable: true } as const;
})();

let exitCleanupRegistered = false;

/**
 * Cuts `isolated` off from `others` in both directions: TCP from its address to theirs and from
 * theirs to it is dropped (clients on 127.0.0.1 still reach every node). `heal()` removes the
 * rules; so does `healAllPartitions()` (an after hook) and, if the test process dies, its exit.
 */
export async function partition(isolated: string, others: readonly string[]): Promise<{ heal: () => Promise<void> }> {
  assert.ok(loopbackFirewall.usable, 'iptables is usable');
  assert.ok(others.length > 0 && !others.includes(isolated));
  if (!exitCleanupRegistered) {
    exitCleanupRegistered = true;
    process.once('exit', () => removeRulesSync((tag) => tag === ruleTag));
  }
  for (const other of others) {
    for (const [source, destination] of [[isolated, other], [other, isolated]] as const) {
      const added = await iptables(['-A', 'OUTPUT', '-p', 'tcp', '-s', source, '-d', destination, '-m', 'comment', '--comment', ruleTag, '-j', 'DROP']);
      if (added.code !== 0) {
        await healAllPartitions();
        assert.fail(`iptables -A failed: ${added.output}`);
      }
    }
  }
  return { heal: healAllPartitions };
}

/** Removes every rule this process added; idempotent. */
export async function healAllPartitions(): Promise<void> {
  const listing = await iptables(['-S', 'OUTPUT']);
  if (listing.code !== 0) return;
  for (const rule of taggedRules(listing.output, (tag) => tag === ruleTag)) {
    const removed = await iptables(['-D', ...rule.slice(1)]);
    assert.equal(removed.code, 0, `iptables -D ${rule.join(' ')}: ${removed.output}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Load: unique keys written round-robin through the live nodes with W=2, and some deletes.

export interface LoadOptions {
  /** Keys are `load-<scenario>-<i>`, value = key. */
  readonly scenario: string;
  /** The nodes to send to, asked before every request (a killed node drops out, a joined one comes in). */
  readonly targets: () => readonly RunningNode[];
  /** Requests (writes and deletes) at most. */
  readonly requestsMax: number;
  readonly durationMsMax: number;
  /** Requests started per second at most, over all workers. */
  readonly ratePerSecond: number;
  readonly concurrency: number;
  /** Every `deleteEvery`-th request deletes an earlier acknowledged key instead of writing. */
  readonly deleteEvery: number;
}

export interface LoadResult {
  /** Written with 204: must be readable (unless in deleted or deleteUnsure). */
  readonly acknowledged: string[];
  /** Not acknowledged (503, 500, no answer): may or may not be there; not checked. */
  readonly failedWrites: number;
  /** Deleted with 204: must be gone. */
  readonly deleted: string[];
  /** Acknowledged writes whose delete was sent but not acknowledged: either state is right. */
  readonly deleteUnsure: string[];
  /** Answers by status over all requests (0: no answer). */
  readonly statuses: Record<string, number>;
  readonly durationMs: number;
}

export interface LoadRun {
  /** Stops starting requests, waits for those in flight, returns what happened. */
  stop(): Promise<LoadResult>;
}

export function startLoad(options: LoadOptions): LoadRun {
  assert.ok(options.requestsMax > 0 && options.concurrency >= 1 && options.ratePerSecond > 0 && options.deleteEvery >= 2);
  const startMs = performance.now();
  const acknowledged = new Set<string>();
  const deletable: string[] = [];
  const deleted: string[] = [];
  const deleteUnsure: string[] = [];
  const statuses: Record<string, number> = {};
  let failedWrites = 0;
  let stopped = false;
  let requests = 0;
  const count = (status: number): void => void (statuses[status] = (statuses[status] ?? 0) + 1);

  const write = async (node: RunningNode, key: string): Promise<void> => {
    const answer = await http(`${node.baseUrl}/kv/default/${key}?w=2`, { method: 'PUT', body: key, headers: { 'content-type': 'text/plain' } });
    count(answer.status);
    if (answer.status === 204) {
      acknowledged.add(key);
      deletable.push(key);
    } else failedWrites++;
  };

  // Delete with the context of a read (R=2 meets the W=2 write), so the tombstone covers the value.
  const remove = async (node: RunningNode): Promise<void> => {
    if (deletable.length === 0) return;
    const key = deletable.splice(Math.floor(Math.random() * deletable.length), 1)[0]!;
    const read = await http(`${node.baseUrl}/kv/default/${key}`);
    count(read.status);
    if (read.status !== 200 || read.context === null) return void deletable.push(key);
    const answer = await http(`${node.baseUrl}/kv/default/${key}?w=2`, { method: 'DELETE', headers: { 'x-ringkv-context': read.context } });
    count(answer.status);
    acknowledged.delete(key);
    (answer.status === 204 ? deleted : deleteUnsure).push(key);
  };

  const worker = async (): Promise<void> => {
    while (!stopped && performance.now() - startMs < options.durationMsMax && requests < options.requestsMax) {
      const index = requests++;
      const dueMs = startMs + (index * 1000) / options.ratePerSecond;
      if (dueMs > performance.now()) await sleep(dueMs - performance.now());
      if (stopped) break;
      const targets = options.targets();
      if (targets.length === 0) {
        await sleep(100);
        continue;
      }
      const node = targets[index % targets.length]!;
      if (index % options.deleteEvery === options.deleteEvery - 1) await remove(node);
      else await write(node, `load-${options.scenario}-${index}`);
    }
  };
  const workers = Promise.all(Array.from({ length: options.concurrency }, worker));
  return {
    stop: async () => {
      stopped = true;
      await workers;
      return { acknowledged: [...acknowledged], failedWrites, deleted, deleteUnsure, statuses, durationMs: performance.now() - startMs };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Checks after a fault.

export interface ReadProblem {
  readonly key: string;
  readonly node: string;
  readonly expected: 'value' | 'absent';
  readonly status: number;
  readonly body: string;
}

/**
 * Reads every key of `present` (value = key) and of `absent` (404) through each of `nodes` with
 * the default R; returns what did not answer as expected, each re-read once after a pause (a
 * problem that went away is reported in `transient`).
 */
export async function checkReads(
  nodes: readonly RunningNode[],
  keys: { present: readonly string[]; absent: readonly string[] },
  concurrency = 16,
): Promise<{ reads: number; problems: ReadProblem[]; transient: ReadProblem[] }> {
  const jobs = nodes.flatMap((node) => [
    ...keys.present.map((key) => ({ node, key, expected: 'value' as const })),
    ...keys.absent.map((key) => ({ node, key, expected: 'absent' as const })),
  ]);
  const readOne = async (job: (typeof jobs)[number]): Promise<ReadProblem | undefined> => {
    const answer = await http(`${job.node.baseUrl}/kv/default/${job.key}`);
    const ok = job.expected === 'value' ? answer.status === 200 && answer.text === job.key : answer.status === 404;
    return ok ? undefined : { key: job.key, node: job.node.baseUrl, expected: job.expected, status: answer.status, body: answer.text.slice(0, 200) };
  };
  const first = (await mapConcurrent(jobs, concurrency, readOne)).filter((problem) => problem !== undefined);
  if (first.length === 0) return { reads: jobs.length, problems: [], transient: [] };
  await sleep(2000);
  const again = await mapConcurrent(first, concurrency, (problem) => readOne({ node: nodes.find((node) => node.baseUrl === problem.node)!, key: problem.key, expected: problem.expected }));
  const problems = again.filter((problem) => problem !== undefined);
  const persistent = new Set(problems.map((problem) => `${problem.node} ${problem.key}`));
  return { reads: jobs.length + first.length, problems, transient: first.filter((problem) => !persistent.has(`${problem.node} ${problem.key}`)) };
}

/** What each node's own replica holds for `key` (tombstones included), for a failure message. */
export async function replicasOf(nodes: readonly { nodeId: string; process: RunningNode | undefined }[], key: string): Promise<string> {
  const views = await Promise.all(
    nodes.map(async (slot) => {
      if (slot.process === undefined) return `${slot.nodeId}: not running`;
      const answer = await http(`${slot.process.baseUrl}/admin/replica/default/${key}`, { timeoutMs: 3000 });
      if (answer.status !== 200) return `${slot.nodeId}: ${answer.status === 404 ? 'nothing' : answer.status}`;
      const body = JSON.parse(answer.text) as { siblings: { value?: string; deleted?: boolean }[] };
      return `${slot.nodeId}: ${body.siblings.map((sibling) => (sibling.deleted === true ? '<tombstone>' : sibling.value)).join(' | ')}`;
    }),
  );
  return views.join('; ');
}

// ---------------------------------------------------------------------------------------------
// Convergence: one ring, nothing in transfer, no hints, equal Merkle roots on every replica.

interface TransferEntry {
  readonly partition: number;
  readonly epoch: number;
  readonly createdAtMs: number;
  readonly targets: readonly string[];
  readonly state: string;
  readonly sentObjects: number;
  readonly sentBytes: number;
}

export interface TransfersAnswer {
  readonly nodes: { nodeId: string; transfers: { transfers: TransferEntry[] } | null; hints: { pendingHints: number; deliveredHints: number; deliveredBytes: number } | null }[];
  readonly unreachable: readonly string[];
}

export interface AntiEntropyAnswer {
  readonly nodeId: string;
  readonly trees: readonly { partition: number; root: string | null; built: boolean }[];
  readonly exchanges: number;
  readonly exchangesDiffering: number;
  readonly keysRepaired: number;
  readonly bytesSent: number;
  /** The contract's name; the first cut reports rootBytes and levelBytes instead. */
  readonly treeBytesSent?: number;
  readonly rootBytes?: number;
  readonly levelBytes?: number;
  readonly reapedTombstones: number;
}

export const replicasPerPartition = 3;

/** Why `nodes` have not converged yet, or undefined when they have. */
export async function convergenceGap(nodes: readonly RunningNode[], nodeIds: readonly string[]): Promise<string | undefined> {
  const rings = await Promise.all(nodes.map((node) => getJson<Ring>(node, '/admin/ring')));
  const ring = rings[0]!;
  if (rings.some((other) => other.epoch !== ring.epoch || other.owners.join() !== ring.owners.join())) return `rings differ: epochs ${rings.map((other) => other.epoch).join(', ')}`;
  const strangers = [...new Set(ring.owners)].filter((owner) => !nodeIds.includes(owner));
  if (strangers.length > 0) return `the ring has owners that are not live: ${strangers.join(', ')}`;
  const transfers = await getJson<TransfersAnswer>(nodes[0]!, '/admin/transfers');
  if (transfers.unreachable.length > 0) return `transfers: ${transfers.unreachable.join(', ')} unreachable`;
  const open = transfers.nodes.flatMap((node) => (node.transfers?.transfers ?? []).filter((transfer) => transfer.state !== 'done').map((transfer) => `${node.nodeId}:${transfer.partition}`));
  if (open.length > 0) return `${open.length} transfers under way (${open.slice(0, 5).join(', ')})`;
  const hints = transfers.nodes.reduce((sum, node) => sum + (node.hints?.pendingHints ?? 0), 0);
  if (hints > 0) return `${hints} hints pending`;
  const reports = new Map<string, Map<number, string | null>>();
  for (const report of await Promise.all(nodes.map((node) => getJson<AntiEntropyAnswer>(node, '/admin/anti-entropy')))) {
    reports.set(report.nodeId, new Map(report.trees.map((tree) => [tree.partition, tree.built ? tree.root : null])));
  }
  const differing: string[] = [];
  for (let partition = 0; partition < ring.partitionCount; partition++) {
    const roots = replicaSet(ring, partition, replicasPerPartition).map((replica) => reports.get(replica)?.get(partition));
    if (roots.some((root) => root === undefined || root === null) || new Set(roots).size > 1) differing.push(`${partition}: ${roots.map((root) => root ?? '-').join('/')}`);
  }
  return differing.length === 0 ? undefined : `${differing.length} partitions whose replicas' roots differ or are not built (${differing.slice(0, 3).join('; ')})`;
}

/**
 * For a failed convergence: each partition whose replicas' roots differ, the replicas' anti-entropy
 * state, and the keys among `candidates` whose copies differ there (context and size per replica).
 */
export async function explainDivergence(nodes: readonly { nodeId: string; process: RunningNode | undefined }[], candidates: readonly string[]): Promise<string> {
  const running = nodes.filter((slot) => slot.process !== undefined);
  const ring = await getJson<Ring>(running[0]!.process!, '/admin/ring');
  const reports = new Map<string, AntiEntropyAnswer & { awaitingTransfer?: number; treesRebuilt?: number }>();
  for (const slot of running) reports.set(slot.nodeId, await getJson<AntiEntropyAnswer & { awaitingTransfer?: number; treesRebuilt?: number }>(slot.process!, '/admin/anti-entropy'));
  const lines: string[] = [];
  for (let partition = 0; partition < ring.partitionCount; partition++) {
    const replicas = replicaSet(ring, partition, replicasPerPartition);
    const roots = replicas.map((replica) => reports.get(replica)?.trees.find((tree) => tree.partition === partition));
    if (new Set(roots.map((tree) => (tree?.built === true ? tree.root : null))).size <= 1 && roots.every((tree) => tree?.built === true)) continue;
    const states = replicas.map((replica) => {
      const report = reports.get(replica);
      const tree = roots[replicas.indexOf(replica)];
      return `${replica} root ${tree?.root ?? '-'} built ${tree?.built ?? '-'} awaitingTransfer ${report?.awaitingTransfer ?? '-'} treesRebuilt ${report?.treesRebuilt ?? '-'}`;
    });
    lines.push(`partition ${partition}: ${states.join('; ')}`);
    const keys = candidates.filter((key) => keyPartition('default', Buffer.from(key), ring.partitionCount) === partition);
    let shown = 0;
    for (const key of keys) {
      const views = await Promise.all(replicas.map(async (replica) => {
        const slot = running.find((candidate) => candidate.nodeId === replica);
        if (slot === undefined) return `${replica}: not running`;
        const answer = await http(`${slot.process!.baseUrl}/admin/replica/default/${key}`, { timeoutMs: 3000 });
        if (answer.status !== 200) return `${replica}: ${answer.status}`;
        const body = JSON.parse(answer.text) as { context: string; bytes: number; siblings: { value?: string; deleted?: boolean }[] };
        return `${replica}: ${body.bytes} B ${body.siblings.map((sibling) => (sibling.deleted === true ? '<tombstone>' : 'value')).join('|')} ${body.context}`;
      }));
      const distinct = new Set(views.map((view) => view.slice(view.indexOf(':'))));
      if (distinct.size > 1 && shown++ < 10) lines.push(`  ${key}: ${views.join('; ')}`);
    }
    lines.push(`  ${keys.length} candidate keys in the partition, ${shown} differing`);
    if (lines.length > 40) break;
  }
  return lines.join('\n');
}

export interface Convergence {
  /** performance.now() when the first poll found every replica equal. */
  readonly atMs: number;
  /** What the first poll found missing (undefined: converged at the first look). */
  readonly firstGap: string | undefined;
  readonly polls: number;
}

/** Polls every 250 ms until the live nodes converge; fails after `timeoutMs` with what is still missing. */
export async function awaitConvergence(cluster: FaultCluster, timeoutMs: number): Promise<Convergence> {
  const deadlineMs = performance.now() + timeoutMs;
  let gap: string | undefined = 'not asked yet';
  let firstGap: string | undefined;
  for (let polls = 1; performance.now() < deadlineMs; polls++) {
    const live = cluster.liveSlots();
    gap = await convergenceGap(live.map((slot) => slot.process!), live.map((slot) => slot.nodeId)).catch((error: unknown) => `asking failed: ${error instanceof Error ? error.message : String(error)}`);
    if (gap === undefined) return { atMs: performance.now(), firstGap, polls };
    if (polls === 1) firstGap = gap;
    await sleep(250);
  }
  assert.fail(`not converged within ${timeoutMs} ms: ${gap}`);
}

// ---------------------------------------------------------------------------------------------
// Data moved: hints delivered, partition transfers and anti-entropy repair, sampled while a
// scenario runs (a killed or leaving node takes its counters with it).

export interface Moved {
  hintsDelivered: number;
  hintBytes: number;
  transferredObjects: number;
  transferredBytes: number;
  aaeExchanges: number;
  aaeExchangesDiffering: number;
  aaeKeysRepaired: number;
  aaeBytesSent: number;
  aaeTreeBytesSent: number;
}

const movedZero = (): Moved => ({ hintsDelivered: 0, hintBytes: 0, transferredObjects: 0, transferredBytes: 0, aaeExchanges: 0, aaeExchangesDiffering: 0, aaeKeysRepaired: 0, aaeBytesSent: 0, aaeTreeBytesSent: 0 });

/** Counters of one node incarnation (they start at 0 with each process). */
type Counters = Pick<Moved, 'hintsDelivered' | 'hintBytes' | 'aaeExchanges' | 'aaeExchangesDiffering' | 'aaeKeysRepaired' | 'aaeBytesSent' | 'aaeTreeBytesSent'>;

/** The latest counters seen per incarnation and bytes sent per transfer. */
interface Figures {
  readonly counters: Map<string, Counters>;
  readonly transfers: Map<string, { objects: number; bytes: number }>;
}

export class MovedSampler {
  private latest: Figures = { counters: new Map(), transfers: new Map() };
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();

  constructor(private readonly cluster: FaultCluster) {}

  /** Takes a sample now, then every `intervalMs` until `stop()`; returns the figures at the start. */
  async start(intervalMs: number): Promise<Figures> {
    await this.sample();
    const before = cloneFigures(this.latest);
    this.timer = setInterval(() => void (this.sampling = this.sampling.then(() => this.sample())), intervalMs);
    return before;
  }

  /** A last sample; what moved since `before`. */
  async stop(before: Figures): Promise<Moved> {
    clearInterval(this.timer);
    await this.sampling;
    await this.sample();
    const moved = movedZero();
    for (const [incarnation, counters] of this.latest.counters) {
      const earlier = before.counters.get(incarnation);
      for (const field of Object.keys(counters) as (keyof Counters)[]) moved[field] += counters[field] - (earlier?.[field] ?? 0);
    }
    for (const [transfer, sent] of this.latest.transfers) {
      const earlier = before.transfers.get(transfer);
      moved.transferredObjects += sent.objects - (earlier?.objects ?? 0);
      moved.transferredBytes += sent.bytes - (earlier?.bytes ?? 0);
    }
    return moved;
  }

  private async sample(): Promise<void> {
    const live = this.cluster.liveSlots();
    await Promise.all(
      live.map(async (slot) => {
        const node = slot.process!;
        const [status, aae] = await Promise.all([
          getJson<{ handoff: { deliveredHints: number; deliveredBytes: number } | null }>(node, '/admin/status'),
          getJson<AntiEntropyAnswer>(node, '/admin/anti-entropy').catch(() => undefined),
        ]).catch(() => [undefined, undefined] as const);
        // A node that did not answer this time keeps the counters it last gave (not zeros).
        if (status === undefined || aae === undefined) return;
        this.latest.counters.set(`${slot.nodeId}@${node.child.pid}`, {
          hintsDelivered: status.handoff?.deliveredHints ?? 0,
          hintBytes: status.handoff?.deliveredBytes ?? 0,
          aaeExchanges: aae.exchanges,
          aaeExchangesDiffering: aae.exchangesDiffering,
          aaeKeysRepaired: aae.keysRepaired,
          aaeBytesSent: aae.bytesSent,
          aaeTreeBytesSent: aae.treeBytesSent ?? (aae.rootBytes ?? 0) + (aae.levelBytes ?? 0),
        });
      }),
    );
    const first = live[0]?.process;
    const transfers = first === undefined ? undefined : await getJson<TransfersAnswer>(first, '/admin/transfers').catch(() => undefined);
    for (const node of transfers?.nodes ?? []) {
      for (const transfer of node.transfers?.transfers ?? []) {
        const key = `${node.nodeId}/${transfer.partition}/${transfer.epoch}/${transfer.createdAtMs}`;
        const seen = this.latest.transfers.get(key);
        if (seen === undefined || transfer.sentObjects >= seen.objects) this.latest.transfers.set(key, { objects: transfer.sentObjects, bytes: transfer.sentBytes });
      }
    }
  }
}

function cloneFigures(figures: Figures): Figures {
  return { counters: new Map([...figures.counters].map(([key, value]) => [key, { ...value }])), transfers: new Map([...figures.transfers].map(([key, value]) => [key, { ...value }])) };
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

export function describeMoved(moved: Moved): string {
  return [
    `hints ${moved.hintsDelivered} delivered (${formatBytes(moved.hintBytes)})`,
    `transfers ${moved.transferredObjects} objects (${formatBytes(moved.transferredBytes)})`,
    `anti-entropy ${moved.aaeKeysRepaired} keys repaired, ${formatBytes(moved.aaeBytesSent)} sent (tree bytes ${formatBytes(moved.aaeTreeBytesSent)}), ${moved.aaeExchangesDiffering} of ${moved.aaeExchanges} exchanges differing`,
  ].join('; ');
}
