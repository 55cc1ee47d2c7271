/**
 * The server's payment gate: the pipeline stage that decides, from the
 * request's payment-type and payment, whether a call is paid for (spec
 * "Request processing": "Based on payment, do we serve this request?").
 *
 * - `none`: free methods pass; a priced one is paid from the payer's credit
 * here when it covers the price (`CreditStore`), else answered too-low with
 * an acceptable payment of its price: deferred when this payer may defer
 * it (signed, policy, tab limit), attached otherwise.
 * - `attached`: a raw bitcoin transaction paying the payer's own address of
 * this node (`payments.address`). Its outputs are summed, its txid is
 * reserved (once per node, ever), it is broadcast through the chain
 * backend, a receipt is written, and whatever it pays beyond the call's
 * cost is credited to the tab it names (`defer_id`), or else to the payer's
 * credit here.
 * - `defer`: a signed promise to pay later, recorded on the payer's tab
 * (`TabStore`) with its evidence, within the tab limit and policy.
 *
 * What the node's policy decided for the call (may it be deferred, the tab
 * limit) is read from `state.policy`, written by the policy's access stage.
 * Refusals carry a typed reason (docs/protocol.md "Reasons") beside the
 * detail: a tab's own outcome (settled, due, broken, full) becomes one.
 *
 * The gate sets `state.payment` when it lets a call through. Money taken for
 * a call (an attached transaction, or credit) is held until the call is
 * answered: a call that is not served (any status but ok) gets its price
 * back as credit, as a deferred promise is taken off its tab. Amounts are
 * bigint satoshis throughout.
 */
