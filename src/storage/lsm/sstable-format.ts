import { Buffer } from 'node:buffer';
import { crc32c } from '@node-rs/crc32';
import { assert } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { mark } from '../../core/simulation-hooks.js';

/**
 * The SSTable file format, shared by sstable-writer.ts and sstable-reader.ts. The grammar is in
 * docs/format/sstable.md; this file holds its constants and the encoding of its pieces: varints,
 * the block trailer (type + CRC32C), data blocks with restart points, and the fixed-size footer.
 */

/** "RKVSSTBL": the last 8 bytes of every SSTable. */
export const tableMagic: Uint8Array = new Uint8Array([0x52, 0x4b, 0x56, 0x53, 0x53, 0x54, 0x42, 0x4c]);
export const formatVersion = 1;
/** Three block handles (u64 offset + u32 size each), version, footer CRC, magic. */
export const footerBytes = 3 * 12 + 4 + 4 + 8;
/** After every stored block: type (u8) and CRC32C (u32le) over the stored bytes and the type. */
export const blockTrailerBytes = 5;
/** Entries between restart points in a data block: a lookup decodes at most this many keys. */
export const restartInterval = 16;
/** A block handle's size is a u32; nothing near this size is ever written (values are bounded). */
export const blockBytesMax = 0xffff_ffff;

export const BlockType = { none: 0, snappy: 1 } as const;
export type BlockType = (typeof BlockType)[keyof typeof BlockType];

export interface BlockHandle {
  readonly offset: number;
  /** Stored bytes, without the trailer. */
  readonly size: number;
}

export interface Footer {
  readonly filter: BlockHandle;
  readonly index: BlockHandle;
  readonly properties: BlockHandle;
}

export function corruption(path: string, what: string): RingkvError {
  mark('lsm.corruption-detected');
  return new RingkvError(ErrorCode.corruption, `SSTable ${path}: ${what}`);
}

/** Unsigned byte order of `bytes[start, start + length)` against `other` (shorter first on a tie). */
export function compareRange(bytes: Uint8Array, start: number, length: number, other: Uint8Array): number {
  const common = Math.min(length, other.length);
  for (let index = 0; index < common; index++) {
    const difference = (bytes[start + index] as number) - (other[index] as number);
    if (difference !== 0) return difference;
  }
  return length - other.length;
}

export function compareBytes(left: Uint8Array, right: Uint8Array): number {
  return compareRange(left, 0, left.length, right);
}

export function readUint32(bytes: Uint8Array, position: number): number {
  return (
    ((bytes[position] as number) |
      ((bytes[position + 1] as number) << 8) |
      ((bytes[position + 2] as number) << 16) |
      ((bytes[position + 3] as number) << 24)) >>>
    0
  );
}

/** A growable byte buffer for building blocks and the table's tail. */
export class ByteWriter {
  private bytes: Uint8Array;
  length = 0;

  constructor(capacityBytes = 256) {
    this.bytes = new Uint8Array(capacityBytes);
  }

  private reserve(extraBytes: number): void {
    if (this.length + extraBytes <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + extraBytes));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }

  /** Unsigned LEB128 of an integer in [0, 2^53]: at most 8 bytes. */
  putVarint(value: number): void {
    assert(Number.isSafeInteger(value) && value >= 0, () => `varint out of range: ${value}`);
    this.reserve(8);
    let rest = value;
    while (rest >= 0x80) {
      this.bytes[this.length++] = (rest % 0x80) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.bytes[this.length++] = rest;
  }

  putUint8(value: number): void {
    this.reserve(1);
    this.bytes[this.length++] = value;
  }

  putUint32(value: number): void {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff, () => `u32 out of range: ${value}`);
    this.reserve(4);
    this.bytes[this.length++] = value & 0xff;
    this.bytes[this.length++] = (value >>> 8) & 0xff;
    this.bytes[this.length++] = (value >>> 16) & 0xff;
    this.bytes[this.length++] = (value >>> 24) & 0xff;
  }

  putUint64(value: number): void {
    assert(Number.isSafeInteger(value) && value >= 0, () => `u64 out of range: ${value}`);
    this.putUint32(value % 0x1_0000_0000);
    this.putUint32(Math.floor(value / 0x1_0000_0000));
  }

  putBytes(bytes: Uint8Array, start = 0, end = bytes.length): void {
    this.reserve(end - start);
    this.bytes.set(bytes.subarray(start, end), this.length);
    this.length += end - start;
  }

  /** A view of what was written; valid until the next write or reset. */
  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  reset(): void {
    this.length = 0;
  }
}

