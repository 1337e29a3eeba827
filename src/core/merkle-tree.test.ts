// Property tests for the Tictac-style XOR Merkle tree (merkle-tree.ts) against naive oracles.
//
// The oracles never look at the tree: the differing segments are computed from the set
// difference of (key, version) pairs; segment hashes from a per-segment XOR over all keys. Small
// shapes (2..256 segments) put many keys in each segment, so the properties exercise segments
// that differ in several keys at once and segments whose differences touch shared ancestors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  buildTree,
  cloneTree,
  createTree,
  diffTrees,
  exchangeTrees,
  isConsistent,
  keySegmentHash,
  keyVersionHash,
  mergeTrees,
  merkleTreeDefaults,
  requestSizeBytes,
  rootHash,
  segmentHash,
  segmentOf,
  treeMemoryBytes,
  treesEqual,
  updateKey,
  validateTreeOptions,
  type MerkleTree,
  type MerkleTreeOptions,
} from './merkle-tree.js';

const numRuns = 300;
const keysMax = 60;

/** A replica's store as the oracle sees it: key id -> (key bytes, version hash). */
type Store = Map<string, { readonly key: Uint8Array; readonly version: bigint }>;

const keyId = (key: Uint8Array): string => Array.from(key).join(',');

const shapeArbitrary: fc.Arbitrary<MerkleTreeOptions> = fc.constantFrom(
  { fanout: 2, depth: 1 },
  { fanout: 2, depth: 3 },
  { fanout: 4, depth: 2 },
  { fanout: 4, depth: 3 },
  { fanout: 16, depth: 2 },
);

