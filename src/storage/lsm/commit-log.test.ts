import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../test/helpers/manual-clock.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import { SystemClock } from '../../world/clock.js';
import { NodeFileSystem, type FileHandle, type FileSystem } from '../../world/file-system.js';
import { createMemoryFileSystem, type MemoryFileSystem } from '../../world/memory-file-system.js';
import type { BatchOperation } from '../engine.js';
import { deleteSegmentsBefore, listSegments, replayCommitLog } from './commit-log-reader.js';
import {
  commitLogAppendsQueuedMax,
  CommitLogWriter,
  encodeBatchRecord,
  segmentPath,
  type CommitLogOptions,
  type LogOperation,
  type SyncPolicy,
} from './commit-log-writer.js';

const dir = '/db';
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

function options(overrides: Partial<CommitLogOptions> = {}): CommitLogOptions {
  return { syncPolicy: 'always', syncIntervalMs: 10, segmentBytesMax: 1024 * 1024, recordBytesMax: 256 * 1024, clock: new ManualClock(), ...overrides };
}

async function freshDisk(seed = 1): Promise<MemoryFileSystem> {
  const fs = createMemoryFileSystem({ random: new SeededRandom(seed) });
  await fs.mkdir(dir);
  await fs.syncDirectory('/');
  return fs;
}

function put(key: string, value: string): BatchOperation {
  return { type: 'put', key: text(key), value: text(value) };
}

interface Replayed {
  readonly sequence: number;
  readonly operations: LogOperation[];
}

async function replayAll(fs: FileSystem, fromSegment = 0): Promise<{ batches: Replayed[]; result: Awaited<ReturnType<typeof replayCommitLog>> }> {
  const batches: Replayed[] = [];
  const result = await replayCommitLog(fs, dir, fromSegment, (sequence, operations) => batches.push({ sequence, operations }));
  return { batches, result };
}

async function assertCorruption(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RingkvError, `expected a RingkvError, got ${String(error)}`);
    assert.equal(error.code, ErrorCode.corruption);
    assert.match(error.message, pattern);
    return true;
  });
}

/** Counts FileHandle.sync calls (fsyncs of segment contents), passing everything through. */
class CountingFileSystem implements FileSystem {
  syncs = 0;
  writes = 0;

  constructor(private readonly inner: FileSystem) {}

  async open(path: string, options: { create: boolean }): Promise<FileHandle> {
    const handle = await this.inner.open(path, options);
    return {
      read: (position, length) => handle.read(position, length),
      write: (data, position) => {
        this.writes += 1;
        return handle.write(data, position);
      },
      sync: () => {
        this.syncs += 1;
        return handle.sync();
      },
      size: () => handle.size(),
      truncate: (length) => handle.truncate(length),
      close: () => handle.close(),
    };
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.inner.readFile(path);
  }
  exists(path: string): Promise<boolean> {
    return this.inner.exists(path);
  }
  mkdir(path: string): Promise<void> {
    return this.inner.mkdir(path);
  }
  readdir(path: string): Promise<string[]> {
    return this.inner.readdir(path);
  }
  rename(from: string, to: string): Promise<void> {
    return this.inner.rename(from, to);
  }
  unlink(path: string): Promise<void> {
    return this.inner.unlink(path);
  }
  syncDirectory(path: string): Promise<void> {
    return this.inner.syncDirectory(path);
  }
}

const keyArbitrary = fc.oneof(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ minLength: 0, maxLength: 300 }));
const valueArbitrary = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 20_000 }).map((length) => new Uint8Array(length).map((_, index) => (index * 31 + length) & 0xff)) },
);
const operationArbitrary: fc.Arbitrary<BatchOperation> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(keyArbitrary, valueArbitrary).map(([key, value]): BatchOperation => ({ type: 'put', key, value })) },
  { weight: 1, arbitrary: keyArbitrary.map((key): BatchOperation => ({ type: 'delete', key })) },
);
const batchArbitrary = fc.array(operationArbitrary, { minLength: 1, maxLength: 8 });

