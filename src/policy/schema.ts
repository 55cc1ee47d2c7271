/**
 * The policy schema: who may call what, at what price, how often, on what
 * tab (spec "Policies"; docs/policy.md).
 *
 * A policy is an ordered list of rules. Each rule has a **scope** (which
 * calls it applies to) and one or more **commands** (what it says about
 * them). This file holds the typed form, used by embedders and produced by
 * the file parser (`parse.ts`), and the checks both share: every value's
 * range, and the rules' consistency (e.g. two rules of the same scope may not
 * both set `max-tab`).
 *
 * @example
 * ```ts
 * const policy: Policy = {
 *   version: 1,
 *   rules: [
 *     { scope: {}, rateLimit: { requests: 200, bytes: 32 * 1024 * 1024 } },
 *     { scope: { service: 'storage' }, defer: 'deny' },
 *     { scope: { service: 'storage', bitcoin: { minBalance: 100_000n, minAge: 6 } }, defer: 'allow', maxTab: 50_000n }
 *   ]
 * }
 * const engine = new PolicyEngine(policy)
 * ```
 */
import { NAME, NAME_PATTERN } from '../util/names.js'

/** The only schema version so far */
export const POLICY_VERSION = 1

/** Largest amount a policy may name (the wire's `uint64`) */
export const MAX_SATS = 2n ** 64n - 1n
/** Largest block count (`min-age`) a policy may name */
export const MAX_BLOCKS = 100_000_000
/** Largest requests/s or bytes/s a rate limit may name */
export const MAX_RATE = 1e15
/** Largest `max-concurrent` */
export const MAX_CONCURRENT = 1_000_000
/** Rules per policy */
export const MAX_RULES = 100_000

/** The credential kinds `require-credential` can ask for: `any` is either */
export type CredentialKind = 'oc' | 'btc' | 'any'

/**
 * A credential class: callers that present a `btc:` credential whose
 * address holds at least `minBalance` confirmed sats, held for at least
 * `minAge` blocks.
 */
export interface BitcoinClass {
  /** sats */
  minBalance: bigint
  /**
   * blocks
   *
   * @default 0
   */
  minAge?: number
}

/**
 * A reputation band: callers whose trust (from the trust provider, 0–1) is
 * `min` ≤ trust, and trust < `max` when `max` is given.
 */
export interface TrustBand {
  min: number
  max?: number
}

/**
 * Which calls a rule applies to. Every field narrows it; the empty scope
 * `{}` is global. `service` and `method` exclude each other (a method names
 * its service); `id`, `address` and `bitcoin` exclude each other (one
 * credential part per scope).
 */
export interface Scope {
  /** a service name, e.g. `storage` */
  service?: string
  /** `service.method`, e.g. `storage.put` */
  method?: string
  /** a specific OpenCloud ID, `oc:<peer id>` */
  id?: string
  /** a specific bitcoin address credential, `btc:<address>` */
  address?: string
  /** any caller with a bitcoin credential of this class */
  bitcoin?: BitcoinClass
  /** any caller whose trust is in this band */
  trust?: TrustBand
}

/**
 * Token buckets per peer: `requests` per second and `bytes` per second
 * (request body, or the bytes a read asks for, whichever is larger). A
 * bucket holds at most its burst; a full bucket lets a burst through at once.
 */
export interface RateLimit {
  /** requests per second (may be fractional: 0.5 = one every 2 s) */
  requests?: number
  /** bytes per second */
  bytes?: number
  /**
   * @default max(1, requests)
   */
  requestBurst?: number
  /**
   * @default bytes
   */
  byteBurst?: number
}

/**
 * The least payment accepted for a call, from its units of service like a
 * price: `base + ceil(rate × Πunits / per)` sats. A method without units
 * counts one unit per call.
 */
export interface MinPayment {
  /**
   * sats per call
   *
   * @default 0n
   */
  base?: bigint
  /**
   * sats per `per` units
   *
   * @default 0n
   */
  rate?: bigint
  /**
   * @default 1n
   */
  per?: bigint
}

