import { xxh64 } from '../core/xxhash.js';
import { assert } from '../core/assert.js';
import type { ClockEntry, DvvEntry, DvvSet, VersionVector } from '../core/dvv.js';
import { ErrorCode, failure, success, type Result } from '../core/errors.js';

/**
 * One sibling of a stored object: a value or a tombstone, with the metadata a reader sees.
 * The on-disk form is written down in docs/format/stored-object.md.
 */
export interface Sibling {
  /** The value's bytes, or null for a tombstone (a versioned delete). */
  readonly value: Uint8Array | null;
  /** Wall-clock milliseconds at the coordinator when the write was accepted. */
  readonly writtenAtMs: number;
  /** The Content-Type the value was written with over HTTP (ASCII), or '' when none was given. */
  readonly contentType: string;
}

export type StoredObject = DvvSet<Sibling>;

/**
 * A 64-bit hash of an encoded object: its version in anti-entropy's Merkle trees. Equal objects
 * encode to equal bytes on every replica (entries sorted by actor, values in dot order, the
 * metadata as the coordinator wrote it), so equal objects hash alike wherever they are stored.
 */
export function objectVersionHash(encoded: Uint8Array): bigint {
  return xxh64(encoded);
}

/** Format version byte that leads every encoded object, so the layout can change later. */
const objectFormatVersion = 1;
const tombstoneFlag = 1;

/**
 * Encodes an object in the layout of docs/format/stored-object.md. Hand-written rather than
 * msgpack because it sits on every read and write: one size pass, one exact allocation.
 */
export function encodeObject(object: StoredObject): Uint8Array {
  let length = 1 + varintLength(object.entries.length) + siblingsLength(object.anonymous);
  for (const entry of object.entries) {
    length += varintLength(entry.actor.length) + entry.actor.length + varintLength(entry.counter) + siblingsLength(entry.values);
  }
  const out = Buffer.allocUnsafe(length);
  let offset = 0;
  out[offset++] = objectFormatVersion;
  offset = writeVarint(out, offset, object.entries.length);
  for (const entry of object.entries) {
    offset = writeVarint(out, offset, entry.actor.length);
    offset = writeAscii(out, offset, entry.actor);
    offset = writeVarint(out, offset, entry.counter);
    offset = writeSiblings(out, offset, entry.values);
  }
  offset = writeSiblings(out, offset, object.anonymous);
  assert(offset === length, 'stored object size miscounted');
  return out;
}

/**
 * Decodes bytes written by encodeObject. Sibling values are views into `bytes`, which the engine
 * hands out immutable. Bytes that do not parse are corruption or a bug: it throws.
 */
export function decodeObject(bytes: Uint8Array): StoredObject {
  const reader = new Reader(bytes);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const entryCount = reader.varint();
  const entries: DvvEntry<Sibling>[] = [];
  for (let index = 0; index < entryCount; index++) {
    const actor = reader.latin1(reader.varint());
    const counter = reader.varint();
    entries.push({ actor, counter, values: reader.siblings() });
  }
  const anonymous = reader.siblings();
  assert(reader.offset === bytes.length, 'stored object has trailing bytes');
  return { entries, anonymous };
}

/**
 * The causal history of an encoded object without its dotted values: entries keep their actor and
 * counter but no values, `present` tells whether any value (not a tombstone) was stored, and
 * `newestWrittenAtMs` is the latest timestamp of any sibling (tombstones too; -1 when none).
 * What an overwrite needs, without materializing the siblings it will discard.
 */
export function decodeHistory(bytes: Uint8Array): { readonly history: StoredObject; readonly present: boolean; readonly newestWrittenAtMs: number } {
  const reader = new Reader(bytes);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const entryCount = reader.varint();
  const entries: DvvEntry<Sibling>[] = [];
  let present = false;
  const newest = { writtenAtMs: -1 };
  for (let index = 0; index < entryCount; index++) {
    const actor = reader.latin1(reader.varint());
    const counter = reader.varint();
    if (reader.skipSiblings(newest)) present = true;
    entries.push({ actor, counter, values: [] });
  }
  const anonymous = reader.siblings();
  assert(reader.offset === bytes.length, 'stored object has trailing bytes');
  for (const sibling of anonymous) {
    if (sibling.value !== null) present = true;
    newest.writtenAtMs = Math.max(newest.writtenAtMs, sibling.writtenAtMs);
  }
  return { history: { entries, anonymous }, present, newestWrittenAtMs: newest.writtenAtMs };
}

