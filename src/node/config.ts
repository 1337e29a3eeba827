import { z } from 'zod';
import { ErrorCode, failure, success, type Result } from '../core/errors.js';

/**
 * Every setting of a node, declared once: its flag, environment variable, type, default and
 * documentation. The CLI, the validation and the configuration table in the README all come
 * from this list (riak_core's schema files, STYLE.md rule 11). Sources, strongest first:
 * command-line flag, environment variable, config file (JSON, `--config`), default.
 */
interface OptionSpec<T extends z.ZodType> {
  readonly flag: string;
  readonly schema: T;
  readonly default: z.output<T> | undefined;
  readonly doc: string;
}

function option<T extends z.ZodType>(flag: string, schema: T, defaultValue: z.output<T> | undefined, doc: string): OptionSpec<T> {
  return { flag, schema, default: defaultValue, doc };
}

const port = z.coerce.number().int().min(1).max(65535);
const positiveInt = z.coerce.number().int().min(1);
const nodeIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export const configOptions = {
  dataDir: option('data-dir', z.string().min(1), './data', 'Directory for this node\'s files: node id, membership view, and the storage engine under `lsm/`.'),
  nodeId: option('node-id', z.string().regex(nodeIdPattern, 'must be 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit'), undefined,
    'Name of this node. Default: generated on first start and kept in `<data-dir>/node-id`.'),
  host: option('host', z.string().min(1), '127.0.0.1', 'Address the HTTP, RESP and peer listeners bind to.'),
  httpPort: option('http-port', port, 8098, 'Port of the HTTP/JSON API.'),
  respPort: option('resp-port', port, 6380, 'Port of the Redis protocol (RESP2/RESP3) listener.'),
  peerPort: option('peer-port', port, 7800, 'Port for node-to-node traffic (unused until the cluster exists).'),
  join: option('join',
    z.union([z.string(), z.array(z.string()).transform((seeds) => seeds.join(','))])
      .pipe(z.string().regex(/^$|^[^,\s]+:\d{1,5}(,[^,\s]+:\d{1,5})*$/, 'must be HOST:PEERPORT[,HOST:PEERPORT...]')), '',
    'Seed nodes to join at start, as HOST:PEERPORT, comma-separated (a JSON array in the config file). Empty: start (or restart) on its own.'),
  datacenter: option('datacenter', z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of [A-Za-z0-9_.-]'), 'dc1', 'Datacenter of this node; replicas are spread over datacenters first.'),
  weight: option('weight', z.coerce.number().int().min(1).max(1000), 1, 'Relative share of partitions this node claims (a node of weight 2 owns twice as many).'),
  partitionCount: option('partition-count', z.coerce.number().int().refine((count) => count >= 8 && count <= 4096 && (count & (count - 1)) === 0, 'must be a power of two from 8 to 4096'), 256,
    'Q, the number of partitions of a new cluster (fixed at creation; a joining node takes the cluster\'s).'),
  nVal: option('n-val', z.coerce.number().int().min(1).max(8), 3, 'Default replicas per key (N) for namespaces that do not set their own.'),
  r: option('r', z.coerce.number().int().min(1).max(8), 2, 'Default read quorum (R).'),
  w: option('w', z.coerce.number().int().min(1).max(8), 2, 'Default write quorum (W).'),
  requestTimeoutMs: option('request-timeout-ms', positiveInt.max(600_000), 5000, 'A coordinated read or write that has not met its quorum by then fails with UNAVAILABLE.'),
  gossipIntervalMs: option('gossip-interval-ms', positiveInt.max(60_000), 1000, 'How often a node gossips its membership view to a random peer.'),
  phiThreshold: option('phi-threshold', z.coerce.number().positive().max(100), 8, 'A peer whose phi-accrual suspicion exceeds this is considered down (Cassandra\'s default 8).'),
  hintWindowMs: option('hint-window-ms', z.coerce.number().int().min(0).max(30 * 24 * 3600 * 1000), 3 * 3600 * 1000,
    'Sloppy quorum: a write for a primary replica that is down goes to a fallback node with a hint, unless the primary has been down longer than this (Cassandra\'s `max_hint_window`, 3 h); 0 turns fallbacks off.'),
  hintStorageBytesMax: option('hint-storage-bytes-max', z.coerce.number().int().min(0), 1024 * 1024 * 1024,
    'Bytes of hinted objects a node keeps for down primaries; when full it takes no more writes as a fallback.'),
  transferLimit: option('transfer-limit', z.coerce.number().int().min(1).max(64), 2,
    'Partitions a node sends to new owners at once after the ring changed (Riak\'s `transfer_limit`).'),
  handoffBytesPerSecond: option('handoff-bytes-per-second', positiveInt, 16 * 1024 * 1024, 'Rate at which a node sends hinted data back to primaries that returned, and, separately, partitions to new owners.'),
  antiEntropyIntervalMs: option('anti-entropy-interval-ms', z.coerce.number().int().min(0).max(3_600_000), 1000,
    'Active anti-entropy: how often this node compares its Merkle trees with the next peer\'s (one message for all shared partitions, then a walk of those that differ); 0 turns exchanges off.'),
  antiEntropyBytesPerSecond: option('anti-entropy-bytes-per-second', positiveInt, 8 * 1024 * 1024, 'Rate at which anti-entropy sends repaired objects to a peer.'),
  tombstoneGraceMs: option('tombstone-grace-ms', z.coerce.number().int().min(0).max(365 * 24 * 3600 * 1000), 24 * 3600 * 1000,
    'A delete\'s tombstone is removed for good once every replica holds it and it is older than this (like Cassandra\'s `gc_grace_seconds`). Keep it longer than any node may stay down holding hints, or a late hint can bring a deleted value back.'),
  engine: option('engine', z.enum(['lsm', 'memory']), 'lsm',
    'Storage engine. `lsm`: commit log, memtable and SSTables under `<data-dir>/lsm` (durable). `memory`: process memory only, lost when the node stops (tests, caches).'),
  sync: option('sync', z.enum(['always', 'periodic', 'none']), 'always',
    'When the commit log is fsynced: `always` before a write is acknowledged (group commit), `periodic` every `--sync-interval-ms` (a crash loses up to that much), `none` left to the OS.'),
  syncIntervalMs: option('sync-interval-ms', positiveInt.max(60_000), 1000, 'Interval of `--sync periodic`.'),
  memtableSizeBytes: option('memtable-size-bytes', z.coerce.number().int().min(16 * 1024).max(4 * 1024 * 1024 * 1024), 64 * 1024 * 1024,
    'Memory a memtable may use before it is flushed to an SSTable (up to two more wait for their flush).'),
  blockCacheBytes: option('block-cache-bytes', z.coerce.number().int().min(0), 64 * 1024 * 1024, 'Bytes of uncompressed SSTable blocks kept in memory for reads.'),
  compression: option('compression', z.enum(['snappy', 'none']), 'snappy', 'Compression of SSTable blocks.'),
  bloomBitsPerKey: option('bloom-bits-per-key', z.coerce.number().int().min(1).max(32), 10, 'Bloom filter size per key in SSTables: 10 bits give about 1% false positives.'),
  defaultNamespace: option('default-namespace', z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 characters of [A-Za-z0-9_.-]'), 'default',
    'Namespace used by Redis clients until they pick another with `SELECT <name>`.'),
  keyBytesMax: option('key-bytes-max', positiveInt.max(64 * 1024), 1024, 'Largest key accepted, in bytes.'),
  valueBytesMax: option('value-bytes-max', positiveInt.max(512 * 1024 * 1024), 1024 * 1024, 'Largest value accepted, in bytes.'),
  siblingsMax: option('siblings-max', positiveInt.max(10_000), 100, 'A write that would leave a key with more siblings fails with TOO_MANY_SIBLINGS (as Riak\'s limit of 100).'),
  respConnectionsMax: option('resp-connections-max', positiveInt, 10_000, 'Redis-protocol connections accepted at once; more are refused with an error.'),
  shutdownTimeoutMs: option('shutdown-timeout-ms', positiveInt, 10_000, 'On SIGINT/SIGTERM, how long in-flight requests may take before connections are closed.'),
  restartsMax: option('restarts-max', z.coerce.number().int().min(0), 5, 'A service restarted more often than this within `restart-window-ms` shuts the node down.'),
  restartWindowMs: option('restart-window-ms', positiveInt, 60_000, 'The window of `restarts-max`.'),
  restartBackoffMs: option('restart-backoff-ms', positiveInt, 100, 'First delay before a failed service is restarted; doubles on each restart, up to 30 s.'),
  logLevel: option('log-level', z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info', 'Log level.'),
  logFormat: option('log-format', z.enum(['auto', 'json', 'pretty']), 'auto', 'Log format: JSON lines, human-readable, or `auto` (readable on a terminal, JSON otherwise).'),
} as const;

export type ConfigKey = keyof typeof configOptions;
type OptionOutput<K extends ConfigKey> = z.output<(typeof configOptions)[K]['schema']>;
export type Config = { readonly [K in Exclude<ConfigKey, 'nodeId'>]: OptionOutput<K> } & { readonly nodeId: string | undefined };

/** RINGKV_ + the flag in upper snake case: --http-port is RINGKV_HTTP_PORT. */
export function environmentVariable(key: ConfigKey): string {
  return `RINGKV_${configOptions[key].flag.toUpperCase().replaceAll('-', '_')}`;
}

export interface ConfigSources {
  /** Flags given on the command line, by config key. */
  readonly flags: Partial<Record<ConfigKey, unknown>>;
  readonly environment: Readonly<Record<string, string | undefined>>;
  /** The parsed config file, keyed by config key (camelCase) or flag name (kebab-case). */
  readonly file: Readonly<Record<string, unknown>> | undefined;
}

/** Merges the sources and validates every option; the first invalid one is named in the error. */
export function resolveConfig(sources: ConfigSources): Result<Config> {
  const fileValues = normalizeFileKeys(sources.file ?? {});
  if (!fileValues.ok) return fileValues;
  const resolved: Record<string, unknown> = {};
  for (const key of Object.keys(configOptions) as ConfigKey[]) {
    const spec: OptionSpec<z.ZodType> = configOptions[key];
    const fromEnvironment = sources.environment[environmentVariable(key)];
    const [raw, origin] =
      sources.flags[key] !== undefined ? [sources.flags[key], `--${spec.flag}`]
        : fromEnvironment !== undefined ? [fromEnvironment, environmentVariable(key)]
          : fileValues.value[key] !== undefined ? [fileValues.value[key], `config file option "${key}"`]
            : [spec.default, `default of --${spec.flag}`];
    if (raw === undefined) continue;
    const parsed = spec.schema.safeParse(raw);
    if (!parsed.success) {
      const reason = parsed.error.issues[0]?.message ?? 'invalid';
      return failure(ErrorCode.configInvalid, `invalid ${origin}: ${reason} (got ${JSON.stringify(raw)})`);
    }
    resolved[key] = parsed.data;
  }
  const config = { nodeId: undefined, ...resolved } as Config;
  for (const quorum of ['r', 'w'] as const) {
    if (config[quorum] > config.nVal) {
      return failure(ErrorCode.configInvalid, `invalid --${quorum}: must be at most --n-val (${config.nVal}), got ${config[quorum]}`);
    }
  }
  return success(config);
}

function normalizeFileKeys(file: Readonly<Record<string, unknown>>): Result<Partial<Record<ConfigKey, unknown>>> {
  const byFlag = new Map<string, ConfigKey>();
  for (const key of Object.keys(configOptions) as ConfigKey[]) byFlag.set(configOptions[key].flag, key);
  const values: Partial<Record<ConfigKey, unknown>> = {};
  for (const [name, value] of Object.entries(file)) {
    const key = name in configOptions ? (name as ConfigKey) : byFlag.get(name);
    if (key === undefined) return failure(ErrorCode.configInvalid, `invalid config file: unknown option "${name}"`);
    values[key] = value;
  }
  return success(values);
}

/** The configuration table of the README, generated from the schema. */
export function configurationTable(): string {
  const rows = ['| flag | environment | default | meaning |', '|---|---|---|---|'];
  for (const key of Object.keys(configOptions) as ConfigKey[]) {
    const spec: OptionSpec<z.ZodType> = configOptions[key];
    const defaultText = spec.default === undefined ? '(generated)' : `\`${String(spec.default)}\``;
    rows.push(`| \`--${spec.flag}\` | \`${environmentVariable(key)}\` | ${defaultText} | ${spec.doc} |`);
  }
  return rows.join('\n');
}
