// Time to converge after a fault with a million keys in the cluster (issue 7 target: within 60 s
// of the fault ending), measured with real processes on loopback: S ringkv nodes (default 5; LSM
// engine, sync always, anti-entropy at its default interval) are loaded with k keys through RESP
// (N = 3, W = 2); then, one scenario after the other, under a light write load of new keys:
//
// - kill: kill -9 a node for --down-s seconds (default 30), restart it on the same data dir;
// - pause: SIGSTOP a node for --down-s seconds, then SIGCONT;
// - partition: cut a node off from the others both ways with iptables for --down-s seconds
//   (skipped, with the reason, where the firewall cannot be used);
// - wipe: kill -9 a node, remove its data directory, restart it empty;
// - join: a new node joins (convergence includes every partition transfer done).
//
// After each it polls until every node has one ring, no transfer or hint is pending and every
// replica of every partition has the same Merkle root, printing what is still missing every 10 s;
// then it reads a sample of the loaded keys and every acknowledged key of the light load through
// every node.
//
//   npx tsx bench/convergence.ts [--keys 1000000] [--value-bytes 100] [--nodes 5]
//                                [--scenarios kill,pause,partition,wipe,join] [--down-s 30] [--timeout-s 900] [--sample 2000]
import { parseArgs } from 'node:util';
import { loadThroughResp } from './resp-load.js';
import type { RunningNode } from '../test/helpers/ringkv-process.js';
import {
  FaultCluster, MovedSampler, checkReads, convergenceGap, describeMoved, healAllPartitions, http, loopbackFirewall, mapConcurrent, partition, sleep, startLoad, type NodeSlot,
} from '../test/helpers/fault-tools.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    'value-bytes': { type: 'string', default: '100' },
    nodes: { type: 'string', default: '5' },
    scenarios: { type: 'string', default: 'kill,pause,partition,wipe,join' },
    'down-s': { type: 'string', default: '30' },
    'timeout-s': { type: 'string', default: '900' },
    sample: { type: 'string', default: '2000' },
  },
});
const keyCount = Number(args.keys);
const valueBytes = Number(args['value-bytes']);
const nodeCount = Number(args.nodes);
const scenarios = args.scenarios.split(',').filter((name) => name !== '');
const downMs = Number(args['down-s']) * 1000;
const timeoutMs = Number(args['timeout-s']) * 1000;
const sampleSize = Number(args.sample);
const lightLoad = { ratePerSecond: 40, concurrency: 8, deleteEvery: 20, requestsMax: 100_000, durationMsMax: downMs + 60_000 };
const loadAroundFaultMs = 3000;

const scenarioNames = ['kill', 'pause', 'partition', 'wipe', 'join'];
for (const scenario of scenarios) if (!scenarioNames.includes(scenario)) throw new Error(`unknown scenario ${scenario}: one of ${scenarioNames.join(', ')}`);

/** The bulk keys' values: recognisable, so a read can be checked. */
function valueOf(index: number): string {
  const head = `bulk:${index}:`;
  return head + 'v'.repeat(Math.max(0, valueBytes - head.length));
}

/** Polls until converged; undefined when it was not within the timeout. */
async function converge(cluster: FaultCluster, fromMs: number): Promise<number | undefined> {
  let lastShownMs = performance.now();
  for (;;) {
    const live = cluster.liveSlots();
    const gap = await convergenceGap(live.map((slot) => slot.process!), live.map((slot) => slot.nodeId)).catch((error: unknown) => `asking failed: ${String(error)}`);
    const elapsedMs = performance.now() - fromMs;
    if (gap === undefined) return elapsedMs;
    if (elapsedMs > timeoutMs) {
      console.log(`  not converged within ${timeoutMs / 1000} s: ${gap.slice(0, 300)}`);
      return undefined;
    }
    if (performance.now() - lastShownMs >= 10_000) {
      lastShownMs = performance.now();
      console.log(`  ${(elapsedMs / 1000).toFixed(0)} s: ${gap.slice(0, 200)}`);
    }
    await sleep(500);
  }
}

