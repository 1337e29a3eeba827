// What anti-entropy sends to repair d differing keys among n, measured on the running service:
// three ringkv nodes in this process on the in-memory network (memory engine, N = 3, Q = 256, so
// every node replicates every partition), n keys loaded identically into all three stores, then,
// for each d, d differences made in the stores directly (the d keys cycle through: node 3 holds a
// newer version, node 3 holds a key the others lack, node 1 holds a key the others lack) and the
// time and bytes until every partition's Merkle roots agree again, from the nodes' own counters
// (src/node/anti-entropy.ts AntiEntropyReport).
//
//   npx tsx bench/anti-entropy.ts [--keys 1000000] [--differing 1,100,10000] [--interval-ms 200]
//
// "Level walk" is the tree data of the exchanges that found the differences (level requests and
// hashes); "root comparisons" is the fixed cost every round pays (4 + 8 bytes per shared
// partition), counted over the whole convergence time, whatever d is.
import { parseArgs } from 'node:util';
import { antiEntropyTreeShape, type AntiEntropyReport } from '../src/node/anti-entropy.js';
import type { RingkvNode } from '../src/node/ringkv-node.js';
import { withInProcessCluster } from '../test/helpers/in-process-cluster.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    differing: { type: 'string', default: '1,100,10000' },
    'interval-ms': { type: 'string', default: '200' },
    'value-bytes': { type: 'string', default: '100' },
  },
});
const keyCount = Number(args.keys);
const differingCounts = args.differing.split(',').map(Number);
const intervalMs = Number(args['interval-ms']);
const value = Buffer.alloc(Number(args['value-bytes']), 'v');
const namespace = 'users';
const convergeTimeoutMs = 300_000;

function reportOf(node: RingkvNode): AntiEntropyReport {
  const report = node.cluster.adminApi().antiEntropy();
  if (!report.ok) throw new Error(report.message);
  return report.value as unknown as AntiEntropyReport;
}

function rootsAgree(nodes: readonly RingkvNode[]): boolean {
  const [first, ...others] = nodes.map((node) => reportOf(node).trees);
  if (first === undefined || first.some((tree) => !tree.built)) return false;
  return others.every((trees) => trees.length === first.length && trees.every((tree, index) => tree.built && tree.root === first[index]?.root));
}

type Totals = { -readonly [K in 'rounds' | 'rootBytes' | 'levelBytes' | 'bytesSent' | 'keysRepaired' | 'exchangesDiffering']: AntiEntropyReport[K] };

function totals(nodes: readonly RingkvNode[]): Totals {
  const sum: Totals = { rounds: 0, rootBytes: 0, levelBytes: 0, bytesSent: 0, keysRepaired: 0, exchangesDiffering: 0 };
  for (const node of nodes) {
    const report = reportOf(node);
    for (const name of Object.keys(sum) as (keyof Totals)[]) sum[name] += report[name];
  }
  return sum;
}

async function waitUntil(what: string, probe: () => boolean): Promise<number> {
  const startedMs = performance.now();
  while (!probe()) {
    if (performance.now() - startedMs > convergeTimeoutMs) throw new Error(`${what}: not within ${convergeTimeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return performance.now() - startedMs;
}

async function load(nodes: readonly RingkvNode[]): Promise<void> {
  const [a, ...replicas] = nodes as [RingkvNode, ...RingkvNode[]];
  const startedMs = performance.now();
  for (let index = 0; index < keyCount; index++) {
    const key = Buffer.from(`user:${index}`);
    const written = await a.kv.put(namespace, key, value, { context: 'current' });
    if (!written.ok || written.value.encoded === undefined) throw new Error(`load failed at ${index}`);
    for (const replica of replicas) {
      const merged = await replica.kv.mergeObject(namespace, key, written.value.encoded);
      if (!merged.ok) throw new Error(merged.message);
    }
    if (index % 200_000 === 199_999) console.log(`  loaded ${index + 1} keys in ${((performance.now() - startedMs) / 1000).toFixed(1)} s`);
  }
}

/** d differences, keys chosen afresh each time (`round` keeps them apart). */
async function diverge(nodes: readonly RingkvNode[], d: number, round: number): Promise<void> {
  const [a, , c] = nodes as [RingkvNode, RingkvNode, RingkvNode];
  const stride = Math.max(1, Math.floor(keyCount / d));
  for (let index = 0; index < d; index++) {
    const kind = index % 3;
    const fresh = Buffer.from(`extra:${round}:${index}`);
    const existing = Buffer.from(`user:${(index * stride + round * 7919) % keyCount}`);
    const result =
      kind === 0 ? await c.kv.put(namespace, existing, Buffer.from(`newer-${round}`), { context: 'current' })
        : kind === 1 ? await c.kv.put(namespace, fresh, value)
          : await a.kv.put(namespace, fresh, value);
    if (!result.ok) throw new Error(result.message);
  }
}

const rows: string[] = [];
await withInProcessCluster({ engine: 'memory', antiEntropyIntervalMs: intervalMs, logLevel: 'silent' }, async (nodes) => {
  console.log(`anti-entropy bench: 3 nodes in one process, N = 3, Q = 256, ${keyCount} keys of ${value.length}-byte values, exchanges every ${intervalMs} ms per node`);
  await load(nodes);
  const settledMs = await waitUntil('trees built and agreeing after the load', () => rootsAgree(nodes));
  console.log(`  roots agree ${(settledMs / 1000).toFixed(1)} s after the load`);
  for (const [round, d] of differingCounts.entries()) {
    const before = totals(nodes);
    await diverge(nodes, d, round);
    const convergedMs = await waitUntil(`convergence after ${d} differences`, () => rootsAgree(nodes));
    const after = totals(nodes);
    const delta = Object.fromEntries(Object.keys(before).map((name) => [name, after[name as keyof Totals] - before[name as keyof Totals]])) as Totals;
    rows.push(
      `| ${d.toLocaleString('en')} | ${(convergedMs / 1000).toFixed(2)} s | ${delta.rounds} | ${delta.exchangesDiffering} | ${delta.keysRepaired} | ` +
        `${delta.levelBytes.toLocaleString('en')} B | ${(delta.levelBytes / d).toFixed(0)} B | ${delta.rootBytes.toLocaleString('en')} B | ` +
        `${((delta.levelBytes + delta.rootBytes) / d).toFixed(0)} B | ${delta.bytesSent.toLocaleString('en')} B |`,
    );
    console.log(rows.at(-1));
  }
});
console.log(`\nn = ${keyCount.toLocaleString('en')} keys, 3 replicas, ${Array.from({ length: antiEntropyTreeShape.depth }, () => antiEntropyTreeShape.fanout).join(' x ')} trees per partition (npx tsx bench/anti-entropy.ts --keys ${keyCount} --differing ${args.differing} --interval-ms ${intervalMs})\n`);
console.log('| d differing | converged in | rounds | partitions differing | objects repaired | level walk | level walk per key | root comparisons | tree data per key | all bytes sent |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const row of rows) console.log(row);
