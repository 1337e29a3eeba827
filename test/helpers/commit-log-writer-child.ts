// A commit-log writer to be killed: src/storage/lsm/commit-log-crash.test.ts runs it, SIGKILLs
// it at a random moment and checks that every batch it reported as acknowledged survives.
//
// Usage: node --import tsx test/helpers/commit-log-writer-child.ts <dir> <run>
// Prints "ready <first sequence>" once the log is open, then "ack <id>" after each append with
// sync policy `always` resolved. Batch `id` is `<run>-<counter>`; its operations are
// `expectedBatch(id)`, so the parent can check every replayed batch byte for byte.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { replayCommitLog } from '../../src/storage/lsm/commit-log-reader.js';
import { CommitLogWriter } from '../../src/storage/lsm/commit-log-writer.js';
import type { BatchOperation } from '../../src/storage/engine.js';
import { SystemClock } from '../../src/world/clock.js';
import { NodeFileSystem } from '../../src/world/file-system.js';

const encoder = new TextEncoder();

/** The batch a child appends under `id`: 1-3 puts whose sizes vary with the id. */
export function expectedBatch(id: string): BatchOperation[] {
  let hash = 0;
  for (const char of id) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const operations: BatchOperation[] = [];
  for (let index = 0; index < 1 + (hash % 3); index++) {
    operations.push({ type: 'put', key: encoder.encode(`${id}/${index}`), value: encoder.encode(`value ${id}/${index} `.repeat(1 + ((hash >>> 4) % 40))) });
  }
  return operations;
}

/** Writers appending at once, each waiting for its previous append: group commit under load. */
const writersConcurrent = 8;
/** A child that is never killed stops here. */
const appendsMax = 200_000;

async function main(dir: string, run: string): Promise<void> {
  const fs = new NodeFileSystem();
  await fs.mkdir(dir);
  const replayed = await replayCommitLog(fs, dir, 0, () => {});
  const segment = replayed.segments.length === 0 ? 1 : replayed.segments.at(-1)! + 1;
  const options = { syncPolicy: 'always', syncIntervalMs: 100, segmentBytesMax: 256 * 1024, recordBytesMax: 64 * 1024, clock: new SystemClock() } as const;
  const writer = await CommitLogWriter.open(fs, dir, options, { segment, nextSequence: replayed.lastSequence + 1 });
  process.stdout.write(`ready ${replayed.lastSequence + 1}\n`);
  let counter = 0;
  await Promise.all(
    Array.from({ length: writersConcurrent }, async () => {
      while (counter < appendsMax) {
        const id = `${run}-${counter++}`;
        await writer.append(expectedBatch(id));
        // stdout to a pipe is synchronous on Linux: once written, the parent gets it even if killed next.
        process.stdout.write(`ack ${id}\n`);
      }
    }),
  );
  await writer.close();
}

// Run as a script, not when the test imports expectedBatch.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [dir, run] = process.argv.slice(2);
  if (dir === undefined || run === undefined) throw new Error('usage: commit-log-writer-child.ts <dir> <run>');
  await main(dir, run);
}
