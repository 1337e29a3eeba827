import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FrameDecoder, encodeFrame, frameHeaderBytes } from './frame-codec.js';

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((sum, part) => sum + part.byteLength, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.byteLength;
  }
  return joined;
}

/** Feeds `stream` to a fresh decoder cut at `cuts`; returns copies of the frames, or the failure code. */
function decodeSplit(stream: Uint8Array, cuts: readonly number[], frameBytesMax: number): Uint8Array[] | string {
  const decoder = new FrameDecoder(frameBytesMax);
  const frames: Uint8Array[] = [];
  const bounds = [0, ...[...new Set(cuts)].sort((left, right) => left - right), stream.byteLength];
  for (let index = 0; index + 1 < bounds.length; index++) {
    // A copy per chunk, as a socket delivers: frames must not depend on the caller's buffer.
    const result = decoder.push(stream.slice(bounds[index], bounds[index + 1]));
    if (!result.ok) return result.code;
    frames.push(...result.frames.map((frame) => frame.slice()));
  }
  assert.ok(decoder.bufferedBytes <= frameHeaderBytes + frameBytesMax);
  return frames;
}

describe('frame codec', () => {
  const payloadArbitrary = fc.oneof(
    { weight: 5, arbitrary: fc.uint8Array({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 5000 }) },
  );

  it('frame codec: split: random frames cut at random points decode identically', () => {
    fc.assert(
      fc.property(
        fc.array(payloadArbitrary, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (payloads, rawCuts) => {
          const stream = concat(payloads.map(encodeFrame));
          const cuts = rawCuts.map((cut) => (stream.byteLength === 0 ? 0 : cut % (stream.byteLength + 1)));
          assert.deepEqual(decodeSplit(stream, cuts, 8192), payloads);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('frame codec: split: one byte at a time, including empty frames', () => {
    const payloads = [new Uint8Array(0), Uint8Array.of(1), new Uint8Array(0), Uint8Array.from({ length: 300 }, (_unused, index) => index % 256)];
    const stream = concat(payloads.map(encodeFrame));
    const everyByte = Array.from({ length: stream.byteLength }, (_unused, index) => index);
    assert.deepEqual(decodeSplit(stream, everyByte, 1024), payloads);
  });

  it('frame codec: header: the length is a big-endian u32 before the payload', () => {
    assert.deepEqual([...encodeFrame(Uint8Array.of(7, 8, 9))], [0, 0, 0, 3, 7, 8, 9]);
    assert.deepEqual([...encodeFrame(new Uint8Array(0x1_02_03))].slice(0, 4), [0, 1, 2, 3]);
  });

  it('frame codec: limit: a frame of frameBytesMax passes, one byte more fails the decoder for good', () => {
    assert.deepEqual(decodeSplit(encodeFrame(new Uint8Array(100)), [2, 50], 100), [new Uint8Array(100)]);
    assert.equal(decodeSplit(encodeFrame(new Uint8Array(101)), [2], 100), 'FRAME_TOO_LARGE');
    const decoder = new FrameDecoder(100);
    const first = decoder.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    assert.equal(first.ok, false);
    assert.equal(decoder.push(encodeFrame(Uint8Array.of(1))).ok, false, 'a stream that lost framing stays failed');
  });

  it('frame codec: copies: a frame assembled across chunks does not alias any chunk', () => {
    const decoder = new FrameDecoder(1024);
    const frame = encodeFrame(Uint8Array.of(1, 2, 3, 4));
    const head = frame.slice(0, 6);
    const tail = frame.slice(6);
    assert.deepEqual(decoder.push(head), { ok: true, frames: [] });
    const result = decoder.push(tail);
    assert.ok(result.ok);
    head.fill(0);
    tail.fill(0);
    assert.deepEqual([...result.frames[0]!], [1, 2, 3, 4]);
    assert.equal(decoder.bufferedBytes, 0);
  });
});
