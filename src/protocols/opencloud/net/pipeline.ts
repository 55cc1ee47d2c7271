/**
 * The server's request pipeline, in the spec's order ("Request processing"):
 * validate (shape, sigs, nonce, service, method) → usage → access →
 * reputation → precheck → payment → dispatch.
 *
 * The units of service are computed once, right after the method is
 * resolved (`computeUsage`): the policy and the payment gate read
 * `state.usage`, none computes it again.
 *
 * Each stage is a small function that either passes (returns undefined) or
 * answers (returns a Reply). No stage reaches back. Signing the response is
 * done by the caller, for every reply, whichever stage produced it.
 */
import { json } from '../../../util/json.js'
import { NAME } from '../../../util/names.js'
import { callPrice, toCall, usageOf, usageOfState } from '../api/call.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_BTC_CREDENTIALS, MAX_CREDENTIAL_LENGTH, MAX_CREDENTIALS, MAX_PAYMENT_FIELD_LENGTH, MAX_SIGNATURE_LENGTH, NONCE_LENGTH } from '../api/constants.js'
import { parseUnsigned } from '../api/pricing.js'
import { openCloudId, verifyAll } from '../api/signing.js'
import { isStatus } from '../api/status.js'
import { QUOTE_VALIDITY, ServiceError, TEMPLATE_METHODS } from '../api/template.js'
import { isByteSecond, pricePerGiBMonth } from '../api/units.js'
import { PaymentType, Reason, Status } from '../pb/opencloud.js'
import type { NonceStore } from './nonce.js'
import type { Reply, CallState, Stage } from '../api/call.js'
import type { CredentialVerifier } from '../api/signing.js'
import type { MethodResult, ServiceDefinition } from '../api/template.js'

export interface PipelineInit {
  /** this server's OpenCloud ID, `oc:<peer id>`: the audience its requests must name */
  self: string
  services: Map<string, ServiceDefinition>
  nonces: NonceStore
  verifiers: readonly CredentialVerifier[]
  maxBodySize: number
  /** refuse requests that carry no credential @default true */
  requireCredentials: boolean
  /** policy hook: allow / deny on credentials (allows all by default) */
  access?: Stage
  /** reputation hook (allows all by default) */
  reputation?: Stage
  /** payment gate; the default accepts `none` for free methods only */
  payment?: Stage
}

const PAYMENT_TYPES = new Set<string>(Object.values(PaymentType).filter(v => typeof v === 'string'))

/**
 * Bounds on every field before anything costly happens: the signature stage
 * parses credentials (base58) and hashes the request, so their sizes are
 * capped here.
 */
export function validateShape (maxBodySize: number): Stage {
  return ({ request: r }) => {
    if (r.body.byteLength > maxBodySize) {
      return { status: Status.TOO_LARGE, detail: `body of ${r.body.byteLength} bytes exceeds this node's limit of ${maxBodySize} bytes; split it into pieces` }
    }
    if (!NAME.test(r.service)) { return { status: Status.BAD_REQUEST, detail: 'service name missing or malformed' } }
    if (!NAME.test(r.method)) { return { status: Status.BAD_REQUEST, detail: 'method name missing or malformed' } }
    if (r.args.length > MAX_ARGS) { return { status: Status.BAD_REQUEST, detail: `at most ${MAX_ARGS} args` } }
    if (r.args.some(a => a.length > MAX_ARG_LENGTH)) { return { status: Status.BAD_REQUEST, detail: `an arg exceeds ${MAX_ARG_LENGTH} characters` } }
    if (r.id.length > MAX_CREDENTIALS) { return { status: Status.BAD_REQUEST, detail: `at most ${MAX_CREDENTIALS} credentials` } }
    if (r.id.filter(id => id.startsWith('btc:')).length > MAX_BTC_CREDENTIALS) { return { status: Status.BAD_REQUEST, detail: `at most ${MAX_BTC_CREDENTIALS} btc: credentials` } }
    if (r.id.some(id => id.length > MAX_CREDENTIAL_LENGTH)) { return { status: Status.BAD_REQUEST, detail: `a credential exceeds ${MAX_CREDENTIAL_LENGTH} characters` } }
    if (r.sig.some(sig => sig.byteLength > MAX_SIGNATURE_LENGTH)) { return { status: Status.BAD_REQUEST, detail: `a signature exceeds ${MAX_SIGNATURE_LENGTH} bytes` } }
    if (r.nonce.byteLength !== 0 && r.nonce.byteLength !== NONCE_LENGTH) { return { status: Status.BAD_REQUEST, detail: `a nonce is ${NONCE_LENGTH} bytes` } }
    if (r.audience.length > MAX_CREDENTIAL_LENGTH) { return { status: Status.BAD_REQUEST, detail: `the audience exceeds ${MAX_CREDENTIAL_LENGTH} characters` } }
    // no signature at all is an unsigned request (the signature stage decides whether it may be)
    if (r.sig.length !== 0 && r.id.length !== r.sig.length) { return { status: Status.INVALID_SIGNATURE, detail: `${r.id.length} credentials but ${r.sig.length} signatures` } }
    if (!PAYMENT_TYPES.has(r.paymentType)) { return { status: Status.BAD_REQUEST, detail: 'unknown payment-type' } }
    const p = r.payment
    if (p != null && (p.currency.length > MAX_PAYMENT_FIELD_LENGTH || p.deferId.length > MAX_PAYMENT_FIELD_LENGTH || p.deferThreshold.length > MAX_PAYMENT_FIELD_LENGTH)) {
      return { status: Status.BAD_REQUEST, detail: `payment currency, defer id and defer threshold are at most ${MAX_PAYMENT_FIELD_LENGTH} characters` }
    }
    return undefined
  }
}

