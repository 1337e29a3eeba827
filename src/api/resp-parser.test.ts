// Tests of the incremental RESP request parser (resp-parser.ts). The oracle is the encoder below:
// whatever a stream of valid commands is cut into, the parser must hand back exactly the commands
// that were encoded; on arbitrary bytes it may only emit commands, wait, or throw RespProtocolError,
// and the outcome must not depend on where the chunks were cut.
import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import fc from 'fast-check';
import { RespParser, RespProtocolError, type RespParserLimits } from './resp-parser.js';

const limits: RespParserLimits = { bulkBytesMax: 64, argumentsMax: 8, inlineBytesMax: 256 };
/** "$<length>\r\n" or "*<count>\r\n": the parser's header line limit (32 bytes) plus prefix and CRLF. */
const headerBytesMax = 1 + 32 + 2;
/**
 * The parser holds the whole unfinished command (as Redis does), so the bound on what it buffers is
 * one command at the limits, not one bulk: a header plus argumentsMax bulks with their headers.
 * A lone bulk (argumentsMax 1) comes down to bulkBytesMax + header slack.
 */
function bufferedBytesBound(parserLimits: RespParserLimits): number {
  const arrayBytesMax = headerBytesMax + parserLimits.argumentsMax * (headerBytesMax + parserLimits.bulkBytesMax + 2);
  return Math.max(arrayBytesMax, parserLimits.inlineBytesMax);
}
/** Tests that feed arbitrary bytes fail instead of hanging should the parser ever loop forever. */
const timeoutMs = 20_000;

type Command = { readonly kind: 'array'; readonly args: readonly Buffer[] } | { readonly kind: 'inline'; readonly words: readonly string[]; readonly lf: boolean };

function encode(command: Command): Buffer {
  if (command.kind === 'inline') return Buffer.from(`${command.words.join(' ')}${command.lf ? '\n' : '\r\n'}`, 'latin1');
  const parts: Buffer[] = [Buffer.from(`*${command.args.length}\r\n`, 'latin1')];
  for (const arg of command.args) parts.push(Buffer.from(`$${arg.length}\r\n`, 'latin1'), arg, Buffer.from('\r\n', 'latin1'));
  return Buffer.concat(parts);
}

function expectedArgs(command: Command): Buffer[] {
  return command.kind === 'array' ? [...command.args] : command.words.map((word) => Buffer.from(word, 'latin1'));
}

interface Outcome {
  readonly commands: Buffer[][];
  /** The RespProtocolError message, or undefined when every byte was accepted (parsed or waiting). */
  readonly error: string | undefined;
  readonly bufferedBytes: number;
}

/**
 * Feeds `chunks` in order to a fresh parser. Any exception other than RespProtocolError fails
 * the test; after every accepted chunk the buffered bytes must be within the bound.
 */
function parse(chunks: readonly Buffer[], parserLimits: RespParserLimits = limits): Outcome {
  const parser = new RespParser(parserLimits);
  const commands: Buffer[][] = [];
  // Arguments are views valid only while the handler runs: keep copies.
  const onCommand = (args: Buffer[]): void => void commands.push(args.map((arg) => Buffer.from(arg)));
  for (const chunk of chunks) {
    try {
      parser.feed(chunk, onCommand);
    } catch (error) {
      if (!(error instanceof RespProtocolError)) throw error;
      return { commands, error: error.message, bufferedBytes: parser.bufferedBytes() };
    }
    assert.ok(parser.bufferedBytes() <= bufferedBytesBound(parserLimits), `buffered ${parser.bufferedBytes()} bytes`);
  }
  return { commands, error: undefined, bufferedBytes: parser.bufferedBytes() };
}

