import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { computeCost, MAX_AMOUNT } from '../protocols/opencloud/api/pricing.js'
import { BYTE_SECONDS_PER_GIB_MONTH, isByteSecond } from '../protocols/opencloud/api/units.js'
import { MAX_ADDRS, MAX_UNITS, MAX_VALIDITY } from './announcement.js'
import { BookEntry, PriceAnnouncement, SignedPriceAnnouncement } from './pb/market.js'
import type { Announcement } from './announcement.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'
import type { SubDb } from '../store/index.js'

/** Most live entries kept */
export const MAX_BOOK_ENTRIES = 10_000
/** Most live entries one peer may hold */
export const MAX_ENTRIES_PER_PEER = 64
/** Most remembered sequence numbers (live and expired/withdrawn entries) */
export const MAX_REMEMBERED_SEQS = 50_000
/**
 * Prices are compared as the cost of a reference call: `base` plus the
 * usage of this many units of service (bytes, byte·days, …). Methods without
 * units compare by `base`.
 */
export const REFERENCE_UNITS = 1_000_000n

/** The usage a price is compared at: a GiB-month for storage leases (byte·second), else REFERENCE_UNITS */
export function referenceUsage (units: readonly string[]): bigint {
  return isByteSecond(units) ? BYTE_SECONDS_PER_GIB_MONTH : REFERENCE_UNITS
}

export type EntrySource = 'self' | 'gossip' | 'sync'

/** One seller's live price for one method: the announcement's terms, keyed by peer id string */
export interface PriceEntry extends Omit<Announcement, 'peer' | 'currency' | 'withdrawn'> {
  peerId: string
  source: EntrySource
  received: number
  /** the encoded SignedPriceAnnouncement: verifiable by anyone */
  signed: Uint8Array
}

export interface ApplyResult {
  accepted: boolean
  /** why it was not accepted */
  reason?: string
  /** the entry was removed (a withdrawal) */
  removed?: boolean
}

/** An entry priced for comparison */
export interface RankedEntry extends PriceEntry {
  /** cost of the reference call (or of the given usage) in satoshis */
  price: bigint
  /** ms since the seller issued this price */
  age: number
}

export interface MethodSummary {
  service: string
  method: string
  units: string[]
  /** units of service the `price` column is computed for */
  usage: bigint
  sellers: RankedEntry[]
  min: bigint
  max: bigint
  median: bigint
  /** max − min, in satoshis */
  spread: bigint
}

export interface PriceBookInit {
  db: SubDb
  maxEntries?: number
  maxPerPeer?: number
  maxSeqs?: number
  /** clock, for tests @default Date.now */
  now?(): number
}

interface SeqMark { seq: bigint, until: number }

function bookKey (service: string, method: string, peer: string): string {
  return `e/${service}/${method}/${peer}`
}

/** Cost of `usage` units of service (one number: the product of the dimensions) under an entry's price */
export function priceOf (e: Pick<PriceEntry, 'base' | 'rate' | 'per' | 'units'>, usage: bigint = referenceUsage(e.units)): bigint {
  const pricing: Pricing = { base: e.base, rate: e.rate, per: e.per }
  try {
    return computeCost(pricing, e.units.length === 0 ? [] : [usage]).total
  } catch {
    // a price too large to be charged sorts last
    return MAX_AMOUNT
  }
}

