// Property tests for the gossiped membership view (membership.ts).
//
// Views are generated the way a cluster makes them: several nodes each hold a view, apply local
// operations (join, leave, the claimant's transitions, removal, heartbeats, new rings) and merge
// each other's views in random order. The naive oracle is the set of operations each view has
// seen (union on merge), with every operation's resulting entry remembered: a view must cover
// every update it has seen, and must show every tombstone it has seen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SeededRandom } from './random.js';
import { compareRings, type Ring } from './ring-state.js';
import {
  advanceStatus,
  bumpHeartbeat,
  claimant,
  createView,
  delta,
  digest,
  findMember,
  join,
  leave,
  markRemoved,
  memberCovers,
  memberState,
  memberStatusOrder,
  mergeDelta,
  mergeMember,
  mergeViews,
  restartMember,
  owningMembers,
  setAttributes,
  setRing,
  viewInvariants,
  type Member,
  type MemberStatus,
  type MembershipView,
  type NewMember,
} from './membership.js';

const nodeIds = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];
/** Nodes n0..n3 hold a view each; n4 and n5 only ever appear as members. */
const holderCount = 4;
const partitionCount = 8;
const commandsMax = 60;
const gossipStepsMax = 10_000;
const numRuns = 300;

type Command =
  | { readonly kind: 'join'; readonly at: number; readonly node: number; readonly variant: number }
  | { readonly kind: 'leave' | 'remove'; readonly at: number; readonly node: number }
  | { readonly kind: 'advance'; readonly at: number; readonly node: number; readonly status: MemberStatus }
  | { readonly kind: 'heartbeat' | 'attributes'; readonly at: number; readonly variant: number }
  | { readonly kind: 'ring'; readonly at: number; readonly seed: number }
  | { readonly kind: 'merge'; readonly from: number; readonly to: number };

/** What one local operation produced: the entry it wrote, or the ring it installed. */
type Update = { readonly kind: 'member'; readonly member: Member; readonly tombstone: boolean } | { readonly kind: 'ring'; readonly ring: Ring };

interface Holder {
  view: MembershipView;
  known: Set<number>;
}

interface World {
  readonly holders: Holder[];
  readonly updates: Update[];
  /** Every view reached, for the lattice laws. */
  readonly pool: MembershipView[];
}

const holderIndex = fc.integer({ min: 0, max: holderCount - 1 });
const nodeIndex = fc.integer({ min: 0, max: nodeIds.length - 1 });
const variant = fc.integer({ min: 0, max: 2 });
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('join' as const), at: holderIndex, node: nodeIndex, variant }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), at: holderIndex, node: nodeIndex }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), at: holderIndex, node: nodeIndex }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('advance' as const), at: holderIndex, node: nodeIndex, status: fc.constantFrom(...memberStatusOrder) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constantFrom('heartbeat' as const, 'attributes' as const), at: holderIndex, variant }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('ring' as const), at: holderIndex, seed: fc.nat() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('merge' as const), from: holderIndex, to: holderIndex }) },
);
const historyArbitrary = fc.array(commandArbitrary, { maxLength: commandsMax, size: 'max' });

function node(index: number, variantIndex = 0): NewMember {
  const nodeId = nodeIds[index] as string;
  return { nodeId, address: { host: `host-${nodeId}`, port: 7000 + variantIndex }, datacenter: `dc${variantIndex % 2}`, weight: 1 + variantIndex };
}

/** Every holder starts from the same view: n0 founded the cluster, n1..n3 joined and are valid. */
function initialView(): MembershipView {
  let view = createView(node(0), partitionCount);
  for (let index = 1; index < holderCount; index++) view = advanceStatus(join(view, node(index)), nodeIds[index] as string, 'valid');
  return view;
}

function newWorld(): World {
  const view = initialView();
  return { holders: Array.from({ length: holderCount }, () => ({ view, known: new Set<number>() })), updates: [], pool: [view] };
}

function holderAt(world: World, index: number): Holder {
  const holder = world.holders[index];
  assert.ok(holder !== undefined);
  return holder;
}