/** `bytes` cut at the given offsets (sorted, duplicates give empty chunks). */
function cut(bytes: Buffer, offsets: readonly number[]): Buffer[] {
  const sorted = [...offsets].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const offset of sorted) {
    chunks.push(bytes.subarray(start, offset));
    start = offset;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

function oneByteAtATime(bytes: Buffer): Buffer[] {
  return Array.from({ length: bytes.length }, (_, index) => bytes.subarray(index, index + 1));
}

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

// ---------------------------------------------------------------------------------------------
// Generators.

/** Binary arguments, often made of the bytes that matter to the protocol. */
const argumentArbitrary = fc.oneof(
  fc.uint8Array({ maxLength: limits.bulkBytesMax }),
  fc.array(fc.constantFrom(13, 10, 0x2a, 0x24, 0x2d, 0x20, 0x22, 0x30), { maxLength: 12 }).map((values) => Uint8Array.from(values)),
  fc.constant(new Uint8Array(0)),
).map((array) => Buffer.from(array));

const wordArbitrary = fc.string({ unit: fc.constantFrom(...'abcXYZ019_-:'.split('')), minLength: 1, maxLength: 10 });

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.array(argumentArbitrary, { minLength: 1, maxLength: limits.argumentsMax }).map((args): Command => ({ kind: 'array', args })) },
  { weight: 1, arbitrary: fc.record({ words: fc.array(wordArbitrary, { minLength: 1, maxLength: limits.argumentsMax }), lf: fc.boolean() }).map((fields): Command => ({ kind: 'inline', ...fields })) },
);

const streamArbitrary = fc.array(commandArbitrary, { minLength: 1, maxLength: 12 });

/** Cut points for `length` bytes: 0..20 offsets anywhere in [0, length]. */
function cutsArbitrary(length: number): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: length }), { maxLength: 20 });
}

/** A fixed stream that holds every awkward case at once, for exhaustive splitting. */
const fixedSample: Command[] = [
  { kind: 'array', args: [bytes('SET'), bytes('key\r\n'), bytes('\r\nva\rl\nue\r\n')] },
  { kind: 'array', args: [bytes('SET'), bytes(''), bytes('')] },
  { kind: 'inline', words: ['PING'], lf: false },
  { kind: 'array', args: [bytes('ECHO'), Buffer.from([0, 255, 13, 10, 0x2a, 0x24, 13])] },
  { kind: 'inline', words: ['MGET', 'a', 'b', 'c'], lf: true },
  { kind: 'array', args: [bytes('MSET'), bytes('*1'), bytes('$3'), bytes('x'.repeat(40)), bytes('-1'), bytes('\n'), bytes('\r'), bytes('0')] },
];

// ---------------------------------------------------------------------------------------------

