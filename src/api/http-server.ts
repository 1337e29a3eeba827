import type { NodeMetrics } from '../node/metrics.js';
import type { AddressInfo } from 'node:net';
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { assert } from '../core/assert.js';
import { ErrorCode, RingkvError, type Failure, type Result } from '../core/errors.js';
import { quorumNames, type KeyValueStore, type QuorumOptions, type WriteOptions } from '../node/kv-service.js';
import type { Logger } from '../node/logger.js';
import type { Sibling } from '../node/stored-object.js';
import { SystemClock, type Clock } from '../world/clock.js';

/**
 * The HTTP/JSON API (DESIGN.md, "Interfaces users see"), shaped after Riak's HTTP interface:
 *
 *   PUT    /kv/{namespace}/{key}   body = value bytes, Content-Type kept; X-Ringkv-Context = the
 *                                  context of the read the write is based on (absent: blind
 *                                  write, kept beside what is stored as a sibling) → 204
 *   GET    /kv/{namespace}/{key}   200 raw value | 300 JSON siblings | 404
 *   DELETE /kv/{namespace}/{key}   X-Ringkv-Context optional (absent: delete what is stored now) → 204
 *   GET    /kv/{namespace}?limit=&after=   {"keys": [...], "next": key | null}
 *   GET    /health, GET /status
 *
 * Every error is `{"error":{"code","message"}}` with a stable code from errors.ts; the status
 * comes from `statusByCode`, the one table. Keys are the UTF-8 bytes of the percent-decoded path
 * segment: a key that is not valid UTF-8 cannot be addressed over HTTP (400 BAD_REQUEST).
 */
export interface HttpServerOptions {
  readonly host: string;
  /** 0 picks a free port (tests); `port()` tells which. */
  readonly port: number;
  readonly kv: KeyValueStore;
  readonly logger: Logger;
  /** The request body limit; must equal the KvService limit so both reject the same values. */
  readonly valueBytesMax: number;
  /** GET /health answers 200 while true, 503 otherwise. */
  readonly isReady: () => boolean;
  /** GET /status answers with this object, as JSON. */
  readonly status: () => Record<string, unknown>;
  /** Cluster administration (`ringkv status`, `ring`, `join`, `leave`); absent: 404. */
  readonly admin?: AdminApi;
  /** GET /metrics in Prometheus' text format; asked for at the first scrape. Absent: 404. */
  readonly metrics?: () => NodeMetrics;
  /** Times the forced close in `stop`; default the system clock. */
  readonly clock?: Clock;
}

export const contextHeader = 'x-ringkv-context';

/** The one place an ErrorCode becomes an HTTP status. TOO_MANY_SIBLINGS is a conflict (409), as in Riak. */
export const statusByCode: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.keyTooLarge]: 413,
  [ErrorCode.valueTooLarge]: 413,
  [ErrorCode.namespaceInvalid]: 400,
  [ErrorCode.keyInvalid]: 400,
  [ErrorCode.contextInvalid]: 400,
  [ErrorCode.tooManySiblings]: 409,
  [ErrorCode.badRequest]: 400,
  [ErrorCode.notFound]: 404,
  [ErrorCode.unknownCommand]: 404,
  [ErrorCode.protocolError]: 400,
  [ErrorCode.unavailable]: 503,
  [ErrorCode.engineClosed]: 503,
  [ErrorCode.corruption]: 500,
  [ErrorCode.configInvalid]: 500,
  [ErrorCode.internal]: 500,
};

/** Bounds for GET /kv/{namespace}. */
export const keysLimitDefault = 1000;
export const keysLimitMax = 10_000;

/** A Content-Type is stored with every sibling; a longer one is refused rather than kept. */
export const contentTypeBytesMax = 256;

/**
 * Route parameters may be as long as a URL can be: Node refuses request heads over 16 KiB by
 * default, so this only lifts find-my-way's own 100-character default out of the way.
 */
const paramLengthMax = 16 * 1024;

const octetStream = 'application/octet-stream';

