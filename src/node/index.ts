import '../polyfill.js'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import { kadDHT, removePrivateAddressesMapper, removePublicAddressesMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { isPrivate } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { PeerDirectory } from '../dht/directory.js'
import { Discovery, PROVIDER_VALIDITY } from '../dht/discovery.js'
import { peersService } from '../dht/peers-service.js'
import { MARKET_TOPIC } from '../market/announcement.js'
import { Market } from '../market/market.js'
import { PriceBook } from '../market/price-book.js'
import { rankSellers } from '../market/select.js'
import { payAndCall } from '../payments/bidding.js'
import { MAX_BODY_SIZE } from '../protocols/opencloud/constants.js'
import { openCloud } from '../protocols/opencloud/opencloud.js'
import { openCloudId } from '../protocols/opencloud/signing.js'
import { sha256Service } from '../services/sha256.js'
import { StorageService, DEFAULT_CAPACITY } from '../services/storage/index.js'
import { Store } from '../store/index.js'
import { defaultDataDir, ensureDataDir, loadOrCreateKey, DB_DIR } from './data-dir.js'
import { openPaymentParts } from './payments.js'
import { SwarmKeeper, parseBootstrap } from './swarm.js'
import type { NodePayments, PaymentsOptions, PolicyOptions } from './payments.js'
import type { FindSellersOptions, Seller } from '../dht/discovery.js'
import type { SellerCandidate, RankSellersOptions } from '../market/select.js'
import type { PricingStrategy } from '../market/strategy.js'
import type { PayOption, PaidCallResult } from '../payments/bidding.js'
import type { NodePolicy } from '../policy/reload.js'
import type { CallRequest, CallTarget } from '../protocols/opencloud/client.js'
import type { OpenCloud, OpenCloudInit } from '../protocols/opencloud/opencloud.js'
import type { Pricing } from '../services/pricing.js'
import type { ServiceDefinition } from '../services/template.js'
import type { GossipSub, GossipsubOpts } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { PeerId, PrivateKey, PeerDiscovery } from '@libp2p/interface'
import type { KadDHT, KadDHTInit } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Libp2p } from 'libp2p'

export const DEFAULT_PORT = 4001
/** decloud's own Kademlia DHT: never mixed with the IPFS DHT */
export const DHT_PROTOCOL = '/decloud/kad/1.0.0'
/** Core services every node serves; they are not advertised as sold */
export const CORE_SERVICES = ['info', 'peers', 'market', 'payments'] as const

/**
 * `local`: every node of the swarm is on loopback or a private network
 * (development, simulations, a LAN): private addresses are kept in DHT
 * records, many connections from one IP are allowed, gossipsub does not
 * penalise peers sharing an IP. `public`: the internet swarm: private
 * addresses are stripped from DHT records and announcements.
 */
export type NetworkMode = 'local' | 'public'

/**
 * Options of `createDecloudNode()`: a complete node with its data dir, LevelDB
 * store, libp2p (TCP, noise, yamux, DHT, gossipsub), OpenCloud and the
 * built-in services. All are optional; see docs/cli.md for what each means
 * on the command line.
 */
