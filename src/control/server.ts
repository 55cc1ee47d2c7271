import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { AbortError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { MAX_BODY_SIZE } from '../protocols/opencloud/api/constants.js'
import { DASHBOARD_PREFIX, LOGIN_PATH, dashboardRoutes, login, sendHtmlError } from './dashboard.js'
import { CONTROL_HOST, keepOnExit, newToken, removeControlFiles, removeOnExit, writeControlFiles } from './files.js'
import { HttpError, badRequest } from './http.js'
import { NodeMetrics } from './metrics.js'
import { callRoutes } from './routes-calls.js'
import { fileRoutes } from './routes-files.js'
import { marketRoutes } from './routes-market.js'
import { nodeRoutes } from './routes-node.js'
import { reputationRoutes } from './routes-reputation.js'
import { walletRoutes } from './routes-wallet.js'
import { Sessions } from './session.js'
import { decloudVersion } from './version.js'
import type { ErrorJson } from './api.js'
import type { ControlledNode, Endpoint, RouteContext } from './http.js'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

export type { ControlledNode } from './http.js'
export { DEFAULT_SELLERS_TIMEOUT, MAX_SELLERS_TIMEOUT, MAX_SELLERS_LIMIT } from './routes-market.js'

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
  /** How long a dashboard login URL stays valid unopened (ms) @default 10 min */
  loginTtl?: number
  /** Serve `GET /metrics` (Prometheus text format; `decloud node --metrics`) @default false */
  prometheus?: boolean
}

export const DEFAULT_MAX_REQUEST_SIZE = 8 * 1024 * 1024
export const DEFAULT_HEADERS_TIMEOUT = 10_000

interface ConnectionState {
  socket: Socket
  /** a request on it carried the token */
  authed: boolean
  /** closes it unless the headers of its first request arrive in time */
  timer?: ReturnType<typeof setTimeout>
}

