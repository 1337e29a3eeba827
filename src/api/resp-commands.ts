import type { Result } from '../core/errors.js';
import type { MaybePromise } from '../storage/engine.js';
import { quorumNames, type KeyValueStore, type QuorumOptions, type WriteOptions, type WriteOutcome } from '../node/kv-service.js';
import type { RespWriter } from './resp-writer.js';

/** Writes a reply that became known after the command waited for the engine. */
export type Reply = (out: RespWriter) => void;

/** What a command may read or change about its connection. */
export interface ConnectionState {
  readonly id: number;
  namespace: string;
  name: string;
  resp3: boolean;
  /** Set by QUIT: the connection ends once the replies before it have left. */
  closing: boolean;
  /** N/R/W for this connection's requests, set with RINGKV.QUORUM; empty: the namespace's. */
  quorum: QuorumOptions;
}

export interface NodeInfo {
  readonly nodeId: string;
  readonly version: string;
  readonly uptimeMs: () => number;
  readonly engineKind: string;
  readonly keyCount: () => number;
  readonly connectedClients: () => number;
  readonly commandsProcessed: () => number;
  readonly tcpPort: number;
}

export interface CommandContext {
  readonly kv: KeyValueStore;
  readonly node: NodeInfo;
  readonly defaultNamespace: string;
}

type Handler = (context: CommandContext, connection: ConnectionState, args: Buffer[], out: RespWriter) => Promise<Reply> | undefined;

interface CommandSpec {
  /** Redis' arity: n exactly n arguments including the name; -n at least n. */
  readonly arity: number;
  readonly flags: readonly string[];
  readonly firstKey: number;
  readonly lastKey: number;
  readonly step: number;
  readonly handler: Handler;
}

/** Redis' reply for protocol version the server claims compatibility with (clients gate features on it). */
const redisCompatibleVersion = '7.2.0';

export function executeCommand(context: CommandContext, connection: ConnectionState, args: Buffer[], out: RespWriter): Promise<Reply> | undefined {
  const name = args[0] as Buffer;
  const spec = findCommand(name);
  if (spec === undefined) {
    out.error(`ERR unknown command '${printable(name)}', with args beginning with: ${argumentsShown(args)}`);
    return undefined;
  }
  if (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity) {
    out.error(`ERR wrong number of arguments for '${name.toString('latin1').toLowerCase()}' command`);
    return undefined;
  }
  return spec.handler(context, connection, args, out);
}

/**
 * GET and SET, most of what a cache is sent, are recognised from their bytes in any case, without
 * making a string (`| 0x20` folds only an ASCII letter's case onto the lower-case letter). Other
 * names are looked up as sent, upper case (redis-benchmark, ioredis) or lower case (node-redis):
 * both spellings are in the table, and only a mixed-case name pays for lowering.
 */
function findCommand(name: Buffer): CommandSpec | undefined {
  if (name.length === 3 && ((name[1] as number) | 0x20) === 0x65 && ((name[2] as number) | 0x20) === 0x74) {
    const first = (name[0] as number) | 0x20;
    if (first === 0x67) return getSpec;
    if (first === 0x73) return setSpec;
  }
  const raw = name.toString('latin1');
  return commandsByAnyCase.get(raw) ?? commandsByAnyCase.get(raw.toLowerCase());
}

/** Redis' wording: each argument quoted and followed by a space, until 128 characters are shown. */
function argumentsShown(args: Buffer[]): string {
  let shown = '';
  for (let index = 1; index < args.length && shown.length < 128; index++) shown += `'${printable(args[index] as Buffer).slice(0, 128 - shown.length)}' `;
  return shown;
}

function printable(arg: Buffer): string {
  return arg.subarray(0, 128).toString('utf8').replace(/[^\x20-\x7e]/g, '?');
}