/** Writes `batches` with sync always into segment 1 and returns each record's end offset. */
async function writeLog(fs: FileSystem, batches: readonly (readonly BatchOperation[])[]): Promise<number[]> {
  const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
  const ends: number[] = [];
  let end = 0;
  for (const batch of batches) {
    const sequence = await writer.append(batch);
    end += encodeBatchRecord(sequence, batch).length;
    ends.push(end);
  }
  await writer.close();
  return ends;
}

/** A disk holding one segment file with exactly `contents`. */
async function diskWithSegment(contents: Uint8Array, segment = 1): Promise<MemoryFileSystem> {
  const fs = await freshDisk();
  const handle = await fs.open(segmentPath(dir, segment), { create: true });
  await handle.write(contents, 0);
  await handle.sync();
  await handle.close();
  await fs.syncDirectory(dir);
  return fs;
}

describe('commit log: round trip', () => {
  it('commit log: random batches replay exactly, in order, across auto-rotated segments (binary, empty and large keys/values)', async () => {
    const policies: SyncPolicy[] = ['always', 'periodic', 'none'];
    await fc.assert(
      fc.asyncProperty(fc.array(batchArbitrary, { minLength: 1, maxLength: 20 }), fc.constantFrom(...policies), fc.boolean(), async (batches, syncPolicy, concurrent) => {
        const fs = await freshDisk();
        const big = await CommitLogWriter.open(fs, dir, options({ syncPolicy, segmentBytesMax: 256 * 1024, recordBytesMax: 256 * 1024 }), { segment: 3, nextSequence: 10 });
        const sequences = concurrent ? await Promise.all(batches.map((batch) => big.append(batch))) : [];
        if (!concurrent) for (const batch of batches) sequences.push(await big.append(batch));
        await big.close();
        const { batches: replayed, result } = await replayAll(fs);
        assert.deepEqual(replayed, batches.map((operations, index) => ({ sequence: sequences[index]!, operations })));
        assert.equal(sequences[0], 10);
        const operationCount = batches.reduce((sum, batch) => sum + batch.length, 0);
        assert.deepEqual(result, { records: batches.length, operations: operationCount, lastSequence: 9 + operationCount, truncatedBytes: 0, segments: result.segments });
        assert.equal(result.segments[0], 3);
      }),
      { numRuns: 60 },
    );
  });

  it('commit log: a segment fills up to segmentBytesMax and the writer rotates on its own', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options({ segmentBytesMax: 1024, recordBytesMax: 1024 }), { segment: 1, nextSequence: 1 });
    for (let index = 0; index < 40; index++) await writer.append([put(`key-${index}`, 'v'.repeat(100))]);
    await writer.close();
    const segments = await listSegments(fs, dir);
    assert.ok(segments.length >= 4, `expected several segments, got ${segments.length}`);
    for (const segment of segments) assert.ok((await fs.readFile(segmentPath(dir, segment))).length <= 1024);
    const { batches } = await replayAll(fs);
    assert.deepEqual(batches.map((batch) => batch.sequence), Array.from({ length: 40 }, (_, index) => index + 1));
  });

  it('commit log: an empty directory or no directory replays nothing', async () => {
    const fs = await freshDisk();
    assert.deepEqual((await replayAll(fs)).result, { records: 0, operations: 0, lastSequence: 0, truncatedBytes: 0, segments: [] });
    assert.deepEqual((await replayCommitLog(fs, '/nowhere', 0, () => assert.fail('no batch'))).segments, []);
  });
});

