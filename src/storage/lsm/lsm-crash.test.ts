import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  keyName,
  keysTotal,
  lsmCrashOptions,
  plannedWrite,
  writersConcurrent,
  type PlannedWrite,
} from '../../../test/helpers/lsm-writer-child.js';
import { SeededRandom } from '../../core/random.js';
import { SystemClock } from '../../world/clock.js';
import { NodeFileSystem } from '../../world/file-system.js';
import { LsmEngine, type LsmEvent } from './lsm-engine.js';

// The crash test the engine's durability promise needs: a child process writes through the whole
// engine (commit log, memtables, flushes, compactions) with sync policy `always` and is killed
// with SIGKILL at random moments; after each kill the engine is reopened here and must hold every
// acknowledged write and nothing that was never issued. Each round continues on the directory the
// previous one left. RINGKV_CRASH_SEED=<n> repeats a seed (delays and workload; not the timing).

const childScript = fileURLToPath(new URL('../../../test/helpers/lsm-writer-child.ts', import.meta.url));
const roundsMin = 20;
const roundsMax = 40;
/** Rounds past roundsMin start only while the test has run less than this. */
const extraRoundsUntilMs = 15_000;
/** Most rounds kill this long after "ready"; some kill this soon after "opening" (mid-recovery). */
const killDelayAfterReadyMsMax = 500;
const killDelayAfterOpeningMsMax = 25;

interface ChildRun {
  /** Acknowledged write ids, in the order the child printed them. */
  readonly acknowledged: string[];
  readonly ready: boolean;
  readonly flushes: number;
  readonly compactions: number;
  readonly errors: string[];
}

