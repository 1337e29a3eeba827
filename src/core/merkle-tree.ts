import { xxh32, xxh64 } from './xxhash.js';
import { assert } from './assert.js';

/**
 * Merkle trees for active anti-entropy (Dynamo §4.7), built the Tictac way (Riak 2.9+,
 * martinsumner/kv_index_tictactree and leveled_tictac): a node's hash is the XOR of its
 * children's hashes, and a segment (leaf) hash is the XOR of hash(key, versionHash) over the keys
 * that fall in it. Because XOR is its own inverse and commutative:
 *
 * - a write updates the tree in O(depth) without rescanning: XOR out the key's old contribution,
 *   XOR in the new one, on the segment and on every ancestor up to the root;
 * - the tree depends only on the set of (key, version) pairs, not on the order they arrived in,
 *   so an incrementally maintained tree equals a rebuild from a scan of the store;
 * - trees over disjoint key sets merge by XOR (`mergeTrees`), as Tictac merges vnode trees.
 *
 * Classic Merkle trees (Dynamo, Riak's legacy `hashtree.erl`) hash sorted children instead, which
 * needs the keys of a segment to recompute it. The XOR tree is not secure against a party that
 * chooses keys adversarially; like Tictac, it is meant for replicas that trust each other.
 *
 * Shape: `depth` levels below a single root, each node with `fanout` children, so there are
 * fanout^depth segments. Level 0 is the root, level `depth` the segments. Hashes are 64-bit:
 * two trees that differ in a segment show equal hashes there only if the XOR of the differing
 * contributions is zero, which for a random 64-bit hash has probability 2^-64 per differing segment
 * (Tictac's 32-bit hashes: 2^-32; at 10^4 differing segments per exchange that is ~2.3e-6 per
 * exchange, which is why 64 bits are used here). One key's own versions never cancel: for a fixed
 * key, xxh64 is a bijection of its seed, and the version hash is the seed.
 *
 * Ownership: a tree is mutated in place by `updateKey` and must be owned by one caller, the
 * anti-entropy service of the vnode whose store it mirrors. Anything that reads it concurrently
 * (an exchange answered while writes continue) takes a `cloneTree` snapshot or accepts that a
 * segment changed mid-exchange shows up as a difference that the key-list step then finds empty.
 */
export interface MerkleTreeOptions {
  /** Children per node; a power of two. */
  readonly fanout: number;
  /** Levels below the root; segments = fanout^depth. */
  readonly depth: number;
}

/**
 * Default: 256 x 256 = 65,536 segments, Tictac's `small` size. Memory: 8 bytes per node,
 * (1 + 256 + 65,536) x 8 B = 526,344 B (~514 KiB) per partition tree; a node holding 192 vnodes
 * (Q = 256, N = 3, four nodes) spends ~99 MiB on trees. Riak's legacy AAE and Tictac `large` use
 * 1024 x 1024 = 1,048,576 segments (8 MiB per tree at 64 bits): finer segments cost 16 times the
 * memory and, when many branches differ, much larger segment-level exchanges (see
 * docs/merkle-exchange.md). With 10^6 keys in a partition a default segment holds ~15 keys.
 */
export const merkleTreeDefaults: MerkleTreeOptions = { fanout: 256, depth: 2 };

export const fanoutMax = 4096;
export const depthMax = 8;
/** 2^24 segments = 128 MiB per tree at 8 bytes a hash: well past any sensible configuration. */
export const segmentCountMax = 1 << 24;

/** Seed of the key -> segment hash, distinct from the ring's token hash so that keys of one
 * partition (which share their token's top bits) still spread over all segments. */
const segmentSeed = 0x7e6d_5a4b;
const versionHashMax = (1n << 64n) - 1n;

export interface MerkleTree {
  readonly fanout: number;
  readonly depth: number;
  /** log2(fanout): a node's parent is `index >>> fanoutBits`. */
  readonly fanoutBits: number;
  readonly segmentCount: number;
  /** levels[0] holds the root, levels[depth] the segments; contents are mutated by updateKey. */
  readonly levels: readonly BigUint64Array[];
}