describe('commit log: torn tails and corruption', () => {
  const batches: BatchOperation[][] = [
    [put('a', 'first')],
    [put('b', ''), { type: 'delete', key: text('a') }],
    [put('', 'empty key')],
    [put('c', 'x'.repeat(40)), put('d', 'y')],
    [{ type: 'delete', key: text('zz') }],
  ];

  it('commit log: every truncation of the last segment replays exactly the whole records before the cut', async () => {
    const source = await freshDisk();
    const ends = await writeLog(source, batches);
    const full = await source.readFile(segmentPath(dir, 1));
    assert.equal(full.length, ends.at(-1));
    for (let cut = 0; cut <= full.length; cut++) {
      const fs = await diskWithSegment(full.subarray(0, cut));
      const { batches: replayed, result } = await replayAll(fs);
      const whole = ends.filter((end) => end <= cut).length;
      const boundary = whole === 0 ? 0 : ends[whole - 1]!;
      assert.equal(result.records, whole, `cut at ${cut}`);
      assert.deepEqual(replayed.map((batch) => batch.operations), batches.slice(0, whole));
      assert.equal(result.truncatedBytes, cut - boundary);
      assert.equal((await fs.readFile(segmentPath(dir, 1))).length, boundary, 'the file is cut back to the last whole record');
      assert.equal((await replayAll(fs)).result.truncatedBytes, 0, 'a second replay finds nothing to cut');
    }
  });

  it('commit log property: a random log cut anywhere replays the whole records before the cut', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(batchArbitrary, { minLength: 1, maxLength: 6 }), fc.double({ min: 0, max: 1, noNaN: true }), async (randomBatches, fraction) => {
        const source = await freshDisk();
        const ends = await writeLog(source, randomBatches);
        const full = await source.readFile(segmentPath(dir, 1));
        const cut = Math.floor(fraction * full.length);
        const { result } = await replayAll(await diskWithSegment(full.subarray(0, cut)));
        const whole = ends.filter((end) => end <= cut).length;
        assert.equal(result.records, whole);
        assert.equal(result.truncatedBytes, cut - (whole === 0 ? 0 : ends[whole - 1]!));
      }),
      { numRuns: 100 },
    );
  });

  it('commit log: any flipped bit in a middle record is corruption naming the file and offset', async () => {
    const source = await freshDisk();
    const ends = await writeLog(source, batches);
    const full = await source.readFile(segmentPath(dir, 1));
    for (const record of [1, 2, 3]) {
      const start = ends[record - 1]!;
      for (let byte = start; byte < ends[record]!; byte++) {
        for (let bit = 0; bit < 8; bit++) {
          const fs = await diskWithSegment(full);
          fs.flipBit(segmentPath(dir, 1), byte, bit);
          await assertCorruption(replayAll(fs), new RegExp(`log-00000001\\.log at offset ${start}: `));
        }
      }
    }
  });

  it('commit log: any flipped bit in the last record of the last segment is a torn tail, cut away', async () => {
    const source = await freshDisk();
    const ends = await writeLog(source, batches);
    const full = await source.readFile(segmentPath(dir, 1));
    const start = ends.at(-2)!;
    for (let byte = start; byte < full.length; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        const fs = await diskWithSegment(full);
        fs.flipBit(segmentPath(dir, 1), byte, bit);
        const { batches: replayed, result } = await replayAll(fs);
        assert.equal(result.records, batches.length - 1, `byte ${byte} bit ${bit}`);
        assert.deepEqual(replayed.map((batch) => batch.operations), batches.slice(0, -1));
        assert.equal(result.truncatedBytes, full.length - start);
      }
    }
  });

  it('commit log: a bad last record in a segment that is not the last is corruption', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    await writer.append([put('a', '1')]);
    await writer.append([put('b', '2')]);
    assert.equal(await writer.rotate(), 2);
    await writer.append([put('c', '3')]);
    await writer.close();
    const size = (await fs.readFile(segmentPath(dir, 1))).length;
    fs.flipBit(segmentPath(dir, 1), size - 1, 0);
    await assertCorruption(replayAll(fs), /log-00000001\.log at offset \d+: checksum mismatch, in a segment that is not the last/);
    // A cut tail in an older segment is just as bad: that segment was synced whole before the next began.
    const cut = await diskWithSegment((await fs.readFile(segmentPath(dir, 1))).subarray(0, size - 3));
    const other = await cut.open(segmentPath(dir, 2), { create: true });
    await other.close();
    await assertCorruption(replayAll(cut), /log-00000001\.log at offset \d+: incomplete record/);
  });

  it('commit log: a missing segment number, a repeated sequence or an unknown record type is corruption', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    await writer.append([put('a', '1')]);
    await writer.rotate();
    await writer.rotate();
    await writer.append([put('b', '2')]);
    await writer.close();
    await fs.unlink(segmentPath(dir, 2));
    await assertCorruption(replayAll(fs), /log-00000003\.log at offset 0: segment 2 is missing/);

    const repeated = encodeBatchRecord(5, [put('a', '1')]);
    const twice = new Uint8Array(repeated.length * 2);
    twice.set(repeated);
    twice.set(repeated, repeated.length);
    await assertCorruption(replayAll(await diskWithSegment(twice)), /sequence 5 does not follow 5/);

    const record = encodeBatchRecord(1, [put('a', '1')]);
    const { crc32c } = await import('@node-rs/crc32');
    const { maskChecksum } = await import('./commit-log-writer.js');
    record[8] = 7;
    new DataView(record.buffer).setUint32(4, maskChecksum(crc32c(record.subarray(8))), true);
    await assertCorruption(replayAll(await diskWithSegment(record)), /checksum matches but unknown record type 7/);
  });

  it('commit log: replay from a segment skips older ones; deleteSegmentsBefore removes them', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 7, nextSequence: 1 });
    await writer.append([put('a', '1')]);
    assert.equal(await writer.rotate(), 8);
    assert.equal(writer.segment, 8);
    await writer.append([put('b', '2'), put('c', '3')]);
    assert.equal(await writer.rotate(), 9);
    await writer.close();
    assert.deepEqual((await replayAll(fs, 8)).result, { records: 1, operations: 2, lastSequence: 3, truncatedBytes: 0, segments: [8, 9] });
    assert.equal(await deleteSegmentsBefore(fs, dir, 9), 2);
    fs.crash();
    assert.deepEqual(await listSegments(fs, dir), [9], 'the deletions were made durable');
    assert.equal(await deleteSegmentsBefore(fs, dir, 9), 0);
  });
});

