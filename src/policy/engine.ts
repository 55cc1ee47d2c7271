/**
 * Policy evaluation: which rules apply to a call, and what they decide.
 *
 * Precedence (docs/policy.md "Precedence"; every row has a test):
 *
 * 1. Each command is decided on its own: access (allow, deny,
 * require-credential, min-balance, min-age together), min-payment,
 * rate-limit, max-concurrent, defer, max-tab. A rule that sets only
 * max-tab says nothing about access.
 * 2. Among the matching rules that set a command, the most specific scope
 * wins. Scopes compare part by part, the first difference decides:
 * - credential: a specific `id`/`address` > a `bitcoin` class > none;
 * between two classes, the higher min-balance, then the higher min-age;
 * - trust: a band > none; between bands, the higher min, then the lower max;
 * - target: `method` > `service` > global.
 * So a credential rule beats a trust band, which beats a method rule, and
 * a combined scope (credential + service) beats either part alone.
 * 3. Rules of equal specificity that both match: the stricter applies.
 * deny beats allow, and every requirement must be met; the higher
 * min-payment, the lower max-tab and max-concurrent, defer deny over
 * allow; every tied rate limit applies. (Two rules of the very same scope
 * may not set the same valued command: the policy is refused at load.)
 * 4. Nothing matches: access allowed, no min-payment, no rate limit, no
 * concurrency cap, defer denied, max-tab 0.
 *
 * Rules are indexed by target (global, service, method) and by specific
 * credential, so a decision looks only at the rules that can apply.
 */
import { ACCESS, compare, DEFER, familiesOf, FAMILIES, FAMILY_NAMES, label, MAX_CONCURRENT, MAX_TAB, MIN_PAYMENT, minimumPayment, normalizeMinPayment, RATE_LIMIT, specificity } from './rules.js'
import { describeCommands, describeMinPayment, describeRateLimit, describeScope, normalizeAddress, scopeKey, validatePolicy } from './schema.js'
import type { Bucket, CompiledRule, Entry } from './rules.js'
import type { MinPayment, Policy, RateLimit } from './schema.js'
import type { BitcoinCredentialState } from '../protocols/opencloud/api/template.js'

export { minimumPayment }
export type { CompiledRule }

/** Trust of a peer, 0–1; undefined when nothing is known of it */
export type TrustProvider = (peerId: string) => number | undefined

/** What a decision looks at */
export interface PolicyContext {
  /** the calling peer (the connection's remote peer id, without `oc:`) */
  peer: string
  /** credentials whose signatures verified: `oc:…`, `btc:…` */
  credentials?: readonly string[]
  /** the `btc:` credentials with their chain state */
  bitcoin?: readonly BitcoinCredentialState[]
  /** the peer's trust (0–1), when known */
  trust?: number
  service: string
  method: string
  /** how the request pays (shown by `explain`, compared with min-payment there) */
  paymentType?: 'none' | 'attached' | 'defer'
  /** sats offered with the request */
  amount?: bigint
  /** the service's price for this call (shown by `explain`) */
  cost?: bigint
  /** units of service of this call; min-payment is computed from them */
  usage?: readonly bigint[]
}

export type Action = 'allow' | 'deny'

/** Why access was denied: a deny rule, a missing credential, or coins short of a min-balance/min-age */
export type Denial = 'rule' | 'credential' | 'balance'

/** What the policy says about one call */
export interface Decision {
  action: Action
  /** the rule that decided access; undefined when none matched (allowed by default) */
  rule?: CompiledRule
  /** why, for logs and `explain` */
  reason: string
  /** for a deny: what the caller is told, including what would be accepted */
  detail?: string
  /** for a deny: which kind (the wire reason the caller gets) */
  denial?: Denial
  /** rate limits that apply (usually one; several when tied) */
  rateLimits: Array<{ rule: CompiledRule, limit: RateLimit }>
  maxConcurrent?: { rule: CompiledRule, limit: number }
  /** the least payment; `amount` when the context had usage */
  minPayment?: { rules: CompiledRule[], pricing: MinPayment[], amount?: bigint }
  defer: { allowed: boolean, rule?: CompiledRule, reason: string }
  maxTab: { amount: bigint, rule?: CompiledRule }
}