/** Where a rule was written (set by the file parser) */
export interface RuleSource {
  file?: string
  /** 1-based */
  line: number
  /** 1-based */
  column: number
}

/**
 * One rule: a scope and its commands. At least one command.
 *
 * Access commands (`allow`, `deny`, `requireCredential`, `minBalance`,
 * `minAge`) decide together: a rule with only requirements is an allow on
 * condition. Every other command is decided on its own (docs/policy.md
 * "Precedence").
 */
export interface Rule {
  /** shown by `explain` and in refusals */
  name?: string
  scope: Scope
  allow?: boolean
  deny?: boolean
  /** the least payment for a call; a bigint is `rate` per unit */
  minPayment?: bigint | MinPayment
  rateLimit?: RateLimit
  /** largest deferred-payment tab (sats) */
  maxTab?: bigint
  /** may calls be paid later, on a tab */
  defer?: 'allow' | 'deny'
  /** the caller must present a `btc:` credential holding at least this (sats) */
  minBalance?: bigint
  /** … held for at least this many blocks */
  minAge?: number
  /** the caller must present a credential of this kind */
  requireCredential?: CredentialKind
  /** calls of one peer in progress at once */
  maxConcurrent?: number
  source?: RuleSource
}

export interface Policy {
  version: typeof POLICY_VERSION
  rules: Rule[]
  /** the file it was read from, for messages */
  file?: string
}

/** The commands, by their name in files */
export const COMMANDS = {
  allow: 'allow',
  deny: 'deny',
  'min-payment': 'minPayment',
  'rate-limit': 'rateLimit',
  'max-tab': 'maxTab',
  defer: 'defer',
  'min-balance': 'minBalance',
  'min-age': 'minAge',
  'require-credential': 'requireCredential',
  'max-concurrent': 'maxConcurrent'
} as const satisfies Record<string, keyof Rule>

export type CommandName = keyof typeof COMMANDS
export type CommandField = typeof COMMANDS[CommandName]

/** Command fields in the order they are written */
export const COMMAND_FIELDS = Object.values(COMMANDS) as CommandField[]

/** The file name of a command field */
export const COMMAND_NAMES = Object.fromEntries(Object.entries(COMMANDS).map(([k, v]) => [v, k])) as Record<CommandField, CommandName>

/** Scope keys, by their name in files */
export const SCOPE_KEYS = ['service', 'method', 'id', 'address', 'bitcoin', 'trust'] as const

/** Fields that decide access together */
export const ACCESS_FIELDS = ['allow', 'deny', 'requireCredential', 'minBalance', 'minAge'] as const

/** Services and methods: the wire's name rule */
export { NAME }
const METHOD = new RegExp(`^(${NAME_PATTERN})\\.(${NAME_PATTERN})$`)
/** base58btc peer ids (Ed25519 `12D3Koo…`, RSA `Qm…`) and base32 CIDs */
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{40,100}$|^b[a-z2-7]{50,120}$/
/** base58 or bech32 characters; the chain backend knows the network */
const ADDRESS = /^[0-9A-Za-z]{14,100}$/
const RULE_NAME = /^[\w .:/@+-]{1,64}$/

/** A policy file or object is invalid; the message names the place */
export class PolicyError extends Error {
  static override name = 'PolicyError'
  override name = 'PolicyError'
  readonly file?: string
  readonly line?: number
  readonly column?: number

  constructor (message: string, where: { file?: string, line?: number, column?: number } = {}) {
    super(prefix(where) + message)
    this.file = where.file
    this.line = where.line
    this.column = where.column
  }
}

function prefix (where: { file?: string, line?: number, column?: number }): string {
  if (where.line == null) { return where.file != null ? `${where.file}: ` : '' }
  return `${where.file ?? '<policy>'}:${where.line}:${where.column ?? 1}: `
}