/** What the /admin routes ask of the node. */
export interface AdminApi {
  status(): Result<Record<string, unknown>>;
  ring(): Result<Record<string, unknown>>;
  join(seed: string): Promise<Result<void>>;
  leave(nodeId: string | undefined): Promise<Result<void>>;
  namespaces(): Result<Record<string, unknown>>;
  setNamespace(name: string, settings: unknown): Promise<Result<unknown>>;
  /** Partition transfers and hints of every member (`ringkv transfers`). */
  transfers(): Promise<Result<Record<string, unknown>>>;
  /** This node's Merkle tree roots per partition and its anti-entropy counters. */
  antiEntropy(): Result<Record<string, unknown>>;
  /** What this node's own replica holds for a key, tombstones included; undefined when nothing. */
  replica(namespace: string, key: Uint8Array): Promise<Result<Record<string, unknown> | undefined>>;
}

interface KeyRoute {
  Params: { namespace: string; key: string };
  Querystring: Record<string, string | string[] | undefined>;
}

interface NamespaceRoute {
  Params: { namespace: string };
  Querystring: Record<string, string | string[] | undefined>;
}

export class HttpServer {
  private readonly app: FastifyInstance;
  private readonly clock: Clock;
  private closing = false;
  private started = false;
  private stopped: Promise<void> | undefined;

  constructor(private readonly options: HttpServerOptions) {
    assert(Number.isSafeInteger(options.valueBytesMax) && options.valueBytesMax > 0, 'valueBytesMax must be a positive integer');
    assert(Number.isInteger(options.port) && options.port >= 0 && options.port <= 65_535, 'port must be 0-65535');
    this.clock = options.clock ?? new SystemClock();
    this.app = fastify({
      // Fastify logs every request at info; we log one debug line per request ourselves.
      logger: false,
      bodyLimit: options.valueBytesMax,
      // Requests arriving while closing get our own 503 shape (onRequest below), not fastify's.
      return503OnClosing: false,
      routerOptions: { maxParamLength: paramLengthMax },
      frameworkErrors: (error, _request, reply) => {
        sendError(reply, ErrorCode.badRequest, error.code === 'FST_ERR_BAD_URL' ? 'the URL is not valid percent-encoded UTF-8' : error.message);
      },
    });
    this.registerHooks();
    this.registerRoutes();
  }

  async start(): Promise<void> {
    assert(!this.started, 'the HTTP server was already started');
    this.started = true;
    await this.app.listen({ host: this.options.host, port: this.options.port });
    this.options.logger.info({ host: this.options.host, port: this.port() }, 'http api listening');
  }

  port(): number {
    const address = this.app.server.address() as AddressInfo | null;
    assert(address !== null && typeof address === 'object', 'the HTTP server is not listening');
    return address.port;
  }

  /**
   * Stops accepting requests, lets those in flight finish, and cuts them off after `timeoutMs`.
   * Idempotent: a second call waits for the first.
   */
  stop(timeoutMs: number): Promise<void> {
    assert(Number.isFinite(timeoutMs) && timeoutMs >= 0, 'timeoutMs must be a non-negative number');
    this.stopped ??= this.close(timeoutMs);
    return this.stopped;
  }

