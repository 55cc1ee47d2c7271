/** What this node has learned about one peer */
export interface DirectoryEntry {
  peerId: string
  /** services the peer sells → when that was last confirmed (ms since epoch) */
  services: Map<string, number>
  addresses: string[]
  lastSeen: number
}

/** Most peers remembered; the least recently seen are forgotten first */
export const MAX_DIRECTORY_PEERS = 4096
/** Most services remembered per peer */
export const MAX_SERVICES_PER_PEER = 64
const MAX_ADDRESSES = 16

/**
 * A bounded, in-memory directory of which peers sell which services, fed by
 * DHT lookups (provider records) and by accepted price announcements. The
 * `peers` core service answers from it.
 */
export class PeerDirectory {
  private readonly entries = new Map<string, DirectoryEntry>()
  private readonly maxPeers: number

  constructor (init: { maxPeers?: number } = {}) {
    this.maxPeers = init.maxPeers ?? MAX_DIRECTORY_PEERS
  }

  /** Records that `peerId` sells `service` (now), reachable at `addresses` if given */
  note (peerId: string, service: string, addresses: string[] = [], now = Date.now()): void {
    let e = this.entries.get(peerId)
    if (e == null) {
      if (this.entries.size >= this.maxPeers) { this.evictOldest() }
      e = { peerId, services: new Map(), addresses: [], lastSeen: now }
    } else {
      // keep insertion order = recency order
      this.entries.delete(peerId)
    }
    this.entries.set(peerId, e)
    e.lastSeen = now
    if (!e.services.has(service) && e.services.size >= MAX_SERVICES_PER_PEER) { return }
    e.services.set(service, now)
    if (addresses.length > 0) { e.addresses = addresses.slice(0, MAX_ADDRESSES) }
  }

  /** Forgets that `peerId` sells `service` (e.g. after a withdrawal) */
  forget (peerId: string, service: string): void {
    const e = this.entries.get(peerId)
    if (e == null) { return }
    e.services.delete(service)
    if (e.services.size === 0) { this.entries.delete(peerId) }
  }

  get (peerId: string): DirectoryEntry | undefined {
    return this.entries.get(peerId)
  }

  /** Services known for `peerId`, sorted */
  servicesOf (peerId: string): string[] {
    return [...(this.entries.get(peerId)?.services.keys() ?? [])].sort()
  }

  /** Peers known to sell `service`, most recently seen first */
  sellersOf (service: string): DirectoryEntry[] {
    return [...this.entries.values()].filter(e => e.services.has(service)).reverse()
  }

  /** All entries, most recently seen first */
  all (): DirectoryEntry[] {
    return [...this.entries.values()].reverse()
  }

  get size (): number {
    return this.entries.size
  }

  private evictOldest (): void {
    const oldest = this.entries.keys().next()
    if (oldest.done !== true) { this.entries.delete(oldest.value) }
  }
}