export interface DecloudNodeOptions {
  /** @default `$DECLOUD_DATA_DIR` or `~/.decloud` */
  dataDir?: string
  /** Multiaddrs to listen on @default ['/ip4/0.0.0.0/tcp/4001'] (port 0 with `dev`) */
  listen?: string[]
  /** Development mode: random port; later also an embedded regtest chain */
  dev?: boolean
  /** Use this key instead of the data dir's */
  privateKey?: PrivateKey
  /** Storage service limits and prices */
  storage?: {
    /** total bytes stored @default 10 GiB */
    capacity?: number
    /** largest blob @default the body limit (4 MiB) */
    maxBlobSize?: number
    /** hash every blob read and never serve bytes that do not match their id @default true */
    verifyOnGet?: boolean
    pricing?: { put?: Pricing, get?: Pricing }
  }
  sha256?: { pricing?: Pricing }
  /** More services to sell */
  services?: ServiceDefinition[]
  /** Passed to the OpenCloud service */
  opencloud?: Omit<OpenCloudInit, 'services'>
  /**
   * Multiaddrs (with /p2p/<peer id>) of nodes of the swarm to join. None: this
   * node is the first of a new swarm (or finds peers by mDNS).
   */
  bootstrap?: string[]
  /** Find peers on the LAN by multicast DNS @default false */
  mdns?: boolean
  /**
   * @default 'local' when every listen address is loopback, else 'public'
   */
  networkMode?: NetworkMode
  /**
   * Names of the served services to sell: advertised in the DHT and priced
   * on the market. @default every service except the core ones (info, peers, market)
   */
  sell?: string[]
  /** Seller discovery tuning */
  dht?: {
    /** one provide round's deadline (ms) @default 60_000 */
    provideTimeout?: number
    /** default deadline of `findSellers` (ms) @default 10_000 */
    findTimeout?: number
    /** re-provide period (ms) @default 1 hour */
    reprovideInterval?: number
    /** how long this node keeps others' provider records (ms) @default 6 hours */
    providerValidity?: number
    /** first retry after a provide round that reached nobody (ms) @default 5_000 */
    provideRetry?: number
    /** extra @libp2p/kad-dht options */
    kad?: Partial<KadDHTInit>
  }
  /** Market tuning */
  market?: {
    /** pricing strategy per `service.method`; others sell at the configured price */
    strategies?: Record<string, PricingStrategy>
    /** re-announce period (ms) @default 10 minutes */
    announceInterval?: number
    /** announcement validity (ms) @default 3 × announceInterval */
    validity?: number
    /** peers asked for their price book at start @default 2 */
    syncPeers?: number
    /** deadline of one price book request (ms) @default 10_000 */
    syncTimeout?: number
  }
  /** extra @libp2p/gossipsub options */
  gossipsub?: Partial<GossipsubOpts>
  /**
   * Bitcoin payments: chain backend, wallet, tabs, fulfilment of this node's
   * own deferred promises. Off (undefined or false): attached and deferred
   * payments are declined and priced methods answer too-low. `decloud node`
   * turns them on with the embedded regtest chain by default.
   */
  payments?: PaymentsOptions | false
  /**
   * Who may call what, at what price, how often, on what tab
   * (docs/policy.md). `false`: none, every call is allowed at the services'
   * prices. Undefined: none without payments; with payments on,
   * `<dataDir>/policy.yaml` or the default policy (so that tabs are only
   * run up by identities with coins or trust).
   */
  policy?: PolicyOptions | false
  /** Staying in the swarm */
  swarm?: {
    /** re-dial the bootstrap list and known peers below this many connections @default 1 */
    minConnections?: number
    /** how often to check (ms) @default 15_000 */
    checkInterval?: number
  }
}

// a type alias, not an interface: libp2p's ServiceMap needs an index signature
export type DecloudServices = {
  opencloud: OpenCloud
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
}

export interface DecloudNode {
  readonly libp2p: Libp2p<DecloudServices>
  readonly opencloud: OpenCloud
  readonly store: Store
  readonly storage: StorageService
  readonly dataDir: string
  readonly peerId: PeerId
  /** `oc:<peer id>` */
  readonly openCloudId: string
  readonly networkMode: NetworkMode
  /** Seller discovery over the DHT */
  readonly discovery: Discovery
  /** Price announcements and the price book */
  readonly market: Market
  /** Which peers sell which services, as learned so far */
  readonly directory: PeerDirectory
  /** Listen addresses with the /p2p/ suffix */
  addresses(): string[]
  /** Names of the services this node sells */
  selling(): string[]
  /** Keeps the node connected to its swarm */
  readonly swarm: SwarmKeeper
  /** Sellers of `service` found through the DHT, with a deadline */
  findSellers(service: string, options?: FindSellersOptions): Promise<Seller[]>
  /** Sellers of `service` for a call of `method`, cheapest first (price book + DHT) */
  rankSellers(service: string, options: RankSellersOptions): Promise<SellerCandidate[]>
  /** Chain, wallet, tabs and promises, when payments are on */
  readonly payments?: NodePayments
  /** The policy in force, when one is */
  readonly policy?: NodePolicy
  /**
   * A paid call: the bidding strategy (docs/payments.md) pays with the
   * wallet, attached or deferred, never more than `max` sats; the wallet's
   * `btc:` identity credential goes with it. Throws when payments are off.
   */
  pay(target: CallTarget, call: CallRequest, options: { pay: PayOption, max: bigint, signal?: AbortSignal }): Promise<PaidCallResult>
  stop(): Promise<void>
}

