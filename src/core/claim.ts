import { assert } from './assert.js';
import { isValidPartitionCount, ringInvariants, type Ring } from './ring-state.js';

/**
 * Claim: who owns which partition after a membership change (Dynamo §4.2 virtual nodes with
 * partitioning strategy 3; riak_core's claimant, riak_core_membership_claim / claim_swapping).
 * Only the claimant runs it; every node must get the same answer, so it is a pure function of
 * its input, and members are processed in node-id order, never in Map/Set insertion order.
 *
 * The algorithm (docs/claim.md shows it measured):
 *  1. Targets: node i gets ⌊Q·wᵢ/W⌋ partitions, and the Q − Σ⌊…⌋ left over go one each to the
 *     largest remainders (Hamilton's method); ties go to the node owning more partitions now
 *     (it then keeps one instead of receiving one), then to the lower node id.
 *  2. Release: partitions of nodes that are no longer members become free. When spacing is
 *     achievable (see spacingNodeCountMin), a node holding two partitions closer than N keeps
 *     a maximal N-spaced subset of them and frees the rest (Riak's "tail violations",
 *     basho/riak_core PR #913).
 *  3. Fill free partitions, most constrained first (fewest receivers that would not repeat
 *     within N), each to an under-target node that does not repeat, preferring distinct
 *     datacenters/racks, then the largest deficit.
 *  4. Fill remaining deficits by taking from over-target nodes: the needy node takes, among the
 *     partitions of over-target owners where it would not repeat, the one farthest from the
 *     partitions it has (even spacing keeps later joins easy). Every move of steps 3-4 lands on
 *     a node below target, so a join moves exactly the joiner's target when nothing had to be
 *     released in step 2 and the fill never got stuck.
 *  5. Repair: where the greedy got stuck and left a node repeating within N, swap that
 *     partition's owner with another partition's owner so that both are clean (counts do not
 *     change), preferring swaps that add the fewest moves; bounded by repairRoundsMax.
 * What cannot be met is reported, never hidden: `violations` counts the windows of N
 * consecutive partitions holding a node twice.
 */

export interface ClaimMember {
  readonly nodeId: string;
  /** A positive integer; the node's share of partitions is weight / Σ weights. */
  readonly weight: number;
  readonly datacenter?: string;
  readonly rack?: string;
}

export interface ClaimInput {
  /** The current ring. */
  readonly ring: Ring;
  /** The nodes that own after the change: joining ones included, leaving ones excluded. */
  readonly members: readonly ClaimMember[];
  /** Riak's target_n_val: no N consecutive partitions share a node (when achievable). */
  readonly nVal: number;
  /** The node computing the claim; recorded in the new ring. */
  readonly claimant: string;
}

export interface PartitionMove {
  readonly partition: number;
  readonly from: string;
  readonly to: string;
}

export interface ClaimResult {
  /** The new ring: epoch + 1, computed by the claimant. */
  readonly ring: Ring;
  /** Partitions whose owner changed, in partition order. */
  readonly moves: readonly PartitionMove[];
  /** Windows of nVal consecutive partitions (wrapping) that hold some node twice. */
  readonly violations: number;
  /** Whether zero violations is achievable for this Q, nVal and set of targets. */
  readonly spacingAchievable: boolean;
}

export const nValMax = 8;
export const weightMax = 1_000_000;
/** Passes over the ring in the repair step; each pass is O(Q² · nVal) in the worst case. */
export const repairRoundsMax = 4;

/** Working state, by node index (members sorted by id); -1 marks a free partition. */
interface Plan {
  readonly partitionCount: number;
  readonly nVal: number;
  readonly owners: Int32Array;
  /** Owner index before the claim; -1 for a node that is no longer a member. */
  readonly original: Int32Array;
  /** target − owned: positive needs partitions, negative has surplus. */
  readonly deficit: Int32Array;
  /** 1 for a node of the swing group that may still take one of the spare extras. */
  readonly swing: Uint8Array;
  /** Extras of the swing group not yet given (see swingGroup). */
  spare: number;
  /** Location classes per node, -1 when unknown; the rack class includes its datacenter. */
  readonly datacenter: Int32Array;
  readonly rack: Int32Array;
}

