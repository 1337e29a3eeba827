// Measures the ownership-handoff plan (src/core/transfer-plan.ts) on rings made by claim: grows a
// cluster one node at a time (Q = 256, N = 3) and, for each join, counts the partition copies the
// plan sends, as a share of all Q·N copies, against the optimum 1/(S+1) — the new node's share.
// With keys spread evenly over partitions this is the share of the data that moves.
//   npx tsx scripts/transfer-figures.ts
import { claim } from '../src/core/claim.js';
import { singleNodeRing } from '../src/core/ring-state.js';
import { planTransfers } from '../src/core/transfer-plan.js';

const partitionCount = 256;
const n = 3;
const nodeId = (index: number): string => `node${String(index).padStart(2, '0')}`;
const members = (count: number) => Array.from({ length: count }, (_, index) => ({ nodeId: nodeId(index), weight: 1, datacenter: 'dc1' }));

let ring = claim({ ring: singleNodeRing(nodeId(0), partitionCount), members: members(3), nVal: n, claimant: nodeId(0) }).ring;
console.log('| S → S+1 | copies sent | share of all copies | optimum 1/(S+1) | ratio | copies to nodes other than the new one |');
console.log('|---|---|---|---|---|---|');
for (let size = 3; size < 16; size++) {
  const grown = claim({ ring, members: members(size + 1), nVal: n, claimant: nodeId(0) }).ring;
  let sent = 0;
  let toOthers = 0;
  for (let index = 0; index <= size; index++) {
    for (const transfer of planTransfers(ring, grown, nodeId(index), n)) {
      sent += transfer.targets.length;
      toOthers += transfer.targets.filter((target) => target !== nodeId(size)).length;
    }
  }
  const share = sent / (partitionCount * n);
  const optimum = 1 / (size + 1);
  console.log(`| ${size} → ${size + 1} | ${sent} | ${(share * 100).toFixed(2)}% | ${(optimum * 100).toFixed(2)}% | ${(share / optimum).toFixed(3)} | ${toOthers} |`);
  ring = grown;
}
