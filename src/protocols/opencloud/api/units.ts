/**
 * Storage is priced per byte·second (units `['byte', 'second']`), the unit
 * that needs no rounding of either size or time; people compare storage
 * prices per GiB-month (30 days), so that is how they are shown.
 */
import type { Pricing } from './pricing.js'

/** Seconds in the month of a GiB-month (30 days) */
export const SECONDS_PER_MONTH = 30n * 24n * 3600n
/** byte·seconds in one GiB-month: 2³⁰ × 2,592,000 */
export const BYTE_SECONDS_PER_GIB_MONTH = (1n << 30n) * SECONDS_PER_MONTH
/** The unit dimensions of a storage lease */
export const BYTE_SECOND_UNITS: readonly string[] = Object.freeze(['byte', 'second'])

/**
 * A price of `sats` per GiB-month as a per byte·second Pricing (exact: the
 * rate is `sats` per BYTE_SECONDS_PER_GIB_MONTH units)
 *
 * @example
 * ```ts
 * storage: { pricing: { put: perGiBMonth(2_000n) } } // 2,000 sat per GiB stored for 30 days
 * ```
 */
export function perGiBMonth (sats: bigint, base = 0n): Pricing {
  return { base, rate: sats, per: BYTE_SECONDS_PER_GIB_MONTH }
}

/** True when a method is priced per byte·second */
export function isByteSecond (units: readonly string[] | undefined): boolean {
  return units?.length === 2 && units[0] === 'byte' && units[1] === 'second'
}

/** What `pricing` charges for one GiB-month, rounded up to whole satoshis (the base not included) */
export function pricePerGiBMonth (pricing: Pricing | undefined): bigint {
  const rate = pricing?.rate ?? 0n
  const per = pricing?.per ?? 1n
  return (rate * BYTE_SECONDS_PER_GIB_MONTH + per - 1n) / per
}

/**
 * The units of service of a call with a body, to rank sellers by: the body's
 * bytes, times the lease seconds for `storage.put` (its first arg, else the
 * default lease of 30 days)
 */
export function bodyUsage (service: string, method: string, args: readonly string[] | undefined, bytes: number): bigint {
  if (service !== 'storage' || method !== 'put') { return BigInt(bytes) }
  const seconds = args?.[0] != null && /^[0-9]{1,12}$/.test(args[0]) ? BigInt(args[0]) : SECONDS_PER_MONTH
  return BigInt(bytes) * seconds
}
