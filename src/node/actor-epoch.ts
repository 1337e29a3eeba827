import { join } from 'node:path';
import { randomId, type Random } from '../core/random.js';
import { writeFileAtomic, type FileSystem } from '../world/file-system.js';

/**
 * The DVV actor a node's engine incarnation writes versions as. A dot (actor, counter) must name
 * one write forever. A node that loses writes it had already shown to others — a crash before
 * their fsync, while replication or a replica read had carried them off — would, with a fixed
 * actor, give the same dots to new writes, and the other replicas would take the new writes for
 * ones they hold and drop them (found by the simulator: an acknowledged last-write-wins put
 * lost after its coordinating replica had crashed). Riak solves it with vnode ids that change
 * after an unclean stop; so does this: each start after an unclean stop (or of an engine that
 * keeps nothing, the memory engine) is a new epoch, which writes as `nodeId~<random id>` ('~' is
 * never in a node id). Random, not counted: a node whose disk was replaced starts over with no
 * record of the epochs it used, and must not reuse one. A brand-new data directory's first
 * epoch writes as the bare node id only when no engine data existed anywhere before: the first
 * start of a node. A clean stop keeps the epoch, so clocks grow by an entry per crash, not per
 * restart.
 */
export interface ActorEpoch {
  /** Starts of the engine with a new actor in this data directory (0: the first). */
  readonly epoch: number;
  readonly actor: string;
}

const epochFile = 'actor-epoch.json';

interface EpochState {
  readonly epoch: number;
  readonly actor: string;
  /** Whether the incarnation of this epoch ended with every accepted write durable. */
  readonly clean: boolean;
}

/**
 * Called before an engine incarnation serves: decides its epoch and records it as running
 * (not clean) durably, so a crash from here on starts the next epoch.
 */
export async function beginEpoch(
  fs: FileSystem,
  dataDir: string,
  nodeId: string,
  random: Random,
  options: { readonly engineKeepsData: boolean; readonly engineHasData: boolean; readonly freshNode: boolean },
): Promise<ActorEpoch> {
  const path = join(dataDir, epochFile);
  const fresh = (epoch: number): EpochState => ({ epoch, actor: `${nodeId}~${randomId(random, 8)}`, clean: false });
  let state: EpochState;
  if (await fs.exists(path)) {
    const kept = JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as EpochState;
    state = kept.clean && options.engineKeepsData ? { ...kept, clean: false } : fresh(kept.epoch + 1);
  } else {
    // The bare node id only for a node's very first start: a data directory that holds engine
    // data (from before epochs existed), or a node id that was not generated here just now (set
    // by configuration, so perhaps used before on a lost disk), gets a fresh actor.
    state = options.freshNode && !options.engineHasData ? { epoch: 0, actor: nodeId, clean: false } : fresh(1);
  }
  await writeEpoch(fs, path, state);
  return { epoch: state.epoch, actor: state.actor };
}

/**
 * A new epoch while the engine runs: the node dropped objects it had written (a partition handed
 * off, a fallback's copy given back) and may coordinate writes to those keys again, whose dots
 * under the old actor it no longer knows (Riak's KV679). Recorded as running (not clean).
 */
export async function renewEpoch(fs: FileSystem, dataDir: string, nodeId: string, random: Random, current: ActorEpoch): Promise<ActorEpoch> {
  const state: EpochState = { epoch: current.epoch + 1, actor: `${nodeId}~${randomId(random, 8)}`, clean: false };
  await writeEpoch(fs, join(dataDir, epochFile), state);
  return { epoch: state.epoch, actor: state.actor };
}

/** Called after the engine closed with every accepted write durable: the next start keeps the epoch. */
export async function endEpochCleanly(fs: FileSystem, dataDir: string, epoch: ActorEpoch): Promise<void> {
  await writeEpoch(fs, join(dataDir, epochFile), { epoch: epoch.epoch, actor: epoch.actor, clean: true });
}

function writeEpoch(fs: FileSystem, path: string, state: EpochState): Promise<void> {
  return writeFileAtomic(fs, path, Buffer.from(JSON.stringify(state)));
}
