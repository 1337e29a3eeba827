import { sync, type DvvSet } from '../core/dvv.js';
import { preferenceList } from '../core/preference-list.js';
import type { Random } from '../core/random.js';
import { keyPartition } from '../core/token.js';
import { decodeObject, type Sibling } from '../node/stored-object.js';
import { canonicalObject, type FinalKey, type Violation } from './checkers.js';
import type { SimCluster, SimNode } from './sim-cluster.js';
import type { Trace } from './sim-world.js';
import type { HistoryOperation } from './workload.js';

/**
 * Reads every key the clients touched through every node with R = N (which read-repairs the
 * replicas), then takes each primary replica's stored object straight from its engine.
 */
export async function finalState(cluster: SimCluster, history: readonly HistoryOperation[]): Promise<FinalKey[]> {
  const scheduler = cluster.scheduler;
  const slots = [...new Set(history.map((operation) => `${operation.namespace}/${operation.key}`))].sort().map((slot) => slot.split('/') as [string, string]);
  const readThrough = async (node: SimNode, namespace: string, key: string): Promise<readonly string[] | string> => {
    const store = node.store;
    if (store === undefined) return `${node.nodeId} is down`;
    const answer = await store.get(namespace, Buffer.from(key), { r: 3 });
    if (!answer.ok) return `${answer.code}: ${answer.message}`;
    return (answer.value?.siblings ?? []).filter((sibling) => sibling.value !== null).map((sibling) => Buffer.from(sibling.value!).toString('utf8')).sort();
  };
  const inspect = async ([namespace, key]: [string, string]): Promise<FinalKey> => {
    const reads = await Promise.all(cluster.members.map(async (node) => ({ nodeId: node.nodeId, values: await readThrough(node, namespace, key) })));
    const ring = cluster.members[0]!.ringkv!.cluster.membership!.ring;
    const primaries = preferenceList(ring, keyPartition(namespace, Buffer.from(key), ring.partitionCount), 3, () => true).filter((entry) => entry.role === 'primary');
    const replicas: { nodeId: string; canonical: string }[] = [];
    let merged: DvvSet<Sibling> | undefined;
    for (const primary of primaries) {
      const kv = cluster.node(primary.nodeId).ringkv?.kv;
      const stored = kv === undefined ? undefined : await kv.readObject(namespace, Buffer.from(key));
      if (stored === undefined || !stored.ok) {
        replicas.push({ nodeId: primary.nodeId, canonical: stored === undefined ? 'node down' : `unreadable: ${stored.message}` });
        continue;
      }
      const object = stored.value === undefined ? undefined : decodeObject(stored.value);
      if (object !== undefined) merged = merged === undefined ? object : sync(merged, object);
      replicas.push({ nodeId: primary.nodeId, canonical: canonicalObject(object) });
    }
    const live = new Map<string, { dot: readonly [string, number]; writtenAtMs: number }>();
    for (const entry of merged?.entries ?? []) {
      for (const [index, sibling] of entry.values.entries()) {
        if (sibling.value !== null) live.set(Buffer.from(sibling.value).toString('utf8'), { dot: [entry.actor, entry.counter - index], writtenAtMs: sibling.writtenAtMs });
      }
    }
    return { namespace, key, replicas, reads, live };
  };
  /** Runs `work` over every key, 32 at a time, on virtual time. */
  const overKeys = async <T>(work: (slot: [string, string]) => Promise<T>): Promise<T[]> => {
    const results: T[] = [];
    for (let start = 0; start < slots.length; start += 32) {
      const batch = await scheduler.settle(Promise.all(slots.slice(start, start + 32).map(work)), 60_000);
      if (batch === undefined) throw new Error('reading the final state did not finish within 60 s of simulated time');
      results.push(...batch.value);
    }
    return results;
  };
  // One repairing read per key, then time for the repairs to land; then every node's view.
  await overKeys(([namespace, key]) => readThrough(cluster.members[0]!, namespace, key));
  await scheduler.runFor(3000);
  return overKeys(inspect);
}

/**
 * Bit rot at the end of a run: a few bits flipped in every node's SSTables, then every replica of
 * every key read again straight from its engine. Each read must give exactly the object it gave
 * before or fail with CORRUPTION (a checksum caught it); never different bytes.
 */
