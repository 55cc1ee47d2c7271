/**
 * The client's bidding strategy (spec "Decloud - Client", response
 * handling): "If too-low: based on bidding strategy, either increase payment
 * or exit. If no-defer: based on bidding strategy, either switch to
 * attached payment or exit."
 *
 * `payAndCall` starts from the amount given (or, for `auto`, from the
 * seller's own price: the acceptable-payment of its first too-low answer),
 * raises toward `max` on too-low (never above it), switches a refused
 * deferred payment to an attached one when allowed, and otherwise gives up
 * with a `PaymentRefusedError` that carries the seller's detail and every
 * amount tried. It branches on the answer's status and typed reason
 * (docs/protocol.md "Reasons"), never on the seller's detail text.
 *
 * `auto` takes the kind of payment the seller names: a seller offers a
 * deferred promise to a caller its policy lets run a tab, and a promise
 * costs no transaction. An attached payment costs more than the price: the
 * output is at least the dust limit (294 sat) and the transaction pays a
 * network fee; `onAttached` hears that breakdown before the transaction is
 * sent, and the result carries it (`cost`).
 */
import { isPeerId } from '@libp2p/interface'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { statusPath } from '../../protocols/opencloud/api/status.js'
import { PaymentType, Reason, Status } from '../../protocols/opencloud/pb/opencloud.js'
import { DUST_P2WPKH } from '../wallet/wallet.js'
import { sellerAddress } from './promises.js'
import type { PromiseBook } from './promises.js'
import type { CallRequest, CallResult, CallTarget } from '../../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../../protocols/opencloud/net/opencloud.js'
import type { ChainBackend, PaymentWallet } from '../types.js'

export type PayOption =
  /** attach a transaction of this many sats */
  | { kind: 'attached', amount: bigint }
  /** promise this many sats under the seller's current tab */
  | { kind: 'defer', amount: bigint, threshold?: string }
  /** free if the method is free, else the seller's asking price in the kind it asks for */
  | { kind: 'auto' }

export interface PayAndCallOptions {
  pay: PayOption
  /** the most to pay (or promise) for this call, sats */
  max: bigint
  wallet: PaymentWallet
  promises: PromiseBook
  /**
   * The wallet's chain: tells whether a transaction the seller did not
   * accept was broadcast anyway. Without it such a payment's coins stay
   * reserved (never spent twice) until the wallet sees them spent.
   */
  backend?: ChainBackend
  /** switch to an attached payment when the seller refuses to defer @default true */
  allowAttached?: boolean
  /** answers to handle before giving up @default 8 */
  maxAttempts?: number
  /**
   * Told what an attached payment really costs, once its transaction is
   * built and before it is sent (e.g. to print it)
   */
  onAttached?(cost: AttachedCost): void | Promise<void>
  signal?: AbortSignal
}

/** What an attached payment costs the payer, sats */
export interface AttachedCost {
  /** the bid: the seller's price, or the amount given */
  price: bigint
  /** the least a bitcoin output may carry (a standard P2WPKH output): 294 */
  dustMinimum: bigint
  /** what the transaction pays the seller: the price, raised to the dust minimum */
  amount: bigint
  /** the network fee of the transaction */
  fee: bigint
  /** amount + fee: what leaves the wallet */
  total: bigint
}

export interface BidAttempt {
  kind: 'none' | 'attached' | 'defer'
  amount: bigint
  /** status path of the answer */
  path: string
  /** its typed reason (unspecified on ok) */
  reason: Reason
}

export interface PaidCallResult extends CallResult {
  /** how the call was finally paid */
  kind: 'none' | 'attached' | 'defer'
  /** sats sent in an attached transaction */
  paid: bigint
  /** sats promised under `deferId` */
  promised: bigint
  txid?: string
  deferId?: string
  /** what the attached payment cost (kind `attached`) */
  cost?: AttachedCost
  /** every request sent, in order */
  attempts: BidAttempt[]
}

