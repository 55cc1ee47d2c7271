import { NAME } from '../../../util/names.js'
import { InvalidServiceError } from './errors.js'
import { validatePricing } from './pricing.js'
import type { Pricing } from './pricing.js'
import type { Status } from '../pb/opencloud.js'
import type { PeerId } from '@libp2p/interface'

/** How long a quote (and so the price it names) stays valid, ms */
export const QUOTE_VALIDITY = 10 * 60_000

/**
 * Changes a method's price, keeping the old one honoured for the quotes
 * given at it (until `QUOTE_VALIDITY` from now)
 */
export function reprice (method: MethodDefinition, pricing: Pricing | undefined, now = Date.now()): void {
  const same = (a: Pricing | undefined, b: Pricing | undefined): boolean =>
    (a?.base ?? 0n) === (b?.base ?? 0n) && (a?.rate ?? 0n) === (b?.rate ?? 0n) && (a?.per ?? 1n) === (b?.per ?? 1n)
  if (same(method.pricing, pricing)) { return }
  method.previousPricing = { pricing: method.pricing, until: now + QUOTE_VALIDITY }
  method.pricing = pricing
}

/** One call as a service method sees it, after validation, access and payment */
export interface ServiceCall {
  /** the service name the request named */
  service: string
  /** the method name the request named */
  method: string
  /** the request's string arguments (at most `MAX_ARGS`, each at most `MAX_ARG_LENGTH` bytes) */
  args: string[]
  /** the request body (at most the node's `maxBodySize`) */
  body: Uint8Array
  /** the remote libp2p peer (authenticated by the transport) */
  peer: PeerId
  /**
   * the caller's credentials: those whose signatures verified, or, for an
   * unsigned request, the connection's own `oc:` id (the channel authenticated it)
   */
  credentials: string[]
  /** true when the request was signed (its signatures verified): evidence a third party can check */
  signed?: boolean
  /** aborted when the call times out, the stream closes or the node stops */
  signal: AbortSignal
  /** SHA-256 of `body` when the framework computed it (signed requests: it is part of the digest) */
  bodyHash?: Uint8Array
  /** the request digest (what the caller's signature covers, echoed in the response): evidence such as storage receipts names it */
  requestDigest?: Uint8Array
  /** what the payment gate accepted for this call */
  payment?: AcceptedPayment
  /** checked bitcoin address credentials of the caller */
  bitcoin?: BitcoinCredentialState[]
}

/** What a method returns; a missing status means ok */
export interface MethodResult {
  /** the status to answer with; ok when missing */
  status?: Status
  /** a human-readable explanation sent with the status */
  detail?: string
  /** the response body; empty when missing */
  body?: Uint8Array
  /**
   * SHA-256 of `body` when the method knows it already (a content address);
   * the server then does not hash the body again to sign the response
   */
  bodyHash?: Uint8Array
  /**
   * the response is evidence (a receipt, a promise of service): the server
   * signs it even when the client did not ask (docs/protocol.md "Signatures")
   */
  evidence?: boolean
}

/** Why a call cannot be served (a status other than ok), as a precheck answers it */
export interface PrecheckRefusal {
  status: Status
  detail?: string
}

/**
 * One method of a service: what it does, what a call of it costs, and the
 * handler. The framework validates the request, runs access and payment,
 * then calls `handler`; a thrown `ServiceError` becomes its status, any
 * other error `server-error/internal`.
 *
 * @example
 * ```ts
 * const upper: MethodDefinition = {
 *   description: 'returns the body in upper case',
 *   units: ['byte'],
 *   pricing: { base: 1n, rate: 1n, per: 1000n }, // 1 sat + 1 sat per 1000 bytes
 *   usage: (call) => [BigInt(call.body.byteLength)],
 *   handler: (call) => ({ body: new TextEncoder().encode(new TextDecoder().decode(call.body).toUpperCase()) })
 * }
 * ```
 */
export interface MethodDefinition {
  /** one line for `methods` listings */
  description: string
  /** human readable argument synopsis, e.g. `<id> [offset] [length]` */
  args?: string
  /**
   * Names of the dimensions of a unit of service, e.g. `['byte']` or
   * `['byte', 'day']`. A method without units is priced per call.
   */
  units?: string[]
  /** what a call costs, in satoshis; none (or all zero) means free */
  pricing?: Pricing
  /**
   * The price before the last change and until when it is still honoured:
   * a quote is valid until its expiry (`QUOTE_VALIDITY`), so a seller whose
   * price rose keeps accepting the old one that long (see `reprice`)
   */
  previousPricing?: { pricing: Pricing | undefined, until: number }
  /**
   * The units of service a concrete call consumes, exactly one value per
   * entry of `units`, in the same order; the payment gate prices the call
   * with them before the handler runs. It may throw a ServiceError (e.g.
   * bad-request for malformed args). Default: 1 of each.
   */
  usage?(call: ServiceCall): bigint[]
  /**
   * Checks that the call can be served, before the payment gate takes any
   * money (after access and usage): e.g. the blob asked for exists, the
   * range is valid, there is room for a put. Return (or throw as a
   * ServiceError) a refusal to answer with it; nothing is charged. Keep it
   * cheap: it runs for every call, paid or not. What it cannot rule out
   * (a race with another call) is covered by the gate, which gives the
   * price of a call that then fails back as credit.
   */
  precheck?(call: ServiceCall): Promise<PrecheckRefusal | undefined> | PrecheckRefusal | undefined
  /** does the work; runs only for calls that passed access and payment */
  handler(call: ServiceCall): Promise<MethodResult> | MethodResult
}

