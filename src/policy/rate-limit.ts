/**
 * Token buckets per (peer, scope) for requests/s and bytes/s, and counters of
 * calls in progress, with bounded memory.
 *
 * A bucket starts full (its burst) and refills at its rate. A request takes
 * one request token and its bytes in byte tokens; a request larger than the
 * byte burst passes when the bucket is full and leaves it in debt, so no
 * size is refused forever. A bucket left alone until it is full again is
 * the same as a new one: those are dropped first (no state is lost), and
 * when the table still holds `maxEntries` the least recently used bucket
 * goes.
 */
import type { RateLimit } from './schema.js'

/** Buckets held at most (about 10 MB) */
export const MAX_BUCKETS = 100_000

export interface RateLimiterInit {
  /**
   * @default MAX_BUCKETS
   */
  maxEntries?: number
  /**
   * The clock: milliseconds, monotonic
   *
   * @default performance.now
   */
  now?(): number
}

interface Bucket {
  requests: number
  bytes: number
  /** when the tokens were counted (ms) */
  last: number
  /** when the bucket will be full again, i.e. can be dropped losslessly (ms) */
  fullAt: number
  requestRate: number
  requestBurst: number
  byteRate: number
  byteBurst: number
}

export interface RateLimitItem {
  /** the bucket: scope key and peer */
  key: string
  limit: RateLimit
}

export type TakeResult =
  | { ok: true }
  | { ok: false, /** ms until this request would pass */ retryAfterMs: number, /** which item refused */ index: number, /** 'requests' or 'bytes' */ dimension: 'requests' | 'bytes' }

/** How many stale entries one call looks at: eviction is amortised, no timer */
const SWEEP_PER_CALL = 4

function requestBurst (l: RateLimit): number {
  return l.requests === undefined ? 0 : l.requestBurst ?? Math.max(1, l.requests)
}

function byteBurst (l: RateLimit): number {
  return l.bytes === undefined ? 0 : l.byteBurst ?? l.bytes
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private readonly maxEntries: number
  private readonly now: () => number
  /** buckets dropped because the table was full (they were not yet refilled) */
  evicted = 0

  constructor (init: RateLimiterInit = {}) {
    this.maxEntries = Math.max(1, init.maxEntries ?? MAX_BUCKETS)
    this.now = init.now != null ? () => (init.now as () => number)() : () => performance.now()
  }

  get size (): number {
    return this.buckets.size
  }

  /** The bucket for `key`, refilled to `now`, its limits updated (a reloaded policy may change them) */
  private bucket (key: string, l: RateLimit, now: number): Bucket {
    let b = this.buckets.get(key)
    const rRate = l.requests ?? 0
    const rBurst = requestBurst(l)
    const bRate = l.bytes ?? 0
    const bBurst = byteBurst(l)
    if (b == null) {
      b = { requests: rBurst, bytes: bBurst, last: now, fullAt: now, requestRate: rRate, requestBurst: rBurst, byteRate: bRate, byteBurst: bBurst }
      return b
    }
    const dt = Math.max(0, now - b.last) / 1000
    b.requestRate = rRate
    b.requestBurst = rBurst
    b.byteRate = bRate
    b.byteBurst = bBurst
    b.requests = Math.min(rBurst, b.requests + dt * rRate)
    b.bytes = Math.min(bBurst, b.bytes + dt * bRate)
    b.last = now
    return b
  }

  /**
   * Takes one request and `bytes` from every item's bucket, or from none:
   * when one would refuse, nothing is taken and the wait is returned.
   */
  take (items: readonly RateLimitItem[], bytes: number): TakeResult {
    if (items.length === 0) { return { ok: true } }
    const now = this.now()
    this.sweep(now)
    const buckets = items.map(it => this.bucket(it.key, it.limit, now))
    for (let i = 0; i < items.length; i++) {
      const b = buckets[i]
      const l = items[i].limit
      if (l.requests !== undefined && b.requests < 1) {
        return { ok: false, index: i, dimension: 'requests', retryAfterMs: Math.ceil((1 - b.requests) / b.requestRate * 1000) }
      }
      if (l.bytes !== undefined && bytes > 0) {
        const need = Math.min(bytes, b.byteBurst)
        if (b.bytes < need) {
          return { ok: false, index: i, dimension: 'bytes', retryAfterMs: Math.ceil((need - b.bytes) / b.byteRate * 1000) }
        }
      }
    }
    for (let i = 0; i < items.length; i++) {
      const b = buckets[i]
      const l = items[i].limit
      if (l.requests !== undefined) { b.requests -= 1 }
      if (l.bytes !== undefined) { b.bytes -= bytes }
      const refill = Math.max(
        l.requests !== undefined ? (b.requestBurst - b.requests) / b.requestRate : 0,
        l.bytes !== undefined ? (b.byteBurst - b.bytes) / b.byteRate : 0
      )
      b.fullAt = now + refill * 1000
      // most recently used last: the map's order is the eviction order
      this.buckets.delete(items[i].key)
      this.buckets.set(items[i].key, b)
    }
    while (this.buckets.size > this.maxEntries) {
      const oldest = this.buckets.keys().next().value as string
      const b = this.buckets.get(oldest) as Bucket
      if (b.fullAt > now) { this.evicted++ }
      this.buckets.delete(oldest)
    }
    return { ok: true }
  }

  /** Drops a few least recently used buckets that are full again */
  private sweep (now: number): void {
    let n = 0
    for (const [key, b] of this.buckets) {
      if (n++ >= SWEEP_PER_CALL || b.fullAt > now) { return }
      this.buckets.delete(key)
    }
  }

  /** Drops every bucket */
  clear (): void {
    this.buckets.clear()
  }
}

/**
 * Calls in progress per key. `acquire` returns the release (idempotent), or
 * undefined when the key is at its limit. Keys with nothing in progress hold
 * no memory.
 */
export class ConcurrencyLimiter {
  private readonly active = new Map<string, number>()

  acquire (key: string, max: number): (() => void) | undefined {
    const n = this.active.get(key) ?? 0
    if (n >= max) { return undefined }
    this.active.set(key, n + 1)
    let released = false
    return () => {
      if (released) { return }
      released = true
      const m = (this.active.get(key) ?? 1) - 1
      if (m <= 0) { this.active.delete(key) } else { this.active.set(key, m) }
    }
  }

  /** Calls in progress for `key` */
  count (key: string): number {
    return this.active.get(key) ?? 0
  }

  /** Keys with calls in progress */
  get size (): number {
    return this.active.size
  }
}
