import { Status } from './pb/opencloud.js'

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

/** The spec's path for a status, `unknown-<n>` for codes this version does not know */
export function statusPath (status: Status | number): string {
  return PATHS[status as Status] ?? `unknown-${String(status)}`
}

/** The top-level class of a status: ok, client-error, server-error or request-declined */
export function statusClass (status: Status | number): 'ok' | 'client-error' | 'server-error' | 'request-declined' | 'unknown' {
  const n = Number(status)
  if (n === 0) return 'ok'
  if (n >= 100 && n < 200) return 'client-error'
  if (n >= 200 && n < 300) return 'server-error'
  if (n >= 300 && n < 400) return 'request-declined'
  return 'unknown'
}

/** Parse a status path back to its code, for CLIs and configs */
export function parseStatusPath (path: string): Status | undefined {
  for (const [code, p] of Object.entries(PATHS)) {
    if (p === path) return Number(code) as unknown as Status
  }
  return undefined
}

export { Status }
