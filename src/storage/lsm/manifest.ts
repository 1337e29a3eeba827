import { crc32c } from '@node-rs/crc32';
import { assert } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { writeFileAtomic, type FileSystem } from '../../world/file-system.js';

/**
 * The manifest: which SSTables are live, plus the engine's durable counters (LevelDB's MANIFEST
 * and CURRENT, simplified: each version is a whole snapshot, not a log of edits). The format is
 * docs/format/manifest.md; writer `encodeManifest`/`writeManifest`, reader
 * `decodeManifest`/`readManifest`.
 *
 * Atomicity. `MANIFEST-<version>` is written beside the current one and made durable (file and
 * directory entry) before CURRENT is switched to it with a write-fsync-rename-fsync; only then
 * are older manifests deleted. A crash at any moment therefore leaves CURRENT naming a complete,
 * durable manifest: the old one or the new one. CURRENT carries its own checksum, so a flipped
 * bit cannot silently point it at a stale manifest left behind by a lost unlink.
 */

export interface ManifestFile {
  readonly id: number;
  readonly level: number;
  readonly smallestKey: Uint8Array;
  readonly largestKey: Uint8Array;
  readonly entries: number;
  readonly fileBytes: number;
  readonly smallestSequence: number;
  readonly largestSequence: number;
}

/** Deletes every key in [start, end) (end undefined: to the end) written before `sequence`. */
export interface ManifestRangeTombstone {
  readonly start: Uint8Array;
  readonly end: Uint8Array | undefined;
  readonly sequence: number;
}

export interface ManifestState {
  /** 0 for the empty manifest of a new engine; each write takes the previous version + 1. */
  readonly version: number;
  /** Live SSTables, in the order the engine chose (kept as is: e.g. level 0 newest first). */
  readonly files: readonly ManifestFile[];
  /** Commit-log segments below this are flushed and deletable. */
  readonly logSegmentFloor: number;
  readonly nextFileId: number;
  readonly lastFlushedSequence: number;
  /** Range deletions that flushed tables may still hold keys under; absent: none. */
  readonly rangeTombstones?: readonly ManifestRangeTombstone[];
}

/** Format version of the manifest file (docs/format/manifest.md). */
export const manifestFormatVersion = 1;
/** "RKVMANIF": the first eight bytes of every manifest file. */
export const manifestMagic: Uint8Array = new Uint8Array([0x52, 0x4b, 0x56, 0x4d, 0x41, 0x4e, 0x49, 0x46]);
/** Live files a manifest may list; a 10-million-key store at 2 MiB per table needs about 1000. */
export const manifestFilesMax = 1_000_000;
/** Longest smallest/largest key: a 64 KiB user key plus the partition and namespace prefix. */
export const manifestKeyBytesMax = 128 * 1024;
/** Levels are numbered 0 .. manifestLevelsMax - 1. */
export const manifestLevelsMax = 64;

export const currentFileName = 'CURRENT';
const headerBytes = manifestMagic.length + 1 + 4;
const checksumBytes = 4;
const manifestNamePattern = /^MANIFEST-(\d{8,})$/;
const tableNamePattern = /^(\d{8,})\.sst$/;
const currentPattern = /^(MANIFEST-\d{8,}) ([0-9a-f]{8})\n$/;

export function emptyManifest(): ManifestState {
  return { version: 0, files: [], logSegmentFloor: 0, nextFileId: 1, lastFlushedSequence: 0 };
}

/** `MANIFEST-00000007`: the version, zero-padded to at least 8 digits. */
export function manifestFileName(version: number): string {
  assert(Number.isSafeInteger(version) && version >= 1, () => `manifest version must be a safe integer >= 1, got ${version}`);
  return `MANIFEST-${String(version).padStart(8, '0')}`;
}

/** `00000042.sst`: the id, zero-padded to at least 8 digits. */
export function tableFileName(id: number): string {
  assert(Number.isSafeInteger(id) && id >= 0, () => `table id must be a safe integer >= 0, got ${id}`);
  return `${String(id).padStart(8, '0')}.sst`;
}

/**
 * Reads CURRENT, then the manifest it names; verifies both checksums and the version. Returns
 * undefined when `dir` has no CURRENT (a new engine). A corrupt CURRENT, or a named manifest that
 * is missing, fails its checksum or does not parse: RingkvError(CORRUPTION) naming the file.
 */
export async function readManifest(fs: FileSystem, dir: string): Promise<ManifestState | undefined> {
  const version = await readCurrentVersion(fs, dir);
  if (version === undefined) return undefined;
  const path = joinPath(dir, manifestFileName(version));
  if (!(await fs.exists(path))) throw corruption(path, 'named by CURRENT but missing');
  const state = decodeManifest(await fs.readFile(path), path);
  if (state.version !== version) throw corruption(path, `holds version ${state.version}, its name says ${version}`);
  return state;
}

