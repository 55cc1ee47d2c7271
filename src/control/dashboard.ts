/**
 * The web dashboard (docs/dashboard.md): static pages from the package's
 * `dashboard/` folder, the one-time login that turns into a session cookie,
 * and the JSON the pages read besides the rest of the control API
 * (`/v1/stats`, `/v1/alerts`, `/v1/tabs`, `/v1/wallet/qr`,
 * `/v1/policy/explain`), and `/metrics` for Prometheus.
 */
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { renderSVG } from 'uqr'
import { API_PREFIX } from './api.js'
import { HttpError, badRequest, parseQuery, paymentsOf, queryInt } from './http.js'
import { Sessions } from './session.js'
import type { Endpoint, RouteContext } from './http.js'
import type { NodeMetrics } from './metrics.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

export const DASHBOARD_PREFIX = '/dashboard'
export const LOGIN_PATH = `${DASHBOARD_PREFIX}/login`
export const METRICS_PATH = '/metrics'

/** The pages and their content types; nothing else under /dashboard is served */
const ASSETS: Record<string, { file: string, type: string }> = {
  [`${DASHBOARD_PREFIX}/`]: { file: 'index.html', type: 'text/html; charset=utf-8' },
  [`${DASHBOARD_PREFIX}/app.js`]: { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  [`${DASHBOARD_PREFIX}/app.css`]: { file: 'app.css', type: 'text/css; charset=utf-8' }
}

/** Where the pages are: `<package>/dashboard/` (this file is `<package>/dist/src/control/dashboard.js`) */
export const ASSET_DIR = fileURLToPath(new URL('../../../dashboard/', import.meta.url))

/** Headers of every page: scripts and styles from this origin only, never framed, no referrer (the login URL carries a secret) */
export const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
}

/** Wallet balance under which the overview raises an alert (sats) */
export const LOW_WALLET = 10_000n

export interface Alert {
  level: 'info' | 'warning' | 'error'
  /** a stable name: `policy`, `wallet-low`, `chain`, `audits`, `repair` … */
  kind: string
  message: string
}

export interface DashboardInit {
  sessions: Sessions
  metrics: NodeMetrics
  /** the origin pages are served from, e.g. `http://127.0.0.1:4100` */
  origin(): string
  /** serve /metrics */
  prometheus: boolean
}

/** Sends a page or an asset read from the dashboard folder */
async function sendAsset (res: ServerResponse, path: string): Promise<void> {
  const asset = ASSETS[path]
  if (asset == null) { throw new HttpError(404, 'not-found', `no page ${path}`) }
  const body = await readFile(ASSET_DIR + asset.file)
  res.writeHead(200, { 'content-type': asset.type, 'content-length': body.byteLength, ...PAGE_HEADERS })
  res.end(body)
}

/** A small HTML page for errors a browser meets (a spent login link, no session) */
export function sendHtmlError (res: ServerResponse, status: number, title: string, text: string): void {
  if (res.headersSent) { return }
  const esc = (s: string): string => s.replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
  const body = `<!doctype html><html><head><meta charset="utf-8"><title>decloud: ${esc(title)}</title></head><body><h1>${esc(title)}</h1><p>${esc(text)}</p></body></html>`
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body), ...PAGE_HEADERS, connection: 'close' })
  res.end(body)
}

