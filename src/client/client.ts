/**
 * The TypeScript client for ringkv's HTTP API (src/api/http-server.ts), on the platform's fetch.
 *
 * Versions follow Riak's model: a read returns every sibling and an opaque context; a write that
 * passes that context back supersedes exactly what the read saw. `update` does read, apply,
 * write-back in one call; concurrent updates end as siblings, never as a lost write.
 */
export interface ClientSibling {
  readonly value: Buffer;
  readonly contentType: string;
  readonly writtenAt: Date;
}

/** Picks (or merges into) one value from concurrent siblings; called only when there are several. */
export type SiblingResolver = (siblings: readonly ClientSibling[]) => Buffer;

/**
 * Replicas per key (n), replies a read waits for (r), acks a write waits for (w), each an
 * integer from 1 to 8 (the server's `?n=&r=&w=`). An absent one is the namespace's default on
 * the server (N=3, R=2, W=2 in a cluster, capped at the ring's size when not given).
 */
export interface QuorumOptions {
  // `| undefined`: an explicit undefined (from a spread of optional settings) means "not given".
  readonly n?: number | undefined;
  readonly r?: number | undefined;
  readonly w?: number | undefined;
  /** Of the r replies, how many must come from primary replicas, not fallbacks (0 to 8; default 0). */
  readonly pr?: number | undefined;
  /** Of the w acks, how many must come from primary replicas: no sloppy quorum for them (0 to 8; default 0). */
  readonly pw?: number | undefined;
}

export interface RingkvClientOptions {
  /** The node's HTTP base URL, e.g. `http://127.0.0.1:8098`. */
  readonly url: string;
  /** Default 'default'. */
  readonly namespace?: string;
  /** Quorum of every get, put, delete and update; a call's own `quorum` overrides it field by field. */
  readonly quorum?: QuorumOptions;
  /** Per request; default 10 000 ms. */
  readonly timeoutMs?: number;
  readonly resolveSiblings?: SiblingResolver;
  /** The fetch to use (custom dispatchers, tests); default the global fetch. */
  readonly fetch?: typeof fetch;
}

export interface GetResult {
  /** Every live sibling, oldest write first; one when there is no conflict. */
  readonly siblings: readonly ClientSibling[];
  /** Pass back with the next write to supersede what this read saw. */
  readonly context: string;
  /** The value when there is exactly one sibling, else the resolver's choice, else undefined. */
  readonly value: Buffer | undefined;
}

export interface RequestOptions {
  /** Overrides the client's namespace for this call. */
  readonly namespace?: string;
}

export interface KeyRequestOptions extends RequestOptions {
  /** Overrides the client's quorum for this call, field by field (`{ r: 3 }` keeps the client's n and w). */
  readonly quorum?: QuorumOptions;
}

export interface GetOptions extends KeyRequestOptions {
  /** Overrides the client's resolver for this call. */
  readonly resolveSiblings?: SiblingResolver;
}

export interface PutOptions extends KeyRequestOptions {
  /** The context of the read this write is based on. Absent: a blind write, kept beside what is stored. */
  readonly context?: string;
  /** Default: text/plain; charset=utf-8 for a string, none (served as application/octet-stream) for bytes. */
  readonly contentType?: string;
}

export interface DeleteOptions extends KeyRequestOptions {
  /** Delete only what this context saw. Absent: delete whatever is stored now. */
  readonly context?: string;
}

export interface UpdateOptions extends GetOptions {
  /** Default: the Content-Type of the value read when there was exactly one sibling. */
  readonly contentType?: string;
}

export interface KeysOptions extends RequestOptions {
  /** 1-10000; default 1000 (the server's). */
  readonly limit?: number;
  /** Start after this key (exclusive); the `next` of the previous page. */
  readonly after?: string;
}

export interface KeysPage {
  readonly keys: string[];
  /** The `after` of the next page, or null on the last one. */
  readonly next: string | null;
}

/**
 * Codes the client raises itself, beside the server's stable codes (src/core/errors.ts). A reply
 * that is not ringkv's JSON error shape gets `HTTP_<status>`.
 */
export const ClientErrorCode = {
  /** No answer: connection refused or reset, or the timeout passed. */
  unavailable: 'UNAVAILABLE',
  /** `update` read several siblings and no resolver was given. */
  siblingsUnresolved: 'SIBLINGS_UNRESOLVED',
  /** The key cannot be put in a URL path ('.' and '..' are path segments to every URL parser). */
  keyInvalid: 'KEY_INVALID',
  /** A quorum option is not an integer from 1 to 8 (checked before sending, as the server would). */
  badRequest: 'BAD_REQUEST',
} as const;