/** What an overwrite must know of the object it replaces, read without building the object. */
export interface HistorySummary {
  /** Some sibling is a value, not a tombstone. */
  readonly present: boolean;
  /** The latest timestamp of any sibling, tombstones too; -1 when there is none. */
  readonly newestWrittenAtMs: number;
}

/** `present` and `newestWrittenAtMs` of decodeHistory, without its entries: one pass, no views. */
export function summarizeHistory(bytes: Uint8Array): HistorySummary {
  const reader = new Reader(bytes);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const entryCount = reader.varint();
  const newest = { writtenAtMs: -1 };
  let present = false;
  for (let index = 0; index < entryCount; index++) {
    reader.skip(reader.varint());
    reader.varint();
    if (reader.skipSiblings(newest)) present = true;
  }
  if (reader.skipSiblings(newest)) present = true;
  assert(reader.offset === bytes.length, 'stored object has trailing bytes');
  return { present, newestWrittenAtMs: newest.writtenAtMs };
}

/**
 * The encoded result of a write that supersedes everything stored (a Redis SET), byte for byte
 * encodeObject(overwrite(decodeHistory(stored).history, actor, sibling)), written from the
 * stored bytes: each entry's actor and counter are copied as they are, its values dropped, and
 * `actor`'s entry (found, or inserted in actor order) counts one more event holding `sibling`.
 * The hot path of SET: no object is built on the way.
 */
export function encodeOverwrite(stored: Uint8Array, actor: string, sibling: Sibling): Uint8Array {
  const reader = new Reader(stored);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const entryCount = reader.varint();
  const entriesStart = reader.offset;
  const newSiblingLength = siblingLength(sibling);
  // Pass 1: the output length, and whether `actor` has an entry already.
  let length = 1;
  let ownFound = false;
  for (let index = 0; index < entryCount; index++) {
    const start = reader.offset;
    const own = reader.actorEquals(actor);
    const counter = reader.varint();
    length += reader.offset - start + 1;
    if (own) {
      ownFound = true;
      length += varintLength(counter + 1) - varintLength(counter) + newSiblingLength;
    }
    reader.skipSiblings(undefined);
  }
  const anonymousStart = reader.offset;
  reader.skipSiblings(undefined);
  assert(reader.offset === stored.length, 'stored object has trailing bytes');
  const outCount = ownFound ? entryCount : entryCount + 1;
  // A new entry: the actor, counter 1 and a list of one sibling (one byte each).
  if (!ownFound) length += varintLength(actor.length) + actor.length + 2 + newSiblingLength;
  length += varintLength(outCount) + (stored.length - anonymousStart);
  // Pass 2: the entries again, in order, with `actor`'s inserted where it sorts.
  const out = Buffer.allocUnsafe(length);
  out[0] = objectFormatVersion;
  let offset = writeVarint(out, 1, outCount);
  let inserted = ownFound;
  reader.offset = entriesStart;
  for (let index = 0; index < entryCount; index++) {
    const start = reader.offset;
    if (!inserted && reader.actorAfter(actor)) {
      offset = writeOwnEntry(out, offset, actor, 1, sibling);
      inserted = true;
    }
    const own = reader.actorEquals(actor);
    const counter = reader.varint();
    if (own) {
      offset = writeOwnEntry(out, offset, actor, counter + 1, sibling);
    } else {
      offset = copyBytes(stored, start, reader.offset, out, offset);
      out[offset++] = 0;
    }
    reader.skipSiblings(undefined);
  }
  if (!inserted) offset = writeOwnEntry(out, offset, actor, 1, sibling);
  offset = copyBytes(stored, anonymousStart, stored.length, out, offset);
  assert(offset === length, 'overwritten object size miscounted');
  return out;
}

function writeOwnEntry(out: Buffer, start: number, actor: string, counter: number, sibling: Sibling): number {
  let offset = writeVarint(out, start, actor.length);
  offset = writeAscii(out, offset, actor);
  offset = writeVarint(out, offset, counter);
  out[offset++] = 1;
  return writeSibling(out, offset, sibling);
}

/**
 * Copies stored[from, to) to out at `at`; returns the end. Actors and counters are a few bytes,
 * which a loop copies faster than a subarray view and `set` (a view costs an object).
 */
