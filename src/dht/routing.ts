/**
 * The DHT's routing table as Discovery uses it: waiting for its first peer,
 * filling it (Kademlia's join), and the provider records this node holds.
 */
import type { DhtKey } from './keys.js'
import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
import type { KadDHT } from '@libp2p/kad-dht'

export interface RoutingTableLike {
  size: number
  addEventListener(type: 'peer:add' | 'peer:remove', fn: () => void): void
  removeEventListener(type: 'peer:add' | 'peer:remove', fn: () => void): void
}

/** kad-dht's routing table (not part of its public interface) */
export function routingTableOf (dht: KadDHT): RoutingTableLike | undefined {
  return (dht as unknown as { routingTable?: RoutingTableLike }).routingTable
}

/** Resolves when `table` has a peer; rejects when `signal` aborts */
export async function waitForPeer (table: RoutingTableLike | undefined, signal: AbortSignal): Promise<void> {
  if (table == null || table.size > 0) { return }
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      table.removeEventListener('peer:add', done)
      signal.removeEventListener('abort', abort)
      resolve()
    }
    const abort = (): void => {
      table.removeEventListener('peer:add', done)
      reject(signal.reason)
    }
    table.addEventListener('peer:add', done)
    signal.addEventListener('abort', abort, { once: true })
  })
}

export interface JoinOptions {
  dht: KadDHT
  self: PeerId
  /** the routing table's size now */
  size(): number
  /** most self-lookups, the first included */
  lookups: number
  /** delay before the second lookup (ms), doubling */
  retry: number
  /** deadline of one lookup (ms) */
  timeout: number
  signal: AbortSignal
  log: Logger
}

/**
 * Kademlia's join: look up this node's own id. The lookup walks to the
 * peers closest to it, which fills the routing table and makes this node
 * known to its neighbours. A node that joins while its bootstrap node knows
 * nobody else yet finds nobody, so the lookup is repeated, with backoff,
 * while it keeps finding new peers or the table holds a single peer: at
 * most `lookups` times, and never after `signal` aborts.
 */
export async function join (o: JoinOptions): Promise<void> {
  let delay = o.retry
  for (let i = 0; i < o.lookups && !o.signal.aborted; i++) {
    if (i > 0) {
      await sleep(delay, o.signal)
      delay *= 2
      if (o.signal.aborted) { return }
    }
    const before = o.size()
    const signal = AbortSignal.any([o.signal, AbortSignal.timeout(o.timeout)])
    try {
      // drain it: every peer it meets may join the routing table
      let events = 0
      for await (const event of o.dht.getClosestPeers(o.self.toMultihash().bytes, { signal })) {
        if (event.name === 'PEER_RESPONSE') { events++ }
      }
      o.log.trace('join lookup: %d answers', events)
    } catch {}
    const after = o.size()
    o.log('joined: routing table has %d peers', after)
    // settled: the lookup found nobody new and the node knows more than its first peer
    if (after <= before && after > 1) { return }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts */
async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** Provider records this node holds itself (the DHT's local provider store) */
export async function localProviders (dht: KadDHT, key: DhtKey, signal: AbortSignal): Promise<PeerId[]> {
  const providers = (dht as unknown as { providers?: { getProviders(cid: DhtKey, o: AbortOptions): Promise<PeerId[]> } }).providers
  if (providers == null) { return [] }
  try {
    return await providers.getProviders(key, { signal })
  } catch {
    return []
  }
}
