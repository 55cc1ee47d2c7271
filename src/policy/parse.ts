/**
 * Policy files (YAML or JSON) → typed policy. Every error names the file,
 * line and column, and the offending key:
 * `policy.yaml:12:5: unknown command "rate-limt" (did you mean rate-limit?)`.
 *
 * The YAML tree is walked node by node (never turned into plain objects
 * first) so every value keeps its position. Integers are read as bigints, so
 * amounts of any size are exact; a number with a fraction where sats are
 * expected is refused.
 */
import { readFile, stat } from 'node:fs/promises'
import { basename, extname } from 'node:path'
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml'
import { BYTE_SECONDS_PER_GIB_MONTH } from '../protocols/opencloud/api/units.js'
import {
  COMMANDS, MAX_RULES, POLICY_VERSION, PolicyError, SCOPE_KEYS,
  checkAddress, checkBlocks, checkConcurrent, checkCredentialKind, checkDefer, checkFlag, checkId, checkMethod, checkName,
  checkRate, checkSats, checkScopeCombination, checkService, checkTrust, show, validatePolicy
} from './schema.js'
import type { CommandField, MinPayment, Policy, RateLimit, Rule, Scope } from './schema.js'
import type { Node, Pair, YAMLMap } from 'yaml'

/** Largest policy file read */
export const MAX_POLICY_FILE = 8 * 1024 * 1024

export interface ParsePolicyOptions {
  /**
   * the name used in messages
   *
   * @default 'policy'
   */
  file?: string
  /**
   * JSON files are read with the YAML 1.2 JSON schema
   *
   * @default 'yaml'
   */
  format?: 'yaml' | 'json'
}

interface Where { file?: string, line?: number, column?: number }

/** Edit distance, for "did you mean" */
function distance (a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = cur
    }
  }
  return row[b.length]
}

/** ` (did you mean x?)` when a known word is close, else '' */
export function suggest (word: string, known: readonly string[]): string {
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(word.toLowerCase(), k)
    if (d < bestD) { best = k; bestD = d }
  }
  return best != null && bestD <= Math.max(1, Math.ceil(best.length / 3)) ? ` (did you mean ${best}?)` : ''
}

