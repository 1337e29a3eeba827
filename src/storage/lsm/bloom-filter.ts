import { xxh64 } from '../../core/xxhash.js';
import { assert } from '../../core/assert.js';

/**
 * A whole-table bloom filter (Bloom 1970) with double hashing (Kirsch & Mitzenmacher, "Less
 * Hashing, Same Performance", 2006): one xxh64 per key gives h1 (low 32 bits) and h2 (high 32
 * bits), and probe i sets bit (h1 + i * h2) mod m. With b bits per key and k = round(b ln 2)
 * probes the false-positive rate is about 0.6185^b: 10 bits/key gives about 1%.
 *
 *   filter := bits[m / 8] probe_count:u8          (bit j is bits[j >> 3] >> (j & 7) & 1)
 */

export const bloomBitsPerKeyMax = 32;
const probesMax = 30;
/** A filter never has fewer bits than this, so tiny tables still have a useful rate. */
const bitsMin = 64;

// xxh64 returns a bigint; reading it through a typed-array view avoids BigInt arithmetic.
const hashWords = new BigUint64Array(1);
const hashHalves = new Uint32Array(hashWords.buffer);

/** The two 32-bit halves of xxh64(key), as [h1, h2] written into `into`. */
function keyHash(key: Uint8Array, into: Uint32Array, at: number): void {
  hashWords[0] = xxh64(key);
  into[at] = hashHalves[0] as number;
  into[at + 1] = hashHalves[1] as number;
}

/**
 * The hash a key is looked up by in every filter ([h1, h2]): a point read computes it once and
 * asks each table with it (`mayContainHashed`), rather than hashing the key again per table.
 */
export function bloomKeyHash(key: Uint8Array): Uint32Array {
  const hash = new Uint32Array(2);
  keyHash(key, hash, 0);
  return hash;
}

export function bloomProbes(bitsPerKey: number): number {
  return Math.min(probesMax, Math.max(1, Math.round(bitsPerKey * Math.LN2)));
}

/** Collects key hashes while a table is written, then builds a filter sized for them. */
export class BloomFilterBuilder {
  private hashes = new Uint32Array(2 * 1024);
  private count = 0;

  constructor(private readonly bitsPerKey: number) {
    assert(bitsPerKey >= 1 && bitsPerKey <= bloomBitsPerKeyMax, () => `bloom bits per key out of range: ${bitsPerKey}`);
  }

  add(key: Uint8Array): void {
    if (2 * this.count + 2 > this.hashes.length) {
      const grown = new Uint32Array(this.hashes.length * 2);
      grown.set(this.hashes);
      this.hashes = grown;
    }
    keyHash(key, this.hashes, 2 * this.count);
    this.count++;
  }

  get keys(): number {
    return this.count;
  }

  /** The encoded filter (see the grammar above). */
  finish(): Uint8Array {
    const bitsWanted = Math.max(bitsMin, Math.ceil(this.count * this.bitsPerKey));
    const bytes = Math.ceil(bitsWanted / 8);
    const bits = bytes * 8;
    assert(bits <= 0xffff_ffff, 'bloom filter above 2^32 bits: split the table');
    const probes = bloomProbes(this.bitsPerKey);
    const encoded = new Uint8Array(bytes + 1);
    encoded[bytes] = probes;
    for (let index = 0; index < this.count; index++) {
      let position = (this.hashes[2 * index] as number) % bits;
      const step = (this.hashes[2 * index + 1] as number) % bits;
      for (let probe = 0; probe < probes; probe++) {
        encoded[position >>> 3]! |= 1 << (position & 7);
        position += step;
        if (position >= bits) position -= bits;
      }
    }
    return encoded;
  }
}

/** A decoded filter: answers "maybe present" or "certainly absent". */
export class BloomFilter {
  private readonly bits: number;
  private readonly probes: number;
  private readonly scratch = new Uint32Array(2);

  /** `encoded` must have passed its block checksum; it is kept, not copied. */
  private constructor(private readonly encoded: Uint8Array) {
    this.bits = (encoded.length - 1) * 8;
    this.probes = encoded[encoded.length - 1] as number;
  }

  /** Undefined when the bytes cannot be a filter (the caller reports corruption). */
  static decode(encoded: Uint8Array): BloomFilter | undefined {
    if (encoded.length < 2) return undefined;
    const probes = encoded[encoded.length - 1] as number;
    if (probes < 1 || probes > probesMax) return undefined;
    return new BloomFilter(encoded);
  }

  mayContain(key: Uint8Array): boolean {
    keyHash(key, this.scratch, 0);
    return this.mayContainHashed(this.scratch);
  }

  /** mayContain for the key whose bloomKeyHash is `hash`. */
  mayContainHashed(hash: Uint32Array): boolean {
    let position = (hash[0] as number) % this.bits;
    const step = (hash[1] as number) % this.bits;
    for (let probe = 0; probe < this.probes; probe++) {
      if (((this.encoded[position >>> 3] as number) & (1 << (position & 7))) === 0) return false;
      position += step;
      if (position >= this.bits) position -= this.bits;
    }
    return true;
  }

  get sizeBytes(): number {
    return this.encoded.length;
  }
}
