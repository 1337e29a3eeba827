/**
 * Loads many keys into ringkv's LSM engine and reports what it costs: resident memory as the data
 * grows far past the memtable and the block cache, disk size, and write amplification.
 *
 *   npm run bench:engine-load -- [--keys 10000000] [--batch 100] [--sync none]
 *
 * Keys are 16 bytes, values 100 bytes (half compressible), written in a pseudo-random order in
 * batches, several batches in flight. Every few seconds a progress line; at the end the totals,
 * then random reads that check the values. Write amplification = (bytes the commit log wrote +
 * bytes flushes wrote + bytes compactions wrote) / bytes of keys and values the load wrote.
 */
import { Buffer } from 'node:buffer';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LsmEngine } from '../src/storage/lsm/lsm-engine.js';
import type { SyncPolicy } from '../src/storage/lsm/commit-log-writer.js';
import { SystemClock } from '../src/world/clock.js';
import { NodeFileSystem } from '../src/world/file-system.js';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string', default: '10000000' },
    batch: { type: 'string', default: '100' },
    sync: { type: 'string', default: 'none' },
    'time-limit-s': { type: 'string', default: '1800' },
    reads: { type: 'string', default: '100000' },
  },
});
const keyCount = Number(args.keys);
const batchSize = Number(args.batch);
const syncPolicy = args.sync as SyncPolicy;
const timeLimitMs = Number(args['time-limit-s']) * 1000;
const readCount = Number(args.reads);
const batchesInFlight = 8;
const mib = 2 ** 20;

function keyOf(index: number): Buffer {
  return Buffer.from(`k${String(index).padStart(15, '0')}`, 'latin1');
}

/** A bijection of [0, n): x -> (a x + c) mod 2^k with cycle walking (a odd). */
function permuted(index: number, n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  let value = index;
  do value = (value * 40503 + 12345) % size;
  while (value >= n);
  return value;
}

/** The value of key i: 100 bytes, the first half derived from i, the second half zeros. */
function valueOf(index: number): Buffer {
  const value = Buffer.alloc(100);
  let state = (index * 2654435761) >>> 0;
  for (let at = 0; at < 50; at += 4) {
    state = (state * 1664525 + 1013904223) >>> 0;
    value.writeUInt32LE(state, at);
  }
  return value;
}

function diskBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ringkv-load-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const engine = await LsmEngine.open({ fs: new NodeFileSystem(), clock: new SystemClock() }, join(dir, 'lsm'), { syncPolicy });
  const options = `${keyCount} keys, batches of ${batchSize}, ${batchesInFlight} batches in flight, sync ${syncPolicy}, default engine options (64 MiB memtable, 64 MiB block cache)`;
  console.log(`loading ${options} into ${dir}`);
  const started = performance.now();
  let next = 0;
  let written = 0;
  let rssMax = 0;
  const report = (): void => {
    const memory = process.memoryUsage();
    rssMax = Math.max(rssMax, memory.rss);
    const seconds = (performance.now() - started) / 1000;
    const levels = engine.details().levels.map((level) => level.tables).join('/');
    console.log(
      `${seconds.toFixed(0).padStart(5)} s  ${written.toLocaleString('en-US').padStart(12)} keys  ${Math.round(written / seconds).toLocaleString('en-US').padStart(8)} keys/s  ` +
        `rss ${(memory.rss / mib).toFixed(0)} MiB  heap ${(memory.heapUsed / mib).toFixed(0)} MiB  disk ${(diskBytes(join(dir, 'lsm')) / mib).toFixed(0)} MiB  tables by level ${levels}`,
    );
  };
  const timer = setInterval(report, 5000);
  const loader = async (): Promise<void> => {
    while (next < keyCount && performance.now() - started < timeLimitMs) {
      const first = next;
      next = Math.min(keyCount, next + batchSize);
      const operations = [];
      for (let index = first; index < next; index++) {
        const key = permuted(index, keyCount);
        operations.push({ type: 'put' as const, key: keyOf(key), value: valueOf(key) });
      }
      await engine.batch(operations);
      written += operations.length;
    }
  };
  await Promise.all(Array.from({ length: batchesInFlight }, loader));
  const loadedMs = performance.now() - started;
  await engine.settle();
  const settledMs = performance.now() - started;
  clearInterval(timer);
  report();
  const details = engine.details();
  const amplification = (details.bytesLogged + details.bytesFlushed + details.bytesCompacted) / details.userBytesWritten;
  console.log(`\nloaded ${written.toLocaleString('en-US')} keys in ${(loadedMs / 1000).toFixed(0)} s (${Math.round((written * 1000) / loadedMs).toLocaleString('en-US')} keys/s); compactions settled at ${(settledMs / 1000).toFixed(0)} s`);
  console.log(`resident memory: at most ${(rssMax / mib).toFixed(0)} MiB`);
  console.log(`disk: ${(diskBytes(join(dir, 'lsm')) / mib).toFixed(0)} MiB for ${((written * 116) / mib).toFixed(0)} MiB of keys and values`);
  console.log(
    `write amplification: ${amplification.toFixed(2)} = (log ${(details.bytesLogged / mib).toFixed(0)} MiB + flushes ${(details.bytesFlushed / mib).toFixed(0)} MiB + compactions ${(details.bytesCompacted / mib).toFixed(0)} MiB) / ${(details.userBytesWritten / mib).toFixed(0)} MiB written`,
  );
  console.log(`tables by level: ${details.levels.map((level) => `${level.tables} (${(level.bytes / mib).toFixed(0)} MiB)`).join(', ')}`);

  const readStarted = performance.now();
  let checked = 0;
  for (let index = 0; index < Math.min(readCount, written); index++) {
    // The key written at a random place of the load order.
    const key = permuted((index * 7919) % written, keyCount);
    const value = await engine.get(keyOf(key));
    if (value === undefined || !valueOf(key).equals(Buffer.from(value))) throw new Error(`key ${key} read back wrong`);
    checked += 1;
  }
  console.log(`read back ${checked.toLocaleString('en-US')} random keys, all correct, ${Math.round((checked * 1000) / (performance.now() - readStarted)).toLocaleString('en-US')} reads/s (one at a time)`);
  await engine.close();
}

await main();
