// Ownership handoff on a join, measured with real processes on loopback (LSM engine, default
// durability): S ringkv nodes (default 3) are loaded with k keys through RESP (N = 3, W = 2), then
// node S+1 joins and the bench waits until every transfer is done. It prints
//
// - objects moved against the optimum: a new node should receive its share 1/(S+1) of the
//   N * k partition copies, no more (issue 7 target: at most 1.1x); what anti-entropy (on, at
//   its default interval) repaired on any node meanwhile counts as moved too;
// - handoff throughput: bytes the old owners sent over the time from the join to the last
//   transfer done, in MB/s, next to this disk's sequential write rate (a file of the same size
//   written in 1 MiB chunks and fsynced, in the same directory, median of 3).
//
//   npx tsx bench/handoff.ts [--keys 200000] [--value-bytes 1000] [--nodes 3]
//                            [--handoff-bytes-per-second 1073741824] [--transfer-limit 2] [--timeout-s 600]
//
// The node default --handoff-bytes-per-second is 16 MiB/s, a throttle that keeps handoff from
// starving clients; the bench lifts it (1 GiB/s) by default to show what the path itself does.
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadThroughResp } from './resp-load.js';
import { startCluster, clusterArgs } from '../test/helpers/cluster.js';
import { startNode, type RunningNode } from '../test/helpers/ringkv-process.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '200000' },
    'value-bytes': { type: 'string', default: '1000' },
    nodes: { type: 'string', default: '3' },
    'handoff-bytes-per-second': { type: 'string', default: String(1024 * 1024 * 1024) },
    'transfer-limit': { type: 'string', default: '2' },
    'timeout-s': { type: 'string', default: '600' },
  },
});
const keyCount = Number(args.keys);
const valueBytes = Number(args['value-bytes']);
const value = Buffer.alloc(valueBytes, 'v');
const nodeCount = Number(args.nodes);
const replicas = 3;
const nodeArgs = ['--handoff-bytes-per-second', args['handoff-bytes-per-second'], '--transfer-limit', args['transfer-limit']];
const transfersTimeoutMs = Number(args['timeout-s']) * 1000;
const mb = 1_000_000;

interface TransferEntry {
  readonly partition: number;
  readonly epoch: number;
  readonly createdAtMs: number;
  readonly state: string;
  readonly sentObjects: number;
  readonly sentBytes: number;
}

interface TransfersAnswer {
  readonly nodes: { nodeId: string; transfers: { transfers: TransferEntry[] } | null }[];
  readonly unreachable: readonly string[];
}

interface AntiEntropyCounters {
  readonly keysFetched: number;
  readonly keysPushed: number;
  readonly bytesSent: number;
}

