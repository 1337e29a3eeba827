/**
 * ringkv's LSM engine against LevelDB (classic-level) in the same run, on the same machine, with
 * the same keys (16 bytes) and values (100 bytes, half compressible like LevelDB's db_bench), each
 * engine in a fresh temporary directory:
 *
 *   fillrandom   N puts in random order, 64 in flight, no fsync per write (ringkv --sync none,
 *                LevelDB sync: false: both survive a process crash, neither a power loss)
 *   fillsync     durable puts, 64 in flight (ringkv --sync always with group commit, LevelDB
 *                sync: true), bounded by count and time
 *   fillbatch    N puts in batches of 1000, no fsync
 *   readhot      random gets of the filled keys, 64 in flight, the engine still open
 *   readcold     the same after closing and reopening both engines with an 8 MiB block cache
 *
 * Medians over --rounds, ops/s and ringkv / LevelDB. Usage: npm run bench:engine -- [--keys N]
 * [--rounds R] [--reads N] [--sync-writes N].
 */
import { Buffer } from 'node:buffer';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ClassicLevel } from 'classic-level';
import { LsmEngine, type LsmOptions } from '../src/storage/lsm/lsm-engine.js';
import { SystemClock } from '../src/world/clock.js';
import { NodeFileSystem } from '../src/world/file-system.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '3' },
    reads: { type: 'string', default: '200000' },
    'sync-writes': { type: 'string', default: '100000' },
    'time-limit-s': { type: 'string', default: '60' },
  },
});
const keyCount = Number(args.keys);
const rounds = Number(args.rounds);
const readCount = Number(args.reads);
const syncWrites = Number(args['sync-writes']);
const timeLimitMs = Number(args['time-limit-s']) * 1000;
const inFlight = 64;
const keyBytes = 16;
const valueBytes = 100;
const cacheBytes = 8 * 1024 * 1024;

/** The key of index i: 16 bytes, `k` + 15 decimal digits, so byte order is index order. */
function keyOf(index: number): Buffer {
  return Buffer.from(`k${String(index).padStart(keyBytes - 1, '0')}`, 'latin1');
}

/** A pseudo-random permutation of [0, n): the fill order. */
function permuted(index: number, n: number): number {
  // An LCG step modulo the next power of two, skipping values >= n (cycle walking).
  let size = 1;
  while (size < n) size *= 2;
  let value = index;
  // x -> (a x + c) mod 2^k is a bijection for odd a; the product stays below 2^53 for n < 2^30.
  do value = (value * 40503 + 12345) % size;
  while (value >= n);
  return value;
}

/** Values: half random bytes, half zeros (LevelDB db_bench's compression ratio 0.5). */
const valuePool = Buffer.alloc(1 << 20);
{
  let state = 0x2545f491;
  for (let index = 0; index < valuePool.length; index += 2) {
    state = (state * 1664525 + 1013904223) >>> 0;
    valuePool[index] = state >>> 24;
  }
}
function valueOf(index: number): Buffer {
  const start = (index * 97) % (valuePool.length - valueBytes);
  return valuePool.subarray(start, start + valueBytes);
}

interface Store {
  put(key: Buffer, value: Buffer): Promise<void>;
  get(key: Buffer): Promise<Uint8Array | undefined>;
  batch(entries: readonly [Buffer, Buffer][]): Promise<void>;
  close(): Promise<void>;
}

async function openRingkv(dir: string, options: Partial<LsmOptions>): Promise<Store> {
  const engine = await LsmEngine.open({ fs: new NodeFileSystem(), clock: new SystemClock() }, dir, options);
  return {
    put: (key, value) => engine.put(key, value),
    get: async (key) => engine.get(key),
    batch: (entries) => engine.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value }))),
    // Flushed before closing (LevelDB turns its log into a table when it reopens), so that reads
    // after a reopen come from SSTables through the block cache, not from a replayed memtable.
    close: async () => {
      await engine.flush();
      await engine.close();
    },
  };
}

async function openLevel(dir: string, sync: boolean): Promise<Store> {
  const db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer', cacheSize: cacheBytes });
  await db.open();
  return {
    put: (key, value) => db.put(key, value, { sync }),
    get: (key) => db.get(key),
    batch: (entries) => db.batch(entries.map(([key, value]) => ({ type: 'put' as const, key, value }))),
    close: () => db.close(),
  };
}

