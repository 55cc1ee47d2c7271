import '../polyfill.js'
import { join } from 'node:path'
import { UnsupportedOperationError } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createLibp2p } from 'libp2p'
import { filesForNode } from '../files/node.js'
import { rankSellers } from '../market/select.js'
import { payAndCall } from '../payments/buyer/bidding.js'
import { MAX_BODY_SIZE } from '../protocols/opencloud/api/constants.js'
import { openCloudId } from '../protocols/opencloud/api/signing.js'
import { callFact } from '../reputation/calls.js'
import { Reputation } from '../reputation/model.js'
import { sha256Service } from '../services/sha256.js'
import { StorageService, DEFAULT_CAPACITY } from '../services/storage/index.js'
import { DiskPieceStore, MemoryPieceStore } from '../storage/index.js'
import { Store } from '../store/index.js'
import { DataDirInUseError, defaultDataDir, ensureDataDir, loadOrCreateKey, DB_DIR, PIECES_DIR } from './data-dir.js'
import { decloudDefaults, defaultNetworkMode, DEFAULT_PORT } from './defaults.js'
import { treatAsPublic } from './nat.js'
import { openPaymentParts } from './payments.js'
import type { DecloudServices, DhtOptions, MarketOptions, NatOptions, NetworkMode, SwarmOptions } from './defaults.js'
import type { ReachabilityStatus } from './nat.js'
import type { NodePayments, PaymentParts, PaymentsOptions, PolicyOptions } from './payments.js'
import type { SwarmKeeper } from './swarm.js'
import type { FindSellersOptions, Seller } from '../dht/config.js'
import type { PeerDirectory } from '../dht/directory.js'
import type { Discovery } from '../dht/discovery.js'
import type { AgentOptions, Files } from '../files/index.js'
import type { Market } from '../market/market.js'
import type { SellerCandidate, RankSellersOptions } from '../market/select.js'
import type { PayOption, PaidCallResult } from '../payments/buyer/bidding.js'
import type { NodePolicy } from '../policy/reload.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { CallRequest, CallTarget } from '../protocols/opencloud/net/client.js'
import type { OpenCloud, OpenCloudInit } from '../protocols/opencloud/net/opencloud.js'
import type { ReputationOptions } from '../reputation/model.js'
import type { GossipsubOpts } from '@libp2p/gossipsub'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'
import type { Registry } from 'prom-client'

export { DEFAULT_PORT, DHT_PROTOCOL, CORE_SERVICES, defaultNetworkMode, decloudDefaults } from './defaults.js'
export type { DecloudServices, DecloudDefaultsOptions, DhtOptions, MarketOptions, NatOptions, NetworkMode, SwarmOptions } from './defaults.js'
export type { NatMode, Reachability, ReachabilityStatus, RelayOptions } from './nat.js'
export { LimitedConnectionError } from '../protocols/opencloud/net/client.js'

/**
 * Options of `createDecloudNode()`: a complete node with its data dir, LevelDB
 * store, libp2p (TCP, noise, yamux, DHT, gossipsub), OpenCloud and the
 * built-in services. All are optional; see docs/cli.md for what each means
 * on the command line.
 */