/** The seller would not take any payment the strategy was allowed to make */
export class PaymentRefusedError extends Error {
  static override name = 'PaymentRefusedError'
  override name = 'PaymentRefusedError'
  /** the seller's last detail */
  readonly detail: string
  /** status path of the last answer */
  readonly path: string
  /** the typed reason of the last answer */
  readonly reason: Reason
  readonly attempts: BidAttempt[]
  /** amounts tried, in order */
  readonly tried: bigint[]
  readonly max: bigint
  /** what the seller last asked for, when it said */
  readonly asked?: bigint
  /**
   * An attached payment that is (or may be) out although the seller declined
   * the call, e.g. for want of confirmations: its coins stay reserved, and
   * the same transaction can be sent again later
   */
  readonly pending?: { txid: string, raw: Uint8Array }

  constructor (message: string, init: { detail: string, path: string, reason?: Reason, attempts: BidAttempt[], max: bigint, asked?: bigint, pending?: { txid: string, raw: Uint8Array } }) {
    const tried = init.attempts.filter(a => a.kind !== 'none').map(a => a.amount)
    super(`${message}; tried ${tried.length === 0 ? 'no payment' : tried.map(a => `${a} sat`).join(', ')} (max ${init.max} sat)${init.detail !== '' ? `; seller said: ${init.detail}` : ''}`)
    this.detail = init.detail
    this.path = init.path
    this.reason = init.reason ?? Reason.REASON_UNSPECIFIED
    this.attempts = init.attempts
    this.tried = tried
    this.max = init.max
    this.asked = init.asked
    this.pending = init.pending
  }
}

/** Statuses a seller answers before its payment gate has taken anything */
const BEFORE_PAYMENT = new Set<Status>([
  Status.TOO_LOW, Status.NO_DEFER, Status.REFRESH_NONCE, Status.ACCESS_DENIED, Status.RATE_LIMITED,
  Status.REQUEST_DECLINED, Status.INVALID_SIGNATURE, Status.SERVICE_UNSUPPORTED, Status.METHOD_UNSUPPORTED
])

/** The peer id a target names, or undefined when it names none */
export function peerOfTarget (target: CallTarget): string | undefined {
  if (isPeerId(target)) { return target.toString() }
  try {
    const ma = isMultiaddr(target) ? target : (typeof target === 'string' && target.startsWith('/') ? multiaddr(target) : undefined)
    if (ma == null) { return typeof target === 'string' && /^[A-Za-z0-9]{1,128}$/.test(target) ? target : undefined }
    return ma.getComponents().findLast(c => c.name === 'p2p')?.value
  } catch {
    return undefined
  }
}

function targetString (target: CallTarget): string {
  return isPeerId(target) || isMultiaddr(target) ? target.toString() : target
}

/**
 * Calls a service method, paying for it by the bidding strategy.
 *
 * @example
 * ```ts
 * const res = await payAndCall(node.services.opencloud, sellerAddr,
 *   { service: 'storage', method: 'put', body },
 *   { pay: { kind: 'defer', amount: 50n, threshold: 'value:5000' }, max: 500n, wallet, promises: book })
 * console.log(res.kind, res.promised, res.deferId)
 * ```
 */
export async function payAndCall (opencloud: OpenCloud, target: CallTarget, call: CallRequest, opts: PayAndCallOptions): Promise<PaidCallResult> {
  if (typeof opts.max !== 'bigint' || opts.max < 0n) { throw new RangeError('max must be a non-negative bigint (sats)') }
  return new Bid(opencloud, target, call, opts).run()
}

type Kind = 'none' | 'attached' | 'defer'

/** What one request of a bid sent and got */
interface Sent {
  res: CallResult
  /** attached: the payment, unless its coins were given back */
  txid?: string
  /** attached: the raw transaction of `txid` */
  raw?: Uint8Array
  /** attached: what it cost */
  cost?: AttachedCost
  deferId?: string
}

/** One call's bidding: the current bid, what was tried, and the seller's answers */
class Bid {
  private kind: Kind
  private amount: bigint
  /** the amount bid before an attached payment was raised to the dust limit */
  private price: bigint
  private readonly threshold: string
  private seller?: string
  private readonly attempts: BidAttempt[] = []
  private last?: CallResult