export function claim(input: ClaimInput): ClaimResult {
  const { ring, nVal } = input;
  ringInvariants(ring);
  assert(Number.isInteger(nVal) && nVal >= 1 && nVal <= nValMax && nVal * 2 <= ring.partitionCount, () => `nVal must be an integer in [1, ${nValMax}] and at most Q/2`);
  assert(input.claimant.length > 0, 'claimant must not be empty');
  const members = sortedMembers(input.members);
  const indexOf = new Map(members.map((member, index) => [member.nodeId, index]));
  const original = Int32Array.from(ring.owners, (owner) => indexOf.get(owner) ?? -1);
  const targets = targetCounts(members, ring.partitionCount, countsOf(original, members.length));
  const swing = swingGroup(members, ring.partitionCount, countsOf(original, members.length), targets);
  const spacingAchievable = members.length >= spacingNodeCountMin(ring.partitionCount, nVal) && Math.max(...targets) * nVal <= ring.partitionCount;
  // Below the minimum but with at least nVal nodes (e.g. 3 nodes, nVal 3, Q = 64), some windows
  // must repeat a node; claim still spaces the rest, trading moves for fewer violations.
  const spacingPursued = members.length >= nVal;

  // The fewest moves any assignment meeting the targets can make: each node's shortfall.
  const originalCounts = countsOf(original, members.length);
  const moveCountMin = targets.reduce((sum, target, node) => sum + Math.max(0, target - (originalCounts[node] as number)), 0);
  let best: PlanOutcome | undefined;
  for (const attempt of attempts(original, members.length, spacingPursued)) {
    const outcome = plan({ members, nVal, targets, swing, original, spacingPursued, ...attempt });
    if (best === undefined || outcome.violations < best.violations || (outcome.violations === best.violations && outcome.moveCount < best.moveCount)) best = outcome;
    if ((best.violations === 0 || !spacingPursued) && best.moveCount === moveCountMin) break;
  }
  assert(best !== undefined && best.moveCount >= moveCountMin, 'claim: no plan, or one below the lower bound on moves');

  const owners = Array.from(best.owners, (node) => (members[node] as ClaimMember).nodeId);
  const moves: PartitionMove[] = [];
  owners.forEach((to, partition) => {
    const from = ring.owners[partition] as string;
    if (from !== to) moves.push({ partition, from, to });
  });
  const next: Ring = { partitionCount: ring.partitionCount, owners, epoch: ring.epoch + 1, claimant: input.claimant };
  ringInvariants(next);
  assert(moves.length === best.moveCount, 'claim: move count disagrees with the plan');
  return { ring: next, moves, violations: best.violations, spacingAchievable };
}

interface PlanInput {
  readonly members: readonly ClaimMember[];
  readonly nVal: number;
  readonly targets: readonly number[];
  readonly swing: SwingGroup;
  readonly original: Int32Array;
  /** The owners the plan starts from: the original ones, or the striped fallback. */
  readonly start: Int32Array;
  readonly spacing: SpacingStrategy;
  readonly spacingPursued: boolean;
}

/**
 * How fillDeficits spreads a needy node's new partitions: 'farthest' takes the partition
 * farthest from those it owns (farthest-point sampling: good gaps while the node owns few);
 * 'stride' treats every partition at least its ideal stride Q / target away as equally good and
 * takes the lowest-numbered, sweeping clockwise on a lattice, which packs tightly when the
 * target is close to Q / nVal (e.g. the 5th node with nVal 4).
 */
type SpacingStrategy = 'farthest' | 'stride';

/**
 * The starting points and strategies claim tries, in order, until one is optimal: the greedy
 * from the current owners; then, only when spacing is achievable, from the striped ring — what
 * Riak's claim_v2 does when it cannot meet target_n_val (claim_rebalance, "diagonal stripes").
 */
function* attempts(original: Int32Array, nodeCount: number, spacingPursued: boolean): Generator<{ start: Int32Array; spacing: SpacingStrategy }> {
  yield { start: original, spacing: 'farthest' };
  yield { start: original, spacing: 'stride' };
  if (!spacingPursued) return;
  const striped = stripedOwners(original, nodeCount);
  yield { start: striped, spacing: 'farthest' };
  yield { start: striped, spacing: 'stride' };
}