/** Reads `sampleSize` loaded keys (spread over the key space) through every live node. */
async function checkSample(nodes: readonly RunningNode[]): Promise<number> {
  const step = Math.max(1, Math.floor(keyCount / sampleSize));
  const indexes = Array.from({ length: Math.min(sampleSize, keyCount) }, (_, position) => position * step);
  const jobs = nodes.flatMap((node) => indexes.map((index) => ({ node, index })));
  const wrong = await mapConcurrent(jobs, 16, async ({ node, index }) => {
    const answer = await http(`${node.baseUrl}/kv/default/bulk:${index}`);
    return answer.status === 200 && answer.text === valueOf(index) ? 0 : 1;
  });
  return wrong.reduce((sum: number, count: number) => sum + count, 0);
}

async function runScenario(cluster: FaultCluster, scenario: string, victim: NodeSlot): Promise<string> {
  const sampler = new MovedSampler(cluster);
  const figuresBefore = await sampler.start(1000);
  const light = startLoad({ scenario, targets: () => cluster.live(), ...lightLoad });
  await sleep(loadAroundFaultMs);
  let hit = victim.nodeId;
  if (scenario === 'kill') {
    await cluster.kill(victim);
    await sleep(downMs);
    await cluster.restart(victim);
  } else if (scenario === 'pause') {
    cluster.pause(victim);
    await sleep(downMs);
    cluster.resume(victim);
  } else if (scenario === 'partition') {
    const cut = await partition(victim.host, cluster.liveSlots().filter((slot) => slot !== victim).map((slot) => slot.host));
    await sleep(downMs);
    await cut.heal();
  } else if (scenario === 'wipe') {
    await cluster.wipe(victim);
    await cluster.restart(victim, { join: true });
  } else {
    hit = (await cluster.join()).nodeId;
  }
  const endedMs = performance.now();
  await sleep(loadAroundFaultMs);
  const loaded = await light.stop();
  const convergedMs = await converge(cluster, endedMs);
  const moved = await sampler.stop(figuresBefore);
  const live = cluster.live();
  const reads = await checkReads(live, { present: loaded.acknowledged, absent: loaded.deleted });
  const wrongSample = await checkSample(live);
  const converged = convergedMs === undefined ? `NOT converged within ${timeoutMs / 1000} s` : `converged ${(convergedMs / 1000).toFixed(1)} s after the fault ended`;
  return (
    `${scenario} ${hit}: ${converged}; light load ${loaded.acknowledged.length} writes and ${loaded.deleted.length} deletes acknowledged, ` +
    `${reads.problems.length} of them read wrong through ${live.length} nodes; ${wrongSample} of ${Math.min(sampleSize, keyCount) * live.length} sampled bulk reads wrong; moved: ${describeMoved(moved)}`
  );
}

async function main(): Promise<void> {
  console.log(`convergence bench: ${nodeCount} nodes, ${keyCount} keys of ${valueBytes} B, N=3 W=2; scenarios ${scenarios.join(', ')}`);
  const cluster = await FaultCluster.start(nodeCount, []);
  const results: string[] = [];
  try {
    const loadS = await loadThroughResp(cluster.live(), keyCount, (index) => [`bulk:${index}`, valueOf(index)]);
    console.log(`  load: ${keyCount} SETs in ${loadS.toFixed(1)} s (${Math.round(keyCount / loadS)}/s)`);
    const settledMs = await converge(cluster, performance.now());
    console.log(`  replicas agree ${((settledMs ?? Number.NaN) / 1000).toFixed(1)} s after the load`);
    for (const [index, scenario] of scenarios.entries()) {
      if (scenario === 'partition' && !loopbackFirewall.usable) {
        console.log(`  partition: skipped, ${loopbackFirewall.reason}`);
        continue;
      }
      const victim = cluster.slots[1 + (index % (nodeCount - 1))] as NodeSlot;
      const line = await runScenario(cluster, scenario, victim);
      console.log(`  ${line}`);
      results.push(line);
    }
  } finally {
    if (loopbackFirewall.usable) await healAllPartitions();
    await cluster.stopAll();
  }
  console.log(`\n${nodeCount} nodes, ${keyCount.toLocaleString('en')} keys of ${valueBytes} B (npx tsx bench/convergence.ts --keys ${keyCount} --nodes ${nodeCount} --scenarios ${scenarios.join(',')} --down-s ${downMs / 1000})`);
  for (const line of results) console.log(`- ${line}`);
}

await main();
