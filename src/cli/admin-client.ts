import { z } from 'zod';
import { assert } from '../core/assert.js';

/**
 * The CLI's side of a node's HTTP admin API (`/admin/*`): one request per call, a bounded wait,
 * and every way it can go wrong turned into a typed failure with a sentence for the user. The
 * answers are validated here, so the formatters in admin-commands.ts see well-formed values.
 */

/** A node that does not answer within this is reported as unreachable. */
export const adminRequestTimeoutMs = 5000;
export const defaultHttpAddress = '127.0.0.1:8098';
export const httpAddressEnvironmentVariable = 'RINGKV_HTTP';

export type AdminFailureKind =
  /** No connection (refused, unknown host, reset) or no answer within the timeout. */
  | 'unreachable'
  /** The node answered with its JSON error `{"error":{"code","message"}}`. */
  | 'server'
  /** The node answered something this CLI does not understand (not JSON, wrong shape, no route). */
  | 'protocol';

export interface AdminFailure {
  readonly ok: false;
  readonly kind: AdminFailureKind;
  /** One sentence for the user, without the `ringkv: ` prefix. */
  readonly message: string;
  /** The server's stable error code, for `server` failures. */
  readonly code?: string;
}

export type AdminResult<T> = { readonly ok: true; readonly value: T } | AdminFailure;

const hostPortPattern = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/;

/**
 * `HOST:PORT` (or an `http://` / `https://` URL) to the base URL requests are made against.
 * Undefined when it is neither.
 */
export function httpBaseUrl(address: string): string | undefined {
  const trimmed = address.trim();
  if (/^https?:\/\//.test(trimmed)) {
    try {
      const url = new URL(trimmed);
      return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
    } catch {
      return undefined;
    }
  }
  const match = hostPortPattern.exec(trimmed);
  if (match === null) return undefined;
  const port = Number(match[2]);
  return port >= 1 && port <= 65535 ? `http://${trimmed}` : undefined;
}

/** Whether `text` is `HOST:PORT` with a valid port (a seed's peer address). */
export function isHostPort(text: string): boolean {
  const match = hostPortPattern.exec(text);
  return match !== null && Number(match[2]) >= 1 && Number(match[2]) <= 65535;
}

// The answers of the admin API. Strings the server may extend later (states, modes) are kept
// as strings so that a newer node does not break an older CLI.
const memberSchema = z.object({
  nodeId: z.string(),
  status: z.string(),
  state: z.string(),
  address: z.string(),
  datacenter: z.string(),
  weight: z.number(),
  partitions: z.number().int().min(0),
  phi: z.number().nullable().optional(),
  self: z.boolean(),
});
export const statusResponseSchema = z.object({
  nodeId: z.string(),
  ring: z.object({ partitionCount: z.number().int().positive(), epoch: z.number(), claimant: z.string().nullable().optional() }),
  members: z.array(memberSchema),
  antiEntropy: z.object({
    trees: z.number(), treesBuilt: z.number(), rounds: z.number(), exchangesDiffering: z.number(), keysRepaired: z.number(),
    bytesSent: z.number(), reapedTombstones: z.number(), treesRebuilt: z.number(), awaitingTransfer: z.number().optional(),
  }).nullable().optional(),
});
export const ringResponseSchema = z.object({
  partitionCount: z.number().int().positive(),
  epoch: z.number(),
  claimant: z.string().nullable().optional(),
  owners: z.array(z.string()),
});
const namespaceSchema = z.object({ name: z.string(), n: z.number(), r: z.number(), w: z.number(), conflictMode: z.string() });
export const namespacesResponseSchema = z.object({ namespaces: z.array(namespaceSchema) });
export const namespaceResponseSchema = namespaceSchema;

const transferSchema = z.object({
  partition: z.number().int().min(0),
  targets: z.array(z.string()),
  drop: z.boolean(),
  state: z.string(),
  totalObjects: z.number().nullable(),
  sentObjects: z.number(),
  sentBytes: z.number(),
  bytesPerSecond: z.number(),
  waiting: z.string().nullable().optional(),
});
const hintsSchema = z.object({
  pending: z.array(z.object({ target: z.string(), hints: z.number(), bytes: z.number(), up: z.boolean() })),
  pendingHints: z.number(),
  deliveredHints: z.number(),
});
export const transfersResponseSchema = z.object({
  nodes: z.array(z.object({
    nodeId: z.string(),
    transfers: z.object({ transferLimit: z.number(), transfers: z.array(transferSchema) }).nullable(),
    hints: hintsSchema.nullable(),
  })),
  unreachable: z.array(z.string()),
});

export type StatusResponse = z.output<typeof statusResponseSchema>;
export type TransfersResponse = z.output<typeof transfersResponseSchema>;
export type MemberReport = StatusResponse['members'][number];
export type RingResponse = z.output<typeof ringResponseSchema>;
export type NamespaceSettings = z.output<typeof namespaceSchema>;
export type NamespacesResponse = z.output<typeof namespacesResponseSchema>;

export interface NamespaceUpdate {
  readonly n: number;
  readonly r: number;
  readonly w: number;
  readonly conflictMode: 'siblings' | 'lww';
}

export interface AdminClientOptions {
  /** As returned by `httpBaseUrl`. */
  readonly baseUrl: string;
  readonly timeoutMs?: number;
}

