import { serviceCapabilities } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, PeerInfo, PeerStore, Startable, TypedEventTarget } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How often the keeper checks that the node still has peers (ms) */
export const KEEPER_INTERVAL = 15_000
/** Deadline of one keeper dial (ms) */
export const KEEPER_DIAL_TIMEOUT = 5_000
/** Peers from the peer store dialled per check when the node has too few */
export const KEEPER_DIALS = 4
/** Below this many connections a discovered (mDNS) peer is dialled */
export const DISCOVERY_DIAL_BELOW = 8

/** What the keeper uses of a libp2p node */
export interface SwarmKeeperComponents {
  peerId: PeerId
  peerStore: PeerStore
  connectionManager: Pick<ConnectionManager, 'getConnections' | 'openConnection'>
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
}

export interface SwarmKeeperInit {
  /** bootstrap multiaddrs (with /p2p/) @default none */
  bootstrap?: Multiaddr[]
  /** dial peers announced by peer discovery (mDNS) while connections are few @default false */
  dialDiscovered?: boolean
  /** keep at least this many connections @default 1 */
  minConnections?: number
  /** how often to check (ms) @default KEEPER_INTERVAL (15 s) */
  interval?: number
}

/**
 * Keeps a node in its swarm. libp2p 3 does not dial discovered peers by
 * itself: the bootstrap module dials its list once at start. The keeper
 * re-dials the bootstrap list and peers remembered in the peer store (the
 * DHT routing table's peers among them) whenever the node has fewer than
 * `minConnections`, so a node that lost every connection (its bootstrap
 * node gone, a network blip) finds its way back; with mDNS it dials peers
 * found on the LAN.
 */
export class SwarmKeeper implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/swarm-keeper']
  readonly [Symbol.toStringTag] = '@decloud/swarm-keeper'
  private readonly components: SwarmKeeperComponents
  private readonly log: Logger
  private readonly bootstrap: Multiaddr[]
  private readonly dialDiscovered: boolean
  private readonly minConnections: number
  private readonly interval: number
  private timer?: ReturnType<typeof setInterval>
  private running = false
  private checking = false
  private shutdown = new AbortController()
  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    if (!this.dialDiscovered) { return }
    const cm = this.components.connectionManager
    if (cm.getConnections().length >= DISCOVERY_DIAL_BELOW) { return }
    if (evt.detail.id.equals(this.components.peerId)) { return }
    if (cm.getConnections(evt.detail.id).length > 0) { return }
    this.dial(evt.detail.id)
  }

  constructor (components: SwarmKeeperComponents, init: SwarmKeeperInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('decloud:swarm')
    this.bootstrap = init.bootstrap ?? []
    this.dialDiscovered = init.dialDiscovered ?? false
    this.minConnections = init.minConnections ?? 1
    this.interval = init.interval ?? KEEPER_INTERVAL
  }

  isStarted (): boolean {
    return this.running
  }

  // libp2p's start phase: nothing to do until the node listens
  start (): void {}

  /** Starts watching once libp2p has started */
  afterStart (): void {
    if (this.running) { return }
    this.running = true
    this.shutdown = new AbortController()
    this.components.events.addEventListener('peer:discovery', this.onDiscovery)
    this.timer = setInterval(() => { void this.check() }, this.interval)
    this.timer.unref?.()
  }

  /** Stops before libp2p closes its connections, so no dial races the shutdown */
  beforeStop (): void {
    if (!this.running) { return }
    this.running = false
    clearInterval(this.timer)
    this.shutdown.abort()
    this.components.events.removeEventListener('peer:discovery', this.onDiscovery)
  }

  stop (): void {
    this.beforeStop()
  }

  /** Dials the bootstrap list and remembered peers if the node has too few connections */
  async check (): Promise<void> {
    if (!this.running || this.checking) { return }
    if (this.components.connectionManager.getConnections().length >= this.minConnections) { return }
    this.checking = true
    try {
      for (const addr of this.bootstrap) { this.dial(addr) }
      const self = this.components.peerId
      const bootstrapIds = new Set(this.bootstrap.map(a => a.getComponents().findLast(c => c.name === 'p2p')?.value))
      const peers = await this.components.peerStore.all({
        filters: [p => !p.id.equals(self) && p.addresses.length > 0 && !bootstrapIds.has(p.id.toString())],
        limit: 64,
        signal: this.shutdown.signal
      })
      // a random few, so that many nodes do not all dial the same peers
      for (const p of peers.sort(() => Math.random() - 0.5).slice(0, KEEPER_DIALS)) { this.dial(p.id) }
    } catch {
    } finally {
      this.checking = false
    }
  }

  private dial (target: PeerId | Multiaddr): void {
    if (!this.running) { return }
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(KEEPER_DIAL_TIMEOUT)])
    // libp2p.dial's priority: the keeper's dials are what keeps the node in its swarm
    this.components.connectionManager.openConnection(target, { signal, priority: 75 }).catch(err => {
      this.log.trace('keeper dial %s failed - %e', target.toString(), err)
    })
  }
}

/**
 * The swarm keeper as a libp2p service.
 *
 * @example
 * ```ts
 * const node = await createLibp2p({ ..., services: { swarm: swarmKeeper({ bootstrap: parseBootstrap(list) }) } })
 * ```
 */
export function swarmKeeper (init: SwarmKeeperInit = {}): (components: SwarmKeeperComponents) => SwarmKeeper {
  return (components) => new SwarmKeeper(components, init)
}

/** Parses bootstrap multiaddrs; each must name its peer (/p2p/<id>) */
export function parseBootstrap (list: string[], self?: PeerId): Multiaddr[] {
  const out: Multiaddr[] = []
  for (const s of list) {
    const ma = multiaddr(s)
    const id = ma.getComponents().findLast(c => c.name === 'p2p')?.value
    if (id == null) { throw new TypeError(`bootstrap address ${s} must end in /p2p/<peer id>`) }
    peerIdFromString(id)
    // a shared config may list this node too
    if (self != null && id === self.toString()) { continue }
    out.push(ma)
  }
  return out
}
