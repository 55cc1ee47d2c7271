/**
 * Prices are integer minor units (satoshis), never floats. A method's price is
 * `base` per call plus `rate` satoshis per `per` units of service, where the
 * units of service are the product of the method's unit dimensions (e.g.
 * bytes × days). Costs round up, so a seller never undercharges by rounding.
 */
export interface Pricing {
  /** satoshis per call, whatever the units @default 0n */
  base?: bigint
  /** satoshis per `per` units of service @default 0n */
  rate?: bigint
  /** units of service that `rate` buys @default 1n */
  per?: bigint
}

export interface CostBreakdown {
  base: bigint
  /** product of the unit dimensions */
  units: bigint
  usage: bigint
  total: bigint
}

export class InvalidPricingError extends Error {
  static override name = 'InvalidPricingError'
  override name = 'InvalidPricingError'
}

export function validatePricing (p: Pricing): void {
  if ((p.base ?? 0n) < 0n) throw new InvalidPricingError('base must not be negative')
  if ((p.rate ?? 0n) < 0n) throw new InvalidPricingError('rate must not be negative')
  if ((p.per ?? 1n) <= 0n) throw new InvalidPricingError('per must be positive')
}

/** Pure cost function: the breakdown of what `units` of service cost under `pricing` */
export function computeCost (pricing: Pricing | undefined, units: readonly bigint[]): CostBreakdown {
  const base = pricing?.base ?? 0n
  const rate = pricing?.rate ?? 0n
  const per = pricing?.per ?? 1n
  let product = 1n
  for (const u of units) {
    if (u < 0n) throw new InvalidPricingError('units of service must not be negative')
    product *= u
  }
  const usage = rate === 0n ? 0n : (rate * product + per - 1n) / per
  return { base, units: product, usage, total: base + usage }
}

/** True when a method costs nothing whatever the units */
export function isFree (pricing: Pricing | undefined): boolean {
  return (pricing?.base ?? 0n) === 0n && (pricing?.rate ?? 0n) === 0n
}

/** Parses a decimal unsigned integer string into a bigint, or undefined */
export function parseUnsigned (s: string): bigint | undefined {
  if (!/^[0-9]{1,30}$/.test(s)) return undefined
  return BigInt(s)
}
