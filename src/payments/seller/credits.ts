/**
 * The seller's credit ledger: sats a payer has paid this node and not yet
 * used, per payer OpenCloud ID, in LevelDB. The payment gate fills it with
 * what an attached transaction pays beyond the call's price (a bitcoin
 * output cannot be below the dust limit, so a cheap call is often overpaid)
 * and with the price of a call it took money for but could not serve, and
 * pays later calls of that payer from it before asking for new money.
 *
 * Money taken for a call in progress is held (`h/<id>`) until the call is
 * answered: ok drops the hold, anything else credits it back. A hold left by
 * a crash (the call was never answered) is credited back when the ledger is
 * next used (`recover`). Every change of a payer's balance runs under that
 * payer's lock and is one LevelDB batch with the hold it makes or drops (and
 * whatever the caller adds, e.g. the receipt of the transaction), so nothing
 * is credited twice or lost across a restart.
 *
 * Layout (inside the gate's sublevel): `c/<payer>` decimal sats,
 * `h/<id>` JSON `{ payer, amount }`.
 */
import { randomBytes } from 'node:crypto'
import { KeyedMutex } from '../../util/locks.js'
import type { BatchOp, SubDb } from '../../store/index.js'

const enc = new TextEncoder()
const dec = new TextDecoder()
const creditKey = (payer: string): string => `c/${payer}`
const holdKey = (id: string): string => `h/${id}`
const HOLD_PREFIX = 'h/'
const HOLD_END = 'h0' // '0' sorts right after '/'

/** Money taken for a call that is not answered yet */
export interface Hold {
  payer: string
  /** sats to credit back if the call is not served */
  amount: bigint
}

export class CreditStore {
  private readonly db: SubDb
  private readonly locks = new KeyedMutex()
  private recovering?: Promise<number>

  constructor (init: { db: SubDb }) {
    this.db = init.db
  }

  /** The payer's unused credit, sats */
  async balance (payer: string): Promise<bigint> {
    const v = await this.db.get(creditKey(payer))
    if (v == null) { return 0n }
    const s = dec.decode(v)
    return /^[0-9]{1,30}$/.test(s) ? BigInt(s) : 0n
  }

  /**
   * Adds `amount` to the payer's credit and, in the same batch, writes
   * `hold` (money taken for the call now starting) and `extra`. Returns the
   * new balance.
   */
  async add (payer: string, amount: bigint, opts: { hold?: { id: string, amount: bigint }, extra?: BatchOp[] } = {}): Promise<bigint> {
    if (amount < 0n) { throw new RangeError('a credit is not negative') }
    return this.locks.run(payer, async () => {
      const next = (await this.balance(payer)) + amount
      const ops: BatchOp[] = [...(opts.extra ?? [])]
      if (amount > 0n) { ops.push({ type: 'put', key: creditKey(payer), value: enc.encode(next.toString()) }) }
      if (opts.hold != null && opts.hold.amount > 0n) { ops.push(holdOp(opts.hold.id, { payer, amount: opts.hold.amount })) }
      if (ops.length > 0) { await this.db.batch(ops) }
      return next
    })
  }

  /**
   * Pays `amount` from the payer's credit when it covers it: the amount is
   * held for the call until `settle`. Returns the hold id, or undefined
   * when the credit is short.
   */
  async take (payer: string, amount: bigint): Promise<{ id: string, left: bigint } | undefined> {
    if (amount <= 0n) { throw new RangeError('take a positive amount') }
    return this.locks.run(payer, async () => {
      const have = await this.balance(payer)
      if (have < amount) { return undefined }
      const id = `c${randomBytes(16).toString('hex')}`
      const left = have - amount
      await this.db.batch([
        left === 0n ? { type: 'del', key: creditKey(payer) } : { type: 'put', key: creditKey(payer), value: enc.encode(left.toString()) },
        holdOp(id, { payer, amount })
      ])
      return { id, left }
    })
  }

  /**
   * The call of hold `id` is over: served, the hold is dropped (the money is
   * the seller's); not served, it is credited back to its payer. Idempotent.
   * Returns what was credited back.
   */
  async settle (id: string, served: boolean): Promise<bigint> {
    const raw = await this.db.get(holdKey(id))
    if (raw == null) { return 0n }
    const hold = decodeHold(raw)
    if (hold == null) {
      await this.db.del(holdKey(id))
      return 0n
    }
    return this.locks.run(hold.payer, async () => {
      // read again under the payer's lock: another settle may have run meanwhile
      if (await this.db.get(holdKey(id)) == null) { return 0n }
      const ops: BatchOp[] = [{ type: 'del', key: holdKey(id) }]
      if (!served) {
        const next = (await this.balance(hold.payer)) + hold.amount
        ops.push({ type: 'put', key: creditKey(hold.payer), value: enc.encode(next.toString()) })
      }
      await this.db.batch(ops)
      return served ? 0n : hold.amount
    })
  }

  /**
   * Credits back every hold left behind (calls a stopped process never
   * answered). Runs once per ledger; later calls wait for that run.
   * Returns how many holds were credited back.
   */
  async recover (): Promise<number> {
    this.recovering ??= (async () => {
      const ids: string[] = []
      for await (const [key] of this.db.iterator({ gte: HOLD_PREFIX, lt: HOLD_END })) { ids.push(key.slice(HOLD_PREFIX.length)) }
      let n = 0
      for (const id of ids) {
        if (await this.settle(id, false) > 0n) { n++ }
      }
      return n
    })()
    // a failed run (e.g. the database was busy) is tried again by the next caller
    this.recovering.catch(() => { this.recovering = undefined })
    return this.recovering
  }
}

function holdOp (id: string, hold: Hold): BatchOp {
  return { type: 'put', key: holdKey(id), value: enc.encode(JSON.stringify({ payer: hold.payer, amount: hold.amount.toString() })) }
}

function decodeHold (bytes: Uint8Array): Hold | undefined {
  try {
    const o = JSON.parse(dec.decode(bytes))
    if (typeof o?.payer === 'string' && typeof o.amount === 'string' && /^[0-9]{1,30}$/.test(o.amount)) { return { payer: o.payer, amount: BigInt(o.amount) } }
  } catch {
    // unreadable: dropped by the caller
  }
  return undefined
}