/**
 * A service, as the spec's template describes it. The framework adds the
 * standard `info`, `methods` and `quote` methods to every service, so a
 * definition must not declare them.
 *
 * @example
 * ```ts
 * const echo: ServiceDefinition = {
 *   name: 'echo',
 *   version: '1.0.0',
 *   description: 'returns the body',
 *   methods: {
 *     echo: { description: 'returns the body', handler: (call) => ({ body: call.body }) }
 *   }
 * }
 * ```
 */
export interface ServiceDefinition {
  name: string
  version: string
  description: string
  methods: Record<string, MethodDefinition>
  /** Extra fields merged into the `info` method's answer */
  describe?(): Record<string, unknown> | Promise<Record<string, unknown>>
  start?(): Promise<void> | void
  stop?(): Promise<void> | void
}

/** Methods every service has, provided by the framework */
export const TEMPLATE_METHODS = ['info', 'methods', 'quote'] as const

/** Service, method and unit names: what the wire's `service` and `method` fields accept */
/** Most unit dimensions a method may be priced in */
export const MAX_UNIT_DIMENSIONS = 8

/**
 * Throws InvalidServiceError when a definition breaks the template's rules:
 * names the wire can carry, no template method redefined, a handler per
 * method, distinct unit names, valid prices.
 */
export function validateService (def: ServiceDefinition): void {
  if (typeof def?.name !== 'string' || !NAME.test(def.name)) {
    throw new InvalidServiceError(`invalid service name "${String(def?.name)}"`)
  }
  if (typeof def.version !== 'string' || def.version === '') {
    throw new InvalidServiceError(`${def.name}: version missing`)
  }
  if (typeof def.description !== 'string') {
    throw new InvalidServiceError(`${def.name}: description missing`)
  }
  if (def.methods == null || typeof def.methods !== 'object') {
    throw new InvalidServiceError(`${def.name}: methods missing`)
  }
  for (const [name, m] of Object.entries(def.methods)) {
    validateMethod(`${def.name}.${name}`, name, m)
  }
}

function validateMethod (where: string, name: string, m: MethodDefinition): void {
  if (!NAME.test(name)) {
    throw new InvalidServiceError(`${where}: invalid method name`)
  }
  if ((TEMPLATE_METHODS as readonly string[]).includes(name)) {
    throw new InvalidServiceError(`${where}: "${name}" is a template method provided by the framework`)
  }
  if (typeof m?.handler !== 'function') {
    throw new InvalidServiceError(`${where}: handler missing`)
  }
  if (m.usage != null && typeof m.usage !== 'function') {
    throw new InvalidServiceError(`${where}: usage must be a function`)
  }
  if (m.precheck != null && typeof m.precheck !== 'function') {
    throw new InvalidServiceError(`${where}: precheck must be a function`)
  }
  const units = m.units ?? []
  if (!Array.isArray(units) || units.length > MAX_UNIT_DIMENSIONS) {
    throw new InvalidServiceError(`${where}: units must be a list of at most ${MAX_UNIT_DIMENSIONS} names`)
  }
  for (const u of units) {
    if (typeof u !== 'string' || !NAME.test(u)) {
      throw new InvalidServiceError(`${where}: invalid unit name "${String(u)}"`)
    }
  }
  if (new Set(units).size !== units.length) {
    throw new InvalidServiceError(`${where}: unit names must be distinct`)
  }
  if (m.pricing != null) {
    try {
      validatePricing(m.pricing)
    } catch (err: any) {
      throw new InvalidServiceError(`${where}: ${String(err.message)}`)
    }
  }
}

/** An error a method throws to answer with a given status */
export class ServiceError extends Error {
  static override name = 'ServiceError'
  override name = 'ServiceError'
  readonly status: Status
  readonly detail: string

  constructor (status: Status, detail: string) {
    super(detail)
    this.status = status
    this.detail = detail
  }
}

/** A `btc:` credential whose signature verified, with what the chain says of it */
export interface BitcoinCredentialState {
  address: string
  /** confirmed balance (sats) */
  confirmed: bigint
  unconfirmed: bigint
  /** height of the oldest confirmed coin still held */
  heldSince?: number
  /** blocks the coins have been held (tip height − heldSince + 1), 0 when none */
  age: number
}

/** What the payment gate accepted for a call; services see it on `ServiceCall.payment` */
export interface AcceptedPayment {
  /** `credit`: paid from what the payer had paid this node before and not used */
  kind: 'none' | 'attached' | 'defer' | 'credit'
  /** sats paid (attached, credit) or promised (defer) with this request */
  amount: bigint
  /** the price of this call */
  cost: bigint
  txid?: string
  deferId?: string
}
