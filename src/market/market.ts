import { TopicValidatorResult } from '@libp2p/gossipsub'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { PeerDirectory } from '../dht/directory.js'
import { PROTOCOL as OPENCLOUD_PROTOCOL } from '../protocols/opencloud/api/constants.js'
import { ServiceError, reprice } from '../protocols/opencloud/api/template.js'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { MARKET_TOPIC, MAX_VALIDITY, signAnnouncement, verifyAnnouncement } from './announcement.js'
import { followMarketPrice, validateStrategy } from './strategy.js'
import type { Announcement } from './announcement.js'
import type { PriceBook, PriceEntry, MethodSummary, RankedEntry, EntrySource, ApplyResult } from './price-book.js'
import type { PricingStrategy } from './strategy.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { GossipSub, Message, SubscriptionChangeData } from '@libp2p/gossipsub'
import type { AbortOptions, ComponentLogger, IdentifyResult, Libp2pEvents, Logger, PeerId, PeerStore, PrivateKey, Startable, TypedEventTarget } from '@libp2p/interface'
import type { AddressManager, ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How long a stopping seller lets its withdrawals leave before closing connections (ms) */
const WITHDRAWAL_FLUSH = 250
/** How often a seller re-announces its prices (ms) */
export const ANNOUNCE_INTERVAL = 10 * 60_000
/** How many peers a starting node asks for their price book */
export const SYNC_PEERS = 2
/** Deadline of one price book request (ms) */
export const SYNC_TIMEOUT = 10_000
/** Most entries one `market.prices` answer carries (and a sync accepts) */
export const MAX_SYNC_ENTRIES = 2_000
/** Byte budget of the entries in one `market.prices` answer */
export const MAX_PRICES_BYTES = 1024 * 1024
/** How often expired entries are swept from the book (ms) */
export const SWEEP_INTERVAL = 60_000
/** Delay before re-announcing after the topic's audience grew (ms) */
export const ANNOUNCE_DEBOUNCE = 300

/**
 * What the market uses of a libp2p node: gossipsub (the service named
 * `pubsub`) and OpenCloud (named `opencloud`: the sold services, price book
 * requests, and the core `market` service it adds).
 */
export interface MarketComponents {
  peerId: PeerId
  /** signs the announcements */
  privateKey: PrivateKey
  peerStore: PeerStore
  connectionManager: Pick<ConnectionManager, 'getConnections'>
  addressManager: Pick<AddressManager, 'getAddresses'>
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
  pubsub: GossipSub
  opencloud: OpenCloud
}

export interface MarketInit {
  /** the price book (in the node's store) */
  book: PriceBook
  /** who sells what, as learned (shared with discovery) @default a new one */
  directory?: PeerDirectory
  /** The services this node sells (announced), read at every announcement */
  selling(opencloud: OpenCloud): ServiceDefinition[]
  /** Which of this node's addresses go in announcements @default all */
  announceAddress?(addr: Multiaddr): boolean
  /** Pricing strategies by `service.method`; others are `fixed` */
  strategies?: Record<string, PricingStrategy>
  /** @default 10 minutes */
  announceInterval?: number
  /** validity of an announcement (ms) @default 3 × announceInterval, at most 24 h */
  validity?: number
  /** @default 2 */
  syncPeers?: number
  /** @default 10_000 */
  syncTimeout?: number
  /** @default 60_000 */
  sweepInterval?: number
  /** @default 300 */
  announceDebounce?: number
}

export interface AnnounceResult {
  /** announcements signed and published */
  announced: number
  /** distinct peers the gossip router sent them to directly */
  recipients: number
}

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

type AnnouncementListener = (entry: PriceEntry, source: EntrySource) => void

/**
 * The market: signed price announcements on the gossipsub topic
 * `/decloud/market/1`, a price book in LevelDB, seller pricing strategies,
 * and the core `market` service that shares the book with nodes that just
 * joined (spec: "share my knowledge of market prices").
 */
export class Market implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/market']
  readonly [serviceDependencies]: string[] = ['@libp2p/pubsub', '@decloud/opencloud']
  readonly [Symbol.toStringTag] = '@decloud/market'
  readonly book: PriceBook
  readonly directory: PeerDirectory
  private readonly components: MarketComponents
  private readonly init: MarketInit
  private readonly log: Logger
  private readonly announceInterval: number
  private readonly validity: number
  private readonly syncPeers: number
  private readonly syncTimeout: number
  private readonly strategies: Record<string, PricingStrategy>
  private readonly listeners = new Set<AnnouncementListener>()
  private readonly syncing = new Map<string, Promise<number>>()
  private readonly synced = new Set<string>()
  private running = false
  private lastSeq = 0n
  private audienceAtLastAnnounce = 0
  private announcing?: Promise<AnnounceResult>
  private announceAgain = false
  private debounce?: ReturnType<typeof setTimeout>
  private interval?: ReturnType<typeof setInterval>
  private sweeper?: ReturnType<typeof setInterval>
  private shutdown = new AbortController()
  private readonly pending = new Set<Promise<unknown>>()

  constructor (components: MarketComponents, init: MarketInit) {
    this.components = components
    this.init = init
    this.book = init.book
    this.directory = init.directory ?? new PeerDirectory()
    this.log = components.logger.forComponent('decloud:market')
    this.announceInterval = init.announceInterval ?? ANNOUNCE_INTERVAL
    this.validity = Math.min(init.validity ?? 3 * this.announceInterval, MAX_VALIDITY)
    this.syncPeers = init.syncPeers ?? SYNC_PEERS
    this.syncTimeout = init.syncTimeout ?? SYNC_TIMEOUT
    this.strategies = init.strategies ?? {}
    for (const s of Object.values(this.strategies)) { validateStrategy(s) }
  }

  private readonly validator = async (from: PeerId, msg: Message): Promise<TopicValidatorResult> => {
    // with a gossipsub envelope signature (StrictSign) its signer must be the announcing peer too
    const verdict = await verifyAnnouncement(msg.data, { from: msg.type === 'signed' ? msg.from : undefined })
    if (!verdict.ok) {
      this.log('%s announcement relayed by %p: %s', verdict.action, from, verdict.reason)
      return verdict.action === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
    const result = this.accept(verdict.announcement, verdict.signed, 'gossip')
    return result.accepted ? TopicValidatorResult.Accept : TopicValidatorResult.Ignore
  }

  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    if (!evt.detail.subscriptions.some(s => s.topic === MARKET_TOPIC && s.subscribe)) { return }
    // the audience doubled since our last announcement: tell the newcomers (bounded: log2(N) times)
    const audience = this.components.pubsub.getSubscribers(MARKET_TOPIC).length
    if (audience >= 2 * this.audienceAtLastAnnounce || this.audienceAtLastAnnounce === 0) { this.scheduleAnnounce(this.init.announceDebounce ?? ANNOUNCE_DEBOUNCE) }
  }

  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    if (evt.detail.protocols.includes(OPENCLOUD_PROTOCOL)) { this.maybeSync(evt.detail.peerId) }
  }

  /** Asks `peer` for its price book unless enough peers were asked already */
  private maybeSync (peer: PeerId): void {
    if (!this.running || this.synced.size + this.syncing.size >= this.syncPeers) { return }
    this.track(this.syncFrom(peer).catch(err => { this.log('price book sync from %p failed - %e', peer, err) }))
  }

  isStarted (): boolean {
    return this.running
  }

  // libp2p's start phase: gossipsub is starting alongside
  start (): void {}

  /** Serves the core `market` service (unless OpenCloud already has one) */
  beforeStart (): void {
    if (!this.components.opencloud.services.has('market')) { this.components.opencloud.addService(this.service()) }
  }

  /** Joins the market topic once libp2p (and so gossipsub) has started */
  async afterStart (): Promise<void> {
    if (this.running) { return }
    this.running = true
    this.shutdown = new AbortController()
    await this.book.load()
    this.lastSeq = this.book.lastSeqOf(this.components.peerId.toString())
    const pubsub = this.components.pubsub
    pubsub.topicValidators.set(MARKET_TOPIC, this.validator)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    pubsub.subscribe(MARKET_TOPIC)
    // peers identified before this listener was attached
    for (const c of this.components.connectionManager.getConnections()) {
      const peer = await this.components.peerStore.get(c.remotePeer).catch(() => undefined)
      if (peer?.protocols.includes(OPENCLOUD_PROTOCOL) === true) { this.maybeSync(c.remotePeer) }
    }
    this.interval = setInterval(() => { this.scheduleAnnounce(0) }, this.announceInterval)
    this.interval.unref?.()
    this.sweeper = setInterval(() => { this.book.sweep() }, this.init.sweepInterval ?? SWEEP_INTERVAL)
    this.sweeper.unref?.()
    // our own prices go into our own book at once
    this.scheduleAnnounce(0)
  }

  /**
   * Leaves the market gracefully: publishes withdrawals for what this node
   * sold (where it can), then stops. `createDecloudNode`'s `stop()` calls it
   * before stopping libp2p, while the connections the withdrawals leave on
   * are open.
   */
  async leave (): Promise<void> {
    await this.halt(true)
  }

  /**
   * libp2p's stop: the market stops without withdrawing, as when the
   * process dies; its prices lapse on other nodes at their validity
   */
  async beforeStop (): Promise<void> {
    await this.halt(false)
  }

  async stop (): Promise<void> {
    await this.halt(false)
  }

  private async halt (withdraw: boolean): Promise<void> {
    if (!this.running) { return }
    // no new rounds from here on
    this.running = false
    clearTimeout(this.debounce)
    clearInterval(this.interval)
    clearInterval(this.sweeper)
    await this.announcing?.catch(() => {})
    if (withdraw && this.components.pubsub.getSubscribers(MARKET_TOPIC).length > 0) {
      const sent = await this.publishAll(true).catch(err => { this.log('withdrawal failed - %e', err) })
      // publish only queues the frames on the peers' streams: give them a moment to leave
      // before the node closes its connections, or a busy node's withdrawal is lost
      if (sent != null && sent.recipients > 0) { await new Promise(resolve => setTimeout(resolve, WITHDRAWAL_FLUSH)) }
    }
    this.shutdown.abort()
    await Promise.allSettled([...this.pending])
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    this.components.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.components.pubsub.topicValidators.delete(MARKET_TOPIC)
    try {
      this.components.pubsub.unsubscribe(MARKET_TOPIC)
    } catch {}
    await this.book.flush()
  }

  /** Calls `fn` for every announcement accepted into the book */
  onAnnouncement (fn: AnnouncementListener): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Applies a verified announcement to the book and tells the listeners */
  private accept (a: Announcement, signed: Parameters<PriceBook['apply']>[1], source: EntrySource): ApplyResult {
    const result = this.book.apply(a, signed, source)
    if (!result.accepted) { return result }
    const peerId = a.peer.toString()
    if (result.removed === true) {
      this.directory.forget(peerId, a.service)
      return result
    }
    this.directory.note(peerId, a.service, a.addrs.map(s => s.includes('/p2p/') ? s : `${s}/p2p/${peerId}`))
    const entry = this.book.entries({ service: a.service, method: a.method, peerId })[0]
    if (entry != null) {
      for (const fn of this.listeners) {
        try {
          fn(entry, source)
        } catch {}
      }
    }
    return result
  }

  /** This node's addresses that go in announcements */
  private addresses (): string[] {
    const keep = this.init.announceAddress
    return this.components.addressManager.getAddresses()
      .filter(a => keep == null || keep(a))
      .map(a => a.toString())
  }

  private track<T> (p: Promise<T>): void {
    this.pending.add(p)
    void p.finally(() => this.pending.delete(p))
  }

  private scheduleAnnounce (delay: number): void {
    if (!this.running) { return }
    if (this.announcing != null) {
      this.announceAgain = true
      return
    }
    if (this.debounce != null) { return }
    this.debounce = setTimeout(() => {
      this.debounce = undefined
      this.track(this.announce().catch(err => { this.log.error('announce failed - %e', err) }))
    }, delay)
    this.debounce.unref?.()
  }

  /**
   * Signs and publishes the current price of every method this node sells
   * (re-pricing follow-the-market methods first). Concurrent calls share one
   * round.
   */
  async announce (): Promise<AnnounceResult> {
    if (this.announcing != null) { return this.announcing }
    if (!this.running) { return { announced: 0, recipients: 0 } }
    this.announcing = this.publishAll(false).finally(() => {
      this.announcing = undefined
      if (this.announceAgain && this.running) {
        this.announceAgain = false
        this.scheduleAnnounce(this.init.announceDebounce ?? ANNOUNCE_DEBOUNCE)
      }
    })
    return this.announcing
  }

  private nextSeq (): bigint {
    const now = BigInt(Date.now())
    this.lastSeq = now > this.lastSeq ? now : this.lastSeq + 1n
    return this.lastSeq
  }

  /** The price `service.method` is sold at now, after its strategy */
  currentPricing (def: ServiceDefinition, method: string): Pricing {
    const m = def.methods[method]
    const strategy = this.strategies[`${def.name}.${method}`]
    if (strategy == null) { return m.pricing ?? {} }
    if (strategy.strategy === 'fixed') { return strategy.pricing ?? m.pricing ?? {} }
    return followMarketPrice({ peerId: this.components.peerId.toString(), units: m.units ?? [], configured: m.pricing }, this.book.entries({ service: def.name, method }), strategy)
  }

  private async publishAll (withdraw: boolean): Promise<AnnounceResult> {
    const self = this.components.peerId
    const now = Date.now()
    const addrs = this.addresses().slice(0, 8)
    const recipients = new Set<string>()
    let announced = 0
    this.audienceAtLastAnnounce = this.components.pubsub.getSubscribers(MARKET_TOPIC).length
    for (const def of this.init.selling(this.components.opencloud)) {
      const info = def.describe != null ? await def.describe() : {}
      const free = typeof info.free === 'number' && Number.isSafeInteger(info.free) && info.free >= 0 ? BigInt(info.free) : 0n
      for (const [name, m] of Object.entries(def.methods)) {
        // a method with neither units nor a price is free per call: nothing to announce
        if ((m.units ?? []).length === 0 && m.pricing == null && this.strategies[`${def.name}.${name}`] == null) { continue }
        const pricing = this.currentPricing(def, name)
        // the server charges what the market is told
        if (!withdraw && this.strategies[`${def.name}.${name}`] != null) { reprice(m, pricing) }
        const bytes = await signAnnouncement(this.components.privateKey, self, {
          service: def.name,
          version: def.version,
          method: name,
          units: m.units ?? [],
          base: pricing.base ?? 0n,
          rate: pricing.rate ?? 0n,
          per: pricing.per ?? 1n,
          capacity: (m.units ?? []).length > 0 ? free : 0n,
          issued: now,
          validUntil: now + this.validity,
          seq: this.nextSeq(),
          addrs,
          withdrawn: withdraw
        })
        const verdict = await verifyAnnouncement(bytes, { now })
        if (verdict.ok) { this.accept(verdict.announcement, verdict.signed, 'self') }
        try {
          const res = await this.components.pubsub.publish(MARKET_TOPIC, bytes)
          for (const p of res.recipients) { recipients.add(p.toString()) }
        } catch (err: any) {
          this.log('publish %s.%s: %s', def.name, name, err.message)
        }
        announced++
      }
    }
    return { announced, recipients: recipients.size }
  }

  /**
   * Asks `peer` for its price book (`market.prices`) and merges every entry
   * whose signature verifies. Returns how many entries were accepted.
   */
  async syncFrom (peer: PeerId, options: AbortOptions = {}): Promise<number> {
    const id = peer.toString()
    const inFlight = this.syncing.get(id)
    if (inFlight != null) { return inFlight }
    const p = (async () => {
      const signals = [this.shutdown.signal, AbortSignal.timeout(this.syncTimeout)]
      if (options.signal != null) { signals.push(options.signal) }
      const body = await this.components.opencloud.callOk(peer, { service: 'market', method: 'prices' }, { signal: AbortSignal.any(signals) })
      const accepted = await this.merge(body, 'sync')
      this.synced.add(id)
      this.log('synced %d price entries from %p', accepted, peer)
      // follow-the-market prices depend on what was just learned
      if (accepted > 0 && Object.values(this.strategies).some(s => s.strategy === 'follow-market')) { this.scheduleAnnounce(this.init.announceDebounce ?? ANNOUNCE_DEBOUNCE) }
      return accepted
    })().finally(() => { this.syncing.delete(id) })
    this.syncing.set(id, p)
    return p
  }

  /** Verifies and applies the entries of a `market.prices` answer */
  async merge (body: Uint8Array, source: EntrySource): Promise<number> {
    let parsed: unknown
    try {
      parsed = JSON.parse(new TextDecoder().decode(body))
    } catch {
      throw new Error('market.prices answer is not JSON')
    }
    const entries = (parsed as { entries?: unknown }).entries
    if (!Array.isArray(entries)) { throw new Error('market.prices answer has no entries') }
    let accepted = 0
    for (const e of entries.slice(0, MAX_SYNC_ENTRIES)) {
      const signed = (e as { signed?: unknown })?.signed
      if (typeof signed !== 'string' || signed.length > 4096) { continue }
      const verdict = await verifyAnnouncement(Buffer.from(signed, 'base64'))
      if (!verdict.ok) { continue }
      if (this.accept(verdict.announcement, verdict.signed, source).accepted) { accepted++ }
    }
    return accepted
  }

  /** The price book per service/method (see PriceBook.summary) */
  prices (filter: { service?: string, method?: string, usage?: bigint } = {}): MethodSummary[] {
    return this.book.summary(filter)
  }

  /** Sellers of `service.method` by price, cheapest first */
  rank (service: string, method: string, usage?: bigint): RankedEntry[] {
    return this.book.rank(service, method, usage)
  }

  /** The core `market` service */
  service (): ServiceDefinition {
    return {
      name: 'market',
      version: '1.0.0',
      description: 'this node\'s knowledge of market prices (signed announcements it has verified)',
      describe: () => ({ topic: MARKET_TOPIC, entries: this.book.size }),
      methods: {
        prices: {
          description: 'the price book as JSON: a summary per service/method and the signed entries',
          args: '[service] [method]',
          handler: (call) => {
            const [service, method] = call.args
            if (call.args.length > 2) { throw new ServiceError(Status.BAD_REQUEST, 'usage: prices [service] [method]') }
            const filter = { service: service === '' ? undefined : service, method: method === '' ? undefined : method }
            const summary = this.book.summary(filter).map(summaryJson)
            // newest first, within a count and a byte budget (the answer must fit any body limit)
            const entries: PriceEntryJson[] = []
            let bytes = 0
            for (const e of this.book.entries(filter).sort((a, b) => b.issued - a.issued)) {
              const j = entryJson(e)
              bytes += JSON.stringify(j).length + 1
              if (entries.length >= MAX_SYNC_ENTRIES || bytes > MAX_PRICES_BYTES) { break }
              entries.push(j)
            }
            return { body: new TextEncoder().encode(JSON.stringify({ generated: Date.now(), summary, entries })) }
          }
        }
      }
    }
  }
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

/**
 * The market as a libp2p service; needs gossipsub as `pubsub` and OpenCloud
 * as `opencloud` among the node's services.
 *
 * @example
 * ```ts
 * services: {
 *   opencloud: openCloud({ services }),
 *   pubsub: gossipsub({ globalSignaturePolicy: 'StrictNoSign' }),
 *   market: market({ book: new PriceBook({ db: store.sub('market') }), selling: (oc) => [...oc.services.values()] })
 * }
 * ```
 */
export function market (init: MarketInit): (components: MarketComponents) => Market {
  return (components) => new Market(components, init)
}