/** Runs `count` operations with `inFlight` at a time; stops early at the time limit. Returns ops/s. */
async function drive(count: number, operation: (index: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < count && performance.now() - started < timeLimitMs) {
      const index = next++;
      await operation(index);
      done += 1;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return (done * 1000) / (performance.now() - started);
}

type Engine = 'ringkv' | 'leveldb';
type Workload = 'fillrandom' | 'fillsync' | 'fillbatch' | 'readhot' | 'readcold';

async function open(engine: Engine, dir: string, durable: boolean): Promise<Store> {
  return engine === 'ringkv' ? openRingkv(dir, { syncPolicy: durable ? 'always' : 'none', blockCacheBytes: cacheBytes }) : openLevel(dir, durable);
}

async function runRound(engine: Engine, base: string): Promise<Record<Workload, number>> {
  const filled = join(base, `${engine}-fill`);
  let store = await open(engine, filled, false);
  const fillrandom = await drive(keyCount, (index) => {
    const key = permuted(index, keyCount);
    return store.put(keyOf(key), valueOf(key));
  });
  const readhot = await drive(readCount, (index) => store.get(keyOf(permuted((index * 7 + 1) % keyCount, keyCount))).then((value) => check(value, engine)));
  await store.close();
  store = await open(engine, filled, false);
  const readcold = await drive(readCount, (index) => store.get(keyOf(permuted((index * 13 + 5) % keyCount, keyCount))).then((value) => check(value, engine)));
  await store.close();
  rmSync(filled, { recursive: true, force: true });

  const synced = join(base, `${engine}-sync`);
  store = await open(engine, synced, true);
  const fillsync = await drive(Math.min(syncWrites, keyCount), (index) => store.put(keyOf(index), valueOf(index)));
  await store.close();
  rmSync(synced, { recursive: true, force: true });

  const batched = join(base, `${engine}-batch`);
  store = await open(engine, batched, false);
  const started = performance.now();
  let written = 0;
  for (let first = 0; first < keyCount && performance.now() - started < timeLimitMs; first += 1000) {
    const entries: [Buffer, Buffer][] = [];
    for (let index = first; index < Math.min(first + 1000, keyCount); index++) entries.push([keyOf(index), valueOf(index)]);
    await store.batch(entries);
    written += entries.length;
  }
  const fillbatch = (written * 1000) / (performance.now() - started);
  await store.close();
  rmSync(batched, { recursive: true, force: true });
  return { fillrandom, fillsync, fillbatch, readhot, readcold };
}

function check(value: Uint8Array | undefined, engine: Engine): void {
  if (value === undefined || value.length !== valueBytes) throw new Error(`${engine}: a filled key read back ${value === undefined ? 'absent' : `${value.length} bytes`}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function main(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'ringkv-bench-engine-'));
  process.on('exit', () => rmSync(base, { recursive: true, force: true }));
  const samples = new Map<string, number[]>();
  let rssMaxBytes = 0;
  for (let round = 1; round <= rounds; round++) {
    for (const engine of (round % 2 === 1 ? ['ringkv', 'leveldb'] : ['leveldb', 'ringkv']) as Engine[]) {
      const result = await runRound(engine, base);
      rssMaxBytes = Math.max(rssMaxBytes, process.memoryUsage().rss);
      for (const [workload, rate] of Object.entries(result)) samples.set(`${engine} ${workload}`, [...(samples.get(`${engine} ${workload}`) ?? []), rate]);
      console.log(`round ${round}/${rounds} ${engine}: ${Object.entries(result).map(([name, rate]) => `${name} ${Math.round(rate)}`).join(', ')} ops/s`);
    }
  }
  console.log(`\n${keyCount} keys of ${keyBytes} bytes, values of ${valueBytes} bytes, ${inFlight} operations in flight, block caches ${cacheBytes >> 20} MiB; median of ${rounds} rounds (ops/s)\n`);
  console.log('| workload | ringkv | LevelDB | ringkv / LevelDB |');
  console.log('|---|---|---|---|');
  for (const workload of ['fillrandom', 'fillsync', 'fillbatch', 'readhot', 'readcold'] as Workload[]) {
    const ours = median(samples.get(`ringkv ${workload}`) ?? [0]);
    const theirs = median(samples.get(`leveldb ${workload}`) ?? [0]);
    console.log(`| ${workload} | ${Math.round(ours)} | ${Math.round(theirs)} | ${(ours / theirs).toFixed(2)} |`);
  }
  console.log(`\nprocess RSS at most ${(rssMaxBytes / 2 ** 20).toFixed(0)} MiB (both engines in one process)`);
}

await main();
