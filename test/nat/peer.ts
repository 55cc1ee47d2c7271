/**
 * One decloud node for the network-namespace tests, run as a child process
 * inside a namespace (`ip netns exec NS node dist/test/nat/peer.js JSON`).
 * It prints one JSON line per event on stdout (`started`, `reachability`,
 * and the answer to each command) and takes one JSON command per line on
 * stdin: `status`, `find` (sellers of a service through the DHT), `put` /
 * `get` (storage calls to a peer by id), `connections`, `stop`.
 */
import '../../src/polyfill.js'
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { peerIdFromString } from '@libp2p/peer-id'
import { createDecloudNode } from '../../src/node/index.js'
import type { DecloudNodeOptions } from '../../src/node/index.js'
import type { CallRequest, CallResult } from '../../src/protocols/opencloud/net/client.js'

interface PeerConfig {
  dataDir: string
  listen: string[]
  bootstrap?: string[]
  publicRanges?: string[]
  networkMode?: 'local' | 'public'
  privateAfter?: number
  relayDataLimit?: string
}

const config = JSON.parse(process.argv[2]) as PeerConfig
const emit = (o: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(o) + '\n') }

const options: DecloudNodeOptions = {
  dataDir: config.dataDir,
  listen: config.listen,
  store: 'memory',
  bootstrap: config.bootstrap,
  networkMode: config.networkMode ?? 'public',
  payments: false,
  policy: false,
  // the whole topology is a handful of nodes: join and provide quickly
  dht: { provideRetry: 1_000, joinRetry: 500, findTimeout: 5_000 },
  swarm: { checkInterval: 2_000 },
  nat: {
    nat: 'none',
    publicRanges: config.publicRanges,
    privateAfter: config.privateAfter,
    relay: config.relayDataLimit != null ? { dataLimit: BigInt(config.relayDataLimit) } : undefined
  }
}
const started = Date.now()
const node = await createDecloudNode(options)
emit({ event: 'started', peerId: node.peerId.toString(), addresses: node.addresses(), networkMode: node.networkMode })
node.libp2p.services.reachability?.onChange(r => { emit({ event: 'reachability', reachability: r, ms: Date.now() - started, status: node.reachability() }) })
node.libp2p.addEventListener('self:peer:update', () => {
  emit({ event: 'addresses', ms: Date.now() - started, addresses: node.addresses() })
})

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  let cmd: Record<string, any>
  try {
    cmd = JSON.parse(line)
  } catch {
    continue
  }
  const id = cmd.id
  try {
    if (cmd.cmd === 'stop') { break }
    emit({ id, ok: true, ...await run(cmd) })
  } catch (err: any) {
    emit({ id, ok: false, error: err.name, message: String(err.message), stack: String(err.stack).slice(0, 1500) })
  }
}
await node.stop()
process.exit(0)

async function run (cmd: Record<string, any>): Promise<Record<string, unknown>> {
  switch (cmd.cmd) {
    case 'status':
      return { status: node.reachability(), addresses: node.addresses(), dht: node.libp2p.services.dht.getMode() }
    case 'find': {
      const t0 = Date.now()
      const sellers = await node.findSellers(cmd.service, { timeout: cmd.timeout ?? 5_000 })
      return { sellers, ms: Date.now() - t0 }
    }
    case 'put': {
      const body = new Uint8Array(cmd.bytes).fill(7)
      const t0 = Date.now()
      const { res, attempts } = await call(cmd, { service: 'storage', method: 'put', body })
      return { status: res.path, body: Buffer.from(res.body).toString('utf8'), sha256: createHash('sha256').update(body).digest('hex'), ms: Date.now() - t0, attempts, connections: connections(cmd.peer) }
    }
    case 'get': {
      const t0 = Date.now()
      const { res, attempts } = await call(cmd, { service: 'storage', method: 'get', args: [cmd.sha256] })
      return { status: res.path, bytes: res.body.byteLength, ms: Date.now() - t0, attempts }
    }
    case 'connections':
      return { connections: connections(cmd.peer) }
    case 'waitDirect': {
      // waits (bounded) for a connection to the peer that no relay limits: the hole punch's result
      const deadline = Date.now() + (cmd.timeout ?? 15_000)
      while (Date.now() < deadline) {
        if (connections(cmd.peer).some(c => !c.limited)) { return { direct: true, connections: connections(cmd.peer) } }
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      return { direct: false, connections: connections(cmd.peer) }
    }
    default:
      throw new Error(`unknown command ${String(cmd.cmd)}`)
  }
}

/**
 * One call, tried a second time when its connection closed under it: DCUtR
 * closes a relayed connection once it has a direct one, and a call caught
 * in that switch fails (the answer says how many attempts it took)
 */
async function call (cmd: Record<string, any>, request: CallRequest): Promise<{ res: CallResult, attempts: number }> {
  for (let attempts = 1; ; attempts++) {
    try {
      const res = await node.opencloud.call(peerIdFromString(cmd.peer), request, { signal: AbortSignal.timeout(cmd.timeout ?? 20_000) })
      return { res, attempts }
    } catch (err: any) {
      if (attempts >= 2 || !['ConnectionClosedError', 'StreamResetError', 'StreamStateError', 'ConnectionClosingError'].includes(err.name)) { throw err }
    }
  }
}

function connections (peer: string): Array<{ remoteAddr: string, limited: boolean, direction: string }> {
  return node.libp2p.getConnections(peerIdFromString(peer)).map(c => ({ remoteAddr: c.remoteAddr.toString(), limited: c.limits != null, direction: c.direction }))
}
