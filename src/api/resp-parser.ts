import { assert } from '../core/assert.js';

/**
 * Incremental parser of Redis protocol requests: RESP arrays of bulk strings (what every client
 * sends) and inline commands (what a person types over telnet). Arguments are views into the
 * received bytes, valid only until the handler returns: a consumer that keeps one must copy it.
 */
export interface RespParserLimits {
  /** Largest bulk string accepted; larger is a protocol error (the connection is then closed). */
  readonly bulkBytesMax: number;
  /** Most arguments in one command. */
  readonly argumentsMax: number;
  /** Longest inline command line. */
  readonly inlineBytesMax: number;
  /** Most bytes of arguments in one command (MSET of many values); default max(64 MiB, 2 bulks). */
  readonly commandBytesMax?: number;
}

export class RespProtocolError extends Error {
  override readonly name = 'RespProtocolError';
}

const CR = 13;
const LF = 10;
/** Longest "*<count>\r\n" or "$<length>\r\n" header line before it is an error, as Redis' 32. */
const headerBytesMax = 32;
const incomplete = -1;

/** An array command whose arguments have not all arrived: those parsed so far, owned copies. */
interface PartialArray {
  readonly args: Buffer[];
  remaining: number;
  bytes: number;
}

export class RespParser {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes that must be buffered before parsing the pending bytes can make progress. */
  private neededBytes = 0;
  private partial: PartialArray | undefined;
  /** Where the unparsed bytes start when a parse stops for lack of input. */
  private resumeAt = 0;
  private readonly commandBytesMax: number;

  constructor(private readonly limits: RespParserLimits) {
    assert(limits.bulkBytesMax > 0 && limits.argumentsMax > 0 && limits.inlineBytesMax > 0, 'limits must be positive');
    this.commandBytesMax = limits.commandBytesMax ?? Math.max(64 * 1024 * 1024, 2 * limits.bulkBytesMax);
    assert(this.commandBytesMax >= limits.bulkBytesMax, 'commandBytesMax must hold one bulk');
  }

  /**
   * Parses every complete command in the bytes received so far, calling `onCommand` for each in
   * order. Throws RespProtocolError on malformed input; the parser is unusable afterwards.
   */
  feed(chunk: Buffer, onCommand: (args: Buffer[]) => void): void {
    let data = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.neededBytes) return;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let offset = 0;
    while (offset < data.length) {
      const next = this.parseCommand(data, offset, onCommand);
      if (next === incomplete) {
        offset = this.resumeAt;
        break;
      }
      offset = next;
    }
    if (offset < data.length) {
      const rest = data.subarray(offset);
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
  }

  /** Bytes held for an unfinished command (bounded by the limits). */
  bufferedBytes(): number {
    return this.pendingBytes + (this.partial?.bytes ?? 0);
  }

  private parseCommand(data: Buffer, start: number, onCommand: (args: Buffer[]) => void): number {
    let offset = start;
    if (this.partial === undefined) {
      if (data[start] !== 0x2a) {
        const args: Buffer[] = [];
        const next = this.parseInline(data, start, args);
        if (next !== incomplete && args.length > 0) onCommand(args);
        return next;
      }
      const header = readHeaderLine(data, start + 1, 'multibulk count');
      if (header === undefined) return this.needMore(data, start, data.length + 1);
      const [count, afterHeader] = header;
      if (count > this.limits.argumentsMax) throw new RespProtocolError('Protocol error: invalid multibulk length');
      if (count <= 0) return afterHeader;
      this.partial = { args: [], remaining: count, bytes: 0 };
      offset = afterHeader;
    }
    const next = this.parseArguments(data, offset, this.partial);
    if (next === incomplete) return incomplete;
    const args = this.partial.args;
    this.partial = undefined;
    onCommand(args);
    return next;
  }

  /**
   * Reads the remaining bulk strings of an array. When input runs out, the arguments read in
   * this call are copied (the received bytes are dropped) and parsing resumes at the next one:
   * a large command arriving in many chunks is copied once, not once per chunk.
   */
  private parseArguments(data: Buffer, start: number, partial: PartialArray): number {
    let offset = start;
    const firstNew = partial.args.length;
    while (partial.remaining > 0) {
      const end = this.parseBulk(data, offset, partial);
      if (end === incomplete) {
        for (let index = firstNew; index < partial.args.length; index++) partial.args[index] = Buffer.from(partial.args[index] as Buffer);
        return incomplete;
      }
      offset = end;
    }
    return offset;
  }