/**
 * Reads varints and fixed integers from a block whose checksum already passed. Bounds are still
 * checked, so a writer bug or a CRC collision ends in a corruption error, not a wild read.
 */
export class ByteReader {
  position: number;

  constructor(
    readonly bytes: Uint8Array,
    private readonly end: number,
    private readonly path: string,
    start = 0,
  ) {
    this.position = start;
  }

  get done(): boolean {
    return this.position >= this.end;
  }

  varint(): number {
    let result = 0;
    let multiplier = 1;
    for (let index = 0; index < 8; index++) {
      if (this.position >= this.end) throw corruption(this.path, 'varint runs past its block');
      const byte = this.bytes[this.position++] as number;
      result += (byte & 0x7f) * multiplier;
      if (byte < 0x80) return result;
      multiplier *= 0x80;
    }
    throw corruption(this.path, 'varint longer than 8 bytes');
  }

  uint32(): number {
    if (this.position + 4 > this.end) throw corruption(this.path, 'u32 runs past its block');
    const value = readUint32(this.bytes, this.position);
    this.position += 4;
    return value;
  }

  uint64(): number {
    const low = this.uint32();
    const high = this.uint32();
    if (high >= 0x20_0000) throw corruption(this.path, 'u64 above 2^53');
    return high * 0x1_0000_0000 + low;
  }

  /** A view (not a copy) of the next `length` bytes. */
  bytesView(length: number): Uint8Array {
    if (this.position + length > this.end) throw corruption(this.path, 'bytes run past their block');
    const view = this.bytes.subarray(this.position, this.position + length);
    this.position += length;
    return view;
  }
}

/** The CRC stored in a block trailer: CRC32C over the stored bytes, then the type byte. */
export function blockChecksum(stored: Uint8Array, type: number): number {
  return crc32c(Uint8Array.of(type), crc32c(stored));
}

// ---- Data blocks ---------------------------------------------------------------------------

/**
 * Builds one data block: entries with the key prefix shared with the previous entry left out,
 * a full key every `restartInterval` entries (a restart point), then the restart offsets.
 *   entry := shared:varint unshared:varint value_length_plus_one:varint sequence:varint
 *            key_suffix[unshared] value[value_length]        (value_length_plus_one 0 = tombstone)
 */
export class DataBlockBuilder {
  private readonly body = new ByteWriter(16 * 1024);
  private readonly restarts: number[] = [];
  private previousKey: Uint8Array = new Uint8Array(0);
  private sinceRestart = 0;
  entries = 0;

  constructor(private readonly interval: number) {
    assert(interval >= 1, 'restart interval must be at least 1');
  }

  add(key: Uint8Array, sequence: number, value: Uint8Array | null): void {
    let shared = 0;
    if (this.sinceRestart === this.interval || this.entries === 0) {
      this.restarts.push(this.body.length);
      this.sinceRestart = 0;
    } else {
      const limit = Math.min(key.length, this.previousKey.length);
      while (shared < limit && key[shared] === this.previousKey[shared]) shared++;
    }
    this.body.putVarint(shared);
    this.body.putVarint(key.length - shared);
    this.body.putVarint(value === null ? 0 : value.length + 1);
    this.body.putVarint(sequence);
    this.body.putBytes(key, shared);
    if (value !== null) this.body.putBytes(value);
    this.previousKey = key;
    this.sinceRestart++;
    this.entries++;
  }

  /** Bytes the block will have when finished now. */
  get sizeBytes(): number {
    return this.body.length + 4 * (this.restarts.length + 1);
  }

