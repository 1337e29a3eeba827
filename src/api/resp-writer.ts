import { assert } from '../core/assert.js';

/**
 * Encodes Redis protocol replies into one growing buffer, so that all replies to the commands of
 * one received chunk leave in a single socket write. RESP3 (after HELLO 3) changes only the
 * null, map, set and double encodings used here.
 */
export class RespWriter {
  private buffer: Buffer;
  private length = 0;
  resp3 = false;

  constructor(initialBytes = 16 * 1024) {
    this.buffer = Buffer.allocUnsafe(initialBytes);
  }

  get byteLength(): number {
    return this.length;
  }

  simple(text: string): void {
    this.ascii(`+${text}\r\n`);
  }

  ok(): void {
    this.ensure(5);
    const buffer = this.buffer;
    let at = this.length;
    buffer[at++] = 0x2b; // +
    buffer[at++] = 0x4f; // O
    buffer[at++] = 0x4b; // K
    buffer[at++] = 13;
    buffer[at++] = 10;
    this.length = at;
  }

  /** An error reply; `text` starts with its code word (ERR, WRONGTYPE, KEY_TOO_LARGE...). */
  error(text: string): void {
    this.utf8(`-${text.replace(/[\r\n]+/g, ' ')}\r\n`);
  }

  integer(value: number): void {
    assert(Number.isSafeInteger(value), 'integer reply must be a safe integer');
    this.ascii(`:${value}\r\n`);
  }

  bulk(value: Uint8Array | null): void {
    if (value === null) return this.null();
    this.ensure(value.length + 24);
    const buffer = this.buffer;
    buffer[this.length++] = 0x24; // $
    this.decimal(value.length);
    buffer[this.length++] = 13;
    buffer[this.length++] = 10;
    buffer.set(value, this.length);
    this.length += value.length;
    buffer[this.length++] = 13;
    buffer[this.length++] = 10;
  }

  bulkText(text: string): void {
    this.bulk(Buffer.from(text, 'utf8'));
  }

  null(): void {
    this.ascii(this.resp3 ? '_\r\n' : '$-1\r\n');
  }

  nullArray(): void {
    this.ascii(this.resp3 ? '_\r\n' : '*-1\r\n');
  }

  arrayHeader(count: number): void {
    this.ascii(`*${count}\r\n`);
  }

  /** A map of `count` pairs: a RESP3 map, or a flat array of 2*count items in RESP2. */
  mapHeader(count: number): void {
    this.ascii(this.resp3 ? `%${count}\r\n` : `*${count * 2}\r\n`);
  }

  /** Hands out the encoded bytes as an independent buffer and starts over. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.buffer.copy(out, 0, 0, this.length);
    this.length = 0;
    return out;
  }

  /** The digits of a non-negative integer (room already ensured), without making a string. */
  private decimal(value: number): void {
    let digits = 1;
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
    let at = this.length + digits;
    this.length = at;
    let rest = value;
    do {
      this.buffer[--at] = 0x30 + (rest % 10);
      rest = Math.floor(rest / 10);
    } while (rest > 0);
  }

  private ascii(text: string): void {
    this.ensure(text.length);
    this.length += this.buffer.write(text, this.length, 'latin1');
  }

  private utf8(text: string): void {
    this.ensure(Buffer.byteLength(text));
    this.length += this.buffer.write(text, this.length, 'utf8');
  }

  private ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}