/** Objects anti-entropy moved and bytes it sent, summed over `nodes`. */
async function antiEntropyMoved(nodes: readonly RunningNode[]): Promise<{ objects: number; bytes: number }> {
  const reports = await Promise.all(nodes.map((node) => json<AntiEntropyCounters>(node, '/admin/anti-entropy')));
  return { objects: reports.reduce((sum, report) => sum + report.keysFetched + report.keysPushed, 0), bytes: reports.reduce((sum, report) => sum + report.bytesSent, 0) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function json<T>(node: RunningNode, path: string): Promise<T> {
  const response = await fetch(`${node.baseUrl}${path}`, { signal: AbortSignal.timeout(10_000) });
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** Sequential write rate of the disk under `directory`: `bytes` in 1 MiB chunks, then fsync; MB/s. */
function diskWriteRate(directory: string, bytes: number): number {
  const scratch = mkdtempSync(join(directory, 'ringkv-disk-'));
  const chunk = Buffer.alloc(1024 * 1024, 0x5a);
  try {
    const startMs = performance.now();
    const fd = openSync(join(scratch, 'sequential'), 'w');
    for (let written = 0; written < bytes; written += chunk.length) writeSync(fd, chunk);
    fsyncSync(fd);
    closeSync(fd);
    return bytes / mb / ((performance.now() - startMs) / 1000);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  console.log(`handoff bench: ${nodeCount} nodes + 1 joining, ${keyCount} keys of ${valueBytes} B, N=${replicas} W=2, handoff limit ${args['handoff-bytes-per-second']} B/s, transfer limit ${args['transfer-limit']}`);
  const nodes = await startCluster(nodeCount, nodeArgs);
  const all = [...nodes];
  try {
    const loadS = await loadThroughResp(nodes, keyCount, (index) => [`key:${index}`, value], 50_000);
    console.log(`  load: ${keyCount} SETs in ${loadS.toFixed(1)} s (${Math.round(keyCount / loadS)}/s)`);
    const before = await json<TransfersAnswer>(nodes[0]!, '/admin/transfers');
    const seen = new Set(before.nodes.flatMap((node) => (node.transfers?.transfers ?? []).map((transfer) => `${node.nodeId}/${transfer.partition}/${transfer.epoch}/${transfer.createdAtMs}`)));
    const aaeBefore = await antiEntropyMoved(nodes);
    const joinStartMs = performance.now();
    const joined = await startNode({ args: ['--node-id', `node-${nodeCount + 1}`, '--join', `${nodes[0]!.host}:${nodes[0]!.peerPort}`, ...clusterArgs, ...nodeArgs] });
    all.push(joined);
    let objects = 0;
    let bytes = 0;
    let doneMs = 0;
    // Done twice in a row with the same transfers: every old owner has seen the new ring by then.
    let doneAt: { ms: number; count: number } | undefined;
    let shown = '';
    for (;;) {
      if (performance.now() - joinStartMs > transfersTimeoutMs) {
        for (const node of all) for (const entry of node.logs.filter((line) => Number(line['level']) >= 40 || String(line['msg']).includes('transfer')).slice(-15)) console.log(`  ${JSON.stringify(entry).slice(0, 400)}`);
        throw new Error(`transfers not done within ${transfersTimeoutMs / 1000} s`);
      }
      const answer = await json<TransfersAnswer>(joined, '/admin/transfers').catch(() => undefined);
      const fresh = (answer?.nodes ?? []).flatMap((node) => (node.transfers?.transfers ?? []).filter((transfer) => !seen.has(`${node.nodeId}/${transfer.partition}/${transfer.epoch}/${transfer.createdAtMs}`)));
      objects = fresh.reduce((sum, transfer) => sum + transfer.sentObjects, 0);
      bytes = fresh.reduce((sum, transfer) => sum + transfer.sentBytes, 0);
      const open = fresh.filter((transfer) => transfer.state !== 'done').length;
      const progress = `  join: ${fresh.length - open} of ${fresh.length} transfers done, ${objects} objects, ${(bytes / mb).toFixed(1)} MB`;
      if (progress !== shown) process.stdout.write(`${process.stdout.isTTY ? '\r' : '\n'}${progress}    `);
      shown = progress;
      if (answer !== undefined && answer.unreachable.length === 0 && fresh.length > 0 && open === 0) {
        if (doneAt !== undefined && doneAt.count === fresh.length) {
          doneMs = doneAt.ms;
          break;
        }
        if (doneAt?.count !== fresh.length) doneAt = { ms: performance.now(), count: fresh.length };
        await sleep(1000);
        continue;
      }
      doneAt = undefined;
      await sleep(200);
    }
    process.stdout.write('\n');
    const seconds = (doneMs - joinStartMs) / 1000;
    const aaeAfter = await antiEntropyMoved(all);
    const aae = { objects: aaeAfter.objects - aaeBefore.objects, bytes: aaeAfter.bytes - aaeBefore.bytes };
    const handoffRate = bytes / mb / seconds;
    const disk = median([0, 1, 2].map(() => diskWriteRate(tmpdir(), Math.max(64 * 1024 * 1024, Math.ceil(bytes / (1024 * 1024)) * 1024 * 1024))));
    const optimum = (keyCount * replicas) / (nodeCount + 1);
    console.log(`  keys moved: ${objects} objects by transfers to node-${nodeCount + 1}, ${aae.objects} by anti-entropy (${(aae.bytes / mb).toFixed(1)} MB sent); optimum 1/(S+1) of ${replicas} x ${keyCount} copies = ${Math.round(optimum)}; ratio ${((objects + aae.objects) / optimum).toFixed(3)}`);
    console.log(`  handoff: ${(bytes / mb).toFixed(1)} MB in ${seconds.toFixed(1)} s (join to last transfer done) = ${handoffRate.toFixed(1)} MB/s`);
    console.log(`  disk sequential write (same size, 1 MiB writes + fsync, median of 3): ${disk.toFixed(1)} MB/s; handoff / disk = ${(handoffRate / disk).toFixed(2)}`);
  } finally {
    await Promise.all(all.map((node) => node.stop('SIGTERM')));
    for (const node of all) rmSync(node.dataDir, { recursive: true, force: true });
  }
}

await main();
