import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { KvService, type KvLimits } from '../node/kv-service.js';
import { silentLogger } from '../node/logger.js';
import { compareKeys } from '../node/storage-key.js';
import type { Engine } from '../storage/engine.js';
import { MemoryEngine } from '../storage/memory-engine.js';
import type { Clock, TimerHandle } from '../world/clock.js';
import { SystemClock } from '../world/clock.js';
import { HttpServer, type HttpServerOptions } from './http-server.js';

/** Wall time that moves one second per reading: sibling order and Last-Modified are predictable. */
class SteppingClock implements Clock {
  private readings = 0;
  private readonly system = new SystemClock();

  nowMs(): number {
    return this.system.nowMs();
  }

  wallMs(): number {
    return Date.UTC(2024, 0, 1) + 1000 * this.readings++;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    return this.system.setTimer(delayMs, callback);
  }
}

const limitsDefault: KvLimits = { keyBytesMax: 1024, valueBytesMax: 1024 * 1024, siblingsMax: 100 };

interface Running {
  readonly base: string;
  readonly server: HttpServer;
  readonly engine: Engine;
  readonly clock: SteppingClock;
  ready: boolean;
}

interface StartOptions {
  readonly limits?: Partial<KvLimits>;
  readonly engine?: Engine;
  readonly status?: () => Record<string, unknown>;
}

/** A server on 127.0.0.1 with a fresh memory engine; stopped when the test ends. */
async function startServer(t: TestContext, options: StartOptions = {}): Promise<Running> {
  const limits = { ...limitsDefault, ...options.limits };
  const engine = options.engine ?? new MemoryEngine();
  const clock = new SteppingClock();
  const kv = new KvService(engine, { actor: 'node-a', clock, limits });
  const running = { ready: true } as { ready: boolean } & Partial<Running>;
  const serverOptions: HttpServerOptions = {
    host: '127.0.0.1',
    port: 0,
    kv,
    logger: silentLogger(),
    valueBytesMax: limits.valueBytesMax,
    isReady: () => running.ready,
    status: options.status ?? (() => ({ nodeId: 'node-a' })),
  };
  const server = new HttpServer(serverOptions);
  await server.start();
  t.after(() => server.stop(1000));
  return Object.assign(running, { base: `http://127.0.0.1:${server.port()}`, server, engine, clock });
}

function url(running: Running, key: string, namespace = 'test'): string {
  return `${running.base}/kv/${namespace}/${encodeURIComponent(key)}`;
}

async function put(running: Running, key: string, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url(running, key), { method: 'PUT', body, headers });
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await response.json()) as { error: { code: string; message: string } };
  assert.equal(typeof body.error.message, 'string');
  return body.error;
}

interface SiblingsBody {
  readonly context: string;
  readonly siblings: { readonly value: string; readonly contentType: string; readonly writtenAt: string }[];
}

async function siblingsOf(response: Response): Promise<SiblingsBody> {
  assert.equal(response.status, 300);
  const body = (await response.json()) as SiblingsBody;
  assert.equal(response.headers.get('x-ringkv-context'), body.context);
  return body;
}

function decoded(body: SiblingsBody): string[] {
  return body.siblings.map((sibling) => Buffer.from(sibling.value, 'base64').toString('utf8'));
}

