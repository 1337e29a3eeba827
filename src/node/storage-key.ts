import { Buffer } from 'node:buffer';
import { assert } from '../core/assert.js';
import { keyTokenPrefix, partitionTokenPrefixes, tokenPrefixBits } from '../core/token.js';

/**
 * How (namespace, key) maps to an engine key (DESIGN.md, "Storage engine": keys are ordered by
 * partition, namespace, key):
 *
 *   engine key = token prefix (2 bytes, big-endian) | namespace length (1 byte) | namespace | key
 *
 * The token prefix is the top 16 bits of the key's ring token, so every partition — for any
 * partition count Q up to 2^16, the cluster's Q being fixed only when it forms — is one
 * contiguous range of engine keys: a partition is scanned, streamed, hashed or dropped as one
 * range (`partitionRange`). Inside a prefix, keys sort by namespace then key bytes.
 *
 * The cost: a namespace is no longer contiguous, so listing a namespace's keys walks the engine
 * and skips other namespaces' entries, and keys come out in this engine order (`compareKeys`),
 * not in byte order. This module is the one place that knows the layout.
 */

export const tokenPrefixBytes = tokenPrefixBits / 8;

export function storageKey(namespace: string, key: Uint8Array): Buffer {
  // Namespaces are validated ASCII ([A-Za-z0-9_.-]), one byte per character.
  const namespaceBytes = namespace.length;
  assert(namespaceBytes > 0 && namespaceBytes < 256, 'namespace must be 1-255 bytes');
  const prefix = keyTokenPrefix(namespace, key);
  const out = Buffer.allocUnsafe(tokenPrefixBytes + 1 + namespaceBytes + key.length);
  out[0] = prefix >>> 8;
  out[1] = prefix & 0xff;
  out[2] = namespaceBytes;
  for (let index = 0; index < namespaceBytes; index++) out[3 + index] = namespace.charCodeAt(index);
  out.set(key, 3 + namespaceBytes);
  return out;
}

/** The namespace and key inside an engine key made by storageKey; undefined for anything else. */
export function parseStorageKey(engineKey: Uint8Array): { readonly namespace: string; readonly key: Uint8Array } | undefined {
  const namespaceBytes = engineKey[tokenPrefixBytes];
  if (namespaceBytes === undefined || namespaceBytes === 0 || engineKey.length < tokenPrefixBytes + 1 + namespaceBytes) return undefined;
  const start = tokenPrefixBytes + 1;
  const namespace = Buffer.from(engineKey.buffer, engineKey.byteOffset + start, namespaceBytes).toString('latin1');
  return { namespace, key: engineKey.subarray(start + namespaceBytes) };
}

/** The engine key range [gte, lt) holding every key of one partition (lt absent: to the end). */
export function partitionRange(partition: number, partitionCount: number): { gte: Buffer; lt?: Buffer } {
  const { first, end } = partitionTokenPrefixes(partition, partitionCount);
  const gte = Buffer.of(first >>> 8, first & 0xff);
  if (end >= 1 << tokenPrefixBits) return { gte };
  return { gte, lt: Buffer.of(end >>> 8, end & 0xff) };
}

/** The order keys of one namespace are listed in: the order of their engine keys. */
export function compareKeys(namespace: string, left: Uint8Array, right: Uint8Array): number {
  return Buffer.compare(storageKey(namespace, left), storageKey(namespace, right));
}
