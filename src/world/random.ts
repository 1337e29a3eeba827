import { randomBytes } from 'node:crypto';
import { SeededRandom, type Random } from '../core/random.js';

/** A seed from the operating system's entropy, for a real node. */
export function entropySeed(): number {
  return randomBytes(6).readUIntBE(0, 6);
}

/** The Random of a real node: seeded from the configuration when given, else from entropy. */
export function createRandom(seed?: number): Random {
  return new SeededRandom(seed ?? entropySeed());
}