describe('http: reads and writes', () => {
  test('http: a value written is read back with its content type, context and time', async (t) => {
    const running = await startServer(t);
    const written = await put(running, 'greeting', '{"hello":"world"}', { 'content-type': 'application/json' });
    assert.equal(written.status, 204);
    assert.match(written.headers.get('x-ringkv-context') ?? '', /^[A-Za-z0-9_-]+$/);
    const read = await fetch(url(running, 'greeting'));
    assert.equal(read.status, 200);
    assert.equal(read.headers.get('content-type'), 'application/json');
    assert.equal(read.headers.get('last-modified'), new Date(Date.UTC(2024, 0, 1)).toUTCString());
    assert.equal(read.headers.get('x-ringkv-context'), written.headers.get('x-ringkv-context'));
    assert.equal(await read.text(), '{"hello":"world"}');
  });

  test('http: binary values round trip byte for byte as application/octet-stream', async (t) => {
    const running = await startServer(t);
    const value = Uint8Array.from({ length: 256 }, (_, index) => index);
    assert.equal((await put(running, 'bytes', value)).status, 204);
    const read = await fetch(url(running, 'bytes'));
    assert.equal(read.status, 200);
    assert.equal(read.headers.get('content-type'), 'application/octet-stream');
    assert.deepEqual(new Uint8Array(await read.arrayBuffer()), value);
  });

  test('http: a PUT without a body stores the empty value', async (t) => {
    const running = await startServer(t);
    assert.equal((await fetch(url(running, 'empty'), { method: 'PUT' })).status, 204);
    const read = await fetch(url(running, 'empty'));
    assert.equal(read.status, 200);
    assert.equal((await read.arrayBuffer()).byteLength, 0);
  });

  test('http: percent-encoded keys with slashes and UTF-8 are one key each', async (t) => {
    const running = await startServer(t);
    assert.equal((await put(running, 'a/b c', 'slash')).status, 204);
    assert.equal((await put(running, 'clé', 'accent')).status, 204);
    assert.equal(await (await fetch(url(running, 'a/b c'))).text(), 'slash');
    assert.equal(await (await fetch(url(running, 'clé'))).text(), 'accent');
    const listing = (await (await fetch(`${running.base}/kv/test`)).json()) as { keys: string[] };
    assert.deepEqual(listing.keys, inListingOrder('test', ['a/b c', 'clé']));
  });

  test('http: an absent key is 404 NOT_FOUND', async (t) => {
    const running = await startServer(t);
    const read = await fetch(url(running, 'missing'));
    assert.equal(read.status, 404);
    assert.equal((await errorOf(read)).code, 'NOT_FOUND');
  });
});

describe('http: siblings and contexts', () => {
  test('http: two blind PUTs answer 300 with both siblings, oldest first', async (t) => {
    const running = await startServer(t);
    await put(running, 'k', 'first', { 'content-type': 'text/plain' });
    await put(running, 'k', Buffer.from('second'));
    const body = await siblingsOf(await fetch(url(running, 'k')));
    assert.deepEqual(decoded(body), ['first', 'second']);
    assert.deepEqual(
      body.siblings.map((sibling) => [sibling.contentType, sibling.writtenAt]),
      [
        ['text/plain', '2024-01-01T00:00:00.000Z'],
        ['application/octet-stream', '2024-01-01T00:00:01.000Z'],
      ],
    );
  });

  test('http: a PUT with the context of a 300 resolves the siblings to one value', async (t) => {
    const running = await startServer(t);
    await put(running, 'k', 'first');
    await put(running, 'k', 'second');
    const { context } = await siblingsOf(await fetch(url(running, 'k')));
    assert.equal((await put(running, 'k', 'merged', { 'x-ringkv-context': context })).status, 204);
    const read = await fetch(url(running, 'k'));
    assert.equal(read.status, 200);
    assert.equal(await read.text(), 'merged');
  });

  test('http: DELETE without a context removes every sibling; absent keys still answer 204', async (t) => {
    const running = await startServer(t);
    await put(running, 'k', 'first');
    await put(running, 'k', 'second');
    assert.equal((await fetch(url(running, 'k'), { method: 'DELETE' })).status, 204);
    assert.equal((await fetch(url(running, 'k'))).status, 404);
    assert.equal((await fetch(url(running, 'never-written'), { method: 'DELETE' })).status, 204);
  });

  test('http: DELETE with a stale context leaves the concurrent sibling', async (t) => {
    const running = await startServer(t);
    const first = await put(running, 'k', 'seen');
    const stale = first.headers.get('x-ringkv-context') ?? '';
    await put(running, 'k', 'concurrent');
    const deleted = await fetch(url(running, 'k'), { method: 'DELETE', headers: { 'x-ringkv-context': stale } });
    assert.equal(deleted.status, 204);
    const read = await fetch(url(running, 'k'));
    assert.equal(read.status, 200);
    assert.equal(await read.text(), 'concurrent');
  });

  test('http: a garbage context is 400 CONTEXT_INVALID on PUT and DELETE', async (t) => {
    const running = await startServer(t);
    for (const context of ['not a context!', 'AAAA', '']) {
      const written = await put(running, 'k', 'v', { 'x-ringkv-context': context });
      assert.equal(written.status, 400, context);
      assert.equal((await errorOf(written)).code, 'CONTEXT_INVALID');
    }
    const deleted = await fetch(url(running, 'k'), { method: 'DELETE', headers: { 'x-ringkv-context': '%%%' } });
    assert.equal(deleted.status, 400);
    assert.equal((await errorOf(deleted)).code, 'CONTEXT_INVALID');
  });

  test('http: a write past siblingsMax is 409 TOO_MANY_SIBLINGS and stores nothing', async (t) => {
    const running = await startServer(t, { limits: { siblingsMax: 2 } });
    await put(running, 'k', 'one');
    await put(running, 'k', 'two');
    const third = await put(running, 'k', 'three');
    assert.equal(third.status, 409);
    assert.equal((await errorOf(third)).code, 'TOO_MANY_SIBLINGS');
    assert.deepEqual(decoded(await siblingsOf(await fetch(url(running, 'k')))), ['one', 'two']);
  });

  test('http: 200 concurrent PUTs with one context all survive as siblings (DVV)', async (t) => {
    // Each write saw only the original value: it supersedes that one and is concurrent with the
    // other 199, so a dotted version vector set keeps exactly 200 siblings.
    const writers = 200;
    const running = await startServer(t, { limits: { siblingsMax: 256 } });
    const context = (await put(running, 'hot', 'original')).headers.get('x-ringkv-context') ?? '';
    const responses = await Promise.all(
      Array.from({ length: writers }, (_, index) => put(running, 'hot', `value-${index}`, { 'x-ringkv-context': context })),
    );
    assert.deepEqual(new Set(responses.map((response) => response.status)), new Set([204]));
    const values = decoded(await siblingsOf(await fetch(url(running, 'hot'))));
    assert.equal(values.length, writers);
    assert.deepEqual(new Set(values), new Set(Array.from({ length: writers }, (_, index) => `value-${index}`)));
  });
});