// Small version domain so that shared keys often carry equal versions; the full 64-bit range
// appears too, to reach the seed edge cases of xxh64.
const versionArbitrary = fc.oneof(fc.bigInt({ min: 0n, max: 3n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

interface PairedEntry {
  readonly key: Uint8Array;
  readonly inA: boolean;
  readonly inB: boolean;
  readonly versionA: bigint;
  readonly versionB: bigint;
}

/** Two replicas' stores: shared keys with equal or different versions, and keys on one side only. */
const storesArbitrary: fc.Arbitrary<{ a: Store; b: Store }> = fc
  .uniqueArray(
    fc.record({
      key: fc.uint8Array({ minLength: 0, maxLength: 6 }),
      inA: fc.boolean(),
      inB: fc.boolean(),
      versionA: versionArbitrary,
      sameVersion: fc.boolean(),
      versionB: versionArbitrary,
    }),
    { selector: (entry) => keyId(entry.key), maxLength: keysMax },
  )
  .map((entries) => {
    const paired: PairedEntry[] = entries.map((entry) => ({
      ...entry,
      versionB: entry.sameVersion ? entry.versionA : entry.versionB,
    }));
    const a: Store = new Map();
    const b: Store = new Map();
    for (const entry of paired) {
      if (entry.inA) a.set(keyId(entry.key), { key: entry.key, version: entry.versionA });
      if (entry.inB) b.set(keyId(entry.key), { key: entry.key, version: entry.versionB });
    }
    return { a, b };
  });

function treeOf(store: Store, options: MerkleTreeOptions): MerkleTree {
  return buildTree([...store.values()].map(({ key, version }) => [key, version] as const), options);
}

/** Oracle: segments holding a key whose (key, version) pair is in one store only. */
function naiveDifferingSegments(a: Store, b: Store, tree: MerkleTree): number[] {
  const segments = new Set<number>();
  for (const [id, entry] of a) if (b.get(id)?.version !== entry.version) segments.add(segmentOf(tree, entry.key));
  for (const [id, entry] of b) if (a.get(id)?.version !== entry.version) segments.add(segmentOf(tree, entry.key));
  return [...segments].sort((x, y) => x - y);
}

/** Oracle: each segment's hash as the XOR of its keys' contributions, computed from scratch. */
function naiveSegmentHashes(store: Store, tree: MerkleTree): bigint[] {
  const hashes = new Array<bigint>(tree.segmentCount).fill(0n);
  for (const { key, version } of store.values()) {
    const segment = segmentOf(tree, key);
    hashes[segment] = hashes[segment]! ^ keyVersionHash(key, version);
  }
  return hashes;
}

test('merkle-tree: diff returns exactly the segments of the symmetric difference (random stores A, B, 2..256 segments)', () => {
  fc.assert(
    fc.property(storesArbitrary, shapeArbitrary, ({ a, b }, shape) => {
      const treeA = treeOf(a, shape);
      const treeB = treeOf(b, shape);
      const expected = naiveDifferingSegments(a, b, treeA);
      assert.deepEqual(diffTrees(treeA, treeB), expected);
      assert.deepEqual(diffTrees(treeB, treeA), expected);
      assert.equal(rootHash(treeA) === rootHash(treeB), expected.length === 0);
    }),
    { numRuns },
  );
});

test('merkle-tree: segment hashes equal the naive per-segment XOR and inner nodes XOR their children (random store)', () => {
  fc.assert(
    fc.property(storesArbitrary, shapeArbitrary, ({ a }, shape) => {
      const tree = treeOf(a, shape);
      naiveSegmentHashes(a, tree).forEach((hash, segment) => assert.equal(segmentHash(tree, segment), hash));
      assert.ok(isConsistent(tree));
    }),
    { numRuns },
  );
});

type Operation = { readonly key: Uint8Array; readonly version: bigint | undefined };

test('merkle-tree: incremental updates equal a rebuild from scratch (random insert/update/delete sequences)', () => {
  const operationArbitrary: fc.Arbitrary<Operation> = fc.record({
    key: fc.uint8Array({ maxLength: 2 }).map((bytes) => bytes.map((byte) => byte % 4)),
    version: fc.option(fc.bigInt({ min: 0n, max: 5n }), { nil: undefined }),
  });
  fc.assert(
    fc.property(fc.array(operationArbitrary, { maxLength: 80 }), shapeArbitrary, (operations, shape) => {
      const tree = createTree(shape);
      const store: Store = new Map();
      for (const { key, version } of operations) {
        const id = keyId(key);
        const segment = updateKey(tree, key, store.get(id)?.version, version);
        assert.equal(segment, segmentOf(tree, key));
        if (version === undefined) store.delete(id);
        else store.set(id, { key, version });
      }
      assert.ok(treesEqual(tree, treeOf(store, shape)));
    }),
    { numRuns },
  );
});

test('merkle-tree: an update then its revert restores every hash (random store, random key and versions)', () => {
  fc.assert(
    fc.property(
      storesArbitrary,
      shapeArbitrary,
      fc.uint8Array({ maxLength: 6 }),
      fc.option(versionArbitrary, { nil: undefined }),
      ({ a }, shape, key, newVersion) => {
        const tree = treeOf(a, shape);
        const before = cloneTree(tree);
        const oldVersion = a.get(keyId(key))?.version;
        updateKey(tree, key, oldVersion, newVersion);
        assert.equal(treesEqual(tree, before), oldVersion === newVersion);
        updateKey(tree, key, newVersion, oldVersion);
        assert.ok(treesEqual(tree, before));
        assert.equal(rootHash(tree), rootHash(before));
      },
    ),
    { numRuns },
  );
});

test('merkle-tree: the tree depends on the set of pairs, not on insertion order (random store, random permutation)', () => {
  fc.assert(
    fc.property(storesArbitrary, shapeArbitrary, fc.infiniteStream(fc.nat()), ({ a }, shape, stream) => {
      const entries = [...a.values()].map(({ key, version }) => [key, version] as const);
      const shuffled = [...entries];
      const ranks = stream.take(shuffled.length);
      [...ranks].forEach((rank, index) => {
        const other = index + (rank % (shuffled.length - index));
        [shuffled[index], shuffled[other]] = [shuffled[other]!, shuffled[index]!];
      });
      assert.ok(treesEqual(buildTree(entries, shape), buildTree(shuffled, shape)));
    }),
    { numRuns },
  );
});

test('merkle-tree: merging trees of disjoint stores gives the tree of their union (random stores)', () => {
  fc.assert(
    fc.property(storesArbitrary, shapeArbitrary, ({ a, b }, shape) => {
      const onlyB: Store = new Map([...b].filter(([id]) => !a.has(id)));
      const union: Store = new Map([...a, ...onlyB]);
      assert.ok(treesEqual(mergeTrees(treeOf(a, shape), treeOf(onlyB, shape)), treeOf(union, shape)));
    }),
    { numRuns },
  );
});

test('merkle-tree: versions of one key never cancel (random key, two distinct versions)', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 32 }), versionArbitrary, versionArbitrary, (key, first, second) => {
      fc.pre(first !== second);
      assert.notEqual(keyVersionHash(key, first), keyVersionHash(key, second));
    }),
    { numRuns: 1000 },
  );
});

