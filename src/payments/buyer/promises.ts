/**
 * Client side of deferred payments (spec "Decloud - Client": "Fulfill
 * deferred payments"): the book of promises this node made to sellers, and
 * the loop that pays them when they fall due.
 *
 * A promise is kept per (seller peer id, defer id): what was promised, what
 * was paid, the threshold, when it is due, and its state:
 *
 * - open → paying(txid, raw): the promise is due; the payment is built and
 * its raw transaction persisted;
 * - paying → settled: the seller answered ok;
 * - paying → open: more was promised meanwhile (paid again at the next run),
 * or the chain refused the transaction and does not know it.
 *
 * Exactly once: the raw transaction is written to LevelDB before it is
 * broadcast or sent, and a promise in `paying` is always finished with that
 * same transaction (same txid). After a crash anywhere, the loop sends it
 * again; the seller answers a settle transaction it already took with ok,
 * without crediting it twice. A transaction is only ever replaced once the
 * chain shows it can never confirm (its coins were spent by another).
 *
 * Layout (keys in the promises SubDb; peer ids and defer ids have no `/`):
 * - `p/<seller>/<deferId>`  the promise (JSON, amounts as decimal strings)
 * - `o/<seller>/<deferId>`  index of promises not settled
 * - `d/<seller>`            the defer id new promises to this seller go under
 * - `a/<seller>`            the seller's payment address for this node
 */
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { PaymentType, Status } from '../../protocols/opencloud/pb/opencloud.js'
import { KeyedMutex } from '../../util/locks.js'
import { Lru } from '../../util/lru.js'
import { DEFAULT_MAX_TAB_AGE, parseThreshold, formatThreshold } from '../seller/tabs.js'
import { TxRejectedError } from '../types.js'
import { DUST_P2WPKH } from '../wallet/wallet.js'
import type { CallTarget } from '../../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../../protocols/opencloud/net/opencloud.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { Threshold } from '../seller/tabs.js'
import type { ChainBackend, PaymentWallet } from '../types.js'
import type { AbortOptions, Logger, Startable } from '@libp2p/interface'

export type PromiseState = 'open' | 'paying' | 'settled'

/** A payment built for a promise, persisted before it leaves this node */
export interface PendingPayment {
  txid: string
  raw: Uint8Array
  amount: bigint
  address: string
  /** ms since the epoch */
  at: number
}

export interface DeferredPromise {
  /** the seller's peer id */
  seller: string
  deferId: string
  /** how to reach the seller: a multiaddr with /p2p/, or the peer id */
  target: string
  /** sats promised on calls the seller answered ok */
  promised: bigint
  /**
   * sats promised on calls that reached the seller but did not answer ok:
   * the seller may or may not have counted them
   */
  uncertain: bigint
  paid: bigint
  /** canonical defer-threshold */
  threshold: string
  openedAt: number
  /** when payment falls due; undefined while a value threshold is not reached */
  dueAt?: number
  /** the latest it falls due, whatever the threshold (sellers' default maximum tab age) */
  latestDue?: number
  promises: number
  state: PromiseState
  payment?: PendingPayment
  /** txids of payments made for it */
  txids: string[]
  settledAt?: number
  /** what went wrong the last time the loop tried to pay it */
  lastError?: string
  updatedAt: number
}

export interface RecordInput {
  seller: string
  target: string
  deferId: string
  amount: bigint
  threshold?: string
  /** false when the call did not answer ok (the seller may not count it) @default true */
  certain?: boolean
  now?: number
}

/** Payment ids in a promise's txid list */
const MAX_TXIDS = 16
/** Promises, defaults and addresses kept in memory */
const CACHE_SIZE = 10_000
const enc = new TextEncoder()
const dec = new TextDecoder()
const END = '\uffff'
const SELLER = /^[A-Za-z0-9]{1,128}$/

const promiseKey = (seller: string, id: string): string => `p/${seller}/${id}`
const openKey = (seller: string, id: string): string => `o/${seller}/${id}`
const defaultKey = (seller: string): string => `d/${seller}`
const addressKey = (seller: string): string => `a/${seller}`

function encodePromise (p: DeferredPromise): Uint8Array {
  return enc.encode(JSON.stringify({
    ...p,
    promised: p.promised.toString(),
    uncertain: p.uncertain.toString(),
    paid: p.paid.toString(),
    payment: p.payment == null ? undefined : { ...p.payment, raw: Buffer.from(p.payment.raw).toString('base64'), amount: p.payment.amount.toString() }
  }))
}

