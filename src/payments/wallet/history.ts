/**
 * The wallet's ledger of payments made (`<prefix>sent/<time>/<txid>` in the
 * wallet sublevel) and its transaction history, from the backend's address
 * index when it has one, else from the ledger and the coins.
 */
import { outpoint } from './coins.js'
import type { SubDb } from '../../store/index.js'
import type { AddressTx, ChainBackend, Utxo } from '../types.js'

/** Addresses per backend query */
export const QUERY_CHUNK = 200
/** Backend history queries in flight at once */
const HISTORY_CONCURRENCY = 8
/** Ledger entries a history without address index looks at */
const MAX_LEDGER_SCAN = 10_000

/** One payment in the local ledger */
export interface LedgerEntry {
  txid: string
  to: string
  amount: bigint
  fee: bigint
  /** ms since the epoch */
  time: number
}

/** A ledger entry with the coins it spent (entries written before these were kept have none) */
export type LedgerRecord = LedgerEntry & { inputs: Array<{ txid: string, vout: number, value: bigint, height?: number }> }

/** What the history reads of the wallet */
export interface HistorySource {
  db: SubDb
  prefix: string
  backend: ChainBackend
  /** every address in use, the identity's included */
  addresses(): string[]
  /** true for a scriptPubKey (lowercase hex) the wallet derived */
  ownsScript(script: string): boolean
  isMine(address: string): boolean
}

const dec = new TextDecoder()

/** Unconfirmed first, then the newest block first */
function newestFirst (a: AddressTx, b: AddressTx): number {
  if (a.height == null) { return b.height == null ? 0 : -1 }
  if (b.height == null) { return 1 }
  return b.height - a.height
}

/** Ledger entries with the coins they spent, newest first */
export async function ledgerEntries (db: SubDb, prefix: string, limit: number): Promise<LedgerRecord[]> {
  const out: LedgerRecord[] = []
  for await (const [, value] of db.iterator({ gte: `${prefix}sent/`, lt: `${prefix}sent/~`, reverse: true, limit })) {
    const e = JSON.parse(dec.decode(value))
    const inputs = Array.isArray(e.inputs)
      ? (e.inputs as Array<{ txid: string, vout: number, value: string, height?: number }>).map(i => ({ txid: i.txid, vout: i.vout, value: BigInt(i.value), height: i.height }))
      : []
    out.push({ txid: e.txid, to: e.to, amount: BigInt(e.amount), fee: BigInt(e.fee), time: e.time, inputs })
  }
  return out
}

/** History from the backend's address index (`ChainUnsupportedError` without one) */
export async function indexedHistory (src: HistorySource, limit: number): Promise<AddressTx[]> {
  const addresses = src.addresses()
  const merged = new Map<string, AddressTx>()
  const add = (t: AddressTx): void => {
    const m = merged.get(t.txid)
    if (m == null) {
      merged.set(t.txid, { txid: t.txid, height: t.height, delta: t.delta })
    } else {
      // a transaction touching several of our addresses: its net effect on the wallet
      m.delta += t.delta
      m.height ??= t.height
    }
  }
  for (let i = 0; i < addresses.length; i += HISTORY_CONCURRENCY) {
    const lists = await Promise.all(addresses.slice(i, i + HISTORY_CONCURRENCY).map(async a => src.backend.history(a, limit)))
    lists.flat().forEach(add)
  }
  return [...merged.values()].sort(newestFirst).slice(0, limit)
}

/**
 * History without an address index: sent payments from the ledger (their
 * block from the backend, else from their change), received ones from
 * the coins held now and the coins the payments spent
 */
export async function unindexedHistory (src: HistorySource, limit: number): Promise<AddressTx[]> {
  const sent = await ledgerEntries(src.db, src.prefix, MAX_LEDGER_SCAN)
  const ours = new Set(sent.map(e => e.txid))
  const held: Utxo[] = []
  const addresses = src.addresses()
  for (let i = 0; i < addresses.length; i += QUERY_CHUNK) {
    held.push(...await src.backend.utxos(addresses.slice(i, i + QUERY_CHUNK)))
  }
  const rows = new Map<string, AddressTx>()
  const seen = new Set<string>()
  const receive = (u: { txid: string, vout: number, value: bigint, height?: number }): void => {
    if (ours.has(u.txid) || seen.has(outpoint(u))) { return }
    seen.add(outpoint(u))
    const r = rows.get(u.txid)
    if (r == null) {
      rows.set(u.txid, { txid: u.txid, height: u.height, delta: u.value })
    } else {
      r.delta += u.value
      r.height ??= u.height
    }
  }
  const changeHeight = new Map<string, number>()
  for (const u of held) {
    if (typeof u.script !== 'string' || !src.ownsScript(u.script.toLowerCase())) { continue }
    if (ours.has(u.txid) && u.height != null) { changeHeight.set(u.txid, u.height) }
    receive(u)
  }
  for (const e of sent) {
    for (const i of e.inputs) { receive(i) }
  }
  // newest payments first, so the lookups below go to the rows most likely shown
  const out: AddressTx[] = sent.map(e => ({ txid: e.txid, height: changeHeight.get(e.txid), delta: src.isMine(e.to) ? -e.fee : -(e.amount + e.fee) }))
  out.push(...rows.values())
  // blocks of the rest from the backend (spent coins kept no height; a
  // payment whose change is spent or that had none), bounded
  const unknown = out.filter(t => t.height == null).slice(0, 4 * limit)
  for (let i = 0; i < unknown.length; i += HISTORY_CONCURRENCY) {
    await Promise.all(unknown.slice(i, i + HISTORY_CONCURRENCY).map(async t => {
      t.height = (await src.backend.transaction(t.txid))?.height
    }))
  }
  return out.sort(newestFirst).slice(0, limit)
}
