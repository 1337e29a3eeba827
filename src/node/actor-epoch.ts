import { join } from 'node:path';
import { writeFileAtomic, type FileSystem } from '../world/file-system.js';

/**
 * The DVV actor a node's engine incarnation writes versions as. A dot (actor, counter) must name
 * one write forever. A node that loses writes it had already shown to others — a crash before
 * their fsync, while replication or a replica read had carried them off — would, with a fixed
 * actor, give the same dots to new writes, and the other replicas would take the new writes for
 * ones they hold and drop them (found by the simulator: an acknowledged last-write-wins put
 * lost after its coordinating replica had crashed). Riak solves it with vnode ids that change
 * after an unclean stop; so does this: each start after an unclean stop (or of an engine that
 * keeps nothing, the memory engine) is a new epoch, and epoch n > 0 writes as `nodeId~n`
 * ('~' is never in a node id). A clean stop keeps the epoch, so clocks grow by an entry per
 * crash, not per restart.
 */
export interface ActorEpoch {
  readonly epoch: number;
  readonly actor: string;
}

const epochFile = 'actor-epoch.json';

interface EpochState {
  readonly epoch: number;
  /** Whether the incarnation of this epoch ended with every accepted write durable. */
  readonly clean: boolean;
}

export function actorOf(nodeId: string, epoch: number): string {
  return epoch === 0 ? nodeId : `${nodeId}~${epoch}`;
}

/**
 * Called before an engine incarnation serves: decides its epoch and records it as running
 * (not clean) durably, so a crash from here on starts the next epoch.
 */
export async function beginEpoch(fs: FileSystem, dataDir: string, nodeId: string, options: { readonly engineKeepsData: boolean; readonly engineHasData: boolean }): Promise<ActorEpoch> {
  const path = join(dataDir, epochFile);
  let epoch: number;
  if (await fs.exists(path)) {
    const state = JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as EpochState;
    epoch = state.clean && options.engineKeepsData ? state.epoch : state.epoch + 1;
  } else {
    // A data directory from before epochs existed may hold versions of an unclean stop.
    epoch = options.engineHasData ? 1 : 0;
  }
  await writeEpoch(fs, path, { epoch, clean: false });
  return { epoch, actor: actorOf(nodeId, epoch) };
}

/** Called after the engine closed with every accepted write durable: the next start keeps the epoch. */
export async function endEpochCleanly(fs: FileSystem, dataDir: string, epoch: number): Promise<void> {
  await writeEpoch(fs, join(dataDir, epochFile), { epoch, clean: true });
}

function writeEpoch(fs: FileSystem, path: string, state: EpochState): Promise<void> {
  return writeFileAtomic(fs, path, Buffer.from(JSON.stringify(state)));
}