/** Calls `write` now when `result` is known, or later; returns the pending reply if any. */
function reply<T>(result: MaybePromise<T>, out: RespWriter, write: (out: RespWriter, value: T) => void): Promise<Reply> | undefined {
  if (!(result instanceof Promise)) {
    write(out, result);
    return undefined;
  }
  return result.then((value) => (later: RespWriter) => write(later, value));
}

function writeFailure(out: RespWriter, result: { readonly code: string; readonly message: string }): void {
  out.error(`${result.code} ${result.message}`);
}

function writeValue(out: RespWriter, result: Result<Uint8Array | undefined>): void {
  if (!result.ok) return writeFailure(out, result);
  out.bulk(result.value ?? null);
}

const get: Handler = (context, connection, args, out) =>
  reply(context.kv.getNewest(connection.namespace, args[1] as Buffer, connection.quorum), out, writeValue);

const set: Handler = (context, connection, args, out) => {
  let onlyIfAbsent = false;
  let onlyIfPresent = false;
  for (let index = 3; index < args.length; index++) {
    const word = (args[index] as Buffer).toString('latin1').toUpperCase();
    if (word === 'NX') onlyIfAbsent = true;
    else if (word === 'XX') onlyIfPresent = true;
    else if (['EX', 'PX', 'EXAT', 'PXAT', 'KEEPTTL'].includes(word)) {
      out.error('ERR expiry (EX/PX/EXAT/PXAT/KEEPTTL) is not supported by ringkv yet');
      return undefined;
    } else {
      out.error('ERR syntax error');
      return undefined;
    }
  }
  if (onlyIfAbsent && onlyIfPresent) {
    out.error('ERR syntax error');
    return undefined;
  }
  // Redis semantics: SET replaces whatever the key holds, so it supersedes every sibling stored.
  const options = !onlyIfAbsent && !onlyIfPresent && usesNamespaceQuorum(connection) ? plainOverwrite : { context: 'current', onlyIfAbsent, onlyIfPresent, ...connection.quorum };
  return reply(context.kv.put(connection.namespace, args[1] as Buffer, args[2] as Buffer, options), out, writeSetOutcome);
};

/** The options of a plain SET on a connection without RINGKV.QUORUM: one shared object, not one per command. */
const plainOverwrite: WriteOptions & QuorumOptions = Object.freeze({ context: 'current' });

function usesNamespaceQuorum(connection: ConnectionState): boolean {
  const { quorum } = connection;
  return quorum.n === undefined && quorum.r === undefined && quorum.w === undefined && quorum.pr === undefined && quorum.pw === undefined;
}

function writeSetOutcome(out: RespWriter, outcome: Result<WriteOutcome>): void {
  if (!outcome.ok) return writeFailure(out, outcome);
  if (outcome.value.written) out.ok();
  else out.null();
}

/** Runs one key operation per key and combines the results once all are known. */
function eachKey<K, T>(keys: K[], operation: (key: K) => MaybePromise<T>): MaybePromise<T[]> {
  const results = keys.map(operation);
  return results.some((result) => result instanceof Promise) ? Promise.all(results) : (results as T[]);
}

const del: Handler = (context, connection, args, out) =>
  reply(
    eachKey(args.slice(1), (key) => context.kv.delete(connection.namespace, key, { context: 'current', ...connection.quorum })),
    out,
    (later, outcomes) => {
      const failed = outcomes.find((outcome) => !outcome.ok);
      if (failed !== undefined && !failed.ok) return writeFailure(later, failed);
      later.integer(outcomes.filter((outcome) => outcome.ok && outcome.value.written).length);
    },
  );

const exists: Handler = (context, connection, args, out) =>
  reply(
    eachKey(args.slice(1), (key) => context.kv.getNewest(connection.namespace, key, connection.quorum)),
    out,
    (later, results) => {
      const failed = results.find((result) => !result.ok);
      if (failed !== undefined && !failed.ok) return writeFailure(later, failed);
      later.integer(results.filter((result) => result.ok && result.value !== undefined).length);
    },
  );