/**
 * Writes `MANIFEST-<version>` (fsync, fsync the directory), points CURRENT at it atomically
 * (CURRENT.tmp, fsync, rename, fsync the directory), then deletes older manifests. `state.version`
 * must be the version CURRENT names + 1 (1 when there is no CURRENT): asserted. The caller
 * serializes writes; two concurrent writeManifest calls on one directory are a bug.
 */
export async function writeManifest(fs: FileSystem, dir: string, state: ManifestState): Promise<void> {
  const problem = stateProblem(state);
  assert(problem === undefined, () => `writeManifest: invalid state: ${problem}`);
  const previous = (await readCurrentVersion(fs, dir)) ?? 0;
  assert(state.version === previous + 1, () => `writeManifest: version ${state.version} after ${previous}, must be ${previous + 1}`);
  const name = manifestFileName(state.version);
  const handle = await fs.open(joinPath(dir, name), { create: true });
  try {
    // A crash may have left a partial file of this version (CURRENT never named it): replace it.
    await handle.truncate(0);
    await handle.write(encodeManifest(state), 0);
    await handle.sync();
  } finally {
    await handle.close();
  }
  // The new manifest's directory entry must be durable before CURRENT can name it.
  await fs.syncDirectory(dir);
  await writeFileAtomic(fs, joinPath(dir, currentFileName), new TextEncoder().encode(currentContents(name)));
  for (const entry of await fs.readdir(dir)) {
    if (manifestNamePattern.test(entry) && entry !== name) await fs.unlink(joinPath(dir, entry));
  }
}

/**
 * Names (relative to `dir`, sorted) of the files in `dir` that `state` does not reference: SSTables
 * (`<id>.sst`) left by a crash mid-flush or mid-compaction, manifests other than
 * `MANIFEST-<state.version>`, and a leftover `CURRENT.tmp`. Call it on open, with the state
 * `readManifest` returned (or `emptyManifest()`), before any flush or compaction starts: a table
 * being written is not in the manifest yet and would be listed.
 */
export async function orphanFiles(fs: FileSystem, dir: string, state: ManifestState): Promise<string[]> {
  const live = new Set(state.files.map((file) => file.id));
  const currentName = state.version === 0 ? undefined : manifestFileName(state.version);
  const orphans: string[] = [];
  for (const entry of await fs.readdir(dir)) {
    const table = tableNamePattern.exec(entry);
    if (table !== null && !live.has(Number(table[1]))) orphans.push(entry);
    if (manifestNamePattern.test(entry) && entry !== currentName) orphans.push(entry);
    if (entry === `${currentFileName}.tmp`) orphans.push(entry);
  }
  return orphans.sort();
}

