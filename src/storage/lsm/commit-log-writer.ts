import { crc32c } from '@node-rs/crc32';
import { assert } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import type { Clock, TimerHandle } from '../../world/clock.js';
import type { FileHandle, FileSystem } from '../../world/file-system.js';
import type { BatchOperation } from '../engine.js';
import { mark, simulationBugs } from '../../core/simulation-hooks.js';

/**
 * The commit log's writer (LevelDB's log_writer); the reader is commit-log-reader.ts and the
 * format is docs/format/commit-log.md. One record per batch, so a batch is atomic on replay.
 *
 * Group commit: appends queue up while the previous write (and, with `always`, its fsync) runs;
 * the next write takes every queued record at once (up to `commitLogGroupBytesMax`) and one
 * fsync covers them all. The first write is deferred by a microtask so that appends issued in
 * the same turn of the event loop already share it.
 *
 * Failure: if a write or fsync fails (ENOSPC, EIO, a crashed disk), every append of the failed
 * group and every queued one rejects, and the writer is *failed*: each later append and rotate
 * rejects at once with the same error. It never writes after a gap. It tries to cut the segment
 * back to the end of the last complete write; whether or not that succeeds, the way back is to
 * replay the log (which truncates a torn tail of the last segment) and open a new writer.
 */

export type SyncPolicy = 'always' | 'periodic' | 'none';

export interface CommitLogOptions {
  /** 'always': an append resolves after the fsync covering it. 'periodic': after its write, with an fsync every syncIntervalMs. 'none': after its write; the OS decides. */
  readonly syncPolicy: SyncPolicy;
  /** Used by 'periodic' only. */
  readonly syncIntervalMs: number;
  /** A segment is rotated before a write would take it past this size (a bigger single record gets a segment alone). */
  readonly segmentBytesMax: number;
  readonly clock: Clock;
  /** Largest record, header included; a bigger batch is rejected (BAD_REQUEST). At most segmentBytesMax. */
  readonly recordBytesMax: number;
}

/** Appends waiting for their write; one more rejects with UNAVAILABLE (the engine should push back). */
export const commitLogAppendsQueuedMax = 65_536;
/** Bytes of records gathered into one write (a single bigger record is written alone). */
export const commitLogGroupBytesMax = 4 * 1024 * 1024;
/** Hard ceiling of `recordBytesMax`: the payload length is a u32, and one record is read whole. */
export const commitLogRecordBytesLimit = 1024 * 1024 * 1024;

export const recordHeaderBytes = 8;
export const RecordType = { batch: 1 } as const;
export const OperationKind = { put: 1, delete: 2, deleteRange: 3 } as const;

/**
 * What one log record holds: the engine's batch operations, and range deletions — every key in
 * [key, end) (`end` undefined: to the end of the key space), written by `Engine.deleteRange`.
 */
export type LogOperation = BatchOperation | { readonly type: 'deleteRange'; readonly key: Uint8Array; readonly end: Uint8Array | undefined };
const crcMaskDelta = 0xa282ead8;

export function segmentFileName(segment: number): string {
  assert(Number.isSafeInteger(segment) && segment >= 0, () => `segment number ${segment} must be a safe integer >= 0`);
  return `log-${String(segment).padStart(8, '0')}.log`;
}

export const segmentFileNamePattern = /^log-(\d{8,})\.log$/;

export function segmentPath(dir: string, segment: number): string {
  return `${dir}/${segmentFileName(segment)}`;
}

/**
 * LevelDB's CRC mask: rotate right by 15 and add a constant, so that the checksum of data that
 * itself contains checksums (a log copied into a value) does not look like a valid record, and
 * an all-zero header never passes.
 */
export function maskChecksum(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + crcMaskDelta) >>> 0;
}

export function varintBytes(value: number): number {
  let bytes = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 0x80)) bytes += 1;
  return bytes;
}

