// An LSM engine writer to be killed: src/storage/lsm/lsm-crash.test.ts runs it, SIGKILLs it at a
// random moment and checks that every write it reported as acknowledged survives.
//
// Usage: node --import tsx test/helpers/lsm-writer-child.ts <dir> <round> <seed>
// Prints "opening" before LsmEngine.open, "ready" once the engine is open, then "ack <id>" after
// each write resolved (sync policy `always`), and "event <kind>" for flushes, compactions and
// errors. `writersConcurrent` writers run at once; writer w owns the keys whose index is w modulo
// `writersConcurrent` and issues its writes one at a time, so every key has at most one write in
// flight. Write `<round>.<writer>.<counter>` is `plannedWrite(seed, round, writer, counter)`,
// so the parent knows what every acknowledged (and the one possibly in-flight) write did.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRandom } from '../../src/core/random.js';
import type { BatchOperation } from '../../src/storage/engine.js';
import { LsmEngine, type LsmEvent, type LsmOptions } from '../../src/storage/lsm/lsm-engine.js';
import { SystemClock } from '../../src/world/clock.js';
import { NodeFileSystem } from '../../src/world/file-system.js';

/** Writers with a write in flight at once: group commit and flushes under concurrent load. */
export const writersConcurrent = 16;
export const keysPerWriter = 96;
export const keysTotal = writersConcurrent * keysPerWriter;
/** A child that is never killed stops after this many writes per writer. */
const writesPerWriterMax = 1_000_000;

/** Small enough that a few hundred milliseconds of writing flush and compact several times. */
export const lsmCrashOptions: Partial<LsmOptions> = {
  syncPolicy: 'always',
  memtableSizeBytes: 64 * 1024,
  tableBytesTarget: 16 * 1024,
  level0CompactionTrigger: 2,
  level0StopWritesTrigger: 8,
  level1BytesMax: 64 * 1024,
  levelSizeMultiplier: 4,
  blockBytes: 4096,
  logSegmentBytesMax: 48 * 1024,
};

export function keyName(index: number): string {
  return `key-${String(index).padStart(5, '0')}`;
}

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * The value write `id` stores under `key`: names both, so a value read back identifies its write;
 * the rest is random text, so that tables do not shrink to nothing under compression and the
 * levels fill up.
 */
function valueOf(id: string, key: string, bytes: number, random: SeededRandom): string {
  let value = `${id}|${key}|`;
  while (value.length < bytes) value += alphabet[random.nextInt(alphabet.length)];
  return value;
}

export interface PlannedWrite {
  readonly id: string;
  /** Puts carry the value as text; a delete has value undefined. Keys are distinct within a write. */
  readonly operations: readonly { readonly key: string; readonly value: string | undefined }[];
}

/** What write `counter` of `writer` in `round` does: a put (often an overwrite), a delete, or a batch of 2-4 keys. */
export function plannedWrite(seed: number, round: number, writer: number, counter: number): PlannedWrite {
  const id = `${round}.${writer}.${counter}`;
  const random = new SeededRandom(hash32(`${seed}/${id}`));
  const roll = random.nextInt(100);
  const count = roll < 75 ? 1 : 2 + random.nextInt(3);
  const locals = new Set<number>();
  while (locals.size < count) locals.add(random.nextInt(keysPerWriter));
  const operations = [...locals].map((local) => {
    const key = keyName(writer + writersConcurrent * local);
    const isDelete = roll < 15 || (count > 1 && random.nextInt(4) === 0);
    return { key, value: isDelete ? undefined : valueOf(id, key, 24 + random.nextInt(480), random) };
  });
  return { id, operations };
}

/** FNV-1a: a stable 32-bit seed per write. */
function hash32(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193);
  return hash >>> 0;
}

const encoder = new TextEncoder();

async function perform(engine: LsmEngine, write: PlannedWrite): Promise<void> {
  const operations = write.operations.map(
    ({ key, value }): BatchOperation => (value === undefined ? { type: 'delete', key: encoder.encode(key) } : { type: 'put', key: encoder.encode(key), value: encoder.encode(value) }),
  );
  const only = operations[0]!;
  if (operations.length > 1) await engine.batch(operations);
  else if (only.type === 'put') await engine.put(only.key, only.value);
  else await engine.delete(only.key);
}

function describeEvent(event: LsmEvent): string | undefined {
  if (event.kind === 'flushed') return 'event flushed';
  if (event.kind === 'compacted') return `event compacted ${event.level}`;
  if (event.kind === 'background-error' || event.kind === 'log-failed') return `event ${event.kind} ${event.message.replaceAll('\n', ' ')}`;
  return undefined;
}

async function main(dir: string, round: number, seed: number): Promise<void> {
  // stdout to a pipe is synchronous on Linux: a line written is the parent's even if we are killed next.
  const onEvent = (event: LsmEvent): void => {
    const line = describeEvent(event);
    if (line !== undefined) process.stdout.write(`${line}\n`);
  };
  process.stdout.write('opening\n');
  const engine = await LsmEngine.open({ fs: new NodeFileSystem(), clock: new SystemClock(), onEvent }, dir, lsmCrashOptions);
  process.stdout.write('ready\n');
  await Promise.all(
    Array.from({ length: writersConcurrent }, async (_unused, writer) => {
      for (let counter = 0; counter < writesPerWriterMax; counter++) {
        const write = plannedWrite(seed, round, writer, counter);
        await perform(engine, write);
        process.stdout.write(`ack ${write.id}\n`);
      }
    }),
  );
  await engine.close();
  process.stdout.write('done\n');
}

// Run as a script, not when the test imports plannedWrite.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, round, seed] = process.argv.slice(2);
  if (dir === undefined || round === undefined || seed === undefined) throw new Error('usage: lsm-writer-child.ts <dir> <round> <seed>');
  await main(dir, Number(round), Number(seed));
}
