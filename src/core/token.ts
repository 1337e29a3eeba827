import { xxh64 } from './xxhash.js';
import { assert } from './assert.js';
import { isValidPartitionCount } from './ring-state.js';

/**
 * Keys to tokens to partitions (Dynamo §4.2, partitioning strategy 3 of §6.2, as Riak's chash).
 *
 * A key — a namespace and the key's bytes — hashes to a 64-bit token with xxHash64 (seed 0).
 * The token space [0, 2^64) is cut into Q equal, contiguous ranges, Q a power of two, so the
 * partition of a token is its top log2(Q) bits: partition p covers
 * [p * 2^64/Q, (p+1) * 2^64/Q). Changing ownership never rehashes a key; it moves partitions.
 *
 * The seed and the encoding are part of the on-disk and on-the-wire contract: every node must
 * map a key to the same partition forever, so neither may ever change.
 */

export const tokenSeed = 0n;
export const tokenBits = 64;
const tokenLimit = 1n << 64n;

/**
 * Namespaces are short names (errors.ts: namespaceInvalid); the 4-byte length prefix would
 * allow more, this bound keeps the scratch buffer small.
 */
export const namespaceBytesMax = 0xffff;

const encoder = new TextEncoder();
// One reused buffer instead of an allocation per key: the encoding is written and hashed in the
// same synchronous call, so no caller ever observes it (the module stays deterministic).
let scratch = new Uint8Array(256);

/**
 * The unambiguous byte string that is hashed: a 4-byte big-endian length of the namespace's
 * UTF-8 bytes, the namespace, then the key. Without the length prefix ("ab","c") and ("a","bc")
 * would collide on every node. Returns the number of bytes written to `scratch`.
 */
function encodeKey(namespace: string, key: Uint8Array): number {
  const prefix = namespacePrefix(namespace);
  const needed = prefix.length + key.length;
  if (scratch.length < needed) scratch = new Uint8Array(Math.max(needed, scratch.length * 2));
  scratch.set(prefix, 0);
  scratch.set(key, prefix.length);
  return needed;
}

/**
 * The length prefix and UTF-8 bytes of a namespace, encoded once: a node serves a handful of
 * namespaces, and encoding the name on every key was about half of the cost of a key's
 * partition (see keyPartition). Bounded: past `namespacePrefixesMax` names it starts over.
 */
const namespacePrefixes = new Map<string, Uint8Array>();
const namespacePrefixesMax = 256;

function namespacePrefix(namespace: string): Uint8Array {
  const known = namespacePrefixes.get(namespace);
  if (known !== undefined) return known;
  const name = encoder.encode(namespace);
  assert(name.length <= namespaceBytesMax, () => `namespace longer than ${namespaceBytesMax} bytes`);
  const prefix = new Uint8Array(4 + name.length);
  prefix[2] = name.length >>> 8;
  prefix[3] = name.length & 0xff;
  prefix.set(name, 4);
  if (namespacePrefixes.size >= namespacePrefixesMax) namespacePrefixes.clear();
  namespacePrefixes.set(namespace, prefix);
  return prefix;
}

function hashKey(namespace: string, key: Uint8Array): bigint {
  const length = encodeKey(namespace, key);
  return xxh64(scratch.subarray(0, length), tokenSeed);
}

/** The 64-bit token of a key, an integer in [0, 2^64). */
export function keyToken(namespace: string, key: Uint8Array): bigint {
  const token = hashKey(namespace, key);
  assert(token >= 0n && token < tokenLimit, 'xxh64 returned a token outside [0, 2^64)');
  return token;
}

function partitionBits(partitionCount: number): number {
  assert(isValidPartitionCount(partitionCount), () => `invalid partition count ${partitionCount}`);
  return 31 - Math.clz32(partitionCount);
}

/** The partition holding a token: its top log2(Q) bits, so it is monotone in the token. */
export function partitionOf(token: bigint, partitionCount: number): number {
  assert(token >= 0n && token < tokenLimit, 'token must be in [0, 2^64)');
  const bits = partitionBits(partitionCount);
  return Number(token >> BigInt(tokenBits - bits));
}

/**
 * The first token of a partition; partition p covers [partitionStart(p), partitionStart(p + 1)).
 * Streaming and anti-entropy use it to scan one partition as one range.
 */
export function partitionStart(partition: number, partitionCount: number): bigint {
  const bits = partitionBits(partitionCount);
  assert(Number.isInteger(partition) && partition >= 0 && partition <= partitionCount, 'partition out of range');
  return BigInt(partition) << BigInt(tokenBits - bits);
}

/**
 * The hot path: the partition of a key, equal to partitionOf(keyToken(...)). Q ≤ 4096 needs at
 * most 12 bits, so one BigInt shift takes the high 32 bits of the hash and the rest is 32-bit
 * integer arithmetic. Measured by token.test.ts ("token: cost"), for
 * 16-byte keys on the development machine: xxh64 alone ~100 ns, keyPartition ~170 ns (the rest
 * is the copy of prefix and key), partitionOf(keyToken(...)) ~200 ns; the BigInt shift and
 * conversion cost a few tens of ns, the call into WebAssembly and the copies dominate.
 */
export function keyPartition(namespace: string, key: Uint8Array, partitionCount: number): number {
  const bits = partitionBits(partitionCount);
  const high32 = Number(hashKey(namespace, key) >> 32n);
  return high32 >>> (32 - bits);
}

/** Bits of a token that storage keys lead with (src/node/storage-key.ts): enough for Q up to 2^16. */
export const tokenPrefixBits = 16;

/** The top `tokenPrefixBits` bits of a key's token: every partition, for any valid Q, is a contiguous range of them. */
export function keyTokenPrefix(namespace: string, key: Uint8Array): number {
  return Number(hashKey(namespace, key) >> BigInt(tokenBits - tokenPrefixBits));
}

/** The partition a token prefix lies in (the inverse of partitionTokenPrefixes). */
export function prefixPartition(prefix: number, partitionCount: number): number {
  assert(Number.isInteger(prefix) && prefix >= 0 && prefix < 1 << tokenPrefixBits, 'token prefix out of range');
  return prefix >>> (tokenPrefixBits - partitionBits(partitionCount));
}

/** The token prefixes of a partition: [first, end). */
export function partitionTokenPrefixes(partition: number, partitionCount: number): { first: number; end: number } {
  const bits = partitionBits(partitionCount);
  assert(Number.isInteger(partition) && partition >= 0 && partition < partitionCount, 'partition out of range');
  const width = 1 << (tokenPrefixBits - bits);
  return { first: partition * width, end: (partition + 1) * width };
}