/**
 * Credentials and signatures (docs/protocol.md "Signatures"). A request is
 * either signed (one signature per credential, all verified, naming this
 * server as its audience) or unsigned: then its only credential is the
 * connection's own `oc:` id, which the noise channel authenticated, and it
 * may not carry a payment (a payment is evidence, and evidence is signed).
 */
export function verifySignatures (verifiers: readonly CredentialVerifier[], requireCredentials: boolean, self: string): Stage {
  return async (state) => {
    const { request: r } = state
    // before any signature is verified or any nonce consumed: a request meant
    // for another server (relayed by a peer that got it from its signer) is
    // refused cheaply, and burns nothing
    if (r.audience !== '' && r.audience !== self) {
      return { status: Status.INVALID_SIGNATURE, reason: Reason.REASON_WRONG_AUDIENCE, detail: `this request is addressed to ${r.audience.slice(0, 80)}, not to this node (${self})` }
    }
    if (r.id.length === 0) {
      if (requireCredentials) { return { status: Status.ACCESS_DENIED, reason: Reason.REASON_CREDENTIAL_REQUIRED, detail: 'this node requires a credential (id, signed or the connection\'s own oc: id)' } }
      return undefined
    }
    if (r.sig.length === 0 && r.id.length === 1 && r.id[0] === openCloudId(state.peer)) {
      // the channel authenticated this credential; a signature would add nothing but cost
      if (r.paymentType !== PaymentType.PAYMENT_NONE) {
        return { status: Status.ACCESS_DENIED, reason: Reason.REASON_SIGNATURE_REQUIRED, detail: 'a payment or promise must be signed (id + sig): the signed request is its evidence' }
      }
      state.credentials = [r.id[0]]
      state.signed = false
      return undefined
    }
    if (r.audience === '') {
      return { status: Status.INVALID_SIGNATURE, reason: Reason.REASON_WRONG_AUDIENCE, detail: `a signed request must name its audience (${self})` }
    }
    if (r.id.length !== r.sig.length) { return { status: Status.INVALID_SIGNATURE, detail: `${r.id.length} credentials but ${r.sig.length} signatures` } }
    // A credential of a kind this node has no verifier for (a `btc:` address on a node
    // without payments) is neither checked nor counted: the rest of the request, whose
    // digest covers the whole id list, still stands. One this node understands must verify.
    const known = r.id.flatMap((id, i) => verifiers.some(v => id.startsWith(v.prefix)) ? [i] : [])
    const bad = await verifyAll(verifiers, known.map(i => r.id[i]), known.map(i => r.sig[i]), state.digest)
    if (bad >= 0) { return { status: Status.INVALID_SIGNATURE, detail: `signature ${known[bad]} does not verify for credential ${r.id[known[bad]]?.slice(0, 80) ?? ''}` } }
    if (known.length === 0) {
      return { status: Status.INVALID_SIGNATURE, detail: `no credential of a kind this node verifies (${verifiers.map(v => v.prefix).join(', ')})` }
    }
    state.credentials = known.map(i => r.id[i])
    state.signed = true
    return undefined
  }
}

export function checkNonce (nonces: NonceStore): Stage {
  return ({ request: r, peer }) => {
    if (r.nonce.byteLength === 0) { return { status: Status.REFRESH_NONCE, reason: Reason.REASON_NONCE_MISSING, detail: 'nonce required' } }
    if (!nonces.consume(peer.toString(), r.nonce)) { return { status: Status.REFRESH_NONCE, reason: Reason.REASON_NONCE_STALE, detail: 'nonce unknown, expired or already used' } }
    return undefined
  }
}