/** What a bitcoin class or trust band asks for, as a phrase */
function needPhrase (e: { bitcoin?: { minBalance: bigint, minAge: number }, trust?: { min: number, max: number } }): string {
  const parts: string[] = []
  if (e.bitcoin != null) { parts.push(`a btc: credential with ≥ ${e.bitcoin.minBalance} sat held ≥ ${e.bitcoin.minAge} blocks`) }
  if (e.trust != null) { parts.push(`trust ≥ ${e.trust.min}`) }
  return parts.join(' and ')
}

function holdings (ctx: PolicyContext): string {
  const b = ctx.bitcoin ?? []
  if (b.length === 0) {
    return (ctx.credentials ?? []).some(c => c.startsWith('btc:')) ? 'your btc: credential was not checked on chain' : 'you presented none'
  }
  return b.slice(0, 3).map(x => `${x.address.startsWith('btc:') ? x.address : 'btc:' + x.address} holds ${x.confirmed} sat for ${x.age} blocks`).join('; ')
}

/**
 * A compiled policy. Immutable: hot reload builds a new engine and swaps it.
 *
 * @example
 * ```ts
 * const engine = new PolicyEngine(parsePolicy(text, { file: 'policy.yaml' }))
 * const d = engine.decide({ peer, credentials: ['oc:' + peer], service: 'storage', method: 'put' })
 * if (d.action === 'deny') console.log(d.detail)
 * console.log(engine.explain(ctx))
 * ```
 */
export class PolicyEngine {
  readonly policy: Policy
  readonly rules: readonly CompiledRule[]
  /** some rule has a trust band: callers should look the trust up */
  readonly usesTrust: boolean
  /** some rule looks at bitcoin balances */
  readonly usesBitcoin: boolean
  /** some rule sets a rate limit with bytes */
  readonly usesBytes: boolean
  private readonly buckets = new Map<string, Bucket>()
  private readonly hasCredentialRules: boolean

  /** @throws {PolicyError} when the policy is invalid */
  constructor (policy: Policy) {
    validatePolicy(policy)
    this.policy = policy
    const specs = policy.rules.map(specificity)
    const order = specs.map((_, i) => i).sort((a, b) => compare(specs[a], specs[b]))
    const ranks = new Array<number>(specs.length)
    let rank = 0
    order.forEach((i, n) => {
      if (n > 0 && compare(specs[order[n - 1]], specs[i]) !== 0) { rank++ }
      ranks[i] = rank
    })
    const entries: Entry[] = policy.rules.map((rule, index) => {
      const s = rule.scope
      return {
        index,
        rule,
        label: label(rule, index, policy.file),
        scope: describeScope(s),
        key: scopeKey(s),
        rank: ranks[index],
        minPayment: rule.minPayment !== undefined ? normalizeMinPayment(rule.minPayment) : undefined,
        families: familiesOf(rule),
        bitcoin: s.bitcoin !== undefined ? { minBalance: s.bitcoin.minBalance, minAge: s.bitcoin.minAge ?? 0 } : undefined,
        trust: s.trust !== undefined ? { min: s.trust.min, max: s.trust.max ?? Infinity } : undefined
      }
    })
    for (const e of entries) {
      const s = e.rule.scope
      const target = s.method ?? s.service ?? ''
      let bucket = this.buckets.get(target)
      if (bucket == null) {
        bucket = { general: [], byCredential: new Map() }
        this.buckets.set(target, bucket)
      }
      const cred = s.id ?? (s.address !== undefined ? normalizeAddress(s.address) : undefined)
      if (cred == null) {
        bucket.general.push(e)
      } else {
        const list = bucket.byCredential.get(cred)
        if (list == null) { bucket.byCredential.set(cred, [e]) } else { list.push(e) }
      }
    }
    this.rules = entries
    this.hasCredentialRules = entries.some(e => e.rule.scope.id !== undefined || e.rule.scope.address !== undefined)
    this.usesTrust = entries.some(e => e.trust != null)
    this.usesBitcoin = entries.some(e => e.bitcoin != null || e.rule.minBalance !== undefined || e.rule.minAge !== undefined)
    this.usesBytes = entries.some(e => e.rule.rateLimit?.bytes !== undefined)
  }