  constructor (private readonly opencloud: OpenCloud, private readonly target: CallTarget, private readonly call: CallRequest, private readonly opts: PayAndCallOptions) {
    const pay = opts.pay
    this.kind = pay.kind === 'auto' ? 'none' : pay.kind
    this.amount = pay.kind === 'auto' ? 0n : pay.amount
    this.price = this.amount
    this.threshold = pay.kind === 'defer' ? pay.threshold ?? '' : ''
    if (typeof this.amount !== 'bigint' || this.amount < 0n) { throw new RangeError('amount must be a non-negative bigint (sats)') }
    this.seller = peerOfTarget(target)
  }

  async run (): Promise<PaidCallResult> {
    const { max } = this.opts
    while (this.attempts.length < (this.opts.maxAttempts ?? 8)) {
      // a bitcoin output below the dust limit is not relayed: an attached payment pays at least that
      if (this.kind === 'attached' && this.amount < DUST_P2WPKH) {
        if (DUST_P2WPKH > max) { this.giveUp(`an attached payment is at least ${DUST_P2WPKH} sat (the dust limit of a bitcoin output), over the max of ${max} sat: raise the max or pay deferred`, this.amount) }
        this.amount = DUST_P2WPKH
      }
      if (this.amount > max) { this.giveUp(`${this.call.service}.${this.call.method} would cost ${this.amount} sat, over the max`, this.amount) }
      const sent = await this.send()
      const { res } = sent
      this.seller ??= res.peer.toString()
      this.attempts.push({ kind: this.kind, amount: this.amount, path: res.path, reason: res.reason })
      this.last = res
      if (!BEFORE_PAYMENT.has(res.status) && res.status !== Status.PAYMENT_DECLINED) { return this.done(sent) }
      const before = this.amount
      await this.next(sent)
      if (this.amount !== before) { this.price = this.amount }
    }
    return this.giveUp(`gave up after ${this.attempts.length} attempts`)
  }

  private giveUp (message: string, asked?: bigint, pending?: { txid: string, raw: Uint8Array }): never {
    throw new PaymentRefusedError(message, { detail: this.last?.detail ?? '', path: this.last?.path ?? '', reason: this.last?.reason, attempts: this.attempts, max: this.opts.max, asked, pending })
  }

  /** Sends the call with the current bid */
  private async send (): Promise<Sent> {
    const { opencloud, target, call, opts } = this
    const options = { signal: opts.signal }
    if (this.kind === 'none') {
      return { res: await opencloud.call(target, { ...call, paymentType: PaymentType.PAYMENT_NONE, payment: undefined }, options) }
    }
    const seller = this.seller ?? await learnSeller(opencloud, target, opts.signal)
    this.seller = seller
    if (this.kind === 'defer') {
      const deferId = await opts.promises.deferIdFor(seller, this.threshold)
      const res = await opencloud.call(target, {
        ...call,
        paymentType: PaymentType.PAYMENT_DEFER,
        payment: { currency: 'BTC', amount: this.amount, txn: new Uint8Array(0), deferId, deferThreshold: this.threshold }
      }, options)
      return { res, deferId }
    }
    const address = await sellerAddress(opencloud, opts.promises, seller, target, options)
    const payment = await opts.wallet.createPayment(address, this.amount)
    const cost: AttachedCost = { price: this.price, dustMinimum: DUST_P2WPKH, amount: payment.amount, fee: payment.fee, total: payment.amount + payment.fee }
    if (opts.onAttached != null) {
      try {
        await opts.onAttached(cost)
      } catch (err) {
        await opts.wallet.release(payment.txid)
        throw err
      }
    }
    let res: CallResult
    try {
      res = await opencloud.call(target, {
        ...call,
        paymentType: PaymentType.PAYMENT_ATTACHED,
        payment: { currency: 'BTC', amount: this.amount, txn: payment.raw as Uint8Array<ArrayBuffer>, deferId: '', deferThreshold: '' }
      }, options)
    } catch (err) {
      // no answer: the seller may have broadcast it
      await releaseUnlessBroadcast(opts.wallet, opts.backend, payment.txid, false)
      throw err
    }
    if (res.ok) { return { res, txid: payment.txid, cost } }
    const out = await releaseUnlessBroadcast(opts.wallet, opts.backend, payment.txid, BEFORE_PAYMENT.has(res.status))
    return out ? { res, txid: payment.txid, raw: payment.raw, cost } : { res }
  }