function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && (value & (value - 1)) === 0;
}

export function validateTreeOptions(options: MerkleTreeOptions): void {
  const { fanout, depth } = options;
  assert(isPowerOfTwo(fanout) && fanout >= 2 && fanout <= fanoutMax, () => `fanout must be a power of two in 2..${fanoutMax}, got ${fanout}`);
  assert(Number.isInteger(depth) && depth >= 1 && depth <= depthMax, () => `depth must be in 1..${depthMax}, got ${depth}`);
  assert(fanout ** depth <= segmentCountMax, () => `fanout^depth must be at most ${segmentCountMax}, got ${fanout ** depth}`);
}

/** Bytes of hash storage a tree of this shape holds (the typed arrays; object overhead aside). */
export function treeMemoryBytes(options: MerkleTreeOptions = merkleTreeDefaults): number {
  validateTreeOptions(options);
  let nodes = 0;
  for (let level = 0; level <= options.depth; level++) nodes += options.fanout ** level;
  return nodes * 8;
}

/** An empty tree: every hash zero, the XOR of no contributions. */
export function createTree(options: MerkleTreeOptions = merkleTreeDefaults): MerkleTree {
  validateTreeOptions(options);
  const { fanout, depth } = options;
  const levels: BigUint64Array[] = [];
  for (let level = 0; level <= depth; level++) levels.push(new BigUint64Array(fanout ** level));
  return { fanout, depth, fanoutBits: Math.log2(fanout), segmentCount: fanout ** depth, levels };
}

export function cloneTree(tree: MerkleTree): MerkleTree {
  return { ...tree, levels: tree.levels.map((hashes) => hashes.slice()) };
}

export function sameShape(a: MerkleTree, b: MerkleTree): boolean {
  return a.fanout === b.fanout && a.depth === b.depth;
}

/** Number of nodes at `level` (1 at the root, segmentCount at level depth). */
export function levelWidth(tree: MerkleTree, level: number): number {
  assert(Number.isInteger(level) && level >= 0 && level <= tree.depth, () => `level out of range: ${level}`);
  return tree.fanout ** level;
}

/**
 * A 32-bit hash of the key that fixes its segment in every tree shape: a tree with 2^b segments
 * takes its top b bits (as Tictac's `keyto_segment32` puts the segment id in a fixed place), so a
 * store can index keys by this hash once and fold the keys of any segment of any tree shape.
 */
export function keySegmentHash(key: Uint8Array): number {
  return xxh32(key, segmentSeed) >>> 0;
}

export function segmentOf(tree: MerkleTree, key: Uint8Array): number {
  return keySegmentHash(key) >>> (32 - tree.fanoutBits * tree.depth);
}

/** The key's contribution to its segment: xxh64 of the key seeded with the version hash. */
export function keyVersionHash(key: Uint8Array, versionHash: bigint): bigint {
  assert(versionHash >= 0n && versionHash <= versionHashMax, () => `version hash must be an unsigned 64-bit integer, got ${versionHash}`);
  return xxh64(key, versionHash);
}

/**
 * Records that `key` moved from `oldVersionHash` to `newVersionHash`: undefined old = insert,
 * undefined new = the key left the store (a tombstone is a version, so a delete normally passes
 * the tombstone's hash; undefined is for a tombstone reaped). Returns the segment touched.
 *
 * Precondition, not checkable here because the tree keeps no keys: `oldVersionHash` is the
 * version the tree holds for the key. A wrong one leaves the tree disagreeing with the store until
 * a rebuild from a scan, which is why Riak rebuilds AAE trees periodically.
 */
