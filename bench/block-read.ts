/**
 * What a block-cache miss costs before any parsing: 8 KiB reads at random offsets of a 64 MiB
 * file that the page cache holds (it was just written), three ways:
 *
 *   sync, reused buffer   fs.readSync into one buffer (the engine's cold path: SyncReadGate, with
 *                         the block cache handing out evicted buffers)
 *   sync, new buffer      fs.readSync into a fresh Buffer.allocUnsafe(8 KiB) per read
 *   pool, 64 in flight    fs.read (callback API) into a fresh buffer, 64 reads in flight: the
 *                         thread-pool path, as before the gate
 *
 * Medians over --rounds of microseconds per read on the main thread's wall clock.
 * Usage: npx tsx bench/block-read.ts [--reads N] [--rounds R]
 */
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({ options: { reads: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '3' } } });
const reads = Number(args.reads);
const rounds = Number(args.rounds);
const fileBytes = 64 << 20;
const blockBytes = 8192;

const dir = fs.mkdtempSync(join(tmpdir(), 'ringkv-bench-block-read-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const path = join(dir, 'blocks');
fs.writeFileSync(path, Buffer.alloc(fileBytes, 7));
const fd = fs.openSync(path, 'r');

let state = 0x1234567;
/** A block-aligned offset, pseudo-random (an LCG, the same sequence every run). */
function nextOffset(): number {
  state = (Math.imul(state, 1103515245) + 12345) >>> 0;
  return (state % (fileBytes / blockBytes)) * blockBytes;
}

function syncReused(): number {
  const buffer = Buffer.allocUnsafe(blockBytes);
  const started = performance.now();
  for (let index = 0; index < reads; index++) fs.readSync(fd, buffer, 0, blockBytes, nextOffset());
  return ((performance.now() - started) * 1000) / reads;
}

function syncFresh(): number {
  const started = performance.now();
  for (let index = 0; index < reads; index++) fs.readSync(fd, Buffer.allocUnsafe(blockBytes), 0, blockBytes, nextOffset());
  return ((performance.now() - started) * 1000) / reads;
}

async function pool(): Promise<number> {
  const started = performance.now();
  let issued = 0;
  const worker = async (): Promise<void> => {
    while (issued < reads) {
      issued++;
      await new Promise<void>((resolve, reject) => fs.read(fd, Buffer.allocUnsafe(blockBytes), 0, blockBytes, nextOffset(), (error) => (error === null ? resolve() : reject(error))));
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return ((performance.now() - started) * 1000) / reads;
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const samples: Record<string, number[]> = { 'sync, reused buffer': [], 'sync, new buffer': [], 'pool, 64 in flight': [] };
for (let round = 0; round < rounds; round++) {
  samples['sync, reused buffer']!.push(syncReused());
  samples['sync, new buffer']!.push(syncFresh());
  samples['pool, 64 in flight']!.push(await pool());
}
console.log(`${reads} reads of ${blockBytes} B from a ${fileBytes >> 20} MiB file in the page cache; median of ${rounds} rounds\n`);
console.log('| read | us per read | reads/s |');
console.log('|---|---|---|');
for (const [name, values] of Object.entries(samples)) console.log(`| ${name} | ${median(values).toFixed(2)} | ${Math.round(1e6 / median(values))} |`);
fs.closeSync(fd);
