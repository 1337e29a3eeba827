import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { freePort, temporaryDirectory } from '../../test/helpers/ringkv-process.js';
import { HttpServer } from '../api/http-server.js';
import { resolveConfig } from '../node/config.js';
import { KvService, type KvLimits } from '../node/kv-service.js';
import { silentLogger } from '../node/logger.js';
import { compareKeys } from '../node/storage-key.js';
import { RingkvNode } from '../node/ringkv-node.js';
import { MemoryEngine } from '../storage/memory-engine.js';
import { SystemClock } from '../world/clock.js';
import { NodeFileSystem } from '../world/file-system.js';
import { createRandom } from '../world/random.js';
import { RingkvClient, RingkvClientError, type ClientSibling, type RingkvClientOptions } from './client.js';

const limitsDefault: KvLimits = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024, siblingsMax: 100 };

/** A real server on 127.0.0.1 with a memory engine; stopped when the test ends. Returns its URL. */
async function startServer(t: TestContext, limits: Partial<KvLimits> = {}): Promise<string> {
  const merged = { ...limitsDefault, ...limits };
  const kv = new KvService(new MemoryEngine(), { actor: 'node-a', clock: new SystemClock(), limits: merged });
  const server = new HttpServer({
    host: '127.0.0.1',
    port: 0,
    kv,
    logger: silentLogger(),
    valueBytesMax: merged.valueBytesMax,
    isReady: () => true,
    status: () => ({}),
  });
  await server.start();
  t.after(() => server.stop(1000));
  return `http://127.0.0.1:${server.port()}`;
}

/**
 * A whole single node (cluster service and quorum coordinator, unlike startServer's bare store)
 * on free loopback ports; stopped when the test ends. Returns its HTTP URL.
 */
async function startNode(t: TestContext): Promise<string> {
  const config = resolveConfig({
    flags: { dataDir: temporaryDirectory(), httpPort: await freePort(), respPort: await freePort(), peerPort: await freePort() },
    environment: {},
    file: undefined,
  });
  assert.ok(config.ok);
  const world = { clock: new SystemClock(), random: createRandom(7), fs: new NodeFileSystem(), logger: silentLogger() };
  const node = await RingkvNode.start(config.value, world, () => {});
  t.after(() => node.stop());
  return `http://127.0.0.1:${node.http.port()}`;
}

/**
 * A fetch that records each request's method and URL and answers without a server: a key GET
 * finds nothing (404), a key listing is empty, a PUT or DELETE succeeds (204).
 */
function recordingFetch(): { fetch: typeof fetch; sent: string[] } {
  const sent: string[] = [];
  const recording: typeof fetch = (input, init) => {
    const method = init?.method ?? 'GET';
    sent.push(`${method} ${String(input)}`);
    const isListing = new URL(String(input)).pathname.split('/').length === 3;
    const body = isListing ? { keys: [], next: null } : { error: { code: 'NOT_FOUND', message: 'absent' } };
    if (method !== 'GET') return Promise.resolve(new Response(null, { status: 204 }));
    return Promise.resolve(new Response(JSON.stringify(body), { status: isListing ? 200 : 404 }));
  };
  return { fetch: recording, sent };
}

async function clientFor(t: TestContext, options: Omit<RingkvClientOptions, 'url'> = {}, limits: Partial<KvLimits> = {}): Promise<RingkvClient> {
  return new RingkvClient({ url: await startServer(t, limits), ...options });
}