function copyBytes(stored: Uint8Array, from: number, to: number, out: Buffer, at: number): number {
  if (to - from > 64) {
    out.set(stored.subarray(from, to), at);
    return at + to - from;
  }
  let offset = at;
  for (let index = from; index < to; index++) out[offset++] = stored[index] as number;
  return offset;
}

/**
 * The value a plain Redis GET returns (the `newestSibling` rule) read straight from the encoded
 * object, without building its siblings: the hot path of GET. Undefined when only tombstones
 * are stored.
 */
export function decodeNewestValue(bytes: Uint8Array): Uint8Array | undefined {
  const reader = new Reader(bytes);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const best: Candidate = { value: undefined, writtenAtMs: -1, contentType: '' };
  const entryCount = reader.varint();
  for (let index = 0; index < entryCount; index++) {
    reader.skip(reader.varint());
    reader.varint();
    reader.newestOf(best);
  }
  reader.newestOf(best);
  assert(reader.offset === bytes.length, 'stored object has trailing bytes');
  return best.value;
}

/** The best live sibling seen so far while scanning an encoded object. */
interface Candidate {
  value: Uint8Array | undefined;
  writtenAtMs: number;
  contentType: string;
}

/** The causal clock of an encoded object: per actor its counter and how many values it holds. */
export function decodeClock(bytes: Uint8Array): { readonly entries: ClockEntry[]; readonly anonymousCount: number } {
  const reader = new Reader(bytes);
  assert(reader.byte() === objectFormatVersion, 'stored object has an unknown format version');
  const entryCount = reader.varint();
  const entries: ClockEntry[] = [];
  for (let index = 0; index < entryCount; index++) {
    const actor = reader.latin1(reader.varint());
    const counter = reader.varint();
    entries.push({ actor, counter, valueCount: reader.countSiblings() });
  }
  const anonymousCount = reader.countSiblings();
  assert(reader.offset === bytes.length, 'stored object has trailing bytes');
  return { entries, anonymousCount };
}

function siblingsLength(siblings: readonly Sibling[]): number {
  let length = varintLength(siblings.length);
  for (const sibling of siblings) length += siblingLength(sibling);
  return length;
}

function siblingLength(sibling: Sibling): number {
  const length = 1 + varintLength(sibling.writtenAtMs) + varintLength(sibling.contentType.length) + sibling.contentType.length;
  return sibling.value === null ? length : length + varintLength(sibling.value.length) + sibling.value.length;
}

function writeSiblings(out: Buffer, start: number, siblings: readonly Sibling[]): number {
  let offset = writeVarint(out, start, siblings.length);
  for (const sibling of siblings) offset = writeSibling(out, offset, sibling);
  return offset;
}

function writeSibling(out: Buffer, start: number, sibling: Sibling): number {
  out[start] = sibling.value === null ? tombstoneFlag : 0;
  let offset = writeVarint(out, start + 1, sibling.writtenAtMs);
  offset = writeVarint(out, offset, sibling.contentType.length);
  offset = writeAscii(out, offset, sibling.contentType);
  if (sibling.value === null) return offset;
  offset = writeVarint(out, offset, sibling.value.length);
  out.set(sibling.value, offset);
  return offset + sibling.value.length;
}

/** Node ids and content types are short ASCII: a char loop beats Buffer.write for them. */
function writeAscii(out: Buffer, start: number, text: string): number {
  for (let index = 0; index < text.length; index++) out[start + index] = text.charCodeAt(index) & 0xff;
  return start + text.length;
}

/**
 * Unsigned LEB128 of a safe integer: 7 bits a byte, low bits first. Timestamps (41 bits) sit in
 * every sibling, so the length is found by comparisons rather than by repeated division.
 */
function varintLength(value: number): number {
  if (value < 0x80 && value >= 0) return 1;
  assert(Number.isSafeInteger(value) && value >= 0, () => `varint out of range: ${value}`);
  if (value < 2 ** 14) return 2;
  if (value < 2 ** 21) return 3;
  if (value < 2 ** 28) return 4;
  if (value < 2 ** 35) return 5;
  if (value < 2 ** 42) return 6;
  if (value < 2 ** 49) return 7;
  return 8;
}

