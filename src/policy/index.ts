/**
 * Policies: who may call what, at what price, how often, on what tab
 * (spec "Policies"; docs/policy.md).
 *
 * @example
 * ```ts
 * import { openNodePolicy, policyStages, chainStages } from './policy/index.js'
 *
 * const policy = await openNodePolicy({ dataDir })        // policy.yaml, or the default policy
 * const stages = policyStages(policy.current, { trust })   // reads the current engine per call
 * openCloud({ services, access: stages.access, payment: chainStages(stages.payment, gate) })
 * ```
 */
export {
  POLICY_VERSION, MAX_SATS, MAX_RULES, COMMANDS, SCOPE_KEYS, PolicyError, validatePolicy,
  scopeKey, describeScope, describeCommands, describeMinPayment, describeRateLimit, normalizeAddress
} from './schema.js'
export type { Policy, Rule, Scope, BitcoinClass, TrustBand, RateLimit, MinPayment, CredentialKind, RuleSource, CommandName } from './schema.js'
export { parsePolicy, loadPolicyFile, MAX_POLICY_FILE } from './parse.js'
export type { ParsePolicyOptions } from './parse.js'
export { PolicyEngine, minimumPayment } from './engine.js'
export type { PolicyContext, Decision, CompiledRule, Action, Denial, TrustProvider } from './engine.js'
export { RateLimiter, ConcurrencyLimiter, MAX_BUCKETS } from './rate-limit.js'
export type { RateLimiterInit, RateLimitItem, TakeResult } from './rate-limit.js'
export { policyStages, chainStages } from './stage.js'
export type { PolicyStages, PolicyStagesOptions } from './stage.js'
export {
  defaultPolicy, DEFAULT_POLICY_YAML, DEFAULT_REQUESTS_PER_SECOND, DEFAULT_BYTES_PER_SECOND,
  DEFAULT_TAB_BALANCE, DEFAULT_TAB_AGE, DEFAULT_TAB_TRUST, DEFAULT_MAX_TAB
} from './defaults.js'
export { PolicyReloader, openNodePolicy, resolvePolicyFile, POLICY_FILE } from './reload.js'
export type { PolicyReloaderInit, ReloadResult, NodePolicy, NodePolicyOptions, PolicyReloadEvent } from './reload.js'
