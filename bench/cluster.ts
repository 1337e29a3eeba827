/**
 * What replication costs: a 3-node `ringkv dev` cluster (N=3, R=2, W=2) against a single node
 * (N=1, R=1, W=1) of the same build, in one run, under the same load: redis-benchmark SET and
 * GET, 100-byte values, random keys (-r), -P 1, the total clients split over three
 * redis-benchmark processes. Against the cluster each process drives its own node (load through
 * every node); against the single node all three drive it, so the load generator costs the same
 * CPU in both setups. Every round starts both setups afresh (the default LSM engine with sync
 * always, empty), alternating which goes first, warms each up, then measures SET and then GET;
 * the table shows medians.
 *
 *   npm run build && npx tsx bench/cluster.ts                 # 3 rounds, 50 clients
 *   npx tsx bench/cluster.ts --rounds 5 --requests 300000 --clients 50
 *
 * Figures per test and setup:
 * - ops/s is the sum of the three processes' rates (they start together; the round log also
 *   shows requests / longest process time, which is lower when they finish unevenly).
 * - p50/p99/p99.9 come from redis-benchmark's HDR histogram. Its --csv output stops at p99, so
 *   the full output is parsed: each process prints points (latency, cumulative count) of its
 *   histogram; the three are merged by summing their CDFs, interpolated linearly between points.
 * - redis-benchmark 7 stops at the first error reply; such a run fails the bench, it is never
 *   counted as throughput.
 *
 * The target of issue 4: the cluster serves at least 40% of the single node's ops/s, with p99
 * below 10 ms, at 50 clients. Node log lines at WARN and above (dev prints node logs as
 * `[dev-2] 12:00:00.000 ERROR msg key=value`) and node restarts are counted and printed.
 *
 * Needs redis-benchmark (Debian: apt-get install redis-tools) and a build (`npm run build`):
 * the nodes run dist/cli/main.js.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { assert } from '../src/core/assert.js';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    requests: { type: 'string', default: '150000' },
    'warmup-requests': { type: 'string', default: '30000' },
    clients: { type: 'string', default: '50' },
    'value-bytes': { type: 'string', default: '100' },
    keyspace: { type: 'string', default: '100000' },
  },
});
const rounds = Number(args.rounds);
/** Requests per test, setup and round, over all load processes. */
const requests = Number(args.requests);
const warmupRequests = Number(args['warmup-requests']);
const clients = Number(args.clients);
const valueBytes = Number(args['value-bytes']);
const keyspace = Number(args.keyspace);
for (const [name, value] of Object.entries({ rounds, requests, 'warmup-requests': warmupRequests, clients, 'value-bytes': valueBytes, keyspace })) {
  if (!Number.isInteger(value) || value < 1) {
    console.error(`invalid --${name}: must be a positive integer`);
    process.exit(2);
  }
}

const entry = 'dist/cli/main.js';
const host = '127.0.0.1';
const clusterNodes = 3;
/** redis-benchmark processes per test; against the cluster, one per node. */
const loadProcesses = 3;
const tests = ['SET', 'GET'] as const;
type Test = (typeof tests)[number];
const setups = ['cluster', 'single'] as const;
type Setup = (typeof setups)[number];
const setupNames: Record<Setup, string> = { cluster: '3-node N=3 R=2 W=2', single: '1-node N=1 R=1 W=1' };
const target = { ratioMin: 0.4, p99MsMax: 10, clients: 50 };

const readyTimeoutMs = 60_000;
const readyPollMs = 250;
const httpTimeoutMs = 1000;
const stopTimeoutMs = 15_000;
const benchmarkTimeoutMs = 180_000;
const portBlockAttemptsMax = 50;
const outputBytesMax = 4 * 1024 * 1024;
/** Log lines kept per started setup (WARN and above, restarts, stderr); the rest only counted. */
const logLinesMax = 10_000;

// ---------------------------------------------------------------------------------------------
// Processes: every child is tracked and killed (with its own children) when the bench exits.

const children = new Set<ChildProcess>();
const workDir = mkdtempSync(join(tmpdir(), 'ringkv-bench-cluster-'));

/** Child pids of `pid` (Linux /proc): `ringkv dev` runs its nodes in their own process groups. */
function childPids(pid: number): number[] {
  const file = `/proc/${pid}/task/${pid}/children`;
  if (!existsSync(file)) return [];
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/).filter((text) => text !== '').map(Number);
  } catch {
    return [];
  }
}

