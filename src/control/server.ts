import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { logger } from '@libp2p/logger'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { marketJson, sellersJson } from '../node/reports.js'
import { parsePayOption } from '../payments/buyer/pay-option.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_BODY_SIZE, MAX_NAME_LENGTH } from '../protocols/opencloud/api/constants.js'
import { callResultJson, sentJson, walletJson, walletTxJson, API_PREFIX } from './api.js'
import { CONTROL_HOST, keepOnExit, newToken, removeControlFiles, removeOnExit, writeControlFiles } from './files.js'
import { decloudVersion } from './version.js'
import type { CallRequestJson, ErrorJson } from './api.js'
import type { DecloudNode } from '../node/index.js'
import type { SellersQuery } from '../node/reports.js'
import type { PayOption } from '../payments/buyer/bidding.js'
import type { CallTarget } from '../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { PeerId, PeerStore, Connection } from '@libp2p/interface'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/** What the control API needs from a node (a DecloudNode has all of it) */
export interface ControlledNode {
  readonly peerId: PeerId
  readonly openCloudId: string
  addresses(): string[]
  readonly opencloud: Pick<OpenCloud, 'call' | 'services' | 'stats'>
  readonly libp2p: {
    getConnections(peerId?: PeerId): Connection[]
    readonly peerStore: Pick<PeerStore, 'get'>
  }
  readonly storage?: { readonly usedBytes: number, readonly capacity: number }
  /** The price book (`GET /v1/market`, `GET /v1/sellers`); without it those endpoints answer 404 */
  readonly market?: DecloudNode['market']
  /** Seller ranking: price book + DHT (`GET /v1/sellers`) */
  readonly rankSellers?: DecloudNode['rankSellers']
  /** Wallet, chain, promises (`/v1/wallet…`, `/v1/chain/mine`, paid calls); without them those answer 404 */
  readonly payments?: DecloudNode['payments']
  readonly pay?: DecloudNode['pay']
  /** The policy in force (`GET /v1/policy`, `POST /v1/policy/reload`) */
  readonly policy?: DecloudNode['policy']
}

export interface ControlServerInit {
  node: ControlledNode
  /** control.json and control.token are written here */
  dataDir: string
  /** @default the package version */
  version?: string
  /** Largest HTTP request body (bytes) @default 8 MiB */
  maxRequestSize?: number
  /** Time to receive a whole request (ms) @default 30_000 */
  requestTimeout?: number
  /** Default and largest `timeout` of `POST /v1/call` (ms) @default 30_000 and 300_000 */
  defaultCallTimeout?: number
  maxCallTimeout?: number
  /** Calls in flight at once; more get 503 @default 64 */
  maxConcurrentCalls?: number
  /** Time to receive the headers of a request (ms) @default 10_000 */
  headersTimeout?: number
  /** Open HTTP connections at once @default 64 */
  maxConnections?: number
  /**
   * Connections that have not yet shown the token (headers still coming, or
   * being refused); beyond this the oldest of them is closed @default 16
   */
  maxPendingConnections?: number
  /** Largest body of a call (bytes) @default 4 MiB */
  maxBodySize?: number
}

export const DEFAULT_MAX_REQUEST_SIZE = 8 * 1024 * 1024
export const DEFAULT_HEADERS_TIMEOUT = 10_000
/** Default and largest `timeout` of `GET /v1/sellers` (ms) */
export const DEFAULT_SELLERS_TIMEOUT = 10_000
export const MAX_SELLERS_TIMEOUT = 120_000
/** Largest `limit` of `GET /v1/sellers` (the DHT's k) */
export const MAX_SELLERS_LIMIT = 20