describe('resp parser: valid streams', () => {
  const stream = Buffer.concat(fixedSample.map(encode));
  const expected = fixedSample.map(expectedArgs);

  it('resp parser: fixed stream in one chunk', () => {
    assert.deepEqual(parse([stream]), { commands: expected, error: undefined, bufferedBytes: 0 });
  });

  it('resp parser: fixed stream split into 2 pieces at every byte boundary', () => {
    for (let offset = 0; offset <= stream.length; offset++) {
      assert.deepEqual(parse(cut(stream, [offset])), { commands: expected, error: undefined, bufferedBytes: 0 }, `split at ${offset}`);
    }
  });

  it('resp parser: fixed stream split into 3 pieces at every pair of byte boundaries', () => {
    for (let first = 0; first <= stream.length; first++) {
      for (let second = first; second <= stream.length; second++) {
        const outcome = parse(cut(stream, [first, second]));
        assert.deepEqual(outcome.commands, expected, `split at ${first}, ${second}`);
      }
    }
  });

  it('resp parser: fixed stream fed 1 byte at a time', () => {
    assert.deepEqual(parse(oneByteAtATime(stream)), { commands: expected, error: undefined, bufferedBytes: 0 });
  });

  it('resp parser: random command streams, random multi-way splits (fast-check)', () => {
    fc.assert(
      fc.property(
        streamArbitrary.chain((commands) => {
          const encoded = Buffer.concat(commands.map(encode));
          return fc.tuple(fc.constant(commands), fc.constant(encoded), cutsArbitrary(encoded.length));
        }),
        ([commands, encoded, offsets]) => {
          const outcome = parse(cut(encoded, offsets));
          assert.deepEqual(outcome, { commands: commands.map(expectedArgs), error: undefined, bufferedBytes: 0 });
        },
      ),
      { numRuns: 500 },
    );
  });

  it('resp parser: random command streams fed 1 byte at a time (fast-check)', () => {
    fc.assert(
      fc.property(streamArbitrary, (commands) => {
        const outcome = parse(oneByteAtATime(Buffer.concat(commands.map(encode))));
        assert.deepEqual(outcome, { commands: commands.map(expectedArgs), error: undefined, bufferedBytes: 0 });
      }),
      { numRuns: 100 },
    );
  });

  it('resp parser: a prefix of a valid stream waits and buffers the unfinished command', () => {
    fc.assert(
      fc.property(
        streamArbitrary.chain((commands) => {
          const encoded = Buffer.concat(commands.map(encode));
          return fc.tuple(fc.constant(commands), fc.constant(encoded), fc.integer({ min: 0, max: encoded.length }));
        }),
        ([commands, encoded, length]) => {
          const outcome = parse([encoded.subarray(0, length)]);
          assert.equal(outcome.error, undefined);
          // Exactly the commands whose last byte arrived; what is held of the rest is bounded by it
          // (arguments already read are held as payload, their headers dropped).
          let end = 0;
          const complete = commands.filter((command) => (end += encode(command).length) <= length);
          assert.deepEqual(outcome.commands, complete.map(expectedArgs));
          assert.ok(outcome.bufferedBytes <= length - Buffer.concat(complete.map(encode)).length);
        },
      ),
      { numRuns: 300 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly byte: number }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'delete'; readonly at: number; readonly count: number }
  | { readonly kind: 'insert'; readonly at: number; readonly inserted: Uint8Array }
  | { readonly kind: 'length'; readonly nth: number; readonly length: string };

const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  // Deleting 1-2 bytes at a random place removes a CR, an LF, a '$' or a whole CRLF.
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 2 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), inserted: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({
    kind: fc.constant('length' as const),
    nth: fc.nat(),
    length: fc.oneof(
      fc.integer({ min: -3, max: limits.bulkBytesMax * 2 }).map(String),
      fc.constantFrom('99999999999999999999', '9'.repeat(40), '-9007199254740993', '', '-', '1a', ' 3', '0'.repeat(31) + '3', '0'.repeat(33) + '3'),
    ),
  }),
);

/** Applies `mutation` to `encoded`; "length" rewrites the digits after the nth '*' or '$'. */
function mutate(encoded: Buffer, mutation: Mutation): Buffer {
  const position = (at: number): number => at % (encoded.length + 1);
  switch (mutation.kind) {
    case 'flip': {
      const at = position(mutation.at);
      if (at >= encoded.length) return encoded;
      const copy = Buffer.from(encoded);
      copy[at] = mutation.byte;
      return copy;
    }
    case 'truncate':
      return encoded.subarray(0, position(mutation.at));
    case 'delete':
      return Buffer.concat([encoded.subarray(0, position(mutation.at)), encoded.subarray(position(mutation.at) + mutation.count)]);
    case 'insert':
      return Buffer.concat([encoded.subarray(0, position(mutation.at)), mutation.inserted, encoded.subarray(position(mutation.at))]);
    case 'length': {
      const markers = [...encoded.entries()].filter(([, byte]) => byte === 0x24 || byte === 0x2a).map(([index]) => index);
      if (markers.length === 0) return encoded;
      const marker = markers[mutation.nth % markers.length] as number;
      const lineEnd = encoded.indexOf(bytes('\r\n'), marker);
      if (lineEnd === -1) return encoded;
      return Buffer.concat([encoded.subarray(0, marker + 1), bytes(mutation.length), encoded.subarray(lineEnd)]);
    }
  }
}

/** Feeds `input` whole and cut at `offsets`: both must end the same way, within the bounds. */
function assertChunkingDoesNotMatter(input: Buffer, offsets: readonly number[]): Outcome {
  const whole = parse([input]);
  const chunked = parse(cut(input, offsets));
  assert.deepEqual(chunked.commands, whole.commands, 'commands differ between whole and chunked input');
  assert.equal(chunked.error, whole.error, 'error differs between whole and chunked input');
  return whole;
}

describe('resp parser: garbage', () => {
  it('resp parser: random bytes only parse, wait or throw RespProtocolError (fast-check)', { timeout: timeoutMs }, () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }).chain((array) => fc.tuple(fc.constant(Buffer.from(array)), cutsArbitrary(array.length))),
        ([input, offsets]) => void assertChunkingDoesNotMatter(input, offsets),
      ),
      { numRuns: 1000 },
    );
  });

  it('resp parser: random bytes that start like frames (fast-check)', { timeout: timeoutMs }, () => {
    // Pure noise rarely gets past the first header; this noise is made of protocol tokens.
    const token = fc.constantFrom('*', '$', '\r', '\n', '\r\n', '-', '0', '1', '3', '9', '12', 'a', ' ', '"', "'", '*2\r\n', '$3\r\n', 'abc');
    fc.assert(
      fc.property(
        fc.array(token, { maxLength: 120 }).chain((tokens) => {
          const input = bytes(tokens.join(''));
          return fc.tuple(fc.constant(input), cutsArbitrary(input.length));
        }),
        ([input, offsets]) => void assertChunkingDoesNotMatter(input, offsets),
      ),
      { numRuns: 2000 },
    );
  });

  it('resp parser: mutated valid frames (flipped, truncated, deleted, inserted bytes, bad lengths) (fast-check)', { timeout: timeoutMs }, () => {
    fc.assert(
      fc.property(
        fc.tuple(streamArbitrary, fc.array(mutationArbitrary, { minLength: 1, maxLength: 3 })).chain(([commands, mutations]) => {
          const input = mutations.reduce(mutate, Buffer.concat(commands.map(encode)));
          return fc.tuple(fc.constant(input), cutsArbitrary(input.length));
        }),
        ([input, offsets]) => void assertChunkingDoesNotMatter(input, offsets),
      ),
      { numRuns: 2000 },
    );
  });

  it('resp parser: mutated valid frames fed 1 byte at a time end as when fed whole (fast-check)', { timeout: timeoutMs }, () => {
    fc.assert(
      fc.property(fc.tuple(streamArbitrary, mutationArbitrary), ([commands, mutation]) => {
        const input = mutate(Buffer.concat(commands.map(encode)), mutation);
        const whole = parse([input]);
        const byteWise = parse(oneByteAtATime(input));
        assert.deepEqual({ commands: byteWise.commands, error: byteWise.error }, { commands: whole.commands, error: whole.error });
      }),
      { numRuns: 300 },
    );
  });

  it('resp parser: after an error the parser emitted only whole commands that came before it', () => {
    const valid = encode({ kind: 'array', args: [bytes('PING')] });
    const outcome = parse([Buffer.concat([valid, valid, bytes('*1\r\n$abc\r\n'), valid])]);
    assert.deepEqual(outcome.commands, [[bytes('PING')], [bytes('PING')]]);
    assert.match(outcome.error ?? '', /^Protocol error: invalid bulk count/);
  });
});

