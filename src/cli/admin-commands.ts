import { Command, Option } from 'commander';
import { assert } from '../core/assert.js';
import {
  AdminClient,
  defaultHttpAddress,
  httpAddressEnvironmentVariable,
  httpBaseUrl,
  isHostPort,
  type AdminResult,
  type NamespaceSettings,
  type NamespaceUpdate,
  type RingResponse,
  type StatusResponse,
  type TransfersResponse,
} from './admin-client.js';

/**
 * `ringkv status | ring | join | leave | namespace list | namespace set`: each sends one request
 * to a node's HTTP admin API (`--http`, env RINGKV_HTTP) and prints a table, or with `--json`
 * the answer as it came. Exit codes as `ringkv start`: 0 done, 1 the node failed or could not
 * be reached, 2 bad usage. The formatters are pure and exported for the tests.
 */

const exitFailure = 1;
const exitUsage = 2;
/** Range lists of `ringkv ring` wrap at this width. */
const lineWidthMax = 100;
const namespacePattern = /^[A-Za-z0-9_.-]{1,64}$/;
const quorumMax = 8;

// ---------------------------------------------------------------------------------------------
// Pure formatting

/** Columns separated by two spaces, each as wide as its widest cell; no trailing spaces. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  for (const row of rows) assert(row.length === header.length, () => `formatTable: row has ${row.length} cells, header ${header.length}`);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `[0, 1, 2, 3, 8, 12, 13]` → `0-3, 8, 12-13`; order and duplicates of the input do not matter. */
export function compressRanges(numbers: readonly number[]): string {
  for (const value of numbers) assert(Number.isSafeInteger(value), () => `compressRanges: not an integer: ${value}`);
  const sorted = [...new Set(numbers)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let start = 0; start < sorted.length;) {
    let end = start;
    while (end + 1 < sorted.length && sorted[end + 1] === (sorted[end] as number) + 1) end++;
    parts.push(start === end ? String(sorted[start]) : `${sorted[start]}-${sorted[end]}`);
    start = end + 1;
  }
  return parts.join(', ');
}

/** `part` of `whole` as a percentage with one decimal: `33.6%`. */
export function formatPercent(part: number, whole: number): string {
  assert(whole > 0, () => `formatPercent: whole must be > 0, got ${whole}`);
  return `${((part / whole) * 100).toFixed(1)}%`;
}

/** Comma-separated `items` wrapped into lines of at most `widthMax` (an item longer stays whole). */
export function wrapList(items: readonly string[], widthMax: number): string[] {
  const lines: string[] = [];
  let current = '';
  for (const [index, item] of items.entries()) {
    const piece = index < items.length - 1 ? `${item},` : item;
    if (current !== '' && current.length + 1 + piece.length > widthMax) {
      lines.push(current);
      current = piece;
    } else {
      current = current === '' ? piece : `${current} ${piece}`;
    }
  }
  if (current !== '') lines.push(current);
  return lines;
}

function ringHeadline(ring: { partitionCount: number; epoch: number; claimant?: string | null | undefined }): string {
  return `ring: ${ring.partitionCount} partitions, epoch ${ring.epoch}, claimant ${ring.claimant ?? '(none)'}`;
}

/** `state`, and the membership status beside it when a member that is not valid is down. */
function memberStateText(member: StatusResponse['members'][number]): string {
  if (member.state === member.status || member.state !== 'down' || member.status === 'valid') return member.state;
  return `down (${member.status})`;
}

/** The table of `ringkv status`; the node answering is marked with `*`. */
export function formatStatus(status: StatusResponse): string {
  const members = [...status.members].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  const rows = members.map((member) => [
    member.self ? `${member.nodeId}*` : member.nodeId,
    memberStateText(member),
    member.address,
    member.datacenter,
    String(member.weight),
    `${member.partitions} (${formatPercent(member.partitions, status.ring.partitionCount)})`,
    member.phi === null || member.phi === undefined ? '-' : member.phi.toFixed(1),
  ]);
  const table = formatTable(['node', 'state', 'address', 'datacenter', 'weight', 'partitions', 'phi'], rows);
  const count = `${members.length} member${members.length === 1 ? '' : 's'}`;
  const antiEntropy = status.antiEntropy === null || status.antiEntropy === undefined ? '' : `\n${formatAntiEntropy(status.antiEntropy)}\n`;
  return `${ringHeadline(status.ring)}; ${count}, as seen by ${status.nodeId} (*)\n\n${table}\n${antiEntropy}`;
}

