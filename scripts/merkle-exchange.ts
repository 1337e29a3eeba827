// Bytes two replicas exchange to find d differing keys among n with the Tictac-style Merkle tree
// (src/core/merkle-tree.ts), against the naive exchange that sends every (key hash, version hash).
//
//   node --import tsx scripts/merkle-exchange.ts [--write docs/merkle-exchange.md]
//
// Replica A holds n keys. Replica B holds the same keys except d of them, cycling through three
// kinds of difference: B missed A's newer version, B missed the key, B has a key A lacks. The
// exchange is the one a node runs: root, then each level's differing children, then both sides
// send the (8-byte key hash, 8-byte version hash) list of every differing segment. With --write,
// the table replaces the generated section of the given Markdown file.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  cloneTree,
  createTree,
  exchangeTrees,
  keyListEntrySizeBytes,
  treeMemoryBytes,
  updateKey,
  type MerkleTree,
  type MerkleTreeOptions,
} from '../src/core/merkle-tree.js';
import { SeededRandom } from '../src/core/random.js';

const keyCount = 1_000_000;
const differingCounts = [1, 100, 10_000];
const seed = 20_240_601;
const shapes: readonly { readonly label: string; readonly options: MerkleTreeOptions }[] = [
  { label: '256 x 256 (default, Tictac small)', options: { fanout: 256, depth: 2 } },
  { label: '64 x 64 x 64', options: { fanout: 64, depth: 3 } },
  { label: '1024 x 1024 (Riak legacy, Tictac large)', options: { fanout: 1024, depth: 2 } },
  { label: '32 x 32 x 32 x 32', options: { fanout: 32, depth: 4 } },
];
const beginMarker = '<!-- merkle-exchange:begin -->';
const endMarker = '<!-- merkle-exchange:end -->';

/** All keys, n for A and d_max more that only B holds, encoded once into one buffer. */
interface KeySpace {
  readonly bytes: Uint8Array;
  readonly offsets: Uint32Array;
}

function encodeKeys(count: number): KeySpace {
  const encoder = new TextEncoder();
  const bytes = new Uint8Array(count * 24);
  const offsets = new Uint32Array(count + 1);
  let position = 0;
  for (let index = 0; index < count; index++) {
    position += encoder.encodeInto(`users\u0000user:${index}`, bytes.subarray(position)).written;
    offsets[index + 1] = position;
  }
  return { bytes, offsets };
}

function keyAt(space: KeySpace, index: number): Uint8Array {
  return space.bytes.subarray(space.offsets[index]!, space.offsets[index + 1]!);
}

/** A stand-in for hash(version): distinct per key and generation, anywhere in 64 bits. */
function versionOf(index: number, generation: number): bigint {
  return BigInt.asUintN(64, (BigInt(index + 1) * 0x9e37_79b9_7f4a_7c15n) ^ BigInt(generation));
}

interface Replica {
  readonly tree: MerkleTree;
  /** Keys per segment: what the store's fold would list for a segment. */
  readonly keysPerSegment: Int32Array;
}

function buildReplica(space: KeySpace, options: MerkleTreeOptions): { replica: Replica; nsPerInsert: number } {
  const tree = createTree(options);
  const keysPerSegment = new Int32Array(tree.segmentCount);
  const started = performance.now();
  for (let index = 0; index < keyCount; index++) {
    keysPerSegment[updateKey(tree, keyAt(space, index), undefined, versionOf(index, 1))]! += 1;
  }
  const nsPerInsert = ((performance.now() - started) * 1e6) / keyCount;
  return { replica: { tree, keysPerSegment }, nsPerInsert };
}

/** B = A with d differences; returns B and the segments the differing keys fall in. */
function diverge(space: KeySpace, a: Replica, differing: number, random: SeededRandom): { b: Replica; segments: Set<number> } {
  const b: Replica = { tree: cloneTree(a.tree), keysPerSegment: a.keysPerSegment.slice() };
  const chosen = new Set<number>();
  while (chosen.size < differing) chosen.add(random.nextInt(keyCount));
  const segments = new Set<number>();
  [...chosen].forEach((index, order) => {
    const kind = order % 3;
    if (kind === 0) {
      segments.add(updateKey(b.tree, keyAt(space, index), versionOf(index, 1), versionOf(index, 0)));
    } else if (kind === 1) {
      const segment = updateKey(b.tree, keyAt(space, index), versionOf(index, 1), undefined);
      b.keysPerSegment[segment]! -= 1;
      segments.add(segment);
    } else {
      const extra = keyCount + order;
      const segment = updateKey(b.tree, keyAt(space, extra), undefined, versionOf(extra, 1));
      b.keysPerSegment[segment]! += 1;
      segments.add(segment);
    }
  });
  return { b, segments };
}