function cmp (a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Median of sorted bigints: the middle one, or the floor of the mean of the two middle ones */
export function median (sorted: bigint[]): bigint {
  if (sorted.length === 0) { return 0n }
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2n
}

/**
 * The market price book: the newest valid announcement per (seller,
 * service, method), in memory and in LevelDB (`store.sub('market')`), with
 * the last sequence number seen per key so that replays and stale
 * announcements are dropped even after the entry expired or was withdrawn.
 * Bounded in entries, entries per peer and remembered sequence numbers.
 */
export class PriceBook {
  private readonly db: SubDb
  private readonly live = new Map<string, PriceEntry>()
  private readonly seqs = new Map<string, SeqMark>()
  private readonly perPeer = new Map<string, number>()
  private readonly maxEntries: number
  private readonly maxPerPeer: number
  private readonly maxSeqs: number
  private readonly now: () => number
  private writes: Promise<void> = Promise.resolve()

  constructor (init: PriceBookInit) {
    this.db = init.db
    this.maxEntries = init.maxEntries ?? MAX_BOOK_ENTRIES
    this.maxPerPeer = init.maxPerPeer ?? MAX_ENTRIES_PER_PEER
    this.maxSeqs = init.maxSeqs ?? MAX_REMEMBERED_SEQS
    this.now = init.now ?? Date.now
  }

  /** Loads the persisted book, dropping what has expired meanwhile */
  async load (): Promise<void> {
    const now = this.now()
    const stale: string[] = []
    for await (const [key, value] of this.db.iterator({ gte: 'e/', lt: 'e0' })) {
      let decoded: ReturnType<typeof decodeEntry>
      try {
        decoded = decodeEntry(BookEntry.decode(value))
      } catch {}
      if (decoded == null) {
        stale.push(key)
        continue
      }
      const { entry, withdrawn } = decoded
      if (entry.issued + MAX_VALIDITY < now) {
        stale.push(key)
        continue
      }
      this.remember(key, entry.seq, entry.issued + MAX_VALIDITY)
      if (!withdrawn && entry.validUntil > now) { this.setLive(key, entry) }
    }
    if (stale.length > 0) { await this.db.batch(stale.map(key => ({ type: 'del', key }))) }
  }

  /**
   * Would an announcement with this key and sequence number be new? (The
   * gossip validator asks before a message is forwarded.)
   */
  isNewer (peerId: string, service: string, method: string, seq: bigint): boolean {
    const mark = this.seqs.get(bookKey(service, method, peerId))
    return mark == null || seq > mark.seq
  }

  /** Applies a verified announcement; drops stale/replayed ones and enforces the bounds */
  apply (a: Announcement, signed: SignedPriceAnnouncement, source: EntrySource): ApplyResult {
    const peerId = a.peer.toString()
    const key = bookKey(a.service, a.method, peerId)
    const mark = this.seqs.get(key)
    if (mark != null && a.seq <= mark.seq) { return { accepted: false, reason: 'stale or replayed sequence number' } }
    const existing = this.live.get(key)
    if (a.withdrawn) {
      this.remember(key, a.seq, a.issued + MAX_VALIDITY)
      if (existing != null) { this.removeLive(key, existing) }
      const tombstone = toEntry(a, signed, source, this.now())
      this.persist(key, tombstone)
      return { accepted: true, removed: true }
    }
    if (existing == null) {
      if (this.live.size >= this.maxEntries) { this.sweep() }
      if (this.live.size >= this.maxEntries) { return { accepted: false, reason: 'price book full' } }
      if ((this.perPeer.get(peerId) ?? 0) >= this.maxPerPeer) { return { accepted: false, reason: 'too many entries from this peer' } }
    }
    this.remember(key, a.seq, a.issued + MAX_VALIDITY)
    const entry = toEntry(a, signed, source, this.now())
    if (existing != null) { this.removeLive(key, existing) }
    this.setLive(key, entry)
    this.persist(key, entry)
    return { accepted: true }
  }

  /** Live (unexpired, not withdrawn) entries, optionally of one service/method */
  entries (filter: { service?: string, method?: string, peerId?: string } = {}): PriceEntry[] {
    const now = this.now()
    const out: PriceEntry[] = []
    for (const e of this.live.values()) {
      if (e.validUntil <= now) { continue }
      if (filter.service != null && e.service !== filter.service) { continue }
      if (filter.method != null && e.method !== filter.method) { continue }
      if (filter.peerId != null && e.peerId !== filter.peerId) { continue }
      out.push(e)
    }
    return out
  }

  get size (): number {
    return this.live.size
  }

  /** The highest sequence number remembered for `peerId` (live, expired or withdrawn), 0n if none */
  lastSeqOf (peerId: string): bigint {
    let max = 0n
    const suffix = `/${peerId}`
    for (const [key, mark] of this.seqs) {
      if (key.endsWith(suffix) && mark.seq > max) { max = mark.seq }
    }
    return max
  }

  /**
   * Sellers of `service.method` ranked by price (cheapest first) for a call
   * using `usage` units of service (default: the reference usage); ties
   * (small calls round up to the same satoshi) go to the cheaper price at
   * the reference usage, then to the fresher price, then to the peer id.
   */
  rank (service: string, method: string, usage?: bigint): RankedEntry[] {
    const now = this.now()
    return this.entries({ service, method })
      .map(e => ({ entry: { ...e, price: priceOf(e, usage), age: Math.max(0, now - e.issued) }, reference: priceOf(e) }))
      .sort((a, b) => cmp(a.entry.price, b.entry.price) || cmp(a.reference, b.reference) || (a.entry.age - b.entry.age) || (a.entry.peerId < b.entry.peerId ? -1 : 1))
      .map(r => r.entry)
  }

  /** Per service/method: the sellers by price, min, max, median, spread */
  summary (filter: { service?: string, method?: string, usage?: bigint } = {}): MethodSummary[] {
    const groups = new Map<string, { service: string, method: string, units: string[] }>()
    for (const e of this.entries(filter)) {
      const id = `${e.service}.${e.method}`
      if (!groups.has(id)) { groups.set(id, { service: e.service, method: e.method, units: e.units }) }
    }
    return [...groups.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([, g]) => {
      const sellers = this.rank(g.service, g.method, filter.usage)
      const prices = sellers.map(s => s.price)
      const min = prices[0] ?? 0n
      const max = prices[prices.length - 1] ?? 0n
      return {
        service: g.service,
        method: g.method,
        units: g.units,
        usage: g.units.length === 0 ? 0n : (filter.usage ?? referenceUsage(g.units)),
        sellers,
        min,
        max,
        median: median(prices),
        spread: max - min
      }
    })
  }

  /** Drops expired entries and forgotten sequence marks; returns how many entries went */
  sweep (): number {
    const now = this.now()
    let dropped = 0
    for (const [key, e] of this.live) {
      if (e.validUntil > now) { continue }
      this.removeLive(key, e)
      this.queueWrite(async () => { await this.db.del(key) })
      dropped++
    }
    for (const [key, mark] of this.seqs) {
      if (mark.until > now) { continue }
      this.seqs.delete(key)
      // a tombstone of a withdrawal can go now too
      if (!this.live.has(key)) { this.queueWrite(async () => { await this.db.del(key) }) }
    }
    return dropped
  }

  /** Resolves when every queued LevelDB write is done */
  async flush (): Promise<void> {
    await this.writes
  }

  private setLive (key: string, e: PriceEntry): void {
    this.live.set(key, e)
    this.perPeer.set(e.peerId, (this.perPeer.get(e.peerId) ?? 0) + 1)
  }

  private removeLive (key: string, e: PriceEntry): void {
    this.live.delete(key)
    const n = (this.perPeer.get(e.peerId) ?? 1) - 1
    if (n <= 0) { this.perPeer.delete(e.peerId) } else { this.perPeer.set(e.peerId, n) }
  }

  private remember (key: string, seq: bigint, until: number): void {
    this.seqs.delete(key)
    this.seqs.set(key, { seq, until })
    while (this.seqs.size > this.maxSeqs) {
      const oldest = this.seqs.keys().next().value as string
      // never forget the mark of a live entry
      if (this.live.has(oldest)) {
        const m = this.seqs.get(oldest) as SeqMark
        this.seqs.delete(oldest)
        this.seqs.set(oldest, m)
        if (this.seqs.size <= this.live.size) { break }
        continue
      }
      this.seqs.delete(oldest)
    }
  }

  private persist (key: string, e: PriceEntry): void {
    const value = BookEntry.encode({
      signed: SignedPriceAnnouncement.decode(e.signed),
      received: BigInt(e.received),
      source: e.source
    })
    this.queueWrite(async () => { await this.db.put(key, value) })
  }

  private queueWrite (fn: () => Promise<void>): void {
    this.writes = this.writes.then(fn).catch(() => {})
  }
}

function toEntry (a: Announcement, signed: SignedPriceAnnouncement, source: EntrySource, received: number): PriceEntry {
  return {
    peerId: a.peer.toString(),
    service: a.service,
    version: a.version,
    method: a.method,
    units: a.units,
    base: a.base,
    rate: a.rate,
    per: a.per,
    capacity: a.capacity,
    issued: a.issued,
    validUntil: a.validUntil,
    seq: a.seq,
    addrs: a.addrs,
    source,
    received,
    signed: SignedPriceAnnouncement.encode(signed)
  }
}

/** Decodes a persisted entry (it was verified when accepted) */
function decodeEntry (b: BookEntry): { entry: PriceEntry, withdrawn: boolean } | undefined {
  if (b.signed == null) { return undefined }
  const pa = PriceAnnouncement.decode(b.signed.announcement, { limits: { units: MAX_UNITS, addrs: MAX_ADDRS } })
  const peerId = peerIdFromString(uint8ArrayToString(pa.peer, 'base58btc')).toString()
  const source = (['self', 'gossip', 'sync'] as const).find(s => s === b.source) ?? 'gossip'
  const addrs: string[] = []
  for (const bytes of pa.addrs) {
    try {
      addrs.push(multiaddr(bytes).toString())
    } catch {}
  }
  return {
    withdrawn: pa.withdrawn,
    entry: {
      peerId,
      service: pa.service,
      version: pa.version,
      method: pa.method,
      units: pa.units,
      base: pa.base,
      rate: pa.rate,
      per: pa.per,
      capacity: pa.capacity,
      issued: Number(pa.issued),
      validUntil: Number(pa.validUntil),
      seq: pa.seq,
      addrs,
      source,
      received: Number(b.received),
      signed: SignedPriceAnnouncement.encode(b.signed)
    }
  }
}