  private async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    const force = this.clock.setTimer(timeoutMs, () => {
      this.options.logger.warn({ timeoutMs }, 'http api: requests still running at the stop deadline; closing their connections');
      this.app.server.closeAllConnections();
    });
    try {
      await this.app.close();
    } finally {
      force.cancel();
    }
  }

  private registerHooks(): void {
    const { logger } = this.options;
    this.app.addHook('onRequest', async (_request, reply) => {
      if (!this.closing) return;
      reply.header('connection', 'close');
      return sendError(reply, ErrorCode.unavailable, 'the node is shutting down');
    });
    this.app.addHook('onResponse', async (request, reply) => {
      logger.debug({ method: request.method, url: request.url.slice(0, 256), status: reply.statusCode, elapsedMs: reply.elapsedTime }, 'http request');
    });
    this.app.setErrorHandler((error: FastifyError, request, reply) => {
      const code = errorCodeOf(error);
      if (statusByCode[code] >= 500) logger.error({ err: error, method: request.method, url: request.url.slice(0, 256) }, 'http request failed');
      return sendError(reply, code, this.thrownMessage(code, error));
    });
    this.app.setNotFoundHandler((request, reply) =>
      sendError(reply, ErrorCode.unknownCommand, `no route for ${request.method} ${request.url.slice(0, 200)}`),
    );
    // Values are opaque bytes whatever their Content-Type, so every body is taken as a Buffer.
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
  }

  /** What a client is told about a thrown error: internals stay in the log. */
  private thrownMessage(code: ErrorCode, error: FastifyError): string {
    if (code === ErrorCode.internal) return 'internal error; see the node log';
    if (code === ErrorCode.valueTooLarge) return `the value is larger than the limit of ${this.options.valueBytesMax} bytes`;
    return error.message;
  }

  private registerRoutes(): void {
    const { kv } = this.options;
    this.app.get<KeyRoute>('/kv/:namespace/:key', (request, reply) => getValue(kv, request, reply));
    this.app.put<KeyRoute>('/kv/:namespace/:key', (request, reply) => putValue(kv, request, reply));
    this.app.delete<KeyRoute>('/kv/:namespace/:key', (request, reply) => deleteValue(kv, request, reply));
    this.app.get<NamespaceRoute>('/kv/:namespace', (request, reply) => listKeys(kv, request, reply));
    this.app.get('/health', async (_request, reply) => {
      if (!this.options.isReady()) return sendError(reply, ErrorCode.unavailable, 'the node is not ready');
      return reply.send({ status: 'ok' });
    });
    this.app.get('/status', async (_request, reply) => reply.send(this.options.status()));
    const metrics = this.options.metrics;
    if (metrics !== undefined) {
      this.app.get('/metrics', async (_request, reply) => {
        const registry = metrics();
        return reply.type(registry.contentType).send(await registry.render());
      });
    }
    const admin = this.options.admin;
    if (admin !== undefined) this.registerAdminRoutes(admin);
  }

  private registerAdminRoutes(admin: AdminApi): void {
    const send = (reply: FastifyReply, result: Result<unknown>): FastifyReply => (result.ok ? reply.send(result.value ?? { ok: true }) : sendFailure(reply, result));
    this.app.get('/admin/status', async (_request, reply) => send(reply, admin.status()));
    this.app.get('/admin/ring', async (_request, reply) => send(reply, admin.ring()));
    this.app.post('/admin/join', async (request, reply) => {
      const seed = jsonField(request.body, 'seed');
      if (typeof seed !== 'string' || !/^[^:\s]+:\d{1,5}$/.test(seed)) return sendError(reply, ErrorCode.badRequest, 'give {"seed": "HOST:PEERPORT"}');
      return send(reply, await admin.join(seed));
    });
    this.app.get('/admin/namespaces', async (_request, reply) => send(reply, admin.namespaces()));
    this.app.put<{ Params: { name: string } }>('/admin/namespaces/:name', async (request, reply) => {
      const body = request.body instanceof Buffer ? request.body.toString('utf8') : '';
      let settings: unknown;
      try {
        settings = JSON.parse(body);
      } catch {
        return sendError(reply, ErrorCode.badRequest, 'give the settings as JSON {"n": 3, "r": 2, "w": 2, "conflictMode": "siblings"}');
      }
      return send(reply, await admin.setNamespace(request.params.name, settings));
    });
    this.app.get('/admin/transfers', async (_request, reply) => send(reply, await admin.transfers()));
    this.app.get('/admin/anti-entropy', async (_request, reply) => send(reply, admin.antiEntropy()));
    this.app.get<KeyRoute>('/admin/replica/:namespace/:key', async (request, reply) => {
      const { namespace, key } = request.params;
      const result = await admin.replica(namespace, Buffer.from(key, 'utf8'));
      if (result.ok && result.value === undefined) return sendError(reply, ErrorCode.notFound, `this node holds nothing under ${namespace}/${key.slice(0, 200)}`);
      return send(reply, result);
    });
    this.app.post('/admin/leave', async (request, reply) => {
      const nodeId = jsonField(request.body, 'nodeId');
      if (nodeId !== undefined && typeof nodeId !== 'string') return sendError(reply, ErrorCode.badRequest, 'nodeId must be a string');
      return send(reply, await admin.leave(nodeId));
    });
  }
}

