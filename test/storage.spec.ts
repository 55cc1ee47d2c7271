import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DB_DIR, PIECES_DIR } from '../src/node/data-dir.js'
import { Status } from '../src/protocols/opencloud/index.js'
import { Store } from '../src/store/index.js'
import { startNode, tempDir } from './fixtures.js'
import type { TestNode } from './fixtures.js'
import type { CallResult } from '../src/protocols/opencloud/index.js'

const hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const parse = (res: CallResult): any => JSON.parse(text(res.body))

async function call (from: TestNode, to: TestNode | string, method: string, args: string[] = [], body?: Uint8Array): Promise<CallResult> {
  return from.opencloud.call(typeof to === 'string' ? to : to.addr, { service: 'storage', method, args, body })
}

async function put (from: TestNode, to: TestNode | string, body: Uint8Array): Promise<string> {
  const res = await call(from, to, 'put', [], body)
  assert.equal(res.path, 'ok', res.detail)
  return parse(res).id
}

/** the usage counter must always equal what the metadata adds up to */
async function assertAccounting (node: TestNode): Promise<void> {
  const { bytes } = await node.storage.count()
  assert.equal(node.storage.usedBytes, bytes, 'usage counter drifted from the stored blobs')
  assert.ok(node.storage.usedBytes <= node.storage.capacity)
}

