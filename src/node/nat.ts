/**
 * Joining the public swarm from behind a home router: public ranges, the
 * reachability verdict (from AutoNAT), and what follows from it — a
 * reachable node relays for others and serves the DHT; an unreachable one
 * runs the DHT as a client and reserves relay slots (docs/nat.md).
 */
import { createRequire } from 'node:module'
import { circuitRelayServer, RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import { serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { Circuit } from '@multiformats/multiaddr-matcher'
import type { CircuitRelayServerComponents, CircuitRelayService } from '@libp2p/circuit-relay-v2'
import type { ComponentLogger, Libp2pEvents, Logger, PeerId, PeerStore, Startable, TypedEventTarget, IdentifyResult } from '@libp2p/interface'
import type { AddressManager, TransportManager } from '@libp2p/interface-internal'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Multiaddr } from '@multiformats/multiaddr'

export type Reachability = 'public' | 'private' | 'unknown'

/** `upnp`: map the listen port on the LAN gateway (UPnP IGD / NAT-PMP); `none`: never touch the router */
export type NatMode = 'upnp' | 'none'

/** The AutoNAT v2 protocol a peer that can check our addresses speaks */
export const AUTONAT_V2_PROTOCOL = '/libp2p/autonat/2/dial-request'
/** No address verified this long after the first AutoNAT-capable peer: private (ms) */
export const PRIVATE_AFTER = 30_000

/** Limits of the relay a reachable node offers */
export interface RelayOptions {
  /** offer circuit relay v2 when reachable @default true */
  enabled?: boolean
  /** most reservations held at once @default 64 */
  maxReservations?: number
  /** how long a reservation lasts (ms) @default 1 hour */
  reservationTtl?: number
  /** bytes one relayed connection may carry, both directions @default 1 MiB */
  dataLimit?: bigint
  /** how long one relayed connection may stay open (ms) @default 2 minutes */
  durationLimit?: number
}

export const RELAY_DEFAULTS = {
  maxReservations: 64,
  reservationTtl: 60 * 60_000,
  dataLimit: 1n << 20n,
  durationLimit: 2 * 60_000
} as const

export class PublicRangeError extends TypeError {
  override name = 'PublicRangeError'
}

/** The IPv4 ranges @libp2p/utils counts as private that a public range may lift (never loopback or 0/8) */
const LIFTABLE = new Set(['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12', '192.168.0.0/16', '198.18.0.0/15', '192.0.2.0/24', '198.51.100.0/24', '203.0.113.0/24'])

interface NetmaskLike { contains(ip: string | NetmaskLike): boolean, toString(): string, base: string, last: string, bitmask: number }
interface NetmaskClass { new (cidr: string): NetmaskLike, prototype: NetmaskLike }

const lifted: NetmaskLike[] = []
let originalContains: ((this: NetmaskLike, ip: string | NetmaskLike) => boolean) | undefined

/**
 * Treats the given IPv4 ranges as public, process-wide: for decloud's own
 * filters and for every libp2p part (AutoNAT, the address manager, the DHT,
 * DCUtR), which all ask @libp2p/utils' `isPrivate`. That function checks a
 * fixed list of netmasks; the list is not configurable, so the check of
 * those netmasks is wrapped instead. For tests in network namespaces (whose
 * "internet" has to use a private range) and private deployments (a
 * company network run like an internet). Loopback is never lifted.
 */
export function treatAsPublic (cidrs: string[]): void {
  if (cidrs.length === 0) { return }
  const req = createRequire(import.meta.resolve('@libp2p/utils'))
  const { Netmask } = req('netmask') as { Netmask: NetmaskClass }
  if (originalContains == null) {
    const contains = Netmask.prototype.contains
    originalContains = contains
    Netmask.prototype.contains = function (this: NetmaskLike, ip: string | NetmaskLike): boolean {
      if (typeof ip === 'string' && LIFTABLE.has(this.toString()) && lifted.some(r => contains.call(r, ip))) { return false }
      return contains.call(this, ip)
    }
  }
  const original = originalContains
  for (const cidr of cidrs) {
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidr)) { throw new PublicRangeError(`public range "${cidr}" must be an IPv4 CIDR such as 10.99.0.0/16`) }
    let range: NetmaskLike
    try {
      range = new Netmask(cidr)
    } catch (err: any) {
      throw new PublicRangeError(`public range "${cidr}": ${String(err.message)}`)
    }
    // the original check, with addresses (a netmask argument would go through the wrapper)
    const inside = [...LIFTABLE].some(l => {
      const mask = new Netmask(l)
      return original.call(mask, range.base) && original.call(mask, range.last)
    })
    if (!inside) { throw new PublicRangeError(`public range "${cidr}" must lie inside a private range (10/8, 100.64/10, 172.16/12, 192.168/16, 198.18/15 or a TEST-NET)`) }
    if (!lifted.some(r => r.toString() === range.toString())) { lifted.push(range) }
  }
}