/**
 * A `btc:` address as compared: bech32 addresses are case-insensitive and
 * compared in lower case; base58 ones are kept as they are.
 */
export function normalizeAddress (credential: string): string {
  const addr = credential.startsWith('btc:') ? credential.slice(4) : credential
  const lower = addr.toLowerCase()
  const bech32 = /^(bc|tb|bcrt|rb)1[02-9ac-hj-np-z]+$/.test(lower) && (addr === lower || addr === addr.toUpperCase())
  return 'btc:' + (bech32 ? lower : addr)
}

// ---------------------------------------------------------------------------
// field checks, shared by the file parser and typed rules: each returns the
// problem as a sentence, or undefined when the value is fine

export function checkName (v: unknown): string | undefined {
  if (typeof v !== 'string' || !RULE_NAME.test(v)) { return 'a rule name is 1–64 letters, digits, spaces or . : / @ + - _' }
  return undefined
}

export function checkService (v: unknown): string | undefined {
  if (typeof v !== 'string' || !NAME.test(v)) { return `service must be a service name (lower case letters, digits, - and _), not ${show(v)}` }
  return undefined
}

export function checkMethod (v: unknown): string | undefined {
  if (typeof v !== 'string' || !METHOD.test(v)) { return `method must be service.method (e.g. storage.put), not ${show(v)}` }
  return undefined
}

export function checkId (v: unknown): string | undefined {
  if (typeof v !== 'string' || !v.startsWith('oc:')) { return `id must be an OpenCloud ID oc:<peer id>, not ${show(v)}` }
  if (!PEER_ID.test(v.slice(3))) { return `id ${show(v)} does not hold a peer id` }
  return undefined
}

export function checkAddress (v: unknown): string | undefined {
  if (typeof v !== 'string' || !v.startsWith('btc:')) { return `address must be a bitcoin address credential btc:<address>, not ${show(v)}` }
  if (!ADDRESS.test(v.slice(4))) { return `address ${show(v)} is not a bitcoin address` }
  return undefined
}

export function checkSats (what: string, v: unknown): string | undefined {
  if (typeof v !== 'bigint') { return `${what} must be a whole number of sats${typeof v === 'number' ? ` (not ${v}: amounts are integers)` : ''}` }
  if (v < 0n) { return `${what} must not be negative` }
  if (v > MAX_SATS) { return `${what} exceeds the largest amount (${MAX_SATS} sat)` }
  return undefined
}

export function checkBlocks (what: string, v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_BLOCKS) { return `${what} must be a whole number of blocks between 0 and ${MAX_BLOCKS}` }
  return undefined
}

export function checkTrust (what: string, v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) { return `${what} must be a number between 0 and 1` }
  return undefined
}

export function checkRate (what: string, v: unknown, integer: boolean): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_RATE || (integer && !Number.isInteger(v))) {
    return `${what} must be a positive ${integer ? 'whole ' : ''}number`
  }
  return undefined
}

export function checkConcurrent (v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CONCURRENT) { return `max-concurrent must be a whole number between 1 and ${MAX_CONCURRENT}` }
  return undefined
}

export function checkDefer (v: unknown): string | undefined {
  if (v !== 'allow' && v !== 'deny') { return `defer must be allow or deny, not ${show(v)}` }
  return undefined
}

export function checkCredentialKind (v: unknown): string | undefined {
  if (v !== 'oc' && v !== 'btc' && v !== 'any') { return `require-credential must be oc, btc or any, not ${show(v)}` }
  return undefined
}

export function checkFlag (what: string, v: unknown): string | undefined {
  if (v !== true) { return `${what} takes true (write "${what}: true"; to refuse, use ${what === 'allow' ? 'deny' : 'allow'} or remove the rule)` }
  return undefined
}

export function show (v: unknown): string {
  if (typeof v === 'string') { return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v) }
  if (typeof v === 'bigint') { return v.toString() }
  if (v === null || v === undefined) { return 'nothing' }
  if (typeof v === 'object') { return Array.isArray(v) ? 'a list' : 'a map' }
  return String(v)
}

