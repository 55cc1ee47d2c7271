/**
 * `POST /v1/call`: an OpenCloud call through the node (its identity, its
 * connections, its wallet), to a target or, with `cheapest`, to the
 * cheapest seller that answers. A call to the node itself is made from a
 * throw-away identity, as a stranger's would be (docs/control-api.md).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { CHEAPEST_ATTEMPTS, NoSellerReachedError, callCheapest } from '../market/select.js'
import { callAsStranger } from '../node/stranger.js'
import { parsePayOption } from '../payments/buyer/pay-option.js'
import { MAX_ARG_LENGTH, MAX_ARGS, MAX_NAME_LENGTH } from '../protocols/opencloud/api/constants.js'
import { bodyUsage } from '../protocols/opencloud/api/units.js'
import { callResultJson, API_PREFIX } from './api.js'
import { HttpError, badRequest, jsonObject, nameField, satsField } from './http.js'
import { DEFAULT_SELLERS_TIMEOUT, MAX_SELLERS_TIMEOUT, rankerOf } from './routes-market.js'
import type { CallJson, CallRequestJson } from './api.js'
import type { Endpoint, RouteContext } from './http.js'
import type { SellerCaller } from '../market/select.js'
import type { PayOption, PaidCallResult } from '../payments/buyer/bidding.js'
import type { CallRequest, CallResult, CallTarget } from '../protocols/opencloud/net/client.js'
import type { AbortOptions } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface CallLimits {
  /** default and largest `timeout` (ms) */
  defaultCallTimeout: number
  maxCallTimeout: number
  /** largest body of a call (bytes) */
  maxBodySize: number
}

