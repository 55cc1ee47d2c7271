/**
 * Prices are integer minor units (satoshis), never floats. A method's price is
 * `base` per call plus `rate` satoshis per `per` units of service, where the
 * units of service are the product of the method's unit dimensions (e.g.
 * bytes × days). Costs round up, so a seller never undercharges by rounding.
 */
export interface Pricing {
  /**
   * satoshis per call, whatever the units
   *
   * @default 0n
   */
  base?: bigint
  /**
   * satoshis per `per` units of service
   *
   * @default 0n
   */
  rate?: bigint
  /**
   * units of service that `rate` buys
   *
   * @default 1n
   */
  per?: bigint
}

export interface CostBreakdown {
  base: bigint
  /** product of the unit dimensions */
  units: bigint
  usage: bigint
  total: bigint
}

/**
 * The largest amount the wire can carry (`uint64` satoshis). Anything above
 * would wrap silently when encoded, so no cost may exceed it.
 */
export const MAX_AMOUNT = 2n ** 64n - 1n

export class InvalidPricingError extends Error {
  static override name = 'InvalidPricingError'
  override name = 'InvalidPricingError'
}

/** A cost exceeds MAX_AMOUNT: the call is too big to be priced, let alone paid */
export class AmountOverflowError extends Error {
  static override name = 'AmountOverflowError'
  override name = 'AmountOverflowError'
}

/** Throws InvalidPricingError unless every field is a bigint in range */
export function validatePricing (p: Pricing): void {
  for (const field of ['base', 'rate', 'per'] as const) {
    const v = p[field]
    if (v != null && typeof v !== 'bigint') { throw new InvalidPricingError(`${field} must be a bigint (integer satoshis), got ${typeof v}`) }
    if (v != null && v > MAX_AMOUNT) { throw new InvalidPricingError(`${field} exceeds the largest amount (${MAX_AMOUNT})`) }
  }
  if ((p.base ?? 0n) < 0n) { throw new InvalidPricingError('base must not be negative') }
  if ((p.rate ?? 0n) < 0n) { throw new InvalidPricingError('rate must not be negative') }
  if ((p.per ?? 1n) <= 0n) { throw new InvalidPricingError('per must be positive') }
}

/**
 * Pure cost function: the breakdown of what `units` of service cost under
 * `pricing`: `base + ceil(rate × Πunits / per)`, exact integer arithmetic.
 *
 * @throws {InvalidPricingError} when a unit is negative or not a bigint
 * @throws {AmountOverflowError} when the total exceeds MAX_AMOUNT
 * @example
 * ```ts
 * // 3 sat per call + 7 sat per 1000 byte·days; 1500 bytes for 2 days
 * computeCost({ base: 3n, rate: 7n, per: 1000n }, [1500n, 2n])
 * // → { base: 3n, units: 3000n, usage: 21n, total: 24n }
 * ```
 */
export function computeCost (pricing: Pricing | undefined, units: readonly bigint[]): CostBreakdown {
  const base = pricing?.base ?? 0n
  const rate = pricing?.rate ?? 0n
  const per = pricing?.per ?? 1n
  let product = 1n
  for (const u of units) {
    if (typeof u !== 'bigint') { throw new InvalidPricingError(`units of service must be bigints, got ${typeof u}`) }
    if (u < 0n) { throw new InvalidPricingError('units of service must not be negative') }
    product *= u
  }
  const usage = rate === 0n ? 0n : (rate * product + per - 1n) / per
  const total = base + usage
  if (total > MAX_AMOUNT) { throw new AmountOverflowError(`cost of ${total} sat exceeds the largest amount (${MAX_AMOUNT})`) }
  return { base, units: product, usage, total }
}

/** True when a method costs nothing whatever the units */
export function isFree (pricing: Pricing | undefined): boolean {
  return (pricing?.base ?? 0n) === 0n && (pricing?.rate ?? 0n) === 0n
}

/** Parses a decimal unsigned integer string into a bigint, or undefined */
export function parseUnsigned (s: string): bigint | undefined {
  if (!/^[0-9]{1,30}$/.test(s)) { return undefined }
  return BigInt(s)
}