  /** Number of rules */
  get size (): number {
    return this.rules.length
  }

  /** The credentials a context matches specific-credential rules with */
  private credentialKeys (ctx: PolicyContext): string[] {
    const keys = ['oc:' + ctx.peer]
    for (const c of ctx.credentials ?? []) {
      const k = c.startsWith('btc:') ? normalizeAddress(c) : c
      if (!keys.includes(k)) { keys.push(k) }
    }
    return keys
  }

  /** The rule lists that can apply to a call: its three targets, each general and per credential */
  private lists (ctx: PolicyContext): Entry[][] {
    const out: Entry[][] = []
    const creds = this.hasCredentialRules ? this.credentialKeys(ctx) : undefined
    for (const target of ['', ctx.service, `${ctx.service}.${ctx.method}`]) {
      const b = this.buckets.get(target)
      if (b == null) { continue }
      if (b.general.length > 0) { out.push(b.general) }
      if (creds != null && b.byCredential.size > 0) {
        for (const c of creds) {
          const l = b.byCredential.get(c)
          if (l != null) { out.push(l) }
        }
      }
    }
    return out
  }

  /** The scope's class parts (bitcoin, trust) match; target and credential are matched by the index */
  private matches (e: Entry, ctx: PolicyContext): boolean {
    if (e.bitcoin != null) {
      const { minBalance, minAge } = e.bitcoin
      if (!(ctx.bitcoin ?? []).some(b => b.confirmed >= minBalance && b.age >= minAge)) { return false }
    }
    if (e.trust != null) {
      const t = ctx.trust
      if (t == null || !(t >= e.trust.min && t < e.trust.max)) { return false }
    }
    return true
  }

  /** The winners of each family (ties kept), and every matching rule when `all` is given */
  private winners (ctx: PolicyContext, all?: Entry[]): Array<Entry[] | undefined> {
    const best = new Array<Entry[] | undefined>(FAMILIES)
    for (const list of this.lists(ctx)) {
      for (const e of list) {
        if (!this.matches(e, ctx)) { continue }
        all?.push(e)
        for (const f of e.families) {
          const cur = best[f]
          if (cur == null || e.rank > cur[0].rank) {
            best[f] = [e]
          } else if (e.rank === cur[0].rank) {
            cur.push(e)
          }
        }
      }
    }
    // ties in file order, so the first-written rule is named first
    for (const w of best) { if (w != null && w.length > 1) { w.sort((a, b) => a.index - b.index) } }
    return best
  }

  /** Why a requirement of a rule is not met, or undefined */
  private unmet (e: Entry, ctx: PolicyContext): { denial: Denial, text: string } | undefined {
    const r = e.rule
    const what = `${ctx.service}.${ctx.method}`
    const creds = ctx.credentials ?? []
    if (r.requireCredential !== undefined) {
      const kind = r.requireCredential
      const ok = kind === 'any' ? creds.length > 0 : creds.some(c => c.startsWith(kind + ':'))
      if (!ok) { return { denial: 'credential', text: `${what} needs a signed ${kind === 'any' ? 'oc: or btc:' : kind + ':'} credential` } }
    }
    if (r.minBalance !== undefined || r.minAge !== undefined) {
      const minBalance = r.minBalance ?? 0n
      const minAge = r.minAge ?? 0
      if (!(ctx.bitcoin ?? []).some(b => b.confirmed >= minBalance && b.age >= minAge)) {
        return { denial: 'balance', text: `${what} needs a btc: credential with ≥ ${minBalance} sat held ≥ ${minAge} blocks (${holdings(ctx)})` }
      }
    }
    return undefined
  }

  /**
   * Rules that would grant what `permits` tests, outranking `rank`, that the
   * caller misses only for want of coins or trust: what to tell a refused
   * caller it could do.
   */
  private couldQualify (ctx: PolicyContext, family: number, rank: number, permits: (e: Entry) => boolean): Entry[] {
    const found: Entry[] = []
    for (const target of ['', ctx.service, `${ctx.service}.${ctx.method}`]) {
      for (const e of this.buckets.get(target)?.general ?? []) {
        if (e.rank <= rank || (e.bitcoin == null && e.trust == null) || !e.families.includes(family) || !permits(e)) { continue }
        if (!this.matches(e, ctx)) { found.push(e) }
      }
    }
    // the cheapest way in first
    found.sort((a, b) => {
      const x = a.bitcoin?.minBalance ?? 0n
      const y = b.bitcoin?.minBalance ?? 0n
      if (x !== y) { return x < y ? -1 : 1 }
      return (a.trust?.min ?? 0) - (b.trust?.min ?? 0)
    })
    return found
  }

