/**
 * How the market is wired into a libp2p node and its defaults.
 */
import type { PriceBook } from './price-book.js'
import type { PricingStrategy } from './strategy.js'
import type { PeerDirectory } from '../dht/directory.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { ComponentLogger, Libp2pEvents, PeerId, PeerStore, PrivateKey, TypedEventTarget } from '@libp2p/interface'
import type { AddressManager, ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How often a seller re-announces its prices (ms) */
export const ANNOUNCE_INTERVAL = 10 * 60_000
/** How many peers a starting node asks for their price book */
export const SYNC_PEERS = 2
/** Deadline of one price book request (ms) */
export const SYNC_TIMEOUT = 10_000
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
