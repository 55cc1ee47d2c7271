/**
 * What the control API's routes share: the node they control, the error
 * answer, and the checks of queries and JSON fields (docs/control-api.md).
 */
import { NAME } from '../util/names.js'
import type { DecloudNode } from '../node/index.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { PeerId, PeerStore, Connection } from '@libp2p/interface'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** What the control API needs from a node (a DecloudNode has all of it) */
export interface ControlledNode {
  readonly peerId: PeerId
  readonly openCloudId: string
  addresses(): string[]
  /** where it listens, loopback included @default addresses() */
  listening?(): string[]
  readonly opencloud: Pick<OpenCloud, 'call' | 'services' | 'stats'>
  readonly libp2p: {
    getConnections(peerId?: PeerId): Connection[]
    readonly peerStore: Pick<PeerStore, 'get'>
  }
  readonly storage?: {
    readonly usedBytes: number
    readonly capacity: number
    readonly pieces?: number
    /** leases ending soonest (`GET /v1/storage`) */
    readonly leases?: { endingFrom(from: number, limit: number): Promise<Array<{ id: string, owner: string, expires: number }>> }
    /** audits answered and refused (`GET /v1/storage`) */
    readonly keeper?: { readonly audits: { readonly answered: number, readonly damaged: number } }
    meta?(id: string): Promise<{ size: number } | undefined>
  }
  /** What the dashboard's overview should warn about besides the control API's own checks (failed audits, repairs…) */
  alerts?(): Array<{ level: 'info' | 'warning' | 'error', kind: string, message: string }>
  /** The prom-client registry libp2p reports its metrics into, when the node was made with one (`metrics` option) */
  readonly metricsRegistry?: import('prom-client').Registry
  /** The price book (`GET /v1/market`, `GET /v1/sellers`); without it those endpoints answer 404 */
  readonly market?: DecloudNode['market']
  /** Seller ranking: price book + DHT (`GET /v1/sellers`, `POST /v1/call` with `cheapest`) */
  readonly rankSellers?: DecloudNode['rankSellers']
  /** Wallet, chain, promises (`/v1/wallet…`, `/v1/chain/mine`, paid calls); without them those answer 404 */
  readonly payments?: DecloudNode['payments']
  readonly pay?: DecloudNode['pay']
  /** Files across sellers (`/v1/files…`); without them those answer 404 */
  readonly files?: DecloudNode['files']
  /** The policy in force (`GET /v1/policy`, `POST /v1/policy/reload`) */
  readonly policy?: DecloudNode['policy']
  /** Records, reports and trust (`GET /v1/reputation`) */
  readonly reputation?: DecloudNode['reputation']
  /** Reachability (AutoNAT) and the addresses it rests on, in `GET /v1/node` */
  reachability?: DecloudNode['reachability']
}

/** An answer other than 200, with the error type of docs/control-api.md */
export class HttpError extends Error {
  readonly status: number
  readonly type: string
  readonly headers: Record<string, string>

  constructor (status: number, type: string, message: string, headers: Record<string, string> = {}) {
    super(message)
    this.status = status
    this.type = type
    this.headers = headers
  }
}

export const badRequest = (message: string): HttpError => new HttpError(400, 'bad-request', message)

/** One endpoint: its HTTP method and what it answers with (sent as JSON with status 200) */
export interface Endpoint {
  method: 'GET' | 'POST'
  run(req: IncomingMessage, res: ServerResponse): Promise<unknown>
}

/** What the server gives its routes */
export interface RouteContext {
  readonly node: ControlledNode
  /** Reads the request body (bounded) and parses it as JSON */
  readJson(req: IncomingMessage): Promise<unknown>
  /**
   * A call or lookup in flight, counted against the server's limit (503
   * beyond it): its signal aborts when the HTTP client goes away or the
   * server stops. `end()` when done.
   */
  begin(res: ServerResponse): { signal: AbortSignal, end(): void }
}

/** The node's wallet and chain, or 404 when payments are off */
export function paymentsOf (node: ControlledNode): NonNullable<ControlledNode['payments']> {
  const p = node.payments
  if (p == null) { throw new HttpError(404, 'not-found', 'payments are off on this node (started with --no-payments)') }
  return p
}

/** A JSON body that must be an object */
export function jsonObject (v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v == null || Array.isArray(v)) { throw badRequest('the body must be a JSON object') }
  return v as Record<string, unknown>
}

/** A sats amount field: a decimal string (or a safe integer number) → bigint; undefined when absent */
export function satsField (field: string, x: unknown): bigint | undefined {
  if (x == null) { return undefined }
  if (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) { return BigInt(x) }
  if (typeof x === 'string' && /^[0-9]{1,20}$/.test(x) && BigInt(x) < 2n ** 64n) { return BigInt(x) }
  throw badRequest(`${field}: a non-negative integer number of satoshis, as a decimal string`)
}

const UNITS = /^[0-9]{1,20}$/

/**
 * The query string of a GET: every parameter known, none repeated.
 * Returns the values by name (absent ones are missing).
 */
export function parseQuery (url: string | undefined, allowed: readonly string[]): Map<string, string> {
  const q = (url ?? '').indexOf('?')
  const params = new URLSearchParams(q >= 0 ? (url ?? '').slice(q + 1) : '')
  const out = new Map<string, string>()
  for (const [k, v] of params) {
    if (!allowed.includes(k)) { throw badRequest(`unknown query parameter "${k.slice(0, 64)}" (known: ${allowed.join(', ')})`) }
    if (out.has(k)) { throw badRequest(`${k}: given more than once`) }
    out.set(k, v)
  }
  return out
}

/** A service or method name (query parameter or JSON field), when given */
export function nameField (field: string, x: unknown): string | undefined {
  if (x == null) { return undefined }
  if (typeof x !== 'string' || !NAME.test(x)) { throw badRequest(`${field}: 1 to 64 characters a-z, 0-9, _ or -, starting with a letter or digit`) }
  return x
}

export function queryUnits (x: string | undefined): bigint | undefined {
  if (x == null) { return undefined }
  if (!UNITS.test(x)) { throw badRequest('units: a non-negative integer of at most 20 digits') }
  return BigInt(x)
}

export function queryInt (field: string, x: string | undefined, min: number, max: number, fallback: number): number {
  if (x == null) { return fallback }
  const n = /^[0-9]{1,9}$/.test(x) ? Number(x) : NaN
  if (!(n >= min && n <= max)) { throw badRequest(`${field}: an integer from ${min} to ${max}`) }
  return n
}