/** The manifest file's bytes (docs/format/manifest.md). `state` must be valid (asserted). */
export function encodeManifest(state: ManifestState): Uint8Array {
  const problem = stateProblem(state);
  assert(problem === undefined, () => `encodeManifest: invalid state: ${problem}`);
  const writer = new ByteWriter();
  writer.bytes(manifestMagic);
  writer.byte(manifestFormatVersion);
  writer.uint32(0); // payload length, filled in below
  for (const counter of [state.version, state.logSegmentFloor, state.nextFileId, state.lastFlushedSequence]) writer.varint(counter);
  writer.varint(state.files.length);
  for (const file of state.files) {
    const { id, level, entries, fileBytes, smallestSequence, largestSequence } = file;
    for (const field of [id, level, entries, fileBytes, smallestSequence, largestSequence]) writer.varint(field);
    writer.varint(file.smallestKey.length);
    writer.bytes(file.smallestKey);
    writer.varint(file.largestKey.length);
    writer.bytes(file.largestKey);
  }
  const rangeTombstones = state.rangeTombstones ?? [];
  writer.varint(rangeTombstones.length);
  for (const tombstone of rangeTombstones) {
    writer.varint(tombstone.sequence);
    writer.varint(tombstone.start.length);
    writer.bytes(tombstone.start);
    writer.byte(tombstone.end === undefined ? 0 : 1);
    if (tombstone.end !== undefined) {
      writer.varint(tombstone.end.length);
      writer.bytes(tombstone.end);
    }
  }
  const bytes = writer.finish(checksumBytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(manifestMagic.length + 1, bytes.length - headerBytes - checksumBytes, true);
  view.setUint32(bytes.length - checksumBytes, crc32c(bytes.subarray(0, bytes.length - checksumBytes)), true);
  return bytes;
}

/** Parses a manifest file; anything but a well-formed, checksummed, valid one: CORRUPTION naming `path`. */
export function decodeManifest(bytes: Uint8Array, path: string): ManifestState {
  const payload = checkedPayload(bytes, path);
  const reader = new ByteReader(payload, path);
  const version = reader.varint();
  const logSegmentFloor = reader.varint();
  const nextFileId = reader.varint();
  const lastFlushedSequence = reader.varint();
  const fileCount = reader.varint();
  if (fileCount > manifestFilesMax) throw corruption(path, `${fileCount} files, more than ${manifestFilesMax}`);
  const files: ManifestFile[] = [];
  for (let index = 0; index < fileCount; index++) {
    const id = reader.varint();
    const level = reader.varint();
    const entries = reader.varint();
    const fileBytes = reader.varint();
    const smallestSequence = reader.varint();
    const largestSequence = reader.varint();
    const smallestKey = reader.bytes(reader.varint());
    const largestKey = reader.bytes(reader.varint());
    files.push({ id, level, smallestKey, largestKey, entries, fileBytes, smallestSequence, largestSequence });
  }
  const rangeCount = reader.varint();
  if (rangeCount > manifestFilesMax) throw corruption(path, `${rangeCount} range tombstones, more than ${manifestFilesMax}`);
  const rangeTombstones: ManifestRangeTombstone[] = [];
  for (let index = 0; index < rangeCount; index++) {
    const sequence = reader.varint();
    const start = reader.bytes(reader.varint());
    const hasEnd = reader.byte();
    if (hasEnd > 1) throw corruption(path, `range tombstone ${index}: end flag ${hasEnd}`);
    const end = hasEnd === 1 ? reader.bytes(reader.varint()) : undefined;
    rangeTombstones.push({ start, end, sequence });
  }
  if (!reader.atEnd()) throw corruption(path, 'trailing bytes after the last range tombstone');
  const state: ManifestState = { version, files, logSegmentFloor, nextFileId, lastFlushedSequence, ...(rangeCount > 0 ? { rangeTombstones } : {}) };
  const problem = stateProblem(state);
  if (problem !== undefined) throw corruption(path, problem);
  return state;
}

/** The payload of a manifest file, after checking its checksum, magic, format version and length. */
function checkedPayload(bytes: Uint8Array, path: string): Uint8Array {
  if (bytes.length < headerBytes + checksumBytes) throw corruption(path, `${bytes.length} bytes, shorter than header and checksum`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const checksumPosition = bytes.length - checksumBytes;
  if (crc32c(bytes.subarray(0, checksumPosition)) !== view.getUint32(checksumPosition, true)) throw corruption(path, 'checksum mismatch');
  if (!manifestMagic.every((byte, index) => bytes[index] === byte)) throw corruption(path, 'bad magic number');
  const formatVersion = bytes[manifestMagic.length]!;
  if (formatVersion !== manifestFormatVersion) throw corruption(path, `unknown format version ${formatVersion}`);
  const payloadBytes = view.getUint32(manifestMagic.length + 1, true);
  if (payloadBytes !== checksumPosition - headerBytes) throw corruption(path, `payload length ${payloadBytes} does not match the file`);
  return bytes.subarray(headerBytes, checksumPosition);
}

/** The first way `state` breaks the manifest's invariants, or undefined. */
function stateProblem(state: ManifestState): string | undefined {
  const { version, logSegmentFloor, nextFileId, lastFlushedSequence } = state;
  for (const [name, value] of Object.entries({ version, logSegmentFloor, nextFileId, lastFlushedSequence })) {
    if (!isCount(value)) return `${name} ${value} is not a safe integer >= 0`;
  }
  if (state.version < 1) return 'version must be >= 1 to be written';
  if (state.files.length > manifestFilesMax) return `${state.files.length} files, more than ${manifestFilesMax}`;
  const ids = new Set<number>();
  for (const file of state.files) {
    const problem = fileProblem(file, state.nextFileId);
    if (problem !== undefined) return `file ${file.id}: ${problem}`;
    if (ids.has(file.id)) return `file ${file.id} listed twice`;
    ids.add(file.id);
  }
  for (const tombstone of state.rangeTombstones ?? []) {
    if (!isCount(tombstone.sequence) || tombstone.sequence < 1) return `range tombstone sequence ${tombstone.sequence} is not a safe integer >= 1`;
    if (tombstone.end !== undefined && compareBytes(tombstone.start, tombstone.end) >= 0) return 'a range tombstone is empty (start >= end)';
    if (Math.max(tombstone.start.length, tombstone.end?.length ?? 0) > manifestKeyBytesMax) return `a range tombstone bound is longer than ${manifestKeyBytesMax} bytes`;
  }
  return undefined;
}

function fileProblem(file: ManifestFile, nextFileId: number): string | undefined {
  const { id, entries, fileBytes, smallestSequence, largestSequence } = file;
  for (const [name, value] of Object.entries({ id, entries, fileBytes, smallestSequence, largestSequence })) {
    if (!isCount(value)) return `${name} ${value} is not a safe integer >= 0`;
  }
  if (file.id >= nextFileId) return `id is not below nextFileId ${nextFileId}`;
  if (!Number.isInteger(file.level) || file.level < 0 || file.level >= manifestLevelsMax) {
    return `level ${file.level} outside [0, ${manifestLevelsMax})`;
  }
  if (file.entries < 1) return 'a table holds at least one entry';
  if (file.smallestSequence > file.largestSequence) return 'smallestSequence above largestSequence';
  if (!(file.smallestKey instanceof Uint8Array) || !(file.largestKey instanceof Uint8Array)) return 'keys must be Uint8Arrays';
  if (Math.max(file.smallestKey.length, file.largestKey.length) > manifestKeyBytesMax) {
    return `a key is longer than ${manifestKeyBytesMax} bytes`;
  }
  if (compareBytes(file.smallestKey, file.largestKey) > 0) return 'smallestKey above largestKey';
  return undefined;
}

/** The version CURRENT names; undefined when there is no CURRENT. */
async function readCurrentVersion(fs: FileSystem, dir: string): Promise<number | undefined> {
  const path = joinPath(dir, currentFileName);
  if (!(await fs.exists(path))) return undefined;
  const text = new TextDecoder('latin1').decode(await fs.readFile(path));
  const match = currentPattern.exec(text);
  if (match === null) throw corruption(path, 'does not parse');
  const name = match[1]!;
  if (checksumHex(name) !== match[2]) throw corruption(path, 'checksum mismatch');
  const version = Number(manifestNamePattern.exec(name)![1]);
  if (!Number.isSafeInteger(version) || version < 1) throw corruption(path, `names version ${version}`);
  return version;
}

function currentContents(manifestName: string): string {
  return `${manifestName} ${checksumHex(manifestName)}\n`;
}

function checksumHex(text: string): string {
  return crc32c(text).toString(16).padStart(8, '0');
}

function corruption(path: string, what: string): RingkvError {
  return new RingkvError(ErrorCode.corruption, `manifest: ${path}: ${what}`);
}

function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

function isCount(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

function compareBytes(left: Uint8Array, right: Uint8Array): number {
  const length = Math.min(left.length, right.length);
  for (let index = 0; index < length; index++) {
    if (left[index] !== right[index]) return left[index]! - right[index]!;
  }
  return left.length - right.length;
}

/** A growable byte buffer. */
class ByteWriter {
  private buffer = new Uint8Array(256);
  private length = 0;

  byte(value: number): void {
    this.reserve(1);
    this.buffer[this.length++] = value;
  }

  uint32(value: number): void {
    for (let shift = 0; shift < 32; shift += 8) this.byte((value >>> shift) & 0xff);
  }

  bytes(value: Uint8Array): void {
    this.reserve(value.length);
    this.buffer.set(value, this.length);
    this.length += value.length;
  }

  /** Unsigned LEB128 of a safe integer: 7 bits per byte, low group first, at most 8 bytes. */
  varint(value: number): void {
    assert(isCount(value), () => `varint: ${value} is not a safe integer >= 0`);
    let rest = value;
    while (rest >= 0x80) {
      this.byte((rest % 0x80) | 0x80);
      rest = Math.floor(rest / 0x80);
    }
    this.byte(rest);
  }

  /** The bytes written plus `spareBytes` zero bytes at the end. */
  finish(spareBytes: number): Uint8Array {
    this.reserve(spareBytes);
    this.length += spareBytes;
    return this.buffer.slice(0, this.length);
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = new Uint8Array(Math.max(this.buffer.length * 2, this.length + bytes));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }
}

/** Reads the payload; running past its end or an oversized varint is corruption of `path`. */
class ByteReader {
  private position = 0;

  constructor(
    private readonly payload: Uint8Array,
    private readonly path: string,
  ) {}

  atEnd(): boolean {
    return this.position === this.payload.length;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let index = 0; index < 8; index++) {
      if (this.position >= this.payload.length) throw corruption(this.path, 'truncated varint');
      const byte = this.payload[this.position++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(value)) throw corruption(this.path, 'varint above 2^53 - 1');
        return value;
      }
      scale *= 0x80;
    }
    throw corruption(this.path, 'varint longer than 8 bytes');
  }

  byte(): number {
    if (this.position >= this.payload.length) throw corruption(this.path, 'truncated byte');
    return this.payload[this.position++]!;
  }

  /** A copy, so the state does not pin the file's buffer. */
  bytes(length: number): Uint8Array {
    if (length > manifestKeyBytesMax) throw corruption(this.path, `key length ${length} above ${manifestKeyBytesMax}`);
    if (this.position + length > this.payload.length) throw corruption(this.path, 'truncated key');
    const copy = this.payload.slice(this.position, this.position + length);
    this.position += length;
    return copy;
  }
}
