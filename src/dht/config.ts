/**
 * How seller discovery is wired into a libp2p node, its defaults, and the
 * shapes its lookups and adverts take.
 */
import type { PeerDirectory } from './directory.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { AbortOptions, ComponentLogger, PeerId, PeerStore } from '@libp2p/interface'
import type { AddressManager, ConnectionManager } from '@libp2p/interface-internal'
import type { KadDHT } from '@libp2p/kad-dht'

/** How long one provide round may take (ms) */
export const PROVIDE_TIMEOUT = 60_000
/** Default deadline of a seller lookup (ms) */
export const FIND_TIMEOUT = 10_000
/**
 * How often a seller re-provides its services (ms). Provider records live
 * `PROVIDER_VALIDITY` on the nodes that hold them, so this is well before expiry.
 */
export const REPROVIDE_INTERVAL = 60 * 60_000
/** How long decloud DHT nodes keep a provider record (ms) */
export const PROVIDER_VALIDITY = 6 * 60 * 60_000
/** Delay before a provide round once the routing table has grown (ms) */
export const PROVIDE_DEBOUNCE = 500
/** First retry delay after a provide round that reached nobody (ms); doubles up to the reprovide interval */
export const PROVIDE_RETRY = 5_000
/** A node alone for this long (no connections, empty routing table) answers lookups at once (ms) */
export const LONELY_AFTER = 3_000
/** Most self-lookups one join makes (the first included) */
export const JOIN_LOOKUPS = 5
/** Delay before the second self-lookup of a join (ms); doubles after each */
export const JOIN_RETRY = 1_000

/** A seller found through the DHT */
export interface Seller {
  /** the seller's peer id */
  peerId: string
  /** multiaddrs to dial it, each ending in /p2p/<peerId> */
  addresses: string[]
  service: string
  /** major version of the service */
  version: number
}

export interface FindSellersOptions extends AbortOptions {
  /** deadline in ms @default 10_000 */
  timeout?: number
  /** stop after this many sellers (at most the DHT's k, 20) */
  limit?: number
  /** major version (or version string) of the service @default 1 */
  version?: string | number
  /** include this node when it sells the service @default false */
  includeSelf?: boolean
}

export interface AdvertisedService {
  service: string
  version: number
  key: string
  /** when the last provide round ended (ms since epoch), 0: never */
  lastProvided: number
  /** DHT peers that accepted the provider record in the last round */
  reached: number
}

/**
 * What Discovery uses of a libp2p node: decloud's Kad-DHT (the service named
 * `dht`) and OpenCloud (named `opencloud`, whose sold services it advertises
 * and to which it adds the core `peers` service).
 */
export interface DiscoveryComponents {
  peerId: PeerId
  peerStore: PeerStore
  connectionManager: Pick<ConnectionManager, 'getConnections'>
  addressManager: Pick<AddressManager, 'getAddresses'>
  logger: ComponentLogger
  dht: KadDHT
  opencloud: OpenCloud
}

export interface DiscoveryInit {
  /** The services this node sells, advertised from start (read once, at start) */
  selling(opencloud: OpenCloud): ServiceDefinition[]
  /** who sells what, as learned (shared with the market) @default a new one */
  directory?: PeerDirectory
  /** @default PROVIDE_TIMEOUT */
  provideTimeout?: number
  /** @default FIND_TIMEOUT */
  findTimeout?: number
  /** @default REPROVIDE_INTERVAL */
  reprovideInterval?: number
  /** @default PROVIDE_DEBOUNCE */
  provideDebounce?: number
  /** @default PROVIDE_RETRY */
  provideRetry?: number
  /** @default JOIN_LOOKUPS */
  joinLookups?: number
  /** @default JOIN_RETRY */
  joinRetry?: number
}
