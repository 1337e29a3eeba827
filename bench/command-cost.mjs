// What one Redis-protocol command costs a node in process, sockets aside: RESP parsing, the
// command, the reply's encoding, on a one-node ringkv of the compiled build (dist/) with the
// memory engine (ENGINE=lsm for the LSM engine on an in-memory disk). Pipelines of 16 commands,
// 100-byte values: SET of one hot key (redis-benchmark's default), SET and GET over 100,000 keys.
// Prints microseconds per command for each of --rounds rounds; the later rounds are warm.
//
//   npm run build && node bench/command-cost.mjs [--rounds 3] [--commands 400000]
import { Buffer } from 'node:buffer';
import { parseArgs } from 'node:util';
import { executeCommand } from '../dist/api/resp-commands.js';
import { RespParser } from '../dist/api/resp-parser.js';
import { RespWriter } from '../dist/api/resp-writer.js';
import { resolveConfig } from '../dist/node/config.js';
import { silentLogger } from '../dist/node/logger.js';
import { RingkvNode } from '../dist/node/ringkv-node.js';
import { SystemClock } from '../dist/world/clock.js';
import { createMemoryFileSystem } from '../dist/world/memory-file-system.js';
import { createRandom } from '../dist/world/random.js';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, commands: { type: 'string', default: '400000' } } });
const rounds = Number(args.rounds);
const commands = Number(args.commands);
const engine = process.env.ENGINE ?? 'memory';

const config = resolveConfig({ flags: { dataDir: '/data', engine, httpPort: 1, respPort: 2, peerPort: 7800 }, environment: {}, file: undefined });
if (!config.ok) throw new Error(config.message);
const node = await RingkvNode.start(config.value, { clock: new SystemClock(), random: createRandom(7), fs: createMemoryFileSystem(), logger: silentLogger(), clientApis: false }, () => {});
const context = {
  kv: node.cluster.store,
  node: { nodeId: node.nodeId, version: '0', uptimeMs: () => 0, engineKind: engine, keyCount: () => 0, connectedClients: () => 1, commandsProcessed: () => 0, tcpPort: 0 },
  defaultNamespace: config.value.defaultNamespace,
};
const connection = { id: 1, namespace: config.value.defaultNamespace, name: '', resp3: false, closing: false, quorum: {} };
const value = 'x'.repeat(100);
const limits = { bulkBytesMax: config.value.valueBytesMax, argumentsMax: 1 << 20, inlineBytesMax: 64 * 1024 };

/** 16 commands in one chunk, as one redis-benchmark -P 16 client sends them. */
function pipeline(command, keyOf, first) {
  let text = '';
  for (let index = first; index < first + 16; index++) {
    const key = keyOf(index);
    text += command === 'SET' ? `*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$100\r\n${value}\r\n` : `*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`;
  }
  return Buffer.from(text, 'latin1');
}

async function run(command, keyOf) {
  const chunks = Array.from({ length: 64 }, (_, chunk) => pipeline(command, keyOf, chunk * 16));
  const parser = new RespParser(limits);
  const out = new RespWriter();
  let waited = 0;
  const started = performance.now();
  for (let chunk = 0; chunk < commands / 16; chunk++) {
    parser.feed(chunks[chunk % 64], (args) => {
      if (executeCommand(context, connection, args, out) !== undefined) waited++;
    });
    out.take();
    // Let timers and the engine's background work run now and then, as a server's loop would.
    if (chunk % 64 === 63) await new Promise((resolve) => setImmediate(resolve));
  }
  const us = ((performance.now() - started) * 1000) / commands;
  if (waited > 0) console.log(`  (${waited} of ${commands} replies waited for the engine)`);
  return us;
}

const spread = (index) => `key:${String((index * 7919) % 100000).padStart(12, '0')}`;
for (let round = 1; round <= rounds; round++) {
  const hot = await run('SET', () => 'key:__rand_int__');
  const set = await run('SET', spread);
  const get = await run('GET', spread);
  console.log(`round ${round}/${rounds} (${engine} engine): us per command: SET one key ${hot.toFixed(2)}, SET 100k keys ${set.toFixed(2)}, GET 100k keys ${get.toFixed(2)}`);
}
await node.stop();