function decodePromise (bytes: Uint8Array): DeferredPromise {
  const o = JSON.parse(dec.decode(bytes))
  return {
    ...o,
    promised: BigInt(o.promised),
    uncertain: BigInt(o.uncertain),
    paid: BigInt(o.paid),
    payment: o.payment == null ? undefined : { ...o.payment, raw: new Uint8Array(Buffer.from(o.payment.raw, 'base64')), amount: BigInt(o.payment.amount) }
  }
}

/** sats surely owed: promised on ok calls, less what was paid */
export function owedOn (p: DeferredPromise): bigint {
  return p.promised > p.paid ? p.promised - p.paid : 0n
}

/** True when the promise should be paid at `now` (`lead` ms early for time thresholds) */
export function isDue (p: DeferredPromise, now: number, lead = 0): boolean {
  if (p.state === 'paying') { return true }
  // what may be owed: uncertain promises are settled (or closed) with the seller's tab
  if (p.state !== 'open' || owedOn(p) + p.uncertain === 0n) { return false }
  const due = Math.min(p.dueAt ?? Infinity, p.latestDue ?? Infinity)
  return due - lead <= now
}

function newDeferId (): string {
  return `d${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`
}

function checkSeller (seller: string): void {
  if (!SELLER.test(seller)) { throw new TypeError('seller peer id malformed') }
}

/**
 * The promises this node made, on LevelDB.
 *
 * @example
 * ```ts
 * const book = new PromiseBook({ db: store.sub('promises') })
 * const deferId = await book.deferIdFor(seller, 'value:5000')
 * // … a call with payment-type defer under deferId answered ok …
 * await book.record({ seller, target, deferId, amount: 120n, threshold: 'value:5000' })
 * ```
 */
export class PromiseBook {
  private readonly db: SubDb
  private readonly locks = new KeyedMutex()
  /** promises and defaults kept in memory (LevelDB stays the truth; this process is its only writer) */
  private readonly cache = new Lru<DeferredPromise>(CACHE_SIZE)
  private readonly defaults = new Lru<{ id?: string }>(CACHE_SIZE)
  private readonly addresses = new Lru<string>(CACHE_SIZE)

  constructor (init: { db: SubDb }) {
    this.db = init.db
  }

  async get (seller: string, deferId: string): Promise<DeferredPromise | undefined> {
    if (!SELLER.test(seller)) { return undefined }
    const p = await this.load(seller, deferId)
    return p == null ? undefined : { ...p, txids: [...p.txids] }
  }

  /** The stored promise (cached; never mutated: changes make a new object) */
  private async load (seller: string, deferId: string): Promise<DeferredPromise | undefined> {
    const key = promiseKey(seller, deferId)
    const hit = this.cache.get(key)
    if (hit != null) { return hit }
    const v = await this.db.get(key)
    if (v == null) { return undefined }
    const p = decodePromise(v)
    this.cache.set(key, p)
    return p
  }

  private async save (p: DeferredPromise, extra: BatchOp[] = []): Promise<void> {
    const key = promiseKey(p.seller, p.deferId)
    await this.db.batch([{ type: 'put', key, value: encodePromise(p) }, ...extra])
    this.cache.set(key, p)
  }

  /** Promises not settled yet, optionally of one seller */
  async outstanding (seller?: string): Promise<DeferredPromise[]> {
    const prefix = seller == null ? 'o/' : `o/${seller}/`
    const out: DeferredPromise[] = []
    for await (const [key] of this.db.iterator({ gte: prefix, lt: prefix + END })) {
      const [, s, id] = key.split('/')
      const p = s != null && id != null ? await this.get(s, id) : undefined
      if (p != null) { out.push(p) }
    }
    return out
  }

  /** Every promise, settled ones included, optionally of one seller */
  async * all (seller?: string): AsyncGenerator<DeferredPromise> {
    const prefix = seller == null ? 'p/' : `p/${seller}/`
    for await (const [, v] of this.db.iterator({ gte: prefix, lt: prefix + END })) { yield decodePromise(v) }
  }

  /** Promises to pay now: due ones and those whose payment is under way */
  async due (now = Date.now(), lead = 0): Promise<DeferredPromise[]> {
    return (await this.outstanding()).filter(p => isDue(p, now, lead))
  }

