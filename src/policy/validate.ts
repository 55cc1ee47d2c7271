/**
 * Whole-rule and whole-policy checks of a typed policy (the file parser
 * checks each field as it reads it, then calls `validatePolicy` too).
 */
import { scopeKey, describeScope } from './describe.js'
import { PolicyError } from './error.js'
import { checkAddress, checkBlocks, checkConcurrent, checkCredentialKind, checkDefer, checkFlag, checkId, checkMethod, checkName, checkRate, checkSats, checkService, checkTrust, show } from './fields.js'
import { COMMAND_FIELDS, COMMAND_NAMES, COMMANDS, MAX_RULES, POLICY_VERSION, SCOPE_KEYS } from './types.js'
import type { BitcoinClass, Policy, Rule, Scope, TrustBand } from './types.js'

/**
 * Where a problem is: the parser maps (rule, field) to a line and column;
 * for typed rules it is `rule #n`.
 */
export type Locator = (rule: number, field?: string) => { file?: string, line?: number, column?: number }

function typedLocator (policy: Policy): Locator {
  return (i) => {
    const s = policy.rules[i]?.source
    return s != null ? { file: s.file ?? policy.file, line: s.line, column: s.column } : { file: `${policy.file ?? 'policy'} rule #${i + 1}` }
  }
}

/** Throws PolicyError for a malformed typed scope */
function checkScope (scope: unknown, fail: (msg: string, field?: string) => never): void {
  if (scope == null || typeof scope !== 'object' || Array.isArray(scope)) { fail('scope must be a map (use {} for global)', 'scope') }
  const s = scope as Record<string, unknown>
  for (const k of Object.keys(s)) {
    if (!(SCOPE_KEYS as readonly string[]).includes(k)) { fail(`unknown scope key ${show(k)}`, 'scope') }
  }
  const problem = (s.service !== undefined ? checkService(s.service) : undefined) ??
    (s.method !== undefined ? checkMethod(s.method) : undefined) ??
    (s.id !== undefined ? checkId(s.id) : undefined) ??
    (s.address !== undefined ? checkAddress(s.address) : undefined)
  if (problem != null) { fail(problem, 'scope') }
  if (s.bitcoin !== undefined) {
    const b = s.bitcoin as BitcoinClass
    if (b == null || typeof b !== 'object') { fail('scope bitcoin must be { minBalance, minAge }', 'scope') }
    const p = checkSats('bitcoin min-balance', b.minBalance) ?? (b.minAge !== undefined ? checkBlocks('bitcoin min-age', b.minAge) : undefined)
    if (p != null) { fail(p, 'scope') }
  }
  if (s.trust !== undefined) {
    const t = s.trust as TrustBand
    if (t == null || typeof t !== 'object') { fail('scope trust must be { min, max? }', 'scope') }
    const p = checkTrust('trust min', t.min) ?? (t.max !== undefined ? checkTrust('trust max', t.max) : undefined)
    if (p != null) { fail(p, 'scope') }
    if (t.max !== undefined && t.max <= t.min) { fail('trust max must be above trust min', 'scope') }
  }
  checkScopeCombination(s as Scope, fail)
}

/** The combinations a scope may not have; shared with the parser */
export function checkScopeCombination (s: Scope, fail: (msg: string, field?: string) => never): void {
  if (s.service !== undefined && s.method !== undefined) {
    fail(`a scope names either a service or a method, not both (method ${s.method} already names service ${s.method.split('.')[0]})`, 'scope')
  }
  const creds = (['id', 'address', 'bitcoin'] as const).filter(k => s[k] !== undefined)
  if (creds.length > 1) { fail(`a scope has at most one of id, address and bitcoin (found ${creds.join(' and ')})`, 'scope') }
}