interface PlanOutcome {
  readonly owners: Int32Array;
  readonly violations: number;
  readonly moveCount: number;
}

/** Steps 2-5 of the algorithm, from one starting assignment. */
function plan(input: PlanInput): PlanOutcome {
  const counts = countsOf(input.start, input.members.length);
  const state: Plan = {
    partitionCount: input.start.length,
    nVal: input.nVal,
    owners: Int32Array.from(input.start),
    original: input.original,
    // A winner of the swing group starts without its extra: the extras are the shared `spare`.
    deficit: Int32Array.from(input.targets, (target, node) => target - (counts[node] as number) - (input.swing.winners.includes(node) ? 1 : 0)),
    swing: Uint8Array.from(input.targets, (_, node) => (input.swing.group.includes(node) ? 1 : 0)),
    spare: input.swing.winners.length,
    datacenter: locationClasses(input.members, (member) => member.datacenter),
    rack: locationClasses(input.members, (member) => (member.rack === undefined ? undefined : `${member.datacenter ?? ''}\u0000${member.rack}`)),
  };
  if (input.spacingPursued) releaseViolators(state);
  fillFree(state);
  settleSpare(state);
  fillDeficits(state, input.spacing, input.targets);
  if (input.spacingPursued) repairViolations(state);
  assert(state.deficit.every((deficit) => deficit === 0), 'claim must meet every target');
  const finalCounts = countsOf(state.owners, input.members.length);
  assert(finalCounts.every((count, node) => count === input.targets[node] || (input.swing.group.includes(node) && count - (input.targets[node] as number) === (input.swing.winners.includes(node) ? -1 : 1))), 'claim: owned counts differ from targets');
  let moveCount = 0;
  state.owners.forEach((node, partition) => {
    if (node !== input.original[partition]) moveCount += 1;
  });
  return { owners: state.owners, violations: countViolations(state), moveCount };
}

function countsOf(owners: Int32Array, nodeCount: number): number[] {
  const counts = new Array<number>(nodeCount).fill(0);
  for (const node of owners) if (node >= 0) counts[node]! += 1;
  return counts;
}

function locationClasses(members: readonly ClaimMember[], key: (member: ClaimMember) => string | undefined): Int32Array {
  const ids = new Map<string, number>();
  return Int32Array.from(members, (member) => {
    const name = key(member);
    if (name === undefined) return -1;
    if (!ids.has(name)) ids.set(name, ids.size);
    return ids.get(name) as number;
  });
}

/**
 * Round-robin owners: partition p goes to the node matched with residue class p mod S. Classes
 * are matched to nodes greedily by how many partitions the node already owns in the class (a
 * maximal-weight matching, approximately), so the most partitions stay where they are. Only
 * the wrap-around (when S does not divide Q) can repeat within nVal; the release and fill
 * steps repair it.
 */
function stripedOwners(original: Int32Array, nodeCount: number): Int32Array {
  const overlap = Array.from({ length: nodeCount * nodeCount }, () => 0);
  original.forEach((node, partition) => {
    if (node >= 0) overlap[(partition % nodeCount) * nodeCount + node]! += 1;
  });
  const pairs = overlap.map((_, pair) => pair);
  pairs.sort((a, b) => (overlap[b] as number) - (overlap[a] as number) || a - b);
  const nodeOfClass = new Int32Array(nodeCount).fill(-1);
  const matched = new Uint8Array(nodeCount);
  for (const pair of pairs) {
    const residue = Math.floor(pair / nodeCount);
    const node = pair % nodeCount;
    if (nodeOfClass[residue] !== -1 || matched[node] === 1) continue;
    nodeOfClass[residue] = node;
    matched[node] = 1;
  }
  return Int32Array.from(original, (_, partition) => nodeOfClass[partition % nodeCount] as number);
}

function countViolations(state: Plan): number {
  const { partitionCount, nVal, owners } = state;
  let violations = 0;
  for (let start = 0; start < partitionCount; start++) {
    let repeated = false;
    for (let first = 0; first < nVal && !repeated; first++) {
      for (let second = first + 1; second < nVal; second++) {
        if (owners[(start + first) % partitionCount] === owners[(start + second) % partitionCount]) repeated = true;
      }
    }
    if (repeated) violations += 1;
  }
  return violations;
}