/** Writes `value` as LEB128: the bits above 28 are split off once, the rest is 32-bit arithmetic. */
function writeVarint(out: Buffer, start: number, value: number): number {
  if (value < 0x80) {
    out[start] = value;
    return start + 1;
  }
  let offset = start;
  let rest = value;
  if (rest >= 2 ** 28) {
    const high = Math.floor(rest / 2 ** 28);
    let low = rest - high * 2 ** 28;
    for (let byte = 0; byte < 4; byte++, low >>>= 7) out[offset++] = (low & 0x7f) | 0x80;
    rest = high;
  }
  while (rest >= 0x80) {
    out[offset++] = (rest & 0x7f) | 0x80;
    rest >>>= 7;
  }
  out[offset++] = rest;
  return offset;
}

/** The last string decoded per length (mod 64): node ids and content types repeat across objects. */
const recentStrings: (string | undefined)[] = new Array<string | undefined>(64).fill(undefined);

class Reader {
  offset = 0;

  constructor(private readonly bytes: Uint8Array) {}

  byte(): number {
    assert(this.offset < this.bytes.length, 'stored object is truncated');
    return this.bytes[this.offset++] as number;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = this.byte();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
      assert(scale <= 2 ** 49, 'varint too long in stored object');
    }
    return value;
  }

  atEnd(): boolean {
    return this.offset === this.bytes.length;
  }

  view(length: number): Uint8Array {
    assert(this.offset + length <= this.bytes.length, 'stored object is truncated');
    const view = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return view;
  }

  /**
   * Short ASCII strings (node ids, content types). The few distinct ones recur in every object,
   * so a string equal to the last one read at this length is handed out again, not rebuilt.
   */
  latin1(length: number): string {
    assert(length <= 1024 && this.offset + length <= this.bytes.length, 'string field is truncated or too long');
    if (length === 0) return '';
    const cached = recentStrings[length & (recentStrings.length - 1)];
    if (cached !== undefined && cached.length === length && this.matches(cached)) {
      this.offset += length;
      return cached;
    }
    const view = this.bytes.subarray(this.offset, this.offset + length);
    const text = Buffer.from(view.buffer, view.byteOffset, length).toString('latin1');
    recentStrings[length & (recentStrings.length - 1)] = text;
    this.offset += length;
    return text;
  }

  private matches(text: string): boolean {
    for (let index = 0; index < text.length; index++) {
      if (text.charCodeAt(index) !== this.bytes[this.offset + index]) return false;
    }
    return true;
  }

  /** Steps over a sibling list; returns how many siblings it holds. */
  countSiblings(): number {
    const count = this.varint();
    for (let index = 0; index < count; index++) {
      const flags = this.byte();
      this.varint();
      this.skip(this.varint());
      if ((flags & tombstoneFlag) === 0) this.skip(this.varint());
    }
    return count;
  }

  /** Steps over a sibling list; true when one of them is a value rather than a tombstone. Keeps the latest timestamp in `newest`. */
  skipSiblings(newest: { writtenAtMs: number } | undefined): boolean {
    const count = this.varint();
    let live = false;
    for (let index = 0; index < count; index++) {
      const flags = this.byte();
      const writtenAtMs = this.varint();
      if (newest !== undefined && writtenAtMs > newest.writtenAtMs) newest.writtenAtMs = writtenAtMs;
      this.skip(this.varint());
      if ((flags & tombstoneFlag) === 0) {
        live = true;
        this.skip(this.varint());
      }
    }
    return live;
  }

  /** Steps over `length` bytes. */
  skip(length: number): void {
    assert(this.offset + length <= this.bytes.length, 'stored object is truncated');
    this.offset += length;
  }

  /** Reads an entry's actor (length and name); true when it is `actor`. */
  actorEquals(actor: string): boolean {
    const length = this.varint();
    const equal = length === actor.length && this.offset + length <= this.bytes.length && this.matches(actor);
    this.skip(length);
    return equal;
  }

  /** Whether the actor of the entry that starts here sorts after `actor` (the position is kept). */
  actorAfter(actor: string): boolean {
    const saved = this.offset;
    const length = this.varint();
    assert(this.offset + length <= this.bytes.length, 'stored object is truncated');
    let after = length > actor.length;
    for (let index = 0; index < Math.min(length, actor.length); index++) {
      const byte = this.bytes[this.offset + index] as number;
      const char = actor.charCodeAt(index);
      if (byte !== char) {
        after = byte > char;
        break;
      }
    }
    this.offset = saved;
    return after;
  }

  /** Steps over a sibling list, keeping in `best` the live sibling `newestSibling` would pick. */
  newestOf(best: Candidate): void {
    const count = this.varint();
    for (let index = 0; index < count; index++) {
      const flags = this.byte();
      const writtenAtMs = this.varint();
      const contentTypeLength = this.varint();
      if ((flags & tombstoneFlag) !== 0) {
        this.skip(contentTypeLength);
        continue;
      }
      const contentTypeStart = this.offset;
      this.skip(contentTypeLength);
      const value = this.view(this.varint());
      if (best.value !== undefined && writtenAtMs < best.writtenAtMs) continue;
      const contentType = this.stringAt(contentTypeStart, contentTypeLength);
      if (best.value === undefined || compareSiblings({ value, writtenAtMs, contentType }, best as Sibling) > 0) {
        best.value = value;
        best.writtenAtMs = writtenAtMs;
        best.contentType = contentType;
      }
    }
  }

  private stringAt(start: number, length: number): string {
    const saved = this.offset;
    this.offset = start;
    const text = this.latin1(length);
    this.offset = saved;
    return text;
  }

  siblings(): Sibling[] {
    const count = this.varint();
    const siblings: Sibling[] = [];
    for (let index = 0; index < count; index++) {
      const flags = this.byte();
      const writtenAtMs = this.varint();
      const contentType = this.latin1(this.varint());
      const value = (flags & tombstoneFlag) !== 0 ? null : this.view(this.varint());
      siblings.push({ value, writtenAtMs, contentType });
    }
    return siblings;
  }
}