  private async currentDefault (seller: string): Promise<string | undefined> {
    const hit = this.defaults.get(seller)
    if (hit != null) { return hit.id }
    const v = await this.db.get(defaultKey(seller))
    const id = v == null ? undefined : dec.decode(v)
    this.defaults.set(seller, { id })
    return id
  }

  /**
   * The defer id new promises to this seller go under: the current one
   * while its tab is open, not due and has this threshold, otherwise a new one.
   */
  async deferIdFor (seller: string, threshold = ''): Promise<string> {
    checkSeller(seller)
    const wanted = formatThreshold(parseThreshold(threshold))
    return this.locks.run(`d/${seller}`, async () => {
      const current = await this.currentDefault(seller)
      if (current != null) {
        const p = await this.load(seller, current)
        if (p == null || (p.state === 'open' && p.threshold === wanted && !isDue(p, Date.now()))) { return current }
      }
      const id = newDeferId()
      await this.db.put(defaultKey(seller), enc.encode(id))
      this.defaults.set(seller, { id })
      return id
    })
  }

  /** New promises to this seller go under a new defer id from now on (if `deferId` is the current one) */
  async rotate (seller: string, deferId: string): Promise<void> {
    checkSeller(seller)
    await this.locks.run(`d/${seller}`, async () => {
      if (await this.currentDefault(seller) === deferId) {
        await this.db.del(defaultKey(seller))
        this.defaults.set(seller, {})
      }
    })
  }

  /** Adds a promise the seller accepted (or may have) to its tab */
  async record (input: RecordInput): Promise<DeferredPromise> {
    const { seller, deferId, amount } = input
    checkSeller(seller)
    if (amount <= 0n) { throw new RangeError('a promise is for a positive amount') }
    const now = input.now ?? Date.now()
    const certain = input.certain ?? true
    const p = await this.locks.run(promiseKey(seller, deferId), async () => {
      const existing = await this.load(seller, deferId)
      const threshold = parseThreshold(input.threshold ?? existing?.threshold ?? '')
      const p: DeferredPromise = existing != null
        ? { ...existing, state: existing.state === 'settled' ? 'open' : existing.state, updatedAt: now, target: input.target }
        : { seller, deferId, target: input.target, promised: 0n, uncertain: 0n, paid: 0n, threshold: formatThreshold(threshold), openedAt: now, latestDue: now + DEFAULT_MAX_TAB_AGE, promises: 0, state: 'open', txids: [], updatedAt: now }
      if (existing == null && threshold.kind === 'time') { p.dueAt = now + threshold.seconds * 1000 }
      if (certain) { p.promised += amount } else { p.uncertain += amount }
      p.promises++
      if (p.dueAt == null && dueNow(threshold, p)) { p.dueAt = now }
      const extra: BatchOp[] = existing == null || existing.state === 'settled' ? [{ type: 'put', key: openKey(seller, deferId), value: new Uint8Array(0) }] : []
      await this.save(p, extra)
      return p
    })
    if (p.dueAt != null && p.dueAt <= now) { await this.rotate(seller, deferId) }
    return { ...p }
  }