export function resolveService (services: Map<string, ServiceDefinition>): Stage {
  return (state) => {
    const service = services.get(state.request.service)
    if (service == null) { return { status: Status.SERVICE_UNSUPPORTED, detail: `no service "${state.request.service}" here` } }
    const name = state.request.method
    if ((TEMPLATE_METHODS as readonly string[]).includes(name)) {
      state.service = service
      state.methodName = name
      return undefined
    }
    const method = Object.hasOwn(service.methods, name) ? service.methods[name] : undefined
    if (method == null) { return { status: Status.METHOD_UNSUPPORTED, detail: `service "${service.name}" has no method "${name}"` } }
    state.service = service
    state.methodName = name
    state.method = method
    return undefined
  }
}

/**
 * The default payment gate: free methods are served for `none`; a priced
 * method asks for its price (too-low with acceptable-payment). Attached and
 * deferred payments are declined until a payment backend is configured.
 */
export const defaultPaymentGate: Stage = (state) => {
  const r = state.request
  const method = state.method
  if (r.paymentType !== PaymentType.PAYMENT_NONE) {
    const name = r.paymentType === PaymentType.PAYMENT_ATTACHED ? 'attached' : 'defer'
    return { status: Status.PAYMENT_DECLINED, reason: Reason.REASON_NO_PAYMENT_BACKEND, detail: `this node takes no payment-type ${name} (no payment backend); send payment-type none for free methods` }
  }
  if (method == null) { return undefined }
  const cost = callPrice(method, usageOfState(state))
  if (cost == null) { return { status: Status.TOO_LARGE, detail: 'this call is too large to be priced' } }
  if (cost.total === 0n) { return undefined }
  return {
    status: Status.TOO_LOW,
    reason: Reason.REASON_PRICE,
    detail: `${r.service}.${r.method} costs ${cost.total} sat for this call`,
    acceptablePayment: { paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: cost.total }
  }
}

/** The template methods every service has: info, methods, quote */
async function templateMethod (state: CallState): Promise<Reply> {
  const service = state.service as ServiceDefinition
  switch (state.methodName) {
    case 'info': {
      const extra = service.describe != null ? await service.describe() : {}
      return { status: Status.OK, body: json({ service: service.name, version: service.version, description: service.description, ...extra }) }
    }
    case 'methods': {
      const methods = Object.entries(service.methods).map(([name, m]) => ({
        name,
        description: m.description,
        args: m.args ?? '',
        units: m.units ?? [],
        pricing: { base: m.pricing?.base ?? 0n, rate: m.pricing?.rate ?? 0n, per: m.pricing?.per ?? 1n, currency: 'BTC' }
      }))
      methods.push(
        { name: 'info', description: 'version information', args: '', units: [], pricing: { base: 0n, rate: 0n, per: 1n, currency: 'BTC' } },
        { name: 'methods', description: 'this list', args: '', units: [], pricing: { base: 0n, rate: 0n, per: 1n, currency: 'BTC' } },
        { name: 'quote', description: 'cost of a call', args: '<method> [units…]', units: [], pricing: { base: 0n, rate: 0n, per: 1n, currency: 'BTC' } }
      )
      return { status: Status.OK, body: json({ service: service.name, methods }) }
    }
    case 'quote': {
      const [methodName, ...rest] = state.request.args
      if (methodName == null) { return { status: Status.BAD_REQUEST, detail: 'usage: quote <method> [units…]' } }
      if ((TEMPLATE_METHODS as readonly string[]).includes(methodName)) {
        return { status: Status.OK, evidence: true, body: json({ service: service.name, method: methodName, currency: 'BTC', units: {}, base: 0n, usage: 0n, amount: 0n }) }
      }
      const m = Object.hasOwn(service.methods, methodName) ? service.methods[methodName] : undefined
      if (m == null) { return { status: Status.METHOD_UNSUPPORTED, detail: `service "${service.name}" has no method "${methodName}"` } }
      const dims = m.units ?? []
      if (rest.length > dims.length) { return { status: Status.BAD_REQUEST, detail: `${methodName} is priced in ${dims.length === 0 ? 'calls' : dims.join(' × ')}: too many units` } }
      const units: bigint[] = []
      for (let i = 0; i < dims.length; i++) {
        const v = rest[i] == null ? 1n : parseUnsigned(rest[i])
        if (v == null) { return { status: Status.BAD_REQUEST, detail: `units of ${dims[i]} must be a non-negative integer` } }
        units.push(v)
      }
      const now = Date.now()
      const cost = callPrice(m, units, now)
      if (cost == null) { return { status: Status.BAD_REQUEST, detail: 'these units are too large to be priced' } }
      return {
        status: Status.OK,
        evidence: true,
        body: json({
          service: service.name,
          method: methodName,
          currency: 'BTC',
          units: Object.fromEntries(dims.map((d, i) => [d, units[i]])),
          base: cost.base,
          usage: cost.usage,
          amount: cost.total,
          // storage leases (byte·second) are compared per GiB-month
          ...(isByteSecond(dims) ? { perGiBMonth: pricePerGiBMonth(m.pricing) } : {}),
          // the signed answer is evidence: this price is accepted until then (ms since the epoch)
          validUntil: now + QUOTE_VALIDITY
        })
      }
    }
    default:
      return { status: Status.METHOD_UNSUPPORTED }
  }
}