async function getValue(kv: KeyValueStore, request: FastifyRequest<KeyRoute>, reply: FastifyReply): Promise<FastifyReply> {
  const { namespace, key } = request.params;
  const quorum = quorumOf(request);
  if (typeof quorum === 'string') return sendError(reply, ErrorCode.badRequest, quorum);
  const result = await kv.get(namespace, Buffer.from(key, 'utf8'), quorum);
  if (!result.ok) return sendFailure(reply, result);
  if (result.value === undefined) return sendError(reply, ErrorCode.notFound, `no value under ${namespace}/${key.slice(0, 200)}`);
  const siblings = orderSiblings(result.value.siblings);
  reply.header(contextHeader, result.value.context);
  const only = siblings.length === 1 ? siblings[0] : undefined;
  if (only !== undefined) {
    reply.header('content-type', only.contentType === '' ? octetStream : only.contentType);
    reply.header('last-modified', new Date(only.writtenAtMs).toUTCString());
    return reply.code(200).send(Buffer.from(liveValue(only)));
  }
  // Riak's answer to a read with conflicting values: 300 Multiple Choices, every sibling listed.
  return reply.code(300).send({ context: result.value.context, siblings: siblings.map(siblingJson) });
}

async function putValue(kv: KeyValueStore, request: FastifyRequest<KeyRoute>, reply: FastifyReply): Promise<FastifyReply> {
  const { namespace, key } = request.params;
  const contentType = request.headers['content-type'] ?? '';
  if (Buffer.byteLength(contentType) > contentTypeBytesMax) {
    return sendError(reply, ErrorCode.badRequest, `the Content-Type is longer than ${contentTypeBytesMax} bytes`);
  }
  // No body at all (no Content-Type, no length) leaves `body` undefined: an empty value.
  const body = request.body instanceof Buffer ? request.body : Buffer.alloc(0);
  const quorum = quorumOf(request);
  if (typeof quorum === 'string') return sendError(reply, ErrorCode.badRequest, quorum);
  const options: WriteOptions = withContext({ contentType }, requestContext(request));
  const result = await kv.put(namespace, Buffer.from(key, 'utf8'), body, { ...options, ...quorum });
  if (!result.ok) return sendFailure(reply, result);
  return reply.code(204).header(contextHeader, result.value.context).send();
}

async function deleteValue(kv: KeyValueStore, request: FastifyRequest<KeyRoute>, reply: FastifyReply): Promise<FastifyReply> {
  const { namespace, key } = request.params;
  // Without a context, `curl -X DELETE` means "delete what is there": supersede everything stored.
  const context = requestContext(request) ?? 'current';
  const quorum = quorumOf(request);
  if (typeof quorum === 'string') return sendError(reply, ErrorCode.badRequest, quorum);
  const result = await kv.delete(namespace, Buffer.from(key, 'utf8'), { context, ...quorum });
  if (!result.ok) return sendFailure(reply, result);
  // 204 whether or not there was a value, as Riak does: the end state is the same.
  return reply.code(204).send();
}

async function listKeys(kv: KeyValueStore, request: FastifyRequest<NamespaceRoute>, reply: FastifyReply): Promise<FastifyReply> {
  const limit = parseLimit(request.query.limit);
  if (typeof limit === 'string') return sendError(reply, ErrorCode.badRequest, limit);
  const after = request.query.after;
  if (Array.isArray(after)) return sendError(reply, ErrorCode.badRequest, 'give `after` at most once');
  const options = after === undefined || after === '' ? { limit: limit + 1 } : { limit: limit + 1, after: Buffer.from(after, 'utf8') };
  // One key more than asked for tells whether there is a next page.
  const result = await kv.keys(request.params.namespace, options);
  if (!result.ok) return sendFailure(reply, result);
  const keys = result.value.slice(0, limit).map((key) => Buffer.from(key).toString('utf8'));
  const next = result.value.length > limit ? (keys[keys.length - 1] ?? null) : null;
  return reply.send({ keys, next });
}