/** Ranges lifted by `treatAsPublic` so far */
export function publicRanges (): string[] {
  return lifted.map(r => r.toString())
}

/** A multiaddr that must not be announced in `public` mode: loopback or private, unless relayed through a public one */
export function isAnnounceable (ma: Multiaddr): boolean {
  try {
    return !isPrivate(ma)
  } catch {
    // a name (dns) or a transport without an IP: kept
    return true
  }
}

export interface ReachabilityComponents {
  peerId: PeerId
  peerStore: PeerStore
  addressManager: AddressManager
  transportManager: TransportManager
  events: TypedEventTarget<Libp2pEvents>
  logger: ComponentLogger
  dht: KadDHT
}

export interface ReachabilityInit {
  /** ms without a verified address, once an AutoNAT peer is known, before the verdict is private @default PRIVATE_AFTER */
  privateAfter?: number
  /** the relay this node offers while reachable @default on, RELAY_DEFAULTS */
  relay?: RelayOptions
}

export interface ReachabilityEvents {
  'reachability:change': CustomEvent<Reachability>
}

/** What `reachability.status()` says */
export interface ReachabilityStatus {
  reachability: Reachability
  /** public addresses others confirmed they can dial (AutoNAT) */
  verified: string[]
  /** addresses peers saw us at, not (yet) confirmed dialable */
  observed: string[]
  /** relayed addresses this node can be reached at */
  relayed: string[]
  /** DHT mode */
  dht: 'client' | 'server'
  /** whether this node currently relays for others */
  relaying: boolean
}

/**
 * Turns AutoNAT's per-address results into one verdict and acts on it.
 * AutoNAT v2 confirms an address once a peer dialled it back; it needs
 * failures from 8 different /8 networks before it gives one up, which a
 * small or young swarm never has. So the verdict here is: `public` as soon
 * as a public address is verified; `private` when none is `privateAfter` ms
 * after the first peer able to check was met; `unknown` until then.
 * On `public`: DHT server, relay offered. On `private`: DHT client (a DHT
 * full of unreachable servers slows every lookup), and, once a relay is
 * known, a `/p2p-circuit` listener asks relays for a reservation (the
 * circuit relay transport finds relays among the peers it knows and by
 * random walk).
 */