interface Row {
  readonly shape: string;
  readonly differing: number;
  readonly segments: number;
  readonly roundTrips: number;
  readonly treeBytes: number;
  readonly keyListBytes: number;
  readonly totalBytes: number;
}

function measure(space: KeySpace, a: Replica, label: string, differing: number): Row {
  const { b, segments } = diverge(space, a, differing, new SeededRandom(seed + differing));
  const report = exchangeTrees(a.tree, b.tree, { hashesPerResponseMax: a.tree.segmentCount });
  const expected = [...segments].sort((x, y) => x - y);
  if (report.truncated || report.segments.join() !== expected.join()) {
    throw new Error(`${label}, d = ${differing}: the exchange missed or invented segments`);
  }
  // The initiator names the differing segments (4-byte ids or a bitmap); both sides then list them.
  const segmentRequestBytes = Math.min(4 * report.segments.length, Math.ceil(a.tree.segmentCount / 8));
  let keyListBytes = segmentRequestBytes;
  for (const segment of report.segments) {
    keyListBytes += (a.keysPerSegment[segment]! + b.keysPerSegment[segment]!) * keyListEntrySizeBytes;
  }
  const treeBytes = report.initiatorBytes + report.responderBytes;
  return {
    shape: label,
    differing,
    segments: report.segments.length,
    roundTrips: report.roundTrips + 1,
    treeBytes,
    keyListBytes,
    totalBytes: treeBytes + keyListBytes,
  };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

function renderTable(rows: readonly Row[], naiveBytes: number): string {
  const lines = [
    '| tree shape | d | differing segments | round trips | tree hashes + requests | segment key lists | total | vs naive |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const ratio = (naiveBytes / row.totalBytes).toFixed(row.totalBytes * 100 > naiveBytes ? 1 : 0);
    lines.push(
      `| ${row.shape} | ${row.differing.toLocaleString('en-US')} | ${row.segments.toLocaleString('en-US')} | ${row.roundTrips} | ${formatBytes(row.treeBytes)} | ${formatBytes(row.keyListBytes)} | ${formatBytes(row.totalBytes)} | ${ratio}x less |`,
    );
  }
  return lines.join('\n');
}

function timeVersionUpdates(space: KeySpace, tree: MerkleTree): number {
  const started = performance.now();
  for (let index = 0; index < keyCount; index++) updateKey(tree, keyAt(space, index), versionOf(index, 1), versionOf(index, 2));
  return ((performance.now() - started) * 1e6) / keyCount;
}

function main(): void {
  const started = performance.now();
  const space = encodeKeys(keyCount + Math.max(...differingCounts));
  const rows: Row[] = [];
  const timings: string[] = [];
  for (const { label, options } of shapes) {
    const { replica, nsPerInsert } = buildReplica(space, options);
    for (const differing of differingCounts) rows.push(measure(space, replica, label, differing));
    const nsPerUpdate = timeVersionUpdates(space, replica.tree);
    timings.push(
      `| ${label} | ${(options.fanout ** options.depth).toLocaleString('en-US')} | ${formatBytes(treeMemoryBytes(options))} | ${nsPerInsert.toFixed(0)} | ${nsPerUpdate.toFixed(0)} |`,
    );
  }
  const naiveBytes = keyCount * keyListEntrySizeBytes;
  const output = [
    `n = ${keyCount.toLocaleString('en-US')} keys; naive exchange (one side sends every 16-byte (key hash, version hash)): ${formatBytes(naiveBytes)}.`,
    '',
    renderTable(rows, naiveBytes),
    '',
    '| tree shape | segments | memory per tree | ns per insert | ns per version update |',
    '|---|---:|---:|---:|---:|',
    ...timings,
    '',
    `Measured on ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; whole run ${((performance.now() - started) / 1000).toFixed(1)} s.`,
  ].join('\n');
  console.log(output);
  const writeIndex = process.argv.indexOf('--write');
  if (writeIndex >= 0) writeSection(process.argv[writeIndex + 1] ?? 'docs/merkle-exchange.md', output);
}

function writeSection(path: string, output: string): void {
  const document = readFileSync(path, 'utf8');
  const begin = document.indexOf(beginMarker);
  const end = document.indexOf(endMarker);
  if (begin < 0 || end < begin) throw new Error(`${path} lacks the ${beginMarker} ... ${endMarker} section`);
  writeFileSync(path, `${document.slice(0, begin + beginMarker.length)}\n${output}\n${document.slice(end)}`);
}

main();