export class AdminClient {
  readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(options: AdminClientOptions) {
    assert(/^https?:\/\//.test(options.baseUrl), () => `AdminClient: baseUrl must be an http(s) URL, got ${options.baseUrl}`);
    this.baseUrl = options.baseUrl;
    this.timeoutMs = options.timeoutMs ?? adminRequestTimeoutMs;
    assert(this.timeoutMs > 0, () => `AdminClient: timeoutMs must be > 0, got ${this.timeoutMs}`);
  }

  status(): Promise<AdminResult<StatusResponse>> {
    return this.request('GET', '/admin/status').then((raw) => this.decode(raw, statusResponseSchema, '/admin/status'));
  }

  ring(): Promise<AdminResult<RingResponse>> {
    return this.request('GET', '/admin/ring').then((raw) => this.decode(raw, ringResponseSchema, '/admin/ring'));
  }

  transfers(): Promise<AdminResult<TransfersResponse>> {
    return this.request('GET', '/admin/transfers').then((raw) => this.decode(raw, transfersResponseSchema, '/admin/transfers'));
  }

  join(seed: string): Promise<AdminResult<unknown>> {
    assert(isHostPort(seed), () => `AdminClient.join: seed must be HOST:PORT, got ${seed}`);
    return this.request('POST', '/admin/join', { seed });
  }

  leave(nodeId: string | undefined): Promise<AdminResult<unknown>> {
    return this.request('POST', '/admin/leave', nodeId === undefined ? {} : { nodeId });
  }

  namespaces(): Promise<AdminResult<NamespacesResponse>> {
    return this.request('GET', '/admin/namespaces').then((raw) => this.decode(raw, namespacesResponseSchema, '/admin/namespaces'));
  }

  setNamespace(name: string, settings: NamespaceUpdate): Promise<AdminResult<NamespaceSettings>> {
    const path = `/admin/namespaces/${encodeURIComponent(name)}`;
    return this.request('PUT', path, settings).then((raw) => this.decode(raw, namespaceResponseSchema, path));
  }

  /** One request; the parsed JSON body of a 2xx answer, or why there is none. */
  async request(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<AdminResult<unknown>> {
    assert(path.startsWith('/'), () => `AdminClient.request: path must start with /, got ${path}`);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const response = await fetch(`${this.baseUrl}${path}`, {
        method,
        signal: controller.signal,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
      });
      const text = await response.text();
      return interpretAnswer({ status: response.status, statusText: response.statusText, text, what: `${method} ${path}`, baseUrl: this.baseUrl });
    } catch (error) {
      return { ok: false, kind: 'unreachable', message: unreachableMessage(this.baseUrl, error, controller.signal.aborted ? this.timeoutMs : undefined) };
    } finally {
      clearTimeout(timer);
    }
  }

  private decode<T>(raw: AdminResult<unknown>, schema: z.ZodType<T>, path: string): AdminResult<T> {
    if (!raw.ok) return raw;
    const parsed = schema.safeParse(raw.value);
    if (parsed.success) return { ok: true, value: parsed.data };
    const issue = parsed.error.issues[0];
    const where = issue === undefined || issue.path.length === 0 ? '' : ` at ${issue.path.join('.')}`;
    return { ok: false, kind: 'protocol', message: `the node at ${this.baseUrl} answered ${path} with an unexpected shape${where}: ${issue?.message ?? 'invalid'}` };
  }
}

interface Answer {
  readonly status: number;
  readonly statusText: string;
  readonly text: string;
  /** `METHOD /path`, for messages. */
  readonly what: string;
  readonly baseUrl: string;
}

/** Pure: an HTTP answer to the value or the failure it means. */
export function interpretAnswer(answer: Answer): AdminResult<unknown> {
  let json: unknown;
  let isJson = true;
  try {
    json = answer.text === '' ? {} : JSON.parse(answer.text);
  } catch {
    isJson = false;
  }
  if (answer.status >= 200 && answer.status < 300) {
    if (isJson) return { ok: true, value: json };
    return { ok: false, kind: 'protocol', message: `the node at ${answer.baseUrl} answered ${answer.what} with something that is not JSON` };
  }
  const error = isJson ? serverError(json) : undefined;
  // A node from before the admin API answers its routes with 404 (UNKNOWN_COMMAND).
  const hint = answer.status === 404 && error?.code !== 'NOT_FOUND' ? ' (is it a ringkv node with the admin API?)' : '';
  if (error !== undefined) return { ok: false, kind: 'server', message: `${error.message}${hint}`, code: error.code };
  const reason = `${answer.status}${answer.statusText === '' ? '' : ` ${answer.statusText}`}`;
  return { ok: false, kind: 'protocol', message: `the node at ${answer.baseUrl} answered ${reason} to ${answer.what}${hint}` };
}

function serverError(json: unknown): { code: string; message: string } | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const error = (json as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof message !== 'string') return undefined;
  return { code: typeof code === 'string' ? code : 'UNKNOWN', message };
}

/** Pure: `cannot reach the node at URL (ECONNREFUSED); is it running? (ringkv start)`. */
export function unreachableMessage(baseUrl: string, error: unknown, timeoutMs: number | undefined): string {
  if (timeoutMs !== undefined) return `cannot reach the node at ${baseUrl} (no answer within ${timeoutMs / 1000} s); is it running? (ringkv start)`;
  return `cannot reach the node at ${baseUrl} (${networkErrorCode(error)}); is it running? (ringkv start)`;
}

/** fetch wraps the socket error: `TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })`. */
function networkErrorCode(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause ?? error;
  const code = (cause as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  // Several addresses tried (localhost as ::1 and 127.0.0.1): the first one's code.
  const first = (cause as { errors?: unknown[] }).errors?.[0] as { code?: unknown } | undefined;
  if (typeof first?.code === 'string') return first.code;
  return cause instanceof Error ? cause.message : String(cause);
}
