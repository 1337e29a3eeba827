import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Command, Option } from 'commander';
import { z } from 'zod';
import { assert } from '../core/assert.js';
import { configOptions } from '../node/config.js';
import { SystemClock, type Clock, type TimerHandle } from '../world/clock.js';

/**
 * `ringkv dev`: a local cluster in one command. It starts N `ringkv start` processes on loopback
 * with consecutive ports and one data directory each, node 1 alone and the others with
 * `--join` to node 1, and supervises them one level above the node's own supervisor, in the
 * OTP sense: a node process that exits unexpectedly is restarted with the same flags after a
 * back-off; a node that keeps dying (more than `restartsMax` exits within `restartWindowMs`)
 * stops the whole cluster, since restarting does not help. Ctrl-C stops every node cleanly.
 *
 * The pieces that decide are pure or take their world as arguments, for the tests: option
 * checks and the plan (`parseDevOptions`, `planDevCluster`), the restart policy, the log line
 * format, and `DevSupervisor`, which gets a `launch` function and a Clock.
 */

const exitFailure = 1;
const exitUsage = 2;
/** Loopback only: a dev cluster is not meant to be reachable from elsewhere. */
const devHost = '127.0.0.1';
const nodesMax = 32;
/** How long the first node may take to answer /health before the others are started anyway. */
const healthWaitMs = 30_000;
const healthPollMs = 250;
/** On Ctrl-C, how long the nodes may take to stop before they are killed. */
const stopTimeoutMs = 10_000;

// ---------------------------------------------------------------------------------------------
// Options and the plan (pure)

const port = z.coerce.number().int().min(1).max(65535);
const nodesMessage = `must be an integer from 1 to ${nodesMax}`;

/** Every flag of `ringkv dev`, its default and meaning; quorum and log options reuse the node's schema. */
export const devOptionSpecs = {
  nodes: { flag: 'nodes', schema: z.coerce.number({ error: nodesMessage }).int(nodesMessage).min(1, nodesMessage).max(nodesMax, nodesMessage), default: '3', doc: `Number of node processes (1 to ${nodesMax}).` },
  dir: { flag: 'dir', schema: z.string().min(1), default: './dev-cluster', doc: 'Folder of the data directories (<dir>/dev-1, ...).' },
  baseHttpPort: { flag: 'base-http-port', schema: port, default: '8098', doc: 'HTTP port of dev-1; dev-i gets base + i - 1.' },
  baseRespPort: { flag: 'base-resp-port', schema: port, default: '6380', doc: 'Redis-protocol port of dev-1; dev-i gets base + i - 1.' },
  basePeerPort: { flag: 'base-peer-port', schema: port, default: '7800', doc: 'Peer port of dev-1; dev-i gets base + i - 1.' },
  nVal: { flag: 'n-val', schema: configOptions.nVal.schema, default: '3', doc: 'Default replicas per key (N) of every node.' },
  r: { flag: 'r', schema: configOptions.r.schema, default: '2', doc: 'Default read quorum (R).' },
  w: { flag: 'w', schema: configOptions.w.schema, default: '2', doc: 'Default write quorum (W).' },
  logLevel: { flag: 'log-level', schema: configOptions.logLevel.schema, default: 'warn', doc: 'Log level of the nodes.' },
} as const;

type DevOptionKey = keyof typeof devOptionSpecs;
export type DevOptions = { readonly [K in DevOptionKey]: z.output<(typeof devOptionSpecs)[K]['schema']> };
export type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

const portFlags = ['baseHttpPort', 'baseRespPort', 'basePeerPort'] as const;

