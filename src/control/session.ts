/**
 * Browser sessions of the dashboard: a one-time login secret, printed in a
 * URL by `decloud node` and `decloud dashboard`, is exchanged once for a
 * session id kept in an HttpOnly, SameSite=Strict cookie. The bearer token
 * never reaches the browser, and a login URL left in a terminal's scrollback
 * or a browser's history is useless once it has been opened.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

export const SESSION_COOKIE = 'decloud_session'
/** How long a login URL stays valid if nobody opens it */
export const DEFAULT_LOGIN_TTL = 10 * 60_000
/** How long a browser session lasts without any request */
export const DEFAULT_SESSION_IDLE = 12 * 60 * 60_000
/** Login secrets and sessions kept at once; the oldest gives way */
const MAX_LOGINS = 16
const MAX_SESSIONS = 32

const digest = (s: string): string => createHash('sha256').update(s).digest('hex')
const secret = (): string => randomBytes(32).toString('base64url')

export interface SessionsInit {
  loginTtl?: number
  sessionIdle?: number
  /** @default Date.now */
  now?(): number
}

/** One-time login secrets and the sessions they became. Secrets are kept only as digests. */
export class Sessions {
  private readonly logins = new Map<string, number>()
  private readonly sessions = new Map<string, number>()
  private readonly loginTtl: number
  private readonly sessionIdle: number
  private readonly now: () => number

  constructor (init: SessionsInit = {}) {
    this.loginTtl = init.loginTtl ?? DEFAULT_LOGIN_TTL
    this.sessionIdle = init.sessionIdle ?? DEFAULT_SESSION_IDLE
    this.now = init.now ?? Date.now
  }

  /** A new one-time login secret, valid for loginTtl */
  newLogin (): string {
    const s = secret()
    bounded(this.logins, MAX_LOGINS).set(digest(s), this.now() + this.loginTtl)
    return s
  }

  /** Spends a login secret: a new session id, or undefined when the secret is unknown, spent or expired */
  redeem (login: string): string | undefined {
    if (login.length === 0 || login.length > 128) { return undefined }
    const d = digest(login)
    const expiry = this.logins.get(d)
    this.logins.delete(d)
    if (expiry == null || expiry < this.now()) { return undefined }
    const id = secret()
    bounded(this.sessions, MAX_SESSIONS).set(digest(id), this.now() + this.sessionIdle)
    return id
  }

  /** Whether the request carries a live session cookie (and keeps it alive) */
  check (req: IncomingMessage): boolean {
    const id = cookie(req, SESSION_COOKIE)
    if (id == null || id.length > 128) { return false }
    const d = digest(id)
    const expiry = this.sessions.get(d)
    if (expiry == null) { return false }
    if (expiry < this.now()) {
      this.sessions.delete(d)
      return false
    }
    // refresh its place and its idle time: the least recently used session gives way first
    this.sessions.delete(d)
    this.sessions.set(d, this.now() + this.sessionIdle)
    return true
  }

  /** Ends the session of this request */
  end (req: IncomingMessage): void {
    const id = cookie(req, SESSION_COOKIE)
    if (id != null) { this.sessions.delete(digest(id)) }
  }

  /** The Set-Cookie value of a session */
  static setCookie (id: string): string {
    return `${SESSION_COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/`
  }

  static clearCookie (): string {
    return `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`
  }
}

function bounded<V> (map: Map<string, V>, max: number): Map<string, V> {
  while (map.size >= max) {
    const oldest = map.keys().next().value
    if (oldest == null) { break }
    map.delete(oldest)
  }
  return map
}

/** One cookie's value from the Cookie header */
export function cookie (req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie
  if (header == null || header.length > 8192) { return undefined }
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) { continue }
    if (part.slice(0, eq).trim() === name) { return part.slice(eq + 1).trim() }
  }
  return undefined
}