/** An answer other than 200, with the error type of docs/control-api.md */
class HttpError extends Error {
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

interface Endpoint {
  method: 'GET' | 'POST'
  run(req: IncomingMessage, res: ServerResponse): Promise<void>
}

interface ConnectionState {
  socket: Socket
  /** a request on it carried the token */
  authed: boolean
  /** closes it unless the headers of its first request arrive in time */
  timer?: ReturnType<typeof setTimeout>
}

const log = logger('decloud:control')
const badRequest = (message: string): HttpError => new HttpError(400, 'bad-request', message)

function parseTarget (x: unknown): CallTarget {
  if (typeof x !== 'string' || x === '') { throw badRequest('target: a multiaddr or peer id string is required') }
  try {
    return x.startsWith('/') ? multiaddr(x) : peerIdFromString(x)
  } catch (err: any) {
    throw badRequest(`target: ${err.message}`)
  }
}

function parseName (field: string, x: unknown): string {
  if (typeof x !== 'string' || x === '' || x.length > MAX_NAME_LENGTH) { throw badRequest(`${field}: a string of 1 to ${MAX_NAME_LENGTH} characters is required`) }
  return x
}

function parseArgList (x: unknown): string[] {
  if (x == null) { return [] }
  if (!Array.isArray(x) || x.length > MAX_ARGS || !x.every(a => typeof a === 'string' && a.length <= MAX_ARG_LENGTH)) {
    throw badRequest(`args: an array of at most ${MAX_ARGS} strings of at most ${MAX_ARG_LENGTH} characters`)
  }
  return x
}
/** A sats amount field: a decimal string (or a safe integer number) → bigint; undefined when absent */
function satsField (field: string, x: unknown): bigint | undefined {
  if (x == null) { return undefined }
  if (typeof x === 'number' && Number.isSafeInteger(x) && x >= 0) { return BigInt(x) }
  if (typeof x === 'string' && /^[0-9]{1,20}$/.test(x) && BigInt(x) < 2n ** 64n) { return BigInt(x) }
  throw badRequest(`${field}: a non-negative integer number of satoshis, as a decimal string`)
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
/** Service and method names in queries (as in price announcements) */
const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/
const UNITS = /^[0-9]{1,20}$/

/**
 * The query string of a GET: every parameter known, none repeated.
 * Returns the values by name (absent ones are missing).
 */
function parseQuery (url: string | undefined, allowed: readonly string[]): Map<string, string> {
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

function queryName (field: string, x: string | undefined): string | undefined {
  if (x == null) { return undefined }
  if (!NAME.test(x)) { throw badRequest(`${field}: 1 to 64 characters a-z, 0-9, _ or -, starting with a letter or digit`) }
  return x
}

function queryUnits (x: string | undefined): bigint | undefined {
  if (x == null) { return undefined }
  if (!UNITS.test(x)) { throw badRequest('units: a non-negative integer of at most 20 digits') }
  return BigInt(x)
}

function queryInt (field: string, x: string | undefined, min: number, max: number, fallback: number): number {
  if (x == null) { return fallback }
  const n = /^[0-9]{1,9}$/.test(x) ? Number(x) : NaN
  if (!(n >= min && n <= max)) { throw badRequest(`${field}: an integer from ${min} to ${max}`) }
  return n
}

/**
 * The node's local control API: JSON over HTTP on 127.0.0.1, a random port,
 * every request authorised by the bearer token in `<dataDir>/control.token`.
 * See docs/control-api.md.
 */
export class ControlServer {
  private readonly init: ControlServerInit
  private readonly node: ControlledNode
  private readonly version: string
  private readonly maxRequestSize: number
  private readonly defaultCallTimeout: number
  private readonly maxCallTimeout: number
  private readonly maxConcurrentCalls: number
  private readonly maxBodySize: number
  private readonly server: Server
  private readonly headersTimeout: number
  private readonly maxConnections: number
  private readonly maxPending: number
  /** open connections, oldest first */
  private readonly conns = new Map<Socket, ConnectionState>()
  /** Host headers accepted (lowercase), set at start */
  private hosts = new Set<string>()
  private readonly calls = new Set<AbortController>()
  private token = ''
  private tokenDigest: Buffer = Buffer.alloc(32)
  private readonly startedAt = Date.now()
  private started = false

  constructor (init: ControlServerInit) {
    this.init = init
    this.node = init.node
    this.version = init.version ?? decloudVersion()
    this.maxRequestSize = init.maxRequestSize ?? DEFAULT_MAX_REQUEST_SIZE
    this.defaultCallTimeout = init.defaultCallTimeout ?? 30_000
    this.maxCallTimeout = init.maxCallTimeout ?? 300_000
    this.maxConcurrentCalls = init.maxConcurrentCalls ?? 64
    this.maxBodySize = init.maxBodySize ?? MAX_BODY_SIZE
    this.headersTimeout = init.headersTimeout ?? DEFAULT_HEADERS_TIMEOUT
    this.maxConnections = init.maxConnections ?? 64
    this.maxPending = Math.min(init.maxPendingConnections ?? 16, this.maxConnections)
    const requestTimeout = Math.max(init.requestTimeout ?? 30_000, this.headersTimeout)
    this.server = createServer({
      requestTimeout,
      headersTimeout: this.headersTimeout,
      keepAliveTimeout: 5_000,
      // the server's own checks (the headers of a later request on a kept-alive
      // connection, requestTimeout) run this often: late by at most this much
      connectionsCheckingInterval: 1_000
    }, (req, res) => { this.handle(req, res) })
    this.server.maxHeadersCount = 64
    this.server.on('connection', (socket: Socket) => { this.accept(socket) })
    // the headers are in: the headers timeout of this connection is over
    this.server.on('request', (req: IncomingMessage) => { clearTimeout(this.conns.get(req.socket)?.timer) })
    this.server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) {
        socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
      } else {
        socket.destroy()
      }
    })
  }