  private static hint (options: Entry[], suffix: (e: Entry) => string = () => ''): string {
    const phrases = [...new Set(options.map(e => needPhrase(e) + suffix(e)))].slice(0, 3)
    return phrases.join(', or ')
  }

  /**
   * Decides a call. Pure: consumes no rate-limit tokens (the pipeline stage
   * does that with the rate limits of the decision).
   */
  decide (ctx: PolicyContext): Decision {
    const best = this.winners(ctx)
    const what = `${ctx.service}.${ctx.method}`

    // access
    let action: Action = 'allow'
    let rule: Entry | undefined
    let reason = ''
    let detail: string | undefined
    let denial: Denial | undefined
    const access = best[ACCESS]
    if (access == null) {
      reason = 'no access rule matches: allowed by default'
    } else {
      const deny = access.find(e => e.rule.deny === true)
      if (deny != null) {
        action = 'deny'
        denial = 'rule'
        rule = deny
        const tie = access.length > 1 && access.some(e => e.rule.allow === true) ? ' (deny beats allow at the same specificity)' : ''
        reason = `denied by ${deny.label}, scope ${deny.scope}${tie}`
        const options = deny.bitcoin == null && deny.trust == null && deny.rule.scope.id === undefined && deny.rule.scope.address === undefined
          ? this.couldQualify(ctx, ACCESS, deny.rank, e => e.rule.deny !== true)
          : []
        detail = options.length > 0
          ? `${what} needs ${PolicyEngine.hint(options)}`
          : `access to ${what} is denied by this node's policy${deny.rule.name != null ? ` (${deny.rule.name})` : ''}`
      } else {
        for (const e of access) {
          const problem = this.unmet(e, ctx)
          if (problem != null) {
            action = 'deny'
            denial = problem.denial
            rule = e
            reason = `requirement of ${e.label} not met: ${problem.text}`
            detail = problem.text
            break
          }
        }
        if (action === 'allow') {
          rule = access.find(e => e.rule.allow === true) ?? access[0]
          reason = `allowed by ${rule.label}, scope ${rule.scope}`
        }
      }
    }

    const decision: Decision = {
      action,
      rule,
      reason,
      detail,
      denial,
      rateLimits: (best[RATE_LIMIT] ?? []).map(e => ({ rule: e, limit: e.rule.rateLimit as RateLimit })),
      defer: { allowed: false, reason: 'no defer rule matches: deferred payment is not accepted' },
      maxTab: { amount: 0n }
    }

    const mc = best[MAX_CONCURRENT]
    if (mc != null) {
      const e = mc.reduce((a, b) => (b.rule.maxConcurrent as number) < (a.rule.maxConcurrent as number) ? b : a)
      decision.maxConcurrent = { rule: e, limit: e.rule.maxConcurrent as number }
    }

    const mp = best[MIN_PAYMENT]
    if (mp != null) {
      const pricing = mp.map(e => e.minPayment as MinPayment)
      decision.minPayment = { rules: mp, pricing, amount: ctx.usage != null ? minimumPayment(pricing, ctx.usage) : undefined }
    }

    const tab = best[MAX_TAB]
    if (tab != null) {
      const e = tab.reduce((a, b) => (b.rule.maxTab as bigint) < (a.rule.maxTab as bigint) ? b : a)
      decision.maxTab = { amount: e.rule.maxTab as bigint, rule: e }
    }

    const defer = best[DEFER]
    if (defer != null) {
      const no = defer.find(e => e.rule.defer === 'deny')
      if (no != null) {
        const options = this.couldQualify(ctx, DEFER, no.rank, e => e.rule.defer === 'allow')
        const offer = options.length > 0
          ? `; present ${PolicyEngine.hint(options, e => e.rule.maxTab !== undefined ? ` (tab up to ${e.rule.maxTab} sat)` : '')} to pay later`
          : ''
        decision.defer = { allowed: false, rule: no, reason: `deferred payment for ${what} is not accepted: pay attached${offer}` }
      } else {
        decision.defer = { allowed: true, rule: defer[0], reason: `deferred payment allowed by ${defer[0].label}` }
      }
    }
    return decision
  }