/** A ring the holder's node computes as claimant: the next epoch, owners drawn from its members. */
function nextRing(view: MembershipView, claimantId: string, seed: number): Ring {
  const live = view.members.filter((member) => member.status !== 'removed').map((member) => member.nodeId);
  const candidates = live.length === 0 ? [claimantId] : live;
  const random = new SeededRandom(seed);
  const owners = Array.from({ length: partitionCount }, () => candidates[random.nextInt(candidates.length)] as string);
  return { partitionCount, owners, epoch: view.ring.epoch + 1, claimant: claimantId };
}

function localOperation(view: MembershipView, command: Exclude<Command, { kind: 'merge' }>): MembershipView {
  const self = nodeIds[command.at] as string;
  switch (command.kind) {
    case 'join':
      return join(view, node(command.node, command.variant));
    case 'leave':
      return leave(view, nodeIds[command.node] as string);
    case 'remove':
      return markRemoved(view, nodeIds[command.node] as string);
    case 'advance':
      return advanceStatus(view, nodeIds[command.node] as string, command.status);
    case 'heartbeat':
      return findMember(view, self) === undefined ? view : bumpHeartbeat(view, self);
    case 'attributes': {
      const attributes = node(command.at, command.variant);
      return findMember(view, self) === undefined ? view : setAttributes(view, self, attributes);
    }
    case 'ring':
      return setRing(view, nextRing(view, self, command.seed));
  }
}

/** The node id a local command wrote to, to record the entry it produced. */
function targetOf(command: Exclude<Command, { kind: 'merge' | 'ring' }>): string {
  return nodeIds['node' in command ? command.node : command.at] as string;
}

function apply(world: World, command: Command): void {
  if (command.kind === 'merge') {
    const from = holderAt(world, command.from);
    const to = holderAt(world, command.to);
    to.view = mergeViews(to.view, from.view);
    to.known = new Set([...to.known, ...from.known]);
    world.pool.push(to.view);
    return;
  }
  const holder = holderAt(world, command.at);
  const before = holder.view;
  holder.view = localOperation(before, command);
  world.pool.push(holder.view);
  if (holder.view === before) return;
  let update: Update;
  if (command.kind === 'ring') {
    update = { kind: 'ring', ring: holder.view.ring };
  } else {
    const member = findMember(holder.view, targetOf(command));
    assert.ok(member !== undefined, 'a changed view holds the target');
    update = { kind: 'member', member, tombstone: member.status === 'removed' };
  }
  holder.known.add(world.updates.length);
  world.updates.push(update);
}

function run(commands: readonly Command[], check?: (world: World) => void): World {
  const world = newWorld();
  for (const command of commands) {
    apply(world, command);
    check?.(world);
  }
  return world;
}

/** The oracle: a view covers every update it has seen; a seen tombstone is never undone. */
function checkCoversKnownUpdates(world: World): void {
  for (const holder of world.holders) {
    viewInvariants(holder.view);
    for (const id of holder.known) {
      const update = world.updates[id];
      assert.ok(update !== undefined);
      if (update.kind === 'ring') {
        assert.ok(compareRings(holder.view.ring, update.ring) >= 0, 'a ring the view has seen was lost');
        continue;
      }
      const current = findMember(holder.view, update.member.nodeId);
      assert.ok(current !== undefined, `${update.member.nodeId} vanished from a view`);
      assert.ok(memberCovers(current, update.member), `an update of ${update.member.nodeId} was lost`);
      if (update.tombstone) {
        assert.ok(current.incarnation > update.member.incarnation || current.status === 'removed', `${current.nodeId} resurrected`);
      }
    }
  }
}

function pick<T>(pool: readonly T[], index: number): T {
  const item = pool[index % pool.length];
  assert.ok(item !== undefined);
  return item;
}

const worldWithPicks = fc.tuple(historyArbitrary, fc.nat(), fc.nat(), fc.nat());

test('membership: merge is commutative, associative and idempotent (reachable views, 4 holders, 6 node ids)', () => {
  fc.assert(
    fc.property(worldWithPicks, ([commands, i, j, k]) => {
      const { pool } = run(commands);
      const [a, b, c] = [pick(pool, i), pick(pool, j), pick(pool, k)];
      assert.deepEqual(mergeViews(a, b), mergeViews(b, a));
      assert.deepEqual(mergeViews(mergeViews(a, b), c), mergeViews(a, mergeViews(b, c)));
      assert.deepEqual(mergeViews(a, a), a);
    }),
    { numRuns },
  );
});