describe('commit log: sync policies and group commit', () => {
  it('commit log group commit: 64 concurrent appends with policy always share 1-2 fsyncs', async () => {
    const fs = new CountingFileSystem(await freshDisk());
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    const sequences = await Promise.all(Array.from({ length: 64 }, (_, index) => writer.append([put(`k${index}`, 'v')])));
    assert.deepEqual(sequences, Array.from({ length: 64 }, (_, index) => index + 1));
    assert.ok(fs.syncs <= 2, `${fs.syncs} fsyncs for 64 appends`);
    assert.ok(fs.writes <= 2, `${fs.writes} writes for 64 appends`);
    // Appends that arrive while a write+fsync runs share the next one.
    const before = fs.syncs;
    const waves: Promise<number>[] = [];
    for (let wave = 0; wave < 10; wave++) {
      for (let index = 0; index < 20; index++) waves.push(writer.append([put(`w${wave}-${index}`, 'v')]));
      await Promise.resolve();
    }
    await Promise.all(waves);
    assert.ok(fs.syncs - before < 10, `${fs.syncs - before} fsyncs for 10 waves of 20 appends`);
    await writer.close();
    assert.equal((await replayAll(fs)).result.records, 64 + 200);
  });

  it('commit log: sequential appends with policy always take one fsync each', async () => {
    const fs = new CountingFileSystem(await freshDisk());
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    for (let index = 0; index < 5; index++) await writer.append([put(`k${index}`, 'v')]);
    assert.equal(fs.syncs, 5);
    await writer.close();
  });

  it('commit log group commit: 64 writers on the real disk share fsyncs', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ringkv-commit-log-'));
    try {
      const fs = new CountingFileSystem(new NodeFileSystem());
      const writer = await CommitLogWriter.open(fs, root, options({ clock: new SystemClock() }), { segment: 1, nextSequence: 1 });
      let next = 0;
      const appendsPerWriter = 20;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          for (let index = 0; index < appendsPerWriter; index++) await writer.append([put(`key-${next++}`, 'value-'.repeat(16))]);
        }),
      );
      await writer.close();
      const appends = 64 * appendsPerWriter;
      assert.ok(fs.syncs < appends / 8, `${fs.syncs} fsyncs for ${appends} appends from 64 writers`);
      const replayed = await replayCommitLog(fs, root, 0, () => {});
      assert.equal(replayed.records, appends);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('commit log periodic: appends resolve before any fsync; the clock drives one fsync per interval with data', async () => {
    const clock = new ManualClock();
    const fs = new CountingFileSystem(await freshDisk());
    const writer = await CommitLogWriter.open(fs, dir, options({ syncPolicy: 'periodic', syncIntervalMs: 100, clock }), { segment: 1, nextSequence: 1 });
    await Promise.all([writer.append([put('a', '1')]), writer.append([put('b', '2')])]);
    assert.equal(fs.syncs, 0);
    await clock.advance(99);
    assert.equal(fs.syncs, 0);
    await clock.advance(1);
    assert.equal(fs.syncs, 1);
    await clock.advance(500);
    assert.equal(fs.syncs, 1, 'nothing new to sync');
    await writer.append([put('c', '3')]);
    await clock.advance(100);
    assert.equal(fs.syncs, 2);
    await writer.close();
    assert.equal(clock.timersPending, 0, 'close cancels the timer');
  });

  it('commit log periodic: a crash loses at most what was appended since the last periodic fsync', async () => {
    const clock = new ManualClock();
    const disk = await freshDisk();
    const writer = await CommitLogWriter.open(disk, dir, options({ syncPolicy: 'periodic', syncIntervalMs: 100, clock }), { segment: 1, nextSequence: 1 });
    await writer.append([put('a', '1')]);
    await clock.advance(100);
    await writer.append([put('b', '2')]);
    disk.crash();
    assert.deepEqual((await replayAll(disk)).batches.map((batch) => batch.sequence), [1]);
  });

  it('commit log none: no fsync until close', async () => {
    const clock = new ManualClock();
    const fs = new CountingFileSystem(await freshDisk());
    const writer = await CommitLogWriter.open(fs, dir, options({ syncPolicy: 'none', clock }), { segment: 1, nextSequence: 1 });
    for (let index = 0; index < 10; index++) await writer.append([put(`k${index}`, 'v')]);
    await clock.advance(10_000);
    assert.equal(fs.syncs, 0);
    await writer.close();
    assert.equal(fs.syncs, 1);
  });
});

