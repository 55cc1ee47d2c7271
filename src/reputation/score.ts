/**
 * Local trust: what this node thinks of a peer from its own first-hand
 * facts, as a beta score with decay (the scheme of Storj's node
 * reputation): each fact of value v ∈ [−1, 1] and weight w updates
 *
 * `α ← λ·α + w·(1 + v)/2` and `β ← λ·β + w·(1 − v)/2`,
 * and the trust is α / (α + β + prior). `prior` is a pseudo-count of
 * doubt: a peer with no facts has trust 0 (a fresh identity earns
 * nothing by existing), one good fact is not yet full trust, and a broken
 * promise (weighted more than a kept one) pulls trust down at once.
 *
 * Pure functions only: the store that keeps the state per peer is
 * `records.ts`.
 */
import { InvalidParametersError } from '@libp2p/interface'

export interface ScoreParams {
  /** decay per fact, 0 < λ ≤ 1: older facts count λ^n as much @default 0.95 */
  lambda: number
  /** pseudo-count of doubt added to the denominator, ≥ 0 @default 2 */
  prior: number
}

export const DEFAULT_SCORE_PARAMS: Readonly<ScoreParams> = Object.freeze({ lambda: 0.95, prior: 2 })

/** Weights of the facts this node records today (a broken promise weighs five kept ones) */
export const FACT_WEIGHTS = Object.freeze({
  /** a deferred promise paid in full */
  promiseKept: 1,
  /** a deferred promise unpaid past its due time and grace */
  promiseBroken: 5,
  /** a call answered as promised */
  callServed: 0.2,
  /** a call that failed or went unanswered */
  callFailed: 1
})

/** The beta state of one peer */
export interface BetaState {
  alpha: number
  beta: number
  /** facts folded in */
  facts: number
  /** of those, facts with v < 0 */
  bad: number
}

export const EMPTY_STATE: Readonly<BetaState> = Object.freeze({ alpha: 0, beta: 0, facts: 0, bad: 0 })

/** Throws InvalidParametersError unless the parameters are usable */
export function validateScoreParams (p: Partial<ScoreParams> = {}): ScoreParams {
  const out = { ...DEFAULT_SCORE_PARAMS, ...p }
  if (!Number.isFinite(out.lambda) || out.lambda <= 0 || out.lambda > 1) { throw new InvalidParametersError(`reputation lambda must be in (0, 1], not ${out.lambda}`) }
  if (!Number.isFinite(out.prior) || out.prior < 0) { throw new InvalidParametersError(`reputation prior must be a number ≥ 0, not ${out.prior}`) }
  return out
}

/** Throws InvalidParametersError unless `value` is in [−1, 1] and `weight` is finite and > 0 */
export function checkFact (value: number, weight: number): void {
  if (!Number.isFinite(value) || value < -1 || value > 1) { throw new InvalidParametersError(`a fact's value must be in [-1, 1], not ${value}`) }
  if (!Number.isFinite(weight) || weight <= 0 || weight > 1000) { throw new InvalidParametersError(`a fact's weight must be in (0, 1000], not ${weight}`) }
}

/** The state after one more fact (a new object) */
export function foldFact (s: Readonly<BetaState>, value: number, weight: number, params: ScoreParams = DEFAULT_SCORE_PARAMS): BetaState {
  checkFact(value, weight)
  return {
    alpha: params.lambda * s.alpha + weight * (1 + value) / 2,
    beta: params.lambda * s.beta + weight * (1 - value) / 2,
    facts: s.facts + 1,
    bad: s.bad + (value < 0 ? 1 : 0)
  }
}

/** Trust 0–1 of a beta state: α / (α + β + prior); 0 without facts */
export function betaTrust (s: Readonly<Pick<BetaState, 'alpha' | 'beta'>>, params: ScoreParams = DEFAULT_SCORE_PARAMS): number {
  const d = s.alpha + s.beta + params.prior
  return d > 0 ? s.alpha / d : 0
}