test('membership: a merge never loses an update and is an upper bound of both views (reachable views)', () => {
  fc.assert(
    fc.property(worldWithPicks, ([commands, i, j]) => {
      const { pool } = run(commands);
      const [a, b] = [pick(pool, i), pick(pool, j)];
      const merged = mergeViews(a, b);
      viewInvariants(merged);
      for (const side of [a, b]) {
        for (const member of side.members) {
          const entry = findMember(merged, member.nodeId);
          assert.ok(entry !== undefined && memberCovers(entry, member));
        }
        assert.ok(compareRings(merged.ring, side.ring) >= 0);
      }
    }),
    { numRuns },
  );
});

test('membership: every view covers the updates it has seen and removed nodes never resurrect (random histories)', () => {
  fc.assert(
    fc.property(historyArbitrary, (commands) => {
      run(commands, checkCoversKnownUpdates);
    }),
    { numRuns },
  );
});

test('membership: any gossip order of the same updates converges on one view (4 holders, 2 orders)', () => {
  fc.assert(
    fc.property(historyArbitrary, fc.nat(), fc.nat(), (commands, seedA, seedB) => {
      const world = run(commands);
      const finals = [seedA, seedB].map((seed) => gossipToConvergence(world, seed));
      const everything = world.holders.reduceRight((merged, holder) => mergeViews(holder.view, merged), world.holders[0]?.view as MembershipView);
      for (const views of finals) for (const view of views) assert.deepEqual(view, everything);
    }),
    { numRuns },
  );
});

/** Random pairwise gossip until every holder has seen every update (the oracle decides when). */
function gossipToConvergence(world: World, seed: number): MembershipView[] {
  const random = new SeededRandom(seed);
  const holders = world.holders.map((holder) => ({ view: holder.view, known: new Set(holder.known) }));
  const informed = (holder: { known: Set<number> }): boolean => holder.known.size === world.updates.length;
  const origins = holders.map((_, index) => new Set([index]));
  for (let step = 0; step < gossipStepsMax; step++) {
    if (holders.every(informed) && origins.every((origin) => origin.size === holders.length)) break;
    const from = random.nextInt(holders.length);
    const to = random.nextInt(holders.length);
    const [source, target] = [holders[from], holders[to]];
    assert.ok(source !== undefined && target !== undefined);
    target.view = mergeViews(target.view, source.view);
    target.known = new Set([...target.known, ...source.known]);
    origins[to] = new Set([...(origins[to] as Set<number>), ...(origins[from] as Set<number>)]);
  }
  assert.ok(origins.every((origin) => origin.size === holders.length), 'gossip did not reach everyone');
  return holders.map((holder) => holder.view);
}

test('membership: a delta built from a peer digest gives the same view as a full merge (reachable views)', () => {
  fc.assert(
    fc.property(worldWithPicks, ([commands, i, j]) => {
      const { pool } = run(commands);
      const [mine, peer] = [pick(pool, i), pick(pool, j)];
      const sent = delta(mine, digest(peer));
      assert.deepEqual(mergeDelta(peer, sent), mergeViews(peer, mine));
      if (sent.members.length === 0 && sent.ring === undefined) assert.deepEqual(mergeViews(peer, mine), peer);
    }),
    { numRuns },
  );
});

test('membership: a steady cluster exchanges an empty delta (equal views)', () => {
  const view = initialView();
  assert.deepEqual(delta(view, digest(view)), { members: [], ring: undefined });
});

test('membership: a stale valid entry loses to the tombstone (remove, then merge an older view)', () => {
  const before = initialView();
  const removed = markRemoved(before, 'n2');
  const merged = mergeViews(before, removed);
  assert.equal(findMember(merged, 'n2')?.status, 'removed');
  assert.deepEqual(mergeViews(removed, bumpHeartbeat(before, 'n2')).members.find((member) => member.nodeId === 'n2')?.status, 'removed');
});

