import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { freePort, runCli } from '../../test/helpers/ringkv-process.js';
import { AdminClient, httpBaseUrl, interpretAnswer, isHostPort, unreachableMessage, type StatusResponse } from './admin-client.js';
import { compressRanges, formatBytes, formatNamespaces, formatPercent, formatRing, formatStatus, formatTable, formatTransfers, namespaceUpdate, partitionsByOwner, progressBar, wrapList } from './admin-commands.js';

const status: StatusResponse = {
  nodeId: 'dev-1',
  ring: { partitionCount: 16, epoch: 4, claimant: 'dev-1' },
  members: [
    { nodeId: 'dev-2', status: 'valid', state: 'valid', address: '127.0.0.1:7801', datacenter: 'dc1', weight: 1, partitions: 5, phi: 0.42, self: false },
    { nodeId: 'dev-1', status: 'valid', state: 'valid', address: '127.0.0.1:7800', datacenter: 'dc1', weight: 1, partitions: 6, phi: null, self: true },
    { nodeId: 'dev-3', status: 'leaving', state: 'down', address: '127.0.0.1:7802', datacenter: 'dc2', weight: 2, partitions: 5, phi: 12.75, self: false },
  ],
};
const ring = {
  partitionCount: 16,
  epoch: 4,
  claimant: 'dev-1',
  owners: ['dev-1', 'dev-1', 'dev-1', 'dev-1', 'dev-2', 'dev-2', 'dev-2', 'dev-2', 'dev-1', 'dev-3', 'dev-3', 'dev-3', 'dev-1', 'dev-3', 'dev-2', 'dev-3'],
};
const namespaces = { namespaces: [{ name: 'sessions', n: 3, r: 1, w: 1, conflictMode: 'lww' }, { name: 'default', n: 3, r: 2, w: 2, conflictMode: 'siblings' }] };

interface Recorded {
  readonly method: string;
  readonly url: string;
  readonly body: unknown;
}

type Route = (body: unknown) => { status: number; body: unknown };

/** A stand-in for a node's admin API: canned JSON per `METHOD /path`; records what it received. */
class FakeAdminApi {
  readonly requests: Recorded[] = [];
  readonly routes = new Map<string, Route>();
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const body: unknown = text === '' ? undefined : JSON.parse(text);
    this.requests.push({ method: request.method ?? '', url: request.url ?? '', body });
    const route = this.routes.get(`${request.method} ${request.url}`);
    const answer = route === undefined ? { status: 404, body: { error: { code: 'UNKNOWN_COMMAND', message: `no route for ${request.method} ${request.url}` } } } : route(body);
    response.writeHead(answer.status, { 'content-type': 'application/json' }).end(JSON.stringify(answer.body));
  }
}