export class RingkvClientError extends Error {
  override readonly name = 'RingkvClientError';
  constructor(
    /** The server's stable error code, or one of ClientErrorCode. */
    readonly code: string,
    /** The HTTP status; 0 when there was no HTTP answer. */
    readonly status: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const contextHeader = 'x-ringkv-context';
const timeoutMsDefault = 10_000;
const textContentType = 'text/plain; charset=utf-8';
/** The server's bound on n, r and w (nMax in src/node/coordinator.ts). */
const quorumValueMax = 8;
const quorumNames = ['n', 'r', 'w', 'pr', 'pw'] as const;

export class RingkvClient {
  private readonly base: string;
  private readonly namespace: string;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly quorum: QuorumOptions;

  constructor(private readonly options: RingkvClientOptions) {
    const parsed = new URL(options.url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new TypeError(`not an http(s) URL: ${options.url}`);
    this.base = options.url.replace(/\/+$/, '');
    this.namespace = options.namespace ?? 'default';
    this.timeoutMs = options.timeoutMs ?? timeoutMsDefault;
    if (!(Number.isFinite(this.timeoutMs) && this.timeoutMs > 0)) throw new TypeError('timeoutMs must be a positive number');
    this.fetch = options.fetch ?? fetch;
    this.quorum = { ...options.quorum };
    checkQuorum(this.quorum);
  }

  /** The value(s) under `key`, or undefined when there is none. */
  async get(key: string | Uint8Array, options: GetOptions = {}): Promise<GetResult | undefined> {
    const response = await this.request('GET', this.keyUrl(key, options));
    if (response.status === 404) return notFoundOrThrow(response);
    if (response.status !== 200 && response.status !== 300) throw await errorFrom(response);
    const read = response.status === 200 ? await singleSibling(response) : await manySiblings(response);
    return { ...read, value: this.resolve(read.siblings, options.resolveSiblings) };
  }

  /** Writes `value`; returns the context of what is stored now. */
  async put(key: string | Uint8Array, value: string | Uint8Array, options: PutOptions = {}): Promise<{ context: string }> {
    const headers: Record<string, string> = {};
    const contentType = options.contentType ?? (typeof value === 'string' ? textContentType : undefined);
    if (contentType !== undefined) headers['content-type'] = contentType;
    if (options.context !== undefined) headers[contextHeader] = options.context;
    const body = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    const response = await this.request('PUT', this.keyUrl(key, options), { headers, body });
    if (response.status !== 204) throw await errorFrom(response);
    return { context: response.headers.get(contextHeader) ?? '' };
  }

  /** Deletes `key` (succeeds when it is absent too). */
  async delete(key: string | Uint8Array, options: DeleteOptions = {}): Promise<void> {
    const headers: Record<string, string> = options.context === undefined ? {} : { [contextHeader]: options.context };
    const response = await this.request('DELETE', this.keyUrl(key, options), { headers });
    if (response.status !== 204) throw await errorFrom(response);
  }

  /**
   * Reads `key`, applies `fn` to its value (undefined when absent; with siblings, the resolver's
   * choice), and writes the result back with the read's context, superseding what was read. A
   * concurrent writer's value is kept as a sibling, never lost. Returns the new context.
   */
  async update(key: string | Uint8Array, fn: (current: Buffer | undefined) => string | Uint8Array, options: UpdateOptions = {}): Promise<{ context: string }> {
    const current = await this.get(key, options);
    if (current !== undefined && current.value === undefined) {
      throw new RingkvClientError(ClientErrorCode.siblingsUnresolved, 0, `${current.siblings.length} siblings and no resolveSiblings to choose one`);
    }
    const contentType = options.contentType ?? (current?.siblings.length === 1 ? current.siblings[0]?.contentType : undefined);
    const putOptions: PutOptions = {
      ...(options.namespace === undefined ? {} : { namespace: options.namespace }),
      ...(options.quorum === undefined ? {} : { quorum: options.quorum }),
      ...(current === undefined ? {} : { context: current.context }),
      ...(contentType === undefined ? {} : { contentType }),
    };
    return this.put(key, fn(current?.value), putOptions);
  }

  /** One page of the namespace's keys, in key order. */
  async keysPage(options: KeysOptions = {}): Promise<KeysPage> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.after !== undefined) query.set('after', options.after);
    const namespace = encodeURIComponent(options.namespace ?? this.namespace);
    const response = await this.request('GET', `${this.base}/kv/${namespace}?${query.toString()}`);
    if (response.status !== 200) throw await errorFrom(response);
    return (await response.json()) as KeysPage;
  }

  /** The keys of one page (see keysPage for the cursor). */
  async keys(options: KeysOptions = {}): Promise<string[]> {
    return (await this.keysPage(options)).keys;
  }

  private resolve(siblings: readonly ClientSibling[], resolver = this.options.resolveSiblings): Buffer | undefined {
    if (siblings.length === 1) return siblings[0]?.value;
    return resolver?.(siblings);
  }

  /** The URL of `key`, with the quorum query (the call's fields over the client's). Throws before any request. */
  private keyUrl(key: string | Uint8Array, options: KeyRequestOptions): string {
    const encoded = encodeKey(key);
    if (encoded === '.' || encoded === '..') {
      throw new RingkvClientError(ClientErrorCode.keyInvalid, 0, `the key ${JSON.stringify(encoded)} cannot be addressed in a URL path`);
    }
    const quorum = { ...this.quorum, ...withoutUndefined(options.quorum ?? {}) };
    checkQuorum(quorum);
    const query = new URLSearchParams();
    for (const name of quorumNames) if (quorum[name] !== undefined) query.set(name, String(quorum[name]));
    const search = query.size === 0 ? '' : `?${query.toString()}`;
    return `${this.base}/kv/${encodeURIComponent(options.namespace ?? this.namespace)}/${encoded}${search}`;
  }

  /** One HTTP exchange; no answer at all becomes UNAVAILABLE. */
  private async request(method: string, url: string, init: { headers?: Record<string, string>; body?: Uint8Array } = {}): Promise<Response> {
    try {
      return await this.fetch(url, { method, ...init, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      const reason = error instanceof Error && error.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : 'the request failed';
      throw new RingkvClientError(ClientErrorCode.unavailable, 0, `${method} ${url}: ${reason}`, { cause: error });
    }
  }
}

/** Throws BAD_REQUEST unless every given n, r, w is an integer from 1 to 8 (r, w <= n is the server's to judge). */
function checkQuorum(quorum: QuorumOptions): void {
  for (const name of quorumNames) {
    const value: unknown = quorum[name];
    if (value === undefined) continue;
    const least = name === 'pr' || name === 'pw' ? 0 : 1;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < least || value > quorumValueMax) {
      throw new RingkvClientError(ClientErrorCode.badRequest, 0, `quorum ${name} must be an integer from ${least} to ${quorumValueMax}, got ${String(value)}`);
    }
  }
}

/** `{ r: undefined }` from a caller must not erase the client's r. */
function withoutUndefined(quorum: QuorumOptions): QuorumOptions {
  return Object.fromEntries(Object.entries(quorum).filter(([, value]) => value !== undefined)) as QuorumOptions;
}

/** Percent-encodes every byte outside RFC 3986's unreserved set, so any bytes form one path segment. */
function encodeKey(key: string | Uint8Array): string {
  if (typeof key === 'string') return encodeURIComponent(key);
  let encoded = '';
  for (const byte of key) {
    const unreserved = /[A-Za-z0-9_.~-]/.test(String.fromCharCode(byte)) && byte < 0x80;
    encoded += unreserved ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

async function singleSibling(response: Response): Promise<{ siblings: ClientSibling[]; context: string }> {
  const lastModified = response.headers.get('last-modified');
  const sibling: ClientSibling = {
    value: Buffer.from(await response.arrayBuffer()),
    contentType: response.headers.get('content-type') ?? 'application/octet-stream',
    // Last-Modified has whole seconds; the 300 body carries milliseconds.
    writtenAt: lastModified === null ? new Date(Number.NaN) : new Date(lastModified),
  };
  return { siblings: [sibling], context: response.headers.get(contextHeader) ?? '' };
}

interface SiblingsBody {
  readonly context: string;
  readonly siblings: readonly { readonly value: string; readonly contentType: string; readonly writtenAt: string }[];
}

async function manySiblings(response: Response): Promise<{ siblings: ClientSibling[]; context: string }> {
  const body = (await response.json()) as SiblingsBody;
  const siblings = body.siblings.map((sibling) => ({
    value: Buffer.from(sibling.value, 'base64'),
    contentType: sibling.contentType,
    writtenAt: new Date(sibling.writtenAt),
  }));
  return { siblings, context: body.context };
}

/** A 404 for a key is "absent"; a 404 for a route (a wrong base URL) is an error. */
async function notFoundOrThrow(response: Response): Promise<undefined> {
  const error = await errorFrom(response);
  if (error.code === 'NOT_FOUND') return undefined;
  throw error;
}

async function errorFrom(response: Response): Promise<RingkvClientError> {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof error?.code === 'string' && typeof error.message === 'string') {
      return new RingkvClientError(error.code, response.status, error.message);
    }
  } catch {
    // Not ringkv's JSON (a proxy, or Node refusing an oversized request head): fall through.
  }
  return new RingkvClientError(`HTTP_${response.status}`, response.status, `HTTP ${response.status}: ${text.slice(0, 200)}`);
}