import { InvalidMessageError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { Transaction } from '@scure/btc-signer'
import { costOf } from '../../protocols/opencloud/api/call.js'
import { openCloudId, OPENCLOUD_ID_PREFIX, sha256 } from '../../protocols/opencloud/api/signing.js'
import { PaymentType, Reason, Status } from '../../protocols/opencloud/pb/opencloud.js'
import { json } from '../../util/json.js'
import { TxRejectedError } from '../types.js'
import { CreditStore } from './credits.js'
import { DEFER_ID, InvalidThresholdError, parseThreshold } from './tabs.js'
import type { PromiseRefusal, TabStore, Threshold } from './tabs.js'
import type { CallState, Reply, Stage } from '../../protocols/opencloud/api/call.js'
import type { AcceptedPayment } from '../../protocols/opencloud/api/template.js'
import type { ServiceCall } from '../../protocols/opencloud/api/template.js'
import type { Payment } from '../../protocols/opencloud/pb/opencloud.js'
import type { SubDb } from '../../store/index.js'
import type { ChainBackend, PaymentWallet } from '../types.js'
import type { Logger, PeerId } from '@libp2p/interface'

/** Default most a single tab may owe: 100,000 sat */
export const DEFAULT_MAX_TAB = 100_000n
/**
 * Largest attached transaction: 100 kB, the standard relay limit
 * (400,000 weight units) for a transaction without witness discount
 */
export const MAX_TX_SIZE = 100_000
/** Longest reason from the chain backend passed on to the payer */
const MAX_REASON = 200

export interface PaymentGateInit {
  /** receives attached payments; `addressFor(payer)` is each payer's address */
  wallet: PaymentWallet
  /** broadcasts attached transactions and reports confirmations */
  backend: ChainBackend
  /** receipts of attached payments (txids used), e.g. `store.sub('payments')` */
  db: SubDb
  tabs: TabStore
  /**
   * The most one tab may owe when the call carries no policy terms
   * (`state.policy`, whose `maxTab` wins) @default 100_000n
   */
  maxTab?: bigint
  /**
   * Confirmations an attached transaction needs. 0 accepts it once the
   * backend took it into its mempool; more answers payment-declined until
   * then (the payer sends the same transaction again later).
   *
   * @default 0
   */
  minConfirmations?: number
  /**
   * Accept unconfirmed transactions that signal replace-by-fee (BIP-125),
   * which the payer could replace with one paying itself. Only matters with
   * `minConfirmations` 0.
   *
   * @default false
   */
  acceptReplaceable?: boolean
  /** @default MAX_TX_SIZE */
  maxTxSize?: number
  /** @default logger('decloud:payments') */
  log?: Logger
}

/** What the gate remembers of an attached transaction (key `x/<txid>`) */
export interface Receipt {
  txid: string
  /** `pending` reserved (broadcast may not have happened), `waiting` for confirmations, `accepted` used */
  status: 'pending' | 'waiting' | 'accepted'
  payer: string
  /** sats paid to the payer's address */
  amount: bigint
  /** price of the call it paid for */
  cost: bigint
  deferId?: string
  service: string
  method: string
  /** ms since the epoch */
  at: number
}

const dec = new TextDecoder()
const receiptKey = (txid: string): string => `x/${txid}`
const encodeReceipt = (r: Receipt): Uint8Array => json(r)

function decodeReceipt (bytes: Uint8Array): Receipt {
  const o = JSON.parse(dec.decode(bytes))
  return { ...o, amount: BigInt(o.amount), cost: BigInt(o.cost) }
}

/**
 * Who pays: the first verified OpenCloud ID credential, or the transport's
 * peer (authenticated by noise) when the request carried none. Tabs and
 * payment addresses are keyed by it.
 */
export function payerOf (credentials: readonly string[], peer: PeerId): string {
  return credentials.find(c => c.startsWith(OPENCLOUD_ID_PREFIX)) ?? openCloudId(peer)
}

export function payerOfCall (call: Pick<ServiceCall, 'credentials' | 'peer'>): string {
  return payerOf(call.credentials, call.peer)
}

function isRejection (err: any): err is TxRejectedError {
  return err instanceof TxRejectedError || err?.name === 'TxRejectedError'
}

function bounded (s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?')
  return clean.length > MAX_REASON ? `${clean.slice(0, MAX_REASON)}…` : clean
}

/** The wire reason of a promise the tab store refused (threshold is a bad request: handled apart) */
const TAB_REASONS: Record<Exclude<PromiseRefusal, 'threshold'>, Reason> = {
  settled: Reason.REASON_TAB_SETTLED,
  due: Reason.REASON_TAB_DUE,
  broken: Reason.REASON_TAB_BROKEN,
  'over-limit': Reason.REASON_TAB_LIMIT,
  'too-many-tabs': Reason.REASON_TAB_COUNT,
  'payer-broken': Reason.REASON_PAYER_BROKEN
}

const attachedOf = (cost: bigint): Reply['acceptablePayment'] => ({ paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: cost })
const deferOf = (cost: bigint): Reply['acceptablePayment'] => ({ paymentType: PaymentType.PAYMENT_DEFER, currency: 'BTC', amount: cost })

/**
 * The payment gate stage, replacing the default one.
 *
 * @example
 * ```ts
 * const tabs = new TabStore({ db: store.sub('tabs') })
 * openCloud({
 *   services: [storage, paymentsService({ wallet, tabs })],
 *   payment: paymentGate({ wallet, backend, db: store.sub('payments'), tabs })
 * })
 * ```
 */
export function paymentGate (init: PaymentGateInit): Stage {
  return new PaymentGate(init).stage
}

export class PaymentGate {
  private readonly init: PaymentGateInit
  private readonly log: Logger
  private readonly maxTxSize: number
  private readonly minConfirmations: number
  /** txids being processed right now: with the receipts in LevelDB, a txid passes once */
  private readonly inflight = new Set<string>()
  /** what payers paid here and have not used yet (in the gate's db, beside the receipts) */
  readonly credits: CreditStore

  constructor (init: PaymentGateInit) {
    this.init = init
    this.log = init.log ?? logger('decloud:payments')
    this.maxTxSize = init.maxTxSize ?? MAX_TX_SIZE
    this.minConfirmations = init.minConfirmations ?? 0
    this.credits = new CreditStore({ db: init.db })
  }

  readonly stage: Stage = async (state) => {
    // money held for calls a stopped process never answered goes back first (once)
    await this.credits.recover()
    const r = state.request
    const p = r.payment
    if (p != null && p.currency !== '' && p.currency !== 'BTC') {
      return { status: Status.BAD_REQUEST, detail: `this node takes payment in BTC (satoshis), not "${p.currency.slice(0, 16)}"` }
    }
    const cost = costOf(state)
    if (cost == null) { return { status: Status.TOO_LARGE, detail: 'this call is too large to be priced' } }
    switch (r.paymentType) {
      case PaymentType.PAYMENT_ATTACHED: return this.attached(state, p, cost)
      case PaymentType.PAYMENT_DEFER: return this.defer(state, p, cost)
      default: return this.none(state, cost)
    }
  }

  /** A receipt of an attached payment, by txid */
  async receipt (txid: string): Promise<Receipt | undefined> {
    if (!/^[0-9a-f]{64}$/.test(txid)) { return undefined }
    const v = await this.init.db.get(receiptKey(txid))
    return v == null ? undefined : decodeReceipt(v)
  }

  private async none (state: CallState, cost: bigint): Promise<Reply | undefined> {
    if (cost === 0n) {
      state.payment = { kind: 'none', amount: 0n, cost: 0n }
      return undefined
    }
    const r = state.request
    const payer = payerOf(state.credentials, state.peer)
    const taken = await this.credits.take(payer, cost)
    if (taken != null) {
      state.payment = { kind: 'credit', amount: cost, cost }
      this.holdUntilAnswered(state, taken.id)
      this.log.trace('%s sat of credit of %s paid %s.%s (%s sat left)', cost, payer, r.service, r.method, taken.left)
      return undefined
    }
    // a promise costs the payer no fee and no dust-sized output: offer it whenever it would be taken
    const offer = this.mayDefer(state, cost) ? deferOf(cost) : attachedOf(cost)
    return { status: Status.TOO_LOW, reason: Reason.REASON_PRICE, detail: `${r.service}.${r.method} costs ${cost} sat for this call`, acceptablePayment: offer }
  }

  /**
   * Would a promise of `cost` for this call be considered: signed, allowed
   * by policy, within the payer's tab limit. (The tab itself may still be
   * due or full: then the promise is answered no-defer, with an attached
   * payment to fall back on.)
   */
  private mayDefer (state: CallState, cost: bigint): boolean {
    if (state.credentials.length === 0) { return false }
    if ((state.policy?.defer ?? true) !== true) { return false }
    return cost <= this.maxTabOf(state)
  }

  /** The tab limit of this call's payer: the policy's, else the gate's */
  private maxTabOf (state: CallState): bigint {
    return state.policy?.maxTab ?? this.init.maxTab ?? DEFAULT_MAX_TAB
  }

  /** Money taken for this call stays held until it is answered: ok keeps it, anything else credits it back */
  private holdUntilAnswered (state: CallState, holdId: string): void {
    const cleanup = state.cleanup ?? (state.cleanup = [])
    cleanup.push(async (reply) => {
      const back = await this.credits.settle(holdId, reply?.status === Status.OK)
      if (back > 0n) { this.log('call %s.%s not served (%s): %s sat credited back', state.request.service, state.request.method, reply == null ? 'server-error' : `status ${reply.status}`, back) }
    })
  }

  private async attached (state: CallState, p: Payment | undefined, cost: bigint): Promise<Reply | undefined> {
    const r = state.request
    if (p == null || p.txn.byteLength === 0) { return { status: Status.BAD_REQUEST, detail: 'payment-type attached needs payment.txn (a raw bitcoin transaction)' } }
    if (p.txn.byteLength > this.maxTxSize) { return { status: Status.BAD_REQUEST, detail: `payment.txn exceeds ${this.maxTxSize} bytes` } }
    const deferId = p.deferId === '' ? undefined : p.deferId
    if (deferId != null && !DEFER_ID.test(deferId)) { return { status: Status.BAD_REQUEST, detail: 'payment.defer_id is 1 to 64 characters of A-Z a-z 0-9 . _ : -' } }
    let tx: Transaction
    try {
      tx = Transaction.fromRaw(p.txn, { allowUnknownOutputs: true, allowUnknownInputs: true, allowUnknownVersion: true, disableScriptCheck: true })
      if (tx.inputsLength === 0 || tx.outputsLength === 0) { throw new InvalidMessageError('no inputs or outputs') }
    } catch {
      return { status: Status.BAD_REQUEST, detail: 'payment.txn is not a bitcoin transaction' }
    }
    const txid = tx.id
    if (this.minConfirmations === 0 && this.init.acceptReplaceable !== true && replaceable(tx)) {
      return { status: Status.BAD_REQUEST, detail: 'transaction signals replace-by-fee (BIP-125): this node accepts unconfirmed payments only when they cannot be replaced' }
    }
    const payer = payerOf(state.credentials, state.peer)
    const { wallet } = this.init
    const mine: Array<{ to: string, amount: bigint }> = []
    for (let i = 0; i < tx.outputsLength; i++) {
      const amount = tx.getOutput(i).amount
      let to: string | undefined
      try {
        to = tx.getOutputAddress(i, wallet.network)
      } catch {
        to = undefined
      }
      if (to != null && amount != null && wallet.isMine(to)) { mine.push({ to, amount }) }
    }
    // only outputs to the payer's own address count, so nobody can present
    // a transaction someone else made to this node as theirs; the address is
    // looked up only for transactions that pay this node at all
    const address = mine.length > 0 ? await wallet.addressFor(payer) : undefined
    let paid = 0n
    let elsewhere = 0n
    for (const o of mine) {
      if (o.to === address) { paid += o.amount } else { elsewhere += o.amount }
    }
    const where = elsewhere > 0n ? ` (${elsewhere} sat go to another of this node's addresses: pay the one payments.address gives you)` : ''
    if (paid < cost || (paid === 0n && cost === 0n)) {
      const detail = `${r.service}.${r.method} costs ${cost} sat; the transaction pays ${paid} sat to your payment address${where}`
      if (cost === 0n) { return { status: Status.BAD_REQUEST, detail } }
      return { status: Status.TOO_LOW, reason: Reason.REASON_PRICE, detail, acceptablePayment: attachedOf(cost) }
    }

    // reserve the txid: the in-memory set covers requests in flight, the
    // receipt in LevelDB every request before
    if (this.inflight.has(txid)) { return { status: Status.BAD_REQUEST, reason: Reason.REASON_TX_USED, detail: `transaction ${txid} was already used` } }
    this.inflight.add(txid)
    try {
      const { db } = this.init
      const prev = await this.receipt(txid)
      if (prev != null) {
        const same = prev.payer === payer && prev.deferId === deferId
        if (prev.status === 'accepted') {
          // the one exception: a payer resending the settle transaction of
          // a tab (it may have crashed before it read the answer)
          if (same && deferId != null && prev.cost === 0n && cost === 0n) {
            state.payment = { kind: 'attached', amount: prev.amount, cost, txid, deferId }
            return undefined
          }
          return { status: Status.BAD_REQUEST, reason: Reason.REASON_TX_USED, detail: `transaction ${txid} was already used` }
        }
        // pending (interrupted) or waiting for confirmations: only its payer may finish it
        if (!same) { return { status: Status.BAD_REQUEST, reason: Reason.REASON_TX_USED, detail: `transaction ${txid} was already used` } }
      }
      const receipt: Receipt = { txid, status: 'pending', payer, amount: paid, cost, deferId, service: r.service, method: r.method, at: Date.now() }
      await db.put(receiptKey(txid), encodeReceipt(receipt))

      const refused = await this.broadcast(p.txn, txid)
      if (refused != null) {
        if (prev == null) { await db.del(receiptKey(txid)) }
        return refused
      }
      if (this.minConfirmations > 0) {
        const status = await this.confirmations(txid)
        if (status == null) { return { status: Status.SERVER_ERROR, detail: 'the chain backend is unavailable; try again later' } }
        if (status < this.minConfirmations) {
          await db.put(receiptKey(txid), encodeReceipt({ ...receipt, status: 'waiting' }))
          return {
            status: Status.PAYMENT_DECLINED,
            reason: Reason.REASON_CONFIRMATIONS,
            detail: `transaction ${txid} has ${status} of the ${this.minConfirmations} confirmations this node requires: send the same transaction again once it has them`
          }
        }
      }
      // credit first, then mark the receipt used: a crash in between leaves a
      // pending receipt the payer can finish, and credits are idempotent per txid
      // (nothing beyond the price: no tab is touched, none is opened empty)
      if (deferId != null && paid > cost) {
        await this.init.tabs.credit({ payer, deferId, amount: paid - cost, txid })
      }
      // without a tab, what it pays beyond the price is the payer's credit here (one batch with
      // the receipt, so it is credited once); the price is held until the call is answered
      const excess = deferId == null ? paid - cost : 0n
      await this.credits.add(payer, excess, {
        hold: { id: txid, amount: cost },
        extra: [{ type: 'put', key: receiptKey(txid), value: encodeReceipt({ ...receipt, status: 'accepted' }) }]
      })
      if (cost > 0n) { this.holdUntilAnswered(state, txid) }
      const accepted: AcceptedPayment = { kind: 'attached', amount: paid, cost, txid, deferId }
      state.payment = accepted
      this.log.trace('accepted %s sat in %s from %s for %s.%s', paid, txid, payer, r.service, r.method)
      return undefined
    } finally {
      this.inflight.delete(txid)
    }
  }

  /** Broadcasts; answers the refusal to send, or undefined when the backend has the transaction */
  private async broadcast (raw: Uint8Array, txid: string): Promise<Reply | undefined> {
    try {
      await this.init.backend.broadcast(raw)
      return undefined
    } catch (err: any) {
      if (isRejection(err)) {
        switch (err.kind) {
          case 'already-known': return undefined
          case 'double-spend': return { status: Status.BAD_REQUEST, detail: 'transaction conflicts with a spent output (double spend)' }
          case 'fee': return { status: Status.BAD_REQUEST, detail: `transaction fee refused: ${bounded(err.reason)}` }
          case 'invalid': return { status: Status.BAD_REQUEST, detail: `transaction is invalid: ${bounded(err.reason)}` }
          default: return { status: Status.BAD_REQUEST, detail: `transaction refused: ${bounded(err.reason)}` }
        }
      }
      this.log.error('broadcast of %s failed - %e', txid, err)
      return { status: Status.SERVER_ERROR, detail: 'the chain backend is unavailable; try again later' }
    }
  }

  private async confirmations (txid: string): Promise<number | undefined> {
    try {
      const s = await this.init.backend.transaction(txid)
      return s?.confirmations ?? 0
    } catch (err: any) {
      this.log.error('status of %s unavailable - %e', txid, err)
      return undefined
    }
  }

  private async defer (state: CallState, p: Payment | undefined, cost: bigint): Promise<Reply | undefined> {
    const r = state.request
    if (p == null) { return { status: Status.BAD_REQUEST, detail: 'payment-type defer needs payment (amount, defer_id)' } }
    if (!DEFER_ID.test(p.deferId)) { return { status: Status.BAD_REQUEST, detail: 'payment.defer_id is required: 1 to 64 characters of A-Z a-z 0-9 . _ : -' } }
    let threshold: Threshold | undefined
    try {
      threshold = p.deferThreshold === '' ? undefined : parseThreshold(p.deferThreshold)
    } catch (err: any) {
      if (err instanceof InvalidThresholdError) { return { status: Status.BAD_REQUEST, detail: err.message } }
      throw err
    }
    if (p.amount < cost) {
      return { status: Status.TOO_LOW, reason: Reason.REASON_PRICE, detail: `${r.service}.${r.method} costs ${cost} sat for this call; the promise is for ${p.amount} sat`, acceptablePayment: deferOf(cost) }
    }
    const attached = cost > 0n ? attachedOf(cost) : undefined
    if (state.credentials.length === 0) {
      // spec: the server must not accept a defer id without a valid signature on the request
      return { status: Status.NO_DEFER, reason: Reason.REASON_DEFER_UNSIGNED, detail: 'a deferred payment must be signed (id + sig): the signed request is the promise', acceptablePayment: attached }
    }
    const allowed = state.policy?.defer ?? true
    if (allowed !== true) {
      return { status: Status.NO_DEFER, reason: Reason.REASON_DEFER_POLICY, detail: allowed, acceptablePayment: attached }
    }
    if (p.amount === 0n) {
      state.payment = { kind: 'defer', amount: 0n, cost, deferId: p.deferId }
      return undefined
    }
    const payer = payerOf(state.credentials, state.peer)
    const maxTab = this.maxTabOf(state)
    const out = await this.init.tabs.promise({
      payer,
      deferId: p.deferId,
      amount: p.amount,
      threshold,
      maxTab,
      request: r,
      bodyHash: state.bodyHash ?? sha256(r.body)
    })
    if (!out.ok) {
      if (out.reason === 'threshold') { return { status: Status.BAD_REQUEST, reason: Reason.REASON_TAB_THRESHOLD, detail: out.detail } }
      return { status: Status.NO_DEFER, reason: TAB_REASONS[out.reason], detail: out.detail, acceptablePayment: attached }
    }
    state.payment = { kind: 'defer', amount: p.amount, cost, deferId: p.deferId }
    // a call that is then not served (the method fails) owes nothing: take the promise back
    const deferId = p.deferId
    const amount = p.amount
    const cleanup = state.cleanup ?? (state.cleanup = [])
    cleanup.push(async (reply) => {
      if (reply?.status === Status.OK) { return }
      await this.init.tabs.withdraw({ payer, deferId, amount, reason: reply == null ? 'server-error' : `status ${reply.status}` })
        .catch((err: any) => { this.log.error('could not take back the promise of %s on tab %s - %e', payer, deferId, err) })
    })
    return undefined
  }
}

/** BIP-125: an input with nSequence below 0xfffffffe signals replaceability */
function replaceable (tx: Transaction): boolean {
  for (let i = 0; i < tx.inputsLength; i++) {
    const seq = tx.getInput(i).sequence
    if (seq != null && seq < 0xfffffffe) { return true }
  }
  return false
}
