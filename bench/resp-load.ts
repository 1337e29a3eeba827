// Loading a cluster through RESP for the benches: `count` keys written round-robin through the
// nodes in pipelines of 500 SETs per node, with a progress line; any failed SET fails the load.
import { Redis } from 'ioredis';
import type { RunningNode } from '../test/helpers/ringkv-process.js';

const pipelineLength = 500;

/** Writes entry(0..count-1) as [key, value]; resolves with the seconds it took. */
export async function loadThroughResp(nodes: readonly RunningNode[], count: number, entry: (index: number) => [string, string | Buffer], progressEvery = 100_000): Promise<number> {
  const clients = nodes.map((node) => new Redis({ host: node.host, port: node.respPort, lazyConnect: true, enableOfflineQueue: true }));
  await Promise.all(clients.map((client) => client.connect()));
  const round = pipelineLength * clients.length;
  const startMs = performance.now();
  let failed = 0;
  try {
    for (let first = 0; first < count; first += round) {
      await Promise.all(
        clients.map(async (client, index) => {
          const pipeline = client.pipeline();
          const from = first + index * pipelineLength;
          for (let key = from; key < Math.min(from + pipelineLength, count); key++) pipeline.set(...entry(key));
          for (const [error] of (await pipeline.exec()) ?? []) if (error !== null) failed++;
        }),
      );
      if (first % progressEvery < round) process.stdout.write(`\r  loaded ${Math.min(first + round, count)} of ${count}`);
    }
  } finally {
    await Promise.all(clients.map((client) => client.quit()));
  }
  process.stdout.write('\n');
  if (failed > 0) throw new Error(`${failed} SETs failed while loading`);
  return (performance.now() - startMs) / 1000;
}