function killTree(pid: number, signal: NodeJS.Signals): void {
  for (const child of childPids(pid)) killTree(child, signal);
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

process.on('exit', () => {
  for (const child of children) if (isRunning(child) && child.pid !== undefined) killTree(child.pid, 'SIGKILL');
  rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    console.error(`\n${signal}: stopping every child process`);
    process.exit(130);
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isRunning(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** SIGTERM, then after `stopTimeoutMs` SIGKILL to the whole tree; also kills leftover grandchildren. */
async function stopProcess(child: ChildProcess, what: string): Promise<void> {
  assert(child.pid !== undefined, () => `stopProcess: ${what} has no pid`);
  const grandchildren = childPids(child.pid);
  child.kill('SIGTERM');
  if (!(await exited(child, stopTimeoutMs))) {
    console.log(`  ${what} did not stop within ${stopTimeoutMs / 1000} s: killed`);
    killTree(child.pid, 'SIGKILL');
    await exited(child, stopTimeoutMs);
  }
  for (const pid of grandchildren) killTree(pid, 'SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// Ports and readiness

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * `count` consecutive free ports. Below the ephemeral range (32768+ here), where the ports
 * that tests get from the kernel (listen on port 0) are not, so parallel test runs do not race us.
 */
async function freePortBlock(count: number): Promise<number> {
  for (let attempt = 0; attempt < portBlockAttemptsMax; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await canListen(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports on ${host} after ${portBlockAttemptsMax} attempts`);
}

async function fetchJson(url: string): Promise<unknown> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(httpTimeoutMs) });
    if (response.status !== 200) {
      await response.arrayBuffer();
      return undefined;
    }
    return (await response.json()) as unknown;
  } catch {
    return undefined;
  }
}

async function waitUntil(what: string, check: () => Promise<boolean>, alive: () => boolean): Promise<void> {
  const deadlineMs = performance.now() + readyTimeoutMs;
  while (performance.now() < deadlineMs) {
    if (!alive()) throw new Error(`${what}: the process exited`);
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, readyPollMs));
  }
  throw new Error(`${what}: not within ${readyTimeoutMs / 1000} s`);
}

interface StatusMember {
  readonly nodeId: string;
  readonly status: string;
  readonly partitions: number;
}

/** Whether the node on `httpPort` sees `nodes` valid members that own every partition between them. */
async function sees(httpPort: number, nodes: number): Promise<boolean> {
  const status = (await fetchJson(`http://${host}:${httpPort}/admin/status`)) as
    | { ring?: { partitionCount?: number }; members?: StatusMember[] }
    | undefined;
  const members = status?.members ?? [];
  const valid = members.filter((member) => member.status === 'valid' && member.partitions > 0);
  const owned = valid.reduce((sum, member) => sum + member.partitions, 0);
  return valid.length === nodes && owned === status?.ring?.partitionCount;
}

// ---------------------------------------------------------------------------------------------
// The two setups

interface LogSummary {
  /** `LEVEL message` (node) -> count. */
  readonly counts: Map<string, number>;
  /** First line seen of each key. */
  readonly examples: Map<string, string>;
  linesSeen: number;
}

interface Running {
  readonly setup: Setup;
  readonly process: ChildProcess;
  readonly respPorts: readonly number[];
  readonly logs: LogSummary;
}

const devLinePattern = /^\[(dev-\d+)\] \S+ (WARN|ERROR|FATAL)\s+(.*)$/;
const pinoLevelNames: Record<number, string> = { 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** The key a log line is counted under, or undefined for lines that are not problems. */
function problemKey(setup: Setup, line: string, stream: 'stdout' | 'stderr'): string | undefined {
  if (stream === 'stderr') return `${setup} stderr: ${line.slice(0, 120)}`;
  const dev = devLinePattern.exec(line);
  if (dev !== null) {
    // The message runs up to the first ` field=value`.
    const message = (dev[3] as string).split(/ (?=[A-Za-z_][\w.]*=)/)[0];
    return `${setup} ${dev[1]} ${dev[2]} ${message}`;
  }
  if (/^ringkv dev: .*(exited unexpectedly|restarted|cannot be kept|killed)/.test(line)) return `${setup} supervisor: ${line.replace(/\(pid \d+\)|\d+ ms/g, '#')}`;
  if (line.startsWith('{')) {
    try {
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      const level = pinoLevelNames[entry.level ?? 0];
      if (level !== undefined) return `${setup} node ${level} ${entry.msg ?? ''}`;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function collectLogs(setup: Setup, child: ChildProcess, logs: LogSummary): void {
  for (const stream of ['stdout', 'stderr'] as const) {
    const input = child[stream];
    assert(input !== null, () => `collectLogs: ${stream} is not piped`);
    createInterface({ input, crlfDelay: Infinity }).on('line', (line) => {
      logs.linesSeen++;
      const key = problemKey(setup, line, stream);
      if (key === undefined) return;
      logs.counts.set(key, (logs.counts.get(key) ?? 0) + 1);
      if (!logs.examples.has(key) && logs.examples.size < logLinesMax) logs.examples.set(key, line.slice(0, 400));
    });
  }
}

function newLogSummary(): LogSummary {
  return { counts: new Map(), examples: new Map(), linesSeen: 0 };
}

async function startCluster(round: number): Promise<Running> {
  const base = await freePortBlock(3 * clusterNodes);
  const [httpBase, respBase, peerBase] = [base, base + clusterNodes, base + 2 * clusterNodes];
  const child = track(spawn(process.execPath, [
    entry, 'dev', '--nodes', String(clusterNodes), '--dir', join(workDir, `cluster-${round}`),
    '--base-http-port', String(httpBase), '--base-resp-port', String(respBase), '--base-peer-port', String(peerBase),
  ], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const logs = newLogSummary();
  collectLogs('cluster', child, logs);
  const httpPorts = Array.from({ length: clusterNodes }, (_, index) => httpBase + index);
  await waitUntil(`the ${clusterNodes}-node cluster to converge (GET /admin/status on every node)`,
    async () => (await Promise.all(httpPorts.map((port) => sees(port, clusterNodes)))).every(Boolean), () => isRunning(child));
  return { setup: 'cluster', process: child, respPorts: Array.from({ length: clusterNodes }, (_, index) => respBase + index), logs };
}

async function startSingle(round: number): Promise<Running> {
  const base = await freePortBlock(3);
  const child = track(spawn(process.execPath, [
    entry, 'start', '--n-val', '1', '--r', '1', '--w', '1', '--data-dir', join(workDir, `single-${round}`), '--host', host,
    '--http-port', String(base), '--resp-port', String(base + 1), '--peer-port', String(base + 2),
    '--log-level', 'warn', '--log-format', 'json',
  ], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const logs = newLogSummary();
  collectLogs('single', child, logs);
  await waitUntil('the single node to answer GET /health', async () => (await fetchJson(`http://${host}:${base}/health`)) !== undefined, () => isRunning(child));
  return { setup: 'single', process: child, respPorts: [base + 1], logs };
}

// ---------------------------------------------------------------------------------------------
// Load: redis-benchmark processes, their output, merged histograms

interface BenchmarkRun {
  readonly requests: number;
  readonly seconds: number;
  readonly opsPerSecond: number;
  /** (latency ms, cumulative count) points of the process's histogram, by latency. */
  readonly points: readonly (readonly [number, number])[];
}

/** Parses redis-benchmark's full (not --csv, not -q) output of one test. */
function parseBenchmarkOutput(output: string): BenchmarkRun {
  const completed = /(\d+) requests completed in ([0-9.]+) seconds/.exec(output);
  const throughput = /throughput summary: ([0-9.]+) requests per second/.exec(output);
  assert(completed !== null && throughput !== null, () => `parseBenchmarkOutput: no summary in ${JSON.stringify(output.slice(-500))}`);
  const points: [number, number][] = [];
  for (const match of output.matchAll(/^\s*[0-9.]+% <= ([0-9.]+) milliseconds \(cumulative count (\d+)\)/gm)) {
    points.push([Number(match[1]), Number(match[2])]);
  }
  points.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  // Both printed sections come from one histogram; keep the counts monotonic anyway.
  for (let index = 1; index < points.length; index++) {
    const previous = points[index - 1] as [number, number];
    const point = points[index] as [number, number];
    point[1] = Math.max(point[1], previous[1]);
  }
  const requestCount = Number(completed[1]);
  assert(points.length > 0 && (points.at(-1) as [number, number])[1] === requestCount, () => `parseBenchmarkOutput: histogram does not add up to ${requestCount} requests`);
  return { requests: requestCount, seconds: Number(completed[2]), opsPerSecond: Number(throughput[1]), points };
}

/** Requests of `run` with latency <= `latencyMs`, interpolated linearly between its points. */
function cumulativeCount(run: BenchmarkRun, latencyMs: number): number {
  let previous: readonly [number, number] = [0, 0];
  for (const point of run.points) {
    if (latencyMs < point[0]) {
      const span = point[0] - previous[0];
      return span <= 0 ? previous[1] : previous[1] + ((point[1] - previous[1]) * (latencyMs - previous[0])) / span;
    }
    previous = point;
  }
  return previous[1];
}

/** The latency below which `fraction` of all requests of `runs` fall: bisection on the summed CDFs. */
function mergedPercentileMs(runs: readonly BenchmarkRun[], fraction: number): number {
  assert(fraction > 0 && fraction <= 1 && runs.length > 0, 'mergedPercentileMs: fraction in (0, 1], at least one run');
  const wanted = fraction * runs.reduce((sum, run) => sum + run.requests, 0);
  let [low, high] = [0, Math.max(...runs.map((run) => (run.points.at(-1) as readonly [number, number])[0]))];
  for (let step = 0; step < 60; step++) {
    const middle = (low + high) / 2;
    if (runs.reduce((sum, run) => sum + cumulativeCount(run, middle), 0) >= wanted) high = middle;
    else low = middle;
  }
  return high;
}

function runBenchmark(port: number, test: Test, requestCount: number, clientCount: number): Promise<BenchmarkRun> {
  const child = track(spawn('redis-benchmark', [
    '-h', host, '-p', String(port), '-t', test.toLowerCase(), '-n', String(requestCount), '-c', String(clientCount),
    '-d', String(valueBytes), '-P', '1', '-r', String(keyspace),
  ], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let output = '';
  const append = (chunk: Buffer): void => {
    if (output.length < outputBytesMax) output += chunk.toString();
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-benchmark -t ${test} on port ${port} did not finish within ${benchmarkTimeoutMs / 1000} s`));
    }, benchmarkTimeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      const error = /Error from server: ([^\r\n]*)/.exec(output) ?? /(Error: [^\r\n]*)/.exec(output);
      if (code !== 0 || error !== null) {
        reject(new Error(`redis-benchmark -t ${test} on port ${port} failed (exit ${code}): ${error?.[1] ?? output.slice(-300)}`));
        return;
      }
      resolve(parseBenchmarkOutput(output));
    });
  });
}

/** `total` split into `parts` integers that differ by at most one. */
function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, index) => Math.floor(total / parts) + (index < total % parts ? 1 : 0));
}

interface LoadResult {
  readonly opsPerSecond: number;
  /** Requests over the longest process's time: lower than opsPerSecond when processes finish unevenly. */
  readonly wallOpsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

async function runLoad(respPorts: readonly number[], test: Test, requestCount: number): Promise<LoadResult> {
  const clientCounts = split(clients, loadProcesses);
  const requestCounts = split(requestCount, loadProcesses);
  const runs = await Promise.all(clientCounts.map((clientCount, index) =>
    runBenchmark(respPorts[index % respPorts.length] as number, test, requestCounts[index] as number, Math.max(1, clientCount))));
  const requestsDone = runs.reduce((sum, run) => sum + run.requests, 0);
  return {
    opsPerSecond: runs.reduce((sum, run) => sum + run.opsPerSecond, 0),
    wallOpsPerSecond: requestsDone / Math.max(...runs.map((run) => run.seconds)),
    p50Ms: mergedPercentileMs(runs, 0.5),
    p99Ms: mergedPercentileMs(runs, 0.99),
    p999Ms: mergedPercentileMs(runs, 0.999),
  };
}

// ---------------------------------------------------------------------------------------------
// Rounds and the report

function median(values: readonly number[]): number {
  assert(values.length > 0, 'median: no values');
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const samples = new Map<string, LoadResult[]>();
const logsBySetup = new Map<Setup, LogSummary[]>();

async function measure(setup: Setup, round: number): Promise<void> {
  const startedMs = performance.now();
  const running = setup === 'cluster' ? await startCluster(round) : await startSingle(round);
  logsBySetup.set(setup, [...(logsBySetup.get(setup) ?? []), running.logs]);
  try {
    for (const test of tests) await runLoad(running.respPorts, test, warmupRequests); // JIT, allocations
    for (const test of tests) {
      const result = await runLoad(running.respPorts, test, requests);
      samples.set(`${setup} ${test}`, [...(samples.get(`${setup} ${test}`) ?? []), result]);
      console.log(`  ${setupNames[setup]} ${test}: ${Math.round(result.opsPerSecond)} ops/s (requests / longest process: ${Math.round(result.wallOpsPerSecond)}), `
        + `p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, p99.9 ${result.p999Ms.toFixed(2)} ms`);
    }
  } finally {
    await stopProcess(running.process, setupNames[setup]);
  }
  console.log(`  ${setupNames[setup]}: started, loaded and stopped in ${((performance.now() - startedMs) / 1000).toFixed(1)} s`);
}

function printTable(): void {
  const rate = (setup: Setup, test: Test, pick: (result: LoadResult) => number): number => median((samples.get(`${setup} ${test}`) ?? []).map(pick));
  console.log(`\n${clients} clients in ${loadProcesses} redis-benchmark processes, -n ${requests} per test, -d ${valueBytes}, -P 1, -r ${keyspace}; median of ${rounds} round${rounds === 1 ? '' : 's'}\n`);
  console.log('| setup | test | ops/s | p50 ms | p99 ms | p99.9 ms | cluster / single ops/s |');
  console.log('|---|---|---|---|---|---|---|');
  for (const test of tests) {
    for (const setup of setups) {
      const ratio = rate('cluster', test, (result) => result.opsPerSecond) / rate('single', test, (result) => result.opsPerSecond);
      console.log(`| ${setupNames[setup]} | ${test} | ${Math.round(rate(setup, test, (result) => result.opsPerSecond))} | ${rate(setup, test, (result) => result.p50Ms).toFixed(2)} | `
        + `${rate(setup, test, (result) => result.p99Ms).toFixed(2)} | ${rate(setup, test, (result) => result.p999Ms).toFixed(2)} | ${setup === 'cluster' ? `${(100 * ratio).toFixed(0)}%` : ''} |`);
    }
  }
  console.log(`\ntarget: cluster ≥ ${100 * target.ratioMin}% of single-node ops/s, p99 < ${target.p99MsMax} ms at ${target.clients} clients`);
  let met = true;
  for (const test of tests) {
    const ratio = rate('cluster', test, (result) => result.opsPerSecond) / rate('single', test, (result) => result.opsPerSecond);
    const p99Ms = rate('cluster', test, (result) => result.p99Ms);
    const ok = ratio >= target.ratioMin && p99Ms < target.p99MsMax;
    met &&= ok;
    console.log(`  ${test}: ${(100 * ratio).toFixed(0)}% of single-node ops/s, cluster p99 ${p99Ms.toFixed(2)} ms: ${ok ? 'met' : 'not met'}`);
  }
  const note = clients === target.clients ? '' : ` (measured at ${clients} clients, not the target's ${target.clients})`;
  console.log(`  => target ${met ? 'met' : 'not met'}${note}`);
}

function printLogs(): void {
  console.log('\nnode log lines at WARN and above, restarts and stderr, over every round:');
  let any = false;
  for (const setup of setups) {
    const summaries = logsBySetup.get(setup) ?? [];
    const counts = new Map<string, number>();
    const examples = new Map<string, string>();
    for (const summary of summaries) {
      for (const [key, count] of summary.counts) counts.set(key, (counts.get(key) ?? 0) + count);
      for (const [key, line] of summary.examples) if (!examples.has(key)) examples.set(key, line);
    }
    for (const [key, count] of [...counts].sort((a, b) => b[1] - a[1])) {
      any = true;
      console.log(`  ${count} x ${key}\n      e.g. ${examples.get(key) ?? ''}`);
    }
  }
  if (!any) console.log('  none');
}

async function main(): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v redis-benchmark']).status !== 0) {
    console.error('redis-benchmark is not installed. On Debian/Ubuntu: apt-get install redis-tools');
    process.exit(2);
  }
  if (!existsSync(entry)) {
    console.error(`${entry} is missing: run npm run build first`);
    process.exit(2);
  }
  const startedMs = performance.now();
  // The machine may be shared: a load already there lowers both setups, the cluster more (3 processes).
  console.log(`load average before: ${loadavg().map((value) => value.toFixed(2)).join(' ')}`);
  for (let round = 1; round <= rounds; round++) {
    console.log(`round ${round}/${rounds}`);
    for (const setup of round % 2 === 1 ? setups : [...setups].reverse()) await measure(setup, round);
  }
  printTable();
  printLogs();
  console.log(`\nload average after: ${loadavg().map((value) => value.toFixed(2)).join(' ')}`);
  console.log(`total ${((performance.now() - startedMs) / 1000).toFixed(0)} s`);
  process.exit(0);
}

try {
  await main();
} catch (error) {
  console.error(`bench/cluster: ${error instanceof Error ? error.message : String(error)}`);
  printLogs();
  process.exit(1);
}
