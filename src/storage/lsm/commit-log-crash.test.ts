import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { expectedBatch } from '../../../test/helpers/commit-log-writer-child.js';
import { ManualClock } from '../../../test/helpers/manual-clock.js';
import { SeededRandom } from '../../core/random.js';
import { NodeFileSystem } from '../../world/file-system.js';
import { createMemoryFileSystem } from '../../world/memory-file-system.js';
import type { BatchOperation } from '../engine.js';
import { replayCommitLog } from './commit-log-reader.js';
import { CommitLogWriter, type CommitLogOptions, type LogOperation } from './commit-log-writer.js';

const dir = '/db';

const operationArbitrary: fc.Arbitrary<BatchOperation> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 300 })).map(([key, value]): BatchOperation => ({ type: 'put', key, value })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((key): BatchOperation => ({ type: 'delete', key })) },
);

/** Lets `turns` rounds of already-resolved promise callbacks run. */
async function microtasks(turns: number): Promise<void> {
  for (let turn = 0; turn < turns; turn++) await Promise.resolve();
}

describe('commit log crash: memory file system', () => {
  it('commit log crash property: after a crash (torn last write) replay finds every acknowledged batch, in order, and nothing never appended', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.array(operationArbitrary, { minLength: 1, maxLength: 4 }), fc.nat(4)), { minLength: 1, maxLength: 40 }),
        fc.nat(120),
        fc.integer(),
        fc.integer({ min: 1024, max: 8192 }),
        async (plan, crashAfterTurns, seed, segmentBytesMax) => {
          const disk = createMemoryFileSystem({ random: new SeededRandom(seed) });
          await disk.mkdir(dir);
          await disk.syncDirectory('/');
          const options: CommitLogOptions = { syncPolicy: 'always', syncIntervalMs: 10, segmentBytesMax, recordBytesMax: 1024, clock: new ManualClock() };
          const writer = await CommitLogWriter.open(disk, dir, options, { segment: 1, nextSequence: 1 });
          /** Batches by first sequence number, as appended; acknowledged ones marked. */
          const issued = new Map<number, { readonly operations: BatchOperation[]; acknowledged: boolean }>();
          const appends: Promise<unknown>[] = [];
          let crashed = false;
          let nextSequence = 1;
          const producer = (async () => {
            for (const [operations, gapTurns] of plan) {
              if (crashed) return;
              const append = writer.append(operations);
              appends.push(
                append.then(
                  // Resolved means durable: after the crash every disk call fails, so its fsync came before.
                  (sequence) => {
                    issued.get(sequence)!.acknowledged = true;
                  },
                  () => {},
                ),
              );
              // The writer hands out sequence numbers in call order, one per operation.
              issued.set(nextSequence, { operations, acknowledged: false });
              nextSequence += operations.length;
              await microtasks(gapTurns);
            }
          })();
          await microtasks(crashAfterTurns);
          crashed = true;
          disk.crash({ tearLastWrite: true });
          await producer;
          await Promise.allSettled(appends);
          // Its final fsync hits the dead disk when the crash came after the last append.
          await writer.close().catch(() => {});

          const replayed: { sequence: number; operations: LogOperation[] }[] = [];
          const result = await replayCommitLog(disk, dir, 0, (sequence, operations) => replayed.push({ sequence, operations }));
          const order = [...issued.keys()];
          // The replayed batches are a prefix of the appended ones, exact in content...
          assert.ok(replayed.length <= order.length);
          for (const [index, batch] of replayed.entries()) {
            assert.equal(batch.sequence, order[index], `batch ${index} has the sequence of the ${index}th append`);
            assert.deepEqual(batch.operations, issued.get(batch.sequence)!.operations);
          }
          // ...that covers every acknowledged one.
          const lastAcknowledged = order.findLastIndex((sequence) => issued.get(sequence)!.acknowledged);
          assert.ok(replayed.length > lastAcknowledged, `acknowledged batch ${lastAcknowledged} lost; replayed ${replayed.length}`);
          // And the log is usable again: a new writer continues after it.
          const next = await CommitLogWriter.open(disk, dir, options, { segment: result.segments.at(-1)! + 1, nextSequence: result.lastSequence + 1 });
          await next.append([{ type: 'delete', key: new Uint8Array([1]) }]);
          await next.close();
          assert.equal((await replayCommitLog(disk, dir, 0, () => {})).records, replayed.length + 1);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('commit log crash: real process killed with SIGKILL', () => {
  const childScript = fileURLToPath(new URL('../../../test/helpers/commit-log-writer-child.ts', import.meta.url));
  const runsMin = 20;
  const totalMs = 25_000;

  /** Runs the child until it is ready, lets it write for `delayMs`, kills it; returns the ids it acknowledged. */
  function runChild(root: string, run: number, delayMs: number): Promise<{ acknowledged: string[]; firstSequence: number }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', childScript, root, String(run)], { stdio: ['ignore', 'pipe', 'pipe'] });
      const acknowledged: string[] = [];
      let firstSequence = 0;
      let buffered = '';
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        buffered += chunk;
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) {
          const [word, value] = line.split(' ');
          if (word === 'ack') acknowledged.push(value!);
          else if (word === 'ready') {
            firstSequence = Number(value);
            setTimeout(() => child.kill('SIGKILL'), delayMs);
          }
        }
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`child exited with ${code}/${signal}: ${stderr}`));
        else resolve({ acknowledged, firstSequence });
      });
    });
  }

  it(`commit log crash: a writer SIGKILLed at random moments (${runsMin}+ runs) loses no acknowledged batch and replays nothing unknown`, { timeout: 60_000 }, async () => {
    const root = await mkdtemp(join(tmpdir(), 'ringkv-commit-log-crash-'));
    const seed = Date.now();
    const random = new SeededRandom(seed);
    const fs = new NodeFileSystem();
    const acknowledged = new Set<string>();
    const started = performance.now();
    let tornTails = 0;
    try {
      for (let run = 0; run < runsMin || performance.now() - started < totalMs / 2; run++) {
        if (run >= runsMin && performance.now() - started > totalMs) break;
        const child = await runChild(root, run, random.nextInt(250));
        for (const id of child.acknowledged) acknowledged.add(id);
        const seen = new Set<string>();
        const result = await replayCommitLog(fs, root, 0, (_sequence, operations) => {
          const id = new TextDecoder().decode(operations[0]!.key).split('/')[0]!;
          assert.ok(/^\d+-\d+$/.test(id) && Number(id.split('-')[0]) <= run, `seed ${seed}: unknown batch ${id}`);
          assert.ok(!seen.has(id), `seed ${seed}: batch ${id} replayed twice`);
          assert.deepEqual(operations, expectedBatch(id), `seed ${seed}: batch ${id} differs from what was appended`);
          seen.add(id);
        });
        if (result.truncatedBytes > 0) tornTails += 1;
        const missing = [...acknowledged].filter((id) => !seen.has(id));
        assert.deepEqual(missing, [], `seed ${seed}, run ${run}: acknowledged batches lost`);
      }
      assert.ok(acknowledged.size > 0, 'the children acknowledged something');
      // Informational: how often a kill landed in the middle of a write.
      console.log(`commit log crash: ${acknowledged.size} acknowledged batches survived; ${tornTails} torn tails truncated; seed ${seed}`);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
