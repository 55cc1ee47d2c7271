import { Status } from '../pb/opencloud.js'
import { computeCost } from './pricing.js'
import type { CostBreakdown } from './pricing.js'
import type { AcceptedPayment, BitcoinCredentialState, MethodDefinition, ServiceCall, ServiceDefinition } from './template.js'
import type { AcceptablePayment, Reason, Request } from '../pb/opencloud.js'
import type { PeerId } from '@libp2p/interface'

export interface Reply {
  status: Status
  /** why, for the client to branch on (docs/protocol.md "Reasons"); the detail is for people */
  reason?: Reason
  detail?: string
  body?: Uint8Array
  acceptablePayment?: AcceptablePayment
  /** SHA-256 of body, when the method supplied it */
  bodyHash?: Uint8Array
  /** the response is evidence (a quote, a receipt): signed whatever the request asked */
  evidence?: boolean
}

/**
 * What the node's policy decided about paying for one call: written by the
 * policy's access stage, read by the payment stages (which know nothing of
 * the policy itself). Absent when the node runs without a policy: every
 * signed call may then be deferred, up to the gate's own tab limit.
 */
export interface PolicyTerms {
  /** true, or why this call may not be paid later (the no-defer detail) */
  defer: true | string
  /** the largest tab this call's payer may run up (sats); 0n when defer is not allowed */
  maxTab: bigint
  /** the policy's least payment for this call (sats); 0n when none */
  minPayment: bigint
  /** how the minimum is computed, for the too-low detail (e.g. `1 sat per call`) */
  minPaymentText?: string
}

/** Everything the stages know about one call; later stages see what earlier ones found */
export interface CallState {
  peer: PeerId
  request: Request
  /** what the request's signatures cover (the server computes it on first use) */
  digest: Uint8Array
  /** SHA-256 of the request body (part of the digest), once computed */
  bodyHash?: Uint8Array
  /**
   * the caller's credentials (after the signature stage): those whose
   * signatures verified, or the connection's own `oc:` id of an unsigned request
   */
  credentials: string[]
  /** the request carried signatures and they verified (after the signature stage) */
  signed?: boolean
  service?: ServiceDefinition
  methodName?: string
  /** undefined for the template methods info/methods/quote */
  method?: MethodDefinition
  /** units of service this call consumes: computed once, right after the method is resolved */
  usage?: bigint[]
  /** the policy's terms for this call (policy access stage) */
  policy?: PolicyTerms
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

/** Asked for the usage of a call before the usage stage computed it: a wiring bug */
export class UsageNotComputedError extends Error {
  static override name = 'UsageNotComputedError'
  override name = 'UsageNotComputedError'
}

/** The units of service of a call with a method, as the usage stage computed them */
export function usageOfState (state: CallState): bigint[] {
  if (state.usage == null) { throw new UsageNotComputedError(`${state.request.service}.${state.request.method}: usage read before the usage stage ran`) }
  return state.usage
}

/** The price of this call (sats), undefined when it cannot be priced; 0 for template methods */
export function costOf (state: CallState): bigint | undefined {
  const method = state.method
  if (method == null) { return 0n }
  return callPrice(method, usageOfState(state))?.total
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
    signed: state.signed,
    // read when the handler does: the server makes the signal on first use
    get signal (): AbortSignal {
      return state.signal
    },
    bodyHash: state.bodyHash,
    requestDigest: state.digest,
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
