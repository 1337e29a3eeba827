import { assert } from './assert.js';
import { reconcileRing, ringInvariants, singleNodeRing, type Ring } from './ring-state.js';

/**
 * The membership view that gossip spreads (Dynamo §4.8.1; riak_core's ring members): who is in
 * the cluster, where to reach them, and the current ring. Every node holds a view, changes it
 * locally (join, leave, heartbeat, the claimant's transitions) and merges the views of its peers.
 * `mergeViews` is a join-semilattice merge (a state-based CRDT): commutative, associative and
 * idempotent, so gossip in any order, with duplicates and losses, converges on one view.
 *
 * Status and liveness are kept apart, as Riak does (member status in the ring, liveness in
 * riak_core_node_watcher) and as Cassandra does (UP/DOWN is a local decision, not gossiped):
 *
 * - `status` is the node's place in the cluster's life cycle, decided by operators and the
 *   claimant. It only moves forward, joining → valid → leaving → exiting → removed, so it is a
 *   lattice and merges by maximum.
 * - "down" is a judgement of the local phi-accrual failure detector, fed by `heartbeat`. It goes
 *   back and forth, so it cannot be merged monotonically; gossiping it would let one node's stale
 *   opinion override another's fresh one. `memberState` combines both into the five states the
 *   issue lists (joining, valid, leaving, exiting, down) for display and the claimant.
 *
 * Removal is a tombstone: `removed` stays in the view for the cluster's life, so a view that
 * still holds the node as valid cannot bring it back by gossip (the tombstone wins the merge at
 * the same incarnation). A removed node id may join again only with a higher `incarnation`,
 * which `join` takes from the tombstone; a join made on a view that has not seen the tombstone
 * reuses the old incarnation and loses to it, and must be retried. Tombstones are about a
 * hundred bytes each and a cluster sees at most `membersMax` node ids, so they are not reaped.
 */
export type MemberStatus = 'joining' | 'valid' | 'leaving' | 'exiting' | 'removed';

/** The status lattice, lowest first: a merge keeps the later of two statuses. */
export const memberStatusOrder: readonly MemberStatus[] = ['joining', 'valid', 'leaving', 'exiting', 'removed'];

/** What a node is from one observer's point of view: its status, or down if it is not removed. */
export type MemberState = MemberStatus | 'down';

/** Node ids a view may hold over the cluster's life, tombstones included. */
export const membersMax = 1024;

export interface Address {
  readonly host: string;
  readonly port: number;
}

/** What a node says about itself; only the node itself changes these (see `setAttributes`). */
export interface MemberAttributes {
  readonly address: Address;
  readonly datacenter: string;
  /** A positive integer: the node's share of partitions is weight / Σ weights (claim.ts). */
  readonly weight: number;
}

export interface NewMember extends MemberAttributes {
  readonly nodeId: string;
}

export interface Member extends NewMember {
  /** One life of this node id in the cluster; a higher incarnation supersedes everything else. */
  readonly incarnation: number;
  readonly status: MemberStatus;
  /** Bumped by the node itself every gossip round; a new value is a heartbeat arrival. */
  readonly heartbeat: number;
}

export interface MembershipView {
  /** Sorted by node id, one entry per node id. */
  readonly members: readonly Member[];
  readonly ring: Ring;
}

/** The view of a new cluster: its founder, valid, owning the whole ring. */
export function createView(founder: NewMember, partitionCount?: number): MembershipView {
  const member: Member = { ...copyNewMember(founder), incarnation: 0, status: 'valid', heartbeat: 0 };
  assertMember(member);
  return { members: [member], ring: singleNodeRing(founder.nodeId, partitionCount) };
}

export function findMember(view: MembershipView, nodeId: string): Member | undefined {
  return view.members.find((member) => member.nodeId === nodeId);
}

/**
 * Adds `node` as joining. A node id that is already a member is left as it is (joining twice is
 * not an error); a removed one starts a new incarnation, carrying its heartbeat forward so that
 * heartbeats stay monotonic for failure detectors.
 */
