/**
 * Redis-protocol throughput of a ringkv node (memory engine) side by side with a real Redis
 * and a bare Node.js Map server (the ceiling for Node.js on this machine), in one run: redis-benchmark -t set,get -n 200000 -c 50 -d 100 at -P 1 and -P 16 against
 * both, alternating servers for several rounds, then medians and ratios. Machines here are
 * noisy, so read the ratio, not the absolute figure.
 *
 *   npm run bench                     # 3 rounds (default)
 *   npm run bench -- --rounds 5 --requests 100000
 *
 * Needs redis-benchmark (Debian: apt-get install redis-tools); the Redis peer needs
 * redis-server (apt-get install redis-server) and is skipped, with a note, when missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../test/helpers/ringkv-process.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '200000' },
    clients: { type: 'string', default: '50' },
    'value-bytes': { type: 'string', default: '100' },
  },
});
const rounds = Number(args.rounds);
const requests = Number(args.requests);
const clients = Number(args.clients);
const valueBytes = Number(args['value-bytes']);
const pipelines = [1, 16];
const ringkvVariants: [string, string[]][] = [
  ['ringkv lsm sync=always', []],
  ['ringkv lsm sync=none', ['--sync', 'none']],
  ['ringkv memory', ['--engine', 'memory']],
];
const tests = ['SET', 'GET'] as const;

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

/** Runs redis-benchmark once; returns ops/s per test. */
function redisBenchmark(port: number, pipeline: number): Record<string, number> {
  const result = spawnSync('redis-benchmark', [
    '-h', '127.0.0.1', '-p', String(port), '-t', 'set,get', '-n', String(requests), '-c', String(clients),
    '-P', String(pipeline), '-d', String(valueBytes), '-q', '--csv',
  ], { encoding: 'utf8', timeout: 300_000 });
  if (result.status !== 0) throw new Error(`redis-benchmark failed: ${result.stderr}`);
  const rates: Record<string, number> = {};
  for (const line of result.stdout.split('\n')) {
    const match = /^"(SET|GET)","([0-9.]+)"/.exec(line);
    if (match !== null) rates[match[1] as string] = Number(match[2]);
  }
  return rates;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function main(): Promise<void> {
  if (!has('redis-benchmark')) {
    console.error('redis-benchmark is not installed. On Debian/Ubuntu: apt-get install redis-tools (and redis-server for the side-by-side peer).');
    process.exit(2);
  }
  const children: ChildProcess[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'ringkv-bench-'));
  const stopAll = (): void => {
    for (const child of children) child.kill('SIGTERM');
    try {
      rmSync(dataDir, { recursive: true, force: true });
    } catch {
      // A node still writing its last files as it stops: the directory stays in the temp folder.
    }
  };
  process.on('exit', stopAll);
  const servers: { name: string; port: number }[] = [];

  // The default node (LSM engine, commit log fsynced before every acknowledgement, group commit),
  // the LSM engine without fsync (Redis' own default durability: none per write), and the memory engine.
  for (const [name, flags] of ringkvVariants) {
    const port = await freePort();
    children.push(spawn(process.execPath, [
      'dist/cli/main.js', 'start', '--data-dir', join(dataDir, name.replaceAll(/[^a-z]+/g, '-')), '--resp-port', String(port),
      '--http-port', String(await freePort()), '--peer-port', String(await freePort()), '--log-level', 'warn', '--log-format', 'json', ...flags,
    ], { stdio: ['ignore', 'inherit', 'inherit'] }));
    await waitForPort(port, 20_000);
    servers.push({ name, port });
  }

  const baselinePort = await freePort();
  children.push(spawn(process.execPath, ['bench/node-map-server.mjs', String(baselinePort)], { stdio: 'inherit' }));
  await waitForPort(baselinePort, 10_000);
  servers.push({ name: 'node-map', port: baselinePort });

  if (has('redis-server')) {
    const redisPort = await freePort();
    children.push(spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
    await waitForPort(redisPort, 10_000);
    servers.push({ name: 'redis', port: redisPort });
    // Redis made as durable as ringkv's default: the append-only file fsynced before every reply.
    const durablePort = await freePort();
    const durableDir = join(dataDir, 'redis-aof');
    mkdirSync(durableDir, { recursive: true });
    children.push(spawn('redis-server', ['--port', String(durablePort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', durableDir], { stdio: 'ignore' }));
    await waitForPort(durablePort, 10_000);
    servers.push({ name: 'redis aof fsync=always', port: durablePort });
  } else {
    console.log('redis-server is not installed (apt-get install redis-server): measuring ringkv alone, no ratio.');
  }

  const samples = new Map<string, number[]>();
  const key = (server: string, pipeline: number, test: string): string => `${server} P${pipeline} ${test}`;
  for (const server of servers) redisBenchmark(server.port, 16); // warm-up: JIT, allocations
  for (let round = 1; round <= rounds; round++) {
    for (const pipeline of pipelines) {
      for (const server of round % 2 === 1 ? servers : [...servers].reverse()) {
        const rates = redisBenchmark(server.port, pipeline);
        for (const test of tests) samples.set(key(server.name, pipeline, test), [...(samples.get(key(server.name, pipeline, test)) ?? []), rates[test] ?? 0]);
        console.log(`round ${round}/${rounds} -P ${pipeline} ${server.name}: SET ${rates['SET']} GET ${rates['GET']} ops/s`);
      }
    }
  }

  console.log(`\nredis-benchmark -t set,get -n ${requests} -c ${clients} -d ${valueBytes}; median of ${rounds} rounds (ops/s)\n`);
  console.log('node-map: a bare Node.js server answering from a Map (bench/node-map-server.mjs), the ceiling for Node.js here.\n');
  console.log('| pipeline | test | server | ops/s | / redis |');
  console.log('|---|---|---|---|---|');
  for (const pipeline of pipelines) {
    for (const test of tests) {
      const rate = (server: string): number | undefined => {
        const found = samples.get(key(server, pipeline, test));
        return found === undefined ? undefined : median(found);
      };
      const redis = rate('redis');
      for (const server of servers) {
        const value = rate(server.name) ?? 0;
        const ratio = redis === undefined ? 'n/a' : `${((100 * value) / redis).toFixed(0)}%`;
        console.log(`| -P ${pipeline} | ${test} | ${server.name} | ${Math.round(value)} | ${ratio} |`);
      }
    }
  }
  // The nodes finish writing as they stop: wait for every server to exit before removing its data.
  const exited = children.map((child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((resolve) => child.once('exit', () => resolve()))));
  for (const child of children) child.kill('SIGTERM');
  await Promise.race([Promise.all(exited), new Promise((resolve) => setTimeout(resolve, 10_000))]);
  stopAll();
  process.exit(0);
}

await main();
