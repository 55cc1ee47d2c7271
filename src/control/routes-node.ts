/** `/v1/node`, `/v1/peers` and `/v1/policy…`: what the node is and the rules it applies (docs/control-api.md) */
import { API_PREFIX } from './api.js'
import { HttpError } from './http.js'
import type { Endpoint, RouteContext } from './http.js'
import type { Connection, PeerId } from '@libp2p/interface'

export function nodeRoutes (ctx: RouteContext, about: { version: string, startedAt: number }): Array<[string, Endpoint]> {
  const node = ctx.node
  return [
    [`${API_PREFIX}/node`, { method: 'GET', run: async () => nodeInfo() }],
    [`${API_PREFIX}/peers`, { method: 'GET', run: async () => ({ peers: await peers() }) }],
    [`${API_PREFIX}/policy`, { method: 'GET', run: async () => policyInfo() }],
    [`${API_PREFIX}/policy/reload`, { method: 'POST', run: async () => policyReload() }]
  ]

  function nodeInfo (): Record<string, unknown> {
    const connections = node.libp2p.getConnections()
    return {
      version: about.version,
      pid: process.pid,
      startedAt: new Date(about.startedAt).toISOString(),
      peerId: node.peerId.toString(),
      openCloudId: node.openCloudId,
      addresses: node.addresses(),
      ...(node.listening != null ? { listening: node.listening() } : {}),
      ...(node.reachability != null ? { reachability: node.reachability() } : {}),
      services: [...node.opencloud.services.values()].map(s => ({ name: s.name, version: s.version, description: s.description })),
      stats: {
        connections: connections.length,
        peers: new Set(connections.map(c => c.remotePeer.toString())).size,
        opencloud: node.opencloud.stats(),
        ...(node.storage != null ? { storage: { used: node.storage.usedBytes, capacity: node.storage.capacity } } : {})
      }
    }
  }

  async function peers (): Promise<unknown[]> {
    const byPeer = new Map<string, { peer: PeerId, connections: Connection[] }>()
    for (const c of node.libp2p.getConnections()) {
      const k = c.remotePeer.toString()
      const e = byPeer.get(k) ?? { peer: c.remotePeer, connections: [] }
      e.connections.push(c)
      byPeer.set(k, e)
    }
    return Promise.all([...byPeer.values()].map(async ({ peer, connections }) => {
      let protocols: string[] = []
      try {
        protocols = (await node.libp2p.peerStore.get(peer)).protocols
      } catch {
        // not in the peer store (yet): identify has not run
      }
      return {
        peerId: peer.toString(),
        openCloudId: `oc:${peer.toString()}`,
        protocols,
        connections: connections.map(c => ({
          remoteAddr: c.remoteAddr.toString(),
          direction: c.direction,
          status: c.status,
          opened: c.timeline.open,
          streams: c.streams.length,
          ...(c.rtt != null ? { rtt: c.rtt } : {})
        }))
      }
    }))
  }

  /** GET /v1/policy */
  function policyInfo (): Record<string, unknown> {
    const p = node.policy
    if (p == null) { throw new HttpError(404, 'not-found', 'this node runs without a policy') }
    const engine = p.current()
    return {
      file: p.file ?? null,
      rules: engine.rules.length,
      reloads: p.reloader?.reloads ?? 0,
      ...(p.reloader?.lastError != null ? { lastError: p.reloader.lastError.message } : {})
    }
  }

  /** POST /v1/policy/reload */
  async function policyReload (): Promise<unknown> {
    const reloader = node.policy?.reloader
    if (reloader == null) { throw new HttpError(404, 'not-found', node.policy == null ? 'this node runs without a policy' : 'the policy is not a file: nothing to reload') }
    const r = await reloader.reload()
    if (!r.ok) { throw new HttpError(400, 'bad-policy', `the policy in force is kept: ${r.error.message}`) }
    return { ...policyInfo(), changed: r.changed }
  }
}