  /** The finished block; a view valid until the next `reset`. */
  finish(): Uint8Array {
    assert(this.entries > 0, 'an empty data block is never written');
    for (const restart of this.restarts) this.body.putUint32(restart);
    this.body.putUint32(this.restarts.length);
    return this.body.view();
  }

  reset(): void {
    this.body.reset();
    this.restarts.length = 0;
    this.previousKey = new Uint8Array(0);
    this.sinceRestart = 0;
    this.entries = 0;
  }
}

/**
 * A cursor over one verified data block. It rebuilds each key in a scratch buffer it owns, so
 * seeking and stepping allocate nothing; `key()` and `value()` copy out what the caller keeps.
 * Seeking binary-searches the restart points (whose keys are stored whole), then steps at most
 * `restartInterval` entries.
 */
export class DataBlockCursor {
  private contents: Uint8Array = new Uint8Array(0);
  private restartsStart = 0;
  private restartCount = 0;
  private next = 0;
  private position = 0;
  private scratch = new Uint8Array(64);
  keyLength = 0;
  sequence = 0;
  /** -1 for a tombstone. */
  valueLength = -1;
  private valueStart = 0;
  /** True when the cursor is on an entry. */
  valid = false;

  constructor(private readonly path: string) {}

  /** Points the cursor at a block (before its first entry); throws on a malformed restart array. */
  reset(contents: Uint8Array, blockOffset: number): void {
    if (contents.length < 4) throw corruption(this.path, `block at ${blockOffset} too short`);
    const restartCount = readUint32(contents, contents.length - 4);
    const restartsStart = contents.length - 4 - 4 * restartCount;
    if (restartCount === 0 || restartsStart < 0) {
      throw corruption(this.path, `block at ${blockOffset} has a bad restart array`);
    }
    this.contents = contents;
    this.restartCount = restartCount;
    this.restartsStart = restartsStart;
    this.next = 0;
    this.keyLength = 0;
    this.valid = false;
  }

  /** Steps to the next entry; false (and invalid) at the end of the block. */
  step(): boolean {
    if (this.next >= this.restartsStart) {
      this.valid = false;
      return false;
    }
    this.position = this.next;
    const shared = this.varint();
    const unshared = this.varint();
    const valueLengthPlusOne = this.varint();
    this.sequence = this.varint();
    if (shared > this.keyLength) throw corruption(this.path, 'entry shares more than the previous key');
    const suffixStart = this.position;
    this.valueStart = suffixStart + unshared;
    this.valueLength = valueLengthPlusOne - 1;
    const end = this.valueStart + Math.max(this.valueLength, 0);
    if (end > this.restartsStart) throw corruption(this.path, 'entry runs past its block');
    this.ensureScratch(shared + unshared);
    // A byte loop, not set(subarray()): suffixes are short and a view per step costs more.
    const scratch = this.scratch;
    const contents = this.contents;
    for (let index = 0; index < unshared; index++) scratch[shared + index] = contents[suffixStart + index] as number;
    this.keyLength = shared + unshared;
    this.next = end;
    this.valid = true;
    return true;
  }

