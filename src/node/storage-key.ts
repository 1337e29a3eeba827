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

/** The token prefix an engine key made by storageKey leads with. */
export function engineKeyTokenPrefix(engineKey: Uint8Array): number {
  return ((engineKey[0] as number) << 8) | (engineKey[1] as number);
}

/** The namespace and key inside an engine key made by storageKey; undefined for anything else. */
export function parseStorageKey(engineKey: Uint8Array): { readonly namespace: string; readonly key: Uint8Array } | undefined {
  const namespaceBytes = engineKey[tokenPrefixBytes];
  if (namespaceBytes === undefined || namespaceBytes === 0 || engineKey.length < tokenPrefixBytes + 1 + namespaceBytes) return undefined;
  const start = tokenPrefixBytes + 1;
  const namespace = Buffer.from(engineKey.buffer, engineKey.byteOffset + start, namespaceBytes).toString('latin1');
  return { namespace, key: engineKey.subarray(start + namespaceBytes) };
}

/**
 * The engine key range [gte, lt) holding every key of one partition (lt absent: to the end).
 * The first partition starts after the node's own records (`metaPrefix`).
 */
export function partitionRange(partition: number, partitionCount: number): { gte: Buffer; lt?: Buffer } {
  const { first, end } = partitionTokenPrefixes(partition, partitionCount);
  const gte = first === 0 ? Buffer.of(0, 0, 1) : Buffer.of(first >>> 8, first & 0xff);
  if (end >= 1 << tokenPrefixBits) return { gte };
  return { gte, lt: Buffer.of(end >>> 8, end & 0xff) };
}

/** The order keys of one namespace are listed in: the order of their engine keys. */
export function compareKeys(namespace: string, left: Uint8Array, right: Uint8Array): number {
  return Buffer.compare(storageKey(namespace, left), storageKey(namespace, right));
}

/**
 * The node's own records share the engine with the stored objects, so that a record and the
 * object it is about are written in one atomic batch. They start with a token prefix of 0 and a
 * namespace length of 0, which no storage key has, so they sort before every partition and no
 * partition range or namespace listing meets them:
 *
 *   hint = 00 00 00 | 'h' | target length (1 byte) | target node id | engine key of the object
 */
const metaPrefix = Buffer.of(0, 0, 0);
const hintKind = 0x68; // 'h'

/** The hint marker of an object this node holds for `target` (hinted handoff, src/node/hinted-handoff.ts). */
export function hintKey(target: string, engineKey: Uint8Array): Buffer {
  assert(target.length > 0 && target.length < 256 && /^[\x21-\x7e]+$/.test(target), 'hint target must be a printable node id of 1-255 bytes');
  return Buffer.concat([metaPrefix, Buffer.of(hintKind, target.length), Buffer.from(target, 'latin1'), engineKey]);
}

/** The hint markers for `target`, or for every target when absent. */
export function hintRange(target?: string): { gte: Buffer; lt: Buffer } {
  const start = target === undefined ? Buffer.concat([metaPrefix, Buffer.of(hintKind)]) : Buffer.concat([metaPrefix, Buffer.of(hintKind, target.length), Buffer.from(target, 'latin1')]);
  return { gte: start, lt: prefixEnd(start) };
}

export function parseHintKey(key: Uint8Array): { readonly target: string; readonly engineKey: Buffer } | undefined {
  const bytes = Buffer.from(key.buffer, key.byteOffset, key.length);
  if (bytes.length < 5 || bytes.compare(metaPrefix, 0, 3, 0, 3) !== 0 || bytes[3] !== hintKind) return undefined;
  const length = bytes[4] as number;
  if (length === 0 || bytes.length <= 5 + length) return undefined;
  return { target: bytes.toString('latin1', 5, 5 + length), engineKey: bytes.subarray(5 + length) };
}

/** The least key greater than every key starting with `prefix` (prefix not all 0xff bytes). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  let index = end.length - 1;
  while (index >= 0 && end[index] === 0xff) index--;
  assert(index >= 0, 'a prefix of only 0xff bytes has no end');
  end[index] = (end[index] as number) + 1;
  return end.subarray(0, index + 1);
}