describe('cli: admin formatting (pure)', () => {
  test('compressRanges: runs become ranges, singles stay, input order and duplicates ignored', () => {
    assert.equal(compressRanges([0, 1, 2, 3, 8, 12, 13, 14, 15]), '0-3, 8, 12-15');
    assert.equal(compressRanges([15, 3, 3, 0, 1, 2]), '0-3, 15');
    assert.equal(compressRanges([7]), '7');
    assert.equal(compressRanges([]), '');
    assert.equal(compressRanges([4, 5]), '4-5');
  });

  test('compressRanges: expanding the ranges gives back the set (property, against a naive oracle)', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 200 }), (numbers) => {
      const text = compressRanges(numbers);
      const expanded: number[] = [];
      for (const part of text === '' ? [] : text.split(', ')) {
        const [low, high] = part.split('-').map(Number) as [number, number | undefined];
        for (let value = low; value <= (high ?? low); value++) expanded.push(value);
      }
      assert.deepEqual(expanded, [...new Set(numbers)].sort((a, b) => a - b));
      // Maximal runs: a part starts at least 2 after the previous one ends.
      const parts = text === '' ? [] : text.split(', ');
      for (const [index, part] of parts.entries()) {
        const next = parts[index + 1];
        if (next !== undefined) assert.ok(Number(next.split('-')[0]) > Number(part.split('-').at(-1)) + 1, text);
      }
    }));
  });

  test('formatTable: columns as wide as their widest cell, no trailing spaces', () => {
    assert.equal(formatTable(['a', 'bb'], [['xxx', 'y'], ['z', '']]), 'a    bb\nxxx  y\nz');
  });

  test('formatPercent and wrapList', () => {
    assert.equal(formatPercent(86, 256), '33.6%');
    assert.equal(formatPercent(0, 8), '0.0%');
    assert.deepEqual(wrapList(['0-3', '8', '12-15'], 9), ['0-3, 8,', '12-15']);
    assert.deepEqual(wrapList(['0-3', '8'], 100), ['0-3, 8']);
    assert.deepEqual(wrapList([], 10), []);
  });

  test('formatStatus: members by id, self starred, down members show their status, phi one decimal', () => {
    const lines = formatStatus(status).split('\n');
    assert.equal(lines[0], 'ring: 16 partitions, epoch 4, claimant dev-1; 3 members, as seen by dev-1 (*)');
    assert.match(lines[2] ?? '', /^node\s+state\s+address\s+datacenter\s+weight\s+partitions\s+phi$/);
    assert.match(lines[3] ?? '', /^dev-1\*\s+valid\s+127\.0\.0\.1:7800\s+dc1\s+1\s+6 \(37\.5%\)\s+-$/);
    assert.match(lines[4] ?? '', /^dev-2\s+valid\s+127\.0\.0\.1:7801\s+dc1\s+1\s+5 \(31\.3%\)\s+0\.4$/);
    assert.match(lines[5] ?? '', /^dev-3\s+down \(leaving\)\s+127\.0\.0\.1:7802\s+dc2\s+2\s+5 \(31\.3%\)\s+12\.8$/);
    assert.ok(!formatStatus(status).includes('anti-entropy'), 'no anti-entropy line when the node reports none');
    const antiEntropy = { trees: 10, treesBuilt: 9, rounds: 120, exchangesDiffering: 3, keysRepaired: 41, bytesSent: 3 * 1024 * 1024, reapedTombstones: 2, treesRebuilt: 0 };
    assert.match(formatStatus({ ...status, antiEntropy }), /\nanti-entropy: 9 of 10 trees built; 120 rounds, 3 partitions found differing, 41 objects repaired, 3\.0 MiB sent, 2 tombstones reaped\n$/);
    assert.match(formatStatus({ ...status, antiEntropy: { ...antiEntropy, awaitingTransfer: 4 } }), /\nanti-entropy: 9 of 10 trees built \(4 left to their transfer\); 120 rounds/);
  });

  test('formatRing: per owner, count, share and compressed ranges; wraps long lists', () => {
    assert.equal(formatRing(ring), [
      'ring: 16 partitions, epoch 4, claimant dev-1',
      '',
      'dev-1  6 partitions (37.5%):',
      '       0-3, 8, 12',
      'dev-2  5 partitions (31.3%):',
      '       4-7, 14',
      'dev-3  5 partitions (31.3%):',
      '       9-11, 13, 15',
      '',
    ].join('\n'));
    const spread = { partitionCount: 256, epoch: 1, claimant: 'a', owners: Array.from({ length: 256 }, (_, index) => ['a', 'b'][index % 2] as string) };
    const lines = formatRing(spread).split('\n');
    assert.ok(lines.every((line) => line.length <= 100), 'every line fits in 100 columns');
    assert.ok(lines.length > 6);
    assert.deepEqual([...partitionsByOwner(['x', '', 'x']).entries()], [['(unassigned)', [1]], ['x', [0, 2]]]);
    assert.match(formatRing({ ...ring, partitionCount: 32 }), /warning: the node listed 16 owners for 32 partitions/);
  });

  test('formatNamespaces: sorted table; a hint when there are none', () => {
    assert.equal(formatNamespaces(namespaces.namespaces), 'namespace  n  r  w  conflict-mode\ndefault    3  2  2  siblings\nsessions   3  1  1  lww\n');
    assert.match(formatNamespaces([]), /no namespaces configured/);
  });

  test('namespaceUpdate: checks the name, 1 <= r, w <= n <= 8, and the conflict mode', () => {
    const flags = { n: '3', r: '2', w: '2', conflictMode: 'siblings' };
    assert.deepEqual(namespaceUpdate('users', flags), { ok: true, value: { n: 3, r: 2, w: 2, conflictMode: 'siblings' } });
    assert.match(namespaceUpdate('no spaces', flags).ok ? '' : 'invalid namespace', /invalid namespace/);
    const bad = (changes: Partial<typeof flags>): string => {
      const result = namespaceUpdate('users', { ...flags, ...changes });
      return result.ok ? 'ok' : result.message;
    };
    assert.equal(bad({ r: '4' }), 'invalid --r: must be at most --n (3), got 4');
    assert.equal(bad({ n: '0' }), 'invalid --n: must be an integer from 1 to 8 (got "0")');
    assert.equal(bad({ w: '1.5' }), 'invalid --w: must be an integer from 1 to 8 (got "1.5")');
    assert.match(bad({ conflictMode: 'newest' }), /invalid --conflict-mode/);
  });

  test('httpBaseUrl and isHostPort: HOST:PORT or a URL; anything else is refused', () => {
    assert.equal(httpBaseUrl('127.0.0.1:8098'), 'http://127.0.0.1:8098');
    assert.equal(httpBaseUrl('localhost:9000'), 'http://localhost:9000');
    assert.equal(httpBaseUrl('[::1]:8098'), 'http://[::1]:8098');
    assert.equal(httpBaseUrl('http://db.example:8098/'), 'http://db.example:8098');
    assert.equal(httpBaseUrl('127.0.0.1'), undefined);
    assert.equal(httpBaseUrl('127.0.0.1:99999'), undefined);
    assert.equal(isHostPort('10.0.0.2:7800'), true);
    assert.equal(isHostPort('10.0.0.2'), false);
    assert.equal(isHostPort('10.0.0.2:0'), false);
  });

  test('interpretAnswer: 2xx JSON is the value; JSON errors carry their message; the rest is named', () => {
    const base = { statusText: '', what: 'GET /admin/ring', baseUrl: 'http://n:1' };
    assert.deepEqual(interpretAnswer({ ...base, status: 200, text: '{"a":1}' }), { ok: true, value: { a: 1 } });
    assert.deepEqual(interpretAnswer({ ...base, status: 200, text: '' }), { ok: true, value: {} });
    assert.deepEqual(interpretAnswer({ ...base, status: 409, text: '{"error":{"code":"CONFLICT","message":"already a member"}}' }),
      { ok: false, kind: 'server', message: 'already a member', code: 'CONFLICT' });
    const html = interpretAnswer({ ...base, status: 502, statusText: 'Bad Gateway', text: '<html>' });
    assert.deepEqual(html, { ok: false, kind: 'protocol', message: 'the node at http://n:1 answered 502 Bad Gateway to GET /admin/ring' });
    const notJson = interpretAnswer({ ...base, status: 200, text: 'hello' });
    assert.equal(notJson.ok ? '' : notJson.kind, 'protocol');
  });

  test('unreachableMessage: the error code, or the timeout', () => {
    const refused = new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
    assert.equal(unreachableMessage('http://127.0.0.1:8098', refused, undefined), 'cannot reach the node at http://127.0.0.1:8098 (ECONNREFUSED); is it running? (ringkv start)');
    assert.equal(unreachableMessage('http://h:1', new Error('x'), 5000), 'cannot reach the node at http://h:1 (no answer within 5 s); is it running? (ringkv start)');
  });
});