  /** Moves to the first entry with key >= target; false (invalid) when every key is smaller. */
  seek(target: Uint8Array): boolean {
    let low = 0;
    let high = this.restartCount - 1;
    // The last restart whose key is <= target (or the first restart when all are greater).
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.compareRestartKey(middle, target) <= 0) low = middle;
      else high = middle - 1;
    }
    this.next = this.restartOffset(low);
    this.keyLength = 0;
    while (this.step()) {
      if (compareRange(this.scratch, 0, this.keyLength, target) >= 0) return true;
    }
    return false;
  }

  /** The current key compared with `other`, without copying. */
  compareKey(other: Uint8Array): number {
    return compareRange(this.scratch, 0, this.keyLength, other);
  }

  key(): Uint8Array {
    return this.scratch.slice(0, this.keyLength);
  }

  /** A copy of the current value, or null for a tombstone. */
  value(): Uint8Array | null {
    if (this.valueLength < 0) return null;
    // Copied into memory from Node's Buffer pool: a small typed array of its own costs an
    // ArrayBuffer each, several times the copy (1.2-2.4 us against 0.2-0.3 us for 100 bytes here).
    const value = Buffer.allocUnsafe(this.valueLength);
    value.set(this.contents.subarray(this.valueStart, this.valueStart + this.valueLength));
    return value;
  }

  private restartOffset(index: number): number {
    const offset = readUint32(this.contents, this.restartsStart + 4 * index);
    if (offset >= this.restartsStart) throw corruption(this.path, 'restart point past the entries');
    return offset;
  }

  private compareRestartKey(index: number, target: Uint8Array): number {
    this.position = this.restartOffset(index);
    const shared = this.varint();
    const unshared = this.varint();
    this.varint();
    this.varint();
    if (shared !== 0) throw corruption(this.path, 'restart entry shares a prefix');
    if (this.position + unshared > this.restartsStart) throw corruption(this.path, 'restart key runs past its block');
    return compareRange(this.contents, this.position, unshared, target);
  }

  /** A varint at `position` inside the entries area (same encoding as ByteReader.varint). */
  private varint(): number {
    let result = 0;
    let multiplier = 1;
    for (let index = 0; index < 8; index++) {
      if (this.position >= this.restartsStart) throw corruption(this.path, 'varint runs past its block');
      const byte = this.contents[this.position++] as number;
      result += (byte & 0x7f) * multiplier;
      if (byte < 0x80) return result;
      multiplier *= 0x80;
    }
    throw corruption(this.path, 'varint longer than 8 bytes');
  }

  private ensureScratch(length: number): void {
    if (length <= this.scratch.length) return;
    const grown = new Uint8Array(Math.max(length, this.scratch.length * 2));
    grown.set(this.scratch.subarray(0, this.keyLength));
    this.scratch = grown;
  }
}

// ---- Footer --------------------------------------------------------------------------------

export function encodeFooter(footer: Footer): Uint8Array {
  const writer = new ByteWriter(footerBytes);
  for (const handle of [footer.filter, footer.index, footer.properties]) {
    writer.putUint64(handle.offset);
    writer.putUint32(handle.size);
  }
  writer.putUint32(formatVersion);
  writer.putUint32(crc32c(writer.view()));
  writer.putBytes(tableMagic);
  const bytes = writer.view().slice();
  assert(bytes.length === footerBytes, 'footer has a fixed size');
  return bytes;
}

/** Decodes and checks a footer: magic, CRC, version, then that every handle fits before it. */
export function decodeFooter(bytes: Uint8Array, fileBytes: number, path: string): Footer {
  assert(bytes.length === footerBytes, 'footer has a fixed size');
  const magic = bytes.subarray(footerBytes - tableMagic.length);
  if (compareBytes(magic, tableMagic) !== 0) throw corruption(path, 'bad magic number (not an SSTable, or damaged)');
  const reader = new ByteReader(bytes, footerBytes, path);
  const handles: BlockHandle[] = [];
  for (let index = 0; index < 3; index++) handles.push({ offset: reader.uint64(), size: reader.uint32() });
  const version = reader.uint32();
  const checksumStart = reader.position;
  if (reader.uint32() !== crc32c(bytes.subarray(0, checksumStart))) throw corruption(path, 'footer checksum mismatch');
  if (version !== formatVersion) throw corruption(path, `unsupported format version ${version}`);
  const [filter, index, properties] = handles as [BlockHandle, BlockHandle, BlockHandle];
  const metaEnd = fileBytes - footerBytes;
  // The tail is filter, index, properties, back to back, ending where the footer starts.
  const contiguous =
    filter.offset + filter.size + blockTrailerBytes === index.offset &&
    index.offset + index.size + blockTrailerBytes === properties.offset &&
    properties.offset + properties.size + blockTrailerBytes === metaEnd;
  if (!contiguous) throw corruption(path, 'footer block handles do not tile the file tail');
  return { filter, index, properties };
}