export interface DecloudNodeOptions {
  /** @default `$DECLOUD_DATA_DIR` or `~/.decloud` */
  dataDir?: string
  /**
   * Where the node's database lives. `disk`: LevelDB in `<dataDir>/db`, one
   * process at a time, and stored blobs in `<dataDir>/pieces` (docs/storage.md). `memory`: nothing of the database outlives the node
   * (tabs, price book, stored blobs, promises): for short-lived clients and
   * tests; the data dir still holds the key (unless `privateKey` is given),
   * the policy file, the wallet seed and an embedded chain.
   *
   * @default 'disk'
   */
  store?: 'disk' | 'memory'
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
    /** `put` and `renew` are per byte·second of lease (`perGiBMonth(sats)` writes one) */
    pricing?: { put?: Pricing, get?: Pricing, renew?: Pricing, audit?: Pricing }
    /** lease of a put that names none, seconds @default 30 days */
    defaultLease?: number
    /** longest lease one put or renewal buys, seconds @default 5 years */
    maxLease?: number
    /** how long a piece outlives its last lease, seconds @default 1 day */
    leaseGrace?: number
    /** how often ended leases are swept, ms @default 60 s */
    sweepInterval?: number
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
   * @default defaultNetworkMode(listen, { bootstrap }): 'local' while the node has no public
   * address (loopback, private, or a wildcard on a machine without a public interface address)
   * and no public bootstrap peer, else 'public'
   */
  networkMode?: NetworkMode
  /**
   * Names of the served services to sell: advertised in the DHT and priced
   * on the market. @default every service except the core ones (info, peers, market)
   */
  sell?: string[]
  /** Seller discovery tuning */
  dht?: DhtOptions
  /** Market tuning */
  market?: MarketOptions
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
  swarm?: SwarmOptions
  /** Reputation: pre-trusted peers, score and EigenTrust parameters, report interval (docs/reputation.md) */
  reputation?: ReputationOptions
  /** The files agent: audits, repair, renewal of the node's stored files (docs/files.md); false: none @default on, daily audits */
  filesAgent?: AgentOptions | false
  /**
   * libp2p's metrics (`@libp2p/prometheus-metrics`) into this prom-client
   * registry (`true`: a new one), read by the dashboard and `/metrics`.
   * Off by default: prom-client's registries are global per process, so
   * turn it on for one node per process.
   */
  metrics?: boolean | Registry
  /**
   * Behind a router (`public` mode): UPnP mapping, ranges treated as
   * public, relay limits, the private verdict's delay (docs/nat.md)
   */
  nat?: NatOptions
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
  /**
   * The addresses the node gives peers, with the /p2p/ suffix: in `public`
   * mode only verified public and relayed ones (docs/nat.md)
   */
  addresses(): string[]
  /** Where the node listens (loopback and private addresses included), with the /p2p/ suffix */
  listening(): string[]
  /**
   * Whether peers can dial this node (AutoNAT), its verified, observed and
   * relayed addresses. `unknown` in `local` mode, where nothing is checked.
   */
  reachability(): ReachabilityStatus
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
  /** Records, reports, opinion and global trust (docs/reputation.md) */
  readonly reputation: Reputation
  /** The registry libp2p reports its metrics into (the `metrics` option) */
  readonly metricsRegistry?: Registry
  /**
   * A paid call: the bidding strategy (docs/payments.md) pays with the
   * wallet, attached or deferred, never more than `max` sats; the wallet's
   * `btc:` identity credential goes with it. Throws when payments are off.
   */
  pay(target: CallTarget, call: CallRequest, options: { pay: PayOption, max: bigint, signal?: AbortSignal }): Promise<PaidCallResult>
  /** Files stored across sellers, encrypted and erasure-coded (docs/files.md) */
  readonly files: Files
  stop(): Promise<void>
}

/** Opens the node's database, naming the usual cause of a lock error */
async function openStore (options: DecloudNodeOptions, dataDir: string): Promise<Store> {
  if (options.store != null && options.store !== 'disk' && options.store !== 'memory') { throw new TypeError(`store must be "disk" or "memory", not "${String(options.store)}"`) }
  const store = options.store === 'memory' ? Store.memory() : new Store(join(dataDir, DB_DIR))
  try {
    await store.open()
  } catch (err: any) {
    if (err.code === 'LEVEL_DATABASE_NOT_OPEN' && String(err.cause?.message ?? '').includes('lock')) {
      throw new DataDirInUseError(`the data dir ${dataDir} is in use by another decloud process`)
    }
    throw err
  }
  return store
}

