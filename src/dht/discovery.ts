import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { FIND_TIMEOUT, JOIN_LOOKUPS, JOIN_RETRY, LONELY_AFTER, PROVIDE_DEBOUNCE, PROVIDE_RETRY, PROVIDE_TIMEOUT, REPROVIDE_INTERVAL } from './config.js'
import { PeerDirectory } from './directory.js'
import { withPeer } from './keys.js'
import { majorVersion, serviceKey } from './keys.js'
import { peersService } from './peers-service.js'
import { join, localProviders, routingTableOf, waitForPeer } from './routing.js'
import type { AdvertisedService, DiscoveryComponents, DiscoveryInit, FindSellersOptions, Seller } from './config.js'
import type { DhtKey } from './keys.js'
import type { RoutingTableLike } from './routing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { AbortOptions, Logger, PeerInfo, Startable } from '@libp2p/interface'

const MERGED_PEERS = 1024

interface Advert {
  service: string
  version: number
  key: DhtKey
  lastProvided: number
  reached: number
}

/**
 * Seller discovery over decloud's Kademlia DHT. Each service a node sells is
 * a provider record under the service's well-known key (see `serviceKey`).
 * The node provides as soon as its routing table has a peer, again each
 * time the table has doubled in size (so a growing swarm learns about it),
 * every `reprovideInterval`, and retries with backoff when a round reached
 * nobody. Every DHT operation runs under a deadline.
 */
