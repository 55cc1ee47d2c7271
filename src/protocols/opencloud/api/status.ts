import { Reason, Status } from '../pb/opencloud.js'

/**
 * Wire codes of the statuses (proto/opencloud.proto). protons represents
 * enum values by their names, so the numbers live here too. The hundreds
 * digit is the class: 1xx client-error, 2xx server-error, 3xx request-declined.
 */
const CODES: Record<Status, number> = {
  [Status.OK]: 0,
  [Status.CLIENT_ERROR]: 100,
  [Status.BAD_REQUEST]: 101,
  [Status.INVALID_SIGNATURE]: 102,
  [Status.SERVICE_UNSUPPORTED]: 103,
  [Status.METHOD_UNSUPPORTED]: 104,
  [Status.NOT_FOUND]: 105,
  [Status.TOO_LARGE]: 106,
  [Status.SERVER_ERROR]: 200,
  [Status.INSUFFICIENT_STORAGE]: 201,
  [Status.REQUEST_DECLINED]: 300,
  [Status.REFRESH_NONCE]: 301,
  [Status.ACCESS_DENIED]: 302,
  [Status.RATE_LIMITED]: 303,
  [Status.PAYMENT_DECLINED]: 310,
  [Status.TOO_LOW]: 311,
  [Status.NO_DEFER]: 312
}

/**
 * Status path strings as the spec writes them, e.g.
 * `request-declined/payment-declined/too-low`.
 */
const PATHS: Record<Status, string> = {
  [Status.OK]: 'ok',
  [Status.CLIENT_ERROR]: 'client-error',
  [Status.BAD_REQUEST]: 'client-error/bad-request',
  [Status.INVALID_SIGNATURE]: 'client-error/invalid-signature',
  [Status.SERVICE_UNSUPPORTED]: 'client-error/service-unsupported',
  [Status.METHOD_UNSUPPORTED]: 'client-error/method-unsupported',
  [Status.NOT_FOUND]: 'client-error/not-found',
  [Status.TOO_LARGE]: 'client-error/too-large',
  [Status.SERVER_ERROR]: 'server-error',
  [Status.INSUFFICIENT_STORAGE]: 'server-error/insufficient-storage',
  [Status.REQUEST_DECLINED]: 'request-declined',
  [Status.REFRESH_NONCE]: 'request-declined/refresh-nonce',
  [Status.ACCESS_DENIED]: 'request-declined/access-denied',
  [Status.RATE_LIMITED]: 'request-declined/rate-limited',
  [Status.PAYMENT_DECLINED]: 'request-declined/payment-declined',
  [Status.TOO_LOW]: 'request-declined/payment-declined/too-low',
  [Status.NO_DEFER]: 'request-declined/payment-declined/no-defer'
}

const BY_CODE = new Map<number, Status>(Object.entries(CODES).map(([s, c]) => [c, s as Status]))

/** True when `value` is a status this version knows */
export function isStatus (value: unknown): value is Status {
  return typeof value === 'string' && Object.hasOwn(CODES, value)
}

/** The wire code of a status (e.g. 311 for too-low); accepts a code and returns it */
export function statusCode (status: Status | number): number {
  if (typeof status === 'number') { return status }
  return CODES[status] ?? -1
}

/** The status of a wire code, or undefined for codes this version does not know */
export function statusFromCode (code: number): Status | undefined {
  return BY_CODE.get(code)
}

/** The spec's path for a status (or its code), `unknown-<code>` for codes this version does not know */
export function statusPath (status: Status | number): string {
  const s = typeof status === 'number' ? statusFromCode(status) : status
  if (s != null && isStatus(s)) { return PATHS[s] }
  return `unknown-${String(status)}`
}

/** The top-level class of a status: ok, client-error, server-error or request-declined */
export function statusClass (status: Status | number): 'ok' | 'client-error' | 'server-error' | 'request-declined' | 'unknown' {
  const n = statusCode(status)
  if (n === 0) { return 'ok' }
  if (n >= 100 && n < 200) { return 'client-error' }
  if (n >= 200 && n < 300) { return 'server-error' }
  if (n >= 300 && n < 400) { return 'request-declined' }
  return 'unknown'
}

/** Parse a status path back to its status, for CLIs and configs */
export function parseStatusPath (path: string): Status | undefined {
  for (const [status, p] of Object.entries(PATHS)) {
    if (p === path) { return status as Status }
  }
  return undefined
}

const REASONS = new Set<string>(Object.values(Reason).filter(v => typeof v === 'string'))

/** True when `value` is a refusal reason this version knows (docs/protocol.md "Reasons") */
export function isReason (value: unknown): value is Reason {
  return typeof value === 'string' && REASONS.has(value)
}

export { Reason, Status }