function sortedMembers(members: readonly ClaimMember[]): ClaimMember[] {
  assert(members.length > 0, 'a ring needs at least one member');
  const sorted = [...members].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  sorted.forEach((member, index) => {
    assert(member.nodeId.length > 0, 'node id must not be empty');
    assert(index === 0 || (sorted[index - 1] as ClaimMember).nodeId !== member.nodeId, () => `duplicate member ${member.nodeId}`);
    assert(Number.isInteger(member.weight) && member.weight >= 1 && member.weight <= weightMax, () => `weight of ${member.nodeId} must be an integer in [1, ${weightMax}]`);
  });
  return sorted;
}

/**
 * Hamilton's largest-remainder apportionment of Q partitions by weight. Exact in integers:
 * Q·w ≤ 4096·10⁶. `counts` (partitions owned now, by member index) breaks ties so that a node
 * already holding more keeps the extra partition instead of another node receiving it.
 */
export function targetCounts(members: readonly ClaimMember[], partitionCount: number, counts: readonly number[]): number[] {
  const weightTotal = members.reduce((sum, member) => sum + member.weight, 0);
  const targets = members.map((member) => Math.floor((partitionCount * member.weight) / weightTotal));
  const remainders = members.map((member) => (partitionCount * member.weight) % weightTotal);
  const order = members.map((_, index) => index);
  order.sort((a, b) => (remainders[b] as number) - (remainders[a] as number) || (counts[b] ?? 0) - (counts[a] ?? 0) || a - b);
  let left = partitionCount - targets.reduce((sum, target) => sum + target, 0);
  assert(left >= 0 && left < members.length, 'largest remainder leaves fewer than one per member');
  for (const index of order) {
    if (left === 0) break;
    targets[index]! += 1;
    left -= 1;
  }
  return targets;
}

interface SwingGroup {
  /** Node indices tied at the boundary of the largest-remainder tie-break. */
  readonly group: readonly number[];
  /** Those of them that targetCounts gave the extra partition (by node id). */
  readonly winners: readonly number[];
}

/**
 * The nodes tied at the boundary of targetCounts' tie-break (same remainder, same count): which
 * of them get the extra partition is arbitrary (node id), so the fill may choose instead, giving
 * the `spare` extras to whichever tied nodes can take a free partition without repeating. This
 * is what lets a leave move only the leaver's partitions.
 */
function swingGroup(members: readonly ClaimMember[], partitionCount: number, counts: readonly number[], targets: readonly number[]): SwingGroup {
  const weightTotal = members.reduce((sum, member) => sum + member.weight, 0);
  const remainder = (index: number): number => (partitionCount * (members[index] as ClaimMember).weight) % weightTotal;
  const base = (index: number): number => Math.floor((partitionCount * (members[index] as ClaimMember).weight) / weightTotal);
  const winners = members.map((_, index) => index).filter((index) => targets[index] === base(index) + 1);
  const losers = members.map((_, index) => index).filter((index) => targets[index] === base(index) && remainder(index) > 0);
  const lastWinner = winners[winners.length - 1];
  const tied = (a: number, b: number): boolean => remainder(a) === remainder(b) && counts[a] === counts[b];
  // The boundary tie: the weakest winner and every node tied with it, on either side.
  let weakest = lastWinner;
  for (const index of winners) {
    const key = (i: number): number[] => [-remainder(i), -(counts[i] as number), i];
    if (weakest === undefined || lexicographicLess(key(weakest), key(index))) weakest = index;
  }
  if (weakest === undefined || !losers.some((index) => tied(index, weakest))) return { group: [], winners: [] };
  const group = [...winners, ...losers].filter((index) => tied(index, weakest)).sort((a, b) => a - b);
  return { group, winners: group.filter((index) => targets[index] === base(index) + 1) };
}

/**
 * The fewest nodes with which no nVal consecutive partitions of a ring of Q repeat a node: the
 * chromatic number of the (nVal−1)-th power of the cycle C_Q, nVal + ⌈r/q⌉ where Q = q·nVal + r
 * (Prowse & Woodall, "Choosability of powers of circuits", 2003). For Q = 64 and nVal = 3 it is
 * 4: three nodes always leave a tail violation, because 3 does not divide 64.
 */
