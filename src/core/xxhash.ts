import initXxhash from 'xxhash-wasm';

/**
 * xxHash (xxh32, xxh64) for every hash ringkv stores or sends: ring tokens, Merkle trees,
 * object versions, bloom filters. The WebAssembly build is instantiated once, when this module
 * loads; its calls cost less than a native addon's (about 90 against 130 ns for a 30-byte key on
 * the development machine), which matters on the hot path, where every request hashes its key.
 * Pure functions of their input: the same bytes and seed give the same hash everywhere.
 */
// The one await in core: module initialisation, done before any caller can run; every call after
// it is synchronous.
// eslint-disable-next-line no-restricted-syntax
const { h32Raw, h64Raw } = await initXxhash();

/** xxh64 of `input` with `seed` (default 0): an unsigned 64-bit integer. */
export function xxh64(input: Uint8Array, seed = 0n): bigint {
  return h64Raw(input, seed);
}

/** xxh32 of `input` with `seed` (default 0): an unsigned 32-bit integer. */
export function xxh32(input: Uint8Array, seed = 0): number {
  return h32Raw(input, seed);
}