/** Validates the flags (strings from the command line) one by one, then across each other. */
export function parseDevOptions(flags: Partial<Record<DevOptionKey, unknown>>): Checked<DevOptions> {
  const values: Record<string, unknown> = {};
  for (const key of Object.keys(devOptionSpecs) as DevOptionKey[]) {
    const spec = devOptionSpecs[key];
    const raw = flags[key] ?? spec.default;
    const parsed = (spec.schema as z.ZodType).safeParse(raw);
    if (!parsed.success) return { ok: false, message: `invalid --${spec.flag}: ${parsed.error.issues[0]?.message ?? 'invalid'} (got ${JSON.stringify(raw)})` };
    values[key] = parsed.data;
  }
  const options = values as DevOptions;
  for (const quorum of ['r', 'w'] as const) {
    if (options[quorum] > options.nVal) return { ok: false, message: `invalid --${quorum}: must be at most --n-val (${options.nVal}), got ${options[quorum]}` };
  }
  for (const key of portFlags) {
    const last = options[key] + options.nodes - 1;
    if (last > 65535) return { ok: false, message: `invalid --${devOptionSpecs[key].flag}: ${options.nodes} nodes need ports up to ${last}, past 65535` };
  }
  for (const [index, first] of portFlags.entries()) {
    for (const second of portFlags.slice(index + 1)) {
      if (Math.abs(options[first] - options[second]) < options.nodes) {
        return { ok: false, message: `invalid --${devOptionSpecs[second].flag}: its ${options.nodes} ports overlap those of --${devOptionSpecs[first].flag} (${options[first]}-${options[first] + options.nodes - 1})` };
      }
    }
  }
  return { ok: true, value: options };
}

export interface DevNodeSpec {
  /** 1-based. */
  readonly index: number;
  readonly nodeId: string;
  readonly httpPort: number;
  readonly respPort: number;
  readonly peerPort: number;
  /** As shown to the user (under `--dir` as given). */
  readonly dataDir: string;
  /** The arguments after the entry script: `start --node-id dev-1 ...`. */
  readonly args: readonly string[];
}

/** The nodes of the cluster: dev-1 alone, the others joining through dev-1's peer port. */
export function planDevCluster(options: DevOptions, workingDirectory: string): DevNodeSpec[] {
  assert(options.nodes >= 1 && options.nodes <= nodesMax, () => `planDevCluster: nodes out of range: ${options.nodes}`);
  const specs: DevNodeSpec[] = [];
  for (let index = 1; index <= options.nodes; index++) {
    const nodeId = `dev-${index}`;
    const [httpPort, respPort, peerPort] = portFlags.map((key) => options[key] + index - 1) as [number, number, number];
    const dataDir = join(options.dir, nodeId);
    const args = [
      'start', '--node-id', nodeId, '--data-dir', resolve(workingDirectory, dataDir), '--host', devHost,
      '--http-port', String(httpPort), '--resp-port', String(respPort), '--peer-port', String(peerPort),
      '--n-val', String(options.nVal), '--r', String(options.r), '--w', String(options.w),
      '--log-level', options.logLevel, '--log-format', 'json',
      // A restarted node gets the same flags, so it rejoins through dev-1 as it first joined.
      ...(index === 1 ? [] : ['--join', `${devHost}:${options.basePeerPort}`]),
    ];
    specs.push({ index, nodeId, httpPort, respPort, peerPort, dataDir, args });
  }
  return specs;
}

export interface PortUse {
  readonly port: number;
  /** `HTTP port of dev-1`. */
  readonly label: string;
  /** The flag that moves it. */
  readonly flag: string;
}

export function portsOf(specs: readonly DevNodeSpec[]): PortUse[] {
  return specs.flatMap((spec) => [
    { port: spec.httpPort, label: `HTTP port of ${spec.nodeId}`, flag: '--base-http-port' },
    { port: spec.respPort, label: `Redis-protocol port of ${spec.nodeId}`, flag: '--base-resp-port' },
    { port: spec.peerPort, label: `peer port of ${spec.nodeId}`, flag: '--base-peer-port' },
  ]);
}

