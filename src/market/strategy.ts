import { InvalidPricingError, validatePricing } from '../protocols/opencloud/api/pricing.js'
import { median } from './price-book.js'
import type { PriceEntry } from './price-book.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'

/**
 * How a seller prices one method.
 *
 * `fixed`: the price in the service's configuration (or `pricing` here).
 *
 * `follow-market`: undercut the median of the other sellers' prices for the
 * same method and units by `undercutPercent`, never below `floor` (nor above
 * `ceiling`); with no other sellers known, `initial` (or the configured
 * price).
 *
 * @example
 * ```ts
 * const storagePut: PricingStrategy = { strategy: 'follow-market', undercutPercent: 5, floor: { rate: 1n, per: 1024n } }
 * ```
 */
export type PricingStrategy =
  | { strategy: 'fixed', pricing?: Pricing }
  | {
    strategy: 'follow-market'
    /** 0–100, at most two decimals (basis points) */
    undercutPercent: number
    floor: Pricing
    ceiling?: Pricing
    /** price when no other seller is known @default the configured price */
    initial?: Pricing
  }

export function validateStrategy (s: PricingStrategy): void {
  if (s.strategy === 'fixed') {
    if (s.pricing != null) { validatePricing(s.pricing) }
    return
  }
  if (s.strategy !== 'follow-market') { throw new InvalidPricingError(`unknown pricing strategy "${(s as { strategy: string }).strategy}"`) }
  if (!Number.isFinite(s.undercutPercent) || s.undercutPercent < 0 || s.undercutPercent > 100) { throw new InvalidPricingError('undercutPercent must be between 0 and 100') }
  validatePricing(s.floor)
  if (s.ceiling != null) { validatePricing(s.ceiling) }
  if (s.initial != null) { validatePricing(s.initial) }
}

/** Converts a rate per `fromPer` units to a rate per `toPer` units, rounding up */
function convertRate (rate: bigint, fromPer: bigint, toPer: bigint): bigint {
  return (rate * toPer + fromPer - 1n) / fromPer
}

function sameUnits (a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((u, i) => u === b[i])
}

/**
 * The follow-the-market price: `base` and `rate` are each the median of the
 * other sellers' values (rates converted to this seller's `per`), reduced by
 * `undercutPercent`, then clamped to [floor, ceiling]. Integer arithmetic
 * throughout (the undercut rounds down to whole satoshis, the clamp wins).
 * Pure: the caller passes the book's entries for this method.
 */
export function followMarketPrice (own: { peerId: string, units: string[], configured?: Pricing }, others: PriceEntry[], s: Extract<PricingStrategy, { strategy: 'follow-market' }>): Pricing {
  const per = s.initial?.per ?? own.configured?.per ?? s.floor.per ?? 1n
  const peers = others.filter(e => e.peerId !== own.peerId && sameUnits(e.units, own.units))
  let base: bigint
  let rate: bigint
  if (peers.length === 0) {
    const start = s.initial ?? own.configured ?? s.floor
    base = start.base ?? 0n
    rate = convertRate(start.rate ?? 0n, start.per ?? 1n, per)
  } else {
    const bps = BigInt(Math.round(s.undercutPercent * 100))
    const cut = (v: bigint): bigint => v * (10_000n - bps) / 10_000n
    base = cut(median(peers.map(e => e.base).sort(cmp)))
    rate = cut(median(peers.map(e => convertRate(e.rate, e.per, per)).sort(cmp)))
  }
  const floorBase = s.floor.base ?? 0n
  const floorRate = convertRate(s.floor.rate ?? 0n, s.floor.per ?? 1n, per)
  if (base < floorBase) { base = floorBase }
  if (rate < floorRate) { rate = floorRate }
  if (s.ceiling != null) {
    const ceilBase = s.ceiling.base
    // rounded down: the ceiling is never exceeded
    const ceilRate = s.ceiling.rate == null ? undefined : s.ceiling.rate * per / (s.ceiling.per ?? 1n)
    if (ceilBase != null && base > ceilBase) { base = ceilBase }
    if (ceilRate != null && rate > ceilRate) { rate = ceilRate }
  }
  return { base, rate, per }
}

function cmp (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}
