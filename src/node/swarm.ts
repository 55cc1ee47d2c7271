import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { Libp2p, Logger, PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How often the keeper checks that the node still has peers (ms) */
export const KEEPER_INTERVAL = 15_000
/** Deadline of one keeper dial (ms) */
export const KEEPER_DIAL_TIMEOUT = 5_000
/** Peers from the peer store dialled per check when the node has too few */
export const KEEPER_DIALS = 4
/** Below this many connections a discovered (mDNS) peer is dialled */
export const DISCOVERY_DIAL_BELOW = 8

export interface SwarmKeeperInit {
  libp2p: Pick<Libp2p, 'peerId' | 'peerStore' | 'getConnections' | 'dial' | 'addEventListener' | 'removeEventListener'>
  /** bootstrap multiaddrs (with /p2p/) */
  bootstrap: Multiaddr[]
  /** dial peers announced by peer discovery (mDNS) while connections are few */
  dialDiscovered: boolean
  log: Logger
  /** keep at least this many connections @default 1 */
  minConnections?: number
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
export class SwarmKeeper {
  private readonly init: SwarmKeeperInit
  private timer?: ReturnType<typeof setInterval>
  private running = false
  private checking = false
  private shutdown = new AbortController()
  private readonly onDiscovery = (evt: CustomEvent<PeerInfo>): void => {
    if (!this.init.dialDiscovered) { return }
    if (this.init.libp2p.getConnections().length >= DISCOVERY_DIAL_BELOW) { return }
    if (evt.detail.id.equals(this.init.libp2p.peerId)) { return }
    if (this.init.libp2p.getConnections(evt.detail.id).length > 0) { return }
    this.dial(evt.detail.id)
  }

  constructor (init: SwarmKeeperInit) {
    this.init = init
  }

  start (): void {
    if (this.running) { return }
    this.running = true
    this.shutdown = new AbortController()
    this.init.libp2p.addEventListener('peer:discovery', this.onDiscovery)
    this.timer = setInterval(() => { void this.check() }, this.init.interval ?? KEEPER_INTERVAL)
    this.timer.unref?.()
  }

  stop (): void {
    if (!this.running) { return }
    this.running = false
    clearInterval(this.timer)
    this.shutdown.abort()
    this.init.libp2p.removeEventListener('peer:discovery', this.onDiscovery)
  }

  /** Dials the bootstrap list and remembered peers if the node has too few connections */
  async check (): Promise<void> {
    if (!this.running || this.checking) { return }
    if (this.init.libp2p.getConnections().length >= (this.init.minConnections ?? 1)) { return }
    this.checking = true
    try {
      for (const addr of this.init.bootstrap) { this.dial(addr) }
      const self = this.init.libp2p.peerId
      const bootstrapIds = new Set(this.init.bootstrap.map(a => a.getComponents().findLast(c => c.name === 'p2p')?.value))
      const peers = await this.init.libp2p.peerStore.all({
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
    this.init.libp2p.dial(target, { signal }).catch(err => {
      this.init.log.trace('keeper dial %s failed - %e', target.toString(), err)
    })
  }
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
