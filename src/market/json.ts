/**
 * The JSON shapes of the price book: one signed entry as a `market.prices`
 * answer carries it, and a method summary (amounts as decimal strings).
 */
import type { EntrySource, MethodSummary, PriceEntry } from './price-book.js'

/** JSON shape of one entry in a `market.prices` answer */
export interface PriceEntryJson {
  peerId: string
  service: string
  version: string
  method: string
  units: string[]
  base: string
  rate: string
  per: string
  capacity: string
  issued: number
  validUntil: number
  seq: string
  addrs: string[]
  source: EntrySource
  /** base64 SignedPriceAnnouncement: verify it, do not trust the fields above */
  signed: string
}

export function entryJson (e: PriceEntry): PriceEntryJson {
  return {
    peerId: e.peerId,
    service: e.service,
    version: e.version,
    method: e.method,
    units: e.units,
    base: e.base.toString(),
    rate: e.rate.toString(),
    per: e.per.toString(),
    capacity: e.capacity.toString(),
    issued: e.issued,
    validUntil: e.validUntil,
    seq: e.seq.toString(),
    addrs: e.addrs,
    source: e.source,
    signed: Buffer.from(e.signed).toString('base64')
  }
}

/** A method summary with bigints as decimal strings (JSON) */
export function summaryJson (s: MethodSummary): Record<string, unknown> {
  return {
    service: s.service,
    method: s.method,
    units: s.units,
    usage: s.usage.toString(),
    sellers: s.sellers.map(e => ({
      peerId: e.peerId,
      price: e.price.toString(),
      base: e.base.toString(),
      rate: e.rate.toString(),
      per: e.per.toString(),
      capacity: e.capacity.toString(),
      age: e.age,
      validUntil: e.validUntil,
      addrs: e.addrs
    })),
    min: s.min.toString(),
    max: s.max.toString(),
    median: s.median.toString(),
    spread: s.spread.toString()
  }
}