function isLoopback (addr: string): boolean {
  return /^\/ip4\/127\.|^\/ip6\/::1\/|^\/dns4?\/localhost\//.test(addr)
}

/** The network mode a node with these listen addresses gets by default */
export function defaultNetworkMode (listen: string[]): NetworkMode {
  return listen.length > 0 && listen.every(isLoopback) ? 'local' : 'public'
}

export interface DecloudDefaultsOptions {
  listen: string[]
  privateKey: PrivateKey
  opencloud: OpenCloudInit
  /** @default defaultNetworkMode(listen) */
  networkMode?: NetworkMode
  /** bootstrap multiaddrs (with /p2p/) */
  bootstrap?: string[]
  mdns?: boolean
  dht?: DecloudNodeOptions['dht']
  gossipsub?: Partial<GossipsubOpts>
}

/**
 * Defaults for a decloud libp2p node (TCP, noise, yamux, identify, ping,
 * decloud's Kad-DHT in server mode, gossipsub, bootstrap, mDNS), like
 * Helia's `libp2pDefaults()`; `createDecloudNode` uses them.
 */
export function decloudDefaults (options: DecloudDefaultsOptions): Parameters<typeof createLibp2p<DecloudServices>>[0] {
  const mode = options.networkMode ?? defaultNetworkMode(options.listen)
  const local = mode === 'local'
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if ((options.bootstrap ?? []).length > 0) { peerDiscovery.push(bootstrap({ list: options.bootstrap ?? [], timeout: 0 })) }
  if (options.mdns === true) { peerDiscovery.push(mdns({ serviceTag: 'decloud.local' })) }
  const providerValidity = options.dht?.providerValidity ?? PROVIDER_VALIDITY
  return {
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery,
    connectionManager: local
      ? {
          // every simulated node shares 127.0.0.1: libp2p's per-IP limit (5/s) would refuse most of them
          inboundConnectionThreshold: 10_000,
          maxIncomingPendingConnections: 256
        }
      : { inboundConnectionThreshold: 100 },
    services: {
      identify: identify(),
      ping: ping(),
      opencloud: openCloud(options.opencloud),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        // every decloud node that can be dialled serves the DHT (the default client mode keeps routing tables empty)
        clientMode: false,
        peerInfoMapper: local ? removePublicAddressesMapper : removePrivateAddressesMapper,
        // the first self-query starts at once (it waits for the first routing table peer)
        initialQuerySelfInterval: 0,
        // lookups need not wait for that self-query to finish: Discovery itself waits for the first
        // routing table peer, so a fresh node's first lookup starts as soon as it has one
        allowQueryWithZeroPeers: true,
        logPrefix: 'decloud:dht',
        datastorePrefix: '/decloud-dht',
        metricsPrefix: 'decloud_dht',
        reprovide: {
          // records held for others expire after providerValidity; the sweep runs every 10 minutes
          validity: providerValidity,
          interval: Math.min(10 * 60_000, providerValidity),
          // decloud's Discovery re-provides on its own schedule; kad-dht only re-provides an expired own record
          threshold: 0
        },
        ...options.dht?.kad
      }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        // decloud's messages carry their own signatures (by the key of the peer they speak for, over a
        // domain-separated encoding) and are verified by the topic validator: a second gossipsub
        // envelope signature would double the crypto per message. Message ids are content hashes.
        globalSignaturePolicy: 'StrictNoSign',
        emitSelf: false,
        // announcements are ~400 bytes; nothing on decloud's topics is large
        maxInboundDataLength: 64 * 1024,
        scoreParams: {
          // on loopback every peer shares one IP: the colocation penalty would graylist them all
          ...(local ? { IPColocationFactorWeight: 0 } : {}),
          topics: {
            [MARKET_TOPIC]: createTopicScoreParams({
              topicWeight: 1,
              timeInMeshWeight: 0.01,
              timeInMeshQuantum: 1000,
              timeInMeshCap: 100,
              firstMessageDeliveriesWeight: 1,
              firstMessageDeliveriesDecay: 0.9,
              firstMessageDeliveriesCap: 10,
              // the market is quiet: do not punish mesh peers for delivering little
              meshMessageDeliveriesWeight: 0,
              meshFailurePenaltyWeight: 0,
              // each invalid (forged, malformed, long expired) announcement costs 10·n²; slow decay (~1 min half-life)
              invalidMessageDeliveriesWeight: -10,
              invalidMessageDeliveriesDecay: 0.99
            })
          }
        },
        ...options.gossipsub
      })
    }
  }
}