const log = logger('decloud:control')
const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

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
  private readonly requestTimeout: number
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
  /** dashboard logins and browser sessions */
  readonly sessions: Sessions
  /** the counters behind `/metrics` and the dashboard's charts */
  readonly metrics: NodeMetrics

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
    const ctx: RouteContext = {
      node: this.node,
      readJson: async (req) => this.readJson(req),
      begin: (res) => this.begin(res)
    }
    this.sessions = new Sessions({ loginTtl: init.loginTtl })
    this.metrics = new NodeMetrics(this.node, { registry: this.node.metricsRegistry })
    // the files agent's audits and repairs show on the dashboard
    if (this.node.files?.agent != null) { this.node.files.agent.counters = this.metrics }
    const limits = { defaultCallTimeout: this.defaultCallTimeout, maxCallTimeout: this.maxCallTimeout, maxBodySize: this.maxBodySize }
    this.endpoints = new Map<string, Endpoint>([
      ...nodeRoutes(ctx, { version: this.version, startedAt: this.startedAt }),
      ...callRoutes(ctx, limits),
      ...marketRoutes(ctx),
      ...walletRoutes(ctx),
      ...fileRoutes(ctx),
      ...reputationRoutes(ctx),
      ...dashboardRoutes(ctx, { sessions: this.sessions, metrics: this.metrics, origin: () => this.origin, prometheus: init.prometheus === true })
    ])
    this.requestTimeout = Math.max(init.requestTimeout ?? 30_000, this.headersTimeout)
    this.server = createServer({
      // not the server's: a file upload streams for as long as it takes. readJson
      // bounds a JSON body by requestTimeout, an upload bounds the wait for each chunk
      requestTimeout: 0,
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

  /** Where the dashboard is served, e.g. `http://127.0.0.1:4100` */
  get origin (): string {
    return `http://${CONTROL_HOST}:${this.port}`
  }

  /** A new one-time login URL of the dashboard (docs/dashboard.md) */
  loginUrl (): string {
    return `${this.origin}${LOGIN_PATH}?t=${this.sessions.newLogin()}`
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
    this.metrics.stop()
    for (const c of this.calls) { c.abort(new AbortError('the node is stopping')) }
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
   * Every endpoint: path → method and handler, by area. `route` authorises
   * before it looks a path up, whatever the path; `routes` lists them.
   */
  private readonly endpoints: ReadonlyMap<string, Endpoint>

  /** Every endpoint, method and path */
  get routes (): Array<{ method: string, path: string }> {
    return [...this.endpoints].map(([path, e]) => ({ method: e.method, path }))
  }

  private async route (req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.checkHost(req)
    const path = (req.url ?? '/').split('?')[0]
    const state = this.conns.get(req.socket)
    if (path === LOGIN_PATH && req.method === 'GET') {
      // the one-time secret in the URL is the credential
      if (state != null) { state.authed = true }
      login(req, res, this.sessions)
      return
    }
    let how: 'bearer' | 'cookie'
    try {
      how = this.authorize(req)
    } catch (err) {
      if (path === '/' || path === DASHBOARD_PREFIX || path.startsWith(`${DASHBOARD_PREFIX}/`)) {
        sendHtmlError(res, 401, 'Not logged in', 'Open the login link that `decloud node` printed, or run `decloud dashboard` for a new one.')
        return
      }
      throw err
    }
    if (how === 'cookie' && req.method !== 'GET' && req.method !== 'HEAD') { this.checkSameOrigin(req) }
    if (state != null) { state.authed = true }
    const endpoint = this.endpoints.get(path)
    if (endpoint == null) { throw new HttpError(404, 'not-found', `no endpoint ${path}`) }
    this.only(req, endpoint.method)
    this.send(res, 200, await endpoint.run(req, res))
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

  /** The bearer token (API clients) or a dashboard session cookie (browsers); 401 otherwise */
  private authorize (req: IncomingMessage): 'bearer' | 'cookie' {
    const h = req.headers.authorization
    if (h == null && this.sessions.check(req)) { return 'cookie' }
    const m = /^Bearer ([^\s]+)$/i.exec(h ?? '')
    // compare digests: constant time, whatever the presented length
    if (m != null && timingSafeEqual(digest(m[1]), this.tokenDigest)) { return 'bearer' }
    throw new HttpError(401, 'unauthorized', 'missing or wrong bearer token (see control.token in the data dir)', { 'www-authenticate': 'Bearer' })
  }

  /**
   * A request authorised by the session cookie that changes something must
   * come from the dashboard's own pages: its Origin is this server's, and
   * the browser does not call it cross-site. SameSite=Strict already keeps
   * the cookie off cross-site requests; this holds even where a browser
   * does not honour it.
   */
  private checkSameOrigin (req: IncomingMessage): void {
    const origin = String(req.headers.origin ?? '').toLowerCase()
    const site = req.headers['sec-fetch-site']
    const own = origin.startsWith('http://') && this.hosts.has(origin.slice('http://'.length))
    if (!own || (site != null && site !== 'same-origin')) {
      throw new HttpError(403, 'cross-site', 'a request from another site (or without an Origin header) cannot change this node; use the dashboard itself or the bearer token')
    }
  }

  private only (req: IncomingMessage, method: string): void {
    if (req.method !== method) { throw new HttpError(405, 'method-not-allowed', `use ${method}`, { allow: method }) }
  }

  /** A call or lookup in flight (RouteContext.begin) */
  private begin (res: ServerResponse): { signal: AbortSignal, end(): void } {
    if (this.calls.size >= this.maxConcurrentCalls) {
      throw new HttpError(503, 'busy', `${this.calls.size} calls and lookups in flight; try again`)
    }
    const controller = new AbortController()
    this.calls.add(controller)
    // the HTTP client went away: stop the call
    const onClose = (): void => { if (!res.writableFinished) { controller.abort(new AbortError('the control API client disconnected')) } }
    res.once('close', onClose)
    return {
      signal: controller.signal,
      end: () => {
        this.calls.delete(controller)
        res.off('close', onClose)
      }
    }
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
        clearTimeout(timer)
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
      const timer = setTimeout(() => { done(new HttpError(408, 'timeout', `the request body did not arrive within ${this.requestTimeout} ms`)) }, this.requestTimeout)
      req.once('close', () => { clearTimeout(timer) })
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
