/**
 * The `--pay` option of `decloud call` (and `pay` of `POST /v1/call`):
 * `attached:SATS`, `defer:SATS[:THRESHOLD]` or `auto`. Amounts are integer
 * satoshis; the threshold is the defer-threshold of docs/payments.md
 * (`time:SECONDS`, `value:SATS`, `completion`).
 */
import type { PayOption } from './bidding.js'

const SATS = /^[0-9]{1,20}$/
const MAX = 2n ** 64n - 1n

/** A value as quoted in a message: at most 64 characters */
const quote = (s: string): string => JSON.stringify(s.length > 64 ? s.slice(0, 64) + '…' : s)

function sats (what: string, s: string): bigint {
  if (!SATS.test(s) || BigInt(s) > MAX) { throw new RangeError(`${what} must be a whole number of satoshis, not ${quote(s)}`) }
  return BigInt(s)
}

export function parsePayOption (s: string): PayOption {
  if (s === 'auto') { return { kind: 'auto' } }
  const m = /^(attached|defer):([^:]*)(?::(.+))?$/.exec(s)
  if (m == null) { throw new RangeError(`${quote(s)} is not attached:SATS, defer:SATS[:THRESHOLD] or auto`) }
  const amount = sats('the amount', m[2])
  if (m[1] === 'attached') {
    if (m[3] != null) { throw new RangeError('attached:SATS takes no threshold') }
    return { kind: 'attached', amount }
  }
  const threshold = m[3]
  if (threshold != null && !/^(time:[0-9]{1,10}|value:[0-9]{1,20}|completion)$/.test(threshold)) {
    throw new RangeError(`defer threshold ${quote(threshold)}: use time:SECONDS, value:SATS or completion`)
  }
  return { kind: 'defer', amount, ...(threshold != null ? { threshold } : {}) }
}

/** Parses a `--max` amount */
export function parseMax (s: string): bigint {
  return sats('--max', s)
}
