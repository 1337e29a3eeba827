import { Buffer } from 'node:buffer';
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import type { FileSystem } from '../../world/file-system.js';
import { maskChecksum, OperationKind, RecordType, recordHeaderBytes, segmentFileNamePattern, segmentPath, type LogOperation } from './commit-log-writer.js';
import { mark } from '../../core/simulation-hooks.js';

/**
 * The commit log's reader (LevelDB's log_reader); format in docs/format/commit-log.md.
 *
 * The torn-tail rule. A record is *bad* when its header or payload is cut off by the end of the
 * file or its checksum does not match. A bad record is a torn tail, truncated away, only when
 * (1) it is in the last segment and (2) no valid record starts anywhere after it in that
 * segment. Anything else (a bad record in an older segment, or followed by a valid record) may
 * hide acknowledged data: replay stops with CORRUPTION naming the file and offset, and never
 * skips past it. A record whose checksum matches but whose payload does not parse, a sequence
 * number that does not increase, or a missing segment number is corruption wherever it is.
 *
 * A segment is read whole: segments are bounded by the writer's segmentBytesMax.
 */

export interface ReplayResult {
  /** Records (batches) replayed. */
  readonly records: number;
  readonly operations: number;
  /** Sequence number of the last operation replayed; 0 when there was none. */
  readonly lastSequence: number;
  /** Bytes cut from the end of the last segment as a torn tail. */
  readonly truncatedBytes: number;
  /** Segment numbers replayed, ascending. */
  readonly segments: readonly number[];
}

/** A record parsed at some offset: its end and contents, or why it is bad. */
type Parsed =
  | { readonly kind: 'record'; readonly end: number; readonly sequence: number; readonly operations: LogOperation[] }
  | { readonly kind: 'bad'; readonly reason: string }
  | { readonly kind: 'invalid'; readonly reason: string };

/** Replays segments >= fromSegment in order, calling onBatch per record; see the torn-tail rule above. */
export async function replayCommitLog(
  fs: FileSystem,
  dir: string,
  fromSegment: number,
  onBatch: (sequence: number, operations: LogOperation[]) => void,
): Promise<ReplayResult> {
  assert(Number.isSafeInteger(fromSegment) && fromSegment >= 0, () => `fromSegment ${fromSegment} must be a safe integer >= 0`);
  const segments = (await listSegments(fs, dir)).filter((segment) => segment >= fromSegment);
  let records = 0;
  let operations = 0;
  let lastSequence = 0;
  let truncatedBytes = 0;
  for (const [index, segment] of segments.entries()) {
    const path = segmentPath(dir, segment);
    if (index > 0 && segment !== segments[index - 1]! + 1) throw corruption(path, 0, `segment ${segments[index - 1]! + 1} is missing before it`);
    const bytes = await fs.readFile(path);
    let offset = 0;
    while (offset < bytes.length) {
      const parsed = parseRecord(bytes, offset);
      if (parsed.kind === 'invalid') throw corruption(path, offset, parsed.reason);
      if (parsed.kind === 'bad') {
        checkTornTail(bytes, offset, path, parsed.reason, { isLastSegment: index === segments.length - 1, lastSequence });
        truncatedBytes += bytes.length - offset;
        mark('commit-log.torn-tail-truncated');
        await truncateSegment(fs, path, offset);
        break;
      }
      if (parsed.sequence <= lastSequence) throw corruption(path, offset, `sequence ${parsed.sequence} does not follow ${lastSequence}`);
      onBatch(parsed.sequence, parsed.operations);
      records += 1;
      operations += parsed.operations.length;
      lastSequence = parsed.sequence + parsed.operations.length - 1;
      offset = parsed.end;
    }
  }
  return { records, operations, lastSequence, truncatedBytes, segments };
}

/** Deletes every segment numbered below `segment` (their data is flushed); returns how many. */
export async function deleteSegmentsBefore(fs: FileSystem, dir: string, segment: number): Promise<number> {
  assert(Number.isSafeInteger(segment) && segment >= 0, () => `segment ${segment} must be a safe integer >= 0`);
  const doomed = (await listSegments(fs, dir)).filter((number) => number < segment);
  for (const number of doomed) await fs.unlink(segmentPath(dir, number));
  if (doomed.length > 0) await fs.syncDirectory(dir);
  return doomed.length;
}

/** Segment numbers present in `dir`, ascending. */
export async function listSegments(fs: FileSystem, dir: string): Promise<number[]> {
  if (!(await fs.exists(dir))) return [];
  const segments: number[] = [];
  for (const name of await fs.readdir(dir)) {
    const match = segmentFileNamePattern.exec(name);
    if (match !== null) segments.push(Number(match[1]));
  }
  return segments.sort((left, right) => left - right);
}

function corruption(path: string, offset: number, what: string): RingkvError {
  return new RingkvError(ErrorCode.corruption, `commit log ${path} at offset ${offset}: ${what}`);
}