const SIZE = /^([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?$/
const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 }
const SATS = /^[0-9]{1,3}(_[0-9]{3})+$|^[0-9]+$/

const TOP_KEYS = ['version', 'rules'] as const
const RULE_KEYS = ['name', 'scope', ...Object.keys(COMMANDS)]
const RATE_KEYS = ['requests', 'bytes', 'request-burst', 'byte-burst'] as const
const PAYMENT_KEYS = ['base', 'rate', 'per'] as const

class Reader {
  private readonly file: string
  private readonly lines: LineCounter

  constructor (file: string, lines: LineCounter) {
    this.file = file
    this.lines = lines
  }

  at (node: Node | null | undefined): Where {
    const offset = node?.range?.[0]
    if (offset == null) { return { file: this.file } }
    const { line, col } = this.lines.linePos(offset)
    return { file: this.file, line, column: col }
  }

  fail (node: Node | null | undefined, message: string): never {
    throw new PolicyError(message, this.at(node))
  }

  /** The entries of a map node, keys as strings */
  entries (node: Node | null | undefined, what: string): Array<{ key: string, keyNode: Node, value: Node | null }> {
    if (isAlias(node)) { this.fail(node, 'anchors and aliases are not supported in policy files') }
    if (!isMap(node)) { this.fail(node, `${what} must be a map`) }
    return (node as YAMLMap<Node, Node | null>).items.map((pair: Pair<Node, Node | null>) => {
      const keyNode = pair.key
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') { this.fail(keyNode, `keys of ${what} must be words`) }
      if (isAlias(pair.value)) { this.fail(pair.value, 'anchors and aliases are not supported in policy files') }
      return { key: keyNode.value as string, keyNode, value: pair.value }
    })
  }

  scalar (node: Node | null): unknown {
    if (node == null) { return null }
    if (isAlias(node)) { this.fail(node, 'anchors and aliases are not supported in policy files') }
    if (!isScalar(node)) { return isMap(node) ? { map: true } : [] }
    return node.value
  }

  /** The text a scalar was written as */
  source (node: Node | null): string | undefined {
    return isScalar(node) && typeof node.source === 'string' ? node.source : undefined
  }

  /** Runs a field check on the converted value; fails at the value's position */
  check (node: Node | null, problem: string | undefined): void {
    if (problem != null) { this.fail(node, problem) }
  }

  sats (node: Node | null, what: string): bigint {
    const v = this.scalar(node)
    if (typeof v === 'string' && SATS.test(v.trim())) { return BigInt(v.trim().replaceAll('_', '')) }
    if (typeof v === 'number') { this.fail(node, `${what} must be a whole number of sats, not ${this.source(node) ?? v}: amounts are integers`) }
    this.check(node, checkSats(what, v))
    return v as bigint
  }

  /** A plain number (bigint integers become numbers) */
  number (node: Node | null): unknown {
    const v = this.scalar(node)
    if (typeof v === 'bigint') { return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Infinity }
    return v
  }

  /** A byte count: an integer or a string like `32MiB` */
  size (node: Node | null, what: string): number {
    const v = this.scalar(node)
    if (typeof v === 'string') {
      const m = SIZE.exec(v.trim())
      if (m == null) { this.fail(node, `${what} must be a number of bytes or a size like 64KiB, 32MiB, 1GiB, not ${show(v)}`) }
      const n = Number(m[1]) * SIZE_UNITS[m[2] ?? 'B']
      this.check(node, checkRate(what, n, true))
      return n
    }
    const n = this.number(node)
    this.check(node, checkRate(what, n, true))
    return n as number
  }
}

/** The scope keys whose value is one checked string */
const NAME_CHECKS = { service: checkService, method: checkMethod, id: checkId, address: checkAddress } as const

function parseScope (rd: Reader, node: Node | null): Scope {
  if (isScalar(node) && node.value === 'global') { return {} }
  if (isScalar(node)) { rd.fail(node, `scope must be global or a map such as { service: storage }, not ${show(node.value)}`) }
  if (node == null) { rd.fail(node, 'scope is empty: write scope: global') }
  const scope: Scope = {}
  for (const { key, keyNode, value } of rd.entries(node, 'scope')) {
    switch (key) {
      case 'service':
      case 'method':
      case 'id':
      case 'address': {
        const v = rd.scalar(value)
        rd.check(value, NAME_CHECKS[key](v))
        scope[key] = v as string
        break
      }
      case 'bitcoin': {
        let minBalance: bigint | undefined
        let minAge: number | undefined
        for (const e of rd.entries(value, 'scope bitcoin')) {
          if (e.key === 'min-balance') {
            minBalance = rd.sats(e.value, 'bitcoin min-balance')
          } else if (e.key === 'min-age') {
            const n = rd.number(e.value)
            rd.check(e.value, checkBlocks('bitcoin min-age', n))
            minAge = n as number
          } else {
            rd.fail(e.keyNode, `unknown key ${show(e.key)} in scope bitcoin${suggest(e.key, ['min-balance', 'min-age'])}`)
          }
        }
        if (minBalance === undefined) { rd.fail(value, 'scope bitcoin needs min-balance (sats)') }
        scope.bitcoin = minAge !== undefined ? { minBalance, minAge } : { minBalance }
        break
      }
      case 'trust': {
        let min: number | undefined
        let max: number | undefined
        for (const e of rd.entries(value, 'scope trust')) {
          if (e.key === 'min' || e.key === 'max') {
            const n = rd.number(e.value)
            rd.check(e.value, checkTrust(`trust ${e.key}`, n))
            if (e.key === 'min') { min = n as number } else { max = n as number }
          } else {
            rd.fail(e.keyNode, `unknown key ${show(e.key)} in scope trust${suggest(e.key, ['min', 'max'])}`)
          }
        }
        if (min === undefined) { rd.fail(value, 'scope trust needs min (0–1)') }
        if (max !== undefined && max <= min) { rd.fail(value, 'trust max must be above trust min') }
        scope.trust = max !== undefined ? { min, max } : { min }
        break
      }
      case 'global':
        rd.fail(keyNode, 'global is a scope of its own: write scope: global')
        break
      default: {
        const hint = (Object.keys(COMMANDS) as string[]).includes(key) ? ` (${key} is a command: put it next to scope, not inside it)` : suggest(key, SCOPE_KEYS)
        rd.fail(keyNode, `unknown scope key ${show(key)}${hint}`)
      }
    }
  }
  checkScopeCombination(scope, (msg) => rd.fail(node, msg))
  return scope
}

function parseRateLimit (rd: Reader, node: Node | null): RateLimit {
  const l: RateLimit = {}
  for (const { key, keyNode, value } of rd.entries(node, 'rate-limit')) {
    switch (key) {
      case 'requests': {
        const n = rd.number(value)
        rd.check(value, checkRate('rate-limit requests', n, false))
        l.requests = n as number
        break
      }
      case 'request-burst': {
        const n = rd.number(value)
        rd.check(value, checkRate('rate-limit request-burst', n, true))
        l.requestBurst = n as number
        break
      }
      case 'bytes':
        l.bytes = rd.size(value, 'rate-limit bytes')
        break
      case 'byte-burst':
        l.byteBurst = rd.size(value, 'rate-limit byte-burst')
        break
      default:
        rd.fail(keyNode, `unknown key ${show(key)} in rate-limit${suggest(key, RATE_KEYS)}`)
    }
  }
  return l
}

function parseMinPayment (rd: Reader, node: Node | null): bigint | MinPayment {
  if (!isMap(node)) { return rd.sats(node, 'min-payment') }
  const m: MinPayment = {}
  for (const { key, keyNode, value } of rd.entries(node, 'min-payment')) {
    if (!(PAYMENT_KEYS as readonly string[]).includes(key)) { rd.fail(keyNode, `unknown key ${show(key)} in min-payment${suggest(key, PAYMENT_KEYS)}`) }
    // storage leases are priced per byte·second: `per: GiB-month` names 2^30 × 2,592,000 of them
    m[key as 'base' | 'rate' | 'per'] = key === 'per' && /^gib-month$/i.test(String(rd.scalar(value))) ? BYTE_SECONDS_PER_GIB_MONTH : rd.sats(value, `min-payment ${key}`)
  }
  return m
}

interface ParsedRule {
  rule: Rule
  /** positions of the rule's fields, for whole-policy checks */
  fields: Map<string, Where>
}

function parseRule (rd: Reader, node: Node | null): ParsedRule {
  if (!isMap(node)) { rd.fail(node, 'a rule must be a map with a scope and commands, e.g. - scope: global') }
  const start = rd.at(node)
  const rule: Rule = { scope: {}, source: { file: start.file, line: start.line ?? 1, column: start.column ?? 1 } }
  const fields = new Map<string, Where>()
  let hasScope = false
  for (const { key, keyNode, value } of rd.entries(node, 'a rule')) {
    fields.set(key === 'scope' || key === 'name' ? key : (COMMANDS as Record<string, string>)[key] ?? key, rd.at(keyNode))
    if (key === 'scope') {
      rule.scope = parseScope(rd, value)
      hasScope = true
      continue
    }
    if (key === 'name') {
      const v = rd.scalar(value)
      rd.check(value, checkName(v))
      rule.name = v as string
      continue
    }
    if (!Object.hasOwn(COMMANDS, key)) {
      const hint = (SCOPE_KEYS as readonly string[]).includes(key) || key === 'global'
        ? ` (${key} is part of the scope: write scope: ${key === 'global' ? 'global' : `{ ${key}: … }`})`
        : suggest(key, RULE_KEYS)
      rd.fail(keyNode, `unknown command ${show(key)}${hint}`)
    }
    const field = COMMANDS[key as keyof typeof COMMANDS] as CommandField
    switch (field) {
      case 'allow':
      case 'deny': {
        const v = rd.scalar(value)
        rd.check(value, checkFlag(field, v))
        rule[field] = true
        break
      }
      case 'minPayment':
        rule.minPayment = parseMinPayment(rd, value)
        break
      case 'rateLimit':
        rule.rateLimit = parseRateLimit(rd, value)
        break
      case 'maxTab':
        rule.maxTab = rd.sats(value, 'max-tab')
        break
      case 'minBalance':
        rule.minBalance = rd.sats(value, 'min-balance')
        break
      case 'minAge': {
        const n = rd.number(value)
        rd.check(value, checkBlocks('min-age', n))
        rule.minAge = n as number
        break
      }
      case 'defer': {
        const v = rd.scalar(value)
        rd.check(value, checkDefer(v))
        rule.defer = v as 'allow' | 'deny'
        break
      }
      case 'requireCredential': {
        const v = rd.scalar(value)
        rd.check(value, checkCredentialKind(v))
        rule.requireCredential = v as 'oc' | 'btc' | 'any'
        break
      }
      case 'maxConcurrent': {
        const n = rd.number(value)
        rd.check(value, checkConcurrent(n))
        rule.maxConcurrent = n as number
        break
      }
      default:
        rd.fail(keyNode, `unknown command ${show(key)}`)
    }
  }
  if (!hasScope) { rd.fail(node, 'rule has no scope (write scope: global, or e.g. scope: { service: storage })') }
  return { rule, fields }
}

/**
 * Parses a policy from the text of a YAML (or JSON) file.
 *
 * @throws {PolicyError} naming the line, column and key of the first problem
 * @example
 * ```ts
 * const policy = parsePolicy('rules:\n  - scope: { service: storage }\n    deny: true\n', { file: 'policy.yaml' })
 * ```
 */
export function parsePolicy (text: string, options: ParsePolicyOptions = {}): Policy {
  const file = options.file ?? 'policy'
  const lines = new LineCounter()
  const doc = parseDocument(text, {
    lineCounter: lines,
    intAsBigInt: true,
    prettyErrors: false,
    uniqueKeys: true,
    schema: options.format === 'json' ? 'json' : 'core',
    // a policy is one document
    strict: true
  })
  const rd = new Reader(file, lines)
  const first = doc.errors[0]
  if (first != null) {
    const pos = lines.linePos(first.pos[0])
    const message = first.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw new PolicyError(message, { file, line: Math.max(1, pos.line), column: pos.col })
  }
  const root = doc.contents as Node | null
  if (root == null) { throw new PolicyError('the file is empty: a policy is version: 1 and a list of rules', { file, line: 1, column: 1 }) }
  let version: unknown = POLICY_VERSION
  let rulesNode: Node | null = null
  let sawRules = false
  for (const { key, keyNode, value } of rd.entries(root, 'a policy')) {
    if (key === 'version') {
      version = rd.number(value)
      if (version !== POLICY_VERSION) { rd.fail(value, `version must be ${POLICY_VERSION}, not ${show(rd.scalar(value))}`) }
    } else if (key === 'rules') {
      rulesNode = value
      sawRules = true
    } else {
      const hint = Object.hasOwn(COMMANDS, key) || key === 'scope' ? ' (rules go in a list under rules:)' : suggest(key, TOP_KEYS)
      rd.fail(keyNode, `unknown key ${show(key)}${hint}`)
    }
  }
  if (!sawRules) { rd.fail(root, 'no rules: a policy has a list of rules (rules: [] for none)') }
  if (rulesNode != null && !isSeq(rulesNode)) { rd.fail(rulesNode, 'rules must be a list (each rule starts with -)') }
  const items = rulesNode == null ? [] : (rulesNode as unknown as { items: Array<Node | null> }).items
  if (items.length > MAX_RULES) { rd.fail(rulesNode, `at most ${MAX_RULES} rules`) }
  const parsed = items.map(n => parseRule(rd, n))
  const policy: Policy = { version: POLICY_VERSION, rules: parsed.map(p => p.rule), file }
  validatePolicy(policy, (i, field) => (field != null ? parsed[i]?.fields.get(field) : undefined) ?? rd.at(items[i]))
  return policy
}

/**
 * Reads and parses a policy file (`.json` files as JSON, anything else as
 * YAML). Messages name the file by its base name.
 *
 * @throws {PolicyError} for a malformed policy, or a file that cannot be read
 */
export async function loadPolicyFile (path: string): Promise<Policy> {
  const name = basename(path)
  let text: string
  try {
    const s = await stat(path)
    if (!s.isFile()) { throw new PolicyError('not a file', { file: name }) }
    if (s.size > MAX_POLICY_FILE) { throw new PolicyError(`the file is larger than ${MAX_POLICY_FILE} bytes`, { file: name }) }
    text = await readFile(path, 'utf8')
  } catch (err: any) {
    if (err instanceof PolicyError) { throw err }
    throw new PolicyError(`cannot read the file (${err.code ?? err.message})`, { file: name })
  }
  return parsePolicy(text, { file: name, format: extname(path).toLowerCase() === '.json' ? 'json' : 'yaml' })
}