export function updateKey(
  tree: MerkleTree,
  key: Uint8Array,
  oldVersionHash: bigint | undefined,
  newVersionHash: bigint | undefined,
): number {
  const segment = segmentOf(tree, key);
  if (oldVersionHash === newVersionHash) return segment;
  let delta = 0n;
  if (oldVersionHash !== undefined) delta ^= keyVersionHash(key, oldVersionHash);
  if (newVersionHash !== undefined) delta ^= keyVersionHash(key, newVersionHash);
  applyDelta(tree, segment, delta);
  return segment;
}

/** XORs `delta` into a segment and each of its ancestors: O(depth). */
function applyDelta(tree: MerkleTree, segment: number, delta: bigint): void {
  assert(segment >= 0 && segment < tree.segmentCount, () => `segment out of range: ${segment}`);
  let index = segment;
  for (let level = tree.depth; level >= 0; level--) {
    const hashes = tree.levels[level]!;
    hashes[index] = hashes[index]! ^ delta;
    index >>>= tree.fanoutBits;
  }
  assert(index === 0, 'the walk up from a segment must end at the root');
}

/** A tree over `entries` (key, versionHash), keys distinct: the rebuild-from-scan path. */
export function buildTree(
  entries: Iterable<readonly [Uint8Array, bigint]>,
  options: MerkleTreeOptions = merkleTreeDefaults,
): MerkleTree {
  const tree = createTree(options);
  for (const [key, versionHash] of entries) updateKey(tree, key, undefined, versionHash);
  return tree;
}

export function rootHash(tree: MerkleTree): bigint {
  return tree.levels[0]![0]!;
}

export function segmentHash(tree: MerkleTree, segment: number): bigint {
  assert(Number.isInteger(segment) && segment >= 0 && segment < tree.segmentCount, () => `segment out of range: ${segment}`);
  return tree.levels[tree.depth]![segment]!;
}

/**
 * The tree over the union of two disjoint key sets (Tictac `merge_trees`), e.g. the trees of
 * several partitions for a cluster-wide comparison. A key present in both cancels out, so the
 * caller guarantees disjointness.
 */
export function mergeTrees(a: MerkleTree, b: MerkleTree): MerkleTree {
  assert(sameShape(a, b), 'only trees of the same shape merge');
  const merged = cloneTree(a);
  merged.levels.forEach((hashes, level) => {
    const other = b.levels[level]!;
    for (let index = 0; index < hashes.length; index++) hashes[index] = hashes[index]! ^ other[index]!;
  });
  return merged;
}

/** True when every inner node is the XOR of its children: the invariant updateKey keeps. */
export function isConsistent(tree: MerkleTree): boolean {
  for (let level = 0; level < tree.depth; level++) {
    const parents = tree.levels[level]!;
    const children = tree.levels[level + 1]!;
    for (let parent = 0; parent < parents.length; parent++) {
      let xor = 0n;
      for (let child = parent * tree.fanout; child < (parent + 1) * tree.fanout; child++) xor ^= children[child]!;
      if (xor !== parents[parent]) return false;
    }
  }
  return true;
}

