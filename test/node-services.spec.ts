import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { createServer } from 'node:net'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { discovery } from '../src/dht/discovery.js'
import { market } from '../src/market/market.js'
import { PriceBook } from '../src/market/price-book.js'
import { decloudDefaults } from '../src/node/defaults.js'
import { createDecloudNode } from '../src/node/index.js'
import { SCHEMA_VERSION, Store } from '../src/store/index.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import type { AddressInfo } from 'node:net'

describe('store in memory', () => {
  it('serves the same API as LevelDB, with the schema version, and forgets everything at close', async () => {
    const store = Store.memory()
    assert.equal(store.memory, true)
    await store.open()
    await store.sub('a').put('k', new Uint8Array([1, 2]))
    await store.sub('b').batch([{ type: 'put', key: 'k', value: new Uint8Array([3]) }])
    assert.deepEqual(await store.sub('a').get('k'), new Uint8Array([1, 2]))
    assert.deepEqual(await store.sub('b').get('k'), new Uint8Array([3]), 'sublevels are separate namespaces')
    const keys: string[] = []
    for await (const [key] of store.sub('a').iterator()) { keys.push(key) }
    assert.deepEqual(keys, ['k'])
    assert.equal(new TextDecoder().decode(await store.db.get('/decloud/version')), String(SCHEMA_VERSION))
    await store.close()
    const again = Store.memory()
    await again.open()
    assert.equal(await again.sub('a').get('k'), undefined)
    await again.close()
  })

  it("a node with store: 'memory' writes no database to its data dir and serves storage from memory", async () => {
    const node = await startNode({ store: 'memory' })
    const client = await startNode({ store: 'memory' })
    try {
      assert.equal(node.store.memory, true)
      assert.ok(!(await readdir(node.dataDir)).includes('db'), 'a LevelDB was created on disk')
      const hello = new TextEncoder().encode('hello')
      await client.opencloud.callOk(node.addr, { service: 'storage', method: 'put', body: hello })
      const id = createHash('sha256').update(hello).digest('hex')
      assert.equal(node.storage.usedBytes, hello.byteLength)
      assert.equal(new TextDecoder().decode(await client.opencloud.callOk(node.addr, { service: 'storage', method: 'get', args: [id] })), 'hello')
    } finally {
      await client.destroy()
      await node.destroy()
    }
  })

  it('refuses an unknown store kind', async () => {
    await assert.rejects(createDecloudNode({ dataDir: await tempDir(), listen: [], store: 'tape' as any }), { name: 'TypeError' })
  })
})

describe('node services started and stopped by libp2p', () => {
  it('discovery, market, swarm keeper and payments are libp2p services, and libp2p.stop() stops them', async () => {
    const node = await startNode({ store: 'memory' })
    try {
      const { discovery, market, swarm, payments } = node.libp2p.services
      assert.equal(node.discovery, discovery)
      assert.equal(node.market, market)
      assert.equal(node.swarm, swarm)
      assert.equal(node.directory, discovery.directory)
      for (const s of [discovery, market, swarm, payments]) { assert.equal(s.isStarted(), true) }
      // the core services they serve were added to OpenCloud before it started
      assert.ok(node.opencloud.services.has('peers') && node.opencloud.services.has('market'))
      assert.deepEqual(node.selling(), ['sha256', 'storage'])
      assert.ok(await eventually(() => discovery.advertised().length === 2), 'the sold services are not advertised')
      await node.libp2p.stop()
      for (const s of [discovery, market, swarm, payments]) { assert.equal(s.isStarted(), false) }
    } finally {
      await node.destroy()
    }
  })

  it('a node that fails to start releases its data dir (libp2p stops what started; one cleanup for the store)', async () => {
    // a port that is taken: libp2p's listen fails after the services have started
    const server = createServer()
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const dataDir = await tempDir()
    try {
      await assert.rejects(createDecloudNode({ dataDir, listen: [`/ip4/127.0.0.1/tcp/${port}`] }))
    } finally {
      server.close()
    }
    // the LevelDB lock was released: the same data dir opens again
    const node = await startNode({ dataDir })
    await node.destroy()
  })

  it('decloudDefaults() gives an embedder the whole node to customise and start with createLibp2p', async () => {
    const store = Store.memory()
    await store.open()
    const options = decloudDefaults({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await generateKeyPair('Ed25519'), opencloud: {}, store, swarm: { minConnections: 3 } })
    const libp2p = await createLibp2p(options)
    try {
      assert.equal(libp2p.services.market.isStarted(), true)
      assert.equal(libp2p.services.discovery.isStarted(), true)
      assert.equal(libp2p.services.swarm.isStarted(), true)
      // nothing is sold but the framework's own services
      assert.deepEqual(libp2p.services.discovery.selling().map(s => s.name), [])
    } finally {
      await libp2p.stop()
      await store.close()
    }
  })

  it('a service without the services it depends on is refused when the node is built', async () => {
    // the types refuse it already (the factories' components name what they need): this is the runtime check
    const book = new PriceBook({ db: Store.memory().sub('market') })
    await assert.rejects(createLibp2p({
      transports: [tcp()],
      services: { identify: identify(), market: market({ book, selling: () => [] }) as any }
    }), (err: Error) => err.name === 'UnmetServiceDependenciesError' && /@libp2p\/pubsub|@decloud\/opencloud/.test(err.message))
    await assert.rejects(createLibp2p({
      transports: [tcp()],
      services: { identify: identify(), discovery: discovery({ selling: () => [] }) as any }
    }), { name: 'UnmetServiceDependenciesError' })
  })
})