/** The first port of `ports` that cannot be listened on, with the reason (EADDRINUSE, EACCES). */
export async function findUnusablePort(ports: readonly PortUse[], host: string): Promise<(PortUse & { code: string }) | undefined> {
  for (const use of ports) {
    const code = await tryListen(use.port, host);
    if (code !== undefined) return { ...use, code };
  }
  return undefined;
}

function tryListen(port: number, host: string): Promise<string | undefined> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolvePromise(error.code ?? error.message));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolvePromise(undefined)));
  });
}

// ---------------------------------------------------------------------------------------------
// Restart policy (pure)

export interface RestartPolicyOptions {
  /** First delay before a node is restarted; doubled for each consecutive failure. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  /** More exits than this within `restartWindowMs` gives up (OTP's intensity and period). */
  readonly restartsMax: number;
  /** Also how long a node must run for its back-off to start again from the initial delay. */
  readonly restartWindowMs: number;
}

export const devRestartPolicy: RestartPolicyOptions = { backoffInitialMs: 500, backoffMaxMs: 10_000, restartsMax: 5, restartWindowMs: 60_000 };

export type RestartDecision =
  | { readonly kind: 'restart'; readonly delayMs: number; readonly restartsInWindow: number }
  | { readonly kind: 'give-up'; readonly exitsInWindow: number };

/** 2 ** 30 times any initial delay is past any sane cap; stopping there keeps the product finite. */
const backoffExponentMax = 30;

/** Decides, for one node, whether and when to restart it after an exit. Time comes in as arguments. */
export class RestartPolicy {
  /** Exits inside the window, oldest first; at most restartsMax + 1 entries. */
  private readonly exitTimesMs: number[] = [];
  private failuresConsecutive = 0;
  private startedAtMs: number | undefined;

  constructor(private readonly options: RestartPolicyOptions) {
    assert(options.backoffInitialMs > 0 && options.backoffMaxMs >= options.backoffInitialMs, 'RestartPolicy: need 0 < backoffInitialMs <= backoffMaxMs');
    assert(Number.isSafeInteger(options.restartsMax) && options.restartsMax >= 0, () => `RestartPolicy: restartsMax must be an integer >= 0, got ${options.restartsMax}`);
    assert(options.restartWindowMs > 0, () => `RestartPolicy: restartWindowMs must be > 0, got ${options.restartWindowMs}`);
  }

  started(nowMs: number): void {
    this.startedAtMs = nowMs;
  }

  exited(nowMs: number): RestartDecision {
    const { backoffInitialMs, backoffMaxMs, restartsMax, restartWindowMs } = this.options;
    // A node that ran a whole window without failing starts its back-off over.
    if (this.startedAtMs !== undefined && nowMs - this.startedAtMs >= restartWindowMs) this.failuresConsecutive = 0;
    this.startedAtMs = undefined;
    while (this.exitTimesMs.length > 0 && nowMs - (this.exitTimesMs[0] as number) >= restartWindowMs) this.exitTimesMs.shift();
    this.exitTimesMs.push(nowMs);
    assert(this.exitTimesMs.length <= restartsMax + 1, 'RestartPolicy: exits kept after giving up');
    if (this.exitTimesMs.length > restartsMax) return { kind: 'give-up', exitsInWindow: this.exitTimesMs.length };
    const delayMs = Math.min(backoffMaxMs, backoffInitialMs * 2 ** Math.min(this.failuresConsecutive, backoffExponentMax));
    this.failuresConsecutive++;
    return { kind: 'restart', delayMs, restartsInWindow: this.exitTimesMs.length };
  }
}

// ---------------------------------------------------------------------------------------------
// Output (pure)

const pinoLevels: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function formatTimeOfDay(epochMs: number): string {
  const time = new Date(epochMs);
  const two = (value: number): string => String(value).padStart(2, '0');
  return `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}.${String(time.getMilliseconds()).padStart(3, '0')}`;
}