describe('storage service over real nodes', () => {
  const MAX_BLOB = 64 * 1024
  let s: TestNode
  let a: TestNode
  let c: TestNode

  before(async () => {
    s = await startNode({ storage: { capacity: 1024 * 1024, maxBlobSize: MAX_BLOB } })
    a = await startNode()
    c = await startNode()
  })

  after(async () => {
    await a?.destroy()
    await c?.destroy()
    await s?.destroy()
  })

  it('put returns the hex SHA-256; get returns the same bytes; stat describes the blob', async () => {
    const body = randomBytes(10_000)
    const id = await put(a, s, body)
    assert.equal(id, hex(body))

    const got = await call(a, s, 'get', [id])
    assert.equal(got.path, 'ok')
    assert.ok(Buffer.from(got.body).equals(body))

    const stat = await call(a, s, 'stat', [id])
    assert.equal(stat.path, 'ok')
    const meta = parse(stat)
    assert.equal(meta.id, id)
    assert.equal(meta.size, 10_000)
    assert.equal(meta.owners, 1)
    assert.equal(meta.yours, true)
    assert.ok(Math.abs(Date.parse(meta.created) - Date.now()) < 60_000)
    assert.equal(parse(await call(c, s, 'stat', [id])).yours, false)
    await assertAccounting(s)
  })

  it('accepts an id in upper case and answers in lower case', async () => {
    const body = randomBytes(100)
    const id = await put(a, s, body)
    const got = await call(a, s, 'get', [id.toUpperCase()])
    assert.equal(got.path, 'ok')
    assert.ok(Buffer.from(got.body).equals(body))
    assert.equal(parse(await call(a, s, 'stat', [id.toUpperCase()])).id, id)
  })

  it('stores and serves the empty blob', async () => {
    const id = await put(a, s, new Uint8Array())
    assert.equal(id, hex(new Uint8Array()))
    const got = await call(a, s, 'get', [id])
    assert.equal(got.path, 'ok')
    assert.equal(got.body.byteLength, 0)
  })

  it('range get returns [offset, offset + length) clipped to the end', async () => {
    const body = randomBytes(5000)
    const id = await put(a, s, body)
    const range = async (...args: string[]): Promise<Buffer> => {
      const res = await call(c, s, 'get', [id, ...args])
      assert.equal(res.path, 'ok', res.detail)
      return Buffer.from(res.body)
    }
    assert.ok((await range('0', '10')).equals(body.subarray(0, 10)))
    assert.ok((await range('1234', '1000')).equals(body.subarray(1234, 2234)))
    assert.ok((await range('4990')).equals(body.subarray(4990)), 'offset without length reads to the end')
    assert.ok((await range('4990', '100')).equals(body.subarray(4990)), 'a length past the end is clipped')
    assert.equal((await range('5000')).byteLength, 0, 'offset at the end is an empty range')
    assert.equal((await range('10', '0')).byteLength, 0)
  })

  it('range get with a bad offset or length → bad-request', async () => {
    const id = await put(a, s, randomBytes(1000))
    for (const args of [['1001'], ['-1'], ['1.5'], ['x'], [''], ['0', '-5'], ['0', 'ten'], ['0', '1e3'], ['99999999999999999999']]) {
      const res = await call(a, s, 'get', [id, ...args])
      assert.equal(res.path, 'client-error/bad-request', `args ${JSON.stringify(args)}`)
      assert.notEqual(res.detail, '')
    }
  })

  it('malformed ids and extra args → bad-request, for every method', async () => {
    const bad = ['', 'xyz', 'a'.repeat(63), 'a'.repeat(65), 'g'.repeat(64), ` ${'a'.repeat(63)}`, `${'a'.repeat(64)}\n`, '../' + 'a'.repeat(61), 'a'.repeat(1024)]
    for (const method of ['get', 'stat', 'delete']) {
      for (const id of bad) {
        const res = await call(a, s, method, [id])
        assert.equal(res.path, 'client-error/bad-request', `${method} ${JSON.stringify(id)}`)
        assert.match(res.detail, /64 hex/)
      }
      const missing = await call(a, s, method, [])
      assert.equal(missing.path, 'client-error/bad-request', `${method} without id`)
    }
    const id = hex(new Uint8Array([1]))
    assert.equal((await call(a, s, 'stat', [id, 'extra'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'delete', [id, 'extra'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'get', [id, '0', '1', 'extra'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'put', ['extra'], new Uint8Array([1]))).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'get', [id])).path, 'client-error/not-found', 'the refused put stored nothing')
  })

  it('unknown blob → not-found for get, stat and delete', async () => {
    const id = hex(randomBytes(32))
    for (const method of ['get', 'stat', 'delete']) {
      const res = await call(a, s, method, [id])
      assert.equal(res.path, 'client-error/not-found', method)
    }
  })

  it('a blob over the per-blob limit → too-large with the limit in the detail; nothing stored', async () => {
    const before = s.storage.usedBytes
    const body = randomBytes(MAX_BLOB + 1)
    const res = await call(a, s, 'put', [], body)
    assert.equal(res.path, 'client-error/too-large')
    assert.match(res.detail, new RegExp(`${MAX_BLOB} bytes per blob`))
    assert.equal((await call(a, s, 'get', [hex(body)])).path, 'client-error/not-found')
    assert.equal(s.storage.usedBytes, before)
    // exactly the limit is fine
    const exact = randomBytes(MAX_BLOB)
    assert.equal(await put(a, s, exact), hex(exact))
    await assertAccounting(s)
  })

  it('a body over the node body limit (4 MiB) → too-large; the node keeps serving', async () => {
    const res = await call(a, s, 'put', [], new Uint8Array(4 * 1024 * 1024 + 1))
    assert.equal(res.path, 'client-error/too-large')
    assert.match(res.detail, /split/)
    const body = randomBytes(100)
    assert.equal(await put(a, s, body), hex(body))
  })

  it('delete by a peer that did not store the blob → access-denied; the blob is kept', async () => {
    const body = randomBytes(2000)
    const id = await put(a, s, body)
    const used = s.storage.usedBytes
    const res = await call(c, s, 'delete', [id])
    assert.equal(res.path, 'request-declined/access-denied')
    const got = await call(a, s, 'get', [id])
    assert.equal(got.path, 'ok')
    assert.ok(Buffer.from(got.body).equals(body))
    assert.equal(s.storage.usedBytes, used)
  })

  it('delete by one of two owners keeps the blob for the other; the last delete erases it', async () => {
    const body = randomBytes(3000)
    const id = await put(a, s, body)
    const used = s.storage.usedBytes
    assert.equal(await put(c, s, body), id)
    assert.equal(s.storage.usedBytes, used, 'a second owner uses no more capacity')
    assert.equal(parse(await call(a, s, 'stat', [id])).owners, 2)

    const first = await call(a, s, 'delete', [id])
    assert.equal(first.path, 'ok')
    assert.deepEqual(parse(first), { id, erased: false })
    assert.equal(s.storage.usedBytes, used)
    const still = await call(c, s, 'get', [id])
    assert.equal(still.path, 'ok')
    assert.ok(Buffer.from(still.body).equals(body))
    assert.equal(parse(await call(c, s, 'stat', [id])).owners, 1)
    assert.equal((await call(a, s, 'delete', [id])).path, 'request-declined/access-denied', 'a dropped claim cannot delete again')

    const last = await call(c, s, 'delete', [id])
    assert.deepEqual(parse(last), { id, erased: true })
    assert.equal(s.storage.usedBytes, used - 3000)
    assert.equal((await call(c, s, 'get', [id])).path, 'client-error/not-found')
    assert.equal((await call(c, s, 'stat', [id])).path, 'client-error/not-found')
    await assertAccounting(s)
  })

  it('the same blob put by many callers at once is stored once and counted once', async () => {
    const body = randomBytes(20_000)
    const used = s.storage.usedBytes
    const clients = [a, c, await startNode(), await startNode()]
    try {
      const results = await Promise.all(clients.flatMap(client => Array.from({ length: 10 }, async () => call(client, s, 'put', [], body))))
      for (const res of results) {
        assert.equal(res.path, 'ok', res.detail)
        assert.equal(parse(res).id, hex(body))
      }
      assert.equal(s.storage.usedBytes, used + 20_000)
      assert.equal(parse(await call(a, s, 'stat', [hex(body)])).owners, clients.length)
      await assertAccounting(s)
    } finally {
      await clients[2].destroy()
      await clients[3].destroy()
    }
  })

  it('storage.info reports capacity, used, free and the blob limit', async () => {
    const res = await call(a, s, 'info')
    assert.equal(res.path, 'ok')
    const info = parse(res)
    assert.equal(info.service, 'storage')
    assert.equal(info.capacity, 1024 * 1024)
    assert.equal(info.used, s.storage.usedBytes)
    assert.equal(info.free, 1024 * 1024 - s.storage.usedBytes)
    assert.equal(info.maxBlobSize, MAX_BLOB)
  })

  it('a corrupted stored blob is never served (server-error), is uncounted, and a new put repairs it', async () => {
    const body = randomBytes(4000)
    const id = await put(a, s, body)
    const used = s.storage.usedBytes
    // one byte flipped in the piece file on disk
    const file = join(s.dataDir, PIECES_DIR, id.slice(0, 2), id)
    const damaged = await readFile(file)
    damaged[1234] ^= 0xff
    await writeFile(file, damaged)

    for (const args of [[id], [id, '0', '10'], [id, '1234', '1']]) {
      const res = await call(a, s, 'get', args)
      assert.equal(res.path, 'server-error', `get ${args.join(' ')}`)
      assert.equal(res.body.byteLength, 0)
      assert.match(res.detail, /damaged/)
    }
    // the damaged piece was dropped: its bytes no longer count, its file is gone
    assert.equal(s.storage.usedBytes, used - 4000)
    await assert.rejects(stat(file), { code: 'ENOENT' })
    // anyone holding the true bytes can restore them, without a second charge on capacity
    assert.equal(await put(c, s, body), id)
    assert.equal(s.storage.usedBytes, used)
    const got = await call(a, s, 'get', [id])
    assert.equal(got.path, 'ok')
    assert.ok(Buffer.from(got.body).equals(body))
  })

  it('unreadable metadata → server-error, and the node keeps serving', async () => {
    const id = await put(a, s, randomBytes(500))
    await s.store.sub('storage').put(`m/${id}`, new TextEncoder().encode('{not json'))
    assert.equal((await call(a, s, 'stat', [id])).path, 'server-error')
    assert.equal((await call(a, s, 'delete', [id])).path, 'server-error')
    await s.store.sub('storage').put(`m/${id}`, new TextEncoder().encode(JSON.stringify({ size: 500, created: Date.now(), owners: 1 })))
    assert.equal((await call(a, s, 'stat', [id])).path, 'ok')
  })
})

describe('storage capacity limit', () => {
  const CAPACITY = 10_000
  let s: TestNode
  let clients: TestNode[]
  let storedBlob: Uint8Array | undefined

  before(async () => {
    s = await startNode({ storage: { capacity: CAPACITY, maxBlobSize: 4096 } })
    clients = [await startNode(), await startNode(), await startNode()]
  })

  after(async () => {
    for (const n of clients ?? []) { await n.destroy() }
    await s?.destroy()
  })

  it('different blobs racing for the last bytes never exceed the capacity', async () => {
    const blobs = Array.from({ length: 30 }, () => randomBytes(1000))
    const results = await Promise.all(blobs.map(async (b, i) => call(clients[i % clients.length], s, 'put', [], b)))
    const ok = results.filter(r => r.ok)
    const full = results.filter(r => r.path === 'server-error/insufficient-storage')
    assert.equal(ok.length, 10)
    assert.equal(full.length, 20)
    for (const r of full) { assert.match(r.detail, /bytes free/) }
    assert.equal(s.storage.usedBytes, CAPACITY)
    await assertAccounting(s)
    // exactly the stored ones are there
    for (const [i, r] of results.entries()) {
      const got = await call(clients[0], s, 'get', [hex(blobs[i])])
      assert.equal(got.path, r.ok ? 'ok' : 'client-error/not-found')
      if (r.ok) { storedBlob = blobs[i] }
    }
  })

  it('insufficient-storage says how much is free; re-putting stored content still works', async () => {
    const res = await call(clients[0], s, 'put', [], new Uint8Array([42]))
    assert.equal(res.status, Status.INSUFFICIENT_STORAGE)
    assert.equal(res.detail, 'this node has 0 bytes free; the blob needs 1')
    const info = parse(await call(clients[0], s, 'info'))
    assert.equal(info.free, 0)
    assert.ok(storedBlob != null)
    for (const client of clients) { assert.equal(await put(client, s, storedBlob), hex(storedBlob), 'stored content needs no free space') }
    assert.equal(parse(await call(clients[0], s, 'stat', [hex(storedBlob)])).owners, clients.length)
    assert.equal(s.storage.usedBytes, CAPACITY)
  })

  it('the prechecks the payment gate runs first: a put that cannot fit, a blob not here, a range past its end', async () => {
    assert.ok(storedBlob != null)
    const id = hex(storedBlob)
    const def = s.storage.definition()
    const stateOf = (args: string[], body: Uint8Array = new Uint8Array()): any => ({ service: 'storage', method: '', args, body, peer: s.libp2p.peerId, credentials: [], signal: AbortSignal.timeout(5000) })
    // full: new content does not fit, stored content does
    assert.equal((await def.methods.put.precheck?.(stateOf([], new Uint8Array([42]))))?.status, Status.INSUFFICIENT_STORAGE)
    assert.equal(await def.methods.put.precheck?.(stateOf([], storedBlob)), undefined)
    assert.equal((await def.methods.put.precheck?.(stateOf([], new Uint8Array(4097))))?.status, Status.TOO_LARGE)
    await assert.rejects(async () => def.methods.put.precheck?.(stateOf(['extra'], storedBlob)), (e: any) => e.status === Status.BAD_REQUEST)
    // get: the blob must be here, the offset within it
    assert.equal((await def.methods.get.precheck?.(stateOf([hex(randomBytes(8))])))?.status, Status.NOT_FOUND)
    assert.equal((await def.methods.get.precheck?.(stateOf([id, String(storedBlob.byteLength + 1)])))?.status, Status.BAD_REQUEST)
    assert.equal(await def.methods.get.precheck?.(stateOf([id, String(storedBlob.byteLength)])), undefined)
    assert.equal(await def.methods.get.precheck?.(stateOf([id])), undefined)
  })

  it('blobs of mixed sizes racing: the stored sizes add up to the counter, never above capacity', async () => {
    // free everything this test's clients own
    for (const client of clients) {
      for await (const [key] of s.store.sub('storage').iterator({ gte: 'o/', lt: 'o0' })) {
        const [, id, owner] = key.split('/')
        if (owner === client.openCloudId) { assert.equal((await call(client, s, 'delete', [id])).path, 'ok') }
      }
    }
    assert.equal(s.storage.usedBytes, 0)
    const sizes = Array.from({ length: 24 }, (_, i) => 300 + ((i * 977) % 3500))
    const blobs = sizes.map(n => randomBytes(n))
    const results = await Promise.all(blobs.map(async (b, i) => call(clients[i % clients.length], s, 'put', [], b)))
    let stored = 0
    for (const [i, r] of results.entries()) {
      if (r.ok) { stored += sizes[i] } else { assert.equal(r.path, 'server-error/insufficient-storage') }
    }
    assert.ok(stored > 0 && stored <= CAPACITY)
    assert.equal(s.storage.usedBytes, stored)
    await assertAccounting(s)
  })
})

describe('storage across a restart', () => {
  let dir: string
  let client: TestNode

  before(async () => {
    dir = await tempDir()
    client = await startNode()
  })

  after(async () => {
    await client?.destroy()
    await rm(dir, { recursive: true, force: true })
  })

  it('blobs, owners and the usage counter survive a stop and a new node on the same data dir', async () => {
    const s1 = await startNode({ dataDir: dir, storage: { capacity: 100_000 } })
    const keep = randomBytes(7000)
    const drop = randomBytes(3000)
    const keepId = await put(client, s1, keep)
    const dropId = await put(client, s1, drop)
    assert.equal((await call(client, s1, 'delete', [dropId])).path, 'ok')
    const used = s1.storage.usedBytes
    assert.equal(used, 7000)
    const peerId = s1.peerId.toString()
    await s1.stop()

    const s2 = await startNode({ dataDir: dir, storage: { capacity: 100_000 } })
    try {
      assert.equal(s2.peerId.toString(), peerId)
      assert.equal(s2.storage.usedBytes, used)
      await assertAccounting(s2)
      const got = await call(client, s2, 'get', [keepId])
      assert.equal(got.path, 'ok', got.detail)
      assert.ok(Buffer.from(got.body).equals(keep))
      assert.equal((await call(client, s2, 'get', [dropId])).path, 'client-error/not-found')
      assert.equal(parse(await call(client, s2, 'info')).used, used)
      assert.equal(parse(await call(client, s2, 'stat', [keepId])).yours, true, 'ownership survives')
      assert.deepEqual(parse(await call(client, s2, 'delete', [keepId])), { id: keepId, erased: true })
      assert.equal(s2.storage.usedBytes, 0)
      assert.equal(await put(client, s2, keep), keepId)
    } finally {
      await s2.stop()
    }
  })

  it('a missing or unreadable usage counter is recounted at start', async () => {
    for (const value of ['garbage', '-5', '1e3', '', '{"pieces":1,"bytes":-1}']) {
      const store = new Store(join(dir, DB_DIR))
      await store.open()
      await store.sub('pieces').put('used', new TextEncoder().encode(value))
      await store.close()
      const s = await startNode({ dataDir: dir })
      try {
        assert.equal(s.storage.usedBytes, 7000, `counter ${JSON.stringify(value)}`)
        await assertAccounting(s)
      } finally {
        await s.stop()
      }
    }
    const store = new Store(join(dir, DB_DIR))
    await store.open()
    await store.sub('pieces').del('used')
    await store.close()
    const s = await startNode({ dataDir: dir })
    try {
      assert.equal(s.storage.usedBytes, 7000)
    } finally {
      await s.stop()
    }
  })

  it('puts in flight when the node stops leave every blob whole and counted, or absent', async () => {
    const s1 = await startNode({ dataDir: dir, storage: { capacity: 10_000_000 } })
    const base = s1.storage.usedBytes
    const blobs = Array.from({ length: 8 }, () => randomBytes(256 * 1024))
    const puts = blobs.map(async b => call(client, s1, 'put', [], b))
    // stop as soon as the first put is through: the others are in flight or not yet sent
    await Promise.race(puts.map(async p => p.then(() => {}, () => {})))
    await s1.stop()
    await Promise.allSettled(puts)

    const s2 = await startNode({ dataDir: dir, storage: { capacity: 10_000_000 } })
    try {
      await assertAccounting(s2)
      let stored = 0
      for (const b of blobs) {
        const res = await call(client, s2, 'get', [hex(b)])
        if (res.ok) {
          assert.ok(Buffer.from(res.body).equals(b))
          stored += b.byteLength
        } else {
          assert.equal(res.path, 'client-error/not-found')
        }
      }
      assert.ok(stored >= 256 * 1024)
      assert.equal(s2.storage.usedBytes, base + stored)
    } finally {
      await s2.stop()
    }
  })
})
