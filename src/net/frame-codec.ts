import { Buffer } from 'node:buffer';
import { assert } from '../core/assert.js';

/**
 * Length-prefixed frames on a byte stream (the TCP peer protocol's outer layer):
 *
 *   stream  = frame*
 *   frame   = length payload
 *   length  = u32, big-endian: the payload's byte count, 0 <= length <= frameBytesMax
 *   payload = length bytes (a MessagePack value; see tcp-messenger.ts)
 *
 * The writer is `encodeFrame`; the reader is `FrameDecoder`, fed chunks as they arrive, split
 * anywhere (inside the length, inside the payload, several frames per chunk).
 */

export const frameHeaderBytes = 4;
/** The largest length a u32 header can carry; frameBytesMax may not exceed it. */
export const frameBytesLimit = 0xffff_ffff;
export const frameBytesMaxDefault = 16 * 1024 * 1024;

/** Writes the frame for `payload` into a new buffer: header, then a copy of the payload. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  assert(payload.byteLength <= frameBytesLimit, () => `a frame payload is at most ${frameBytesLimit} bytes`);
  const frame = Buffer.allocUnsafe(frameHeaderBytes + payload.byteLength);
  frame.writeUInt32BE(payload.byteLength, 0);
  frame.set(payload, frameHeaderBytes);
  return frame;
}

export interface FrameTooLarge {
  readonly ok: false;
  readonly code: 'FRAME_TOO_LARGE';
  readonly message: string;
}

export type FrameDecodeResult = { readonly ok: true; readonly frames: Uint8Array[] } | FrameTooLarge;

/**
 * Incremental frame reader. `push` returns the payloads completed by a chunk, in order. A
 * payload that lies whole inside one chunk is a view into that chunk (no copy); one split across
 * chunks is assembled into a fresh buffer, so no returned payload is ever overwritten later.
 * A header announcing more than frameBytesMax fails the decoder for good: the stream has lost
 * framing and its connection must be closed.
 */
export class FrameDecoder {
  private readonly header = new Uint8Array(frameHeaderBytes);
  private headerFilled = 0;
  /** The payload being assembled across chunks, or undefined between frames. */
  private body: Uint8Array | undefined;
  private bodyFilled = 0;
  private failure: FrameTooLarge | undefined;

  constructor(private readonly frameBytesMax: number = frameBytesMaxDefault) {
    assert(Number.isSafeInteger(frameBytesMax) && frameBytesMax >= 0 && frameBytesMax <= frameBytesLimit, () => `frameBytesMax must be in [0, ${frameBytesLimit}], got ${frameBytesMax}`);
  }

  /** Bytes held for an incomplete frame (bounded by frameHeaderBytes + frameBytesMax). */
  get bufferedBytes(): number {
    return this.headerFilled + this.bodyFilled;
  }

  push(chunk: Uint8Array): FrameDecodeResult {
    if (this.failure !== undefined) return this.failure;
    const frames: Uint8Array[] = [];
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.body !== undefined) {
        offset = this.fillBody(chunk, offset, frames);
        continue;
      }
      let length: number;
      if (this.headerFilled === 0 && chunk.byteLength - offset >= frameHeaderBytes) {
        length = readUint32(chunk, offset);
        offset += frameHeaderBytes;
      } else {
        const take = Math.min(frameHeaderBytes - this.headerFilled, chunk.byteLength - offset);
        this.header.set(chunk.subarray(offset, offset + take), this.headerFilled);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled < frameHeaderBytes) break;
        this.headerFilled = 0;
        length = readUint32(this.header, 0);
      }
      if (length > this.frameBytesMax) {
        this.failure = { ok: false, code: 'FRAME_TOO_LARGE', message: `frame of ${length} bytes is over frameBytesMax ${this.frameBytesMax}` };
        return this.failure;
      }
      if (chunk.byteLength - offset >= length) {
        frames.push(chunk.subarray(offset, offset + length));
        offset += length;
      } else {
        this.body = new Uint8Array(length);
        this.bodyFilled = 0;
      }
    }
    return { ok: true, frames };
  }

  private fillBody(chunk: Uint8Array, offset: number, frames: Uint8Array[]): number {
    const body = this.body;
    assert(body !== undefined, 'fillBody needs a body in progress');
    const take = Math.min(body.byteLength - this.bodyFilled, chunk.byteLength - offset);
    body.set(chunk.subarray(offset, offset + take), this.bodyFilled);
    this.bodyFilled += take;
    if (this.bodyFilled === body.byteLength) {
      frames.push(body);
      this.body = undefined;
      this.bodyFilled = 0;
    }
    return offset + take;
  }
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return ((bytes[offset]! << 24) >>> 0) + (bytes[offset + 1]! << 16) + (bytes[offset + 2]! << 8) + bytes[offset + 3]!;
}