  /** Served, or refused by the method after the payment gate let the call through */
  private async done ({ res, txid, deferId, cost }: Sent): Promise<PaidCallResult> {
    const { kind, amount } = this
    if (kind === 'defer' && deferId != null && amount > 0n && this.seller != null) {
      await this.opts.promises.record({ seller: this.seller, target: targetString(this.target), deferId, amount, threshold: this.threshold, certain: res.ok })
    }
    return {
      ...res,
      kind,
      paid: kind === 'attached' && txid != null ? amount : 0n,
      promised: kind === 'defer' ? amount : 0n,
      txid: kind === 'attached' ? txid : undefined,
      cost: kind === 'attached' && txid != null ? cost : undefined,
      deferId: kind === 'defer' ? deferId : undefined,
      attempts: this.attempts
    }
  }

  /** The next bid after a refusal, or gives up */
  private async next ({ res, deferId, txid, raw }: Sent): Promise<void> {
    const { max, promises: book } = this.opts
    const acceptable = res.acceptablePayment
    const asked = acceptable?.amount
    switch (res.status) {
      case Status.TOO_LOW: {
        if (this.kind === 'none') {
          // auto: the seller's own price, in the kind it asks for
          if (acceptable == null) { this.giveUp(`${this.call.service}.${this.call.method} is not free and the seller named no price`) }
          this.kind = acceptable.paymentType === PaymentType.PAYMENT_DEFER ? 'defer' : 'attached'
          this.amount = acceptable.amount
          return
        }
        if (asked != null && asked > max) { this.giveUp(`the seller asks ${asked} sat, over the max`, asked) }
        if (this.amount >= max) { this.giveUp('too low at the max', asked) }
        // the seller's price when it names one above ours, else double (toward max)
        const next = asked != null && asked > this.amount ? asked : (this.amount === 0n ? 1n : this.amount * 2n)
        this.amount = next > max ? max : next
        return
      }
      case Status.NO_DEFER: {
        const seller = this.seller
        if (this.kind === 'defer' && seller != null && deferId != null && res.reason === Reason.REASON_TAB_SETTLED) {
          // the tab was settled meanwhile: promise again under a new defer id
          await book.rotate(seller, deferId)
          return
        }
        if (this.kind !== 'defer' || this.opts.allowAttached === false) { this.giveUp('the seller does not take a deferred payment for this call', asked) }
        if (seller != null && deferId != null && (res.reason === Reason.REASON_TAB_DUE || res.reason === Reason.REASON_TAB_BROKEN)) {
          // this tab is due (or overdue) at the seller: pay it at the next fulfilment run
          await book.markDue(seller, deferId)
        }
        this.kind = 'attached'
        if (asked != null && asked > this.amount) { this.amount = asked }
        return
      }
      case Status.REFRESH_NONCE:
        // the client already retried with fresh nonces: try again
        return
      default:
        this.giveUp(`the seller declined the payment (${statusPath(res.status)})`, asked, txid != null && raw != null ? { txid, raw } : undefined)
    }
  }
}

/**
 * Gives back a payment's coins unless the seller may have broadcast it.
 * Returns true when the payment is (or may be) out.
 */
async function releaseUnlessBroadcast (wallet: PaymentWallet, backend: ChainBackend | undefined, txid: string, surelyNot: boolean): Promise<boolean> {
  if (!surelyNot) {
    if (backend == null) { return true }
    try {
      if (await backend.transaction(txid) != null) { return true }
    } catch {
      return true
    }
  }
  await wallet.release(txid)
  return false
}

/** The peer id behind a target without /p2p/: asks its `info` service */
async function learnSeller (opencloud: OpenCloud, target: CallTarget, signal?: AbortSignal): Promise<string> {
  const res = await opencloud.call(target, { service: 'info', method: 'info' }, { signal })
  return res.peer.toString()
}
