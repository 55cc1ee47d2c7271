import { TopicValidatorResult } from '@libp2p/gossipsub'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { PeerDirectory } from '../dht/directory.js'
import { PROTOCOL as OPENCLOUD_PROTOCOL } from '../protocols/opencloud/api/constants.js'
import { reprice } from '../protocols/opencloud/api/template.js'
import { MARKET_TOPIC, MAX_VALIDITY, signAnnouncement, verifyAnnouncement } from './announcement.js'
import { ANNOUNCE_DEBOUNCE, ANNOUNCE_INTERVAL, SWEEP_INTERVAL, SYNC_PEERS, SYNC_TIMEOUT } from './config.js'
import { marketService, signedEntries } from './prices-service.js'
import { followMarketPrice, validateStrategy } from './strategy.js'
import type { Announcement } from './announcement.js'
import type { AnnounceResult, MarketComponents, MarketInit } from './config.js'
import type { PriceBook, PriceEntry, MethodSummary, RankedEntry, EntrySource, ApplyResult } from './price-book.js'
import type { PricingStrategy } from './strategy.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { Message, SubscriptionChangeData } from '@libp2p/gossipsub'
import type { AbortOptions, IdentifyResult, Logger, PeerId, Startable } from '@libp2p/interface'

/** How long a stopping seller lets its withdrawals leave before closing connections (ms) */
const WITHDRAWAL_FLUSH = 250

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
    let accepted = 0
    for (const signed of signedEntries(body)) {
      const verdict = await verifyAnnouncement(signed)
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
    return marketService(this.book)
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
