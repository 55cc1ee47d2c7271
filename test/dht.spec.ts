import assert from 'node:assert/strict'
import { PeerDirectory } from '../src/dht/directory.js'
import { serviceKey, serviceKeyText, majorVersion } from '../src/dht/keys.js'
import { createDecloudNode } from '../src/node/index.js'
import { runCli } from './cli-fixtures.js'
import { eventually as poll, startNode, tempDir } from './fixtures.js'
import type { TestNode } from './fixtures.js'
import type { DecloudNodeOptions } from '../src/node/index.js'

/** Short DHT deadlines: everything is on loopback */
const DHT = { provideTimeout: 10_000, findTimeout: 5_000, provideRetry: 500 }

/** this file's polling: 15_000 ms, every 200 ms */
const eventually = async (fn: () => Promise<boolean> | boolean, deadline = 15_000, every = 200): Promise<boolean> => poll(fn, deadline, every)

describe('service keys', () => {
  it('derive one well-known CID per service and major version', () => {
    assert.equal(serviceKeyText('storage', '1.4.2'), 'decloud/service/storage/1')
    assert.equal(serviceKey('storage', '1.0.0').toString(), serviceKey('storage', '1.9.3').toString())
    assert.notEqual(serviceKey('storage', '1.0.0').toString(), serviceKey('storage', '2.0.0').toString())
    assert.notEqual(serviceKey('storage').toString(), serviceKey('sha256').toString())
    // CIDv1, raw codec, sha2-256
    assert.equal(serviceKey('storage').version, 1)
    assert.equal(serviceKey('storage').code, 0x55)
    assert.equal(serviceKey('storage').multihash.code, 0x12)
    assert.throws(() => majorVersion('latest'), TypeError)
  })
})

describe('peer directory', () => {
  it('is bounded and forgets the least recently seen peer first', () => {
    const d = new PeerDirectory({ maxPeers: 2 })
    d.note('a', 'storage', [], 1)
    d.note('b', 'storage', [], 2)
    d.note('a', 'sha256', [], 3)
    d.note('c', 'storage', [], 4)
    assert.equal(d.size, 2)
    assert.equal(d.get('b'), undefined)
    assert.deepEqual(d.servicesOf('a'), ['sha256', 'storage'])
    assert.deepEqual(d.sellersOf('storage').map(e => e.peerId), ['c', 'a'])
    d.forget('c', 'storage')
    assert.equal(d.get('c'), undefined)
  })
})