  /** The seller refused a promise because its tab is due: it is paid at the next run */
  async markDue (seller: string, deferId: string, now = Date.now()): Promise<void> {
    checkSeller(seller)
    await this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null || p.state !== 'open' || (p.dueAt != null && p.dueAt <= now)) { return }
      await this.save({ ...p, dueAt: now, updatedAt: now })
    })
    await this.rotate(seller, deferId)
  }

  /** Persists the payment about to be made (before it is broadcast or sent) */
  async beginPayment (seller: string, deferId: string, payment: PendingPayment): Promise<DeferredPromise> {
    const p = await this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null) { throw new Error(`no promise ${deferId} to ${seller}`) }
      if (p.state === 'paying') { throw new Error(`promise ${deferId} is already being paid by ${p.payment?.txid ?? '?'}`) }
      const next: DeferredPromise = { ...p, state: 'paying', payment, updatedAt: Date.now() }
      await this.save(next)
      return next
    })
    await this.rotate(seller, deferId)
    return { ...p }
  }

  /** The seller took the payment: paid grows; settled unless more was promised meanwhile */
  async finishPayment (seller: string, deferId: string, txid: string): Promise<DeferredPromise> {
    return this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null) { throw new Error(`no promise ${deferId} to ${seller}`) }
      if (p.state !== 'paying' || p.payment?.txid !== txid) { return { ...p } }
      const now = Date.now()
      const paid = p.paid + p.payment.amount
      const settled = paid >= p.promised
      const next: DeferredPromise = {
        ...p,
        paid,
        payment: undefined,
        state: settled ? 'settled' : 'open',
        txids: [...p.txids, txid].slice(-MAX_TXIDS),
        settledAt: settled ? now : undefined,
        lastError: undefined,
        updatedAt: now
      }
      await this.save(next, settled ? [{ type: 'del', key: openKey(seller, deferId) }] : [])
      return { ...next }
    })
  }

  /** Nothing is owed after all (the seller has no such debt): closes the promise without a payment */
  async close (seller: string, deferId: string): Promise<void> {
    await this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null || p.state !== 'open' || owedOn(p) > 0n) { return }
      const now = Date.now()
      await this.save({ ...p, state: 'settled', uncertain: 0n, settledAt: now, updatedAt: now }, [{ type: 'del', key: openKey(seller, deferId) }])
    })
    await this.rotate(seller, deferId)
  }

  /** The payment can never confirm (its coins went elsewhere): back to open, a new one is built */
  async abandonPayment (seller: string, deferId: string, txid: string, why: string): Promise<void> {
    await this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null || p.state !== 'paying' || p.payment?.txid !== txid) { return }
      await this.save({ ...p, state: 'open', payment: undefined, lastError: why, updatedAt: Date.now() })
    })
  }

  async noteError (seller: string, deferId: string, why: string): Promise<void> {
    await this.locks.run(promiseKey(seller, deferId), async () => {
      const p = await this.load(seller, deferId)
      if (p == null) { return }
      await this.save({ ...p, lastError: why.slice(0, 300) })
    })
  }

  /** The seller's payment address for this node, when known */
  async address (seller: string): Promise<string | undefined> {
    const hit = this.addresses.get(seller)
    if (hit != null) { return hit }
    if (!SELLER.test(seller)) { return undefined }
    const v = await this.db.get(addressKey(seller))
    if (v == null) { return undefined }
    const a = dec.decode(v)
    this.addresses.set(seller, a)
    return a
  }

  async setAddress (seller: string, address: string): Promise<void> {
    checkSeller(seller)
    await this.db.put(addressKey(seller), enc.encode(address))
    this.addresses.set(seller, address)
  }
}

function dueNow (t: Threshold, p: DeferredPromise): boolean {
  return t.kind === 'completion' || (t.kind === 'value' && owedOn(p) + p.uncertain >= t.sats)
}

/** Asks a seller for this node's payment address there (cached in the book) */
export async function sellerAddress (opencloud: OpenCloud, book: PromiseBook, seller: string, target: CallTarget, options: AbortOptions = {}): Promise<string> {
  const known = await book.address(seller)
  if (known != null) { return known }
  const res = await opencloud.call(target, { service: 'payments', method: 'address' }, options)
  if (!res.ok) { throw new Error(`${seller} did not give a payment address: ${res.path}${res.detail !== '' ? ` (${res.detail})` : ''}`) }
  let address: unknown
  try {
    address = JSON.parse(dec.decode(res.body)).address
  } catch {
    address = undefined
  }
  if (typeof address !== 'string' || address.length === 0 || address.length > 128) { throw new Error(`${seller} answered payments.address with no address`) }
  await book.setAddress(seller, address)
  return address
}

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
    if (!res.ok) { throw new Error(`payments.tab answered ${res.path}${res.detail !== '' ? `: ${res.detail}` : ''}`) }
    let owed: bigint
    try {
      owed = BigInt(JSON.parse(dec.decode(res.body)).owed)
    } catch {
      throw new Error('payments.tab answered something that is not a tab')
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
          throw new Error(`payment ${payment.txid} refused by the chain (${String(err.reason)}); a new one will be built`)
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
    if (!res.ok) { throw new Error(`payments.settle answered ${res.path}${res.detail !== '' ? `: ${res.detail}` : ''}`) }
    await book.finishPayment(p.seller, p.deferId, payment.txid)
    this.log('paid %s sat on tab %s to %s in %s', payment.amount, p.deferId, p.seller, payment.txid)
    return payment
  }
}
