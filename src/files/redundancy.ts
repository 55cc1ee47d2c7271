/**
 * How many pieces a segment is cut into (k) and spread over (n), and what
 * that buys (docs/files.md "Redundancy").
 */
import { checkRedundancy } from './erasure.js'

export interface Redundancy {
  k: number
  n: number
}

/** Not enough distinct sellers for the redundancy asked (or the smallest default) */
export class TooFewSellersError extends Error {
  static override name = 'TooFewSellersError'
  override name = 'TooFewSellersError'
  readonly found: number
  readonly needed: number

  constructor (found: number, needed: number, message: string) {
    super(message)
    this.found = found
    this.needed = needed
  }
}

/**
 * The defaults, most durable first: the first whose n fits the sellers found
 * is used. Each keeps the expansion n/k at 2–3 and loses a segment with
 * probability at most ~4e-3 when each seller fails with probability 10%
 * between repairs (pLoss); fewer than 4 sellers gives no default.
 */
export const DEFAULT_LADDER: readonly Redundancy[] = Object.freeze([
  { k: 10, n: 30 },
  { k: 8, n: 16 },
  { k: 6, n: 12 },
  { k: 4, n: 8 },
  { k: 3, n: 6 },
  { k: 2, n: 4 }
])

/** "K/N" → { k, n }; RangeError when malformed or out of range */
export function parseRedundancy (s: string): Redundancy {
  const m = /^([0-9]{1,3})\/([0-9]{1,3})$/.exec(s)
  if (m == null) { throw new RangeError(`redundancy "${s}": use K/N, e.g. 4/8 (any K of N pieces rebuild the file)`) }
  const k = Number(m[1])
  const n = Number(m[2])
  checkRedundancy(k, n)
  return { k, n }
}

/**
 * The redundancy for `sellers` distinct sellers found: the one asked for when
 * there are enough sellers for it, else the largest default that fits.
 * Throws TooFewSellersError with a message for the user otherwise.
 */
export function chooseRedundancy (sellers: number, asked?: Redundancy): Redundancy {
  if (asked != null) {
    checkRedundancy(asked.k, asked.n)
    if (sellers < asked.n) {
      throw new TooFewSellersError(sellers, asked.n, `redundancy ${asked.k}/${asked.n} needs ${asked.n} distinct sellers; found ${sellers}. Ask for less (e.g. --redundancy ${Math.max(1, Math.floor(sellers / 2))}/${sellers}) only if you accept the risk${sellers < 2 ? ' (at least 2 sellers are needed for any redundancy)' : ''}`)
    }
    return asked
  }
  const fit = DEFAULT_LADDER.find(r => r.n <= sellers)
  if (fit == null) {
    const least = DEFAULT_LADDER[DEFAULT_LADDER.length - 1]
    throw new TooFewSellersError(sellers, least.n, `found ${sellers} distinct seller${sellers === 1 ? '' : 's'} of storage; the default redundancy needs at least ${least.n} (${least.k}/${least.n}). Find more sellers, or ask for less with --redundancy K/N (N ≤ ${sellers}) if you accept the risk`)
  }
  return fit
}

/** C(n, i) as a float (n ≤ 256) */
function choose (n: number, i: number): number {
  let r = 1
  for (let j = 1; j <= i; j++) { r = r * (n - i + j) / j }
  return r
}

/**
 * P(loss) of one segment: the probability that more than n − k of its n
 * pieces are lost, when each is lost independently with probability p
 * between two repairs: Σ_{i=n−k+1..n} C(n,i) pⁱ (1−p)ⁿ⁻ⁱ
 */
export function pLoss (k: number, n: number, p: number): number {
  let sum = 0
  for (let i = n - k + 1; i <= n; i++) { sum += choose(n, i) * p ** i * (1 - p) ** (n - i) }
  return sum
}
