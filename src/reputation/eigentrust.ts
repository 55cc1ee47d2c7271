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

/** One truster's normalised, weighted out-edges */
interface Row {
  cols: Int32Array
  vals: Float64Array
  /** share followed (opinion trust) */
  kept: number
}

/**
 * The trust graph kept between computations: rows change one at a time
 * (`setRow`, at the cost of that row), and `compute` warm-starts from the
 * last vector, so an update after a few new reports costs a few
 * iterations over the edges, not a rebuild of the matrix.
 *
 * @example
 * ```ts
 * const g = new TrustGraph()
 * g.setRow({ from: 'a', trust: new Map([['b', 1]]) })
 * const { trust } = g.compute(['a'])
 * ```
 */
export class TrustGraph {
  private readonly index = new Map<string, number>()
  private readonly ids: string[] = []
  private readonly rows = new Map<number, Row>()
  private last = new Float64Array(0)

  /** The index of a peer, adding it when new */
  idOf (peer: string): number {
    let i = this.index.get(peer)
    if (i == null) {
      i = this.ids.length
      this.index.set(peer, i)
      this.ids.push(peer)
    }
    return i
  }

  get size (): number {
    return this.ids.length
  }

  /** Sets (or, with no positive trust, removes) a truster's row; self-trust is dropped */
  setRow (row: TrustRow): void {
    const from = this.idOf(row.from)
    const weight = row.weight ?? 1
    if (!Number.isFinite(weight) || weight < 0 || weight > 1) { throw new InvalidParametersError(`row weight must be in [0, 1], not ${weight}`) }
    let sum = 0
    let n = 0
    for (const [to, v] of row.trust) {
      if (to === row.from || !(v > 0) || !Number.isFinite(v)) { continue }
      sum += v
      n++
    }
    if (sum === 0 || weight === 0) {
      this.rows.delete(from)
      return
    }
    const cols = new Int32Array(n)
    const vals = new Float64Array(n)
    let k = 0
    for (const [to, v] of row.trust) {
      if (to === row.from || !(v > 0) || !Number.isFinite(v)) { continue }
      cols[k] = this.idOf(to)
      vals[k] = weight * v / sum
      k++
    }
    this.rows.set(from, { cols, vals, kept: weight })
  }

  /** Forgets a truster's row (its peer stays known, as a possible trustee) */
  deleteRow (from: string): void {
    const i = this.index.get(from)
    if (i != null) { this.rows.delete(i) }
  }

  /**
   * The global trust vector, warm-started from the last one (or from
   * `previous`, or from p).
   */
  compute (pretrusted: readonly string[], params?: Partial<EigenTrustParams>, previous?: ReadonlyMap<string, number>): EigenTrustResult {
    const { a, epsilon, maxIterations } = validateEigenTrustParams(params)
    if (pretrusted.length === 0) { throw new InvalidParametersError('EigenTrust needs at least one pre-trusted peer') }
    const pre = new Set(pretrusted)
    const pIdx = [...pre].map(peer => this.idOf(peer))
    const n = this.ids.length
    let t = new Float64Array(n)
    let sum = 0
    if (previous != null && previous.size > 0) {
      for (const [peer, v] of previous) {
        const i = this.index.get(peer)
        if (i != null && v > 0 && Number.isFinite(v)) {
          t[i] = v
          sum += v
        }
      }
    } else {
      for (let i = 0; i < Math.min(n, this.last.length); i++) {
        t[i] = this.last[i]
        sum += this.last[i]
      }
    }
    if (sum > 0) {
      for (let i = 0; i < n; i++) { t[i] /= sum }
    } else {
      for (const i of pIdx) { t[i] = 1 / pIdx.length }
    }
    const rowList = [...this.rows]
    let next = new Float64Array(n)
    let iterations = 0
    let converged = false
    while (iterations < maxIterations) {
      iterations++
      next.fill(0)
      // mass that follows no edge: dangling peers, the unfollowed share of weighted rows
      let total = 0
      for (let i = 0; i < n; i++) { total += t[i] }
      let toP = total
      for (const [from, row] of rowList) {
        const ti = t[from]
        if (ti === 0) { continue }
        toP -= ti * row.kept
        const f = (1 - a) * ti
        const { cols, vals } = row
        for (let k = 0; k < cols.length; k++) { next[cols[k]] += f * vals[k] }
      }
      const share = ((1 - a) * toP + a * total) / pIdx.length
      for (const i of pIdx) { next[i] += share }
      let delta = 0
      for (let i = 0; i < n; i++) { delta += Math.abs(next[i] - t[i]) }
      const swap = t
      t = next
      next = swap
      if (delta < epsilon) {
        converged = true
        break
      }
    }
    this.last = t
    let total = 0
    for (let i = 0; i < n; i++) { total += t[i] }
    const trust = new Map<string, number>()
    for (let i = 0; i < n; i++) { trust.set(this.ids[i], total > 0 ? t[i] / total : 0) }
    return { trust, iterations, converged }
  }
}

/**
 * Computes the global trust vector (a new `TrustGraph` of `rows`).
 *
 * @example
 * ```ts
 * const { trust } = eigenTrust({ rows: [{ from: 'a', trust: new Map([['b', 1]]) }], pretrusted: ['a'] })
 * ```
 */
export function eigenTrust (input: EigenTrustInput): EigenTrustResult {
  const g = new TrustGraph()
  for (const p of input.pretrusted) { g.idOf(p) }
  for (const row of input.rows) { g.setRow(row) }
  return g.compute(input.pretrusted, input.params, input.previous)
}