export async function corruptionIsDetected(cluster: SimCluster, finals: readonly FinalKey[], random: Random, trace: Trace): Promise<Violation[]> {
  const scheduler = cluster.scheduler;
  let flips = 0;
  for (const node of cluster.members) {
    const tables = node.disk.listFiles().filter((path) => path.endsWith('.sst'));
    for (let flip = 0; flip < 3 && tables.length > 0; flip++) {
      const path = tables[random.nextInt(tables.length)]!;
      const size = (await node.disk.readFile(path)).length;
      if (size === 0) continue;
      node.disk.flipBit(path, random.nextInt(size), random.nextInt(8));
      flips += 1;
    }
  }
  const violations: Violation[] = [];
  let detected = 0;
  const reread = async (final: FinalKey): Promise<void> => {
    for (const replica of final.replicas) {
      const kv = cluster.node(replica.nodeId).ringkv?.kv;
      if (kv === undefined) continue;
      const stored = await kv.readObject(final.namespace, Buffer.from(final.key));
      if (!stored.ok) {
        if (stored.code === 'CORRUPTION') detected += 1;
        else violations.push({ checker: 'phantom-value', message: `${final.namespace}/${final.key} on ${replica.nodeId} after bit flips: ${stored.code} ${stored.message}` });
        continue;
      }
      const canonical = canonicalObject(stored.value === undefined ? undefined : decodeObject(stored.value));
      if (canonical !== replica.canonical) {
        violations.push({ checker: 'phantom-value', message: `${final.namespace}/${final.key} on ${replica.nodeId}: after bit flips it reads {${canonical.slice(0, 200)}} instead of {${replica.canonical.slice(0, 200)}}: corruption served` });
      }
    }
  };
  for (let start = 0; start < finals.length; start += 32) {
    const done = await scheduler.settle(Promise.all(finals.slice(start, start + 32).map(reread)), 60_000);
    if (done === undefined) violations.push({ checker: 'assertion', message: 're-reading after bit flips did not finish' });
  }
  trace.add('sim', `bit rot: ${flips} bits flipped in SSTables; ${detected} replica reads failed with CORRUPTION, the rest read what they read before`);
  return violations;
}


/**
 * Handoff is done once the cluster healed: every node's hints delivered and partition transfers
 * finished within 60 s of simulated time, and then no node holds an object of a key it is not a
 * primary of (a fallback gives its copies up once the primary has them; a former owner drops a
 * partition once its new owners have it).
 */
export async function handoffCompletes(cluster: SimCluster, trace: Trace): Promise<Violation[]> {
  const scheduler = cluster.scheduler;
  const pending = (): { hints: number; transfers: number } => {
    let hints = 0;
    let transfers = 0;
    for (const node of cluster.members) {
      const report = node.ringkv?.cluster.handoffReport();
      hints += report?.hints?.pendingHints ?? 0;
      transfers += report?.transfers?.transfers.filter((transfer) => transfer.state !== 'done').length ?? 0;
    }
    return { hints, transfers };
  };
  const idle = (): boolean => {
    const left = pending();
    return left.hints === 0 && left.transfers === 0;
  };
  const before = pending();
  await scheduler.runFor(60_000, idle);
  const left = pending();
  if (!idle()) return [{ checker: 'handoff', message: `${left.hints} hints and ${left.transfers} partition transfers still pending 60 s after healing (${before.hints} and ${before.transfers} when healed)` }];
  trace.add('sim', `handoff: ${before.hints} hints and ${before.transfers} transfers pending when healed, all done`);
  const violations: Violation[] = [];
  const ring = cluster.members[0]!.ringkv!.cluster.membership!.ring;
  for (const node of cluster.members) {
    const kv = node.ringkv?.kv;
    if (kv === undefined) continue;
    const walk = async (): Promise<void> => {
      for (let partition = 0; partition < ring.partitionCount; partition++) {
        const primaries = preferenceList(ring, partition, 3, () => true).map((entry) => entry.nodeId);
        if (primaries.includes(node.nodeId)) continue;
        for await (const object of kv.partitionObjects(partition, ring.partitionCount)) {
          violations.push({ checker: 'handoff', message: `${node.nodeId} keeps ${object.namespace}/${Buffer.from(object.key).toString('utf8')} of partition ${partition}, whose primaries are ${primaries.join(', ')}, with no hint or transfer left` });
          if (violations.length >= 10) return;
        }
      }
    };
    const done = await scheduler.settle(walk(), 60_000);
    if (done === undefined) violations.push({ checker: 'assertion', message: `walking ${node.nodeId}'s partitions did not finish` });
    if (violations.length >= 10) break;
  }
  return violations;
}