/** The pages (authorised by the server: session cookie or bearer token) */
export function dashboardRoutes (ctx: RouteContext, init: DashboardInit): Array<[string, Endpoint]> {
  const node = ctx.node
  const pages: Array<[string, Endpoint]> = Object.keys(ASSETS).map(path => [path, { method: 'GET', run: async (_req, res) => sendAsset(res, path) }])
  return [
    ...pages,
    [DASHBOARD_PREFIX, { method: 'GET', run: async (_req, res) => { redirect(res, `${DASHBOARD_PREFIX}/`) } }],
    ['/', { method: 'GET', run: async (_req, res) => { redirect(res, `${DASHBOARD_PREFIX}/`) } }],
    [`${DASHBOARD_PREFIX}/logout`, {
      method: 'POST',
      run: async (req, res) => {
        init.sessions.end(req)
        res.writeHead(204, { 'set-cookie': Sessions.clearCookie(), 'cache-control': 'no-store' })
        res.end()
      }
    }],
    [METRICS_PATH, {
      method: 'GET',
      run: async (_req, res) => {
        if (!init.prometheus) { throw new HttpError(404, 'not-found', 'metrics are off: start the node with --metrics') }
        const text = await init.metrics.text()
        res.writeHead(200, { 'content-type': init.metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
        res.end(text)
      }
    }],
    [`${API_PREFIX}/dashboard/login`, { method: 'POST', run: async () => ({ url: `${init.origin()}${LOGIN_PATH}?t=${init.sessions.newLogin()}` }) }],
    [`${API_PREFIX}/stats`, { method: 'GET', run: async () => stats() }],
    [`${API_PREFIX}/alerts`, { method: 'GET', run: async () => ({ alerts: alerts() }) }],
    [`${API_PREFIX}/tabs`, { method: 'GET', run: async (req) => tabs(req.url) }],
    [`${API_PREFIX}/storage`, { method: 'GET', run: async (req) => storage(req.url) }],
    [`${API_PREFIX}/wallet/qr`, { method: 'GET', run: async (_req, res) => qr(res) }],
    [`${API_PREFIX}/policy/explain`, { method: 'GET', run: async (req) => explain(req.url) }]
  ]

  /** GET /v1/stats: the counters behind the overview's charts */
  function stats (): unknown {
    const s = node.opencloud.stats()
    const w = init.metrics.walletBalance()
    return {
      now: Date.now(),
      bandwidth: init.metrics.hasTransfer ? init.metrics.bandwidth() : null,
      calls: { requests: s.requests, byStatus: s.byStatus, byCall: s.byCall ?? {} },
      storage: node.storage != null ? { used: node.storage.usedBytes, capacity: node.storage.capacity, pieces: node.storage.pieces ?? null } : null,
      wallet: w != null ? { confirmed: w.confirmed.toString(), unconfirmed: w.unconfirmed.toString(), at: w.at, ...(w.error != null ? { error: w.error } : {}) } : null
    }
  }

  /** GET /v1/alerts: what an operator should look at now */
  function alerts (): Alert[] {
    const out: Alert[] = []
    const reloader = node.policy?.reloader
    if (reloader?.lastError != null) {
      out.push({ level: 'error', kind: 'policy', message: `the policy file was not reloaded (the previous one is in force): ${reloader.lastError.message}` })
    }
    const w = init.metrics.walletBalance()
    if (w?.error != null) {
      out.push({ level: 'error', kind: 'chain', message: `the chain backend is unreachable: ${w.error}` })
    } else if (w != null && w.confirmed + w.unconfirmed < LOW_WALLET) {
      out.push({ level: 'warning', kind: 'wallet-low', message: `the wallet holds ${(w.confirmed + w.unconfirmed).toString()} sats: paid calls and deferred payments will fail below what they cost` })
    }
    for (const a of node.alerts?.() ?? []) { out.push(a) }
    return out
  }

  /** GET /v1/storage?limit=N: the storage this node sells, with the leases that end soonest */
  async function storage (url: string | undefined): Promise<unknown> {
    const s = node.storage
    if (s == null) { throw new HttpError(404, 'not-found', 'this node sells no storage') }
    const q = parseQuery(url, ['limit'])
    const limit = queryInt('limit', q.get('limit'), 1, 1000, 20)
    const ending = s.leases != null ? await s.leases.endingFrom(Date.now(), limit) : []
    const leases = await Promise.all(ending.map(async l => ({ id: l.id, owner: l.owner, expiry: l.expires, size: (await s.meta?.(l.id))?.size ?? null })))
    return { used: s.usedBytes, capacity: s.capacity, pieces: s.pieces ?? null, leases, audits: s.keeper?.audits ?? null }
  }

  /** GET /v1/tabs?limit=N: the tabs buyers run with this node, newest first */
  async function tabs (url: string | undefined): Promise<unknown> {
    const p = paymentsOf(node)
    const q = parseQuery(url, ['limit'])
    const limit = queryInt('limit', q.get('limit'), 1, 1000, 200)
    const list = []
    const now = Date.now()
    for await (const t of p.tabs.all({ limit })) {
      list.push({
        payer: t.payer,
        deferId: t.deferId,
        accrued: t.accrued.toString(),
        paid: t.paid.toString(),
        owed: (t.accrued > t.paid ? t.accrued - t.paid : 0n).toString(),
        threshold: t.threshold,
        openedAt: t.openedAt,
        ...(t.dueAt != null ? { dueAt: t.dueAt } : {}),
        latestDue: t.latestDue,
        status: t.status === 'open' && t.dueAt != null && t.dueAt <= now ? 'due' : t.status
      })
    }
    list.sort((a, b) => b.openedAt - a.openedAt)
    return { tabs: list }
  }

  /** GET /v1/wallet/qr: the identity address as an SVG QR code (a `bitcoin:` URI) */
  async function qr (res: ServerResponse): Promise<void> {
    const p = paymentsOf(node)
    const address = p.wallet.identityAddress
    const svg = renderSVG(`bitcoin:${address}`, { border: 2 })
    res.writeHead(200, { 'content-type': 'image/svg+xml', 'content-length': Buffer.byteLength(svg), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
    res.end(svg)
  }

  /** GET /v1/policy/explain?who=CREDENTIAL&call=SERVICE.METHOD */
  function explain (url: string | undefined): unknown {
    const policy = node.policy
    if (policy == null) { throw new HttpError(404, 'not-found', 'this node runs without a policy') }
    const q = parseQuery(url, ['who', 'call'])
    const who = q.get('who') ?? ''
    const call = q.get('call') ?? ''
    if (who.length === 0 || who.length > 256) { throw badRequest('who: a credential (oc:12D3KooW…, btc:bc1q…) or a peer id is required') }
    const m = /^([a-z0-9][a-z0-9_-]{0,63})\.([a-z0-9][a-z0-9_-]{0,63})$/.exec(call)
    if (m == null) { throw badRequest('call: SERVICE.METHOD, e.g. storage.put') }
    const credential = /^[a-z]+:/.test(who) ? who : `oc:${who}`
    const peer = credential.startsWith('oc:') ? credential.slice(3) : 'unknown'
    const text = policy.current().explain({ peer, credentials: [credential], service: m[1], method: m[2] })
    return { who: credential, call, explanation: text }
  }
}

function redirect (res: ServerResponse, location: string, headers: Record<string, string> = {}): void {
  res.writeHead(303, { location, 'content-length': 0, 'cache-control': 'no-store', ...headers })
  res.end()
}

/** GET /dashboard/login?t=SECRET: spends the secret, sets the session cookie, opens the overview */
export function login (req: IncomingMessage, res: ServerResponse, sessions: Sessions): void {
  let t = ''
  try {
    t = new URL(req.url ?? '/', 'http://x').searchParams.get('t') ?? ''
  } catch {}
  const id = sessions.redeem(t)
  if (id == null) {
    sendHtmlError(res, 401, 'This login link is spent or expired', 'Each login link works once. Run `decloud dashboard` for a new one.')
    return
  }
  redirect(res, `${DASHBOARD_PREFIX}/`, { 'set-cookie': Sessions.setCookie(id), 'referrer-policy': 'no-referrer' })
}