function formatField(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  // pino serializes errors as { type, message, stack }: the message is what a reader needs here.
  if (typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string') return JSON.stringify((value as { message: string }).message);
  return JSON.stringify(value) ?? String(value);
}

/**
 * One line a node wrote, prefixed with its id; a pino JSON line becomes
 * `[dev-2] 12:00:01.234 WARN  message key=value ...`. Anything else is kept as it is.
 */
export function formatNodeLine(nodeId: string, line: string): string {
  const prefix = `[${nodeId}]`;
  let entry: unknown;
  try {
    entry = line.startsWith('{') ? JSON.parse(line) : undefined;
  } catch {
    entry = undefined;
  }
  if (typeof entry !== 'object' || entry === null || typeof (entry as { msg?: unknown }).msg !== 'string') return `${prefix} ${line}`;
  const { level, time, msg, ...fields } = entry as Record<string, unknown>;
  const levelName = (typeof level === 'number' ? pinoLevels[level] : undefined) ?? String(level ?? '').toUpperCase();
  const parts = [prefix];
  if (typeof time === 'number') parts.push(formatTimeOfDay(time));
  if (levelName !== '') parts.push(levelName.padEnd(5));
  parts.push(msg as string, ...Object.entries(fields).map(([key, value]) => `${key}=${formatField(value)}`));
  return parts.join(' ');
}

/** How to reach each node: the table printed once the cluster is up. */
export function formatReachTable(specs: readonly DevNodeSpec[], pids: ReadonlyMap<string, number | undefined>): string {
  const header = ['node', 'pid', 'redis', 'http', 'peer', 'data'];
  const rows = specs.map((spec) => [
    spec.nodeId, String(pids.get(spec.nodeId) ?? '-'), `redis-cli -p ${spec.respPort}`, `http://${devHost}:${spec.httpPort}`, `${devHost}:${spec.peerPort}`, spec.dataDir,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Supervision of the node processes

export interface NodeExit {
  readonly code: number | null;
  readonly signal: string | null;
  /** Set when the process could not be started at all. */
  readonly error?: string;
}

/** A running node process, as the supervisor sees it. */
export interface NodeProcess {
  readonly pid: number | undefined;
  /** Sends a signal; does nothing once the process is gone. */
  kill(signal: 'SIGTERM' | 'SIGKILL'): void;
  /** Settles once the process is gone and its output is read; never rejects. */
  readonly exited: Promise<NodeExit>;
}

export type GiveUpReason =
  | { readonly kind: 'intensity'; readonly nodeId: string; readonly exits: number; readonly windowMs: number; readonly last: NodeExit }
  /** The node refused its configuration (exit code 2): the same flags would be refused again. */
  | { readonly kind: 'configuration'; readonly nodeId: string; readonly last: NodeExit };

export interface DevSupervisorOptions {
  readonly launch: (spec: DevNodeSpec) => NodeProcess;
  readonly clock: Clock;
  readonly policy: RestartPolicyOptions;
  /** A line for the user about what the supervisor did. */
  readonly log: (line: string) => void;
  /** Called once; the supervisor restarts nothing after it. The caller then calls stop(). */
  readonly onGiveUp: (reason: GiveUpReason) => void;
}

interface SupervisedNode {
  readonly spec: DevNodeSpec;
  readonly policy: RestartPolicy;
  process: NodeProcess | undefined;
  restartTimer: TimerHandle | undefined;
}

export function describeExit(exit: NodeExit): string {
  if (exit.error !== undefined) return `could not be started: ${exit.error}`;
  if (exit.signal !== null) return `killed by ${exit.signal}`;
  return `exit code ${String(exit.code)}`;
}

/** Restarts node processes that exit while the cluster runs; stops them all on request. */
export class DevSupervisor {
  private readonly nodes = new Map<string, SupervisedNode>();
  /** Set by stop() or by giving up: from then on nothing is (re)started. */
  private halted = false;
  private stopping: Promise<{ forced: string[] }> | undefined;

  constructor(private readonly options: DevSupervisorOptions) {}

  /** Starts a node for the first time. */
  start(spec: DevNodeSpec): void {
    assert(!this.nodes.has(spec.nodeId), () => `DevSupervisor.start: ${spec.nodeId} already started`);
    const node: SupervisedNode = { spec, policy: new RestartPolicy(this.options.policy), process: undefined, restartTimer: undefined };
    this.nodes.set(spec.nodeId, node);
    this.launch(node);
  }

  pid(nodeId: string): number | undefined {
    return this.nodes.get(nodeId)?.process?.pid;
  }

  /** Whether a process of the node runs now (not exited, not waiting for its restart). */
  isRunning(nodeId: string): boolean {
    return this.nodes.get(nodeId)?.process !== undefined;
  }

  /**
   * SIGTERM to every running node, SIGKILL to those still running after `forceAfterMs`; resolves
   * when all are gone, with the ids of the killed ones. Calling it again returns the same promise.
   */
  stop(forceAfterMs: number): Promise<{ forced: string[] }> {
    this.stopping ??= this.stopAll(forceAfterMs);
    return this.stopping;
  }

  /** Last resort when this process exits without stop(): nothing may outlive it. */
  killAll(): void {
    for (const node of this.nodes.values()) node.process?.kill('SIGKILL');
  }

  private async stopAll(forceAfterMs: number): Promise<{ forced: string[] }> {
    assert(forceAfterMs > 0, () => `DevSupervisor.stop: forceAfterMs must be > 0, got ${forceAfterMs}`);
    this.halted = true;
    const running: { nodeId: string; process: NodeProcess; gone: boolean }[] = [];
    for (const node of this.nodes.values()) {
      node.restartTimer?.cancel();
      node.restartTimer = undefined;
      if (node.process !== undefined) running.push({ nodeId: node.spec.nodeId, process: node.process, gone: false });
    }
    for (const entry of running) entry.process.kill('SIGTERM');
    const forced: string[] = [];
    const timer = this.options.clock.setTimer(forceAfterMs, () => {
      for (const entry of running.filter((candidate) => !candidate.gone)) {
        forced.push(entry.nodeId);
        entry.process.kill('SIGKILL');
      }
    });
    await Promise.all(running.map((entry) => entry.process.exited.then(() => (entry.gone = true))));
    timer.cancel();
    return { forced };
  }

  private launch(node: SupervisedNode): void {
    node.restartTimer = undefined;
    if (this.halted) return;
    const process = this.options.launch(node.spec);
    node.process = process;
    node.policy.started(this.options.clock.nowMs());
    void process.exited.then((exit) => this.onExit(node, process, exit));
  }

  private onExit(node: SupervisedNode, process: NodeProcess, exit: NodeExit): void {
    assert(node.process === process, () => `DevSupervisor: exit of a process of ${node.spec.nodeId} that is not its current one`);
    node.process = undefined;
    if (this.halted) return;
    const { nodeId } = node.spec;
    if (exit.code === exitUsage) return this.giveUp({ kind: 'configuration', nodeId, last: exit });
    // Exit code 0 is a node that meant to stop (it left the cluster, or was sent SIGTERM from
    // outside): an OTP transient child, not restarted.
    if (exit.code === 0) {
      this.options.log(`${nodeId} stopped (exit code 0: it left the cluster or was stopped); not restarting it`);
      return;
    }
    const decision = node.policy.exited(this.options.clock.nowMs());
    if (decision.kind === 'give-up') {
      return this.giveUp({ kind: 'intensity', nodeId, exits: decision.exitsInWindow, windowMs: this.options.policy.restartWindowMs, last: exit });
    }
    const { restartsMax, restartWindowMs } = this.options.policy;
    this.options.log(`${nodeId} exited unexpectedly (${describeExit(exit)}); restarting it in ${decision.delayMs} ms (restart ${decision.restartsInWindow} of at most ${restartsMax} in ${restartWindowMs / 1000} s)`);
    node.restartTimer = this.options.clock.setTimer(decision.delayMs, () => {
      this.launch(node);
      if (node.process !== undefined) this.options.log(`${nodeId} restarted (pid ${String(node.process.pid ?? '-')})`);
    });
  }

  private giveUp(reason: GiveUpReason): void {
    this.halted = true;
    for (const node of this.nodes.values()) node.restartTimer?.cancel();
    this.options.onGiveUp(reason);
  }
}

export function giveUpMessage(reason: GiveUpReason): string {
  if (reason.kind === 'configuration') return `${reason.nodeId} refused its configuration (exit code 2; its lines above say why); stopping the cluster`;
  return `${reason.nodeId} exited ${reason.exits} times within ${reason.windowMs / 1000} s (last: ${describeExit(reason.last)}); restarting does not help, stopping the cluster`;
}

// ---------------------------------------------------------------------------------------------
// The real world: processes, health checks, signals

/** How to run `ringkv` again: this Node, its flags (tsx's loader when run from source), this entry. */
export interface RingkvCommand {
  readonly execPath: string;
  readonly execArgv: readonly string[];
  readonly entry: string;
}

export function currentRingkvCommand(): RingkvCommand {
  const entry = process.argv[1];
  assert(entry !== undefined, 'ringkv dev: process.argv[1] (the entry script) is missing');
  // A debugger port would clash between the node processes.
  const execArgv = process.execArgv.filter((flag) => !/^--inspect(-brk|-port|-wait)?(=|$)/.test(flag));
  return { execPath: process.execPath, execArgv, entry };
}

function launchNodeProcess(spec: DevNodeSpec, command: RingkvCommand): NodeProcess {
  // Own process group: Ctrl-C reaches only `ringkv dev`, which then stops the nodes one way (SIGTERM).
  const child = spawn(command.execPath, [...command.execArgv, command.entry, ...spec.args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => process.stdout.write(`${formatNodeLine(spec.nodeId, line)}\n`));
  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => process.stderr.write(`[${spec.nodeId}] ${line}\n`));
  const exited = new Promise<NodeExit>((resolvePromise) => {
    // 'close' comes after the output is read, so the node's last lines print before the supervisor's.
    child.once('close', (code, signal) => resolvePromise({ code, signal }));
    child.once('error', (error) => {
      if (child.pid === undefined) resolvePromise({ code: null, signal: null, error: error.message });
    });
  });
  return {
    pid: child.pid,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    exited,
  };
}

async function isHealthy(httpPort: number): Promise<boolean> {
  try {
    const response = await fetch(`http://${devHost}:${httpPort}/health`, { signal: AbortSignal.timeout(1000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** Polls GET /health until 200, `timeoutMs`, or `cancelled()`; whether it answered 200. */
async function waitUntilHealthy(httpPort: number, timeoutMs: number, cancelled: () => boolean): Promise<boolean> {
  const deadlineMs = performance.now() + timeoutMs;
  while (!cancelled() && performance.now() < deadlineMs) {
    if (await isHealthy(httpPort)) return true;
    await new Promise((resolvePromise) => setTimeout(resolvePromise, healthPollMs));
  }
  return false;
}

function say(line: string): void {
  process.stdout.write(`ringkv dev: ${line}\n`);
}

function fail(message: string, code: number): never {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exit(code);
}

async function checkedPlan(flags: Record<string, unknown>): Promise<{ options: DevOptions; specs: DevNodeSpec[] }> {
  const parsed = parseDevOptions(flags);
  if (!parsed.ok) return fail(parsed.message, exitUsage);
  const specs = planDevCluster(parsed.value, process.cwd());
  const unusable = await findUnusablePort(portsOf(specs), devHost);
  if (unusable !== undefined) {
    const why = unusable.code === 'EADDRINUSE' ? 'is already in use' : `cannot be listened on (${unusable.code})`;
    fail(`port ${unusable.port} (${unusable.label}) ${why}; pick other ports with ${unusable.flag}`, exitUsage);
  }
  try {
    mkdirSync(parsed.value.dir, { recursive: true });
  } catch (error) {
    fail(`invalid --dir: cannot create ${parsed.value.dir} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, exitUsage);
  }
  return { options: parsed.value, specs };
}

async function runDev(flags: Record<string, unknown>): Promise<void> {
  const { options, specs } = await checkedPlan(flags);
  const command = currentRingkvCommand();
  let shuttingDown = false;
  // Timers of the system clock do not hold the process open; while every node waits for its
  // restart nothing else would.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const shutdown = async (why: string, code: number): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    say(`${why}; stopping ${specs.length} node${specs.length === 1 ? '' : 's'}`);
    const { forced } = await supervisor.stop(stopTimeoutMs);
    if (forced.length > 0) say(`killed ${forced.join(', ')}: not stopped within ${stopTimeoutMs / 1000} s`);
    say('all nodes stopped');
    clearInterval(keepAlive);
    process.exit(code);
  };
  const supervisor = new DevSupervisor({
    launch: (spec) => launchNodeProcess(spec, command),
    clock: new SystemClock(),
    policy: devRestartPolicy,
    log: say,
    onGiveUp: (reason) => {
      process.stderr.write(`ringkv: ${giveUpMessage(reason)}\n`);
      void shutdown(`${reason.nodeId} cannot be kept running`, reason.kind === 'configuration' ? exitUsage : exitFailure);
    },
  });
  process.on('exit', () => supervisor.killAll());
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (!shuttingDown) return void shutdown(`${signal} received`, 0);
      say(`second ${signal}: killing the nodes now`);
      supervisor.killAll();
      process.exit(exitFailure);
    });
  }
  await startInOrder(specs, supervisor, () => shuttingDown);
  if (shuttingDown) return;
  const pids = new Map(specs.map((spec) => [spec.nodeId, supervisor.pid(spec.nodeId)]));
  const first = specs[0] as DevNodeSpec;
  process.stdout.write([
    '',
    `ringkv dev: ${specs.length} node${specs.length === 1 ? '' : 's'} on ${devHost} (N=${options.nVal}, R=${options.r}, W=${options.w}), data under ${options.dir}`,
    '',
    formatReachTable(specs, pids),
    '',
    `See the cluster: ringkv status --http ${devHost}:${first.httpPort}    Stop every node: Ctrl-C`,
    '',
  ].join('\n'));
}

/** dev-1 first, then (once it answers /health, or after healthWaitMs) the others, which join it. */
async function startInOrder(specs: readonly DevNodeSpec[], supervisor: DevSupervisor, cancelled: () => boolean): Promise<void> {
  const [first, ...rest] = specs;
  assert(first !== undefined, 'startInOrder: no nodes');
  supervisor.start(first);
  if (!(await waitUntilHealthy(first.httpPort, healthWaitMs, cancelled)) && !cancelled()) {
    process.stderr.write(`ringkv: ${first.nodeId} does not answer GET /health after ${healthWaitMs / 1000} s; starting the others anyway\n`);
  }
  for (const spec of rest) if (!cancelled()) supervisor.start(spec);
  const healthy = await Promise.all(rest.map((spec) => waitUntilHealthy(spec.httpPort, healthWaitMs, cancelled)));
  for (const [index, ok] of healthy.entries()) {
    if (!ok && !cancelled()) process.stderr.write(`ringkv: ${rest[index]?.nodeId} does not answer GET /health after ${healthWaitMs / 1000} s\n`);
  }
}

export function registerDevCommand(program: Command): void {
  const command = program.command('dev').description('run a local cluster: N node processes on 127.0.0.1 with consecutive ports, supervised; Ctrl-C stops them');
  for (const spec of Object.values(devOptionSpecs)) command.addOption(new Option(`--${spec.flag} <value>`, spec.doc).default(spec.default));
  command.action((flags: Record<string, unknown>) => runDev(flags));
}