// ---------------------------------------------------------------------------
// whole-rule checks

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

/** The canonical text of a scope: equal scopes, equal keys */
export function scopeKey (s: Scope): string {
  const parts: string[] = []
  if (s.method !== undefined) { parts.push(`method=${s.method}`) }
  if (s.service !== undefined) { parts.push(`service=${s.service}`) }
  if (s.id !== undefined) { parts.push(`id=${s.id}`) }
  if (s.address !== undefined) { parts.push(`address=${normalizeAddress(s.address)}`) }
  if (s.bitcoin !== undefined) { parts.push(`bitcoin>=${s.bitcoin.minBalance}/${s.bitcoin.minAge ?? 0}`) }
  if (s.trust !== undefined) { parts.push(`trust=${s.trust.min}..${s.trust.max ?? ''}`) }
  return parts.length === 0 ? 'global' : parts.join(',')
}

/** A scope as people read it: `global`, `service storage, bitcoin ≥ 100000 sat held ≥ 6 blocks` */
export function describeScope (s: Scope): string {
  const parts: string[] = []
  if (s.method !== undefined) { parts.push(`method ${s.method}`) }
  if (s.service !== undefined) { parts.push(`service ${s.service}`) }
  if (s.id !== undefined) { parts.push(`id ${s.id}`) }
  if (s.address !== undefined) { parts.push(`address ${s.address}`) }
  if (s.bitcoin !== undefined) { parts.push(`bitcoin ≥ ${s.bitcoin.minBalance} sat held ≥ ${s.bitcoin.minAge ?? 0} blocks`) }
  if (s.trust !== undefined) { parts.push(s.trust.max !== undefined ? `trust ${s.trust.min}–${s.trust.max}` : `trust ≥ ${s.trust.min}`) }
  return parts.length === 0 ? 'global' : parts.join(', ')
}

/** A rule's commands as people read them */
export function describeCommands (r: Rule): string {
  const out: string[] = []
  if (r.allow === true) { out.push('allow') }
  if (r.deny === true) { out.push('deny') }
  if (r.requireCredential !== undefined) { out.push(`require-credential ${r.requireCredential}`) }
  if (r.minBalance !== undefined || r.minAge !== undefined) { out.push(`needs btc ≥ ${r.minBalance ?? 0n} sat held ≥ ${r.minAge ?? 0} blocks`) }
  if (r.minPayment !== undefined) { out.push(`min-payment ${describeMinPayment(r.minPayment)}`) }
  if (r.rateLimit !== undefined) { out.push(`rate-limit ${describeRateLimit(r.rateLimit)}`) }
  if (r.maxConcurrent !== undefined) { out.push(`max-concurrent ${r.maxConcurrent}`) }
  if (r.defer !== undefined) { out.push(`defer ${r.defer}`) }
  if (r.maxTab !== undefined) { out.push(`max-tab ${r.maxTab} sat`) }
  return out.join(', ')
}

export function describeMinPayment (m: bigint | MinPayment): string {
  if (typeof m === 'bigint') { return `${m} sat per unit` }
  const parts: string[] = []
  if ((m.base ?? 0n) > 0n) { parts.push(`${m.base} sat per call`) }
  if ((m.rate ?? 0n) > 0n) { parts.push((m.per ?? 1n) === 1n ? `${m.rate} sat per unit` : `${m.rate} sat per ${m.per} units`) }
  return parts.length === 0 ? '0 sat' : parts.join(' + ')
}

export function describeRateLimit (l: RateLimit): string {
  const parts: string[] = []
  if (l.requests !== undefined) { parts.push(`${l.requests} requests/s (burst ${l.requestBurst ?? Math.max(1, l.requests)})`) }
  if (l.bytes !== undefined) { parts.push(`${l.bytes} bytes/s (burst ${l.byteBurst ?? l.bytes})`) }
  return parts.join(', ')
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
