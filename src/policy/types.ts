/**
 * The typed form of a policy: rules, scopes, commands and the bounds on
 * their values (docs/policy.md). `schema.ts` is its public face.
 */
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