/** Throws PolicyError for malformed typed commands */
function checkCommands (r: Rule, fail: (msg: string, field?: string) => never): void {
  const anyR = r as unknown as Record<string, unknown>
  for (const k of Object.keys(anyR)) {
    if (k === 'scope' || k === 'name' || k === 'source') { continue }
    if (!(COMMAND_FIELDS as string[]).includes(k)) { fail(`unknown command ${show(k)}`, k) }
  }
  const set = COMMAND_FIELDS.filter(f => anyR[f] !== undefined)
  if (set.length === 0) { fail(`a rule needs at least one command (${Object.keys(COMMANDS).join(', ')})`) }
  const first = (...problems: Array<[string, string | undefined]>): void => {
    for (const [field, p] of problems) { if (p != null) { fail(p, field) } }
  }
  first(
    ['name', r.name !== undefined ? checkName(r.name) : undefined],
    ['allow', r.allow !== undefined ? checkFlag('allow', r.allow) : undefined],
    ['deny', r.deny !== undefined ? checkFlag('deny', r.deny) : undefined],
    ['maxTab', r.maxTab !== undefined ? checkSats('max-tab', r.maxTab) : undefined],
    ['defer', r.defer !== undefined ? checkDefer(r.defer) : undefined],
    ['minBalance', r.minBalance !== undefined ? checkSats('min-balance', r.minBalance) : undefined],
    ['minAge', r.minAge !== undefined ? checkBlocks('min-age', r.minAge) : undefined],
    ['requireCredential', r.requireCredential !== undefined ? checkCredentialKind(r.requireCredential) : undefined],
    ['maxConcurrent', r.maxConcurrent !== undefined ? checkConcurrent(r.maxConcurrent) : undefined]
  )
  if (r.minPayment !== undefined) {
    const m = r.minPayment
    if (typeof m === 'bigint') {
      first(['minPayment', checkSats('min-payment', m)])
    } else if (m != null && typeof m === 'object') {
      first(
        ['minPayment', m.base !== undefined ? checkSats('min-payment base', m.base) : undefined],
        ['minPayment', m.rate !== undefined ? checkSats('min-payment rate', m.rate) : undefined],
        ['minPayment', m.per !== undefined ? checkSats('min-payment per', m.per) : undefined]
      )
      if (m.per !== undefined && m.per === 0n) { fail('min-payment per must be at least 1', 'minPayment') }
      if (m.base === undefined && m.rate === undefined) { fail('min-payment needs base or rate', 'minPayment') }
    } else {
      fail('min-payment must be sats per unit or { base, rate, per }', 'minPayment')
    }
  }
  if (r.rateLimit !== undefined) {
    const l = r.rateLimit
    if (l == null || typeof l !== 'object') { fail('rate-limit must be a map { requests, bytes, request-burst, byte-burst }', 'rateLimit') }
    first(
      ['rateLimit', l.requests !== undefined ? checkRate('rate-limit requests', l.requests, false) : undefined],
      ['rateLimit', l.bytes !== undefined ? checkRate('rate-limit bytes', l.bytes, true) : undefined],
      ['rateLimit', l.requestBurst !== undefined ? checkRate('rate-limit request-burst', l.requestBurst, true) : undefined],
      ['rateLimit', l.byteBurst !== undefined ? checkRate('rate-limit byte-burst', l.byteBurst, true) : undefined]
    )
    if (l.requests === undefined && l.bytes === undefined) { fail('rate-limit needs requests or bytes (per second)', 'rateLimit') }
    if (l.requestBurst !== undefined && l.requests === undefined) { fail('rate-limit request-burst needs requests', 'rateLimit') }
    if (l.byteBurst !== undefined && l.bytes === undefined) { fail('rate-limit byte-burst needs bytes', 'rateLimit') }
  }
  if (r.allow === true && r.deny === true) { fail('a rule cannot both allow and deny', 'deny') }
  if (r.deny === true) {
    const req = (['requireCredential', 'minBalance', 'minAge'] as const).find(f => r[f] !== undefined)
    if (req != null) { fail(`deny with ${COMMAND_NAMES[req]} says nothing: deny refuses whatever the credential`, req) }
  }
}

/**
 * Checks a whole policy: each rule's values, and that no two rules of the
 * same scope set the same command to two values (a later rule never
 * silently overrides an earlier one; `allow` and `deny` may meet in one
 * scope: deny wins). Throws PolicyError naming the rule (line and column
 * when the rule came from a file).
 */
export function validatePolicy (policy: Policy, locate: Locator = typedLocator(policy)): void {
  if (policy == null || typeof policy !== 'object') { throw new PolicyError('a policy is { version: 1, rules: [...] }') }
  if (policy.version !== POLICY_VERSION) { throw new PolicyError(`policy version must be ${POLICY_VERSION}, not ${show(policy.version)}`, { file: policy.file }) }
  if (!Array.isArray(policy.rules)) { throw new PolicyError('rules must be a list', { file: policy.file }) }
  if (policy.rules.length > MAX_RULES) { throw new PolicyError(`at most ${MAX_RULES} rules`, { file: policy.file }) }
  const seen = new Map<string, number>()
  policy.rules.forEach((r, i) => {
    const fail = (msg: string, field?: string): never => { throw new PolicyError(msg, locate(i, field)) }
    if (r == null || typeof r !== 'object') { fail('a rule must be a map with a scope and commands') }
    checkScope(r.scope, fail)
    checkCommands(r, fail)
    const key = scopeKey(r.scope)
    for (const f of COMMAND_FIELDS) {
      if (r[f] === undefined) { continue }
      // allow and deny are flags: repeating one says nothing new, and deny beats allow in one scope
      if (f === 'allow' || f === 'deny') { continue }
      const k = `${key}\u0000${f}`
      const before = seen.get(k)
      if (before !== undefined) {
        const where = locate(before, f)
        const at = where.line != null ? `line ${where.line}` : `rule #${before + 1}`
        fail(`${COMMAND_NAMES[f]} for scope ${describeScope(r.scope)} is already set at ${at}; merge the two rules`, f)
      }
      seen.set(k, i)
    }
  })
}