describe('cli: transfers formatting (pure)', () => {
  test('progress bars and byte sizes', () => {
    assert.equal(progressBar(0, 10, 10), '[..........]   0%');
    assert.equal(progressBar(5, 10, 10), '[#####.....]  50%');
    assert.equal(progressBar(12, 10, 10), '[##########] 100%');
    assert.equal(progressBar(0, 0, 4), '[####] 100%', 'an empty partition is done');
    assert.equal(formatBytes(812), '812 B');
    assert.equal(formatBytes(3277), '3.2 KiB');
    assert.equal(formatBytes(1.5 * 1024 * 1024), '1.5 MiB');
  });

  test('ringkv transfers: one row per unfinished transfer, done ones counted, hints per holder, silent members named', () => {
    const transfer = { partition: 17, targets: ['node-4'], drop: true, state: 'sending', totalObjects: 200, sentObjects: 50, sentBytes: 5000, bytesPerSecond: 1536, waiting: null };
    const text = formatTransfers({
      nodes: [
        { nodeId: 'node-2', transfers: { transferLimit: 2, transfers: [transfer, { ...transfer, partition: 18, state: 'done' }] }, hints: { pending: [{ target: 'node-3', hints: 52, bytes: 3300, up: false }], pendingHints: 52, deliveredHints: 0 } },
        { nodeId: 'node-1', transfers: { transferLimit: 2, transfers: [{ ...transfer, partition: 3, state: 'pending', totalObjects: null, sentObjects: 0, bytesPerSecond: 0, waiting: 'target node-4 down' }] }, hints: null },
      ],
      unreachable: ['node-5'],
    });
    assert.equal(text, [
      'transfer          partition  progress                     objects         rate       state',
      'node-1 -> node-4  3          [....................]   0%  0 objects       0 B/s      waiting: target node-4 down',
      'node-2 -> node-4  17         [#####...............]  25%  50/200 objects  1.5 KiB/s  sending',
      '',
      'hints: node-2 holds 52 for node-3 (3.2 KiB; node-3 down)',
      '',
      '2 transfers under way, 1 done in the last 10 minutes; 52 hints waiting',
      'not answering: node-5',
      '',
    ].join('\n'));
  });
});