export function spacingNodeCountMin(partitionCount: number, nVal: number): number {
  assert(isValidPartitionCount(partitionCount) && nVal >= 1 && nVal * 2 <= partitionCount, 'spacingNodeCountMin: arguments out of range');
  const quotient = Math.floor(partitionCount / nVal);
  const remainder = partitionCount % nVal;
  return nVal + Math.ceil(remainder / quotient);
}

/** Windows of nVal consecutive partitions, wrapping around the ring, that hold a node twice. */
export function countSpacingViolations(owners: readonly string[], nVal: number): number {
  let violations = 0;
  for (let start = 0; start < owners.length; start++) {
    const seen = new Set<string>();
    for (let offset = 0; offset < nVal; offset++) seen.add(owners[(start + offset) % owners.length] as string);
    if (seen.size < Math.min(nVal, owners.length)) violations += 1;
  }
  return violations;
}

function assign(plan: Plan, partition: number, node: number): void {
  const previous = plan.owners[partition] as number;
  assert(previous !== node, 'assign: node already owns the partition');
  if (previous >= 0) plan.deficit[previous]! += 1;
  plan.owners[partition] = node;
  plan.deficit[node]! -= 1;
}

/** How many of the partitions within nVal − 1 of `partition` (either side) `node` owns. */
function conflicts(plan: Plan, partition: number, node: number): number {
  const { partitionCount, nVal, owners } = plan;
  let count = 0;
  for (let offset = 1; offset < nVal; offset++) {
    if (owners[(partition + offset) % partitionCount] === node) count += 1;
    if (owners[(partition - offset + partitionCount) % partitionCount] === node) count += 1;
  }
  return count;
}

/**
 * Best effort datacenter/rack diversity (Riak's target_location_n_val, claim v4): how many
 * neighbours within nVal − 1 share `node`'s datacenter, weighted above those sharing its rack,
 * so distinct datacenters come first and distinct racks second.
 */
function locationPenalty(plan: Plan, partition: number, node: number): number {
  const { partitionCount, nVal, owners, datacenter, rack } = plan;
  const myDatacenter = datacenter[node] as number;
  const myRack = rack[node] as number;
  if (myDatacenter < 0 && myRack < 0) return 0;
  let penalty = 0;
  for (let offset = 1 - nVal; offset < nVal; offset++) {
    const neighbour = owners[(partition + offset + partitionCount) % partitionCount] as number;
    if (offset === 0 || neighbour < 0 || neighbour === node) continue;
    if (myDatacenter >= 0 && datacenter[neighbour] === myDatacenter) penalty += 4 * nVal;
    if (myRack >= 0 && rack[neighbour] === myRack) penalty += 1;
  }
  return penalty;
}

/**
 * Frees partitions of non-members (already -1) and, per node, every partition outside a
 * maximal N-spaced subset: walk the node's partitions clockwise starting after its largest gap
 * (so the wrap-around is the roomiest place), keep one when it is at least N past the last kept.
 */
function releaseViolators(plan: Plan): void {
  const { partitionCount, nVal, owners } = plan;
  const positions: number[][] = Array.from(plan.deficit, () => []);
  owners.forEach((node, partition) => {
    if (node >= 0) positions[node]!.push(partition);
  });
  for (const mine of positions) {
    if (mine.length < 2) continue;
    let start = 0;
    let gapMax = -1;
    mine.forEach((partition, index) => {
      const gap = ((mine[(index + 1) % mine.length] as number) - partition + partitionCount) % partitionCount;
      if (gap > gapMax) [gapMax, start] = [gap, (index + 1) % mine.length];
    });
    const first = mine[start] as number;
    let last = first;
    for (let step = 1; step < mine.length; step++) {
      const partition = mine[(start + step) % mine.length] as number;
      const fromLast = (partition - last + partitionCount) % partitionCount;
      const toFirst = (first - partition + partitionCount) % partitionCount;
      if (fromLast >= nVal && toFirst >= nVal) last = partition;
      else release(plan, partition);
    }
  }
}

function release(plan: Plan, partition: number): void {
  const node = plan.owners[partition] as number;
  plan.owners[partition] = -1;
  plan.deficit[node]! += 1;
}