/**
 * Runs the method. What a handler returns is checked like input: a status
 * this version does not know, or a body over the limit, is a server-error
 * (logged by the server), never a malformed response.
 */
export function dispatch (maxBodySize: number): Stage {
  return async (state) => {
    if (state.method == null) { return templateMethod(state) }
    let result: MethodResult
    try {
      result = await state.method.handler(toCall(state))
    } catch (err: any) {
      if (err instanceof ServiceError && isStatus(err.status)) { return { status: err.status, detail: err.detail } }
      throw err
    }
    if (result == null || typeof result !== 'object') { throw new TypeError(`${state.request.service}.${state.request.method} returned no result`) }
    const status = result.status ?? Status.OK
    if (!isStatus(status)) { throw new TypeError(`${state.request.service}.${state.request.method} returned an unknown status`) }
    const body = result.body ?? new Uint8Array()
    if (!(body instanceof Uint8Array)) { throw new TypeError(`${state.request.service}.${state.request.method} returned a body that is not bytes`) }
    if (body.byteLength > maxBodySize) { throw new RangeError(`${state.request.service}.${state.request.method} returned ${body.byteLength} bytes, over the body limit`) }
    const bodyHash = result.bodyHash instanceof Uint8Array && result.bodyHash.byteLength === 32 && result.body === body ? result.bodyHash : undefined
    return { status, detail: typeof result.detail === 'string' ? result.detail : undefined, body, bodyHash, evidence: result.evidence === true }
  }
}

/**
 * The method's own check that the call can be served (the blob exists, the
 * range is valid, there is room), run after usage and before any payment is
 * taken: a call that cannot be served is refused without charging.
 */
export const precheck: Stage = async (state) => {
  const method = state.method
  if (method?.precheck == null) { return undefined }
  try {
    const refusal = await method.precheck(toCall(state))
    if (refusal == null) { return undefined }
    if (!isStatus(refusal.status) || refusal.status === Status.OK) { throw new TypeError(`${state.request.service}.${state.request.method}: precheck returned an ok or unknown status`) }
    return { status: refusal.status, detail: typeof refusal.detail === 'string' ? refusal.detail : undefined }
  } catch (err: any) {
    if (err instanceof ServiceError && isStatus(err.status)) { return { status: err.status, detail: err.detail } }
    throw err
  }
}

/**
 * The units of service of the call (`state.usage`), computed once, right
 * after the method is resolved: the policy (rate limits in bytes, minimum
 * payments) and the payment gate read them from the state. Malformed
 * arguments answer here with the service's status. Template methods use none.
 */
export const computeUsage: Stage = (state) => {
  if (state.method == null) { return undefined }
  try {
    state.usage = usageOf(state.method, toCall(state))
  } catch (err: any) {
    if (err instanceof ServiceError && isStatus(err.status)) { return { status: err.status, detail: err.detail } }
    throw err
  }
  return undefined
}

/** The full pipeline as an ordered list of stages */
export function createPipeline (init: PipelineInit): Stage[] {
  return [
    validateShape(init.maxBodySize),
    verifySignatures(init.verifiers, init.requireCredentials, init.self),
    checkNonce(init.nonces),
    resolveService(init.services),
    computeUsage,
    init.access ?? (() => undefined),
    init.reputation ?? (() => undefined),
    precheck,
    init.payment ?? defaultPaymentGate,
    dispatch(init.maxBodySize)
  ]
}

/** Runs stages in order until one answers */
export async function runPipeline (stages: Stage[], state: CallState): Promise<Reply> {
  let reply: Reply | undefined
  try {
    for (const stage of stages) {
      reply = await stage(state)
      if (reply != null) { return reply }
    }
    reply = { status: Status.SERVER_ERROR, detail: 'no stage answered' }
    return reply
  } finally {
    const cleanup = state.cleanup
    if (cleanup != null) {
      state.cleanup = undefined
      for (let i = cleanup.length - 1; i >= 0; i--) {
        try {
          // undefined when a stage threw: the call was not served
          await cleanup[i](reply)
        } catch {
          // a cleanup failure must not replace the reply
        }
      }
    }
  }
}
