import { assert } from '../core/assert.js';

/**
 * How (namespace, key) maps to an engine key: one length byte, the namespace, then the key
 * bytes. Keys of one namespace are thus contiguous and ordered by key, so a namespace can be
 * scanned as one range. (The cluster work prefixes the partition, DESIGN.md "Storage engine";
 * this module is the one place that changes.)
 */
export function storageKey(namespace: string, key: Uint8Array): Buffer {
  // Namespaces are validated ASCII ([A-Za-z0-9_.-]), one byte per character.
  const namespaceBytes = namespace.length;
  assert(namespaceBytes > 0 && namespaceBytes < 256, 'namespace must be 1-255 bytes');
  const out = Buffer.allocUnsafe(1 + namespaceBytes + key.length);
  out[0] = namespaceBytes;
  for (let index = 0; index < namespaceBytes; index++) out[1 + index] = namespace.charCodeAt(index);
  out.set(key, 1 + namespaceBytes);
  return out;
}

/** The range [gte, lt) holding every key of `namespace`. */
export function namespaceRange(namespace: string): { gte: Buffer; lt: Buffer } {
  const gte = storageKey(namespace, new Uint8Array(0));
  const lt = Buffer.from(gte);
  // The namespace bytes are printable ASCII, so incrementing the last one never overflows.
  lt[lt.length - 1] = (lt[lt.length - 1] as number) + 1;
  return { gte, lt };
}

/** The user key inside an engine key made by storageKey. */
export function userKey(engineKey: Uint8Array): Uint8Array {
  const namespaceBytes = engineKey[0];
  assert(namespaceBytes !== undefined && engineKey.length >= 1 + namespaceBytes, 'not a storage key');
  return engineKey.subarray(1 + namespaceBytes);
}