describe('http: limits and bad requests', () => {
  test('http: a key over keyBytesMax bytes is 413 KEY_TOO_LARGE, counted in UTF-8 bytes', async (t) => {
    const running = await startServer(t);
    assert.equal((await put(running, 'k'.repeat(1024), 'v')).status, 204);
    const tooLong = await put(running, 'é'.repeat(513), 'v');
    assert.equal(tooLong.status, 413);
    assert.equal((await errorOf(tooLong)).code, 'KEY_TOO_LARGE');
  });

  test('http: a value over valueBytesMax is 413 VALUE_TOO_LARGE and the server keeps answering', async (t) => {
    const running = await startServer(t, { limits: { valueBytesMax: 4096 } });
    assert.equal((await put(running, 'k', new Uint8Array(4096))).status, 204);
    const tooLarge = await put(running, 'k', new Uint8Array(4097), { 'content-type': 'application/json' });
    assert.equal(tooLarge.status, 413);
    assert.equal((await errorOf(tooLarge)).code, 'VALUE_TOO_LARGE');
    // Chunked, so the length is only known while reading.
    const chunks = [new Uint8Array(3000), new Uint8Array(3000)];
    const stream = new ReadableStream<Uint8Array>({ pull: (controller) => (chunks.length > 0 ? controller.enqueue(chunks.shift() as Uint8Array) : controller.close()) });
    const streamed = await fetch(url(running, 'k'), { method: 'PUT', body: stream, duplex: 'half' } as RequestInit);
    assert.equal(streamed.status, 413);
    assert.equal((await errorOf(streamed)).code, 'VALUE_TOO_LARGE');
    const read = await fetch(url(running, 'k'));
    assert.equal(read.status, 200);
    assert.equal((await read.arrayBuffer()).byteLength, 4096);
  });

  test('http: a bad namespace is 400 NAMESPACE_INVALID, an empty key 400 KEY_INVALID', async (t) => {
    const running = await startServer(t);
    for (const namespace of ['bad!name', 'n'.repeat(65), encodeURIComponent('spa ce')]) {
      const response = await fetch(`${running.base}/kv/${namespace}/k`);
      assert.equal(response.status, 400, namespace);
      assert.equal((await errorOf(response)).code, 'NAMESPACE_INVALID');
    }
    const listing = await fetch(`${running.base}/kv/bad!name`);
    assert.equal((await errorOf(listing)).code, 'NAMESPACE_INVALID');
    const empty = await fetch(`${running.base}/kv/test/`, { method: 'PUT', body: 'v' });
    assert.equal(empty.status, 400);
    assert.equal((await errorOf(empty)).code, 'KEY_INVALID');
  });

  test('http: a path that is not percent-encoded UTF-8 is 400 BAD_REQUEST', async (t) => {
    const running = await startServer(t);
    for (const path of ['/kv/test/%FF', '/kv/test/%']) {
      const response = await fetch(`${running.base}${path}`);
      assert.equal(response.status, 400, path);
      assert.equal((await errorOf(response)).code, 'BAD_REQUEST');
    }
  });

  test('http: an unknown route or method is 404 UNKNOWN_COMMAND', async (t) => {
    const running = await startServer(t);
    for (const [method, path] of [['GET', '/nowhere'], ['POST', '/kv/test/k'], ['GET', '/kv/test/a/b']] as const) {
      const response = await fetch(`${running.base}${path}`, { method });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.equal((await errorOf(response)).code, 'UNKNOWN_COMMAND');
    }
  });

  test('http: an engine failure is 500 INTERNAL without details, a closed engine 503', async (t) => {
    const engine = new MemoryEngine();
    const failing = delegate(engine, { get: (key) => (Buffer.from(key).includes('boom') ? fail() : engine.get(key)) });
    const running = await startServer(t, { engine: failing });
    const broken = await fetch(url(running, 'boom'));
    assert.equal(broken.status, 500);
    const error = await errorOf(broken);
    assert.equal(error.code, 'INTERNAL');
    assert.doesNotMatch(error.message, /secret/);
    await engine.close();
    const closed = await fetch(url(running, 'k'));
    assert.equal(closed.status, 503);
    assert.equal((await errorOf(closed)).code, 'ENGINE_CLOSED');
  });

  test('http: arbitrary paths, methods and headers never produce a 5xx or a non-JSON error', async (t) => {
    const running = await startServer(t, { limits: { valueBytesMax: 1024 } });
    const segment = fc.string({ unit: 'binary', maxLength: 12 }).map((text) => encodeURIComponent(text));
    const rawSegment = fc.stringMatching(/^[A-Za-z0-9%!._~-]{0,12}$/);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'PUT', 'DELETE', 'POST', 'HEAD', 'PATCH'),
        fc.array(fc.oneof(segment, rawSegment, fc.constant('kv')), { maxLength: 4 }),
        fc.option(fc.stringMatching(/^[ -~]{0,40}$/), { nil: undefined }),
        fc.option(fc.stringMatching(/^[ -~]{0,40}$/), { nil: undefined }),
        async (method, segments, context, contentType) => {
          const headers: Record<string, string> = {};
          if (context !== undefined) headers['x-ringkv-context'] = context;
          if (contentType !== undefined) headers['content-type'] = contentType;
          const body = method === 'PUT' || method === 'POST' || method === 'PATCH' ? 'value' : undefined;
          const response = await fetch(`${running.base}/${segments.join('/')}`, { method, headers, ...(body === undefined ? {} : { body }) });
          assert.ok(response.status < 500, `${method} /${segments.join('/')} → ${response.status}`);
          if (response.status >= 400 && method !== 'HEAD') await errorOf(response);
          else await response.arrayBuffer();
        },
      ),
      { numRuns: 150 },
    );
  });
});