interface CallInput {
  /** undefined with `cheapest` */
  target?: CallTarget
  cheapest: boolean
  call: CallRequest
  timeout: number
  pay?: { option: PayOption, max: bigint }
  /** `cheapest`: units of service to rank by */
  units?: bigint
  /** `cheapest`: deadline of the seller lookup (ms) */
  lookupTimeout: number
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

export function callRoutes (ctx: RouteContext, limits: CallLimits): Array<[string, Endpoint]> {
  const node = ctx.node
  return [
    [`${API_PREFIX}/call`, { method: 'POST', run: async (req, res) => call(parseCall(await ctx.readJson(req)), res) }]
  ]

  async function call (input: CallInput, res: Parameters<RouteContext['begin']>[0]): Promise<unknown> {
    // checked before the call takes a slot
    const ranker = input.cheapest ? rankerOf(node) : undefined
    const self = !input.cheapest && isSelf(input.target)
    if (self && input.pay != null) { throw badRequest('the target is this node itself: a node does not pay itself; call it without pay') }
    if (input.pay != null && (node.pay == null || node.payments == null)) { throw new HttpError(404, 'not-found', 'payments are off on this node (started with --no-payments): it cannot pay') }
    const flight = ctx.begin(res)
    const caller = callerFor(input)
    // a cheapest call: the lookup, then one timeout per seller tried
    const overall = input.cheapest ? input.lookupTimeout + CHEAPEST_ATTEMPTS * input.timeout : input.timeout
    const deadline = AbortSignal.timeout(overall)
    const signal = AbortSignal.any([flight.signal, deadline])
    try {
      if (ranker != null) {
        const start = Date.now()
        const usage = input.units ?? (input.call.body != null && input.call.body.byteLength > 0 ? bodyUsage(input.call.service, input.call.method, input.call.args, input.call.body.byteLength) : undefined)
        const ranked = await ranker.rankSellers(input.call.service, { method: input.call.method, usage, timeout: input.lookupTimeout, signal })
        if (ranked.length === 0) { throw new HttpError(404, 'no-seller', `no seller of ${input.call.service} found (searched the price book and the DHT for ${Date.now() - start} ms)`) }
        const picked = await callCheapest(caller, ranked, input.call, { signal, timeout: input.timeout })
        return {
          ...resultJson(picked.result),
          seller: { peerId: picked.seller.peerId, addresses: picked.seller.addresses, ...(picked.seller.price != null ? { price: picked.seller.price.toString() } : {}) },
          skipped: picked.skipped
        }
      }
      if (self) {
        const target = input.target
        // where it listens: in public mode its announced addresses leave loopback out
        const addrs = isMultiaddr(target) ? [target] : (node.listening?.() ?? node.addresses()).map(a => multiaddr(a))
        return callResultJson(await callAsStranger(addrs, input.call, { signal }))
      }
      return resultJson(await caller.call(input.target as CallTarget, input.call, { signal }))
    } catch (err: any) {
      if (err instanceof HttpError) { throw err }
      if (err?.name === 'PaymentRefusedError') { throw new HttpError(402, 'payment-refused', String(err.message)) }
      if (err?.name === 'InsufficientFundsError') { throw new HttpError(402, 'insufficient-funds', String(err.message)) }
      if (input.pay != null && !signal.aborted && (err instanceof RangeError || err instanceof TypeError || ['TxRejectedError', 'ChainUnavailableError', 'ChainUnsupportedError'].includes(err?.name))) {
        throw new HttpError(402, 'payment-failed', `the payment could not be made: ${String(err.message)}`)
      }
      if (deadline.aborted) {
        throw new HttpError(504, 'timeout', input.cheapest ? `no seller answered within ${overall} ms` : `no answer within ${input.timeout} ms`)
      }
      if (err instanceof NoSellerReachedError) { throw new HttpError(502, 'transport', err.message) }
      throw new HttpError(502, 'transport', String(err?.message ?? err))
    } finally {
      flight.end()
    }
  }

  /** Calls as they are asked for: paid through the node's wallet, or plain */
  function callerFor (input: CallInput): SellerCaller<CallResult | PaidCallResult> {
    const pay = input.pay
    const payer = node.pay
    if (pay != null && payer != null) {
      return { call: async (target: CallTarget, call: CallRequest, o: AbortOptions) => payer.call(node, target, call, { pay: pay.option, max: pay.max, signal: o.signal }) }
    }
    return { call: async (target: CallTarget, call: CallRequest, o: AbortOptions) => node.opencloud.call(target, call, o) }
  }

  /** The target is this node: libp2p does not dial itself */
  function isSelf (target: CallTarget | undefined): boolean {
    if (target == null) { return false }
    const peer = isMultiaddr(target) ? target.getComponents().findLast(c => c.name === 'p2p')?.value : target.toString()
    return peer === node.peerId.toString()
  }

  function parseCall (v: unknown): CallInput {
    const o = jsonObject(v) as Partial<Record<keyof CallRequestJson, unknown>>
    let pay: { option: PayOption, max: bigint } | undefined
    if (o.pay != null) {
      if (typeof o.pay !== 'string') { throw badRequest('pay: attached:SATS, defer:SATS[:THRESHOLD] or auto') }
      let option: PayOption
      try {
        option = parsePayOption(o.pay)
      } catch (err: any) {
        throw badRequest(`pay: ${String(err.message)}`)
      }
      const max = satsField('max', o.max)
      if (max == null) { throw badRequest('max: the most to pay, sats (decimal string), is required with pay') }
      pay = { option, max }
    } else if (o.max != null) {
      throw badRequest('max goes with pay')
    }
    if (o.cheapest != null && typeof o.cheapest !== 'boolean') { throw badRequest('cheapest: true or false') }
    const cheapest = o.cheapest === true
    if (cheapest && o.target != null) { throw badRequest('target: none with cheapest (the node picks the seller)') }
    if (!cheapest && (o.units != null || o.lookupTimeout != null)) { throw badRequest('units and lookupTimeout go with cheapest') }
    const call = {
      service: cheapest ? nameField('service', o.service) ?? lengthName('service', o.service) : lengthName('service', o.service),
      method: cheapest ? nameField('method', o.method) ?? lengthName('method', o.method) : lengthName('method', o.method),
      args: parseArgList(o.args),
      body: parseBody(o.body)
    }
    const units = o.units != null ? satsField('units', o.units) : undefined
    if (o.lookupTimeout != null && (typeof o.lookupTimeout !== 'number' || !Number.isInteger(o.lookupTimeout) || o.lookupTimeout < 1 || o.lookupTimeout > MAX_SELLERS_TIMEOUT)) {
      throw badRequest(`lookupTimeout: an integer number of milliseconds from 1 to ${MAX_SELLERS_TIMEOUT}`)
    }
    return {
      ...(cheapest ? {} : { target: parseTarget(o.target) }),
      cheapest,
      call,
      timeout: parseTimeout(o.timeout),
      ...(pay != null ? { pay } : {}),
      ...(units != null ? { units } : {}),
      lookupTimeout: typeof o.lookupTimeout === 'number' ? o.lookupTimeout : DEFAULT_SELLERS_TIMEOUT
    }
  }

  function parseBody (x: unknown): Uint8Array {
    if (x == null) { return new Uint8Array() }
    if (typeof x !== 'string' || x.length % 4 !== 0 || !BASE64.test(x)) { throw badRequest('body: a base64 string is required') }
    const body = Buffer.from(x, 'base64')
    if (body.byteLength > limits.maxBodySize) {
      throw new HttpError(413, 'too-large', `body of ${body.byteLength} bytes exceeds the limit of ${limits.maxBodySize} bytes`)
    }
    return body
  }

  function parseTimeout (x: unknown): number {
    if (x == null) { return limits.defaultCallTimeout }
    if (typeof x !== 'number' || !Number.isInteger(x) || x <= 0 || x > limits.maxCallTimeout) {
      throw badRequest(`timeout: an integer number of milliseconds from 1 to ${limits.maxCallTimeout}`)
    }
    return x
  }
}

/** A call's answer as JSON, with how it was paid when it was */
function resultJson (result: CallResult | PaidCallResult): CallJson {
  if (!('attempts' in result)) { return callResultJson(result) }
  return {
    ...callResultJson(result),
    payment: {
      kind: result.kind,
      paid: result.paid.toString(),
      promised: result.promised.toString(),
      ...(result.txid != null ? { txid: result.txid } : {}),
      ...(result.deferId != null ? { deferId: result.deferId } : {}),
      ...(result.cost != null ? { cost: Object.fromEntries(Object.entries(result.cost).map(([k, v]) => [k, (v as bigint).toString()])) as any } : {}),
      attempts: result.attempts.map(a => ({ kind: a.kind, amount: a.amount.toString(), status: a.path }))
    }
  }
}

function isMultiaddr (t: CallTarget | undefined): t is Multiaddr {
  return t != null && typeof t === 'object' && 'getComponents' in t
}

function parseTarget (x: unknown): CallTarget {
  if (typeof x !== 'string' || x === '') { throw badRequest('target: a multiaddr or peer id string is required (or cheapest: true)') }
  try {
    return x.startsWith('/') ? multiaddr(x) : peerIdFromString(x)
  } catch (err: any) {
    throw badRequest(`target: ${err.message}`)
  }
}

/** A name sent on to the target as it is (the target answers for unknown or malformed names) */
function lengthName (field: string, x: unknown): string {
  if (typeof x !== 'string' || x === '' || x.length > MAX_NAME_LENGTH) { throw badRequest(`${field}: a string of 1 to ${MAX_NAME_LENGTH} characters is required`) }
  return x
}

function parseArgList (x: unknown): string[] {
  if (x == null) { return [] }
  if (!Array.isArray(x) || x.length > MAX_ARGS || !x.every(a => typeof a === 'string' && a.length <= MAX_ARG_LENGTH)) {
    throw badRequest(`args: an array of at most ${MAX_ARGS} strings of at most ${MAX_ARG_LENGTH} characters`)
  }
  return x
}