const mget: Handler = (context, connection, args, out) =>
  reply(
    eachKey(args.slice(1), (key) => context.kv.getNewest(connection.namespace, key, connection.quorum)),
    out,
    (later, results) => {
      later.arrayHeader(results.length);
      // Redis answers nil for a key it cannot return; an invalid key here is one.
      for (const result of results) writeValue(later, result.ok ? result : { ok: true, value: undefined });
    },
  );

const mset: Handler = (context, connection, args, out) => {
  if (args.length % 2 !== 1) {
    out.error("ERR wrong number of arguments for 'mset' command");
    return undefined;
  }
  const pairs: [Buffer, Buffer][] = [];
  for (let index = 1; index < args.length; index += 2) pairs.push([args[index] as Buffer, args[index + 1] as Buffer]);
  return reply(
    eachKey(pairs, ([key, value]) => context.kv.put(connection.namespace, key, value, { context: 'current', ...connection.quorum })),
    out,
    (later, outcomes) => {
      const failed = outcomes.find((outcome) => !outcome.ok);
      if (failed !== undefined && !failed.ok) return writeFailure(later, failed);
      later.ok();
    },
  );
};

/**
 * RINGKV.QUORUM [N n] [R r] [W w] [PR pr] [PW pw] | RESET: sets the replicas and quorums of this
 * connection's requests (HTTP takes ?n=&r=&w=&pr=&pw=); without arguments, answers the current
 * ones as a map.
 */
const quorumSyntax = 'ERR syntax error: RINGKV.QUORUM [N n] [R r] [W w] [PR pr] [PW pw] | RESET, n/r/w from 1 to 8, pr/pw from 0 to 8';
const quorum: Handler = (_context, connection, args, out) => {
  if (args.length === 2 && (args[1] as Buffer).toString('latin1').toUpperCase() === 'RESET') {
    connection.quorum = {};
    out.ok();
    return undefined;
  }
  if (args.length % 2 !== 1) {
    out.error(quorumSyntax);
    return undefined;
  }
  const next: { -readonly [K in keyof QuorumOptions]: number } = { ...connection.quorum };
  for (let index = 1; index < args.length; index += 2) {
    const name = quorumNames.find((candidate) => candidate === (args[index] as Buffer).toString('latin1').toLowerCase());
    const value = Number((args[index + 1] as Buffer).toString('latin1'));
    const least = name === 'pr' || name === 'pw' ? 0 : 1;
    if (name === undefined || !Number.isInteger(value) || value < least || value > 8) {
      out.error(quorumSyntax);
      return undefined;
    }
    next[name] = value;
  }
  if (args.length === 1) {
    const shown = Object.entries(connection.quorum);
    out.mapHeader(shown.length);
    for (const [name, value] of shown) {
      out.bulkText(name);
      out.integer(value);
    }
    return undefined;
  }
  connection.quorum = next;
  out.ok();
  return undefined;
};

const ping: Handler = (_context, _connection, args, out) => {
  if (args.length > 2) out.error("ERR wrong number of arguments for 'ping' command");
  else if (args.length === 2) out.bulk(args[1] as Buffer);
  else out.simple('PONG');
  return undefined;
};

const echo: Handler = (_context, _connection, args, out) => {
  out.bulk(args[1] as Buffer);
  return undefined;
};

const quit: Handler = (_context, connection, _args, out) => {
  out.ok();
  connection.closing = true;
  return undefined;
};

/**
 * SELECT chooses the namespace of the connection: `SELECT 0` is the default namespace,
 * `SELECT <n>` (n > 0, what clients' `db` options send) is namespace `db<n>`, and
 * `SELECT <name>` is namespace <name>.
 */
const select: Handler = (context, connection, args, out) => {
  const requested = (args[1] as Buffer).toString('latin1');
  const namespace = requested === '0' ? context.defaultNamespace : /^[1-9][0-9]*$/.test(requested) ? `db${requested}` : requested;
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(namespace)) {
    out.error('NAMESPACE_INVALID a namespace is 1-64 characters of [A-Za-z0-9_.-]');
    return undefined;
  }
  connection.namespace = namespace;
  out.ok();
  return undefined;
};