/** Throws unless the bad record at `offset` may be a torn tail (the rule at the top). */
function checkTornTail(bytes: Uint8Array, offset: number, path: string, reason: string, context: { isLastSegment: boolean; lastSequence: number }): void {
  if (!context.isLastSegment) throw corruption(path, offset, `${reason}, in a segment that is not the last`);
  const following = findValidRecord(bytes, offset + 1, context.lastSequence);
  if (following !== undefined) throw corruption(path, offset, `${reason}, followed by a valid record at offset ${following}`);
}

/**
 * The first offset >= `from` where a valid record starts whose sequence is above `lastSequence`
 * (a record copied inside a value of a torn record is older, so it does not count).
 */
function findValidRecord(bytes: Uint8Array, from: number, lastSequence: number): number | undefined {
  for (let offset = from; offset + recordHeaderBytes < bytes.length; offset++) {
    const parsed = parseRecord(bytes, offset);
    if (parsed.kind === 'record' && parsed.sequence > lastSequence) return offset;
  }
  return undefined;
}

function parseRecord(bytes: Uint8Array, offset: number): Parsed {
  const remaining = bytes.length - offset;
  if (remaining < recordHeaderBytes) return { kind: 'bad', reason: `incomplete header (${remaining} bytes)` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const payloadBytes = view.getUint32(offset, true);
  const storedChecksum = view.getUint32(offset + 4, true);
  if (payloadBytes > remaining - recordHeaderBytes) return { kind: 'bad', reason: `incomplete record (payload of ${payloadBytes} bytes, ${remaining - recordHeaderBytes} left)` };
  const start = offset + recordHeaderBytes;
  const payload = bytes.subarray(start, start + payloadBytes);
  if (maskChecksum(crc32c(payload)) !== storedChecksum) return { kind: 'bad', reason: 'checksum mismatch' };
  const decoded = decodeBatch(payload);
  if (typeof decoded === 'string') return { kind: 'invalid', reason: `checksum matches but ${decoded}` };
  return { kind: 'record', end: start + payloadBytes, sequence: decoded.sequence, operations: decoded.operations };
}

/** The batch in a payload, or what is wrong with it. Keys and values are copies. */
function decodeBatch(payload: Uint8Array): { sequence: number; operations: LogOperation[] } | string {
  const cursor = new Cursor(payload);
  const type = cursor.byte();
  if (type !== RecordType.batch) return `unknown record type ${String(type)}`;
  const sequence = cursor.varint();
  const count = cursor.varint();
  if (sequence === undefined || count === undefined) return 'bad batch header';
  if (sequence < 1 || count < 1 || sequence + count - 1 > Number.MAX_SAFE_INTEGER) return `bad sequence ${sequence} or count ${count}`;
  const operations: LogOperation[] = [];
  for (let index = 0; index < count; index++) {
    const kind = cursor.byte();
    const key = cursor.bytes(cursor.varint());
    if (key === undefined) return `operation ${index} is cut off`;
    if (kind === OperationKind.delete) {
      operations.push({ type: 'delete', key });
    } else if (kind === OperationKind.put) {
      const value = cursor.bytes(cursor.varint());
      if (value === undefined) return `operation ${index} is cut off`;
      operations.push({ type: 'put', key, value });
    } else if (kind === OperationKind.deleteRange) {
      const end = cursor.bytes(cursor.varint());
      if (end === undefined) return `operation ${index} is cut off`;
      if (end.length > 0 && compareKeys(key, end) >= 0) return `operation ${index} deletes an empty range`;
      operations.push({ type: 'deleteRange', key, end: end.length === 0 ? undefined : end });
    } else {
      return `operation ${index} has unknown kind ${String(kind)}`;
    }
  }
  if (!cursor.atEnd()) return 'trailing bytes after the last operation';
  return { sequence, operations };
}

/** Reads a payload front to back; every read returns undefined past the end instead of throwing. */
class Cursor {
  private position = 0;

  constructor(private readonly data: Uint8Array) {}

  byte(): number | undefined {
    return this.position < this.data.length ? this.data[this.position++] : undefined;
  }

  /** Unsigned LEB128, at most 8 bytes (53 bits). */
  varint(): number | undefined {
    let value = 0;
    let scale = 1;
    for (let index = 0; index < 8; index++) {
      const byte = this.byte();
      if (byte === undefined) return undefined;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return Number.isSafeInteger(value) ? value : undefined;
      scale *= 0x80;
    }
    return undefined;
  }

  bytes(length: number | undefined): Uint8Array | undefined {
    if (length === undefined || length > this.data.length - this.position) return undefined;
    // A copy, and a plain Uint8Array even when the file system hands out Buffers (whose slice is a view).
    const slice = new Uint8Array(this.data.subarray(this.position, this.position + length));
    this.position += length;
    return slice;
  }

  atEnd(): boolean {
    return this.position === this.data.length;
  }
}

async function truncateSegment(fs: FileSystem, path: string, length: number): Promise<void> {
  const handle = await fs.open(path, { create: false });
  try {
    await handle.truncate(length);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function compareKeys(left: Uint8Array, right: Uint8Array): number {
  return Buffer.compare(left, right);
}
