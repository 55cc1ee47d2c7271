/**
 * Opinions of others, weighed (spec "Reputation": "if a node consistently
 * gives opinions in line with your own experience, you trust that node's
 * opinions"). Pure functions:
 *
 * `opinionTrust`: how well a reporter's claims match our own first-hand
 * trust of the same peers, shrunk toward a neutral prior while the
 * overlap is small.
 *
 * `combinedTrust`: the 0–1 trust the policy's bands and seller choice
 * use: first-hand facts, plus each report as a few pseudo-facts weighted
 * by its reporter's standing (global trust × opinion trust). A report is
 * a claim, never evidence (docs/reputation.md "What evidence proves"), so
 * it moves trust by at most `hearsayMass` facts per reporter.
 */
import { InvalidParametersError } from '@libp2p/interface'
import { betaTrust, DEFAULT_SCORE_PARAMS } from './score.js'
import type { BetaState, ScoreParams } from './score.js'

export interface OpinionParams {
  /** opinion trust of a reporter we cannot yet compare with our experience, 0–1 @default 0.5 */
  neutral: number
  /** pseudo-count of the neutral prior: overlap needed before agreement dominates @default 2 */
  shrink: number
  /** first-hand facts our own trust needs before it is a yardstick @default 1 */
  minFacts: number
  /** facts one fully trusted reporter's claim is worth @default 2 */
  hearsayMass: number
}

export const DEFAULT_OPINION: Readonly<OpinionParams> = Object.freeze({ neutral: 0.5, shrink: 2, minFacts: 1, hearsayMass: 2 })

export function validateOpinionParams (p: Partial<OpinionParams> = {}): OpinionParams {
  const out = { ...DEFAULT_OPINION, ...p }
  if (!(out.neutral >= 0 && out.neutral <= 1)) { throw new InvalidParametersError(`opinion neutral must be in [0, 1], not ${out.neutral}`) }
  if (!(out.shrink >= 0) || !Number.isFinite(out.shrink)) { throw new InvalidParametersError(`opinion shrink must be ≥ 0, not ${out.shrink}`) }
  if (!(out.minFacts >= 0) || !Number.isFinite(out.minFacts)) { throw new InvalidParametersError(`opinion minFacts must be ≥ 0, not ${out.minFacts}`) }
  if (!(out.hearsayMass >= 0) || !Number.isFinite(out.hearsayMass)) { throw new InvalidParametersError(`opinion hearsayMass must be ≥ 0, not ${out.hearsayMass}`) }
  return out
}

/**
 * A reporter's opinion trust, 0–1: the mean agreement 1 − |claim − ours|
 * over the peers both judged (ours counted only with `minFacts` facts),
 * each agreement squared so that a liar (agreement near 0) falls faster
 * than an honest reporter with a slightly different view; shrunk toward
 * `neutral` by `shrink` pseudo-comparisons.
 */
export function opinionTrust (claims: ReadonlyMap<string, number>, ours: ReadonlyMap<string, BetaState>, params: OpinionParams = DEFAULT_OPINION, score: ScoreParams = DEFAULT_SCORE_PARAMS): { trust: number, compared: number } {
  let sum = 0
  let compared = 0
  for (const [peer, claim] of claims) {
    const own = ours.get(peer)
    if (own == null || own.facts < params.minFacts) { continue }
    const agreement = 1 - Math.abs(claim - betaTrust(own, score))
    sum += agreement * agreement
    compared++
  }
  return { trust: (params.neutral * params.shrink + sum) / (params.shrink + compared), compared }
}

/** One reporter's claim about a peer and the reporter's standing (0–1) */
export interface WeighedClaim {
  reporter: string
  /** the claimed trust, 0–1 */
  value: number
  /** global standing × opinion trust of the reporter, 0–1 */
  weight: number
}

/**
 * The trust of a peer from first-hand facts and weighed claims: each claim
 * adds `weight × hearsayMass` pseudo-facts of value `value` to the beta
 * state. Undefined when there is neither a fact nor a claim with weight.
 */
export function combinedTrust (own: BetaState | undefined, claims: readonly WeighedClaim[], params: OpinionParams = DEFAULT_OPINION, score: ScoreParams = DEFAULT_SCORE_PARAMS): number | undefined {
  let alpha = own?.alpha ?? 0
  let beta = own?.beta ?? 0
  let any = own != null && own.facts > 0
  for (const c of claims) {
    if (!(c.weight > 0)) { continue }
    const m = Math.min(1, c.weight) * params.hearsayMass
    const v = Math.min(1, Math.max(0, c.value))
    alpha += m * v
    beta += m * (1 - v)
    any = true
  }
  return any ? betaTrust({ alpha, beta }, score) : undefined
}
