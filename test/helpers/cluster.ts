import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startNode, type RunningNode } from './ringkv-process.js';

/** Fast gossip so that joins, failures and recoveries show within a few seconds. */
export const clusterArgs = ['--gossip-interval-ms', '200'];

export interface Member {
  nodeId: string;
  state: string;
  partitions: number;
}

export interface HandoffStatus {
  pendingHints: number;
  pendingBytes: number;
  deliveredHints: number;
  refusedHints: number;
  pending: { target: string; hints: number; bytes: number; up: boolean }[];
}

export interface ClusterStatus {
  ring: { epoch: number };
  members: Member[];
  handoff: HandoffStatus | null;
}

export async function statusOf(node: RunningNode): Promise<ClusterStatus> {
  const response = await fetch(`${node.baseUrl}/admin/status`);
  assert.equal(response.status, 200);
  return (await response.json()) as ClusterStatus;
}

/** Polls `probe` every 100 ms until it gives a value (a throw counts as not yet); fails after `timeoutMs`. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await probe().catch(() => undefined);
    if (found !== undefined) return found;
    assert.ok(Date.now() < deadline, `${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export interface ClusterOptions {
  /** The `--host` of node-(index + 1), e.g. a loopback address of its own; default 127.0.0.1. */
  readonly hostOf?: (index: number) => string;
}

/** Starts `count` nodes, the first founding the cluster, the others joining it; waits until all see all. */
export async function startCluster(count: number, extraArgs: readonly string[] = [], options: ClusterOptions = {}): Promise<RunningNode[]> {
  const hostOf = (index: number): { host?: string } => (options.hostOf === undefined ? {} : { host: options.hostOf(index) });
  const first = await startNode({ ...hostOf(0), args: ['--node-id', 'node-1', ...clusterArgs, ...extraArgs] });
  const started = await Promise.allSettled(
    Array.from({ length: count - 1 }, (_, index) =>
      startNode({ ...hostOf(index + 1), args: ['--node-id', `node-${index + 2}`, '--join', `${first.host}:${first.peerPort}`, ...clusterArgs, ...extraArgs] }),
    ),
  );
  const nodes = [first, ...started.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []))];
  try {
    const failed = started.find((outcome) => outcome.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    await eventually('every node sees every member valid on one ring', 20_000, async () => {
      const views = await Promise.all(nodes.map(statusOf));
      const epochs = new Set(views.map((view) => view.ring.epoch));
      const settled = views.every((view) => view.members.length === count && view.members.every((member) => member.state === 'valid' && member.partitions > 0));
      return settled && epochs.size === 1 ? true : undefined;
    });
  } catch (error) {
    // Nodes left running would keep the test process alive.
    await Promise.all(nodes.map((node) => node.stop('SIGKILL')));
    throw error;
  }
  return nodes;
}

export function redisOf(node: RunningNode): Redis {
  return new Redis({ host: '127.0.0.1', port: node.respPort, maxRetriesPerRequest: 0 });
}