/**
 * Starts a batteries-included decloud node: data dir with a persistent key,
 * LevelDB (or a store in memory), libp2p with OpenCloud serving `info`,
 * `peers`, `market`, `sha256` and `storage`, decloud's Kad-DHT (seller
 * discovery), gossipsub (market prices), bootstrap and optional mDNS. The
 * libp2p options are `decloudDefaults()`; libp2p starts and stops every
 * service, so the only things this function closes by hand are the ones
 * opened before libp2p: the payment parts (chain, policy) and the store.
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
  const listen = options.listen ?? [`/ip4/0.0.0.0/tcp/${options.dev === true ? 0 : DEFAULT_PORT}`]
  // before the network mode is chosen: a public range makes an address public
  treatAsPublic(options.nat?.publicRanges ?? [])
  const networkMode = options.networkMode ?? defaultNetworkMode(listen, { bootstrap: options.bootstrap })
  if (networkMode !== 'local' && networkMode !== 'public') { throw new TypeError(`network mode must be "local" or "public", not "${String(networkMode)}"`) }
  const store = await openStore(options, dataDir)
  let parts: PaymentParts | undefined
  // what was opened before libp2p, closed once: when start fails, libp2p has already stopped its services
  const close = async (): Promise<void> => {
    await parts?.close().catch(() => {})
    await store.close()
  }
  try {
    const reputation = new Reputation({ ...options.reputation, db: store.sub('reputation'), self: peerIdFromPrivateKey(privateKey).toString() })
    await reputation.open()
    parts = await openPaymentParts({ dataDir, store, payments: options.payments, policy: options.policy, reputation })
    const maxBodySize = options.opencloud?.maxBodySize ?? MAX_BODY_SIZE
    const capacity = options.storage?.capacity ?? DEFAULT_CAPACITY
    const storage = new StorageService({
      db: store.sub('storage'),
      // the bytes beside the database: on disk with it, or gone with it
      pieces: store.memory ? new MemoryPieceStore({ capacity }) : new DiskPieceStore({ dir: join(dataDir, PIECES_DIR), db: store.sub('pieces'), capacity }),
      maxBlobSize: Math.min(options.storage?.maxBlobSize ?? maxBodySize, maxBodySize),
      verifyOnGet: options.storage?.verifyOnGet,
      pricing: options.storage?.pricing,
      privateKey,
      defaultLease: options.storage?.defaultLease,
      maxLease: options.storage?.maxLease,
      leaseGrace: options.storage?.leaseGrace,
      sweepInterval: options.storage?.sweepInterval
    })
    // loaded only when asked for: most embedders never need prom-client
    const metricsRegistry = options.metrics === true ? new (await import('prom-client')).Registry() : options.metrics === false ? undefined : options.metrics
    const libp2pOptions = decloudDefaults({
      listen,
      privateKey,
      networkMode,
      bootstrap: options.bootstrap,
      mdns: options.mdns,
      dht: options.dht,
      gossipsub: options.gossipsub,
      market: options.market,
      swarm: options.swarm,
      store,
      sell: options.sell,
      payments: parts,
      reputation,
      nat: options.nat,
      opencloud: {
        ...options.opencloud,
        access: options.opencloud?.access ?? parts.access,
        payment: options.opencloud?.payment ?? parts.payment,
        verifiers: [...parts.verifiers, ...(options.opencloud?.verifiers ?? [])],
        services: [sha256Service(options.sha256), storage.definition(), ...parts.services, ...(options.services ?? [])]
      }
    })
    if (metricsRegistry != null) {
      const { prometheusMetrics } = await import('@libp2p/prometheus-metrics')
      libp2pOptions.metrics = prometheusMetrics({ registry: metricsRegistry, statfsLocation: dataDir })
    }
    const libp2p = await createLibp2p(libp2pOptions)
    // the node is returned with its stored blobs open (and moved from an older layout)
    await storage.ready().catch(async (err) => {
      await libp2p.stop()
      throw err
    })
    return decloudNode(libp2p, { store, storage, dataDir, networkMode, close, metricsRegistry, privateKey, filesAgent: options.filesAgent })
  } catch (err) {
    await close()
    throw err
  }
}

/** The node object over a started libp2p node */
function decloudNode (libp2p: Libp2p<DecloudServices>, init: { store: Store, storage: StorageService, dataDir: string, networkMode: NetworkMode, close(): Promise<void>, metricsRegistry?: Registry, privateKey: PrivateKey, filesAgent?: AgentOptions | false }): DecloudNode {
  const { opencloud, discovery, market, swarm, payments, reputation } = libp2p.services
  const peerId = libp2p.peerId
  let stopped = false
  let files: Files | undefined
  const reach = libp2p.services.reachability
  if (reach != null) {
    // the provider records in the DHT carry this node's addresses: once a relay gives it some, provide again
    let relayed = ''
    libp2p.addEventListener('self:peer:update', () => {
      const now = reach.status().relayed.join(' ')
      if (now === relayed) { return }
      relayed = now
      if (now !== '' && !stopped) { void discovery.provideAll() }
    })
  }
  const node: DecloudNode = {
    get files () { return (files ??= filesForNode(this, init.privateKey, {}, init.filesAgent)) },
    libp2p,
    opencloud,
    store: init.store,
    storage: init.storage,
    dataDir: init.dataDir,
    peerId,
    openCloudId: openCloudId(peerId),
    networkMode: init.networkMode,
    discovery,
    market,
    directory: discovery.directory,
    swarm,
    addresses: () => libp2p.getMultiaddrs().map(a => a.toString()),
    listening: () => {
      // local mode announces every address it listens on
      if (init.networkMode === 'local') { return libp2p.getMultiaddrs().map(a => a.toString()) }
      // the transport manager is not part of libp2p's public interface; announced addresses are the fallback
      const tm = (libp2p as unknown as { components?: { transportManager?: { getAddrs(): Multiaddr[] } } }).components?.transportManager
      const addrs = tm?.getAddrs() ?? libp2p.getMultiaddrs()
      const id = peerId.toString()
      return addrs.filter(a => !a.toString().includes('/p2p-circuit')).map(a => a.toString().endsWith(`/p2p/${id}`) ? a.toString() : `${a.toString()}/p2p/${id}`)
    },
    reachability: () => libp2p.services.reachability?.status() ?? { reachability: 'unknown', verified: [], observed: [], relayed: [], dht: libp2p.services.dht.getMode(), relaying: false },
    selling: () => discovery.selling().map(s => s.name),
    findSellers: async (service, opts) => discovery.findSellers(service, opts),
    // a node never ranks itself as a seller to buy from
    rankSellers: async (service, opts) => rankSellers(market, discovery, service, { trust: (p) => reputation.reputation.trust(p), ...opts, exclude: [...(opts.exclude ?? []), peerId.toString()] }),
    payments: payments.payments,
    policy: payments.policy,
    reputation: reputation.reputation,
    metricsRegistry: init.metricsRegistry,
    async pay (target, call, opts) {
      const p = payments.payments
      if (p == null) { throw new UnsupportedOperationError('payments are off on this node (start it with payments)') }
      const started = Date.now()
      let fact
      try {
        const result = await payAndCall(opencloud, target, { ...call, signers: [...(call.signers ?? []), p.wallet.identitySigner()] }, {
          pay: opts.pay,
          max: opts.max,
          wallet: p.wallet,
          promises: p.promises,
          backend: p.backend,
          signal: opts.signal
        })
        fact = callFact(call, { result, ms: Date.now() - started })
        return result
      } catch (err: any) {
        fact = callFact(call, { error: err, target, ms: Date.now() - started })
        throw err
      } finally {
        // the seller's service as measured: a reputation fact (docs/reputation.md)
        if (fact != null) { reputation.reputation.record(fact).catch(() => {}) }
      }
    },
    async stop () {
      if (stopped) { return }
      stopped = true
      await files?.agent?.stop()
      try {
        // withdrawals first, on open connections (libp2p's stop alone leaves prices to lapse)
        await market.leave().catch(() => {})
        await libp2p.stop()
      } finally {
        await init.close()
      }
    }
  }
  // the user's agent for its files runs with the node (a pass at once: it resumes what a restart interrupted)
  node.files.agent?.start()
  return node
}

export { DataDirInUseError, defaultDataDir, loadOrCreateKey, readKey } from './data-dir.js'
export { parseBootstrap } from './swarm.js'