describe('commit log: bounds, errors and close', () => {
  it('commit log: a batch over recordBytesMax is rejected with BAD_REQUEST and takes no sequence number', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options({ recordBytesMax: 1024 }), { segment: 1, nextSequence: 1 });
    await assert.rejects(writer.append([put('big', 'x'.repeat(2000))]), (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.badRequest && /recordBytesMax 1024/.test(error.message));
    assert.equal(await writer.append([put('small', 'x')]), 1);
    await writer.close();
  });

  it('commit log: more than commitLogAppendsQueuedMax queued appends are refused with UNAVAILABLE', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    const batch = [put('k', '')];
    const accepted = Array.from({ length: commitLogAppendsQueuedMax }, () => writer.append(batch));
    await assert.rejects(writer.append(batch), (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.unavailable);
    await Promise.all(accepted);
    await writer.append(batch);
    await writer.close();
  });

  it('commit log ENOSPC: the failed group and every later append reject; the log keeps what was acknowledged and a new writer continues it', async () => {
    const disk = await freshDisk();
    const writer = await CommitLogWriter.open(disk, dir, options(), { segment: 1, nextSequence: 1 });
    await writer.append([put('a', '1')]);
    disk.failNextWrites(1);
    const failed = [writer.append([put('b', '2')]), writer.append([put('c', '3')])];
    for (const append of failed) {
      await assert.rejects(append, (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.unavailable && /ENOSPC/.test(error.message) && /log-00000001\.log/.test(error.message));
    }
    await assert.rejects(writer.append([put('d', '4')]), /ENOSPC/, 'a failed writer refuses further appends (no write after a gap)');
    await assert.rejects(writer.rotate(), /ENOSPC/);
    await writer.close();
    await writer.close();
    const { batches, result } = await replayAll(disk);
    assert.deepEqual(batches.map((batch) => batch.sequence), [1]);
    const next = await CommitLogWriter.open(disk, dir, options(), { segment: result.segments.at(-1)! + 1, nextSequence: result.lastSequence + 1 });
    assert.equal(await next.append([put('e', '5')]), 2);
    await next.close();
    disk.crash();
    assert.deepEqual((await replayAll(disk)).batches.map((batch) => batch.operations), [[put('a', '1')], [put('e', '5')]]);
  });

  it('commit log: a failure while rotating fails the writer too', async () => {
    const disk = await freshDisk();
    const writer = await CommitLogWriter.open(disk, dir, options({ segmentBytesMax: 1024, recordBytesMax: 1024 }), { segment: 1, nextSequence: 1 });
    await writer.append([put('a', 'x'.repeat(900))]);
    disk.crash();
    await assert.rejects(writer.append([put('b', 'x'.repeat(900))]), /EBADF/);
    await assert.rejects(writer.append([put('c', '1')]), /EBADF/);
    await writer.close();
  });

  it('commit log: close waits for queued appends, is idempotent, and later appends fail with ENGINE_CLOSED', async () => {
    const fs = await freshDisk();
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 1 });
    const pending = writer.append([put('a', '1')]);
    const closing = writer.close();
    assert.equal(writer.close(), closing);
    await closing;
    assert.equal(await pending, 1);
    await assert.rejects(writer.append([put('b', '2')]), (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.engineClosed);
    await assert.rejects(writer.rotate(), (error: unknown) => error instanceof RingkvError && error.code === ErrorCode.engineClosed);
  });

  it('commit log: options are checked at open (recordBytesMax above segmentBytesMax is a bug)', async () => {
    const fs = await freshDisk();
    await assert.rejects(CommitLogWriter.open(fs, dir, options({ segmentBytesMax: 4096, recordBytesMax: 8192 }), { segment: 1, nextSequence: 1 }), /recordBytesMax/);
  });

  it('commit log: open refuses an existing segment file (a writer only starts new segments)', async () => {
    const fs = await diskWithSegment(new Uint8Array(0), 4);
    await assert.rejects(CommitLogWriter.open(fs, dir, options(), { segment: 4, nextSequence: 1 }), /already exists/);
  });
});