test('merkle-tree: a key keeps its segment under coarser shapes (random key, 2^1..2^24 segments)', () => {
  const fine = createTree({ fanout: 4096, depth: 2 });
  const coarseTrees = [{ fanout: 2, depth: 1 }, { fanout: 16, depth: 3 }, merkleTreeDefaults, { fanout: 1024, depth: 2 }].map((shape) => createTree(shape));
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 16 }), (key) => {
      for (const coarse of coarseTrees) {
        const shift = Math.log2(fine.segmentCount / coarse.segmentCount);
        assert.equal(segmentOf(coarse, key), segmentOf(fine, key) >>> shift);
      }
      assert.equal(segmentOf(fine, key), keySegmentHash(key) >>> 8);
    }),
    { numRuns: 200 },
  );
});

test('merkle-tree: the step-wise exchange finds the segments diffTrees finds and counts its bytes (random stores)', () => {
  fc.assert(
    fc.property(storesArbitrary, shapeArbitrary, ({ a, b }, shape) => {
      const treeA = treeOf(a, shape);
      const treeB = treeOf(b, shape);
      const report = exchangeTrees(treeA, treeB, { hashesPerResponseMax: treeA.segmentCount });
      assert.deepEqual(report.segments, diffTrees(treeA, treeB));
      assert.equal(report.truncated, false);
      const differs = report.segments.length > 0;
      assert.equal(report.roundTrips, differs ? treeA.depth + 1 : 1);
      const hashesSent = report.levels.reduce((sum, level) => sum + level.nodesRequested, 0);
      assert.equal(report.responderBytes, 8 * hashesSent);
      assert.equal(report.levels[0]!.requestBytes, 1);
      report.levels.forEach((level, index) => {
        const previous = report.levels[index - 1];
        if (previous !== undefined) assert.equal(level.nodesRequested, previous.nodesDiffering * treeA.fanout);
      });
    }),
    { numRuns },
  );
});

test('merkle-tree: a bounded exchange sends at most hashesPerResponseMax hashes and finds a subset (random stores)', () => {
  fc.assert(
    fc.property(storesArbitrary, fc.integer({ min: 4, max: 20 }), ({ a, b }, hashesPerResponseMax) => {
      const shape = { fanout: 4, depth: 3 };
      const treeA = treeOf(a, shape);
      const treeB = treeOf(b, shape);
      const report = exchangeTrees(treeA, treeB, { hashesPerResponseMax });
      const all = diffTrees(treeA, treeB);
      for (const level of report.levels) assert.ok(level.nodesRequested <= hashesPerResponseMax);
      assert.ok(report.segments.every((segment) => all.includes(segment)));
      if (report.segments.length < all.length) assert.ok(report.truncated, 'a partial answer says so');
      if (!report.truncated) assert.deepEqual(report.segments, all);
      if (all.length > 0) assert.ok(report.segments.length > 0, 'a difference is always partly found');
    }),
    { numRuns },
  );
});

test('merkle-tree: request size is the smaller of 4-byte indices and a parent-level bitmap (examples)', () => {
  const tree = createTree({ fanout: 256, depth: 2 });
  assert.equal(requestSizeBytes(tree, { level: 0, nodes: [0] }), 1);
  const oneBranch = Array.from({ length: 256 }, (_, index) => 256 * 7 + index);
  assert.equal(requestSizeBytes(tree, { level: 2, nodes: oneBranch }), 1 + 4);
  const allBranches = Array.from({ length: 65_536 }, (_, index) => index);
  assert.equal(requestSizeBytes(tree, { level: 2, nodes: allBranches }), 1 + 32);
});

test('merkle-tree: shapes are validated and memory is stated (examples)', () => {
  assert.equal(treeMemoryBytes(), (1 + 256 + 65_536) * 8);
  assert.equal(treeMemoryBytes({ fanout: 1024, depth: 2 }), (1 + 1024 + 1_048_576) * 8);
  assert.throws(() => validateTreeOptions({ fanout: 3, depth: 2 }));
  assert.throws(() => validateTreeOptions({ fanout: 2, depth: 0 }));
  assert.throws(() => validateTreeOptions({ fanout: 4096, depth: 3 }));
  assert.throws(() => keyVersionHash(new Uint8Array(), -1n));
  assert.throws(() => keyVersionHash(new Uint8Array(), 1n << 64n));
  assert.equal(rootHash(createTree()), 0n);
  assert.deepEqual(diffTrees(createTree(), createTree()), []);
  assert.deepEqual(exchangeTrees(createTree(), createTree()).roundTrips, 1);
});
