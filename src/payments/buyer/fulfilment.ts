/**
 * The loop that pays deferred promises when they fall due (spec "Decloud -
 * Client": "Fulfill deferred payments"); the book it pays from is
 * `promises.ts`.
 */
import { InvalidMessageError, ProtocolError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { PaymentType, Status } from '../../protocols/opencloud/pb/opencloud.js'
import { TxRejectedError } from '../types.js'
import { DUST_P2WPKH } from '../wallet/wallet.js'
import { owedOn } from './promise.js'
import { sellerAddress } from './promises.js'
import type { DeferredPromise, PendingPayment } from './promise.js'
import type { PromiseBook } from './promises.js'
import type { OpenCloud } from '../../protocols/opencloud/net/opencloud.js'
import type { ChainBackend, PaymentWallet } from '../types.js'
import type { AbortOptions, Logger, Startable } from '@libp2p/interface'

const dec = new TextDecoder()

export interface FulfilmentLoopInit {
  opencloud: OpenCloud
  wallet: PaymentWallet
  /** the chain the wallet pays on: the loop broadcasts each payment itself before sending it */
  backend: ChainBackend
  book: PromiseBook
  /** ms between runs @default 30_000 */
  interval?: number
  /** pay time-threshold promises this many ms before they are due @default 60_000 */
  lead?: number
  /** time allowed for one call to a seller (ms) @default 30_000 */
  callTimeout?: number
  /** promises handled per run at most @default 64 */
  maxPerRun?: number
  /** @default logger('decloud:fulfilment') */
  log?: Logger
}

export interface FulfilmentReport {
  /** promises settled in this run */
  settled: Array<{ seller: string, deferId: string, txid: string, amount: bigint }>
  /** promises that could not be paid this run (retried next run) */
  failed: Array<{ seller: string, deferId: string, error: string }>
}

/**
 * Pays deferred promises when they fall due: every `interval`, and once as
 * soon as it starts, so nothing is forgotten after a restart.
 *
 * For each due promise: reuse the persisted payment if one is under way,
 * else ask the seller what the tab owes, build the payment to the seller's
 * address and persist it; broadcast it; call `payments.settle <deferId>`
 * with it attached; mark the promise settled when the seller answers ok.
 */
export class FulfilmentLoop implements Startable {
  private readonly init: FulfilmentLoopInit
  private readonly log: Logger
  private readonly interval: number
  private readonly lead: number
  private readonly callTimeout: number
  private readonly maxPerRun: number
  private timer?: ReturnType<typeof setTimeout>
  private running: Promise<FulfilmentReport> = Promise.resolve({ settled: [], failed: [] })
  private controller = new AbortController()
  private started = false

  constructor (init: FulfilmentLoopInit) {
    this.init = init
    this.log = init.log ?? logger('decloud:fulfilment')
    this.interval = init.interval ?? 30_000
    this.lead = init.lead ?? 60_000
    this.callTimeout = init.callTimeout ?? 30_000
    this.maxPerRun = init.maxPerRun ?? 64
  }

  isStarted (): boolean {
    return this.started
  }

  async start (): Promise<void> {
    if (this.started) { return }
    this.started = true
    const controller = this.controller = new AbortController()
    // the first pass now: a promise left half-paid before a restart is finished first
    this.runOnce().catch((err) => { this.log.error('fulfilment run failed - %e', err) }).finally(() => {
      this.schedule(controller, this.interval)
    })
  }

  async stop (): Promise<void> {
    if (!this.started) { return }
    this.started = false
    clearTimeout(this.timer)
    this.controller.abort()
    await this.running.catch(() => {})
  }

  /** Resolves when the run in progress (if any) is over, with its report */
  async idle (): Promise<FulfilmentReport> {
    return this.running
  }

  /** The next run of the chain `controller` started, unless it was stopped (a start since has its own chain) */
  private schedule (controller: AbortController, delay: number): void {
    if (!this.started || this.controller !== controller) { return }
    this.timer = setTimeout(() => {
      this.runOnce().catch((err) => { this.log.error('fulfilment run failed - %e', err) }).finally(() => {
        this.schedule(controller, this.interval)
      })
    }, delay)
    this.timer.unref?.()
  }

  /** One pass over the due promises; runs are never concurrent */
  async runOnce (now?: number): Promise<FulfilmentReport> {
    if (!this.started && this.controller.signal.aborted) { this.controller = new AbortController() }
    const run = this.running.catch(() => undefined).then(async () => this.pass(now))
    this.running = run
    return run
  }

  private async pass (now?: number): Promise<FulfilmentReport> {
    const report: FulfilmentReport = { settled: [], failed: [] }
    const due = (await this.init.book.due(now ?? Date.now(), this.lead)).slice(0, this.maxPerRun)
    for (const p of due) {
      if (this.controller.signal.aborted) { break }
      try {
        const done = await this.settle(p)
        if (done != null) { report.settled.push({ seller: p.seller, deferId: p.deferId, txid: done.txid, amount: done.amount }) }
      } catch (err: any) {
        const error = String(err?.message ?? err)
        report.failed.push({ seller: p.seller, deferId: p.deferId, error })
        await this.init.book.noteError(p.seller, p.deferId, error)
        this.log('promise %s to %s not paid this run - %s', p.deferId, p.seller, error)
      }
    }
    return report
  }

  private options (): AbortOptions {
    return { signal: AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.callTimeout)]) }
  }

  /**
   * Builds and persists the payment of a due promise without sending it
   * (the first step of settling). Returns the promise in state `paying`;
   * a promise already in `paying` is returned as it is; undefined when
   * nothing is owed after all.
   */
  async prepare (p: DeferredPromise): Promise<DeferredPromise | undefined> {
    if (p.state === 'paying') { return p }
    const { opencloud, wallet, book } = this.init
    const amount = await this.amountToPay(p)
    if (amount === 0n) { return undefined }
    const address = await sellerAddress(opencloud, book, p.seller, p.target, this.options())
    const payment = await wallet.createPayment(address, amount < DUST_P2WPKH ? DUST_P2WPKH : amount)
    try {
      return await book.beginPayment(p.seller, p.deferId, { txid: payment.txid, raw: payment.raw, amount: payment.amount, address, at: Date.now() })
    } catch (err) {
      await wallet.release(payment.txid)
      throw err
    }
  }

  /**
   * What to pay: the seller's tab, bounded below by what was surely
   * promised and above by what may have been promised.
   */
  private async amountToPay (p: DeferredPromise): Promise<bigint> {
    const low = owedOn(p)
    const high = low + p.uncertain
    const res = await this.init.opencloud.call(p.target, { service: 'payments', method: 'tab', args: [p.deferId] }, this.options())
    if (res.status === Status.NOT_FOUND) { return low }
    if (!res.ok) { throw new ProtocolError(`payments.tab answered ${res.path}${res.detail !== '' ? `: ${res.detail}` : ''}`) }
    let owed: bigint
    try {
      owed = BigInt(JSON.parse(dec.decode(res.body)).owed)
    } catch {
      throw new InvalidMessageError('payments.tab answered something that is not a tab')
    }
    if (owed > high) { this.log('seller %s claims %s sat on tab %s; at most %s were promised', p.seller, owed, p.deferId, high) }
    return owed < low ? low : owed > high ? high : owed
  }

  /** Pays one due promise; undefined when nothing had to be paid */
  private async settle (p: DeferredPromise): Promise<PendingPayment | undefined> {
    const { opencloud, wallet, backend, book } = this.init
    const paying = await this.prepare(p)
    if (paying == null) {
      // only uncertain promises, which the seller did not count: nothing to pay
      await book.close(p.seller, p.deferId)
      return undefined
    }
    const payment = paying.payment as PendingPayment
    // broadcast it ourselves first: once the chain has it, its coins are
    // spent for good and the seller's broadcast is `already-known`
    try {
      await backend.broadcast(payment.raw)
    } catch (err: any) {
      if (!(err instanceof TxRejectedError || err?.name === 'TxRejectedError')) { throw err }
      if (err.kind !== 'already-known') {
        const known = await backend.transaction(payment.txid)
        if (known == null) {
          // it can never confirm: build another next run
          await book.abandonPayment(p.seller, p.deferId, payment.txid, `payment ${payment.txid} refused by the chain: ${String(err.reason)}`)
          await wallet.release(payment.txid)
          throw new PaymentRefusedByChainError(`payment ${payment.txid} refused by the chain (${String(err.reason)}); a new one will be built`)
        }
      }
    }
    const res = await opencloud.call(paying.target, {
      service: 'payments',
      method: 'settle',
      args: [p.deferId],
      paymentType: PaymentType.PAYMENT_ATTACHED,
      payment: { currency: 'BTC', amount: payment.amount, txn: payment.raw as Uint8Array<ArrayBuffer>, deferId: p.deferId, deferThreshold: '' }
    }, this.options())
    if (!res.ok) { throw new ProtocolError(`payments.settle answered ${res.path}${res.detail !== '' ? `: ${res.detail}` : ''}`) }
    await book.finishPayment(p.seller, p.deferId, payment.txid)
    this.log('paid %s sat on tab %s to %s in %s', payment.amount, p.deferId, p.seller, payment.txid)
    return payment
  }
}

/** The chain refused a settlement payment; a new one is built on the next round */
export class PaymentRefusedByChainError extends Error {
  static override name = 'PaymentRefusedByChainError'
  override name = 'PaymentRefusedByChainError'
}