  /**
   * The chain of rules that match a call, most specific first, which command
   * each one decides or loses, and the outcome: a human-readable text.
   */
  explain (ctx: PolicyContext): string {
    const matching: Entry[] = []
    const best = this.winners(ctx, matching)
    const d = this.decide(ctx)
    const lines: string[] = []
    const creds = ctx.credentials ?? []
    const peer = creds.includes(`oc:${ctx.peer}`) ? '' : ` (connection peer ${ctx.peer})`
    lines.push(`${creds.length > 0 ? creds.join(', ') : 'no credentials'}${peer} calling ${ctx.service}.${ctx.method}`)
    const facts: string[] = []
    for (const b of ctx.bitcoin ?? []) { facts.push(`${b.address.startsWith('btc:') ? b.address : 'btc:' + b.address}: ${b.confirmed} sat held ${b.age} blocks`) }
    facts.push(ctx.trust != null ? `trust ${ctx.trust}` : 'trust unknown')
    if (ctx.paymentType != null) { facts.push(`pays ${ctx.paymentType}${ctx.paymentType !== 'none' && ctx.amount != null ? ` ${ctx.amount} sat` : ''}`) }
    if (ctx.cost != null) { facts.push(`price ${ctx.cost} sat`) }
    lines.push(`  ${facts.join('; ')}`)
    lines.push(`policy: ${this.policy.file ?? 'typed rules'}, ${this.size} rule${this.size === 1 ? '' : 's'}`)
    lines.push('')
    if (matching.length === 0) {
      lines.push('no rule matches this call')
    } else {
      lines.push('matching rules, most specific first:')
      matching.sort((a, b) => b.rank - a.rank || a.index - b.index)
      for (const e of matching) {
        lines.push(`  ${e.label}: scope ${e.scope}: ${describeCommands(e.rule)}`)
        for (const f of e.families) {
          const w = best[f] ?? []
          const name = FAMILY_NAMES[f]
          if (w[0] !== undefined && w[0].rank > e.rank) {
            lines.push(`    ${name}: overridden by ${w[0].label} (more specific)`)
          } else if (w.length > 1) {
            lines.push(`    ${name}: ties with ${w.filter(x => x !== e).map(x => x.label).join(', ')}: the stricter applies`)
          } else {
            lines.push(`    ${name}: decides`)
          }
        }
      }
    }
    lines.push('')
    lines.push(`access: ${d.action.toUpperCase()}: ${d.reason}`)
    if (d.detail != null) { lines.push(`  the caller is told: ${d.detail}`) }
    lines.push(`rate-limit: ${d.rateLimits.length === 0 ? 'none' : d.rateLimits.map(r => `${describeRateLimit(r.limit)} per peer (${r.rule.label})`).join('; ')}`)
    lines.push(`max-concurrent: ${d.maxConcurrent == null ? 'none' : `${d.maxConcurrent.limit} (${d.maxConcurrent.rule.label})`}`)
    if (d.minPayment == null) {
      lines.push('min-payment: none')
    } else {
      const min = d.minPayment.amount
      const offered = ctx.paymentType === 'none' ? 0n : ctx.amount
      let verdict = ''
      if (min != null && offered != null) { verdict = `; the offer of ${offered} sat is ${offered >= min ? 'enough' : 'too low'}` }
      const amount = min != null ? ` = ${min} sat for this call${verdict}` : ''
      lines.push(`min-payment: ${d.minPayment.pricing.map(describeMinPayment).join(' / ')}${amount} (${d.minPayment.rules.map(r => r.label).join(', ')})`)
    }
    lines.push(`defer: ${d.defer.allowed ? 'allowed' : 'denied'}: ${d.defer.reason}`)
    lines.push(`max-tab: ${d.maxTab.amount} sat${d.maxTab.rule != null ? ` (${d.maxTab.rule.label})` : ' (no max-tab rule matches)'}`)
    return lines.join('\n') + '\n'
  }
}