export function join(view: MembershipView, node: NewMember): MembershipView {
  const existing = findMember(view, node.nodeId);
  if (existing !== undefined && existing.status !== 'removed') return view;
  const member: Member = {
    ...copyNewMember(node),
    incarnation: existing === undefined ? 0 : existing.incarnation + 1,
    status: 'joining',
    heartbeat: existing === undefined ? 0 : existing.heartbeat,
  };
  assertMember(member);
  return replaceMember(view, member);
}

/** An operator asks `nodeId` to leave; the claimant moves it on to exiting after handoff. */
export function leave(view: MembershipView, nodeId: string): MembershipView {
  return advanceStatus(view, nodeId, 'leaving');
}

/** Tombstones `nodeId` (after it exited, or a force-remove of a dead node). */
export function markRemoved(view: MembershipView, nodeId: string): MembershipView {
  return advanceStatus(view, nodeId, 'removed');
}

/**
 * Moves `nodeId` forward to `status` (the claimant's joining → valid and leaving → exiting).
 * A status behind the current one is no change: the lattice only moves forward, which is what
 * makes an operation issued from a stale view harmless. An unknown node id is no change either.
 */
export function advanceStatus(view: MembershipView, nodeId: string, status: MemberStatus): MembershipView {
  const existing = findMember(view, nodeId);
  if (existing === undefined || statusRank(existing.status) >= statusRank(status)) return view;
  return replaceMember(view, { ...existing, status });
}

/** The node itself, once per gossip round. */
export function bumpHeartbeat(view: MembershipView, nodeId: string): MembershipView {
  const existing = findMember(view, nodeId);
  assert(existing !== undefined, () => `bumpHeartbeat: ${nodeId} is not in the view`);
  return replaceMember(view, { ...existing, heartbeat: existing.heartbeat + 1 });
}

/**
 * The node itself, starting again from a kept view: its heartbeat jumps to at least `floor` (the
 * runtime passes its wall clock in milliseconds, which grows faster than one beat per round), so
 * that peers, which saw the beats of its previous run, take the new ones as arrivals at once
 * instead of ignoring them until the count catches up; its attributes are those it runs with now
 * (a restart may bring a new address).
 */
export function restartMember(view: MembershipView, nodeId: string, attributes: MemberAttributes, floor: number): MembershipView {
  const existing = findMember(view, nodeId);
  assert(existing !== undefined, () => `restartMember: ${nodeId} is not in the view`);
  assert(Number.isSafeInteger(floor) && floor >= 0, 'restartMember: floor must be a natural number');
  const member: Member = { ...existing, ...copyNewMember({ nodeId, ...attributes }), heartbeat: Math.max(existing.heartbeat + 1, floor) };
  assertMember(member);
  return replaceMember(view, member);
}

/**
 * The node itself announces a new address, datacenter or weight. They travel with the
 * heartbeat (the newer heartbeat's attributes win a merge), so only the node may call this.
 */
export function setAttributes(view: MembershipView, nodeId: string, attributes: MemberAttributes): MembershipView {
  const existing = findMember(view, nodeId);
  assert(existing !== undefined, () => `setAttributes: ${nodeId} is not in the view`);
  const member: Member = { ...existing, ...copyNewMember({ nodeId, ...attributes }), heartbeat: existing.heartbeat + 1 };
  assertMember(member);
  return replaceMember(view, member);
}

/** Installs a ring computed by the claimant; a ring older than the view's is ignored. */
export function setRing(view: MembershipView, ring: Ring): MembershipView {
  ringInvariants(ring);
  return { members: view.members, ring: reconcileRing(view.ring, ring) };
}

/** The join of two views: per node id the merged entry, and the reconciled ring. */
export function mergeViews(a: MembershipView, b: MembershipView): MembershipView {
  const members: Member[] = [];
  let indexA = 0;
  let indexB = 0;
  while (indexA < a.members.length || indexB < b.members.length) {
    const memberA = a.members[indexA];
    const memberB = b.members[indexB];
    if (memberB === undefined || (memberA !== undefined && memberA.nodeId < memberB.nodeId)) {
      members.push(memberA as Member);
      indexA++;
    } else if (memberA === undefined || memberB.nodeId < memberA.nodeId) {
      members.push(memberB);
      indexB++;
    } else {
      members.push(mergeMember(memberA, memberB));
      indexA++;
      indexB++;
    }
  }
  assert(members.length <= membersMax, () => `a view holds more than ${membersMax} node ids`);
  return { members, ring: reconcileRing(a.ring, b.ring) };
}

