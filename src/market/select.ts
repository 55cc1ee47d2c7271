import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { withPeer } from '../dht/keys.js'
import type { Market } from './market.js'
import type { RankedEntry } from './price-book.js'
import type { FindSellersOptions } from '../dht/config.js'
import type { Discovery } from '../dht/discovery.js'
import type { CallRequest, CallResult, CallTarget } from '../protocols/opencloud/net/client.js'
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
  /** the buyer's trust of the seller (0–1) when ranked with trust; undefined: nothing known */
  trust?: number
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

/**
 * The method to rank the sellers of `service` by when none is named: the
 * primary method of a known service, else the first (by name) the price
 * book has a price for, else '' (no price to rank by). `decloud sellers`,
 * `GET /v1/sellers` and every other ranking without a method use this.
 */
export function rankingMethod (service: string, market?: Pick<Market, 'book'>): string {
  return primaryMethod(service) ?? market?.book.entries({ service }).map(e => e.method).sort()[0] ?? ''
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
  /**
   * The buyer's trust of a seller (0–1, undefined: unknown): priced
   * sellers are ranked by price × (2 − trust), so an unknown seller must be
   * half the price of a fully trusted one to come first
   * (docs/reputation.md "Seller choice"). @default price alone
   */
  trust?(peerId: string): number | undefined
  /**
   * Share of rankings (0–0.5) in which, when the best seller is trusted, the
   * cheapest seller with no trust yet is put first instead: newcomers can
   * earn trust. @default 0.05 with `trust`
   */
  explore?: number
  /** random numbers in [0, 1) for exploration @default Math.random */
  random?(): number
}

/** Share of trust-weighted rankings that explore a seller with no trust yet */
export const EXPLORATION_SHARE = 0.05

/** What a priced seller's rank is computed from: the price, weighted by trust */
export function trustWeightedPrice (price: bigint, trust: number | undefined): number {
  const t = trust == null || !(trust >= 0) ? 0 : Math.min(1, trust)
  return Number(price) * (2 - t)
}

/**
 * Sellers of `service` ranked for one call: sellers with a price in the
 * book, cheapest first (ties: fresher price, then peer id), then sellers the
 * DHT found that have announced no price, in the order found. With
 * `trust`, priced sellers rank by price × (2 − trust) and a small share of
 * rankings explores a seller with no trust yet (docs/reputation.md).
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
  if (options.trust == null) { return [...priced, ...unpriced] }
  const trustOf = options.trust
  for (const c of all) {
    const t = trustOf(c.peerId)
    if (t != null) { c.trust = t }
  }
  // a stable sort: equal weighted prices keep the price book's order
  priced.sort((a, b) => trustWeightedPrice(a.price ?? 0n, a.trust) - trustWeightedPrice(b.price ?? 0n, b.trust))
  const explore = Math.min(0.5, Math.max(0, options.explore ?? EXPLORATION_SHARE))
  const best = priced[0]
  if (best != null && (best.trust ?? 0) > 0 && (options.random ?? Math.random)() < explore) {
    const i = priced.findIndex(c => c.trust == null || c.trust === 0)
    if (i > 0) { priced.unshift(...priced.splice(i, 1)) }
  }
  return [...priced, ...unpriced]
}

/** Sellers tried by `callCheapest` before giving up, by default */
export const CHEAPEST_ATTEMPTS = 3

export interface CallCheapestResult<R extends CallResult = CallResult> {
  seller: SellerCandidate
  result: R
  /** sellers tried before this one, with why they failed */
  skipped: Array<{ peerId: string, error: string }>
}

export interface CallCheapestOptions extends AbortOptions {
  /** sellers tried at most @default CHEAPEST_ATTEMPTS */
  maxAttempts?: number
  /**
   * deadline of each seller's attempt (ms): a seller that does not answer in
   * time is skipped and the next one is tried, while `signal` bounds the whole
   */
  timeout?: number
  /** told of each seller skipped, as it happens */
  onSkip?(skip: { peerId: string, error: string }): void
}

/** How `callCheapest` calls one seller: `OpenCloud.call`, or a paying caller such as `DecloudNode.pay` */
export interface SellerCaller<R extends CallResult = CallResult> {
  call(target: CallTarget, call: CallRequest, options: AbortOptions): Promise<R>
}

/** No seller could be reached; `skipped` says why, seller by seller */
export class NoSellerReachedError extends Error {
  static override name = 'NoSellerReachedError'
  override name = 'NoSellerReachedError'
  readonly skipped: Array<{ peerId: string, error: string }>

  constructor (service: string, skipped: Array<{ peerId: string, error: string }>) {
    super(`no seller of ${service} could be reached${skipped.length > 0 ? `: ${skipped.map(s => `${s.peerId}: ${s.error}`).join('; ')}` : ''}`)
    this.skipped = skipped
  }
}

/**
 * Calls `service.method` on the cheapest seller that answers: tries the
 * ranked sellers in order, moving on when one cannot be reached or does not
 * answer within `timeout` (at most `maxAttempts` sellers). The answer is
 * returned whatever its status. Rejects with NoSellerReachedError when none
 * answered, and with the abort reason once `signal` aborts.
 *
 * @example
 * ```ts
 * const ranked = await node.rankSellers('storage', { method: 'put', usage: BigInt(blob.byteLength) })
 * const { seller, result } = await callCheapest(node.opencloud, ranked, { service: 'storage', method: 'put', body: blob }, { timeout: 10_000 })
 * ```
 */
export async function callCheapest<R extends CallResult = CallResult> (caller: SellerCaller<R>, candidates: SellerCandidate[], call: CallRequest, options: CallCheapestOptions = {}): Promise<CallCheapestResult<R>> {
  const skipped: CallCheapestResult['skipped'] = []
  for (const seller of candidates.slice(0, options.maxAttempts ?? CHEAPEST_ATTEMPTS)) {
    options.signal?.throwIfAborted()
    const targets = seller.addresses.length > 0 ? seller.addresses.slice(0, 3).map(a => multiaddr(a)) : [peerIdFromString(seller.peerId)]
    // one deadline per seller, whichever of its addresses answers
    const deadline = options.timeout != null ? AbortSignal.timeout(options.timeout) : undefined
    const signals = [options.signal, deadline].filter((s): s is AbortSignal => s != null)
    const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined
    let error = ''
    for (const target of targets) {
      try {
        const result = await caller.call(target, call, { signal })
        return { seller, result, skipped }
      } catch (err: any) {
        options.signal?.throwIfAborted()
        if (deadline?.aborted === true) {
          error = `no answer within ${options.timeout} ms`
          break
        }
        error = err.message ?? String(err)
        // a seller that answered with a refusal to pay is not a dead seller
        if (isPaymentError(err)) { throw err }
      }
    }
    const skip = { peerId: seller.peerId, error }
    skipped.push(skip)
    options.onSkip?.(skip)
  }
  throw new NoSellerReachedError(call.service, skipped)
}

/** Errors of a paying caller that say the payment, not the seller, failed: trying another seller would not help */
function isPaymentError (err: any): boolean {
  return ['PaymentRefusedError', 'InsufficientFundsError', 'TxRejectedError', 'ChainUnavailableError', 'ChainUnsupportedError'].includes(err?.name)
}
