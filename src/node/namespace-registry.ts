import { join as joinPath } from 'node:path';
import { assert } from '../core/assert.js';
import { ErrorCode, failure, success, type Result } from '../core/errors.js';
import { writeFileAtomic, type FileSystem } from '../world/file-system.js';

export type ConflictMode = 'siblings' | 'lww';

/** A namespace's replication and conflict settings (Riak's bucket properties). */
export interface NamespaceSettings {
  readonly n: number;
  readonly r: number;
  readonly w: number;
  /** siblings: concurrent writes are kept (DVV); lww: the last write by timestamp wins. */
  readonly conflictMode: ConflictMode;
}

/** A setting as gossip carries it: the greatest (version, origin) wins everywhere. */
export interface VersionedSettings extends NamespaceSettings {
  readonly name: string;
  readonly version: number;
  readonly origin: string;
}

const registryFile = 'namespaces.json';
/** Namespaces with settings of their own; the rest use the node's defaults. */
export const namespacesMax = 10_000;
const namePattern = /^[A-Za-z0-9_.-]{1,64}$/;

/** Checks settings sent by an operator; the error names the first bad field. */
export function validateSettings(input: unknown): Result<NamespaceSettings> {
  const settings = input as Partial<Record<keyof NamespaceSettings, unknown>>;
  if (typeof settings !== 'object' || settings === null) return failure(ErrorCode.badRequest, 'settings must be a JSON object {n, r, w, conflictMode}');
  for (const name of ['n', 'r', 'w'] as const) {
    const value = settings[name];
    if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 8) return failure(ErrorCode.badRequest, `${name} must be an integer from 1 to 8`);
  }
  const { n, r, w, conflictMode } = settings as NamespaceSettings;
  if (r > n || w > n) return failure(ErrorCode.badRequest, `r and w must be at most n (n=${n}, r=${r}, w=${w})`);
  if (conflictMode !== 'siblings' && conflictMode !== 'lww') return failure(ErrorCode.badRequest, 'conflictMode must be "siblings" or "lww"');
  return success({ n, r, w, conflictMode });
}

/**
 * The namespaces of the cluster and their settings, spread by gossip: a last-writer-wins map
 * whose entries carry (version, origin); merging keeps the greater of each, so it is a CRDT and
 * gossip in any order converges. A set takes a version above every one seen. Kept in
 * `<dataDir>/namespaces.json`.
 */
export class NamespaceRegistry {
  private readonly entries = new Map<string, VersionedSettings>();
  private persisting: Promise<void> = Promise.resolve();

  private constructor(
    private readonly fs: FileSystem,
    private readonly dataDir: string,
    private readonly self: string,
  ) {}

  static async open(fs: FileSystem, dataDir: string, self: string): Promise<NamespaceRegistry> {
    const registry = new NamespaceRegistry(fs, dataDir, self);
    const path = joinPath(dataDir, registryFile);
    if (await fs.exists(path)) registry.merge(JSON.parse(Buffer.from(await fs.readFile(path)).toString('utf8')) as unknown);
    return registry;
  }

  get(name: string): NamespaceSettings | undefined {
    return this.entries.get(name);
  }

  list(): VersionedSettings[] {
    return [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async set(name: string, settings: NamespaceSettings): Promise<Result<VersionedSettings>> {
    if (!namePattern.test(name)) return failure(ErrorCode.namespaceInvalid, 'a namespace is 1-64 characters of [A-Za-z0-9_.-]');
    if (!this.entries.has(name) && this.entries.size >= namespacesMax) return failure(ErrorCode.badRequest, `at most ${namespacesMax} namespaces have settings`);
    const version = Math.max(0, ...[...this.entries.values()].map((entry) => entry.version)) + 1;
    const entry: VersionedSettings = { name, ...settings, version, origin: this.self };
    this.entries.set(name, entry);
    await this.persist();
    return success(entry);
  }

  /** Merges a peer's list (gossip); returns whether anything changed. */
  merge(incoming: unknown): boolean {
    assert(Array.isArray(incoming), 'namespace list must be an array');
    let changed = false;
    for (const candidate of incoming as VersionedSettings[]) {
      const valid = validateSettings(candidate);
      if (!valid.ok || !namePattern.test(candidate.name) || !Number.isSafeInteger(candidate.version) || typeof candidate.origin !== 'string') continue;
      const known = this.entries.get(candidate.name);
      if (known !== undefined && !newer(candidate, known)) continue;
      if (known === undefined && this.entries.size >= namespacesMax) continue;
      this.entries.set(candidate.name, { name: candidate.name, ...valid.value, version: candidate.version, origin: candidate.origin });
      changed = true;
    }
    return changed;
  }

  /**
   * Keeps the settings on disk, one write at a time: two at once would share the temporary file
   * and the second rename would fail (found by the simulator: two namespaces set at once).
   */
  persist(): Promise<void> {
    const write = this.persisting.then(() => writeFileAtomic(this.fs, joinPath(this.dataDir, registryFile), Buffer.from(JSON.stringify(this.list()))));
    this.persisting = write.catch(() => undefined);
    return write;
  }
}

function newer(a: VersionedSettings, b: VersionedSettings): boolean {
  return a.version !== b.version ? a.version > b.version : a.origin > b.origin;
}