/**
 * The join of two entries of one node id. A higher incarnation wins whole (a new life of the
 * node id). At equal incarnations the two halves merge independently, so neither update is
 * lost: the status by the lattice, and (heartbeat, attributes) by the higher heartbeat, ties
 * broken by the attributes' text so the choice is the same on every node.
 */
export function mergeMember(a: Member, b: Member): Member {
  assert(a.nodeId === b.nodeId, 'mergeMember: entries of different nodes');
  if (a.incarnation !== b.incarnation) return a.incarnation > b.incarnation ? a : b;
  const status = statusRank(a.status) >= statusRank(b.status) ? a.status : b.status;
  const newer = a.heartbeat > b.heartbeat || (a.heartbeat === b.heartbeat && attributesKey(a) >= attributesKey(b)) ? a : b;
  if (newer.status === status) return newer;
  return { ...newer, status };
}

/** True when merging `b` into `a` changes nothing (b ≤ a in the lattice). */
export function memberCovers(a: Member, b: Member): boolean {
  const merged = mergeMember(a, b);
  return merged.status === a.status && merged.heartbeat === a.heartbeat && merged.incarnation === a.incarnation && attributesKey(merged) === attributesKey(a);
}

/** The node as one observer sees it: down when its failure detector convicts a live member. */
export function memberState(member: Member, isUp: (nodeId: string) => boolean): MemberState {
  if (member.status === 'removed') return 'removed';
  return isUp(member.nodeId) ? member.status : 'down';
}

/**
 * The claimant (riak_core_claimant): the lowest node id among valid members this node believes
 * up. Every node with the same view and the same liveness picks the same one; during a
 * partition two may act, and `reconcileRing`'s total order settles which ring survives.
 */
export function claimant(view: MembershipView, isUp: (nodeId: string) => boolean): string | undefined {
  return view.members.find((member) => member.status === 'valid' && isUp(member.nodeId))?.nodeId;
}

/**
 * The members that own partitions after the pending changes: joining and valid ones, not
 * leaving, exiting or removed (what claim.ts takes as `members`; a Member is a ClaimMember).
 */
export function owningMembers(view: MembershipView): Member[] {
  return view.members.filter((member) => member.status === 'joining' || member.status === 'valid');
}

export function statusRank(status: MemberStatus): number {
  const rank = memberStatusOrder.indexOf(status);
  assert(rank >= 0, () => `unknown member status ${String(status)}`);
  return rank;
}

/** Checks the view's invariants; throws an AssertionError naming the broken one. */
export function viewInvariants(view: MembershipView): void {
  assert(view.members.length <= membersMax, () => `more than ${membersMax} members`);
  for (let index = 0; index < view.members.length; index++) {
    const member = view.members[index] as Member;
    assertMember(member);
    const previous = view.members[index - 1];
    assert(previous === undefined || previous.nodeId < member.nodeId, 'members are not sorted by node id or repeat one');
  }
  ringInvariants(view.ring);
}

/** The attributes as one comparable text: the tie-break of mergeMember and the digest's hash. */
export function attributesKey(attributes: MemberAttributes): string {
  return `${attributes.address.host}\u0000${attributes.address.port}\u0000${attributes.datacenter}\u0000${attributes.weight}`;
}

/** One node's entry in a digest: enough to tell whether the peer's entry is newer. */
export interface MemberDigest {
  readonly nodeId: string;
  readonly incarnation: number;
  readonly status: MemberStatus;
  readonly heartbeat: number;
  /** FNV-1a hash of `attributesKey`: attributes are compared only at equal heartbeats. */
  readonly attributesHash: number;
}

/**
 * A compact summary of a view for the first leg of a gossip exchange (Scuttlebutt-style, as
 * Cassandra's GossipDigestSyn): a few numbers per node instead of addresses and the ring's Q
 * owners. The peer answers with `delta`, which holds only what the digest's owner lacks.
 */