/** Format version byte that leads every encoded context. */
const contextFormatVersion = 1;
/** Longest context accepted from a client, in characters of base64url. */
const contextCharactersMax = 64 * 1024;

/**
 * The causal context handed to clients: the version vector in the varint layout of
 * docs/format/stored-object.md, then base64url. Opaque to clients; they send it back unchanged.
 */
export function encodeContext(vector: VersionVector): string {
  let length = 1 + varintLength(vector.length);
  for (const [actor, counter] of vector) length += varintLength(actor.length) + actor.length + varintLength(counter);
  const out = Buffer.allocUnsafe(length);
  let offset = 0;
  out[offset++] = contextFormatVersion;
  offset = writeVarint(out, offset, vector.length);
  for (const [actor, counter] of vector) {
    offset = writeVarint(out, offset, actor.length);
    offset = writeAscii(out, offset, actor);
    offset = writeVarint(out, offset, counter);
  }
  assert(offset === length, 'context size miscounted');
  return out.toString('base64url');
}

export function decodeContext(text: string): Result<VersionVector> {
  const invalid = failure(ErrorCode.contextInvalid, 'the context is not one this store handed out; read the key again');
  if (text.length === 0 || text.length > contextCharactersMax || !/^[A-Za-z0-9_-]+$/.test(text)) return invalid;
  const reader = new Reader(Buffer.from(text, 'base64url'));
  const vector: [string, number][] = [];
  try {
    if (reader.byte() !== contextFormatVersion) return invalid;
    const count = reader.varint();
    for (let index = 0; index < count; index++) {
      const actor = reader.latin1(reader.varint());
      const previous = vector[index - 1];
      if (actor.length === 0 || (previous !== undefined && !(previous[0] < actor))) return invalid;
      vector.push([actor, reader.varint()]);
    }
    if (!reader.atEnd()) return invalid;
  } catch {
    // A truncated or overlong field: the Reader's assertions reject it.
    return invalid;
  }
  return success(vector);
}

/**
 * The one value a client that cannot handle siblings (a plain Redis GET) is given: the live
 * sibling written last by the coordinators' wall clocks; ties broken by the greater value bytes,
 * then content type, so every node picks the same one.
 */
export function newestSibling(siblings: readonly Sibling[]): Sibling | undefined {
  let best: Sibling | undefined;
  for (const sibling of siblings) {
    if (sibling.value === null) continue;
    if (best === undefined || compareSiblings(sibling, best) > 0) best = sibling;
  }
  return best;
}

function compareSiblings(a: Sibling, b: Sibling): number {
  if (a.writtenAtMs !== b.writtenAtMs) return a.writtenAtMs - b.writtenAtMs;
  const byValue = Buffer.compare(a.value ?? new Uint8Array(0), b.value ?? new Uint8Array(0));
  if (byValue !== 0) return byValue;
  return a.contentType < b.contentType ? -1 : a.contentType > b.contentType ? 1 : 0;
}