export class ReachabilityService implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/reachability']
  readonly [serviceDependencies]: string[] = ['@libp2p/kad-dht']
  readonly [Symbol.toStringTag] = '@decloud/reachability'
  private readonly components: ReachabilityComponents
  private readonly log: Logger
  private readonly privateAfter: number
  private readonly relay?: CircuitRelayService & Startable
  private readonly listeners = new Set<(r: Reachability) => void>()
  private verdict: Reachability = 'unknown'
  private timer?: ReturnType<typeof setTimeout>
  private waited = false
  private running = false
  private relayListening = false
  /** private, and no relay known yet to reserve with */
  private wantRelay = false
  private relaying = false
  private applying: Promise<void> = Promise.resolve()
  private readonly onUpdate = (): void => { this.evaluate() }
  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    if (this.wantRelay && evt.detail.protocols.includes(RELAY_V2_HOP_CODEC)) { this.listenOnRelays() }
    if (this.timer != null || this.waited || !evt.detail.protocols.includes(AUTONAT_V2_PROTOCOL)) { return }
    this.timer = setTimeout(() => {
      this.waited = true
      this.evaluate()
    }, this.privateAfter)
    this.timer.unref?.()
  }

  constructor (components: ReachabilityComponents, init: ReachabilityInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('decloud:reachability')
    this.privateAfter = init.privateAfter ?? PRIVATE_AFTER
    if (init.relay?.enabled !== false) {
      const r = { ...RELAY_DEFAULTS, ...init.relay }
      this.relay = circuitRelayServer({
        reservations: {
          maxReservations: r.maxReservations,
          reservationTtl: r.reservationTtl,
          defaultDataLimit: r.dataLimit,
          defaultDurationLimit: r.durationLimit,
          applyDefaultLimit: true
        }
      })(components as unknown as CircuitRelayServerComponents) as CircuitRelayService & Startable
    }
  }

  isStarted (): boolean {
    return this.running
  }

  start (): void {}

  afterStart (): void {
    if (this.running) { return }
    this.running = true
    this.components.events.addEventListener('self:peer:update', this.onUpdate)
    this.components.events.addEventListener('peer:identify', this.onIdentify)
    this.evaluate()
  }

  async beforeStop (): Promise<void> {
    if (!this.running) { return }
    this.running = false
    clearTimeout(this.timer)
    this.components.events.removeEventListener('self:peer:update', this.onUpdate)
    this.components.events.removeEventListener('peer:identify', this.onIdentify)
    await this.applying.catch(() => {})
    if (this.relaying) {
      this.relaying = false
      await this.relay?.stop()
    }
  }

  async stop (): Promise<void> {
    await this.beforeStop()
  }

  /** The current verdict */
  get reachability (): Reachability {
    return this.verdict
  }

  /** Called with each new verdict once it is acted on (DHT mode, relay); returns the function that unsubscribes */
  onChange (fn: (r: Reachability) => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Resolves with the verdict once it is `want` (or at once); rejects when `signal` aborts */
  async waitFor (want: Reachability, signal: AbortSignal): Promise<void> {
    if (this.verdict === want) { return }
    signal.throwIfAborted()
    await new Promise<void>((resolve, reject) => {
      const off = this.onChange(r => {
        if (r !== want) { return }
        off()
        signal.removeEventListener('abort', abort)
        resolve()
      })
      const abort = (): void => {
        off()
        reject(signal.reason)
      }
      signal.addEventListener('abort', abort, { once: true })
    })
  }

  status (): ReachabilityStatus {
    const addrs = this.components.addressManager.getAddressesWithMetadata()
    const str = (ma: Multiaddr): string => ma.toString()
    return {
      reachability: this.verdict,
      verified: addrs.filter(a => a.verified && a.type !== 'transport' && !Circuit.matches(a.multiaddr)).map(a => str(a.multiaddr))
        .concat(addrs.filter(a => a.verified && a.type === 'transport' && isAnnounceable(a.multiaddr)).map(a => str(a.multiaddr))),
      observed: addrs.filter(a => a.type === 'observed' && !a.verified).map(a => str(a.multiaddr)),
      relayed: addrs.filter(a => Circuit.matches(a.multiaddr)).map(a => str(a.multiaddr)),
      dht: this.components.dht.getMode(),
      relaying: this.relaying
    }
  }

  /** Verified public, non-relayed addresses */
  private publicVerified (): boolean {
    return this.components.addressManager.getAddressesWithMetadata().some(a =>
      a.verified && !Circuit.matches(a.multiaddr) && isAnnounceable(a.multiaddr))
  }

  private evaluate (): void {
    if (!this.running) { return }
    let next: Reachability = this.waited ? 'private' : 'unknown'
    if (this.publicVerified()) { next = 'public' }
    if (next === this.verdict) { return }
    this.verdict = next
    this.log('reachability: %s', next)
    // the actions run one after another, in verdict order; listeners hear of a verdict once it is acted on
    this.applying = this.applying.then(async () => { await this.apply(next) }).catch(err => {
      this.log.error('acting on reachability %s failed - %e', next, err)
    }).then(() => {
      if (next !== this.verdict) { return }
      for (const fn of [...this.listeners]) {
        try {
          fn(next)
        } catch (err) {
          this.log.error('reachability listener failed - %e', err)
        }
      }
    })
  }

  /** Reserves a slot with a relay: one at a time, with any relay the transport finds */
  private listenOnRelays (): void {
    this.wantRelay = false
    if (this.relayListening || !this.running) { return }
    this.relayListening = true
    this.components.transportManager.listen([multiaddr('/p2p-circuit')]).catch(err => {
      this.log.error('cannot listen on relays - %e', err)
    })
  }

  private async apply (verdict: Reachability): Promise<void> {
    if (!this.running || verdict !== this.verdict) { return }
    const dht = this.components.dht
    if (verdict === 'public') {
      if (dht.getMode() !== 'server') { await dht.setMode('server') }
      if (this.relay != null && !this.relaying) {
        this.relaying = true
        await this.relay.start()
      }
    } else if (verdict === 'private') {
      if (dht.getMode() !== 'client') { await dht.setMode('client') }
      // a relay once offered stays until the node stops (the relay server cannot restart after a
      // stop); peers that reserved with it reach it over their own connections, so it still works
      // the circuit relay transport looks for relays by random walk until it has one; with no
      // relay in the swarm that walk ends at once and starts again, a busy loop that starves the
      // process. So it is started once a relay is known: in the peer store or met later.
      const known = await this.components.peerStore.all({ filters: [p => p.protocols.includes(RELAY_V2_HOP_CODEC)], limit: 1 }).catch(() => [])
      if (known.length > 0) {
        this.listenOnRelays()
      } else {
        this.wantRelay = true
      }
    }
  }
}

/**
 * The reachability service.
 *
 * @example
 * ```ts
 * const node = await createLibp2p({ ..., services: { dht: kadDHT(), autoNAT: autoNATv2(), reachability: reachability({ privateAfter: 10_000 }) } })
 * node.services.reachability.onChange(r => { console.log('reachability', r) })
 * ```
 */
export function reachability (init: ReachabilityInit = {}): (components: ReachabilityComponents) => ReachabilityService {
  return (components) => new ReachabilityService(components, init)
}