function putVarint(target: Uint8Array, position: number, value: number): number {
  let rest = value;
  let at = position;
  while (rest >= 0x80) {
    target[at++] = (rest % 0x80) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  target[at++] = rest;
  return at;
}

function checkOperation(operation: LogOperation): void {
  assert(operation.key instanceof Uint8Array, 'a batch operation key must be a Uint8Array');
  if (operation.type === 'put') assert(operation.value instanceof Uint8Array, 'a put value must be a Uint8Array');
  else if (operation.type === 'deleteRange') assert(operation.end === undefined || operation.end.length > 0, 'a range deletion ends at a non-empty key or at the end');
  else assert(operation.type === 'delete', () => `unknown batch operation type ${String((operation as { type: unknown }).type)}`);
}

/** The second byte string of an operation: a put's value, a range deletion's end (empty: open). */
function secondField(operation: LogOperation): Uint8Array | undefined {
  if (operation.type === 'put') return operation.value;
  if (operation.type === 'deleteRange') return operation.end ?? emptyBytes;
  return undefined;
}

const emptyBytes = new Uint8Array(0);

/** One whole record (header + payload) for a batch whose first operation takes `firstSequence`. */
export function encodeBatchRecord(firstSequence: number, operations: readonly LogOperation[]): Uint8Array {
  assert(Number.isSafeInteger(firstSequence) && firstSequence >= 1, () => `first sequence ${firstSequence} must be a safe integer >= 1`);
  assert(operations.length >= 1, 'a batch holds at least one operation');
  let payloadBytes = 1 + varintBytes(firstSequence) + varintBytes(operations.length);
  for (const operation of operations) {
    checkOperation(operation);
    payloadBytes += 1 + varintBytes(operation.key.length) + operation.key.length;
    const second = secondField(operation);
    if (second !== undefined) payloadBytes += varintBytes(second.length) + second.length;
  }
  const record = new Uint8Array(recordHeaderBytes + payloadBytes);
  let at = recordHeaderBytes;
  record[at++] = RecordType.batch;
  at = putVarint(record, at, firstSequence);
  at = putVarint(record, at, operations.length);
  for (const operation of operations) {
    record[at++] = OperationKind[operation.type];
    at = putVarint(record, at, operation.key.length);
    record.set(operation.key, at);
    at += operation.key.length;
    const second = secondField(operation);
    if (second !== undefined) {
      at = putVarint(record, at, second.length);
      record.set(second, at);
      at += second.length;
    }
  }
  assert(at === record.length, 'encoded batch length matches its computed size');
  const view = new DataView(record.buffer);
  view.setUint32(0, payloadBytes, true);
  view.setUint32(4, maskChecksum(crc32c(record.subarray(recordHeaderBytes))), true);
  return record;
}

interface Settle<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: Error) => void;
}

type Pending =
  | { readonly kind: 'append'; readonly record: Uint8Array; readonly firstSequence: number; readonly settle: Settle<number> }
  | { readonly kind: 'rotate'; readonly settle: Settle<number> }
  | { readonly kind: 'close'; readonly settle: Settle<void> };

function checkOptions(options: CommitLogOptions): void {
  assert(['always', 'periodic', 'none'].includes(options.syncPolicy), () => `unknown sync policy ${options.syncPolicy}`);
  assert(Number.isInteger(options.syncIntervalMs) && options.syncIntervalMs >= 1, () => `syncIntervalMs ${options.syncIntervalMs} must be an integer >= 1`);
  assert(Number.isSafeInteger(options.segmentBytesMax) && options.segmentBytesMax >= 1024, () => `segmentBytesMax ${options.segmentBytesMax} must be >= 1024`);
  assert(
    Number.isSafeInteger(options.recordBytesMax) && options.recordBytesMax >= 64 && options.recordBytesMax <= Math.min(options.segmentBytesMax, commitLogRecordBytesLimit),
    () => `recordBytesMax ${options.recordBytesMax} must be in [64, min(segmentBytesMax, ${commitLogRecordBytesLimit})]`,
  );
}

export class CommitLogWriter {
  /** FIFO of appends, rotations and the close, consumed by `pump` from `head`. */
  private queue: Pending[] = [];
  private head = 0;
  private pumping = false;
  private scheduled = false;
  /** Bytes of the current segment written so far: the next write goes here. */
  private tail = 0;
  private unsyncedBytes = 0;
  private bytesWrittenTotal = 0;
  private syncWanted = false;
  private timer: TimerHandle | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;
  private failure: RingkvError | undefined;

  private constructor(
    private readonly fs: FileSystem,
    private readonly dir: string,
    private readonly options: CommitLogOptions,
    private handle: FileHandle,
    private currentSegment: number,
    private sequenceNext: number,
  ) {
    if (options.syncPolicy === 'periodic') this.armTimer();
  }

