/**
 * Client side of deferred payments (spec "Decloud - Client": "Fulfill
 * deferred payments"): the book of promises this node made to sellers (the
 * loop that pays them when they fall due is `fulfilment.ts`; one promise's
 * record is `promise.ts`).
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
import { InvalidMessageError, NotFoundError, ProtocolError } from '@libp2p/interface'
import { KeyedMutex } from '../../util/locks.js'
import { Lru } from '../../util/lru.js'
import { DEFAULT_MAX_TAB_AGE, parseThreshold, formatThreshold } from '../seller/tabs.js'
import { decodePromise, dueNow, encodePromise, isDue, owedOn } from './promise.js'
import type { DeferredPromise, PendingPayment, RecordInput } from './promise.js'
import type { CallTarget } from '../../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../../protocols/opencloud/net/opencloud.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { AbortOptions } from '@libp2p/interface'

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
      if (p == null) { throw new NotFoundError(`no promise ${deferId} to ${seller}`) }
      if (p.state === 'paying') { throw new PromiseBeingPaidError(`promise ${deferId} is already being paid by ${p.payment?.txid ?? '?'}`) }
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
      if (p == null) { throw new NotFoundError(`no promise ${deferId} to ${seller}`) }
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

/** Asks a seller for this node's payment address there (cached in the book) */
export async function sellerAddress (opencloud: OpenCloud, book: PromiseBook, seller: string, target: CallTarget, options: AbortOptions = {}): Promise<string> {
  const known = await book.address(seller)
  if (known != null) { return known }
  const res = await opencloud.call(target, { service: 'payments', method: 'address' }, options)
  if (!res.ok) { throw new ProtocolError(`${seller} did not give a payment address: ${res.path}${res.detail !== '' ? ` (${res.detail})` : ''}`) }
  let address: unknown
  try {
    address = JSON.parse(dec.decode(res.body)).address
  } catch {
    address = undefined
  }
  if (typeof address !== 'string' || address.length === 0 || address.length > 128) { throw new InvalidMessageError(`${seller} answered payments.address with no address`) }
  await book.setAddress(seller, address)
  return address
}

/** A promise is already being paid (by another call of `beginPayment`): never pay twice */
export class PromiseBeingPaidError extends Error {
  static override name = 'PromiseBeingPaidError'
  override name = 'PromiseBeingPaidError'
}