// ---------------------------------------------------------------------------------------------

function assertProtocolError(chunks: readonly Buffer[], pattern: RegExp, parserLimits: RespParserLimits = limits): Outcome {
  const outcome = parse(chunks, parserLimits);
  assert.ok(outcome.error !== undefined, 'expected a RespProtocolError');
  assert.match(outcome.error, pattern);
  return outcome;
}

describe('resp parser: explicit cases', () => {
  it('resp parser: a command whose arguments exceed commandBytesMax is a protocol error (limit 100 bytes)', () => {
    const parser = new RespParser({ bulkBytesMax: 64, argumentsMax: 8, inlineBytesMax: 256, commandBytesMax: 100 });
    const seen: Buffer[][] = [];
    parser.feed(Buffer.from(`*2\r\n$4\r\nMSET\r\n$50\r\n${'a'.repeat(50)}\r\n`), (args) => seen.push(args));
    assert.equal(seen.length, 1);
    assert.throws(
      () => parser.feed(Buffer.from(`*3\r\n$4\r\nMSET\r\n$50\r\n${'a'.repeat(50)}\r\n$50\r\n`), () => {}),
      (error: Error) => error instanceof RespProtocolError && /command larger than 100 bytes/.test(error.message),
    );
  });

  it('resp parser: a bulk over bulkBytesMax is an invalid bulk length, before its payload arrives', () => {
    const header = bytes(`*2\r\n$3\r\nGET\r\n$${limits.bulkBytesMax + 1}\r\n`);
    const outcome = assertProtocolError([header], /invalid bulk length/);
    assert.ok(outcome.bufferedBytes <= headerBytesMax * 3);
    assertProtocolError([bytes(`*1\r\n$${limits.bulkBytesMax + 1}\r\n${'x'.repeat(limits.bulkBytesMax + 1)}\r\n`)], /invalid bulk length/);
    // Exactly at the limit is fine.
    const atLimit = { kind: 'array', args: [Buffer.alloc(limits.bulkBytesMax, 0x61)] } as const;
    assert.deepEqual(parse([encode(atLimit)]).commands, [expectedArgs(atLimit)]);
  });

  it('resp parser: huge and negative bulk lengths are rejected', () => {
    assertProtocolError([bytes('*1\r\n$99999999999999999999999\r\n')], /invalid bulk length/);
    assertProtocolError([bytes('*1\r\n$-1\r\n')], /invalid bulk length -1/);
    assertProtocolError([bytes('*1\r\n$-5\r\nhello\r\n')], /invalid bulk length -5/);
    // Header lines are at most 32 bytes: a 33rd digit is an error even without the CRLF.
    assertProtocolError([bytes(`*1\r\n$${'1'.repeat(33)}`)], /invalid bulk count/);
    assertProtocolError([bytes(`*${'1'.repeat(33)}`)], /invalid multibulk count/);
  });

  it('resp parser: a 32-byte header line is accepted however it is split (regression)', () => {
    // Before the fix, '$' + 32 digits followed by a CR that ended a chunk threw "too big bulk
    // count string", while the same bytes in one chunk parsed.
    const input = bytes(`*1\r\n$${'0'.repeat(31)}4\r\nPING\r\n`);
    const crEnd = input.indexOf(bytes('4\r\n')) + 2;
    assert.deepEqual(parse([input]).commands, [[bytes('PING')]]);
    assert.deepEqual(parse(cut(input, [crEnd])).commands, [[bytes('PING')]]);
    assert.deepEqual(parse(oneByteAtATime(input)).commands, [[bytes('PING')]]);
  });

  it('resp parser: malformed frames (missing $, missing CRLF, bad digits)', () => {
    assertProtocolError([bytes('*1\r\n$abc\r\n')], /invalid bulk count/);
    assertProtocolError([bytes('*1\r\n+PING\r\n')], /expected '\$', got '\+'/);
    assertProtocolError([bytes('*1\r\n$4\r\nPINGxx')], /bulk string not terminated by CRLF/);
    assertProtocolError([bytes('*1\n$4\r\nPING\r\n')], /invalid multibulk count/);
    assertProtocolError([bytes('*1\r\n$4\rxPING\r\n')], /invalid bulk count/);
    assertProtocolError([bytes('*x\r\n')], /invalid multibulk count/);
    assertProtocolError([bytes('*\r\n')], /invalid multibulk count/);
    assertProtocolError([bytes('*1\r\n$\r\n')], /invalid bulk count/);
  });

  it('resp parser: too many arguments, in an array or inline', () => {
    assertProtocolError([bytes(`*${limits.argumentsMax + 1}\r\n`)], /invalid multibulk length/);
    assertProtocolError([bytes(`${'a '.repeat(limits.argumentsMax + 1)}\r\n`)], /invalid multibulk length/);
    const atLimit = { kind: 'inline', words: Array.from({ length: limits.argumentsMax }, () => 'a'), lf: false } as const;
    assert.deepEqual(parse([encode(atLimit)]).commands, [expectedArgs(atLimit)]);
  });

  it('resp parser: an inline line over inlineBytesMax is too big, with or without its LF (regression)', () => {
    const line = bytes(`ECHO ${'x'.repeat(limits.inlineBytesMax)}`);
    assertProtocolError([line], /too big inline request/);
    // Before the fix the complete line was accepted when its LF came in the same chunk.
    assertProtocolError([Buffer.concat([line, bytes('\r\n')])], /too big inline request/);
    assertProtocolError(oneByteAtATime(Buffer.concat([line, bytes('\r\n')])), /too big inline request/);
    const longest = bytes(`ECHO ${'x'.repeat(limits.inlineBytesMax - 6)}\r\n`);
    assert.equal(parse([longest]).commands.length, 1);
  });

  it("resp parser: '*0' and '*-1' produce no command", () => {
    const outcome = parse([bytes('*0\r\n*-1\r\n*-7\r\n*1\r\n$4\r\nPING\r\n')]);
    assert.deepEqual(outcome, { commands: [[bytes('PING')]], error: undefined, bufferedBytes: 0 });
    assert.deepEqual(parse(oneByteAtATime(bytes('*0\r\n*-1\r\n'))), { commands: [], error: undefined, bufferedBytes: 0 });
  });

  it('resp parser: inline commands with quotes, tabs, repeated spaces, bare LF and empty lines', () => {
    const outcome = parse([bytes(`SET "hello world" 'it is'\r\n\r\n\n  GET\t\tkey  \nECHO ""\r\n`)]);
    assert.deepEqual(outcome.commands, [[bytes('SET'), bytes('hello world'), bytes('it is')], [bytes('GET'), bytes('key')], [bytes('ECHO'), bytes('')]]);
    assertProtocolError([bytes('SET "unbalanced\r\n')], /unbalanced quotes/);
  });

  it('resp parser: a partial frame waits; the rest completes it', () => {
    const parser = new RespParser(limits);
    const seen: string[][] = [];
    const onCommand = (args: Buffer[]): void => void seen.push(args.map((arg) => arg.toString('latin1')));
    parser.feed(bytes('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva'), onCommand);
    assert.deepEqual(seen, []);
    assert.ok(parser.bufferedBytes() > 0);
    parser.feed(bytes('lue\r\n*1\r\n$4\r\nPI'), onCommand);
    assert.deepEqual(seen, [['SET', 'k', 'value']]);
    parser.feed(bytes('NG\r\n'), onCommand);
    assert.deepEqual(seen, [['SET', 'k', 'value'], ['PING']]);
    assert.equal(parser.bufferedBytes(), 0);
  });

  it('resp parser: a 1 MiB value in 1 KiB chunks is assembled once (no quadratic copying)', () => {
    const valueBytes = 1024 * 1024;
    const value = Buffer.alloc(valueBytes, 0x76);
    value[valueBytes - 1] = 13;
    const input = encode({ kind: 'array', args: [bytes('SET'), bytes('big'), value] });
    const parser = new RespParser({ bulkBytesMax: 2 * valueBytes, argumentsMax: 8, inlineBytesMax: 256 });
    const seen: Buffer[][] = [];
    const concat = mock.method(Buffer, 'concat');
    try {
      for (let offset = 0; offset < input.length; offset += 1024) {
        parser.feed(input.subarray(offset, offset + 1024), (args) => void seen.push(args.map((arg) => Buffer.from(arg))));
      }
    } finally {
      concat.mock.restore();
    }
    assert.equal(seen.length, 1);
    assert.ok(seen[0]?.[2]?.equals(value));
    // Until the bulk header has arrived every chunk may be joined; after it, one join of the whole.
    const copiedBytes = concat.mock.calls.reduce((sum, call) => sum + (call.result?.length ?? 0), 0);
    assert.ok(copiedBytes <= input.length + 4 * 1024, `copied ${copiedBytes} bytes to assemble ${input.length}`);
    assert.ok(concat.mock.callCount() <= 3, `${concat.mock.callCount()} joins`);
  });

  it(
    'resp parser: a command of many small arguments in small chunks is assembled in linear time',
    () => {
      const argumentCount = 2000;
      const parts = [bytes(`*${argumentCount + 1}\r\n$4\r\nMSET\r\n`)];
      for (let index = 0; index < argumentCount; index++) parts.push(bytes(`$50\r\n${'v'.repeat(50)}\r\n`));
      const input = Buffer.concat(parts);
      const parser = new RespParser({ bulkBytesMax: 1024, argumentsMax: argumentCount + 1, inlineBytesMax: 256 });
      let commandCount = 0;
      const concat = mock.method(Buffer, 'concat');
      try {
        for (let offset = 0; offset < input.length; offset += 1024) parser.feed(input.subarray(offset, offset + 1024), () => void commandCount++);
      } finally {
        concat.mock.restore();
      }
      assert.equal(commandCount, 1);
      const copiedBytes = concat.mock.calls.reduce((sum, call) => sum + (call.result?.length ?? 0), 0);
      assert.ok(copiedBytes <= 2 * input.length, `copied ${copiedBytes} bytes to assemble ${input.length}`);
    },
  );

  it('resp parser: arguments of one command stay valid while the handler runs', () => {
    const parser = new RespParser(limits);
    const input = encode({ kind: 'array', args: [bytes('MSET'), bytes('a'), bytes('1'), bytes('b'), bytes('2')] });
    let seen: string[] = [];
    for (const chunk of cut(input, [7, 19, 30])) parser.feed(chunk, (args) => (seen = args.map((arg) => arg.toString('latin1'))));
    assert.deepEqual(seen, ['MSET', 'a', '1', 'b', '2']);
  });

  it('resp parser: rejects non-positive limits', () => {
    assert.throws(() => new RespParser({ ...limits, bulkBytesMax: 0 }), /limits must be positive/);
  });
});