/**
 * Starts a batteries-included decloud node: data dir with a persistent key,
 * LevelDB, libp2p with OpenCloud serving `info`, `peers`, `market`, `sha256`
 * and `storage`, decloud's Kad-DHT (seller discovery), gossipsub (market
 * prices), bootstrap and optional mDNS.
 *
 * @example
 * ```ts
 * const first = await createDecloudNode({ dataDir: '/tmp/a', listen: ['/ip4/127.0.0.1/tcp/0'] })
 * const second = await createDecloudNode({ dataDir: '/tmp/b', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: first.addresses() })
 * const sellers = await second.findSellers('storage', { timeout: 5_000 })
 * await second.stop()
 * await first.stop()
 * ```
 */
export async function createDecloudNode (options: DecloudNodeOptions = {}): Promise<DecloudNode> {
  const dataDir = options.dataDir ?? defaultDataDir()
  await ensureDataDir(dataDir)
  const privateKey = options.privateKey ?? await loadOrCreateKey(dataDir)
  const peerId = peerIdFromPrivateKey(privateKey)
  const listen = options.listen ?? [`/ip4/0.0.0.0/tcp/${options.dev === true ? 0 : DEFAULT_PORT}`]
  const networkMode = options.networkMode ?? defaultNetworkMode(listen)
  if (networkMode !== 'local' && networkMode !== 'public') { throw new TypeError(`network mode must be "local" or "public", not "${String(networkMode)}"`) }
  const bootstrapAddrs = parseBootstrap(options.bootstrap ?? [], peerId)
  const store = new Store(join(dataDir, DB_DIR))
  try {
    await store.open()
  } catch (err: any) {
    if (err.code === 'LEVEL_DATABASE_NOT_OPEN' && String(err.cause?.message ?? '').includes('lock')) {
      throw new Error(`the data dir ${dataDir} is in use by another decloud process`)
    }
    throw err
  }
  const maxBodySize = options.opencloud?.maxBodySize ?? MAX_BODY_SIZE
  let storage: StorageService
  let libp2p: Libp2p<DecloudServices>
  let parts: Awaited<ReturnType<typeof openPaymentParts>>
  try {
    parts = await openPaymentParts({ dataDir, store, payments: options.payments, policy: options.policy })
  } catch (err) {
    await store.close()
    throw err
  }
  try {
    // inside the try: an invalid option must not leave the data dir locked
    storage = new StorageService({
      db: store.sub('storage'),
      capacity: options.storage?.capacity ?? DEFAULT_CAPACITY,
      maxBlobSize: Math.min(options.storage?.maxBlobSize ?? maxBodySize, maxBodySize),
      verifyOnGet: options.storage?.verifyOnGet,
      pricing: options.storage?.pricing
    })
    libp2p = await createLibp2p({
      ...decloudDefaults({
        listen,
        privateKey,
        networkMode,
        bootstrap: bootstrapAddrs.map(a => a.toString()),
        mdns: options.mdns,
        dht: options.dht,
        gossipsub: options.gossipsub,
        opencloud: {
          ...options.opencloud,
          access: options.opencloud?.access ?? parts.access,
          payment: options.opencloud?.payment ?? parts.payment,
          verifiers: [...parts.verifiers, ...(options.opencloud?.verifiers ?? [])],
          services: [sha256Service(options.sha256), storage.definition(), ...parts.services, ...(options.services ?? [])]
        }
      }),
      start: false
    })
  } catch (err) {
    await parts.stop().catch(() => {})
    await store.close()
    throw err
  }

  const opencloud = libp2p.services.opencloud
  const logger = libp2p.logger
  const directory = new PeerDirectory()
  const sold = options.sell
  const selling = (): ServiceDefinition[] => [...opencloud.services.values()].filter(s =>
    sold != null ? sold.includes(s.name) : !(CORE_SERVICES as readonly string[]).includes(s.name))
  const announceable = (): string[] => libp2p.getMultiaddrs()
    .filter(a => networkMode === 'local' || !isPrivate(a))
    .map(a => a.toString())
  const discovery = new Discovery({
    libp2p,
    dht: libp2p.services.dht,
    directory,
    log: logger.forComponent('decloud:discovery'),
    provideTimeout: options.dht?.provideTimeout,
    findTimeout: options.dht?.findTimeout,
    reprovideInterval: options.dht?.reprovideInterval,
    provideRetry: options.dht?.provideRetry
  })
  const market = new Market({
    libp2p,
    pubsub: libp2p.services.pubsub,
    opencloud,
    privateKey,
    book: new PriceBook({ db: store.sub('market') }),
    directory,
    log: logger.forComponent('decloud:market'),
    selling,
    addresses: announceable,
    strategies: options.market?.strategies,
    announceInterval: options.market?.announceInterval,
    validity: options.market?.validity,
    syncPeers: options.market?.syncPeers,
    syncTimeout: options.market?.syncTimeout
  })
  if (!opencloud.services.has('peers')) {
    opencloud.addService(peersService({ libp2p, directory, selling: () => selling().map(s => s.name) }))
  }
  if (!opencloud.services.has('market')) { opencloud.addService(market.service()) }
  const keeper = new SwarmKeeper({
    libp2p,
    bootstrap: bootstrapAddrs,
    dialDiscovered: options.mdns === true,
    minConnections: options.swarm?.minConnections,
    interval: options.swarm?.checkInterval,
    log: logger.forComponent('decloud:swarm')
  })

  try {
    await libp2p.start()
    await market.start()
    for (const s of selling()) { discovery.advertise(s.name, s.version) }
    discovery.start()
    keeper.start()
    await parts.start(opencloud)
  } catch (err) {
    await parts.stop().catch(() => {})
    await market.stop().catch(() => {})
    await discovery.stop().catch(() => {})
    keeper.stop()
    try {
      await libp2p.stop()
    } catch {}
    await store.close()
    throw err
  }

  let stopped = false
  return {
    libp2p,
    opencloud,
    store,
    storage,
    dataDir,
    peerId,
    openCloudId: openCloudId(peerId),
    networkMode,
    discovery,
    market,
    directory,
    swarm: keeper,
    addresses: () => libp2p.getMultiaddrs().map(a => a.toString()),
    selling: () => selling().map(s => s.name),
    findSellers: async (service, opts) => discovery.findSellers(service, opts),
    // a node never ranks itself as a seller to buy from
    rankSellers: async (service, opts) => rankSellers(market, discovery, service, { ...opts, exclude: [...(opts.exclude ?? []), peerId.toString()] }),
    payments: parts.payments,
    policy: parts.policy,
    async pay (target, call, opts) {
      const p = parts.payments
      if (p == null) { throw new Error('payments are off on this node (start it with payments)') }
      return payAndCall(opencloud, target, { ...call, signers: [...(call.signers ?? []), p.wallet.identitySigner()] }, {
        pay: opts.pay,
        max: opts.max,
        wallet: p.wallet,
        promises: p.promises,
        backend: p.backend,
        signal: opts.signal
      })
    },
    async stop () {
      if (stopped) { return }
      stopped = true
      keeper.stop()
      await market.stop().catch(() => {})
      await discovery.stop().catch(() => {})
      await libp2p.stop()
      await parts.stop().catch(() => {})
      await store.close()
    }
  }
}

export { defaultDataDir, loadOrCreateKey, readKey } from './data-dir.js'
export { parseBootstrap } from './swarm.js'
