/**
 * The wallet's reservations: the coins each payment built but not yet seen
 * by the chain spends, so two payments never spend the same coin, and the
 * coin view that follows chains of unconfirmed payments of ours.
 *
 * Persisted under `<prefix>res/<txid>` of the wallet sublevel; the wallet
 * writes a new reservation in the batch that records its payment, then
 * `add`s it here.
 */
import type { SubDb } from '../../store/index.js'
import type { ChainBackend, Utxo } from '../types.js'

export interface Reservation {
  outpoints: string[]
  time: number
  /** creation order among reservations of the same ms (a payment may spend an earlier one's change) */
  seq?: number
  /** the payment's change output, spendable as soon as the backend knows the payment */
  change?: { vout: number, value: string, script: string }
}

/** The wallet's coins once its own payments are counted (`Reservations.view`) */
export interface CoinView {
  /** coins free to spend */
  free: Utxo[]
  /** coins of payments built but not yet seen by the backend */
  inFlight: Utxo[]
  /** payments whose reservation has ended */
  ended: string[]
  /** change of our mempool payments the backend does not list (in `free`) */
  pendingChange: bigint
}

export function outpoint (u: { txid: string, vout: number }): string {
  return `${u.txid}:${u.vout}`
}

const dec = new TextDecoder()

export class Reservations {
  private readonly db: SubDb
  private readonly backend: ChainBackend
  private readonly prefix: string
  /** reserved outpoint → txid of the payment holding it */
  private readonly reserved = new Map<string, string>()
  private readonly reservations = new Map<string, Reservation>()
  /** payments the backend showed it knows (their change may be spent) */
  private readonly knownPayments = new Set<string>()
  private seq = 0

  constructor (db: SubDb, backend: ChainBackend, prefix: string) {
    this.db = db
    this.backend = backend
    this.prefix = prefix
  }

  /** Reads the stored reservations */
  async load (): Promise<void> {
    const p = this.prefix
    for await (const [key, value] of this.db.iterator({ gte: `${p}res/`, lt: `${p}res/~` })) {
      const txid = key.slice(`${p}res/`.length)
      const r = JSON.parse(dec.decode(value)) as Reservation
      this.add(txid, r)
      if (typeof r.seq === 'number' && r.seq > this.seq) { this.seq = r.seq }
    }
  }

  /** Creation order of the next reservation */
  nextSeq (): number {
    return ++this.seq
  }

  /** Holds the coins of a payment whose reservation is stored */
  add (txid: string, r: Reservation): void {
    this.reservations.set(txid, r)
    for (const o of r.outpoints) { this.reserved.set(o, txid) }
  }

  /** The payment holding an outpoint */
  holder (outpoint: string): string | undefined {
    return this.reserved.get(outpoint)
  }

  /** Outpoints reserved by payments not yet seen by the chain */
  outpoints (): string[] {
    return [...this.reserved.keys()]
  }

  /** Reservations oldest first: a payment comes after the one whose change it spends */
  private ordered (): Array<[string, Reservation]> {
    return [...this.reservations].sort(([, a], [, b]) => a.time - b.time || (a.seq ?? 0) - (b.seq ?? 0))
  }

  /** True when the backend knows the payment (mempool or chain); remembered until its reservation ends */
  private async isKnown (txid: string): Promise<boolean> {
    if (this.knownPayments.has(txid)) { return true }
    // an unreachable backend is an error, not "unknown": guessing wrong
    // would free the coins of a payment that is out
    if (await this.backend.transaction(txid) == null) { return false }
    this.knownPayments.add(txid)
    return true
  }

  /**
   * The wallet's coins as they are once its own payments are counted, on
   * every backend alike: the backend's list (`listed`: confirmed coins only
   * over bitcoind's `scantxoutset`; confirmed and mempool on the others),
   * then each payment of ours in the order it was made. All its coins still
   * there: it is not in the backend's list yet, so its coins are taken out;
   * once the backend knows the transaction (mempool), its change is in (like
   * Bitcoin Core's wallet, the wallet spends its own unconfirmed change, so a
   * payment need not wait for a block). A payment the backend does not know
   * yet is in flight: its coins are neither free nor gone. A coin gone: the
   * backend shows the payment (or a conflicting one), so the reservation has
   * ended.
   * A payment spending an earlier one's change comes after it, so that
   * change is there when it is looked at: a chain of unconfirmed payments is
   * followed to its end, and no coin an unconfirmed payment spent is free.
   */
  async view (listed: Utxo[]): Promise<CoinView> {
    const free = new Map(listed.map(u => [outpoint(u), u]))
    const view: CoinView = { free: [], inFlight: [], ended: [], pendingChange: 0n }
    for (const [txid, r] of this.ordered()) {
      const coins = r.outpoints.map(o => free.get(o))
      if (!coins.every(u => u != null)) {
        view.ended.push(txid)
        continue
      }
      for (const o of r.outpoints) { free.delete(o) }
      if (!await this.isKnown(txid)) {
        view.inFlight.push(...coins as Utxo[])
        continue
      }
      if (r.change == null) { continue }
      const o = `${txid}:${r.change.vout}`
      if (!free.has(o)) {
        free.set(o, { txid, vout: r.change.vout, value: BigInt(r.change.value), script: r.change.script })
        view.pendingChange += BigInt(r.change.value)
      }
    }
    view.free = [...free.values()]
    return view
  }

  /** Ends the reservations of payments the backend shows (see `view`) */
  async forget (ended: string[]): Promise<void> {
    if (ended.length === 0) { return }
    await this.db.batch(ended.map(txid => ({ type: 'del' as const, key: `${this.prefix}res/${txid}` })))
    for (const txid of ended) { this.unreserve(txid) }
  }

  /** Gives a payment's coins back (its stored reservation is deleted by the caller) */
  unreserve (txid: string): void {
    const r = this.reservations.get(txid)
    this.knownPayments.delete(txid)
    if (r == null) { return }
    for (const o of r.outpoints) {
      if (this.reserved.get(o) === txid) { this.reserved.delete(o) }
    }
    this.reservations.delete(txid)
  }
}
