import { join } from 'node:path';
import { ErrorCode, failure, success, type Result } from '../core/errors.js';
import { randomId, type Random } from '../core/random.js';
import { mkdirDurable, writeFileAtomic, type FileSystem } from '../world/file-system.js';

const nodeIdFile = 'node-id';

/**
 * The node's id: the actor in every version it coordinates, so it must stay the same for a data
 * directory. Generated once (`node-` + 10 random characters) and kept in `<dataDir>/node-id`;
 * a configured id must match the one already kept there.
 */
export async function resolveNodeId(fs: FileSystem, random: Random, dataDir: string, configured: string | undefined): Promise<Result<string>> {
  await mkdirDurable(fs, dataDir);
  const path = join(dataDir, nodeIdFile);
  const kept = (await fs.exists(path)) ? Buffer.from(await fs.readFile(path)).toString('utf8').trim() : undefined;
  if (kept !== undefined && configured !== undefined && kept !== configured) {
    return failure(ErrorCode.configInvalid, `invalid --node-id: the data directory ${dataDir} belongs to node "${kept}", not "${configured}"`);
  }
  const nodeId = kept ?? configured ?? `node-${randomId(random, 10)}`;
  if (kept === undefined) await writeFileAtomic(fs, path, Buffer.from(`${nodeId}\n`));
  return success(nodeId);
}