describe('joining a swarm', () => {
  it('a node with no bootstrap list starts alone and answers lookups without hanging', async () => {
    const node = await startNode()
    try {
      assert.equal(node.networkMode, 'local')
      assert.equal(node.libp2p.services.dht.getMode(), 'server')
      const sellers = await node.findSellers('storage', { timeout: 300 })
      assert.deepEqual(sellers, [])
    } finally {
      await node.destroy()
    }
  })

  it('refuses a bootstrap address that does not name its peer', async () => {
    const dataDir = await tempDir()
    await assert.rejects(createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: ['/ip4/127.0.0.1/tcp/4001'] }), /must end in \/p2p/)
  })

  it('re-provides on schedule, and records of a seller that left expire on the nodes that held them', async () => {
    const holder = await startNode({ sell: [], dht: { ...DHT, providerValidity: 1_500 } })
    const seller = await startNode({ bootstrap: [holder.addr], sell: ['storage'], dht: { ...DHT, reprovideInterval: 400 } })
    try {
      assert.ok(await eventually(() => seller.discovery.advertised()[0].reached > 0), 'never provided')
      const first = seller.discovery.advertised()[0].lastProvided
      assert.ok(await eventually(() => seller.discovery.advertised()[0].lastProvided > first), 'never re-provided')
      // a lookup can miss under load (1 s each): the record is there when some lookup finds it
      assert.ok(await eventually(async () => (await holder.findSellers('storage', { timeout: 1_000 })).length === 1, 10_000), 'the holder never found the seller')
      await seller.stop()
      // nobody renews the record: the holder drops it once it is older than its validity
      assert.ok(await eventually(async () => (await holder.findSellers('storage', { timeout: 500 })).length === 0, 10_000), 'stale record kept')
    } finally {
      await seller.destroy()
      await holder.destroy()
    }
  })

  it('a node that joined while its bootstrap node knew nobody looks itself up again and meets the nodes that came later', async () => {
    const boot = await startNode({ sell: [], dht: DHT })
    const early = await startNode({ bootstrap: [boot.addr], sell: [], dht: DHT })
    // nodes that look nobody up (neither decloud's join nor kad-dht's self-query): only a lookup of
    // the early node's own can make it meet them
    const quiet = { ...DHT, joinLookups: 0, kad: { initialQuerySelfInterval: 600_000 } }
    const later: TestNode[] = []
    try {
      // its first self-lookup finds nobody but the bootstrap node
      assert.ok(await eventually(() => early.discovery.routingTableSize() === 1), 'never joined')
      later.push(...await Promise.all([0, 1].map(async () => startNode({ bootstrap: [boot.addr], sell: [], dht: quiet }))))
      assert.ok(await eventually(() => boot.discovery.routingTableSize() >= 3), 'the bootstrap node never met the later nodes')
      assert.ok(await eventually(() => early.discovery.routingTableSize() >= 3), `routing table stays at ${early.discovery.routingTableSize()}`)
    } finally {
      await Promise.all([...later, early, boot].map(async n => n.destroy()))
    }
  })

  it('picks the network mode: local while the node has no public address and no public bootstrap peer', async () => {
    const { defaultNetworkMode } = await import('../src/node/index.js')
    const { multiaddr } = await import('@multiformats/multiaddr')
    // what 0.0.0.0 stands for on a machine behind NAT, and on one with a public interface address
    const lan = { expand: () => [multiaddr('/ip4/127.0.0.1/tcp/4001'), multiaddr('/ip4/192.168.1.20/tcp/4001')] }
    const publicServer = { expand: () => [multiaddr('/ip4/127.0.0.1/tcp/4001'), multiaddr('/ip4/8.8.4.4/tcp/4001')] }
    assert.equal(defaultNetworkMode(['/ip4/127.0.0.1/tcp/0']), 'local')
    assert.equal(defaultNetworkMode(['/ip4/192.168.1.20/tcp/0']), 'local')
    assert.equal(defaultNetworkMode(['/ip4/0.0.0.0/tcp/4001'], lan), 'local')
    assert.equal(defaultNetworkMode(['/ip4/0.0.0.0/tcp/4001'], { ...lan, bootstrap: ['/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWGRUVh7F4hB3E9KzRmMJ7ZGNuuz6CQWGf4DvEP8WxoLWr'] }), 'local')
    // a public bootstrap peer: the internet swarm
    assert.equal(defaultNetworkMode(['/ip4/0.0.0.0/tcp/4001'], { ...lan, bootstrap: ['/ip4/8.8.4.4/tcp/4001/p2p/12D3KooWGRUVh7F4hB3E9KzRmMJ7ZGNuuz6CQWGf4DvEP8WxoLWr'] }), 'public')
    assert.equal(defaultNetworkMode([], { bootstrap: ['/dns4/example.org/tcp/4001/p2p/12D3KooWGRUVh7F4hB3E9KzRmMJ7ZGNuuz6CQWGf4DvEP8WxoLWr'] }), 'public')
    // a public address of its own
    assert.equal(defaultNetworkMode(['/ip4/0.0.0.0/tcp/4001'], publicServer), 'public')
    assert.equal(defaultNetworkMode(['/ip4/8.8.4.4/tcp/4001']), 'public')
    assert.equal(defaultNetworkMode(['/ip4/127.0.0.1/tcp/0', '/ip4/0.0.0.0/tcp/0'], publicServer), 'public')
  })
})

