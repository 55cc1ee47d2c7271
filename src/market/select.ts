import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { withPeer } from '../dht/keys.js'
import type { Market } from './market.js'
import type { RankedEntry } from './price-book.js'
import type { FindSellersOptions } from '../dht/config.js'
import type { Discovery } from '../dht/discovery.js'
import type { CallRequest, CallResult } from '../protocols/opencloud/net/client.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { AbortOptions } from '@libp2p/interface'

/** A seller that could serve a call, ranked */
export interface SellerCandidate {
  peerId: string
  /** multiaddrs ending in /p2p/<peerId> */
  addresses: string[]
  /** what the call costs by the seller's announced price (satoshis); undefined: no price known */
  price?: bigint
  /** the price book entry behind `price` */
  entry?: RankedEntry
  /** where the seller was found */
  foundIn: Array<'book' | 'dht'>
}

/**
 * The method a buyer of a service most needs, which rankings use when no
 * method is named: storing is what a storage buyer pays for first (a get is
 * cheaper everywhere and says little about a seller), hashing for sha256.
 */
export const PRIMARY_METHODS: Readonly<Record<string, string>> = Object.freeze({ storage: 'put', sha256: 'hash' })

/** The method to rank the sellers of `service` by when none is named, if the service is known */
export function primaryMethod (service: string): string | undefined {
  return Object.hasOwn(PRIMARY_METHODS, service) ? PRIMARY_METHODS[service] : undefined
}

export interface RankSellersOptions extends FindSellersOptions {
  /** the method to be called (ranks by its price) */
  method: string
  /** units of service the call uses (the product of its dimensions, e.g. bytes) @default the reference usage */
  usage?: bigint
  /** also look the service up in the DHT @default true */
  discover?: boolean
  /** peer ids to leave out */
  exclude?: string[]
}

/**
 * Sellers of `service` ranked for one call: sellers with a price in the
 * book, cheapest first (ties: fresher price, then peer id), then sellers the
 * DHT found that have announced no price, in the order found. Trust will
 * weigh in here once reputation exists; today the rank is by price.
 *
 * @example
 * ```ts
 * const [best] = await rankSellers(node.market, node.discovery, 'storage', { method: 'put', usage: BigInt(blob.byteLength) })
 * ```
 */
export async function rankSellers (market: Market, discovery: Discovery | undefined, service: string, options: RankSellersOptions): Promise<SellerCandidate[]> {
  const exclude = new Set(options.exclude ?? [])
  const byPeer = new Map<string, SellerCandidate>()
  for (const e of market.rank(service, options.method, options.usage)) {
    if (exclude.has(e.peerId)) { continue }
    byPeer.set(e.peerId, { peerId: e.peerId, addresses: e.addrs.map(a => withPeer(a, e.peerId)), price: e.price, entry: e, foundIn: ['book'] })
  }
  if (discovery != null && (options.discover ?? true)) {
    for await (const s of discovery.findSellersStream(service, options)) {
      if (exclude.has(s.peerId)) { continue }
      const c = byPeer.get(s.peerId)
      if (c != null) {
        c.foundIn.push('dht')
        if (c.addresses.length === 0) { c.addresses = s.addresses }
      } else {
        byPeer.set(s.peerId, { peerId: s.peerId, addresses: s.addresses, foundIn: ['dht'] })
      }
    }
  }
  const all = [...byPeer.values()]
  const priced = all.filter(c => c.price != null)
  const unpriced = all.filter(c => c.price == null)
  // market.rank is already in price order and Map keeps insertion order
  return [...priced, ...unpriced]
}

export interface CallCheapestResult {
  seller: SellerCandidate
  result: CallResult
  /** sellers tried before this one, with why they failed */
  skipped: Array<{ peerId: string, error: string }>
}

/**
 * Calls `service.method` on the cheapest seller that answers: tries the
 * ranked sellers in order, moving on when one cannot be reached (at most
 * `maxAttempts`). The answer is returned whatever its status.
 */
export async function callCheapest (opencloud: OpenCloud, candidates: SellerCandidate[], call: CallRequest, options: AbortOptions & { maxAttempts?: number } = {}): Promise<CallCheapestResult> {
  const skipped: CallCheapestResult['skipped'] = []
  for (const seller of candidates.slice(0, options.maxAttempts ?? 3)) {
    const targets = seller.addresses.length > 0 ? seller.addresses.slice(0, 3).map(a => multiaddr(a)) : [peerIdFromString(seller.peerId)]
    let error = ''
    for (const target of targets) {
      try {
        const result = await opencloud.call(target, call, options)
        return { seller, result, skipped }
      } catch (err: any) {
        options.signal?.throwIfAborted()
        error = err.message ?? String(err)
      }
    }
    skipped.push({ peerId: seller.peerId, error })
  }
  throw new Error(`no seller of ${call.service} could be reached${skipped.length > 0 ? `: ${skipped.map(s => `${s.peerId}: ${s.error}`).join('; ')}` : ''}`)
}