export function treesEqual(a: MerkleTree, b: MerkleTree): boolean {
  if (!sameShape(a, b)) return false;
  return a.levels.every((hashes, level) => {
    const other = b.levels[level]!;
    for (let index = 0; index < hashes.length; index++) if (hashes[index] !== other[index]) return false;
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// The diff, as pure steps two replicas can exchange.

/** Hashes of `nodes` at `level`, in the order given: what a replica sends for one request. */
export function levelHashes(tree: MerkleTree, level: number, nodes: readonly number[]): BigUint64Array {
  const width = levelWidth(tree, level);
  const hashes = tree.levels[level]!;
  const result = new BigUint64Array(nodes.length);
  nodes.forEach((node, position) => {
    assert(Number.isInteger(node) && node >= 0 && node < width, () => `node ${node} out of range at level ${level}`);
    result[position] = hashes[node]!;
  });
  return result;
}

/** The nodes among `nodes` whose hashes differ; `mine` and `theirs` are parallel to `nodes`. */
export function diffHashes(nodes: readonly number[], mine: BigUint64Array, theirs: BigUint64Array): number[] {
  assert(mine.length === nodes.length && theirs.length === nodes.length, 'hash lists must be parallel to the node list');
  const differing: number[] = [];
  for (let position = 0; position < nodes.length; position++) {
    if (mine[position] !== theirs[position]) differing.push(nodes[position]!);
  }
  return differing;
}

/** Every child, at level + 1, of the given nodes at `level`, ascending if `nodes` is. */
export function childrenOf(tree: MerkleTree, level: number, nodes: readonly number[]): number[] {
  assert(level < tree.depth, () => `level ${level} has no children in a tree of depth ${tree.depth}`);
  const width = levelWidth(tree, level);
  const children: number[] = [];
  for (const node of nodes) {
    assert(Number.isInteger(node) && node >= 0 && node < width, () => `node ${node} out of range at level ${level}`);
    for (let child = node * tree.fanout; child < (node + 1) * tree.fanout; child++) children.push(child);
  }
  return children;
}

/**
 * The segments whose hashes differ, ascending, found by walking down from the root and opening
 * only the children of differing nodes. Differing segments are exactly those holding a key whose
 * (key, version) pair is on one side only, but for the 2^-64 chance per segment described above.
 */
export function diffTrees(a: MerkleTree, b: MerkleTree): number[] {
  assert(sameShape(a, b), 'only trees of the same shape can be compared');
  let nodes = [0];
  for (let level = 0; ; level++) {
    const differing = diffHashes(nodes, levelHashes(a, level, nodes), levelHashes(b, level, nodes));
    if (level === a.depth || differing.length === 0) return differing;
    nodes = childrenOf(a, level, differing);
  }
}

// ---------------------------------------------------------------------------------------------
// The exchange: the same walk as diffTrees, split into messages between two replicas, as Riak's
// aae_exchange fetches root, then branches, then segments from each side. The initiator asks for
// the hashes of a set of nodes at one level, compares them with its own, and asks for the children
// of those that differ, one level per round trip. When it has the differing segments, both sides
// send the (key hash, version hash) lists of those segments, folded from their stores; that last
// step is outside the tree, which keeps no keys. Both trees must have the same shape (`sameShape`),
// checked when the exchange is set up.

/** Initiator -> responder: send the hashes of `nodes` at `level`. */
export interface LevelRequest {
  readonly level: number;
  /** Ascending; at level >= 1, whole sibling groups (every child of some parents). */
  readonly nodes: readonly number[];
}

/** Responder -> initiator: the hashes, parallel to the request's nodes. */
export interface LevelResponse {
  readonly level: number;
  readonly hashes: BigUint64Array;
}

/** The initiator's state between round trips: the request in flight. */
export interface InitiatorState {
  readonly request: LevelRequest;
  /** Some differing nodes were left unopened to respect hashesPerResponseMax. */
  readonly truncated: boolean;
}

export type ExchangeStep =
  | { readonly kind: 'request'; readonly state: InitiatorState }
  | { readonly kind: 'done'; readonly segments: readonly number[]; readonly truncated: boolean };

export interface ExchangeOptions {
  /**
   * Bound on the hashes one response carries, so one exchange cannot ask a replica for an
   * unbounded message (riak_kv #689: exchanges using up to 800 MB/s). When more nodes differ, the
   * initiator opens only the first ones; the rest are found by the next exchange, after repair.
   */
  readonly hashesPerResponseMax: number;
}

/** 65,536 hashes = 512 KiB per response: a whole segment level of the default tree. */
export const exchangeDefaults: ExchangeOptions = { hashesPerResponseMax: 65_536 };

/** Bytes of one entry of a segment key list: 8-byte key hash + 8-byte version hash. */
export const keyListEntrySizeBytes = 16;

export function startExchange(): InitiatorState {
  return { request: { level: 0, nodes: [0] }, truncated: false };
}

/** The responder's whole part: pure, so it can answer from a snapshot. */
export function answerRequest(tree: MerkleTree, request: LevelRequest): LevelResponse {
  return { level: request.level, hashes: levelHashes(tree, request.level, request.nodes) };
}

/** The initiator compares a response with its own tree and asks for the next level, or stops. */
export function nextStep(
  tree: MerkleTree,
  state: InitiatorState,
  response: LevelResponse,
  options: ExchangeOptions = exchangeDefaults,
): ExchangeStep {
  const { request } = state;
  assert(response.level === request.level, () => `response for level ${response.level} answers a request for level ${request.level}`);
  assert(options.hashesPerResponseMax >= tree.fanout, 'hashesPerResponseMax must hold at least one sibling group');
  const mine = levelHashes(tree, request.level, request.nodes);
  const differing = diffHashes(request.nodes, mine, response.hashes);
  if (request.level === tree.depth || differing.length === 0) {
    return { kind: 'done', segments: request.level === tree.depth ? differing : [], truncated: state.truncated };
  }
  const openMax = Math.floor(options.hashesPerResponseMax / tree.fanout);
  const opened = differing.slice(0, openMax);
  const nodes = childrenOf(tree, request.level, opened);
  assert(nodes.length <= options.hashesPerResponseMax, 'a request must respect hashesPerResponseMax');
  const truncated = state.truncated || opened.length < differing.length;
  return { kind: 'request', state: { request: { level: request.level + 1, nodes }, truncated } };
}

/**
 * Wire size of a request: one byte for the level, then the parents whose children are wanted,
 * as 4-byte indices or as a bitmap over the parent level, whichever is smaller.
 */
export function requestSizeBytes(tree: MerkleTree, request: LevelRequest): number {
  if (request.level === 0) return 1;
  assert(request.nodes.length % tree.fanout === 0, 'a request at level >= 1 names whole sibling groups');
  const parents = request.nodes.length / tree.fanout;
  const bitmapBytes = Math.ceil(levelWidth(tree, request.level - 1) / 8);
  return 1 + Math.min(4 * parents, bitmapBytes);
}

/** Wire size of a response: 8 bytes a hash (the level is implied by the request). */
export function responseSizeBytes(response: LevelResponse): number {
  return 8 * response.hashes.length;
}

export interface LevelTraffic {
  readonly level: number;
  readonly nodesRequested: number;
  readonly nodesDiffering: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface ExchangeReport {
  readonly segments: readonly number[];
  readonly truncated: boolean;
  /** Round trips spent on the tree, one per level opened (the key-list step comes after). */
  readonly roundTrips: number;
  readonly initiatorBytes: number;
  readonly responderBytes: number;
  readonly levels: readonly LevelTraffic[];
}

/** Runs the whole tree exchange in process (tests, the bytes report); a node sends the messages. */
export function exchangeTrees(
  initiator: MerkleTree,
  responder: MerkleTree,
  options: ExchangeOptions = exchangeDefaults,
): ExchangeReport {
  assert(sameShape(initiator, responder), 'only trees of the same shape can be exchanged');
  const levels: LevelTraffic[] = [];
  let state = startExchange();
  for (let round = 0; round <= initiator.depth; round++) {
    const response = answerRequest(responder, state.request);
    const step = nextStep(initiator, state, response, options);
    const mine = levelHashes(initiator, state.request.level, state.request.nodes);
    const nodesDiffering = diffHashes(state.request.nodes, mine, response.hashes).length;
    levels.push({
      level: state.request.level,
      nodesRequested: state.request.nodes.length,
      nodesDiffering,
      requestBytes: requestSizeBytes(initiator, state.request),
      responseBytes: responseSizeBytes(response),
    });
    if (step.kind === 'done') {
      const initiatorBytes = levels.reduce((sum, traffic) => sum + traffic.requestBytes, 0);
      const responderBytes = levels.reduce((sum, traffic) => sum + traffic.responseBytes, 0);
      return { segments: step.segments, truncated: step.truncated, roundTrips: levels.length, initiatorBytes, responderBytes, levels };
    }
    state = step.state;
  }
  assert(false, 'an exchange ends by the segment level');
}