/** Asserts that `promise` rejects with a RingkvClientError of `code` and `status`. */
async function rejectsWith(promise: Promise<unknown>, code: string, status: number): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof RingkvClientError, `not a RingkvClientError: ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    return true;
  });
}

function texts(siblings: readonly ClientSibling[]): string[] {
  return siblings.map((sibling) => sibling.value.toString('utf8')).sort();
}

/** Picks the sibling written last; ties go to the greater bytes (the Redis GET rule). */
const newestWins = (siblings: readonly ClientSibling[]): Buffer =>
  [...siblings].sort((a, b) => a.writtenAt.getTime() - b.writtenAt.getTime() || Buffer.compare(a.value, b.value)).at(-1)?.value ?? Buffer.alloc(0);

describe('client: reads and writes', () => {
  test('client: a value put is got back with its content type and context', async (t) => {
    const client = await clientFor(t);
    const { context } = await client.put('user:1', '{"name":"ada"}', { contentType: 'application/json' });
    assert.match(context, /^[A-Za-z0-9_-]+$/);
    const read = await client.get('user:1');
    assert.ok(read !== undefined);
    assert.equal(read.value?.toString('utf8'), '{"name":"ada"}');
    assert.equal(read.siblings.length, 1);
    assert.equal(read.siblings[0]?.contentType, 'application/json');
    assert.ok(Math.abs((read.siblings[0]?.writtenAt.getTime() ?? 0) - Date.now()) < 60_000);
    assert.equal(read.context, context);
  });

  test('client: strings are stored as text/plain, bytes as application/octet-stream', async (t) => {
    const client = await clientFor(t);
    await client.put('text', 'héllo');
    await client.put('bytes', Uint8Array.of(0, 255, 10));
    const text = await client.get('text');
    const bytes = await client.get('bytes');
    assert.equal(text?.siblings[0]?.contentType, 'text/plain; charset=utf-8');
    assert.equal(text?.value?.toString('utf8'), 'héllo');
    assert.equal(bytes?.siblings[0]?.contentType, 'application/octet-stream');
    assert.deepEqual(bytes?.value, Buffer.of(0, 255, 10));
  });

  test('client: an absent key gets undefined; delete removes and tolerates absence', async (t) => {
    const client = await clientFor(t);
    assert.equal(await client.get('missing'), undefined);
    await client.put('k', 'v');
    await client.delete('k');
    assert.equal(await client.get('k'), undefined);
    await client.delete('k');
  });

  test('client: byte keys and string keys name the same key; reserved characters survive', async (t) => {
    const client = await clientFor(t);
    await client.put(Buffer.from('a/b?c#d%e', 'utf8'), 'v');
    assert.equal((await client.get('a/b?c#d%e'))?.value?.toString(), 'v');
    assert.deepEqual(await client.keys(), ['a/b?c#d%e']);
  });

  test('client: keys "." and ".." are refused before any request', async (t) => {
    const client = await clientFor(t);
    await rejectsWith(client.put('.', 'v'), 'KEY_INVALID', 0);
    await rejectsWith(client.get(Buffer.from('..')), 'KEY_INVALID', 0);
  });

  test('client: namespaces are separate and keys list page by page', async (t) => {
    const url = await startServer(t);
    const users = new RingkvClient({ url, namespace: 'users' });
    const other = new RingkvClient({ url });
    for (const key of ['c', 'a', 'b']) await users.put(key, 'v');
    await other.put('z', 'v');
    // Listing order is engine order (src/node/storage-key.ts): token prefix, then key.
    const ordered = ['a', 'b', 'c'].sort((left, right) => compareKeys('users', Buffer.from(left), Buffer.from(right)));
    assert.deepEqual(await users.keysPage({ limit: 2 }), { keys: ordered.slice(0, 2), next: ordered[1] });
    assert.deepEqual(await users.keysPage({ limit: 2, after: ordered[1] as string }), { keys: ordered.slice(2), next: null });
    assert.deepEqual(await other.keys(), ['z']);
    assert.deepEqual(await other.keys({ namespace: 'users' }), ordered);
  });
});

describe('client: siblings and update', () => {
  test('client: blind puts give siblings; value is set only with a resolver', async (t) => {
    const url = await startServer(t);
    const plain = new RingkvClient({ url });
    const resolving = new RingkvClient({ url, resolveSiblings: newestWins });
    await plain.put('k', 'one');
    await plain.put('k', 'two');
    const unresolved = await plain.get('k');
    assert.deepEqual(texts(unresolved?.siblings ?? []), ['one', 'two']);
    assert.equal(unresolved?.value, undefined);
    assert.equal((await resolving.get('k'))?.value?.toString(), 'two');
    const concatenated = await plain.get('k', { resolveSiblings: (siblings) => Buffer.concat(siblings.map((s) => s.value)) });
    assert.equal(concatenated?.value?.toString(), 'onetwo');
  });

  test('client: a put with the read context supersedes every sibling it saw', async (t) => {
    const client = await clientFor(t);
    await client.put('k', 'one');
    await client.put('k', 'two');
    const read = await client.get('k');
    await client.put('k', 'merged', { context: read?.context ?? '' });
    assert.deepEqual(texts((await client.get('k'))?.siblings ?? []), ['merged']);
  });

  test('client: delete with a stale context keeps the concurrent write', async (t) => {
    const client = await clientFor(t);
    const { context } = await client.put('k', 'seen');
    await client.put('k', 'concurrent');
    await client.delete('k', { context });
    assert.deepEqual(texts((await client.get('k'))?.siblings ?? []), ['concurrent']);
  });

  test('client: update creates an absent key and then applies fn to the current value', async (t) => {
    const client = await clientFor(t);
    const seen: (string | undefined)[] = [];
    for (let round = 0; round < 5; round++) {
      await client.update('counter', (current) => {
        seen.push(current?.toString());
        return String(Number(current?.toString() ?? '0') + 1);
      });
    }
    assert.deepEqual(seen, [undefined, '1', '2', '3', '4']);
    const read = await client.get('counter');
    assert.deepEqual(texts(read?.siblings ?? []), ['5']);
    assert.equal(read?.siblings[0]?.contentType, 'text/plain; charset=utf-8');
  });

  test('client: update refuses several siblings without a resolver and merges them with one', async (t) => {
    const client = await clientFor(t);
    await client.put('k', 'one');
    await client.put('k', 'two');
    await rejectsWith(client.update('k', (current) => current ?? ''), 'SIBLINGS_UNRESOLVED', 0);
    assert.equal((await client.get('k'))?.siblings.length, 2);
    await client.update('k', (current) => `${current?.toString()}!`, { resolveSiblings: newestWins });
    assert.deepEqual(texts((await client.get('k'))?.siblings ?? []), ['two!']);
  });

  test('client: two concurrent updates from one read both survive as siblings', async (t) => {
    const url = await startServer(t);
    await new RingkvClient({ url }).put('balance', '100');
    // Both clients must read before either writes: each holds its PUT until both GETs answered.
    let readsAnswered = 0;
    let bothRead!: () => void;
    const barrier = new Promise<void>((resolve) => (bothRead = resolve));
    const racing: typeof fetch = async (input, init) => {
      if (init?.method === 'PUT') await barrier;
      const response = await fetch(input, init);
      if (init?.method === 'GET' && ++readsAnswered === 2) bothRead();
      return response;
    };
    const alice = new RingkvClient({ url, fetch: racing });
    const bob = new RingkvClient({ url, fetch: racing });
    const plus = (amount: number) => (current: Buffer | undefined) => String(Number(current?.toString()) + amount);
    await Promise.all([alice.update('balance', plus(10)), bob.update('balance', plus(-30))]);
    const read = await alice.get('balance');
    assert.deepEqual(texts(read?.siblings ?? []), ['110', '70']);
    // A resolver that knows the domain can now merge them (here: apply both deltas).
    await alice.update('balance', () => '80', { resolveSiblings: newestWins });
    assert.deepEqual(texts((await bob.get('balance'))?.siblings ?? []), ['80']);
  });
});

describe('client: quorum options', () => {
  test('client quorum: the client n, r, w go with every key request; none gives no query', async () => {
    const { fetch, sent } = recordingFetch();
    const plain = new RingkvClient({ url: 'http://ringkv.test', fetch });
    await plain.get('k');
    const client = new RingkvClient({ url: 'http://ringkv.test', fetch, quorum: { n: 3, r: 2, w: 1 } });
    await client.get('k');
    await client.put('k', 'v');
    await client.delete('k');
    await client.keys();
    assert.deepEqual(sent, [
      'GET http://ringkv.test/kv/default/k',
      'GET http://ringkv.test/kv/default/k?n=3&r=2&w=1',
      'PUT http://ringkv.test/kv/default/k?n=3&r=2&w=1',
      'DELETE http://ringkv.test/kv/default/k?n=3&r=2&w=1',
      'GET http://ringkv.test/kv/default?',
    ]);
  });

  test('client quorum: a call quorum overrides the client one field by field; update uses it for both requests', async () => {
    const { fetch, sent } = recordingFetch();
    const client = new RingkvClient({ url: 'http://ringkv.test', fetch, namespace: 'ns', quorum: { n: 5, r: 3 } });
    await client.get('k', { quorum: { r: 1 } });
    await client.put('k', 'v', { quorum: { w: 4, r: undefined } });
    await client.delete('k', { quorum: { n: 2, r: 2, w: 2 } });
    await client.update('k', () => 'v', { quorum: { r: 4, w: 4 } });
    assert.deepEqual(sent, [
      'GET http://ringkv.test/kv/ns/k?n=5&r=1',
      'PUT http://ringkv.test/kv/ns/k?n=5&r=3&w=4',
      'DELETE http://ringkv.test/kv/ns/k?n=2&r=2&w=2',
      'GET http://ringkv.test/kv/ns/k?n=5&r=4&w=4',
      'PUT http://ringkv.test/kv/ns/k?n=5&r=4&w=4',
    ]);
  });

  test('client quorum: values that are not integers from 1 to 8 are BAD_REQUEST before any request', async () => {
    const { fetch, sent } = recordingFetch();
    const client = new RingkvClient({ url: 'http://ringkv.test', fetch });
    for (const bad of [0, 9, 1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, '2' as unknown as number]) {
      await rejectsWith(client.get('k', { quorum: { r: bad } }), 'BAD_REQUEST', 0);
      await rejectsWith(client.put('k', 'v', { quorum: { w: bad } }), 'BAD_REQUEST', 0);
      await rejectsWith(client.delete('k', { quorum: { n: bad } }), 'BAD_REQUEST', 0);
      await rejectsWith(client.update('k', () => 'v', { quorum: { n: bad } }), 'BAD_REQUEST', 0);
    }
    await assert.rejects(client.get('k', { quorum: { r: 0 } }), { message: 'quorum r must be an integer from 1 to 8, got 0' });
    assert.throws(() => new RingkvClient({ url: 'http://ringkv.test', fetch, quorum: { w: 10 } }), (error: unknown) => {
      assert.ok(error instanceof RingkvClientError);
      assert.equal(error.code, 'BAD_REQUEST');
      assert.equal(error.message, 'quorum w must be an integer from 1 to 8, got 10');
      return true;
    });
    assert.deepEqual(sent, [], 'nothing was sent');
    await client.get('k', { quorum: { n: 8, r: 1, w: 8 } });
    assert.deepEqual(sent, ['GET http://ringkv.test/kv/default/k?n=8&r=1&w=8']);
  });

  test('client quorum: a single node serves n=1 and n=3 with r=w=1, refuses r > n, and cannot meet r=3 or w=2 of n=3', async (t) => {
    const url = await startNode(t);
    const client = new RingkvClient({ url });
    await client.put('k', 'v', { quorum: { n: 1, w: 1 } });
    assert.equal((await client.get('k', { quorum: { n: 1, r: 1 } }))?.value?.toString(), 'v');
    // n given: it is not capped at the ring's size, and the one node is enough for r=1 / w=1.
    await client.put('k', 'v2', { quorum: { n: 3, w: 1 }, context: (await client.get('k'))?.context ?? '' });
    assert.equal((await client.get('k', { quorum: { n: 3, r: 1 } }))?.value?.toString(), 'v2');
    // n defaulted: a one-node ring caps it at 1, so r=2 asks for more replicas than n.
    await rejectsWith(client.get('k', { quorum: { r: 2 } }), 'BAD_REQUEST', 400);
    await assert.rejects(client.get('k', { quorum: { r: 2 } }), { message: 'r and w must be at most n (n=1, r=2, w=1)' });
    await rejectsWith(client.put('k', 'v', { quorum: { n: 2, w: 3 } }), 'BAD_REQUEST', 400);
    // n=3 given: valid, but only one of its replicas exists.
    await rejectsWith(client.get('k', { quorum: { n: 3, r: 3 } }), 'UNAVAILABLE', 503);
    await assert.rejects(client.get('k', { quorum: { n: 3, r: 3 } }), { message: 'read quorum not met: only 1 of n=3 replicas are up, r=3 needed' });
    const strict = new RingkvClient({ url, quorum: { n: 3, w: 2 } });
    await assert.rejects(strict.put('k', 'lost'), { name: 'RingkvClientError', code: 'UNAVAILABLE', status: 503, message: 'write quorum not met: only 1 of n=3 replicas are up, w=2 needed' });
    await rejectsWith(strict.update('k', () => 'lost', { quorum: { r: 1 } }), 'UNAVAILABLE', 503);
    assert.equal((await client.get('k'))?.value?.toString(), 'v2', 'no refused write was applied');
  });
});

describe('client: errors', () => {
  test('client: server errors surface with their stable code and status', async (t) => {
    const client = await clientFor(t, {}, { siblingsMax: 1, keyBytesMax: 8 });
    await rejectsWith(client.put('much-too-long', 'v'), 'KEY_TOO_LARGE', 413);
    await rejectsWith(client.put('k', 'v', { namespace: 'bad name' }), 'NAMESPACE_INVALID', 400);
    await rejectsWith(client.put('k', 'v', { context: 'garbage!' }), 'CONTEXT_INVALID', 400);
    await client.put('k', 'one');
    await rejectsWith(client.put('k', 'two'), 'TOO_MANY_SIBLINGS', 409);
    await rejectsWith(client.keys({ limit: 0 }), 'BAD_REQUEST', 400);
  });

  test('client: a value over the limit is VALUE_TOO_LARGE', async (t) => {
    const client = await clientFor(t, {}, { valueBytesMax: 16 });
    await rejectsWith(client.put('k', Buffer.alloc(17)), 'VALUE_TOO_LARGE', 413);
    await client.put('k', Buffer.alloc(16));
  });

  test('client: a wrong base URL is an error, not an absent key', async (t) => {
    const client = new RingkvClient({ url: `${await startServer(t)}/not-ringkv` });
    await rejectsWith(client.get('k'), 'UNKNOWN_COMMAND', 404);
  });

  test('client: no server, or no answer in time, is UNAVAILABLE', async (t) => {
    const silent = createServer();
    const sockets = new Set<Socket>();
    silent.on('connection', (socket) => sockets.add(socket));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as AddressInfo).port;
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const startedMs = performance.now();
    await rejectsWith(new RingkvClient({ url: `http://127.0.0.1:${port}`, timeoutMs: 100 }).get('k'), 'UNAVAILABLE', 0);
    assert.ok(performance.now() - startedMs < 5000);
    // A port that was just free: nothing listens there any more, so the connection is refused.
    const closed = createServer().listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await rejectsWith(new RingkvClient({ url: `http://127.0.0.1:${closedPort}` }).put('k', 'v'), 'UNAVAILABLE', 0);
  });
});
