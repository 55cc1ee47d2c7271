import { ServiceError } from '../protocols/opencloud/api/template.js'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { withPeer } from './keys.js'
import type { PeerDirectory } from './directory.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { Libp2p } from '@libp2p/interface'

/** Most peers one `peers.list` answer carries */
export const MAX_LISTED_PEERS = 256

export interface PeerListing {
  peerId: string
  addresses: string[]
  connected: boolean
  /** services the peer is known to sell (from DHT lookups and price announcements) */
  services: string[]
  /** when the peer was last seen selling something (ms since epoch), if known */
  lastSeen?: number
}

export interface PeersServiceInit {
  libp2p: Pick<Libp2p, 'peerId' | 'peerStore' | 'getConnections' | 'getMultiaddrs'>
  directory: PeerDirectory
  /** services this node sells */
  selling(): string[]
}

/**
 * Known peers: connected ones first, then the directory (sellers learned
 * through the DHT and the market), then the rest of the peer store; at most
 * `limit` (≤ 256). With `service`, only peers known to sell it.
 */
export async function listPeers (init: PeersServiceInit, options: { service?: string, limit?: number } = {}): Promise<PeerListing[]> {
  const limit = Math.min(options.limit ?? MAX_LISTED_PEERS, MAX_LISTED_PEERS)
  const out = new Map<string, PeerListing>()
  const self = init.libp2p.peerId.toString()
  const connected = new Map<string, string[]>()
  for (const c of init.libp2p.getConnections()) {
    const id = c.remotePeer.toString()
    const list = connected.get(id) ?? []
    list.push(withPeer(c.remoteAddr.toString(), id))
    connected.set(id, list)
  }
  const add = (peerId: string, addresses: string[]): void => {
    if (out.size >= limit || out.has(peerId) || peerId === self) { return }
    const d = init.directory.get(peerId)
    const services = init.directory.servicesOf(peerId)
    if (options.service != null && !services.includes(options.service)) { return }
    out.set(peerId, {
      peerId,
      addresses: addresses.length > 0 ? addresses : (d?.addresses ?? []),
      connected: connected.has(peerId),
      services,
      lastSeen: d?.lastSeen
    })
  }
  for (const [id, addrs] of connected) { add(id, addrs) }
  for (const e of init.directory.all()) { add(e.peerId, e.addresses) }
  if (out.size < limit) {
    const peers = await init.libp2p.peerStore.all({ limit: limit * 2 })
    for (const p of peers) {
      const id = p.id.toString()
      add(id, p.addresses.slice(0, 16).map(a => withPeer(a.multiaddr.toString(), id)))
    }
  }
  return [...out.values()]
}

/**
 * The core `peers` service (spec "Core services"): `peers.list [service]
 * [limit]` answers JSON `{ self, peers: [{ peerId, addresses, connected,
 * services, lastSeen }] }`.
 */
export function peersService (init: PeersServiceInit): ServiceDefinition {
  return {
    name: 'peers',
    version: '1.0.0',
    description: 'peers this node knows, with their addresses and the services they sell',
    methods: {
      list: {
        description: 'known peers as JSON, optionally only sellers of one service',
        args: '[service] [limit]',
        handler: async (call) => {
          const [service, limitArg] = call.args
          let limit: number | undefined
          if (limitArg != null) {
            if (!/^[0-9]{1,4}$/.test(limitArg)) { throw new ServiceError(Status.BAD_REQUEST, 'limit must be an integer') }
            limit = Number(limitArg)
          }
          const peers = await listPeers(init, { service: service === '' ? undefined : service, limit })
          const self = {
            peerId: init.libp2p.peerId.toString(),
            addresses: init.libp2p.getMultiaddrs().map(a => a.toString()),
            services: init.selling()
          }
          return { body: new TextEncoder().encode(JSON.stringify({ self, peers })) }
        }
      }
    }
  }
}