/** The anti-entropy line of `ringkv status`: the answering node's trees and what its exchanges repaired. */
export function formatAntiEntropy(report: NonNullable<StatusResponse['antiEntropy']>): string {
  const rebuilt = report.treesRebuilt > 0 ? `, ${report.treesRebuilt} trees rebuilt` : '';
  const awaiting = (report.awaitingTransfer ?? 0) > 0 ? ` (${report.awaitingTransfer} left to their transfer)` : '';
  return `anti-entropy: ${report.treesBuilt} of ${report.trees} trees built${awaiting}; ${report.rounds} rounds, ${report.exchangesDiffering} partitions found differing, ` +
    `${report.keysRepaired} objects repaired, ${formatBytes(report.bytesSent)} sent, ${report.reapedTombstones} tombstones reaped${rebuilt}`;
}

/** The partitions each owner holds, owners in name order; the empty owner is `(unassigned)`. */
export function partitionsByOwner(owners: readonly string[]): Map<string, number[]> {
  const byOwner = new Map<string, number[]>();
  for (const [partition, owner] of owners.entries()) {
    const name = owner === '' ? '(unassigned)' : owner;
    const list = byOwner.get(name) ?? [];
    list.push(partition);
    byOwner.set(name, list);
  }
  return new Map([...byOwner.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/** `ringkv ring`: per owner, its count, share and partitions as compressed ranges. */
export function formatRing(ring: RingResponse): string {
  const lines = [ringHeadline(ring), ''];
  if (ring.owners.length !== ring.partitionCount) {
    lines.push(`warning: the node listed ${ring.owners.length} owners for ${ring.partitionCount} partitions`, '');
  }
  const byOwner = partitionsByOwner(ring.owners);
  const nameWidth = Math.max(0, ...[...byOwner.keys()].map((name) => name.length));
  for (const [owner, partitions] of byOwner) {
    const head = `${owner.padEnd(nameWidth)}  ${partitions.length} partitions (${formatPercent(partitions.length, ring.partitionCount)}):`;
    const ranges = compressRanges(partitions).split(', ');
    const indent = ' '.repeat(nameWidth + 2);
    const wrapped = wrapList(ranges, lineWidthMax - indent.length);
    lines.push(head, ...wrapped.map((line) => `${indent}${line}`));
  }
  return `${lines.join('\n')}\n`;
}

/** `[########............]  42%`: a bar of `width` cells for `done` of `total`. */
export function progressBar(done: number, total: number, width = 20): string {
  const fraction = total <= 0 ? 1 : Math.min(1, Math.max(0, done / total));
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
}

/** Bytes as `812 B`, `3.2 KiB`, `1.5 MiB`, `2.0 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

type TransferRow = NonNullable<TransfersResponse['nodes'][number]['transfers']>['transfers'][number];

function transferStateText(transfer: TransferRow): string {
  if (transfer.waiting !== null && transfer.waiting !== undefined) return `waiting: ${transfer.waiting}`;
  if (transfer.state === 'sent') return 'sent; dropping the copy';
  if (transfer.state === 'pending') return 'queued';
  return transfer.state;
}

/** `ringkv transfers`: what moves where with progress bars and rates, then the hints waiting. */
export function formatTransfers(answer: TransfersResponse): string {
  const lines: string[] = [];
  const rows: string[][] = [];
  let done = 0;
  for (const node of [...answer.nodes].sort((a, b) => a.nodeId.localeCompare(b.nodeId))) {
    for (const transfer of node.transfers?.transfers ?? []) {
      if (transfer.state === 'done') {
        done++;
        continue;
      }
      const total = transfer.totalObjects ?? 0;
      rows.push([
        `${node.nodeId} -> ${transfer.targets.join(', ')}`,
        String(transfer.partition),
        transfer.totalObjects === null ? progressBar(0, 1) : progressBar(transfer.sentObjects, total),
        transfer.totalObjects === null ? `${transfer.sentObjects} objects` : `${transfer.sentObjects}/${total} objects`,
        `${formatBytes(transfer.bytesPerSecond)}/s`,
        transferStateText(transfer),
      ]);
    }
  }
  if (rows.length > 0) lines.push(formatTable(['transfer', 'partition', 'progress', 'objects', 'rate', 'state'], rows), '');
  const hints = answer.nodes.flatMap((node) => (node.hints?.pending ?? []).map((entry) => ({ holder: node.nodeId, ...entry })));
  for (const entry of hints) lines.push(`hints: ${entry.holder} holds ${entry.hints} for ${entry.target} (${formatBytes(entry.bytes)}; ${entry.target} ${entry.up ? 'up, delivering' : 'down'})`);
  if (hints.length > 0) lines.push('');
  const waitingHints = hints.reduce((sum, entry) => sum + entry.hints, 0);
  lines.push(`${rows.length} transfer${rows.length === 1 ? '' : 's'} under way, ${done} done in the last 10 minutes; ${waitingHints} hint${waitingHints === 1 ? '' : 's'} waiting`);
  if (answer.unreachable.length > 0) lines.push(`not answering: ${answer.unreachable.join(', ')}`);
  return `${lines.join('\n')}\n`;
}

export function formatNamespaces(namespaces: readonly NamespaceSettings[]): string {
  if (namespaces.length === 0) return 'no namespaces configured; every namespace uses the node defaults (ringkv namespace set NAME to configure one)\n';
  const sorted = [...namespaces].sort((a, b) => a.name.localeCompare(b.name));
  const rows = sorted.map((space) => [space.name, String(space.n), String(space.r), String(space.w), space.conflictMode]);
  return `${formatTable(['namespace', 'n', 'r', 'w', 'conflict-mode'], rows)}\n`;
}

// ---------------------------------------------------------------------------------------------
// Flag checks (pure)

export interface NamespaceFlags {
  readonly n: string;
  readonly r: string;
  readonly w: string;
  readonly conflictMode: string;
}

/** `ringkv namespace set` arguments to the request body, or the usage error. */
export function namespaceUpdate(name: string, flags: NamespaceFlags): { ok: true; value: NamespaceUpdate } | { ok: false; message: string } {
  if (!namespacePattern.test(name)) return { ok: false, message: `invalid namespace ${JSON.stringify(name)}: must be 1-64 characters of [A-Za-z0-9_.-]` };
  const values: Record<'n' | 'r' | 'w', number> = { n: 0, r: 0, w: 0 };
  for (const key of ['n', 'r', 'w'] as const) {
    const value = Number(flags[key]);
    if (!/^\d+$/.test(flags[key]) || value < 1 || value > quorumMax) {
      return { ok: false, message: `invalid --${key}: must be an integer from 1 to ${quorumMax} (got ${JSON.stringify(flags[key])})` };
    }
    values[key] = value;
  }
  for (const key of ['r', 'w'] as const) {
    if (values[key] > values.n) return { ok: false, message: `invalid --${key}: must be at most --n (${values.n}), got ${values[key]}` };
  }
  if (flags.conflictMode !== 'siblings' && flags.conflictMode !== 'lww') {
    return { ok: false, message: `invalid --conflict-mode: must be siblings or lww (got ${JSON.stringify(flags.conflictMode)})` };
  }
  return { ok: true, value: { ...values, conflictMode: flags.conflictMode } };
}

// ---------------------------------------------------------------------------------------------
// Commands

interface HttpFlags {
  readonly http: string;
  readonly json?: boolean;
}

function failWith(message: string, code: number): void {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exitCode = code;
}

function clientFor(flags: HttpFlags): AdminClient | undefined {
  const baseUrl = httpBaseUrl(flags.http);
  if (baseUrl === undefined) {
    failWith(`invalid --http: must be HOST:PORT or an http:// URL (got ${JSON.stringify(flags.http)})`, exitUsage);
    return undefined;
  }
  return new AdminClient({ baseUrl });
}

/** Prints the answer (`--json`: as JSON; otherwise `format(value)`), or the failure. */
function report<T>(result: AdminResult<T>, flags: HttpFlags, format: (value: T) => string): void {
  if (!result.ok) return failWith(result.message, exitFailure);
  process.stdout.write(flags.json === true ? `${JSON.stringify(result.value, null, 2)}\n` : format(result.value));
}

async function rawOrDecoded<T>(client: AdminClient, flags: HttpFlags, path: string, decoded: () => Promise<AdminResult<T>>, format: (value: T) => string): Promise<void> {
  // --json prints what the node said even when this CLI would not understand its shape.
  if (flags.json === true) return report(await client.request('GET', path), flags, () => '');
  report(await decoded(), flags, format);
}

function httpOption(): Option {
  return new Option('--http <host:port>', 'HTTP address of the node to ask').env(httpAddressEnvironmentVariable).default(defaultHttpAddress);
}

function jsonOption(): Option {
  return new Option('--json', 'print the node\'s JSON answer instead of a table');
}

export function registerAdminCommands(program: Command): void {
  program.command('status')
    .description('members of the cluster as one node sees them: state, address, datacenter, partitions, phi')
    .addOption(httpOption()).addOption(jsonOption())
    .action(async (flags: HttpFlags) => {
      const client = clientFor(flags);
      if (client !== undefined) await rawOrDecoded(client, flags, '/admin/status', () => client.status(), formatStatus);
    });
  program.command('ring')
    .description('which node owns which partition')
    .addOption(httpOption()).addOption(jsonOption())
    .action(async (flags: HttpFlags) => {
      const client = clientFor(flags);
      if (client !== undefined) await rawOrDecoded(client, flags, '/admin/ring', () => client.ring(), formatRing);
    });
  program.command('transfers')
    .description('partitions moving between nodes (progress, rate) and hints waiting for down nodes, across the cluster')
    .addOption(httpOption()).addOption(jsonOption())
    .addOption(new Option('--watch', 'redraw every second until nothing moves or waits'))
    .action(async (flags: HttpFlags & { watch?: boolean }) => {
      const client = clientFor(flags);
      if (client === undefined) return;
      if (flags.watch !== true) return rawOrDecoded(client, flags, '/admin/transfers', () => client.transfers(), formatTransfers);
      for (;;) {
        const answer = await client.transfers();
        if (!answer.ok) return failWith(answer.message, exitFailure);
        const text = formatTransfers(answer.value);
        process.stdout.write(process.stdout.isTTY === true ? `\x1b[2J\x1b[H${text}` : `${text}\n`);
        const busy = answer.value.nodes.some((node) => (node.transfers?.transfers ?? []).some((transfer) => transfer.state !== 'done') || (node.hints?.pendingHints ?? 0) > 0);
        if (!busy) return;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    });
  program.command('join')
    .description('make the node join the cluster that SEED (HOST:PEERPORT, a member\'s peer address) belongs to')
    .argument('<seed>', 'HOST:PEERPORT of a member')
    .addOption(httpOption())
    .action(async (seed: string, flags: HttpFlags) => {
      if (!isHostPort(seed)) return failWith(`invalid seed ${JSON.stringify(seed)}: must be HOST:PEERPORT`, exitUsage);
      const client = clientFor(flags);
      if (client === undefined) return;
      report(await client.join(seed), flags, () => `join through ${seed} requested; follow it with: ringkv status --http ${flags.http}\n`);
    });
  program.command('leave')
    .description('make a node (default: the one asked) leave the cluster, handing its partitions to the others')
    .argument('[node-id]', 'the member that leaves (default: the node at --http)')
    .addOption(httpOption())
    .action(async (nodeId: string | undefined, flags: HttpFlags) => {
      const client = clientFor(flags);
      if (client === undefined) return;
      const who = nodeId ?? `the node at ${flags.http}`;
      report(await client.leave(nodeId), flags, () => `leave of ${who} requested; follow it with: ringkv status --http ${flags.http}\n`);
    });
  registerNamespaceCommands(program);
}

function registerNamespaceCommands(program: Command): void {
  const namespace = program.command('namespace').description('list or configure namespaces (n, r, w, conflict mode)');
  namespace.command('list')
    .description('the namespaces with their own settings')
    .addOption(httpOption()).addOption(jsonOption())
    .action(async (flags: HttpFlags) => {
      const client = clientFor(flags);
      if (client !== undefined) await rawOrDecoded(client, flags, '/admin/namespaces', () => client.namespaces(), (value) => formatNamespaces(value.namespaces));
    });
  namespace.command('set')
    .description('create or replace the settings of a namespace (options not given take their defaults)')
    .argument('<name>', 'namespace: 1-64 characters of [A-Za-z0-9_.-]')
    .addOption(new Option('--n <n>', 'replicas per key (N)').default('3'))
    .addOption(new Option('--r <r>', 'read quorum (R), at most N').default('2'))
    .addOption(new Option('--w <w>', 'write quorum (W), at most N').default('2'))
    .addOption(new Option('--conflict-mode <mode>', 'concurrent writes kept as siblings, or last write wins').choices(['siblings', 'lww']).default('siblings'))
    .addOption(httpOption()).addOption(jsonOption())
    .action(async (name: string, flags: HttpFlags & NamespaceFlags) => {
      const update = namespaceUpdate(name, flags);
      if (!update.ok) return failWith(update.message, exitUsage);
      const client = clientFor(flags);
      if (client === undefined) return;
      report(await client.setNamespace(name, update.value), flags, (stored) => `namespace ${stored.name} set\n\n${formatNamespaces([stored])}`);
    });
}