/**
 * Gives every free partition to an under-target node, the most constrained partition first
 * (fewest needy nodes that would not repeat within nVal), like DSatur graph colouring.
 */
function fillFree(plan: Plan): void {
  const free: number[] = [];
  plan.owners.forEach((node, partition) => {
    if (node < 0) free.push(partition);
  });
  const filled = new Uint8Array(plan.partitionCount);
  while (free.length > 0) {
    let chosen = 0;
    let fewest = Infinity;
    free.forEach((partition, index) => {
      const candidates = cleanReceivers(plan, partition);
      if (candidates < fewest) [fewest, chosen] = [candidates, index];
    });
    const partition = free.splice(chosen, 1)[0] as number;
    // No clean receiver left: before accepting a repeat, look for an augmenting path
    // (Kuhn's bipartite matching) that shifts earlier choices of this step along.
    if (fewest === 0 && augment(plan, partition, filled, new Uint8Array(plan.deficit.length))) {
      filled[partition] = 1;
      continue;
    }
    let best = -1;
    let bestKey: number[] = [];
    plan.deficit.forEach((deficit, node) => {
      if (!canReceive(plan, node)) return;
      const key = [conflicts(plan, partition, node), locationPenalty(plan, partition, node), -deficit];
      if (best < 0 || lexicographicLess(key, bestKey)) [best, bestKey] = [node, key];
    });
    assert(best >= 0, 'fillFree: a free partition but no node below target');
    receive(plan, partition, best);
    filled[partition] = 1;
  }
}

/**
 * Gives the free `partition` to a node that does not repeat there: one below target, or one
 * that hands a partition it got earlier in this fill (`filled`) on to another node, recursively.
 * Each node is visited once per search, so the depth is at most S.
 */
function augment(plan: Plan, partition: number, filled: Uint8Array, visited: Uint8Array): boolean {
  const { owners, deficit } = plan;
  for (let node = 0; node < deficit.length; node++) {
    if (canReceive(plan, node) && conflicts(plan, partition, node) === 0) {
      receive(plan, partition, node);
      return true;
    }
  }
  for (let node = 0; node < deficit.length; node++) {
    if (visited[node] === 1) continue;
    visited[node] = 1;
    for (let handed = 0; handed < plan.partitionCount; handed++) {
      if (filled[handed] !== 1 || owners[handed] !== node) continue;
      owners[handed] = -1;
      if (conflicts(plan, partition, node) === 0) {
        owners[partition] = node;
        if (augment(plan, handed, filled, visited)) return true;
        owners[partition] = -1;
      }
      owners[handed] = node;
    }
  }
  return false;
}

/** Whether `node` may take one more partition: below target, or a swing node and extras left. */
function canReceive(plan: Plan, node: number): boolean {
  return (plan.deficit[node] as number) > 0 || (plan.swing[node] === 1 && plan.spare > 0);
}

/** Gives a free partition to a node that canReceive, using a spare extra when it is at target. */
function receive(plan: Plan, partition: number, node: number): void {
  assert(plan.owners[partition] === -1 && canReceive(plan, node), 'receive: partition not free or node full');
  if ((plan.deficit[node] as number) === 0) {
    plan.swing[node] = 0;
    plan.spare -= 1;
    plan.deficit[node] = 1;
  }
  plan.owners[partition] = node;
  plan.deficit[node]! -= 1;
}

/**
 * After the free partitions are placed, the swing extras nobody took go to the swing nodes in
 * node-id order (the tie-break of targetCounts); fillDeficits then serves them.
 */
function settleSpare(plan: Plan): void {
  for (let node = 0; node < plan.swing.length && plan.spare > 0; node++) {
    if (plan.swing[node] !== 1) continue;
    plan.swing[node] = 0;
    plan.spare -= 1;
    plan.deficit[node]! += 1;
  }
  assert(plan.spare === 0, 'settleSpare: extras left over');
}

/** Under-target nodes that could take `partition` without repeating within nVal. */
function cleanReceivers(plan: Plan, partition: number): number {
  let needy = 0;
  plan.deficit.forEach((_, node) => {
    if (canReceive(plan, node)) needy += 1;
  });
  const blocked: number[] = [];
  for (let offset = 1 - plan.nVal; offset < plan.nVal; offset++) {
    const neighbour = plan.owners[(partition + offset + plan.partitionCount) % plan.partitionCount] as number;
    if (offset !== 0 && neighbour >= 0 && canReceive(plan, neighbour) && !blocked.includes(neighbour)) blocked.push(neighbour);
  }
  return needy - blocked.length;
}