describe('cli: admin client', () => {
  test('admin client: a node that accepts but never answers is unreachable after the timeout', async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const baseUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const startedMs = performance.now();
      const result = await new AdminClient({ baseUrl, timeoutMs: 200 }).status();
      assert.ok(performance.now() - startedMs < 2000);
      assert.deepEqual(result, { ok: false, kind: 'unreachable', message: `cannot reach the node at ${baseUrl} (no answer within 0.2 s); is it running? (ringkv start)` });
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });
});

describe('cli: admin commands against a fake node', () => {
  const api = new FakeAdminApi();
  let http = '';
  before(async () => {
    http = await api.start();
    api.routes.set('GET /admin/status', () => ({ status: 200, body: status }));
    api.routes.set('GET /admin/ring', () => ({ status: 200, body: ring }));
    api.routes.set('GET /admin/namespaces', () => ({ status: 200, body: namespaces }));
    api.routes.set('POST /admin/join', (body) => ((body as { seed: string }).seed === '127.0.0.1:7999'
      ? { status: 409, body: { error: { code: 'BAD_REQUEST', message: 'this node is already a member of a cluster' } } }
      : { status: 200, body: { ok: true } }));
    api.routes.set('POST /admin/leave', () => ({ status: 200, body: { ok: true } }));
    api.routes.set('PUT /admin/namespaces/users', (body) => ({ status: 200, body: { name: 'users', ...(body as object) } }));
  });
  after(() => api.stop());
  const requestsTo = (method: string, url: string): Recorded[] => api.requests.filter((request) => request.method === method && request.url === url);

  test('cli status: prints the members table and exits 0; --json prints the answer', async () => {
    const [table, json] = await Promise.all([runCli(['status', '--http', http]), runCli(['status', '--json', '--http', http])]);
    assert.equal(table.code, 0, table.stderr);
    assert.equal(table.stdout, formatStatus(status));
    assert.match(table.stdout, /^dev-3\s+down \(leaving\)\s+127\.0\.0\.1:7802\s+dc2\s+2\s+5 \(31\.3%\)\s+12\.8$/m);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), status);
  });

  test('cli status: the address comes from RINGKV_HTTP when --http is not given', async () => {
    const result = await runCli(['status'], { env: { RINGKV_HTTP: http } });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /as seen by dev-1/);
  });

  test('cli ring: partitions per node as ranges', async () => {
    const result = await runCli(['ring', '--http', http]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^dev-1 {2}6 partitions \(37\.5%\):\n {7}0-3, 8, 12$/m);
    assert.match(result.stdout, /^dev-3 {2}5 partitions \(31\.3%\):\n {7}9-11, 13, 15$/m);
  });

  test('cli join: posts the seed; a JSON error is printed as its message with exit 1', async () => {
    const [joined, refused, invalid] = await Promise.all([
      runCli(['join', '127.0.0.1:7800', '--http', http]),
      runCli(['join', '127.0.0.1:7999', '--http', http]),
      runCli(['join', 'not-a-seed', '--http', http]),
    ]);
    assert.equal(joined.code, 0, joined.stderr);
    assert.match(joined.stdout, /join through 127\.0\.0\.1:7800 requested/);
    assert.deepEqual(requestsTo('POST', '/admin/join').map((request) => JSON.stringify(request.body)).sort(), ['{"seed":"127.0.0.1:7800"}', '{"seed":"127.0.0.1:7999"}']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stderr, 'ringkv: this node is already a member of a cluster\n');
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /^ringkv: invalid seed "not-a-seed": must be HOST:PEERPORT/);
  });

  test('cli leave: with and without a node id', async () => {
    const [named, self] = await Promise.all([runCli(['leave', 'dev-2', '--http', http]), runCli(['leave', '--http', http])]);
    assert.equal(named.code, 0, named.stderr);
    assert.match(named.stdout, /leave of dev-2 requested/);
    assert.equal(self.code, 0, self.stderr);
    const bodies = requestsTo('POST', '/admin/leave').map((request) => JSON.stringify(request.body)).sort();
    assert.deepEqual(bodies, ['{"nodeId":"dev-2"}', '{}']);
  });

  test('cli namespace: list prints a table; set sends the settings with defaults for the rest', async () => {
    const [list, set, invalid] = await Promise.all([
      runCli(['namespace', 'list', '--http', http]),
      runCli(['namespace', 'set', 'users', '--r', '1', '--conflict-mode', 'lww', '--http', http]),
      runCli(['namespace', 'set', 'users', '--r', '5', '--http', http]),
    ]);
    assert.equal(list.code, 0, list.stderr);
    assert.equal(list.stdout, formatNamespaces(namespaces.namespaces));
    assert.equal(set.code, 0, set.stderr);
    assert.deepEqual(requestsTo('PUT', '/admin/namespaces/users').map((request) => request.body), [{ n: 3, r: 1, w: 2, conflictMode: 'lww' }]);
    assert.match(set.stdout, /^users {6}3 {2}1 {2}2 {2}lww$/m);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /invalid --r: must be at most --n \(3\), got 5/);
  });

  test('cli: a node without the admin API (404) is named as such, exit 1', async () => {
    const result = await runCli(['namespace', 'set', 'other', '--http', http]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'ringkv: no route for PUT /admin/namespaces/other (is it a ringkv node with the admin API?)\n');
  });

  test('cli: unreachable node: one line naming the address and the cause, exit 1', async () => {
    const port = await freePort();
    const result = await runCli(['status', '--http', `127.0.0.1:${port}`]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr, `ringkv: cannot reach the node at http://127.0.0.1:${port} (ECONNREFUSED); is it running? (ringkv start)\n`);
    assert.equal(result.stdout, '');
  });

  test('cli: an answer of the wrong shape is an error, not a crash; bad --http is usage', async () => {
    api.routes.set('GET /admin/ring', () => ({ status: 200, body: { partitionCount: 'many' } }));
    const [wrong, badAddress] = await Promise.all([runCli(['ring', '--http', http]), runCli(['ring', '--http', 'nowhere'])]);
    api.routes.set('GET /admin/ring', () => ({ status: 200, body: ring }));
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /^ringkv: the node at http:\/\/127\.0\.0\.1:\d+ answered \/admin\/ring with an unexpected shape at partitionCount: /);
    assert.equal(badAddress.code, 2);
    assert.match(badAddress.stderr, /invalid --http: must be HOST:PORT/);
  });
});