  /** The port listened on (0 before start) */
  get port (): number {
    const a = this.server.address() as AddressInfo | null
    return a?.port ?? 0
  }

  /** Listens on 127.0.0.1 (random port) and writes control.json and control.token */
  async start (): Promise<void> {
    if (this.started) { return }
    this.token = newToken()
    this.tokenDigest = digest(this.token)
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { reject(err) }
      this.server.once('error', onError)
      this.server.listen({ host: CONTROL_HOST, port: 0, exclusive: true }, () => {
        this.server.off('error', onError)
        resolve()
      })
    })
    this.hosts = new Set([`127.0.0.1:${this.port}`, `localhost:${this.port}`, `[::1]:${this.port}`])
    try {
      await writeControlFiles(this.init.dataDir, { port: this.port, pid: process.pid, version: this.version }, this.token)
    } catch (err) {
      await this.closeServer()
      throw err
    }
    removeOnExit(this.init.dataDir)
    this.started = true
  }

  /** Stops listening, ends calls in flight and removes the control files */
  async stop (): Promise<void> {
    if (!this.started) { return }
    this.started = false
    await removeControlFiles(this.init.dataDir)
    keepOnExit(this.init.dataDir)
    for (const c of this.calls) { c.abort(new Error('the node is stopping')) }
    await this.closeServer()
  }

  private async closeServer (): Promise<void> {
    const closed = new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
    this.server.closeIdleConnections()
    // give answers being written a moment, then cut every connection
    const t = setTimeout(() => { for (const s of [...this.conns.keys()]) { this.drop(s) } }, 500)
    await closed
    clearTimeout(t)
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    this.route(req, res).catch((err: any) => {
      if (!(err instanceof HttpError)) { log.error('%s %s failed - %e', req.method, req.url, err) }
      const e = err instanceof HttpError ? err : new HttpError(500, 'internal', 'internal error')
      this.sendError(req, res, e)
    })
  }

  /**
   * Every endpoint: path → method and handler. `route` authorises before it
   * looks a path up, whatever the path; `routes` lists them.
   */
  private readonly endpoints: ReadonlyMap<string, Endpoint> = new Map<string, Endpoint>([
    [`${API_PREFIX}/node`, { method: 'GET', run: async (_req, res) => { this.send(res, 200, this.nodeInfo()) } }],
    [`${API_PREFIX}/peers`, { method: 'GET', run: async (_req, res) => { this.send(res, 200, { peers: await this.peers() }) } }],
    [`${API_PREFIX}/call`, { method: 'POST', run: async (req, res) => { await this.call(req, res) } }],
    [`${API_PREFIX}/sellers`, { method: 'GET', run: async (req, res) => { await this.sellers(req, res) } }],
    [`${API_PREFIX}/market`, { method: 'GET', run: async (req, res) => { this.market(req, res) } }],
    [`${API_PREFIX}/wallet`, { method: 'GET', run: async (_req, res) => { this.send(res, 200, await this.wallet()) } }],
    [`${API_PREFIX}/wallet/address`, { method: 'POST', run: async (_req, res) => { this.send(res, 200, { address: await this.payments().wallet.newAddress() }) } }],
    [`${API_PREFIX}/wallet/send`, { method: 'POST', run: async (req, res) => { this.send(res, 200, await this.walletSend(await this.readJson(req))) } }],
    [`${API_PREFIX}/wallet/history`, { method: 'GET', run: async (req, res) => { this.send(res, 200, await this.walletHistory(req)) } }],
    [`${API_PREFIX}/promises`, { method: 'GET', run: async (_req, res) => { this.send(res, 200, await this.promises()) } }],
    [`${API_PREFIX}/policy`, { method: 'GET', run: async (_req, res) => { this.send(res, 200, this.policyInfo()) } }],
    [`${API_PREFIX}/policy/reload`, { method: 'POST', run: async (_req, res) => { this.send(res, 200, await this.policyReload()) } }],
    [`${API_PREFIX}/chain/mine`, { method: 'POST', run: async (req, res) => { this.send(res, 200, await this.mine(await this.readJson(req))) } }]
  ])

  /** Every endpoint, method and path */
  get routes (): Array<{ method: string, path: string }> {
    return [...this.endpoints].map(([path, e]) => ({ method: e.method, path }))
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.checkHost(req)
    this.authorize(req)
    const state = this.conns.get(req.socket)
    if (state != null) { state.authed = true }
    const path = (req.url ?? '/').split('?')[0]
    const endpoint = this.endpoints.get(path)
    if (endpoint == null) { throw new HttpError(404, 'not-found', `no endpoint ${path}`) }
    this.only(req, endpoint.method)
    await endpoint.run(req, res)
  }

  /** POST /v1/policy/reload */
  private async policyReload (): Promise<unknown> {
    const reloader = this.node.policy?.reloader
    if (reloader == null) { throw new HttpError(404, 'not-found', this.node.policy == null ? 'this node runs without a policy' : 'the policy is not a file: nothing to reload') }
    const r = await reloader.reload()
    if (!r.ok) { throw new HttpError(400, 'bad-policy', `the policy in force is kept: ${r.error.message}`) }
    return { ...this.policyInfo(), changed: r.changed }
  }

  /**
   * DNS rebinding: a web page whose name now resolves to 127.0.0.1 reaches
   * this port with its own name in Host. Only loopback names pass.
   */
  private checkHost (req: IncomingMessage): void {
    const host = (req.headers.host ?? '').toLowerCase()
    if (!this.hosts.has(host)) {
      throw new HttpError(421, 'wrong-host', `the control API answers to 127.0.0.1:${this.port}, localhost:${this.port} or [::1]:${this.port} only`)
    }
  }

  /**
   * A new connection takes a slot. Connections that have not yet shown the
   * token are capped at maxPendingConnections and the oldest of them gives
   * way to the newcomer, so sockets that stall in their headers cannot hold
   * the slots: an honest client sends its whole request at once and is
   * served before enough newer connections arrive to push it out. A
   * connection that showed the token keeps its slot (until the keep-alive
   * timeout); once every slot is held by such connections, newcomers are
   * refused.
   */
  private accept (socket: Socket): void {
    if (this.pending >= this.maxPending || this.conns.size >= this.maxConnections) {
      const oldest = [...this.conns.values()].find(c => !c.authed)
      if (oldest == null) {
        socket.destroy()
        return
      }
      this.drop(oldest.socket)
    }
    // the headers of the first request must be in within headersTimeout, checked on time
    // (the http server checks its own headersTimeout only every connectionsCheckingInterval)
    const timer = setTimeout(() => { this.drop(socket) }, this.headersTimeout)
    timer.unref()
    this.conns.set(socket, { socket, authed: false, timer })
    socket.once('close', () => { this.forget(socket) })
  }

  private get pending (): number {
    let n = 0
    for (const c of this.conns.values()) { if (!c.authed) { n++ } }
    return n
  }

  private drop (socket: Socket): void {
    this.forget(socket)
    socket.destroy()
  }

  private forget (socket: Socket): void {
    const c = this.conns.get(socket)
    if (c == null) { return }
    clearTimeout(c.timer)
    this.conns.delete(socket)
  }

  private authorize (req: IncomingMessage): void {
    const h = req.headers.authorization ?? ''
    const m = /^Bearer ([^\s]+)$/i.exec(h)
    // compare digests: constant time, whatever the presented length
    if (m == null || !timingSafeEqual(digest(m[1]), this.tokenDigest)) {
      throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token (see control.token in the data dir)', { 'www-authenticate': 'Bearer' })
    }
  }

  private only (req: IncomingMessage, method: string): void {
    if (req.method !== method) { throw new HttpError(405, 'method-not-allowed', `use ${method}`, { allow: method }) }
  }

  private nodeInfo (): Record<string, unknown> {
    const connections = this.node.libp2p.getConnections()
    return {
      version: this.version,
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      peerId: this.node.peerId.toString(),
      openCloudId: this.node.openCloudId,
      addresses: this.node.addresses(),
      services: [...this.node.opencloud.services.values()].map(s => ({ name: s.name, version: s.version, description: s.description })),
      stats: {
        connections: connections.length,
        peers: new Set(connections.map(c => c.remotePeer.toString())).size,
        opencloud: this.node.opencloud.stats(),
        ...(this.node.storage != null ? { storage: { used: this.node.storage.usedBytes, capacity: this.node.storage.capacity } } : {})
      }
    }
  }

  private async peers (): Promise<unknown[]> {
    const byPeer = new Map<string, { peer: PeerId, connections: Connection[] }>()
    for (const c of this.node.libp2p.getConnections()) {
      const k = c.remotePeer.toString()
      const e = byPeer.get(k) ?? { peer: c.remotePeer, connections: [] }
      e.connections.push(c)
      byPeer.set(k, e)
    }
    return Promise.all([...byPeer.values()].map(async ({ peer, connections }) => {
      let protocols: string[] = []
      try {
        protocols = (await this.node.libp2p.peerStore.get(peer)).protocols
      } catch {
        // not in the peer store (yet): identify has not run
      }
      return {
        peerId: peer.toString(),
        openCloudId: `oc:${peer.toString()}`,
        protocols,
        connections: connections.map(c => ({
          remoteAddr: c.remoteAddr.toString(),
          direction: c.direction,
          status: c.status,
          opened: c.timeline.open,
          streams: c.streams.length,
          ...(c.rtt != null ? { rtt: c.rtt } : {})
        }))
      }
    }))
  }

  private payments (): NonNullable<ControlledNode['payments']> {
    const p = this.node.payments
    if (p == null) { throw new HttpError(404, 'not-found', 'payments are off on this node (started with --no-payments)') }
    return p
  }

  /** GET /v1/policy */
  private policyInfo (): Record<string, unknown> {
    const p = this.node.policy
    if (p == null) { throw new HttpError(404, 'not-found', 'this node runs without a policy') }
    const engine = p.current()
    return {
      file: p.file ?? null,
      rules: engine.rules.length,
      reloads: p.reloader?.reloads ?? 0,
      ...(p.reloader?.lastError != null ? { lastError: p.reloader.lastError.message } : {})
    }
  }

  /** GET /v1/wallet */
  private async wallet (): Promise<unknown> {
    const p = this.payments()
    try {
      return await walletJson(p.wallet, p.backend)
    } catch (err: any) {
      throw new HttpError(502, 'chain', `the chain backend did not answer: ${String(err?.message ?? err)}`)
    }
  }

  /** POST /v1/wallet/send {address, amount, feeRate?} */
  private async walletSend (v: unknown): Promise<unknown> {
    const p = this.payments()
    if (typeof v !== 'object' || v == null || Array.isArray(v)) { throw badRequest('the body must be a JSON object') }
    const o = v as Record<string, unknown>
    if (typeof o.address !== 'string' || o.address.length === 0 || o.address.length > 128) { throw badRequest('address: a bitcoin address is required') }
    const amount = satsField('amount', o.amount)
    if (amount == null || amount === 0n) { throw badRequest('amount: a positive integer number of satoshis (decimal string) is required') }
    const feeRate = satsField('feeRate', o.feeRate)
    try {
      return sentJson(await p.wallet.send(o.address, amount, feeRate != null ? { feeRate } : {}))
    } catch (err: any) {
      if (err?.name === 'InsufficientFundsError') { throw new HttpError(400, 'insufficient-funds', String(err.message)) }
      // the wallet's checks of the address (TypeError), amount and fee rate (RangeError), and a refused transaction
      if (err instanceof TypeError || err instanceof RangeError || err?.name === 'TxRejectedError') { throw badRequest(String(err.message)) }
      throw new HttpError(502, 'chain', `the payment failed: ${String(err?.message ?? err)}`)
    }
  }

  /** GET /v1/wallet/history?limit=N */
  private async walletHistory (req: IncomingMessage): Promise<unknown> {
    const p = this.payments()
    const q = parseQuery(req.url, ['limit'])
    const limit = queryInt('limit', q.get('limit'), 1, 1000, 100)
    try {
      return { transactions: (await p.wallet.history(limit)).map(walletTxJson) }
    } catch (err: any) {
      throw new HttpError(502, 'chain', `the chain backend did not answer: ${String(err?.message ?? err)}`)
    }
  }

  /** GET /v1/promises: this node's deferred promises not settled yet */
  private async promises (): Promise<unknown> {
    const p = this.payments()
    const list = await p.promises.outstanding()
    return { promises: JSON.parse(JSON.stringify(list, (_k, x) => typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? undefined : x)) }
  }

  /** POST /v1/chain/mine {blocks, address?} (regtest) */
  private async mine (v: unknown): Promise<unknown> {
    const p = this.payments()
    const backend = p.backend as Partial<{ mine(n: number, address: string): Promise<number> }>
    if (typeof backend.mine !== 'function') { throw new HttpError(404, 'not-found', `the chain ${p.backend.description} cannot mine (regtest only)`) }
    if (typeof v !== 'object' || v == null || Array.isArray(v)) { throw badRequest('the body must be a JSON object') }
    const o = v as Record<string, unknown>
    if (typeof o.blocks !== 'number' || !Number.isInteger(o.blocks) || o.blocks < 1 || o.blocks > 1000) { throw badRequest('blocks: an integer from 1 to 1000') }
    if (o.address != null && (typeof o.address !== 'string' || o.address.length > 128)) { throw badRequest('address: a bitcoin address') }
    const address = typeof o.address === 'string' ? o.address : await p.wallet.newAddress()
    try {
      const height = await backend.mine(o.blocks, address)
      return { height, address }
    } catch (err: any) {
      throw new HttpError(400, 'bad-request', `cannot mine: ${String(err?.message ?? err)}`)
    }
  }

  private async call (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const input = this.parseCall(await this.readJson(req))
    if (this.calls.size >= this.maxConcurrentCalls) {
      throw new HttpError(503, 'busy', `${this.calls.size} calls in flight; try again`)
    }
    const controller = new AbortController()
    this.calls.add(controller)
    // the HTTP client went away: stop the call
    const onClose = (): void => { if (!res.writableFinished) { controller.abort(new Error('the control API client disconnected')) } }
    res.once('close', onClose)
    const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(input.timeout)])
    try {
      const call = { service: input.service, method: input.method, args: input.args, body: input.body }
      if (input.pay != null) {
        if (this.node.pay == null || this.node.payments == null) { throw new HttpError(404, 'not-found', 'payments are off on this node (started with --no-payments): it cannot pay') }
        const result = await this.node.pay(input.target, call, { pay: input.pay.option, max: input.pay.max, signal })
        this.send(res, 200, {
          ...callResultJson(result),
          payment: {
            kind: result.kind,
            paid: result.paid.toString(),
            promised: result.promised.toString(),
            ...(result.txid != null ? { txid: result.txid } : {}),
            ...(result.deferId != null ? { deferId: result.deferId } : {}),
            ...(result.cost != null ? { cost: Object.fromEntries(Object.entries(result.cost).map(([k, v]) => [k, v.toString()])) } : {}),
            attempts: result.attempts.map(a => ({ kind: a.kind, amount: a.amount.toString(), status: a.path }))
          }
        })
        return
      }
      const result = await this.node.opencloud.call(input.target, call, { signal })
      this.send(res, 200, callResultJson(result))
    } catch (err: any) {
      if (err instanceof HttpError) { throw err }
      if (err?.name === 'PaymentRefusedError') { throw new HttpError(402, 'payment-refused', String(err.message)) }
      if (err?.name === 'InsufficientFundsError') { throw new HttpError(402, 'insufficient-funds', String(err.message)) }
      if (input.pay != null && !signal.aborted && (err instanceof RangeError || err instanceof TypeError || ['TxRejectedError', 'ChainUnavailableError', 'ChainUnsupportedError'].includes(err?.name))) {
        throw new HttpError(402, 'payment-failed', `the payment could not be made: ${String(err.message)}`)
      }
      if (signal.aborted && signal.reason?.name === 'TimeoutError') {
        throw new HttpError(504, 'timeout', `no answer within ${input.timeout} ms`)
      }
      throw new HttpError(502, 'transport', String(err?.message ?? err))
    } finally {
      this.calls.delete(controller)
      res.off('close', onClose)
    }
  }

  /** GET /v1/sellers: the DHT lookup joined with the price book, cheapest first */
  private async sellers (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const p = parseQuery(req.url, ['service', 'method', 'units', 'timeout', 'limit'])
    const service = queryName('service', p.get('service'))
    if (service == null) { throw badRequest('service: required (e.g. ?service=storage)') }
    const method = queryName('method', p.get('method'))
    const usage = queryUnits(p.get('units'))
    const timeout = queryInt('timeout', p.get('timeout'), 1, MAX_SELLERS_TIMEOUT, DEFAULT_SELLERS_TIMEOUT)
    const limit = p.has('limit') ? queryInt('limit', p.get('limit'), 1, MAX_SELLERS_LIMIT, MAX_SELLERS_LIMIT) : undefined
    const node = this.node
    const market = node.market
    const rank = node.rankSellers
    if (market == null || rank == null) { throw new HttpError(404, 'not-found', 'this node has no market: no seller lookup') }
    if (this.calls.size >= this.maxConcurrentCalls) {
      throw new HttpError(503, 'busy', `${this.calls.size} calls and lookups in flight; try again`)
    }
    const controller = new AbortController()
    this.calls.add(controller)
    // the HTTP client went away (or the node stops): end the DHT lookup
    const onClose = (): void => { if (!res.writableFinished) { controller.abort(new Error('the control API client disconnected')) } }
    res.once('close', onClose)
    const self = node.peerId.toString()
    const q: SellersQuery = { service, method, usage, timeout, limit, signal: controller.signal }
    try {
      const answer = await sellersJson({
        market,
        // sellers other than this node: the DHT lookup leaves it out, so must the price book
        rankSellers: async (s, o) => rank.call(node, s, { ...o, exclude: [...(o.exclude ?? []), self] })
      }, q)
      // the price book is not bounded by the DHT's limit
      if (limit != null && answer.sellers.length > limit) { answer.sellers = answer.sellers.slice(0, limit) }
      this.send(res, 200, answer)
    } catch (err: any) {
      if (controller.signal.aborted) { throw new HttpError(503, 'busy', String(controller.signal.reason?.message ?? 'aborted')) }
      throw new HttpError(502, 'transport', `the seller lookup failed: ${String(err?.message ?? err)}`)
    } finally {
      this.calls.delete(controller)
      res.off('close', onClose)
    }
  }

  /** GET /v1/market: the price book summary */
  private market (req: IncomingMessage, res: ServerResponse): void {
    const p = parseQuery(req.url, ['service', 'method', 'units'])
    const service = queryName('service', p.get('service'))
    const method = queryName('method', p.get('method'))
    const usage = queryUnits(p.get('units'))
    const market = this.node.market
    if (market == null) { throw new HttpError(404, 'not-found', 'this node has no market') }
    this.send(res, 200, marketJson({ market }, { service, method, usage }))
  }

  private parseCall (v: unknown): { target: CallTarget, service: string, method: string, args: string[], body: Uint8Array, timeout: number, pay?: { option: PayOption, max: bigint } } {
    if (typeof v !== 'object' || v == null || Array.isArray(v)) { throw badRequest('the body must be a JSON object') }
    const o = v as Partial<Record<keyof CallRequestJson, unknown>>
    let pay: { option: PayOption, max: bigint } | undefined
    if (o.pay != null) {
      if (typeof o.pay !== 'string') { throw badRequest('pay: attached:SATS, defer:SATS[:THRESHOLD] or auto') }
      let option: PayOption
      try {
        option = parsePayOption(o.pay)
      } catch (err: any) {
        throw badRequest(`pay: ${String(err.message)}`)
      }
      const max = satsField('max', o.max)
      if (max == null) { throw badRequest('max: the most to pay, sats (decimal string), is required with pay') }
      pay = { option, max }
    } else if (o.max != null) {
      throw badRequest('max goes with pay')
    }
    return {
      target: parseTarget(o.target),
      service: parseName('service', o.service),
      method: parseName('method', o.method),
      args: parseArgList(o.args),
      body: this.parseBody(o.body),
      timeout: this.parseTimeout(o.timeout),
      ...(pay != null ? { pay } : {})
    }
  }

  private parseBody (x: unknown): Uint8Array {
    if (x == null) { return new Uint8Array() }
    if (typeof x !== 'string' || x.length % 4 !== 0 || !BASE64.test(x)) { throw badRequest('body: a base64 string is required') }
    const body = Buffer.from(x, 'base64')
    if (body.byteLength > this.maxBodySize) {
      throw new HttpError(413, 'too-large', `body of ${body.byteLength} bytes exceeds the limit of ${this.maxBodySize} bytes`)
    }
    return body
  }

  private parseTimeout (x: unknown): number {
    if (x == null) { return this.defaultCallTimeout }
    if (typeof x !== 'number' || !Number.isInteger(x) || x <= 0 || x > this.maxCallTimeout) {
      throw badRequest(`timeout: an integer number of milliseconds from 1 to ${this.maxCallTimeout}`)
    }
    return x
  }

  /** Reads the request body (bounded) and parses it as JSON */
  private async readJson (req: IncomingMessage): Promise<unknown> {
    const declared = Number(req.headers['content-length'] ?? 0)
    if (declared > this.maxRequestSize) {
      throw new HttpError(413, 'too-large', `request body of ${declared} bytes exceeds the limit of ${this.maxRequestSize} bytes`)
    }
    const body = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      const done = (err?: Error): void => {
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('error', onError)
        if (err != null) {
          // stop reading; the answer closes the connection
          req.pause()
          reject(err)
        } else {
          resolve(Buffer.concat(chunks, size))
        }
      }
      const onData = (chunk: Buffer): void => {
        size += chunk.byteLength
        if (size > this.maxRequestSize) {
          done(new HttpError(413, 'too-large', `request body exceeds the limit of ${this.maxRequestSize} bytes`))
          return
        }
        chunks.push(chunk)
      }
      const onEnd = (): void => { done() }
      const onError = (err: Error): void => { done(new HttpError(400, 'bad-request', err.message)) }
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('error', onError)
    })
    try {
      return JSON.parse(body.toString('utf8'))
    } catch (err: any) {
      throw badRequest(`the body is not valid JSON: ${err.message}`)
    }
  }

  private send (res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
    if (res.headersSent) { return }
    const body = JSON.stringify(value)
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      ...headers
    })
    res.end(body)
  }

  private sendError (req: IncomingMessage, res: ServerResponse, err: HttpError): void {
    const value: ErrorJson = { error: { type: err.type, message: err.message } }
    const headers = { ...err.headers }
    // an unread request body is not worth draining: close the connection after answering;
    // and a client without the token (or at the wrong host) keeps no connection open
    if (!req.complete || err.status === 401 || err.status === 421) { headers.connection = 'close' }
    this.send(res, err.status, value, headers)
    if (!req.complete) {
      // half-close after the answer and discard what the client still sends:
      // closing a socket with unread data would reset it and lose the answer
      res.once('finish', () => {
        const socket = req.socket
        req.resume()
        socket?.end()
        setTimeout(() => { socket?.destroy() }, 2_000).unref()
      })
    }
  }
}