export interface ViewDigest {
  readonly members: readonly MemberDigest[];
  readonly ring: { readonly epoch: number; readonly claimant: string; readonly ownersHash: number };
}

/** The entries and ring a peer lacks; `mergeDelta` applies it. */
export interface ViewDelta {
  readonly members: readonly Member[];
  readonly ring: Ring | undefined;
}

export function digest(view: MembershipView): ViewDigest {
  return {
    members: view.members.map((member) => ({
      nodeId: member.nodeId,
      incarnation: member.incarnation,
      status: member.status,
      heartbeat: member.heartbeat,
      attributesHash: fnv1a(attributesKey(member)),
    })),
    ring: { epoch: view.ring.epoch, claimant: view.ring.claimant, ownersHash: fnv1a(view.ring.owners.join('\u0000')) },
  };
}

/**
 * What of `view` the owner of `theirs` lacks: every entry its digest does not cover, and the
 * ring unless theirs is at least as new. `mergeDelta(peer, delta(view, digest(peer)))` equals
 * `mergeViews(peer, view)`; a hash match can only hide a difference if two attribute sets or
 * two rings with the same (epoch, claimant) collide in 32 bits, which needs a node that
 * rewrote its attributes without a heartbeat, or a claimant that made two rings in one epoch.
 */
export function delta(view: MembershipView, theirs: ViewDigest): ViewDelta {
  const theirMembers = new Map(theirs.members.map((entry) => [entry.nodeId, entry]));
  const members = view.members.filter((member) => !digestCovers(theirMembers.get(member.nodeId), member));
  const ring = view.ring;
  const ringCovered =
    theirs.ring.epoch > ring.epoch ||
    (theirs.ring.epoch === ring.epoch &&
      (theirs.ring.claimant > ring.claimant || (theirs.ring.claimant === ring.claimant && theirs.ring.ownersHash === fnv1a(ring.owners.join('\u0000')))));
  return { members, ring: ringCovered ? undefined : ring };
}

export function mergeDelta(view: MembershipView, received: ViewDelta): MembershipView {
  const ring = received.ring === undefined ? view.ring : received.ring;
  return mergeViews(view, { members: received.members, ring });
}

function digestCovers(entry: MemberDigest | undefined, member: Member): boolean {
  if (entry === undefined) return false;
  if (entry.incarnation !== member.incarnation) return entry.incarnation > member.incarnation;
  if (statusRank(entry.status) < statusRank(member.status)) return false;
  if (entry.heartbeat !== member.heartbeat) return entry.heartbeat > member.heartbeat;
  return entry.attributesHash === fnv1a(attributesKey(member));
}

/** 32-bit FNV-1a over UTF-16 code units: a fingerprint, not a security boundary. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

function replaceMember(view: MembershipView, member: Member): MembershipView {
  const members = view.members.filter((existing) => existing.nodeId !== member.nodeId);
  const index = members.findIndex((existing) => existing.nodeId > member.nodeId);
  members.splice(index === -1 ? members.length : index, 0, member);
  assert(members.length <= membersMax, () => `a view holds more than ${membersMax} node ids`);
  return { members, ring: view.ring };
}

/** Copies only the known fields, so a caller's extra properties never leak into gossip. */
function copyNewMember(node: NewMember): NewMember {
  return {
    nodeId: node.nodeId,
    address: { host: node.address.host, port: node.address.port },
    datacenter: node.datacenter,
    weight: node.weight,
  };
}

function assertMember(member: Member): void {
  assert(member.nodeId.length > 0, 'node id must not be empty');
  assert(member.address.host.length > 0, () => `${member.nodeId}: host must not be empty`);
  assert(Number.isInteger(member.address.port) && member.address.port > 0 && member.address.port < 65536, () => `${member.nodeId}: port out of range`);
  assert(Number.isSafeInteger(member.weight) && member.weight > 0, () => `${member.nodeId}: weight must be a positive integer`);
  assert(Number.isSafeInteger(member.incarnation) && member.incarnation >= 0, () => `${member.nodeId}: incarnation is not a natural number`);
  assert(Number.isSafeInteger(member.heartbeat) && member.heartbeat >= 0, () => `${member.nodeId}: heartbeat is not a natural number`);
  statusRank(member.status);
}