  private parseBulk(data: Buffer, start: number, partial: PartialArray): number {
    if (start >= data.length) return this.needMore(data, start, start + 1);
    if (data[start] !== 0x24) {
      throw new RespProtocolError(`Protocol error: expected '$', got '${String.fromCharCode(data[start] as number)}'`);
    }
    const bulk = readHeaderLine(data, start + 1, 'bulk count');
    if (bulk === undefined) return this.needMore(data, start, data.length + 1);
    const [length, payloadStart] = bulk;
    if (length < 0 || length > this.limits.bulkBytesMax) {
      throw new RespProtocolError(`Protocol error: invalid bulk length ${length} (the limit is ${this.limits.bulkBytesMax} bytes)`);
    }
    if (partial.bytes + length > this.commandBytesMax) {
      throw new RespProtocolError(`Protocol error: command larger than ${this.commandBytesMax} bytes`);
    }
    const payloadEnd = payloadStart + length;
    if (payloadEnd + 2 > data.length) return this.needMore(data, start, payloadEnd + 2);
    if (data[payloadEnd] !== CR || data[payloadEnd + 1] !== LF) throw new RespProtocolError('Protocol error: bulk string not terminated by CRLF');
    partial.args.push(data.subarray(payloadStart, payloadEnd));
    partial.bytes += length;
    partial.remaining--;
    return payloadEnd + 2;
  }

  private parseInline(data: Buffer, start: number, args: Buffer[]): number {
    const newline = data.indexOf(LF, start);
    const lineBytes = (newline === -1 ? data.length : newline) - start;
    if (lineBytes > this.limits.inlineBytesMax) throw new RespProtocolError('Protocol error: too big inline request');
    if (newline === -1) return this.needMore(data, start, data.length + 1);
    const lineEnd = newline > start && data[newline - 1] === CR ? newline - 1 : newline;
    for (const word of splitInline(data.subarray(start, lineEnd))) args.push(word);
    if (args.length > this.limits.argumentsMax) throw new RespProtocolError('Protocol error: invalid multibulk length');
    return newline + 1;
  }

  /** Keeps the bytes from `start` on, and waits until `endOffset` of `data` could have arrived. */
  private needMore(data: Buffer, start: number, endOffset: number): number {
    this.resumeAt = start;
    this.neededBytes = endOffset - start;
    assert(this.neededBytes > data.length - start, 'asked for more bytes than are missing');
    return incomplete;
  }
}

/** Parses "<integer>\r\n" at `offset`; undefined when the line is not complete yet. */
function readHeaderLine(data: Buffer, offset: number, what: string): [number, number] | undefined {
  let value = 0;
  let negative = false;
  let index = offset;
  if (data[index] === 0x2d) {
    negative = true;
    index++;
  }
  const digitsStart = index;
  for (; index < data.length; index++) {
    const byte = data[index] as number;
    if (byte === CR) break;
    if (byte < 0x30 || byte > 0x39 || index - offset >= headerBytesMax) throw new RespProtocolError(`Protocol error: invalid ${what}`);
    value = value * 10 + (byte - 0x30);
  }
  // Incomplete: the loop above already bounds the line, and a complete line of this length is valid.
  if (index + 1 >= data.length) return undefined;
  if (index === digitsStart || data[index + 1] !== LF) throw new RespProtocolError(`Protocol error: invalid ${what}`);
  return [negative ? -value : value, index + 2];
}

/** Splits an inline command on spaces and tabs; "double" and 'single' quotes group words. */
function splitInline(line: Buffer): Buffer[] {
  const words: Buffer[] = [];
  let index = 0;
  while (index < line.length) {
    while (index < line.length && (line[index] === 0x20 || line[index] === 0x09)) index++;
    if (index >= line.length) break;
    const quote = line[index];
    if (quote === 0x22 || quote === 0x27) {
      const close = line.indexOf(quote, index + 1);
      if (close === -1) throw new RespProtocolError('Protocol error: unbalanced quotes in request');
      words.push(line.subarray(index + 1, close));
      index = close + 1;
      continue;
    }
    const wordStart = index;
    while (index < line.length && line[index] !== 0x20 && line[index] !== 0x09) index++;
    words.push(line.subarray(wordStart, index));
  }
  return words;
}