function helloFields(context: CommandContext, connection: ConnectionState): [string, string | number][] {
  return [
    ['server', 'ringkv'],
    ['version', redisCompatibleVersion],
    ['proto', connection.resp3 ? 3 : 2],
    ['id', connection.id],
    ['mode', 'standalone'],
    ['role', 'master'],
    ['ringkv_version', context.node.version],
    ['node_id', context.node.nodeId],
  ];
}

const hello: Handler = (context, connection, args, out) => {
  let index = 1;
  if (args.length > 1) {
    const version = Number((args[1] as Buffer).toString('latin1'));
    if (version !== 2 && version !== 3) {
      out.error('NOPROTO unsupported protocol version');
      return undefined;
    }
    connection.resp3 = version === 3;
    index = 2;
  }
  for (; index < args.length; index++) {
    const word = (args[index] as Buffer).toString('latin1').toUpperCase();
    if (word === 'SETNAME' && index + 1 < args.length) connection.name = (args[++index] as Buffer).toString('utf8');
    else if (word === 'AUTH' && index + 2 < args.length) index += 2; // no authentication yet: accepted as Redis does without ACLs
    else {
      out.error(`ERR Syntax error in HELLO option '${printable(args[index] as Buffer)}'`);
      return undefined;
    }
  }
  const fields = helloFields(context, connection);
  out.mapHeader(fields.length + 1);
  for (const [key, value] of fields) {
    out.bulkText(key);
    if (typeof value === 'number') out.integer(value);
    else out.bulkText(value);
  }
  out.bulkText('modules');
  out.arrayHeader(0);
  return undefined;
};

const client: Handler = (_context, connection, args, out) => {
  const sub = (args[1] as Buffer).toString('latin1').toUpperCase();
  if (sub === 'SETNAME' && args.length === 3) {
    connection.name = (args[2] as Buffer).toString('utf8');
    out.ok();
  } else if (sub === 'GETNAME' && args.length === 2) out.bulk(connection.name === '' ? null : Buffer.from(connection.name));
  else if (sub === 'ID' && args.length === 2) out.integer(connection.id);
  else if (sub === 'SETINFO' && args.length === 4) out.ok();
  else out.error(`ERR unknown subcommand or wrong number of arguments for 'CLIENT|${printable(args[1] as Buffer)}'`);
  return undefined;
};

function infoText(context: CommandContext, section: string): string {
  const node = context.node;
  const sections: Record<string, [string, string | number][]> = {
    server: [
      ['redis_version', redisCompatibleVersion], ['ringkv_version', node.version], ['redis_mode', 'standalone'],
      ['node_id', node.nodeId], ['process_id', process.pid], ['tcp_port', node.tcpPort],
      ['uptime_in_seconds', Math.floor(node.uptimeMs() / 1000)], ['storage_engine', node.engineKind],
    ],
    clients: [['connected_clients', node.connectedClients()]],
    memory: [['used_memory', process.memoryUsage().heapUsed], ['used_memory_rss', process.memoryUsage().rss]],
    stats: [['total_commands_processed', node.commandsProcessed()]],
    keyspace: [['db0', `keys=${node.keyCount()},expires=0,avg_ttl=0`]],
  };
  const chosen = section === '' || section === 'all' || section === 'default' || section === 'everything' ? Object.keys(sections) : [section];
  return chosen
    .filter((name) => sections[name] !== undefined)
    .map((name) => `# ${name[0]?.toUpperCase()}${name.slice(1)}\r\n${(sections[name] ?? []).map(([key, value]) => `${key}:${value}`).join('\r\n')}\r\n`)
    .join('\r\n');
}

const info: Handler = (context, _connection, args, out) => {
  out.bulkText(infoText(context, (args[1]?.toString('latin1') ?? '').toLowerCase()));
  return undefined;
};

const dbsize: Handler = (context, _connection, _args, out) => {
  out.integer(context.node.keyCount());
  return undefined;
};