test('membership: a removed node rejoins only with a new incarnation (join on a view that saw the tombstone)', () => {
  const removed = markRemoved(initialView(), 'n2');
  const rejoined = join(removed, node(2, 1));
  const entry = findMember(rejoined, 'n2');
  assert.equal(entry?.status, 'joining');
  assert.equal(entry?.incarnation, 1);
  assert.equal(findMember(mergeViews(removed, rejoined), 'n2')?.status, 'joining');
  const staleJoin = join(createView(node(0), partitionCount), node(2));
  assert.equal(findMember(mergeViews(staleJoin, removed), 'n2')?.status, 'removed', 'a join that never saw the tombstone loses');
});

test('membership: statuses only move forward (advance to an earlier status is no change)', () => {
  const view = leave(initialView(), 'n1');
  assert.equal(advanceStatus(view, 'n1', 'valid'), view);
  assert.equal(findMember(advanceStatus(view, 'n1', 'exiting'), 'n1')?.status, 'exiting');
  assert.equal(join(view, node(1, 2)), view, 'joining a member is no change');
  assert.equal(leave(view, 'n9'), view, 'an unknown node id is no change');
});

test('membership: heartbeat and status updates at one incarnation both survive (concurrent, two holders)', () => {
  const view = initialView();
  const beat = bumpHeartbeat(bumpHeartbeat(view, 'n1'), 'n1');
  const left = leave(view, 'n1');
  const entry = findMember(mergeViews(beat, left), 'n1') as Member;
  assert.equal(entry.heartbeat, 2);
  assert.equal(entry.status, 'leaving');
  assert.deepEqual(mergeMember(entry, findMember(view, 'n1') as Member), entry);
});

test('membership: the claimant is the lowest valid node believed up (liveness is local)', () => {
  let view = initialView();
  view = join(view, node(4));
  assert.equal(claimant(view, () => true), 'n0');
  assert.equal(claimant(view, (nodeId) => nodeId !== 'n0'), 'n1');
  assert.equal(claimant(leave(view, 'n0'), () => true), 'n1', 'a leaving node is not the claimant');
  assert.equal(claimant(view, (nodeId) => nodeId === 'n4'), undefined, 'a joining node is not the claimant');
  const n1 = findMember(view, 'n1') as Member;
  assert.equal(memberState(n1, () => false), 'down');
  assert.equal(memberState(n1, () => true), 'valid');
  assert.equal(memberState(findMember(markRemoved(view, 'n1'), 'n1') as Member, () => false), 'removed');
});

test('membership: the claim takes joining and valid members only (one leaving, one removed, one joining)', () => {
  const view = markRemoved(leave(join(initialView(), node(4)), 'n1'), 'n2');
  assert.deepEqual(
    owningMembers(view).map((member) => member.nodeId),
    ['n0', 'n3', 'n4'],
  );
});

test('membership: an older ring never replaces a newer one (setRing, merge)', () => {
  const view = initialView();
  const newer = setRing(view, nextRing(view, 'n0', 1));
  assert.equal(newer.ring.epoch, 1);
  assert.equal(setRing(newer, view.ring).ring, newer.ring);
  assert.equal(mergeViews(view, newer).ring, newer.ring);
});

test('membership: restartMember takes the new address and jumps the heartbeat past what peers saw, so the restart wins every merge', () => {
  const address = { host: '127.0.0.1', port: 7000 };
  let view = createView({ nodeId: 'a', address, datacenter: 'dc1', weight: 1 });
  for (let round = 0; round < 50; round++) view = bumpHeartbeat(view, 'a');
  const kept = createView({ nodeId: 'a', address, datacenter: 'dc1', weight: 1 }); // persisted at heartbeat 0
  const restarted = restartMember(kept, 'a', { address: { host: '127.0.0.1', port: 7100 }, datacenter: 'dc1', weight: 1 }, 1_000_000);
  const merged = mergeViews(view, restarted);
  assert.equal(findMember(merged, 'a')?.address.port, 7100);
  assert.equal(findMember(merged, 'a')?.heartbeat, 1_000_000);
  const again = restartMember(restarted, 'a', { address: { host: '127.0.0.1', port: 7100 }, datacenter: 'dc1', weight: 1 }, 5);
  assert.equal(findMember(again, 'a')?.heartbeat, 1_000_001, 'never backwards: a floor below the count bumps by one');
});
