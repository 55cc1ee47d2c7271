import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createDecloudNode, defaultNetworkMode } from './index.js'
import type { DecloudNode, NetworkMode } from './index.js'
import type { PrivateKey } from '@libp2p/interface'

export interface SwarmClientOptions {
  /** multiaddrs (with /p2p/) of nodes of the swarm */
  bootstrap: string[]
  /** @default 'local' when every bootstrap address is private or loopback, else 'public' */
  networkMode?: NetworkMode
  /** how long to wait for the first DHT peer (ms) @default 5_000 */
  joinTimeout?: number
  /** the identity to call with (e.g. the user's data dir key) @default a throw-away key */
  privateKey?: PrivateKey
}

/**
 * Runs `fn` with a short-lived node that joins a swarm as a DHT client only
 * (it stores no one's records and sells nothing), in a temporary data dir
 * (with a throw-away key unless `privateKey` is given), then stops it and
 * deletes the dir. Before `fn` runs, the node has a DHT peer (or waited
 * `joinTimeout`) and has merged its connected peers' price books. For commands
 * that look the swarm up when no node runs for the user's data dir (the
 * running node owns its LevelDB).
 */
export async function withSwarmClient<T> (options: SwarmClientOptions, fn: (node: DecloudNode) => Promise<T>): Promise<T> {
  if (options.bootstrap.length === 0) { throw new TypeError('a swarm client needs at least one bootstrap address') }
  // it listens nowhere: local when every bootstrap address is private or loopback
  const networkMode = options.networkMode ?? defaultNetworkMode([], { bootstrap: options.bootstrap })
  const dataDir = await mkdtemp(join(tmpdir(), 'decloud-client-'))
  let node: DecloudNode | undefined
  try {
    node = await createDecloudNode({
      dataDir,
      // a client's price book and directory are throw-away: nothing to write to disk
      store: 'memory',
      privateKey: options.privateKey,
      listen: [],
      networkMode,
      bootstrap: options.bootstrap,
      sell: [],
      dht: { kad: { clientMode: true } },
      market: { syncPeers: options.bootstrap.length }
    })
    const deadline = Date.now() + (options.joinTimeout ?? 5_000)
    while (node.discovery.routingTableSize() === 0 && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    // the price book of the peers it is connected to (its bootstrap nodes), so that rankings have prices
    const current = node
    await Promise.allSettled(current.libp2p.getConnections().map(async c => current.market.syncFrom(c.remotePeer)))
    return await fn(node)
  } finally {
    await node?.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
