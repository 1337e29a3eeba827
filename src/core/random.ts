import { assert } from './assert.js';

/**
 * A source of randomness. The core never reads Math.random: it is handed a Random, seeded from
 * the run's seed in the simulator and from the operating system's entropy on a real node.
 */
export interface Random {
  /** A uniformly distributed integer in [0, 2^32). */
  nextUint32(): number;
  /** A uniformly distributed float in [0, 1). */
  nextFloat(): number;
  /** A uniformly distributed integer in [0, bound). */
  nextInt(bound: number): number;
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counter): 128 bits of state, passes PractRand, and is
 * a few lines of 32-bit arithmetic, so the same seed gives the same stream on every platform.
 */
export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    assert(Number.isSafeInteger(seed), () => `seed must be a safe integer, got ${seed}`);
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = (seed >>> 0) ^ Math.floor(seed / 0x1_0000_0000);
    for (let round = 0; round < 15; round++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  nextFloat(): number {
    return this.nextUint32() / 0x1_0000_0000;
  }

  nextInt(bound: number): number {
    assert(Number.isInteger(bound) && bound > 0 && bound <= 0x1_0000_0000, () => `bound out of range: ${bound}`);
    return Math.floor(this.nextFloat() * bound);
  }
}

/** `length` random characters from [0-9a-z]. */
export function randomId(random: Random, length: number): string {
  assert(length > 0, 'length must be positive');
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  let id = '';
  for (let index = 0; index < length; index++) id += alphabet[random.nextInt(alphabet.length)];
  return id;
}
