/**
 * The rules of a policy as the engine compiles them: the command families
 * each rule sets, its specificity (docs/policy.md "Precedence"), the label
 * that names it, and the least payment of min-payment rules. Pure functions
 * of a rule; the engine (engine.ts) indexes and decides with them.
 */
import { AmountOverflowError, computeCost, MAX_AMOUNT } from '../protocols/opencloud/api/pricing.js'
import type { MinPayment, Rule } from './schema.js'

/** A rule as the engine holds it */
export interface CompiledRule {
  /** 0-based position in the policy */
  readonly index: number
  readonly rule: Rule
  /** `rule 3 "storage-coins" (policy.yaml:20:5)` */
  readonly label: string
  /** the scope as people read it */
  readonly scope: string
  /** the canonical scope: equal scopes, equal keys (rate-limit buckets are keyed by it) */
  readonly key: string
  /** specificity: a higher rank wins */
  readonly rank: number
  readonly minPayment?: MinPayment
}

/** The six decisions, each made by its own winners */
export const ACCESS = 0
export const MIN_PAYMENT = 1
export const RATE_LIMIT = 2
export const MAX_CONCURRENT = 3
export const DEFER = 4
export const MAX_TAB = 5
export const FAMILIES = 6
export const FAMILY_NAMES = ['access', 'min-payment', 'rate-limit', 'max-concurrent', 'defer', 'max-tab']

export interface Entry extends CompiledRule {
  /** which families this rule sets */
  readonly families: readonly number[]
  readonly bitcoin?: { minBalance: bigint, minAge: number }
  readonly trust?: { min: number, max: number }
}

export interface Bucket {
  /** rules without a specific credential */
  general: Entry[]
  /** rules for one `oc:`/`btc:` credential */
  byCredential: Map<string, Entry[]>
}

/** Specificity as a tuple; compared element by element */
export type Specificity = [number, bigint, number, number, number, number, number]

export function specificity (r: Rule): Specificity {
  const s = r.scope
  // how many of the more general levels each part is above: none 0
  const cred = s.id !== undefined || s.address !== undefined ? 2 : Number(s.bitcoin !== undefined)
  const target = s.method !== undefined ? 2 : Number(s.service !== undefined)
  return [
    cred,
    s.bitcoin?.minBalance ?? 0n,
    s.bitcoin?.minAge ?? 0,
    s.trust !== undefined ? 1 : 0,
    s.trust?.min ?? 0,
    // a narrower band (lower max) is more specific
    -(s.trust?.max ?? Infinity),
    target
  ]
}

export function compare (a: Specificity, b: Specificity): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] < b[i]) { return -1 }
    if (a[i] > b[i]) { return 1 }
  }
  return 0
}

export function familiesOf (r: Rule): number[] {
  const f: number[] = []
  if (r.allow === true || r.deny === true || r.requireCredential !== undefined || r.minBalance !== undefined || r.minAge !== undefined) { f.push(ACCESS) }
  if (r.minPayment !== undefined) { f.push(MIN_PAYMENT) }
  if (r.rateLimit !== undefined) { f.push(RATE_LIMIT) }
  if (r.maxConcurrent !== undefined) { f.push(MAX_CONCURRENT) }
  if (r.defer !== undefined) { f.push(DEFER) }
  if (r.maxTab !== undefined) { f.push(MAX_TAB) }
  return f
}

export function normalizeMinPayment (m: bigint | MinPayment): MinPayment {
  return typeof m === 'bigint' ? { rate: m, per: 1n } : m
}

/** The least payment for `usage` under the stricter of several minimums (sats) */
export function minimumPayment (pricing: readonly MinPayment[], usage: readonly bigint[]): bigint {
  let most = 0n
  for (const p of pricing) {
    let total: bigint
    try {
      total = computeCost(p, usage).total
    } catch (err: any) {
      if (!(err instanceof AmountOverflowError)) { throw err }
      total = MAX_AMOUNT
    }
    if (total > most) { most = total }
  }
  return most
}

export function label (r: Rule, index: number, file?: string): string {
  const name = r.name != null ? ` "${r.name}"` : ''
  const s = r.source
  const where = s != null ? ` (${s.file ?? file ?? 'policy'}:${s.line}:${s.column})` : ''
  return `rule ${index + 1}${name}${where}`
}
