import { Status } from '../pb/opencloud.js'
import { computeCost } from './pricing.js'
import type { CostBreakdown } from './pricing.js'
import type { AcceptedPayment, BitcoinCredentialState, MethodDefinition, ServiceCall, ServiceDefinition } from './template.js'
import type { AcceptablePayment, Request } from '../pb/opencloud.js'
import type { PeerId } from '@libp2p/interface'

export interface Reply {
  status: Status
  detail?: string
  body?: Uint8Array
  acceptablePayment?: AcceptablePayment
  /** SHA-256 of body, when the method supplied it */
  bodyHash?: Uint8Array
}

/** Everything the stages know about one call; later stages see what earlier ones found */
export interface CallState {
  peer: PeerId
  request: Request
  /** what the request's signatures cover */
  digest: Uint8Array
  /** SHA-256 of the request body (already part of the digest) */
  bodyHash?: Uint8Array
  /** credentials whose signatures verified (after the signature stage) */
  credentials: string[]
  service?: ServiceDefinition
  methodName?: string
  /** undefined for the template methods info/methods/quote */
  method?: MethodDefinition
  /** units of service this call consumes, once computed */
  usage?: bigint[]
  /** bitcoin address credentials, with their chain state, once checked (access stage) */
  bitcoin?: BitcoinCredentialState[]
  /** the payment the payment gate accepted for this call */
  payment?: AcceptedPayment
  /**
   * Run once when the call is over (a reply was produced, or a stage threw:
   * then without a reply), in reverse order of registration: e.g. a
   * max-concurrent slot is released, a deferred promise of a call that
   * failed is taken back
   */
  cleanup?: Array<(reply?: Reply) => void | Promise<void>>
  signal: AbortSignal
}

export type Stage = (state: CallState) => Promise<Reply | undefined> | Reply | undefined

/** The price of this call (sats), undefined when it cannot be priced; 0 for template methods */
export function costOf (state: CallState): bigint | undefined {
  const method = state.method
  if (method == null) { return 0n }
  return callPrice(method, state.usage ?? usageOf(method, toCall(state)))?.total
}

/**
 * What a call of `method` with these units costs now: the current price,
 * or the previous one while quotes given at it are still valid, whichever
 * is lower (a quote is honoured until it expires). Undefined when it
 * cannot be priced.
 */
export function callPrice (method: MethodDefinition, units: readonly bigint[], now = Date.now()): CostBreakdown | undefined {
  const current = priceOf(method, units)
  const prev = method.previousPricing
  if (prev == null || prev.until <= now) { return current }
  const old = priceOf({ ...method, pricing: prev.pricing }, units)
  if (old == null) { return current }
  if (current == null) { return old }
  return old.total < current.total ? old : current
}

export function toCall (state: CallState): ServiceCall {
  return {
    service: state.request.service,
    method: state.request.method,
    args: state.request.args,
    body: state.request.body,
    peer: state.peer,
    credentials: state.credentials,
    signal: state.signal,
    bodyHash: state.bodyHash,
    payment: state.payment,
    bitcoin: state.bitcoin
  }
}

/** Units of service of a call: the method's own usage function or 1 per dimension */
export function usageOf (method: MethodDefinition, call: ServiceCall): bigint[] {
  const dims = (method.units ?? []).length
  if (method.usage == null) { return new Array<bigint>(dims).fill(1n) }
  const u = method.usage(call)
  if (!Array.isArray(u) || u.length !== dims || u.some(x => typeof x !== 'bigint' || x < 0n)) {
    // a bug in the service, not in the request: surfaces as a logged server-error
    throw new TypeError(`${call.service}.${call.method}: usage must return ${dims} non-negative bigints`)
  }
  return u
}

/** The cost of `units` of a method, or undefined when it cannot be priced (amount overflow) */
export function priceOf (method: MethodDefinition, units: readonly bigint[]): CostBreakdown | undefined {
  try {
    return computeCost(method.pricing, units)
  } catch (err: any) {
    if (err?.name === 'AmountOverflowError' || err?.name === 'InvalidPricingError') { return undefined }
    throw err
  }
}
