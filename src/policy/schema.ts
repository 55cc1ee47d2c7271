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
export {
  POLICY_VERSION, MAX_SATS, MAX_BLOCKS, MAX_RATE, MAX_CONCURRENT, MAX_RULES,
  COMMANDS, COMMAND_FIELDS, COMMAND_NAMES, SCOPE_KEYS, ACCESS_FIELDS
} from './types.js'
export type {
  CredentialKind, BitcoinClass, TrustBand, Scope, RateLimit, MinPayment, RuleSource, Rule, Policy, CommandName, CommandField
} from './types.js'
export { PolicyError } from './error.js'
export {
  NAME, checkName, checkService, checkMethod, checkId, checkAddress, checkSats, checkBlocks, checkTrust, checkRate,
  checkConcurrent, checkDefer, checkCredentialKind, checkFlag, show
} from './fields.js'
export { normalizeAddress, scopeKey, describeScope, describeCommands, describeMinPayment, describeRateLimit } from './describe.js'
export { checkScopeCombination, validatePolicy } from './validate.js'
export type { Locator } from './validate.js'