function fail(): never {
  throw new Error('secret detail');
}

/** An engine that forwards to `inner` except where `overrides` says otherwise. */
function delegate(inner: Engine, overrides: Partial<Pick<Engine, 'get'>>): Engine {
  return {
    kind: inner.kind,
    get: overrides.get ?? ((key) => inner.get(key)),
    put: (key, value) => inner.put(key, value),
    delete: (key) => inner.delete(key),
    deleteRange: (range) => inner.deleteRange(range),
    batch: (operations) => inner.batch(operations),
    scan: (range) => inner.scan(range),
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
}

describe('http: listing, health and status', () => {
  test('http: keys are listed in order, page by page, without deleted ones', async (t) => {
    const running = await startServer(t);
    for (const key of ['e', 'a', 'd', 'b', 'c']) await put(running, key, 'v');
    await fetch(url(running, 'd'), { method: 'DELETE' });
    await put(running, 'x', 'v');
    await fetch(`${running.base}/kv/other/y`, { method: 'PUT', body: 'other namespace' });
    const pages: { keys: string[]; next: string | null }[] = [];
    let after = '';
    for (;;) {
      const response = await fetch(`${running.base}/kv/test?limit=2&after=${encodeURIComponent(after)}`);
      assert.equal(response.status, 200);
      const page = (await response.json()) as { keys: string[]; next: string | null };
      pages.push(page);
      if (page.next === null) break;
      after = page.next;
    }
    // Listing order is engine order (token prefix, then key), the same on every page.
    const ordered = inListingOrder('test', ['a', 'b', 'c', 'e', 'x']);
    assert.deepEqual(pages, [
      { keys: ordered.slice(0, 2), next: ordered[1] },
      { keys: ordered.slice(2, 4), next: ordered[3] },
      { keys: ordered.slice(4), next: null },
    ]);
    const all = (await (await fetch(`${running.base}/kv/test`)).json()) as { keys: string[]; next: string | null };
    assert.deepEqual(all, { keys: ordered, next: null });
    // A page that ends exactly at the last key has no next page.
    assert.deepEqual(await (await fetch(`${running.base}/kv/test?limit=5`)).json(), all);
    assert.deepEqual(await (await fetch(`${running.base}/kv/empty`)).json(), { keys: [], next: null });
  });

  test('http: a limit outside 1-10000 is 400 BAD_REQUEST', async (t) => {
    const running = await startServer(t);
    for (const query of ['limit=0', 'limit=10001', 'limit=abc', 'limit=-1', 'limit=1&limit=2', 'after=a&after=b']) {
      const response = await fetch(`${running.base}/kv/test?${query}`);
      assert.equal(response.status, 400, query);
      assert.equal((await errorOf(response)).code, 'BAD_REQUEST');
    }
    assert.equal((await fetch(`${running.base}/kv/test?limit=10000`)).status, 200);
  });

  test('http: /health follows isReady', async (t) => {
    const running = await startServer(t);
    const healthy = await fetch(`${running.base}/health`);
    assert.equal(healthy.status, 200);
    assert.deepEqual(await healthy.json(), { status: 'ok' });
    running.ready = false;
    const unhealthy = await fetch(`${running.base}/health`);
    assert.equal(unhealthy.status, 503);
    assert.equal((await errorOf(unhealthy)).code, 'UNAVAILABLE');
  });

  test('http: /status answers what the node reports', async (t) => {
    let requests = 0;
    const running = await startServer(t, { status: () => ({ nodeId: 'node-a', engine: 'memory', requests: ++requests }) });
    assert.deepEqual(await (await fetch(`${running.base}/status`)).json(), { nodeId: 'node-a', engine: 'memory', requests: 1 });
    assert.deepEqual(await (await fetch(`${running.base}/status`)).json(), { nodeId: 'node-a', engine: 'memory', requests: 2 });
  });
});

/** A memory engine whose reads wait until the test opens the gate. */
function gatedEngine(): { engine: Engine; readStarted: Promise<void>; open: () => void } {
  const inner = new MemoryEngine();
  let open!: () => void;
  let started!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const readStarted = new Promise<void>((resolve) => (started = resolve));
  const engine = delegate(inner, {
    get: async (key) => {
      started();
      await gate;
      return inner.get(key);
    },
  });
  return { engine, readStarted, open };
}

describe('http: stopping', () => {
  test('http: stop lets a request in flight finish and refuses new connections', async (t) => {
    const { engine, readStarted, open } = gatedEngine();
    const running = await startServer(t, { engine });
    const pending = fetch(url(running, 'k'));
    await readStarted;
    const stopped = running.server.stop(5000);
    open();
    assert.equal((await pending).status, 404);
    await stopped;
    await assert.rejects(fetch(url(running, 'k')));
  });

  test('http: stop cuts off a request still running at the deadline', async (t) => {
    const { engine, readStarted, open } = gatedEngine();
    t.after(open);
    const running = await startServer(t, { engine });
    const pending = fetch(url(running, 'k'));
    await readStarted;
    const startedMs = performance.now();
    await running.server.stop(100);
    assert.ok(performance.now() - startedMs < 2000, 'stop waited past its deadline');
    await assert.rejects(pending);
  });
});

/** Keys of a namespace in the order listings return them (src/node/storage-key.ts). */
function inListingOrder(namespace: string, keys: string[]): string[] {
  return [...keys].sort((left, right) => compareKeys(namespace, Buffer.from(left), Buffer.from(right)));
}