/**
 * Meets the remaining deficits from over-target nodes. The neediest node (lowest id on ties)
 * takes, among partitions of over-target owners, the one where it does not repeat, then with
 * the fewest location clashes, then farthest from what it owns, then from the owner with the
 * largest surplus, then the lowest partition.
 */
function fillDeficits(plan: Plan, spacing: SpacingStrategy, targets: readonly number[]): void {
  for (;;) {
    let needy = -1;
    plan.deficit.forEach((deficit, node) => {
      if (deficit > 0 && (needy < 0 || deficit > (plan.deficit[needy] as number))) needy = node;
    });
    if (needy < 0) return;
    const distance = distanceToOwned(plan, needy);
    const stride = spacing === 'stride' ? Math.max(plan.nVal, Math.floor(plan.partitionCount / (targets[needy] as number))) : plan.partitionCount;
    let best = -1;
    let bestKey: number[] = [];
    plan.owners.forEach((owner, partition) => {
      if (owner < 0 || (plan.deficit[owner] as number) >= 0) return;
      const key = [conflicts(plan, partition, needy), locationPenalty(plan, partition, needy), -Math.min(distance[partition] as number, stride), plan.deficit[owner] as number];
      if (best < 0 || lexicographicLess(key, bestKey)) [best, bestKey] = [partition, key];
    });
    assert(best >= 0, 'fillDeficits: a node below target but none above');
    assign(plan, best, needy);
  }
}

/** Circular distance from each partition to the nearest partition `node` owns (Q if none). */
function distanceToOwned(plan: Plan, node: number): Int32Array {
  const { partitionCount, owners } = plan;
  const distance = new Int32Array(partitionCount).fill(partitionCount);
  let last = -1;
  for (let step = 0; step < 2 * partitionCount; step++) {
    const partition = step % partitionCount;
    if (owners[partition] === node) last = step;
    if (last >= 0) distance[partition] = Math.min(distance[partition] as number, step - last);
  }
  last = -1;
  for (let step = 2 * partitionCount - 1; step >= 0; step--) {
    const partition = step % partitionCount;
    if (owners[partition] === node) last = step;
    if (last >= 0) distance[partition] = Math.min(distance[partition] as number, last - step);
  }
  return distance;
}

/**
 * Swaps owners of two partitions so that neither repeats within nVal; counts are unchanged, so
 * balance holds. Prefers the swap that adds the fewest moves (a partition back to its original
 * owner removes one), then the lowest partition.
 */
function repairViolations(plan: Plan): void {
  const { partitionCount, owners, original } = plan;
  const moved = (partition: number, node: number): number => (original[partition] === node ? 0 : 1);
  for (let round = 0; round < repairRoundsMax; round++) {
    let swapped = false;
    for (let bad = 0; bad < partitionCount; bad++) {
      const mine = owners[bad] as number;
      if (conflicts(plan, bad, mine) === 0) continue;
      let best = -1;
      let bestCost = Infinity;
      for (let other = 0; other < partitionCount; other++) {
        const theirs = owners[other] as number;
        if (theirs === mine) continue;
        [owners[bad], owners[other]] = [theirs, mine];
        const clean = conflicts(plan, bad, theirs) === 0 && conflicts(plan, other, mine) === 0;
        [owners[bad], owners[other]] = [mine, theirs];
        if (!clean) continue;
        const cost = moved(bad, theirs) + moved(other, mine) - moved(bad, mine) - moved(other, theirs);
        if (cost < bestCost) [best, bestCost] = [other, cost];
      }
      if (best < 0) continue;
      [owners[bad], owners[best]] = [owners[best] as number, mine];
      swapped = true;
    }
    if (!swapped) return;
  }
}

function lexicographicLess(a: readonly number[], b: readonly number[]): boolean {
  for (let index = 0; index < a.length; index++) {
    if (a[index] !== b[index]) return (a[index] as number) < (b[index] as number);
  }
  return false;
}