export class Discovery implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/discovery']
  readonly [serviceDependencies]: string[] = ['@libp2p/kad-dht', '@decloud/opencloud']
  readonly [Symbol.toStringTag] = '@decloud/discovery'
  /** Which peers sell which services, as learned so far */
  readonly directory: PeerDirectory
  private readonly components: DiscoveryComponents
  private readonly init: DiscoveryInit
  private readonly adverts = new Map<string, Advert>()
  private readonly log: Logger
  private readonly provideTimeout: number
  private readonly findTimeout: number
  private readonly reprovideInterval: number
  private readonly provideDebounce: number
  private readonly provideRetry: number
  private shutdown = new AbortController()
  private running = false
  private startedAt = 0
  private providing?: Promise<void>
  private again = false
  private sizeAtLastProvide = 0
  private retryDelay: number
  private debounceTimer?: ReturnType<typeof setTimeout>
  private retryTimer?: ReturnType<typeof setTimeout>
  private interval?: ReturnType<typeof setInterval>
  private readonly joinLookups: number
  private readonly joinRetry: number
  private joined = false
  private joining?: Promise<void>
  /** provider addresses already merged into the peer store, by peer */
  private readonly merged = new Map<string, string>()
  private readonly onPeerAdd = (): void => {
    this.join()
    this.grew()
  }

  private readonly onPeerRemove = (): void => {
    // an empty table means a fresh join when the next peer comes
    if (this.routingTableSize() === 0) { this.joined = false }
  }

  constructor (components: DiscoveryComponents, init: DiscoveryInit) {
    this.components = components
    this.init = init
    this.directory = init.directory ?? new PeerDirectory()
    this.log = components.logger.forComponent('decloud:discovery')
    this.provideTimeout = init.provideTimeout ?? PROVIDE_TIMEOUT
    this.findTimeout = init.findTimeout ?? FIND_TIMEOUT
    this.reprovideInterval = init.reprovideInterval ?? REPROVIDE_INTERVAL
    this.provideDebounce = init.provideDebounce ?? PROVIDE_DEBOUNCE
    this.provideRetry = init.provideRetry ?? PROVIDE_RETRY
    this.retryDelay = this.provideRetry
    this.joinLookups = init.joinLookups ?? JOIN_LOOKUPS
    this.joinRetry = init.joinRetry ?? JOIN_RETRY
  }

  private get routingTable (): RoutingTableLike | undefined {
    return routingTableOf(this.components.dht)
  }

  /** Peers in the DHT routing table */
  routingTableSize (): number {
    return this.routingTable?.size ?? 0
  }

  isStarted (): boolean {
    return this.running
  }

  // libp2p's start phase: the DHT is starting alongside
  start (): void {}

  /** Serves the core `peers` service (unless OpenCloud already has one) */
  beforeStart (): void {
    const opencloud = this.components.opencloud
    if (opencloud.services.has('peers')) { return }
    const { peerId, peerStore, connectionManager, addressManager } = this.components
    opencloud.addService(peersService({
      libp2p: {
        peerId,
        peerStore,
        getConnections: (peer) => connectionManager.getConnections(peer),
        getMultiaddrs: () => addressManager.getAddresses()
      },
      directory: this.directory,
      selling: () => this.selling().map(s => s.name)
    }))
  }

  /** Advertises what this node sells once libp2p (and so the DHT) has started */
  afterStart (): void {
    if (this.running) { return }
    for (const s of this.selling()) { this.advertise(s.name, s.version) }
    this.running = true
    this.startedAt = Date.now()
    this.shutdown = new AbortController()
    this.routingTable?.addEventListener('peer:add', this.onPeerAdd)
    this.routingTable?.addEventListener('peer:remove', this.onPeerRemove)
    this.interval = setInterval(() => { this.schedule(0) }, this.reprovideInterval)
    this.interval.unref?.()
    if (this.routingTableSize() > 0) {
      this.join()
      this.schedule(0)
    }
  }

  /**
   * Kademlia's join (see `join`), once the routing table has its first
   * peer. (kad-dht's own start-up self-query runs before any peer is
   * connected and finds nobody.) A join after the table emptied runs after
   * the one before it.
   */
  private join (): void {
    if (!this.running || this.joined || this.routingTableSize() === 0) { return }
    this.joined = true
    const { dht, peerId } = this.components
    const options = { dht, self: peerId, size: () => this.routingTableSize(), lookups: this.joinLookups, retry: this.joinRetry, timeout: this.findTimeout, signal: this.shutdown.signal, log: this.log }
    this.joining = (this.joining ?? Promise.resolve()).then(async () => { await join(options) })
  }

  /** Stops advertising (before the DHT stops): no provide round runs after this resolves */
  async stop (): Promise<void> {
    await this.beforeStop()
  }

  async beforeStop (): Promise<void> {
    if (!this.running) { return }
    this.running = false
    this.routingTable?.removeEventListener('peer:add', this.onPeerAdd)
    this.routingTable?.removeEventListener('peer:remove', this.onPeerRemove)
    clearInterval(this.interval)
    clearTimeout(this.debounceTimer)
    clearTimeout(this.retryTimer)
    this.debounceTimer = undefined
    this.retryTimer = undefined
    this.shutdown.abort()
    await this.providing?.catch(() => {})
    await this.joining
    for (const a of this.adverts.values()) {
      await this.components.dht.cancelReprovide(a.key).catch(() => {})
    }
  }

  /** Sell `service`: advertise it in the DHT from now on */
  advertise (service: string, version: string | number = 1): void {
    const major = majorVersion(version)
    const id = `${service}/${major}`
    if (this.adverts.has(id)) { return }
    this.adverts.set(id, { service, version: major, key: serviceKey(service, major), lastProvided: 0, reached: 0 })
    this.sizeAtLastProvide = 0
    if (this.running && this.routingTableSize() > 0) { this.schedule(this.provideDebounce) }
  }

  /**
   * Stop advertising `service`. Records already stored on other nodes cannot
   * be deleted (Kademlia has no removal); they expire after PROVIDER_VALIDITY.
   */
  async withdraw (service: string, version: string | number = 1): Promise<void> {
    const id = `${service}/${majorVersion(version)}`
    const a = this.adverts.get(id)
    if (a == null) { return }
    this.adverts.delete(id)
    await this.components.dht.cancelReprovide(a.key).catch(() => {})
  }

  /** The services this node sells, as of now */
  selling (): ServiceDefinition[] {
    return this.init.selling(this.components.opencloud)
  }

  /** What this node advertises and how the last provide rounds went */
  advertised (): AdvertisedService[] {
    return [...this.adverts.values()].map(a => ({ service: a.service, version: a.version, key: a.key.toString(), lastProvided: a.lastProvided, reached: a.reached }))
  }

  /** The routing table grew: provide again when it has doubled since the last round */
  private grew (): void {
    if (!this.running || this.adverts.size === 0) { return }
    const size = this.routingTableSize()
    if (this.sizeAtLastProvide === 0 || size >= 2 * this.sizeAtLastProvide) { this.schedule(this.provideDebounce) }
  }

  private schedule (delay: number): void {
    if (!this.running || this.adverts.size === 0) { return }
    if (this.providing != null) {
      this.again = true
      return
    }
    if (this.debounceTimer != null) { return }
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined
      void this.provideAll()
    }, delay)
    this.debounceTimer.unref?.()
  }

  /**
   * Runs one provide round for every advertised service now (or joins the
   * running one). Resolves when the round is over; never throws.
   */
  async provideAll (options: AbortOptions = {}): Promise<void> {
    if (this.providing != null) { return this.providing }
    if (!this.running) { return }
    this.providing = this.provideRound(options).finally(() => {
      this.providing = undefined
      if (this.again && this.running) {
        this.again = false
        this.schedule(this.provideDebounce)
      }
    })
    return this.providing
  }

  private async provideRound (options: AbortOptions): Promise<void> {
    this.sizeAtLastProvide = Math.max(1, this.routingTableSize())
    this.log('provide round: %d services, routing table %d', this.adverts.size, this.sizeAtLastProvide)
    let reachedAny = false
    const signals = [this.shutdown.signal, AbortSignal.timeout(this.provideTimeout)]
    if (options.signal != null) { signals.push(options.signal) }
    const signal = AbortSignal.any(signals)
    await Promise.all([...this.adverts.values()].map(async (a) => {
      let reached = 0
      try {
        await this.waitForPeer(signal)
        for await (const event of this.components.dht.provide(a.key, { signal })) {
          if (event.name === 'PEER_RESPONSE' && event.messageName === 'ADD_PROVIDER') { reached++ }
        }
      } catch (err: any) {
        if (!signal.aborted) { this.log.error('provide %s failed - %e', a.service, err) }
      }
      a.lastProvided = Date.now()
      a.reached = reached
      if (reached > 0) { reachedAny = true }
      this.log('provided %s/%d to %d peers', a.service, a.version, reached)
    }))
    if (!this.running) { return }
    clearTimeout(this.retryTimer)
    if (reachedAny) {
      this.retryDelay = this.provideRetry
    } else {
      // nobody took the record: try again later, backing off
      this.retryTimer = setTimeout(() => { this.retryTimer = undefined; this.schedule(0) }, this.retryDelay)
      this.retryTimer.unref?.()
      this.retryDelay = Math.min(this.retryDelay * 2, this.reprovideInterval)
    }
  }

  /**
   * Finds sellers of `service` through the DHT, yielding each as soon as it
   * is found. Ends at the deadline (`timeout`), on `signal`, when `limit`
   * sellers were found or when the lookup is exhausted; never throws on a
   * deadline and never hangs.
   */
  async * findSellersStream (service: string, options: FindSellersOptions = {}): AsyncGenerator<Seller> {
    const version = majorVersion(options.version ?? 1)
    const key = serviceKey(service, version)
    const timeout = options.timeout ?? this.findTimeout
    const signals = [this.shutdown.signal, AbortSignal.timeout(timeout)]
    if (options.signal != null) { signals.push(options.signal) }
    const signal = AbortSignal.any(signals)
    const self = this.components.peerId
    const seen = new Set<string>()
    const limit = options.limit ?? Infinity
    let count = 0

    // a node that has been alone for a while has nobody to ask: the DHT would wait for peers until the deadline
    const alone = this.routingTableSize() === 0 && this.components.connectionManager.getConnections().length === 0 && Date.now() - this.startedAt > LONELY_AFTER

    const found = async (info: PeerInfo): Promise<Seller | undefined> => {
      const id = info.id.toString()
      if (seen.has(id)) { return undefined }
      if (!(options.includeSelf ?? false) && info.id.equals(self)) { return undefined }
      seen.add(id)
      const addresses = await this.addressesOf(info, { signal })
      this.directory.note(id, service, addresses)
      return { peerId: id, addresses, service, version }
    }

    if (alone) {
      for (const id of await localProviders(this.components.dht, key, signal)) {
        const seller = await found({ id, multiaddrs: [] })
        if (seller == null) { continue }
        yield seller
        if (++count >= limit) { return }
      }
      return
    }
    try {
      // the DHT runs queries on an empty routing table (allowQueryWithZeroPeers): wait for a peer first
      await this.waitForPeer(signal)
      for await (const event of this.components.dht.findProviders(key, { signal })) {
        if (event.name !== 'PROVIDER') { continue }
        for (const info of event.providers) {
          const seller = await found(info)
          if (seller == null) { continue }
          yield seller
          if (++count >= limit) { return }
        }
      }
    } catch (err: any) {
      if (!signal.aborted) { throw err }
      // deadline reached: the sellers found so far are the answer
    }
  }

  /** Resolves when the routing table has a peer; rejects when `signal` aborts */
  private async waitForPeer (signal: AbortSignal): Promise<void> {
    await waitForPeer(this.routingTable, signal)
  }

  /** Finds sellers of `service` with a deadline; see findSellersStream */
  async findSellers (service: string, options: FindSellersOptions = {}): Promise<Seller[]> {
    const out: Seller[] = []
    for await (const s of this.findSellersStream(service, options)) { out.push(s) }
    return out
  }

  /** The provider's addresses (from the record, else the peer store), with /p2p/ */
  private async addressesOf (info: PeerInfo, options: AbortOptions): Promise<string[]> {
    let addrs = info.multiaddrs
    if (addrs.length === 0) {
      try {
        const peer = await this.components.peerStore.get(info.id, options)
        addrs = peer.addresses.map(a => a.multiaddr)
      } catch {}
    } else {
      // remember the addresses so that the seller can be called by peer id (once per address set)
      const id = info.id.toString()
      const key = addrs.map(a => a.toString()).join(' ')
      if (this.merged.get(id) !== key) {
        this.merged.delete(id)
        this.merged.set(id, key)
        if (this.merged.size > MERGED_PEERS) { this.merged.delete(this.merged.keys().next().value as string) }
        await this.components.peerStore.merge(info.id, { multiaddrs: addrs }, options).catch(() => {})
      }
    }
    const id = info.id.toString()
    return [...new Set(addrs.slice(0, 16).map(a => withPeer(a.toString(), id)))]
  }
}

/**
 * Seller discovery as a libp2p service; needs decloud's Kad-DHT as `dht` and
 * OpenCloud as `opencloud` among the node's services.
 *
 * @example
 * ```ts
 * services: {
 *   opencloud: openCloud({ services }),
 *   dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false }),
 *   discovery: discovery({ selling: (oc) => [...oc.services.values()].filter(s => s.name === 'storage') })
 * }
 * ```
 */
export function discovery (init: DiscoveryInit): (components: DiscoveryComponents) => Discovery {
  return (components) => new Discovery(components, init)
}