describe('seller discovery in a 10-node swarm', function () {
  this.timeout(120_000)
  let boot: TestNode
  let nodes: TestNode[] = []
  let sellers: TestNode[] = []

  before(async () => {
    boot = await startNode({ sell: [], dht: DHT })
    const opts = (i: number): DecloudNodeOptions => ({
      bootstrap: [boot.addr],
      sell: i < 3 ? ['storage'] : [],
      dht: DHT
    })
    nodes = await Promise.all(Array.from({ length: 9 }, async (_, i) => startNode(opts(i))))
    sellers = nodes.slice(0, 3)
  })

  after(async () => {
    await Promise.all([boot, ...nodes].map(async n => n?.destroy()))
  })

  const sellerIds = (): string[] => sellers.map(s => s.peerId.toString()).sort()

  async function findsAllSellers (n: TestNode): Promise<boolean> {
    const found = await n.findSellers('storage', { timeout: 3_000, includeSelf: true })
    const ids = found.map(s => s.peerId).sort()
    return sellerIds().every(id => ids.includes(id))
  }

  it('fills every routing table from one bootstrap node', async () => {
    assert.ok(await eventually(() => [boot, ...nodes].every(n => n.discovery.routingTableSize() >= 3)), `routing tables stay small: ${[boot, ...nodes].map(n => n.discovery.routingTableSize()).join(',')}`)
    assert.ok(boot.discovery.routingTableSize() >= 9)
  })

  it('every node finds the 3 storage sellers, with addresses, and no one else', async () => {
    const results = await Promise.all(nodes.map(async n => eventually(async () => findsAllSellers(n))))
    assert.deepEqual(results, nodes.map(() => true))
    const found = await nodes[8].findSellers('storage', { timeout: 3_000 })
    assert.deepEqual(found.map(s => s.peerId).sort(), sellerIds())
    for (const s of found) {
      assert.ok(s.addresses.length > 0)
      assert.ok(s.addresses.every(a => a.startsWith('/ip4/127.0.0.1/tcp/') && a.endsWith(`/p2p/${s.peerId}`)), s.addresses.join(' '))
    }
    // nobody advertises what it does not sell
    assert.deepEqual(await nodes[8].findSellers('sha256', { timeout: 1_000 }), [])
  })

  it('a seller found through the DHT can be called at the address found', async () => {
    const [s] = await nodes[7].findSellers('storage', { timeout: 3_000, limit: 1 })
    const res = await nodes[7].opencloud.call(s.addresses[0], { service: 'storage', method: 'info' })
    assert.equal(res.path, 'ok')
    assert.equal(res.signer, `oc:${s.peerId}`)
  })

  it('the peers service lists known peers with addresses and the services they sell', async () => {
    await nodes[6].findSellers('storage', { timeout: 3_000 })
    const body = await nodes[5].opencloud.callOk(nodes[6].addr, { service: 'peers', method: 'list' })
    const list = JSON.parse(new TextDecoder().decode(body))
    assert.equal(list.self.peerId, nodes[6].peerId.toString())
    assert.deepEqual(list.self.services, [])
    const byId = new Map<string, any>(list.peers.map((p: any) => [p.peerId, p]))
    for (const s of sellers) {
      const p = byId.get(s.peerId.toString())
      assert.ok(p != null, 'seller missing from peers.list')
      assert.ok(p.services.includes('storage'))
      assert.ok(p.addresses.length > 0)
    }
    const only = JSON.parse(new TextDecoder().decode(await nodes[5].opencloud.callOk(nodes[6].addr, { service: 'peers', method: 'list', args: ['storage'] })))
    assert.deepEqual(only.peers.map((p: any) => p.peerId).sort(), sellerIds())
    const bad = await nodes[5].opencloud.call(nodes[6].addr, { service: 'peers', method: 'list', args: ['storage', 'lots'] })
    assert.equal(bad.path, 'client-error/bad-request')
  })

  it('decloud sellers finds them from the command line (no node running: a DHT client joins through --bootstrap)', async () => {
    const dataDir = await tempDir()
    const res = await runCli(['sellers', 'storage', '--bootstrap', nodes[3].addr, '--json', '--timeout', '5000', '--data-dir', dataDir], { timeout: 60_000 })
    assert.equal(res.code, 0, res.stderr)
    const answer = JSON.parse(res.stdout.toString())
    assert.equal(answer.service, 'storage')
    assert.deepEqual(answer.sellers.map((s: any) => s.peerId).sort(), sellerIds())
    assert.ok(answer.sellers.every((s: any) => s.foundIn.includes('dht') && s.addresses[0].endsWith(s.peerId)))
    const text = await runCli(['sellers', 'storage', '--bootstrap', nodes[3].addr, '--timeout', '5000', '--data-dir', dataDir], { timeout: 60_000 })
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout.toString(), /^3 sellers of storage/)
    const usage = await runCli(['sellers', '--data-dir', dataDir])
    assert.equal(usage.code, 2)
    const none = await runCli(['sellers', 'storage', '--data-dir', dataDir])
    assert.equal(none.code, 2)
    assert.match(none.stderr, /--bootstrap/)
  })

  it('a node that lost every connection finds its way back through the peers it remembers', async () => {
    const dataDir = await tempDir()
    // the wanderer's only bootstrap node is one that goes away: the way back can only be a remembered peer
    const door = await startNode({ bootstrap: [nodes[4].addr], sell: [], dht: DHT })
    const wanderer = await createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [door.addr], sell: [], dht: DHT, swarm: { checkInterval: 300 } })
    try {
      assert.ok(await eventually(() => wanderer.discovery.routingTableSize() >= 3), 'the wanderer never joined the swarm')
      await door.destroy()
      await Promise.all(wanderer.libp2p.getConnections().map(async c => c.close()))
      assert.ok(await eventually(() => wanderer.libp2p.getConnections().some(c => !c.remotePeer.equals(door.peerId)), 10_000), 'no way back into the swarm')
      const found = await wanderer.findSellers('storage', { timeout: 5_000 })
      assert.equal(found.length, 3)
    } finally {
      await wanderer.stop()
      await door.destroy()
    }
  })

  it('still finds every seller after the bootstrap node is gone, and a newcomer joins through any node', async () => {
    await boot.destroy()
    const results = await Promise.all(nodes.map(async n => eventually(async () => findsAllSellers(n))))
    assert.deepEqual(results, nodes.map(() => true))
    const late = await startNode({ bootstrap: [nodes[4].addr], sell: [], dht: DHT })
    try {
      assert.ok(await eventually(async () => findsAllSellers(late)), 'the newcomer does not find the sellers')
    } finally {
      await late.destroy()
    }
  })

  it('a stopped seller advertises nothing any more', async () => {
    const s = sellers[2]
    assert.equal(s.discovery.advertised().length, 1)
    assert.ok(s.discovery.advertised()[0].reached > 0, 'the seller never reached a DHT peer')
    // a round while running is observable: it stamps the advert
    const running = s.discovery.advertised()[0].lastProvided
    await s.discovery.provideAll()
    const last = s.discovery.advertised()[0]
    assert.ok(last.lastProvided > running, 'a provide round while running left no trace')
    await s.stop()
    // provide rounds after stop are no-ops: the advert keeps the last round's stamp and reach
    await s.discovery.provideAll()
    assert.equal(s.libp2p.status, 'stopped')
    assert.deepEqual(s.discovery.advertised()[0], last, 'a provide round ran after stop')
  })
})