/** CONFIG GET answers an empty list (redis-benchmark asks for `save` and `appendonly`). */
const config: Handler = (_context, _connection, args, out) => {
  const sub = (args[1] as Buffer).toString('latin1').toUpperCase();
  if (sub === 'GET') out.mapHeader(0);
  else if (sub === 'RESETSTAT') out.ok();
  else out.error(`ERR CONFIG ${printable(args[1] as Buffer)} is not supported; ringkv is configured by flags, environment or config file`);
  return undefined;
};

const command: Handler = (_context, _connection, args, out) => {
  const sub = args.length > 1 ? (args[1] as Buffer).toString('latin1').toUpperCase() : '';
  if (sub === 'COUNT') out.integer(commands.size);
  else if (sub === 'DOCS') out.mapHeader(0); // redis-cli asks for docs to show hints; none is fine
  else if (sub === '' || sub === 'INFO') {
    const names = sub === '' ? [...commands.keys()] : args.slice(2).map((arg) => arg.toString('latin1').toLowerCase());
    out.arrayHeader(names.length);
    for (const name of names) writeCommandInfo(out, name, commands.get(name));
  } else out.error(`ERR unknown subcommand '${printable(args[1] as Buffer)}'. Try COMMAND HELP.`);
  return undefined;
};

function writeCommandInfo(out: RespWriter, name: string, spec: CommandSpec | undefined): void {
  if (spec === undefined) return out.nullArray();
  out.arrayHeader(6);
  out.bulkText(name);
  out.integer(spec.arity);
  out.arrayHeader(spec.flags.length);
  for (const flag of spec.flags) out.simple(flag);
  out.integer(spec.firstKey);
  out.integer(spec.lastKey);
  out.integer(spec.step);
}

function spec(arity: number, flags: readonly string[], keys: [number, number, number], handler: Handler): CommandSpec {
  return { arity, flags, firstKey: keys[0], lastKey: keys[1], step: keys[2], handler };
}

const commandList: [string, CommandSpec][] = [
  ['get', spec(2, ['readonly', 'fast'], [1, 1, 1], get)],
  ['set', spec(-3, ['write', 'denyoom'], [1, 1, 1], set)],
  ['del', spec(-2, ['write'], [1, -1, 1], del)],
  ['exists', spec(-2, ['readonly', 'fast'], [1, -1, 1], exists)],
  ['mget', spec(-2, ['readonly', 'fast'], [1, -1, 1], mget)],
  ['mset', spec(-3, ['write', 'denyoom'], [1, -1, 2], mset)],
  ['ping', spec(-1, ['fast'], [0, 0, 0], ping)],
  ['echo', spec(2, ['fast'], [0, 0, 0], echo)],
  ['quit', spec(-1, ['fast'], [0, 0, 0], quit)],
  ['select', spec(2, ['loading', 'fast'], [0, 0, 0], select)],
  ['hello', spec(-1, ['noscript', 'loading', 'fast'], [0, 0, 0], hello)],
  ['client', spec(-2, ['admin', 'noscript'], [0, 0, 0], client)],
  ['info', spec(-1, ['loading'], [0, 0, 0], info)],
  ['dbsize', spec(1, ['readonly', 'fast'], [0, 0, 0], dbsize)],
  ['config', spec(-2, ['admin', 'noscript'], [0, 0, 0], config)],
  ['command', spec(-1, ['loading'], [0, 0, 0], command)],
  ['ringkv.quorum', spec(-1, ['fast'], [0, 0, 0], quorum)],
];

/** Lower-case names for COMMAND; both spellings for lookups (see executeCommand). */
const commands = new Map<string, CommandSpec>(commandList);
const commandsByAnyCase = new Map<string, CommandSpec>([...commandList, ...commandList.map(([name, entry]): [string, CommandSpec] => [name.toUpperCase(), entry])]);
const getSpec = commands.get('get') as CommandSpec;
const setSpec = commands.get('set') as CommandSpec;