/** Starts the child, kills it `delayMs` after "ready" (or after "opening" when `duringOpen`), collects what it printed. */
function runChild(dir: string, round: number, seed: number, delayMs: number, duringOpen: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', childScript, dir, String(round), String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run = { acknowledged: [] as string[], ready: false, flushes: 0, compactions: 0, errors: [] as string[] };
    let buffered = '';
    let stderr = '';
    const kill = (): void => {
      setTimeout(() => child.kill('SIGKILL'), delayMs);
    };
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const [word, detail] = line.split(' ', 2);
        if (word === 'ack') run.acknowledged.push(detail!);
        else if (word === 'event' && detail === 'flushed') run.flushes += 1;
        else if (word === 'event' && detail === 'compacted') run.compactions += 1;
        else if (word === 'event') run.errors.push(line);
        else if (word === 'opening' && duringOpen) kill();
        else if (word === 'ready') {
          run.ready = true;
          if (!duringOpen) kill();
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited with ${code}/${signal}: ${stderr}`));
      else resolve(run);
    });
  });
}

/**
 * What the parent knows about each key: the newest value it saw acknowledged or read back after a
 * reopen (durable either way; undefined = absent), and, after a kill, the value of the one write
 * to the key that may have been in flight.
 */
class Oracle {
  readonly durable = new Map<string, string | undefined>();

  /** Records a round's acknowledgements; returns the write each writer may still have had in flight. */
  acknowledge(run: ChildRun, seed: number, round: number): PlannedWrite[] {
    const nextCounter: number[] = new Array<number>(writersConcurrent).fill(0);
    for (const id of run.acknowledged) {
      const [idRound, writer, counter] = id.split('.').map(Number) as [number, number, number];
      assert.equal(idRound, round, `seed ${seed}: ack ${id} in round ${round}`);
      // A writer issues its writes one at a time, so its acknowledgements come in counter order.
      assert.equal(counter, nextCounter[writer], `seed ${seed}: writer ${writer} acknowledged ${counter} out of order`);
      nextCounter[writer] = counter + 1;
      for (const { key, value } of plannedWrite(seed, round, writer, counter).operations) this.durable.set(key, value);
    }
    if (!run.ready) return [];
    return nextCounter.map((counter, writer) => plannedWrite(seed, round, writer, counter));
  }
}

/** Reopens the engine and checks it against the oracle; the state read back becomes the oracle's. */
async function verify(dir: string, oracle: Oracle, inFlight: readonly PlannedWrite[], context: string): Promise<{ tornTail: boolean; liveKeys: number; tablesPerLevel: number[] }> {
  const events: LsmEvent[] = [];
  const engine = await LsmEngine.open({ fs: new NodeFileSystem(), clock: new SystemClock(), onEvent: (event) => events.push(event) }, dir, lsmCrashOptions);
  const observed = new Map<string, string | undefined>();
  let tablesPerLevel: number[] = [];
  try {
    const maybe = new Map<string, string | undefined>();
    for (const write of inFlight) for (const { key, value } of write.operations) maybe.set(key, value);
    const decoder = new TextDecoder();
    for (let index = 0; index < keysTotal; index++) {
      const key = keyName(index);
      const bytes = await engine.get(new TextEncoder().encode(key));
      const value = bytes === undefined ? undefined : decoder.decode(bytes);
      const acceptable = [oracle.durable.get(key), ...(maybe.has(key) ? [maybe.get(key)] : [])];
      assert.ok(
        acceptable.includes(value),
        `${context}: key ${key} reads ${show(value)}; acknowledged: ${show(oracle.durable.get(key))}, in flight: ${maybe.has(key) ? show(maybe.get(key)) : 'none'}`,
      );
      observed.set(key, value);
    }
    // A batch is one log record: after the kill it is there whole or not at all.
    for (const write of inFlight) {
      const decisive = write.operations.filter(({ key, value }) => value !== oracle.durable.get(key));
      const applied = decisive.map(({ key, value }) => observed.get(key) === value);
      assert.ok(applied.every((flag) => flag === applied[0]), `${context}: in-flight batch ${write.id} is partly applied: ${JSON.stringify(applied)}`);
    }
    const scanned: [string, string][] = [];
    for await (const entry of engine.scan()) scanned.push([decoder.decode(entry.key), decoder.decode(entry.value)]);
    const expected = [...observed].filter((pair): pair is [string, string] => pair[1] !== undefined).sort((left, right) => (left[0] < right[0] ? -1 : 1));
    assert.equal(scanned.length, expected.length, `${context}: scan returns ${scanned.length} entries, gets find ${expected.length} live keys`);
    scanned.forEach(([key, value], index) => {
      assert.equal(key, expected[index]![0], `${context}: scan entry ${index}`);
      assert.equal(value, expected[index]![1], `${context}: scan value of ${key}`);
    });
    tablesPerLevel = engine.details().levels.map((level) => level.tables);
  } finally {
    await engine.close();
  }
  const problems = events.filter((event) => event.kind === 'background-error' || event.kind === 'log-failed');
  assert.deepEqual(problems, [], `${context}: the reopened engine reported errors`);
  for (const [key, value] of observed) oracle.durable.set(key, value);
  const recovered = events.find((event) => event.kind === 'recovered');
  return { tornTail: recovered?.kind === 'recovered' && recovered.truncatedBytes > 0, liveKeys: expectedLive(observed), tablesPerLevel };
}

function expectedLive(observed: ReadonlyMap<string, string | undefined>): number {
  return [...observed.values()].filter((value) => value !== undefined).length;
}

function show(value: string | undefined): string {
  return value === undefined ? 'absent' : `"${value.slice(0, 40)}..." (${value.length} chars)`;
}

describe('lsm engine crash: real process killed with SIGKILL', () => {
  it(
    `lsm crash: a writer (sync always, 16 in flight, flushes and compactions) SIGKILLed at random moments (${roundsMin}+ rounds) loses no acknowledged write and shows nothing never issued`,
    { timeout: 90_000 },
    async () => {
      const dir = join(await mkdtemp(join(tmpdir(), 'ringkv-lsm-crash-')), 'engine');
      const seed = Number(process.env['RINGKV_CRASH_SEED'] ?? Date.now() % 1_000_000_000);
      const random = new SeededRandom(seed);
      const oracle = new Oracle();
      const started = performance.now();
      const totals = { rounds: 0, acknowledged: 0, flushes: 0, compactions: 0, killedBeforeReady: 0, tornTails: 0, liveKeys: 0, tablesPerLevel: [] as number[] };
      try {
        for (let round = 0; round < roundsMax && (round < roundsMin || performance.now() - started < extraRoundsUntilMs); round++) {
          const duringOpen = round > 0 && random.nextInt(5) === 0;
          const delayMs = random.nextInt(duringOpen ? killDelayAfterOpeningMsMax : killDelayAfterReadyMsMax);
          const context = `seed ${seed}, round ${round} (killed ${delayMs} ms after ${duringOpen ? 'opening' : 'ready'})`;
          const run = await runChild(dir, round, seed, delayMs, duringOpen);
          assert.deepEqual(run.errors, [], `${context}: the child reported errors`);
          const inFlight = oracle.acknowledge(run, seed, round);
          const checked = await verify(dir, oracle, inFlight, context);
          totals.rounds += 1;
          totals.acknowledged += run.acknowledged.length;
          totals.flushes += run.flushes;
          totals.compactions += run.compactions;
          totals.killedBeforeReady += run.ready ? 0 : 1;
          totals.tornTails += checked.tornTail ? 1 : 0;
          totals.liveKeys = checked.liveKeys;
          totals.tablesPerLevel = checked.tablesPerLevel;
        }
        // Guards against a test that passes by exercising nothing.
        assert.ok(totals.acknowledged > 1000, `seed ${seed}: only ${totals.acknowledged} writes acknowledged`);
        assert.ok(totals.flushes > 0 && totals.compactions > 0, `seed ${seed}: the children must flush and compact: ${JSON.stringify(totals)}`);
        console.log(
          `lsm crash: ${totals.rounds} rounds, ${totals.acknowledged} acknowledged writes survived, ${totals.flushes} flushes and ${totals.compactions} compactions ` +
            `during the runs, ${totals.killedBeforeReady} kills before ready, ${totals.tornTails} torn log tails, ${totals.liveKeys} live keys and tables per level [${totals.tablesPerLevel.join(', ')}] at the end; ` +
            `seed ${seed} (${Math.round(performance.now() - started)} ms)`,
        );
      } finally {
        await rm(join(dir, '..'), { recursive: true, force: true });
      }
    },
  );
});