  /** Starts a new, empty segment file `start.segment` (made durable in its directory before any append). */
  static async open(fs: FileSystem, dir: string, options: CommitLogOptions, start: { segment: number; nextSequence: number }): Promise<CommitLogWriter> {
    checkOptions(options);
    assert(Number.isSafeInteger(start.nextSequence) && start.nextSequence >= 1, () => `nextSequence ${start.nextSequence} must be a safe integer >= 1`);
    const handle = await createSegment(fs, dir, start.segment);
    return new CommitLogWriter(fs, dir, options, handle, start.segment, start.nextSequence);
  }

  /** The sequence number the next accepted append's first operation takes. */
  get nextSequence(): number {
    return this.sequenceNext;
  }

  /** Bytes of records written to segments by this writer (for write amplification figures). */
  get bytesWritten(): number {
    return this.bytesWrittenTotal;
  }

  /** True once a disk step failed: every later append rejects (see `fail`). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  get segment(): number {
    return this.currentSegment;
  }

  /** Appends one atomic batch and resolves with its first sequence number once durable per the sync policy. */
  append(operations: readonly LogOperation[]): Promise<number> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(closedError());
    if (this.queued() >= commitLogAppendsQueuedMax) {
      return Promise.reject(new RingkvError(ErrorCode.unavailable, `commit log: ${commitLogAppendsQueuedMax} appends already queued`));
    }
    const firstSequence = this.sequenceNext;
    const record = encodeBatchRecord(firstSequence, operations);
    if (record.length > this.options.recordBytesMax) {
      return Promise.reject(
        new RingkvError(ErrorCode.badRequest, `batch of ${operations.length} operations encodes to ${record.length} bytes, more than the commit log's recordBytesMax ${this.options.recordBytesMax}`),
      );
    }
    this.sequenceNext += operations.length;
    return new Promise<number>((resolve, reject) => this.enqueue({ kind: 'append', record, firstSequence, settle: { resolve, reject } }));
  }

  /** Syncs and closes the current segment, starts the next; resolves with its number. Appends made before the call are in older segments. */
  rotate(): Promise<number> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(closedError());
    return new Promise<number>((resolve, reject) => this.enqueue({ kind: 'rotate', settle: { resolve, reject } }));
  }

  /** Waits for queued appends, syncs and closes the segment. Idempotent; later appends reject with ENGINE_CLOSED. */
  close(): Promise<void> {
    if (this.closed === undefined) {
      this.closing = true;
      this.timer?.cancel();
      this.closed = new Promise<void>((resolve, reject) => this.enqueue({ kind: 'close', settle: { resolve, reject } }));
    }
    return this.closed;
  }

  private queued(): number {
    return this.queue.length - this.head;
  }

  private enqueue(item: Pending): void {
    this.queue.push(item);
    if (this.pumping || this.scheduled) return;
    this.scheduled = true;
    // Deferred so that appends made in this turn of the event loop join the first write.
    queueMicrotask(() => {
      this.scheduled = false;
      void this.pump();
    });
  }

  private take(): Pending | undefined {
    const item = this.queue[this.head];
    if (item === undefined) return undefined;
    this.head += 1;
    if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** The one consumer of the queue: writes, syncs, rotations and the close happen here, in order. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const item = this.queue[this.head];
        if (item === undefined) {
          if (!this.syncWanted || this.failure !== undefined) break;
          await this.guarded('fsync', () => this.syncSegment());
        } else if (this.failure !== undefined) {
          this.take();
          await this.settleAfterFailure(item);
        } else if (item.kind === 'append') {
          await this.writeGroup();
        } else if (item.kind === 'rotate') {
          this.take();
          if (await this.guarded('rotate', () => this.rotateSegment())) item.settle.resolve(this.currentSegment);
          else item.settle.reject(this.failure!);
        } else {
          this.take();
          if (await this.guarded('close', () => this.closeSegment())) item.settle.resolve();
          else item.settle.reject(this.failure!);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Writes the queued appends at the head (one group) and settles them. */
  private async writeGroup(): Promise<void> {
    const first = this.queue[this.head];
    assert(first !== undefined && first.kind === 'append', 'writeGroup starts at an append');
    if (this.tail > 0 && this.tail + first.record.length > this.options.segmentBytesMax) {
      if (!(await this.guarded('rotate', () => this.rotateSegment()))) return;
    }
    const room = Math.max(first.record.length, Math.min(commitLogGroupBytesMax, this.options.segmentBytesMax - this.tail));
    const group: Extract<Pending, { kind: 'append' }>[] = [];
    let groupBytes = 0;
    for (let item = this.queue[this.head]; item?.kind === 'append' && groupBytes + item.record.length <= room; item = this.queue[this.head]) {
      group.push(item);
      groupBytes += item.record.length;
      this.take();
    }
    const data = group.length === 1 ? group[0]!.record : concatenate(group.map((item) => item.record), groupBytes);
    const written = await this.guarded('write', async () => {
      await this.handle.write(data, this.tail);
      this.tail += data.length;
      this.bytesWrittenTotal += data.length;
      this.unsyncedBytes += data.length;
      if (this.options.syncPolicy === 'always') {
        // The deliberate bug the simulator must catch: acknowledged, then lost by a crash.
        if (simulationBugs['ack-before-sync']) for (const item of group) item.settle.resolve(item.firstSequence);
        await this.syncSegment();
      }
    });
    for (const item of group) {
      if (written) item.settle.resolve(item.firstSequence);
      else item.settle.reject(this.failure!);
    }
  }

  /** Runs one disk step; on an error, fails the writer and returns false. */
  private async guarded(operation: string, step: () => Promise<void>): Promise<boolean> {
    const offset = this.tail;
    try {
      await step();
      return true;
    } catch (error) {
      await this.fail(operation, offset, error);
      return false;
    }
  }

  private async fail(operation: string, offset: number, cause: unknown): Promise<void> {
    if (this.failure !== undefined) return;
    mark('commit-log.failed');
    const reason = cause instanceof Error ? cause.message : String(cause);
    const path = segmentPath(this.dir, this.currentSegment);
    this.failure = new RingkvError(
      ErrorCode.unavailable,
      `commit log ${path}: ${operation} at offset ${offset} failed (${reason}); the writer accepts no more appends: replay the log and open a new writer`,
    );
    this.timer?.cancel();
    try {
      // Best effort: cut what the failed step may have half-written, so no record follows a torn one.
      await this.handle.truncate(offset);
      await this.handle.sync();
    } catch {
      // Replay truncates a torn tail of the last segment anyway.
    }
  }

  private async settleAfterFailure(item: Pending): Promise<void> {
    if (item.kind !== 'close') return item.settle.reject(this.failure!);
    try {
      await this.handle.close();
    } catch {
      // The handle may already be closed or dead (crash); the failure was reported to the appends.
    }
    item.settle.resolve();
  }

  private async syncSegment(): Promise<void> {
    await this.handle.sync();
    this.unsyncedBytes = 0;
    this.syncWanted = false;
  }

  private async rotateSegment(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    const next = this.currentSegment + 1;
    this.handle = await createSegment(this.fs, this.dir, next);
    this.currentSegment = next;
    this.tail = 0;
    this.unsyncedBytes = 0;
    this.syncWanted = false;
  }

  private async closeSegment(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
  }

  private armTimer(): void {
    this.timer = this.options.clock.setTimer(this.options.syncIntervalMs, () => {
      if (this.closing || this.failure !== undefined) return;
      if (this.unsyncedBytes > 0) {
        this.syncWanted = true;
        if (!this.pumping && !this.scheduled) void this.pump();
      }
      this.armTimer();
    });
  }
}

async function createSegment(fs: FileSystem, dir: string, segment: number): Promise<FileHandle> {
  const path = segmentPath(dir, segment);
  assert(!(await fs.exists(path)), () => `commit log segment ${path} already exists: a writer only starts new segments`);
  const handle = await fs.open(path, { create: true });
  // The directory entry must be durable before any record in the file is acknowledged.
  await fs.syncDirectory(dir);
  return handle;
}

function closedError(): RingkvError {
  return new RingkvError(ErrorCode.engineClosed, 'commit log writer is closed');
}

function concatenate(parts: readonly Uint8Array[], totalBytes: number): Uint8Array {
  const joined = new Uint8Array(totalBytes);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return joined;
}
