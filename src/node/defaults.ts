/**
 * The libp2p options of a decloud node, like Helia's `libp2pDefaults()`:
 * `createDecloudNode` builds on them, and an embedder can change any part
 * before calling `createLibp2p` itself.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { autoNATv2 } from '@libp2p/autonat-v2'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { gossipsub } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import { kadDHT, removePrivateAddressesMapper, removePublicAddressesMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { uPnPNAT } from '@libp2p/upnp-nat'
import { getThinWaistAddresses, isPrivate } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { PROVIDER_VALIDITY } from '../dht/config.js'
import { PeerDirectory } from '../dht/directory.js'
import { discovery } from '../dht/discovery.js'
import { MARKET_TOPIC } from '../market/announcement.js'
import { market } from '../market/market.js'
import { PriceBook } from '../market/price-book.js'
import { openCloud } from '../protocols/opencloud/net/opencloud.js'
import { Reputation } from '../reputation/model.js'
import { REPUTATION_TOPIC } from '../reputation/report.js'
import { reputationService } from '../reputation/service.js'
import { Store } from '../store/index.js'
import { isAnnounceable, reachability, treatAsPublic } from './nat.js'
import { payments } from './services.js'
import { parseBootstrap, swarmKeeper } from './swarm.js'
import type { NatMode, ReachabilityService, RelayOptions } from './nat.js'
import type { PaymentParts } from './payments.js'
import type { PaymentsService } from './services.js'
import type { SwarmKeeper } from './swarm.js'
import type { Discovery } from '../dht/discovery.js'
import type { Market } from '../market/market.js'
import type { PricingStrategy } from '../market/strategy.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { OpenCloud, OpenCloudInit } from '../protocols/opencloud/net/opencloud.js'
import type { ReputationService } from '../reputation/service.js'
import type { GossipSub, GossipsubOpts } from '@libp2p/gossipsub'
import type { Identify } from '@libp2p/identify'
import type { PrivateKey, PeerDiscovery } from '@libp2p/interface'
import type { KadDHT, KadDHTInit } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2pOptions } from 'libp2p'

export const DEFAULT_PORT = 4001
/** decloud's own Kademlia DHT: never mixed with the IPFS DHT */
export const DHT_PROTOCOL = '/decloud/kad/1.0.0'
/** Core services every node serves; they are not advertised as sold */
export const CORE_SERVICES = ['info', 'peers', 'market', 'payments', 'reputation'] as const

/**
 * `local`: every node of the swarm is on loopback or a private network
 * (development, simulations, a LAN): private addresses are kept in DHT
 * records, many connections from one IP are allowed, gossipsub does not
 * penalise peers sharing an IP. `public`: the internet swarm: private
 * addresses are stripped from DHT records and announcements.
 */
export type NetworkMode = 'local' | 'public'

function isLoopback (addr: string): boolean {
  return /^\/ip4\/127\.|^\/ip6\/::1\/|^\/dns4?\/localhost\//.test(addr)
}

export interface NetworkModeContext {
  /** the node's bootstrap multiaddrs */
  bootstrap?: string[]
  /**
   * what a wildcard listen address (`0.0.0.0`, `::`) stands for: the
   * machine's interface addresses as multiaddrs @default the machine's, as libp2p expands them
   */
  expand?(listen: Multiaddr): Multiaddr[]
}

/** A multiaddr that is private or loopback; a name (dns) is not */
function privateAddr (ma: Multiaddr): boolean {
  try {
    return isPrivate(ma)
  } catch {
    return false
  }
}

/**
 * The network mode a node gets by default: `local` while it has no public
 * address to give, else `public`.
 *
 * Listening on loopback only: `local`. A bootstrap peer with a public
 * address: `public` (it joins an internet swarm). Otherwise `local` when
 * every address it listens on is private or loopback, a wildcard
 * (`0.0.0.0`, the default) standing for the machine's interface addresses.
 * A node with only private addresses in `public` mode would strip them from
 * its DHT records and announcements and hand out none that can be dialled,
 * and its lookups would find sellers without addresses (a laptop, a LAN, the
 * README's swarm of two nodes on one machine); a machine with a public
 * interface address is `public` as before.
 */
export function defaultNetworkMode (listen: string[], context: NetworkModeContext = {}): NetworkMode {
  if (listen.length > 0 && listen.every(isLoopback)) { return 'local' }
  const parse = (a: string): Multiaddr | undefined => {
    try {
      return multiaddr(a)
    } catch {
      return undefined
    }
  }
  const bootstrap = (context.bootstrap ?? []).map(parse)
  if (bootstrap.some(ma => ma == null || !privateAddr(ma))) { return 'public' }
  const expand = context.expand ?? getThinWaistAddresses
  const own = listen.map(parse).flatMap(ma => ma == null ? [undefined] : expand(ma))
  return own.every(ma => ma != null && privateAddr(ma)) ? 'local' : 'public'
}