describe('commit log: range deletions', () => {
  it('commit log: range deletions (bounded and open-ended) replay as written, beside puts and deletes', async () => {
    const fs = await freshDisk();
    const batch: LogOperation[] = [
      put('a', '1'),
      { type: 'deleteRange', key: text('b'), end: text('d') },
      { type: 'deleteRange', key: new Uint8Array(0), end: undefined },
      { type: 'delete', key: text('z') },
    ];
    const writer = await CommitLogWriter.open(fs, dir, options(), { segment: 1, nextSequence: 5 });
    assert.equal(await writer.append(batch), 5);
    await writer.close();
    const { batches, result } = await replayAll(fs);
    assert.equal(result.lastSequence, 8);
    assert.deepEqual(
      batches[0]?.operations.map((operation) => ({ ...operation, key: Buffer.from(operation.key).toString(), ...('end' in operation ? { end: operation.end === undefined ? undefined : Buffer.from(operation.end).toString() } : {}), ...('value' in operation ? { value: Buffer.from(operation.value).toString() } : {}) })),
      [
        { type: 'put', key: 'a', value: '1' },
        { type: 'deleteRange', key: 'b', end: 'd' },
        { type: 'deleteRange', key: '', end: undefined },
        { type: 'delete', key: 'z' },
      ],
    );
  });
});
