/**
 * Global trust by EigenTrust (Kamvar, Schlosser, Garcia-Molina 2003):
 * `t ← (1 − a)·Cᵀt + a·p`.
 * C's row i is peer i's local trust of the others, normalised to sum 1,
 * self-trust removed; p is the pre-trust distribution (configured peers,
 * this node itself). A row with no outgoing trust (a dangling peer) sends
 * its mass to p. A row may carry a weight w ∈ [0, 1] (the opinion trust
 * of its reporter): w of its mass follows the row, 1 − w goes to p, so a
 * reporter whose opinions disagree with our own experience steers less of
 * the vector. Peers nobody trusts, fresh identities and cliques that only
 * trust themselves included, get 0: there is no exploration in the
 * vector itself (exploration belongs to seller choice).
 *
 * Pure: the caller passes every row; the previous vector warm-starts the
 * iteration.
 */
import { InvalidParametersError } from '@libp2p/interface'

export interface EigenTrustParams {
  /** weight of the pre-trust vector per step, 0 < a < 1 @default 0.1 */
  a: number
  /** stop when the L1 change of a step is below this @default 1e-9 */
  epsilon: number
  /** most iterations (the error shrinks by 1 − a per step: 300 reach 1e-9 at a = 0.1) @default 300 */
  maxIterations: number
}

export const DEFAULT_EIGENTRUST: Readonly<EigenTrustParams> = Object.freeze({ a: 0.1, epsilon: 1e-9, maxIterations: 300 })

export function validateEigenTrustParams (p: Partial<EigenTrustParams> = {}): EigenTrustParams {
  const out = { ...DEFAULT_EIGENTRUST, ...p }
  if (!Number.isFinite(out.a) || out.a <= 0 || out.a >= 1) { throw new InvalidParametersError(`EigenTrust a must be in (0, 1), not ${out.a}`) }
  if (!Number.isFinite(out.epsilon) || out.epsilon <= 0) { throw new InvalidParametersError(`EigenTrust epsilon must be > 0, not ${out.epsilon}`) }
  if (!Number.isSafeInteger(out.maxIterations) || out.maxIterations < 1) { throw new InvalidParametersError(`EigenTrust maxIterations must be a positive integer, not ${out.maxIterations}`) }
  return out
}

export interface TrustRow {
  /** the truster */
  from: string
  /** its local trust of others (≥ 0; any scale, the row is normalised) */
  trust: ReadonlyMap<string, number>
  /** share of the row that is followed, 0–1 (opinion trust) @default 1 */
  weight?: number
}

export interface EigenTrustInput {
  rows: Iterable<TrustRow>
  /** pre-trusted peers (equal shares); at least one */
  pretrusted: readonly string[]
  /** the last vector, to start from @default p */
  previous?: ReadonlyMap<string, number>
  params?: Partial<EigenTrustParams>
}

export interface EigenTrustResult {
  /** global trust per peer, summing to 1 */
  trust: Map<string, number>
  iterations: number
  converged: boolean
}

/**
 * Computes the global trust vector.
 *
 * @example
 * ```ts
 * const { trust } = eigenTrust({ rows: [{ from: 'a', trust: new Map([['b', 1]]) }], pretrusted: ['a'] })
 * ```
 */
export function eigenTrust (input: EigenTrustInput): EigenTrustResult {
  const params = validateEigenTrustParams(input.params)
  if (input.pretrusted.length === 0) { throw new InvalidParametersError('EigenTrust needs at least one pre-trusted peer') }
  const index = new Map<string, number>()
  const ids: string[] = []
  const idOf = (peer: string): number => {
    let i = index.get(peer)
    if (i == null) {
      i = ids.length
      index.set(peer, i)
      ids.push(peer)
    }
    return i
  }
  for (const p of input.pretrusted) { idOf(p) }
  // compressed sparse rows: for each truster, its normalised, weighted out-edges
  const rowFrom: number[] = []
  const rowStart: number[] = [0]
  const cols: number[] = []
  const vals: number[] = []
  const rowKept: number[] = []
  for (const row of input.rows) {
    const from = idOf(row.from)
    const weight = row.weight ?? 1
    if (!Number.isFinite(weight) || weight < 0 || weight > 1) { throw new InvalidParametersError(`row weight must be in [0, 1], not ${weight}`) }
    let sum = 0
    for (const [to, v] of row.trust) {
      if (to === row.from || !(v > 0) || !Number.isFinite(v)) { continue }
      sum += v
    }
    if (sum === 0 || weight === 0) { continue }
    for (const [to, v] of row.trust) {
      if (to === row.from || !(v > 0) || !Number.isFinite(v)) { continue }
      cols.push(idOf(to))
      vals.push(weight * v / sum)
    }
    rowFrom.push(from)
    rowStart.push(cols.length)
    rowKept.push(weight)
  }
  const n = ids.length
  const p = new Float64Array(n)
  const pre = new Set(input.pretrusted)
  for (const peer of pre) { p[index.get(peer) as number] = 1 / pre.size }
  let t = new Float64Array(n)
  if (input.previous != null && input.previous.size > 0) {
    let sum = 0
    for (const [peer, v] of input.previous) {
      const i = index.get(peer)
      if (i != null && v > 0 && Number.isFinite(v)) { t[i] = v; sum += v }
    }
    if (sum > 0) { for (let i = 0; i < n; i++) { t[i] /= sum } } else { t.set(p) }
  } else {
    t.set(p)
  }
  const a = params.a
  let next = new Float64Array(n)
  let iterations = 0
  let converged = false
  while (iterations < params.maxIterations) {
    iterations++
    next.fill(0)
    // mass that follows no edge: dangling rows, the unfollowed share of weighted rows
    let toP = 0
    let followed = 0
    for (let r = 0; r < rowFrom.length; r++) {
      const ti = t[rowFrom[r]]
      if (ti === 0) { continue }
      followed += ti
      toP += ti * (1 - rowKept[r])
      for (let k = rowStart[r]; k < rowStart[r + 1]; k++) { next[cols[k]] += (1 - a) * ti * vals[k] }
    }
    let total = 0
    for (let i = 0; i < n; i++) { total += t[i] }
    toP += total - followed
    const pMass = (1 - a) * toP + a * total
    let delta = 0
    for (let i = 0; i < n; i++) {
      next[i] += pMass * p[i]
      delta += Math.abs(next[i] - t[i])
    }
    const swap = t
    t = next
    next = swap
    if (delta < params.epsilon) {
      converged = true
      break
    }
  }
  const trust = new Map<string, number>()
  let sum = 0
  for (let i = 0; i < n; i++) { sum += t[i] }
  for (let i = 0; i < n; i++) { trust.set(ids[i], sum > 0 ? t[i] / sum : 0) }
  return { trust, iterations, converged }
}