/** A field of a JSON request body (bodies arrive as Buffers: every content type is raw here). */
function jsonField(body: unknown, name: string): unknown {
  if (!(body instanceof Buffer) || body.length === 0) return undefined;
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'));
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)[name] : undefined;
  } catch {
    return undefined;
  }
}

/** Per-request `n`, `r`, `w`, `pr`, `pw` query parameters (Riak's), or the reason they are refused. */
function quorumOf(request: FastifyRequest<KeyRoute>): QuorumOptions | string {
  const quorum: { -readonly [K in keyof QuorumOptions]: number } = {};
  for (const name of quorumNames) {
    const raw = request.query[name];
    if (raw === undefined) continue;
    const primaries = name === 'pr' || name === 'pw';
    if (typeof raw !== 'string' || !(primaries ? /^[0-8]$/ : /^[1-8]$/).test(raw)) return `${name} must be an integer from ${primaries ? 0 : 1} to 8`;
    quorum[name] = Number(raw);
  }
  return quorum;
}

/** The limit query parameter, or the reason it is refused. */
function parseLimit(raw: string | string[] | undefined): number | string {
  if (raw === undefined) return keysLimitDefault;
  if (typeof raw !== 'string' || !/^[0-9]{1,6}$/.test(raw)) return `limit must be an integer from 1 to ${keysLimitMax}`;
  const limit = Number(raw);
  if (limit < 1 || limit > keysLimitMax) return `limit must be an integer from 1 to ${keysLimitMax}`;
  return limit;
}

/**
 * The context header as sent. A repeated header reaches us joined with ", ", which is not a
 * context: KvService then refuses it as CONTEXT_INVALID, as it does any other garbage.
 */
function requestContext(request: FastifyRequest): string | undefined {
  const header = request.headers[contextHeader];
  return Array.isArray(header) ? header.join(', ') : header;
}

function withContext(options: { readonly contentType: string }, context: string | undefined): WriteOptions {
  return context === undefined ? options : { ...options, context };
}

/** Siblings in an order every node agrees on: oldest write first, then by value bytes, then type. */
function orderSiblings(siblings: readonly Sibling[]): Sibling[] {
  return [...siblings].sort(
    (a, b) =>
      a.writtenAtMs - b.writtenAtMs ||
      Buffer.compare(liveValue(a), liveValue(b)) ||
      (a.contentType < b.contentType ? -1 : a.contentType > b.contentType ? 1 : 0),
  );
}

function liveValue(sibling: Sibling): Uint8Array {
  assert(sibling.value !== null, 'KvService hands out live siblings only');
  return sibling.value;
}

function siblingJson(sibling: Sibling): { value: string; contentType: string; writtenAt: string } {
  return {
    value: Buffer.from(liveValue(sibling)).toString('base64'),
    contentType: sibling.contentType === '' ? octetStream : sibling.contentType,
    writtenAt: new Date(sibling.writtenAtMs).toISOString(),
  };
}

/** Maps a thrown error to a code: our own errors keep theirs, fastify's client errors are BAD_REQUEST. */
function errorCodeOf(error: FastifyError | RingkvError): ErrorCode {
  if (error instanceof RingkvError) return error.code;
  if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return ErrorCode.valueTooLarge;
  const status = error.statusCode;
  if (status !== undefined && status >= 400 && status < 500) return ErrorCode.badRequest;
  return ErrorCode.internal;
}

function sendFailure(reply: FastifyReply, failure: Failure): FastifyReply {
  return sendError(reply, failure.code, failure.message);
}

function sendError(reply: FastifyReply, code: ErrorCode, message: string): FastifyReply {
  return reply.code(statusByCode[code]).type('application/json; charset=utf-8').send({ error: { code, message } });
}
