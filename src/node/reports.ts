/**
 * JSON answers about discovery and the market, shared by `decloud sellers`,
 * `decloud market` and the control API (`GET /v1/sellers`, `GET /v1/market`).
 * Amounts are decimal strings of integer satoshis.
 */
import { summaryJson } from '../market/json.js'
import { rankingMethod } from '../market/select.js'
import type { DecloudNode } from './index.js'

export interface SellersJson {
  service: string
  /** the method the `price` column is for */
  method?: string
  /** units of service the price is computed for */
  usage?: string
  /** ms the lookup took */
  elapsed: number
  /** cheapest first (sellers with a known price), then the rest in the order found */
  sellers: Array<{
    peerId: string
    addresses: string[]
    /** found in the DHT, in the price book, or both */
    foundIn: Array<'book' | 'dht'>
    /** cost of the call at the seller's announced price (sat), when known */
    price?: string
    /** this node's trust of the seller (0–1), when it knows any (docs/reputation.md) */
    trust?: number
    /** the seller's announced prices per method of the service */
    prices: Record<string, { base: string, rate: string, per: string, units: string[], capacity: string, validUntil: number }>
  }>
}

export interface SellersQuery {
  service: string
  /** rank by this method's price @default rankingMethod(service): storage put, sha256 hash, else the first priced method known */
  method?: string
  /** units of service for the price @default the reference usage (10⁶) */
  usage?: bigint
  /** deadline of the DHT lookup (ms) @default 10_000 */
  timeout?: number
  limit?: number
  signal?: AbortSignal
}

/** Sellers of a service: the DHT lookup joined with the price book */
export async function sellersJson (node: Pick<DecloudNode, 'rankSellers' | 'market'>, q: SellersQuery): Promise<SellersJson> {
  const start = Date.now()
  const method = q.method ?? rankingMethod(q.service, node.market)
  const ranked = await node.rankSellers(q.service, { method, usage: q.usage, timeout: q.timeout, limit: q.limit, signal: q.signal })
  return {
    service: q.service,
    ...(method !== '' ? { method } : {}),
    ...(q.usage != null ? { usage: q.usage.toString() } : {}),
    elapsed: Date.now() - start,
    sellers: ranked.slice(0, q.limit ?? ranked.length).map(c => {
      const prices: SellersJson['sellers'][number]['prices'] = {}
      for (const e of node.market.book.entries({ service: q.service, peerId: c.peerId })) {
        prices[e.method] = { base: e.base.toString(), rate: e.rate.toString(), per: e.per.toString(), units: e.units, capacity: e.capacity.toString(), validUntil: e.validUntil }
      }
      return {
        peerId: c.peerId,
        addresses: c.addresses,
        foundIn: c.foundIn,
        ...(c.price != null ? { price: c.price.toString() } : {}),
        ...(c.trust != null ? { trust: c.trust } : {}),
        prices
      }
    })
  }
}

export interface MarketJson {
  generated: number
  /** per service/method: sellers by price, min, max, median, spread (sat), age of each entry (ms) */
  summary: Array<ReturnType<typeof summaryJson>>
}

/** The price book summary, optionally of one service (and method) */
export function marketJson (node: Pick<DecloudNode, 'market'>, q: { service?: string, method?: string, usage?: bigint } = {}): MarketJson {
  return { generated: Date.now(), summary: node.market.prices(q).map(summaryJson) }
}