/** Seller discovery tuning */
export interface DhtOptions {
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
  /** most self-lookups when the node joins (0: none) @default 5 */
  joinLookups?: number
  /** delay before the second self-lookup of a join (ms), doubling @default 1_000 */
  joinRetry?: number
  /** extra @libp2p/kad-dht options */
  kad?: Partial<KadDHTInit>
}

/** Market tuning */
export interface MarketOptions {
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

/** Staying in the swarm */
export interface SwarmOptions {
  /** re-dial the bootstrap list and known peers below this many connections @default 1 */
  minConnections?: number
  /** how often to check (ms) @default 15_000 */
  checkInterval?: number
}

// a type alias, not an interface: libp2p's ServiceMap needs an index signature
export type DecloudServices = {
  opencloud: OpenCloud
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  /** seller discovery over the DHT; serves the core `peers` service */
  discovery: Discovery
  /** price announcements and the price book; serves the core `market` service */
  market: Market
  /** keeps the node connected to its swarm */
  swarm: SwarmKeeper
  /** the tab sweep and the fulfilment loop (idle when payments are off) */
  payments: PaymentsService
  /** signed reputation reports on gossipsub; serves the core `reputation` service */
  reputation: ReputationService
  /** `public` mode only: AutoNAT v2 (asks peers to dial our addresses back, and dials theirs) */
  autoNAT?: unknown
  /** `public` mode only: hole punching over relayed connections */
  dcutr?: unknown
  /** `public` mode only: the reachability verdict, DHT mode and relay (docs/nat.md) */
  reachability?: ReachabilityService
  /** `public` mode with `nat: 'upnp'`: port mapping on the LAN gateway */
  upnp?: unknown
}

/** Behind a router: AutoNAT, relay, hole punching, port mapping (`public` mode; docs/nat.md) */
export interface NatOptions {
  /** map the listen port on the LAN gateway by UPnP / NAT-PMP @default 'none' */
  nat?: NatMode
  /** IPv4 ranges (CIDR) treated as public: for namespaces and private deployments @default none */
  publicRanges?: string[]
  /** the relay a reachable node offers */
  relay?: RelayOptions
  /** ms without a verified address, once a peer able to check was met, before the verdict is private @default 30_000 */
  privateAfter?: number
}

export interface DecloudDefaultsOptions {
  listen: string[]
  privateKey: PrivateKey
  opencloud: OpenCloudInit
  /** @default defaultNetworkMode(listen, { bootstrap }) */
  networkMode?: NetworkMode
  /** bootstrap multiaddrs (each with /p2p/; this node's own is skipped) */
  bootstrap?: string[]
  /** find peers on the LAN by mDNS, and dial them while connections are few @default false */
  mdns?: boolean
  dht?: DhtOptions
  gossipsub?: Partial<GossipsubOpts>
  market?: MarketOptions
  swarm?: SwarmOptions
  /** where the price book lives @default an in-memory store (the book is forgotten at exit) */
  store?: Store
  /**
   * Names of the served services to sell: advertised in the DHT and priced
   * on the market. @default every service except the core ones
   */
  sell?: string[]
  /** what `openPaymentParts` opened @default none: the payments service idles */
  payments?: PaymentParts
  /** the node's reputation (docs/reputation.md) @default one in `store` (in memory without one), pre-trusting nothing but this node */
  reputation?: Reputation
  /** reachability from behind a router (used in `public` mode) */
  nat?: NatOptions
}

const NO_PAYMENTS: PaymentParts = {
  access: undefined,
  payment: undefined,
  verifiers: [],
  services: [],
  async start () {},
  async stop () {},
  async close () {}
}

/**
 * Defaults for a decloud libp2p node (TCP, noise, yamux, identify, ping,
 * decloud's Kad-DHT in server mode, gossipsub, bootstrap, mDNS) and its
 * decloud services (OpenCloud, discovery, market, swarm keeper, payments),
 * like Helia's `libp2pDefaults()`. libp2p starts and stops every service;
 * `createDecloudNode` uses them.
 *
 * @example
 * ```ts
 * const options = decloudDefaults({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, opencloud: { services: [sha256Service()] } })
 * options.services.swarm = swarmKeeper({ minConnections: 4 })
 * const libp2p = await createLibp2p(options)
 * ```
 */
export function decloudDefaults (options: DecloudDefaultsOptions): Libp2pOptions<DecloudServices> & Required<Pick<Libp2pOptions<DecloudServices>, 'services'>> {
  // before anything asks whether an address is private
  treatAsPublic(options.nat?.publicRanges ?? [])
  const mode = options.networkMode ?? defaultNetworkMode(options.listen, { bootstrap: options.bootstrap })
  const local = mode === 'local'
  const bootstrapAddrs = parseBootstrap(options.bootstrap ?? [], peerIdFromPrivateKey(options.privateKey))
  const peerDiscovery: Array<(components: any) => PeerDiscovery> = []
  if (bootstrapAddrs.length > 0) { peerDiscovery.push(bootstrap({ list: bootstrapAddrs.map(a => a.toString()), timeout: 0 })) }
  if (options.mdns === true) { peerDiscovery.push(mdns({ serviceTag: 'decloud.local' })) }
  const providerValidity = options.dht?.providerValidity ?? PROVIDER_VALIDITY
  const sold = options.sell
  const selling = (opencloud: OpenCloud): ServiceDefinition[] => [...opencloud.services.values()].filter(s =>
    sold != null ? sold.includes(s.name) : !(CORE_SERVICES as readonly string[]).includes(s.name))
  // one directory: discovery and the market both learn who sells what
  const directory = new PeerDirectory()
  const reputation = options.reputation ?? new Reputation({ db: (options.store ?? Store.memory()).sub('reputation'), self: peerIdFromPrivateKey(options.privateKey).toString() })
  // public mode: the parts that let a node behind a router buy and sell (docs/nat.md); a local
  // swarm is reachable by definition and keeps what it had
  const natServices = local
    ? {}
    : {
        autoNAT: autoNATv2(),
        dcutr: dcutr(),
        reachability: reachability({ relay: options.nat?.relay, privateAfter: options.nat?.privateAfter }),
        ...(options.nat?.nat === 'upnp' ? { upnp: uPnPNAT({ portMappingDescription: 'decloud' }) } : {})
      }
  return {
    privateKey: options.privateKey,
    addresses: local
      ? { listen: options.listen }
      // no loopback or private address leaves a public node (relayed ones through a public relay do)
      : { listen: options.listen, announceFilter: (addrs: Multiaddr[]) => addrs.filter(isAnnounceable) },
    transports: local ? [tcp()] : [tcp(), circuitRelayTransport()],
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
          // P5: peers that behave badly in the market lose gossip standing (docs/reputation.md)
          appSpecificScore: (peer: string) => reputation.gossipScore(peer),
          appSpecificWeight: 1,
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
            }),
            [REPUTATION_TOPIC]: createTopicScoreParams({
              topicWeight: 1,
              timeInMeshWeight: 0.01,
              timeInMeshQuantum: 1000,
              timeInMeshCap: 100,
              firstMessageDeliveriesWeight: 1,
              firstMessageDeliveriesDecay: 0.9,
              firstMessageDeliveriesCap: 10,
              meshMessageDeliveriesWeight: 0,
              meshFailurePenaltyWeight: 0,
              // a forged, malformed or oversized report costs as much as a bad price announcement
              invalidMessageDeliveriesWeight: -10,
              invalidMessageDeliveriesDecay: 0.99
            })
          }
        },
        ...options.gossipsub
      }),
      discovery: discovery({
        selling,
        directory,
        provideTimeout: options.dht?.provideTimeout,
        findTimeout: options.dht?.findTimeout,
        reprovideInterval: options.dht?.reprovideInterval,
        provideRetry: options.dht?.provideRetry,
        joinLookups: options.dht?.joinLookups,
        joinRetry: options.dht?.joinRetry
      }),
      market: market({
        book: new PriceBook({ db: (options.store ?? Store.memory()).sub('market') }),
        directory,
        selling,
        announceAddress: local ? undefined : a => !isPrivate(a),
        strategies: options.market?.strategies,
        announceInterval: options.market?.announceInterval,
        validity: options.market?.validity,
        syncPeers: options.market?.syncPeers,
        syncTimeout: options.market?.syncTimeout
      }),
      swarm: swarmKeeper({
        bootstrap: bootstrapAddrs,
        dialDiscovered: options.mdns === true,
        minConnections: options.swarm?.minConnections,
        interval: options.swarm?.checkInterval
      }),
      payments: payments({ parts: options.payments ?? NO_PAYMENTS }),
      reputation: reputationService({ reputation }),
      ...natServices
    }
  }
}
