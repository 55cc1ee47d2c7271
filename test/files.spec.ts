import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeShards, encodeShards } from '../src/files/erasure.js'
import { CATALOG_COPIES, DecryptionFailedError, Files, NoCatalogError, OpenCloudPieces, TooFewSellersError, chooseRedundancy, pLoss, parseRedundancy, segmentsOf } from '../src/files/index.js'
import { PIECES_DIR } from '../src/node/data-dir.js'
import { restoreMnemonic } from '../src/payments/wallet/mnemonic.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'

const MiB = 1024 * 1024

async function * chunks (data: Uint8Array, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += size) { yield data.subarray(i, i + size) }
}

async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of it) { parts.push(c) }
  return Buffer.concat(parts)
}

describe('files: redundancy', () => {
  it('P(loss) matches the binomial tail (4/8 ~4e-4, 10/30 ~6e-15 at p = 10%)', () => {
    assert.ok(Math.abs(pLoss(4, 8, 0.1) - 4.3e-4) < 0.1e-4, String(pLoss(4, 8, 0.1)))
    const big = pLoss(10, 30, 0.1)
    assert.ok(big > 1e-15 && big < 1e-14, String(big))
    // 1/2 is mirroring: lost only when both are
    assert.ok(Math.abs(pLoss(1, 2, 0.1) - 0.01) < 1e-12)
  })

  it('default k/n follows the sellers found; too few sellers are refused unless less is asked for', () => {
    assert.deepEqual(chooseRedundancy(40), { k: 10, n: 30 })
    assert.deepEqual(chooseRedundancy(9), { k: 4, n: 8 })
    assert.deepEqual(chooseRedundancy(6), { k: 3, n: 6 })
    assert.deepEqual(chooseRedundancy(4), { k: 2, n: 4 })
    assert.throws(() => chooseRedundancy(3), (e: any) => e instanceof TooFewSellersError && /found 3 distinct sellers.*at least 4.*--redundancy/.test(e.message))
    assert.deepEqual(chooseRedundancy(3, { k: 1, n: 3 }), { k: 1, n: 3 })
    assert.throws(() => chooseRedundancy(5, parseRedundancy('4/8')), /4\/8 needs 8 distinct sellers; found 5/)
    assert.throws(() => parseRedundancy('4/4'), RangeError)
    assert.throws(() => parseRedundancy('x'), RangeError)
  })

  it('erasure: every k of n shards rebuild the segment, many times in one process', () => {
    const data = randomBytes(100_000)
    const k = 2
    const total = 6
    const shards = encodeShards(data, k, total).map(s => s.slice())
    for (let a = 0; a < total; a++) {
      for (let b = a + 1; b < total; b++) {
        const some: Array<Uint8Array | undefined> = new Array(total).fill(undefined)
        some[a] = shards[a]
        some[b] = shards[b]
        assert.ok(Buffer.from(decodeShards(some, k, total, shards[0].byteLength, data.byteLength)).equals(data), `shards ${a} and ${b}`)
      }
    }
  })

  it('segmentsOf cuts any chunking into exact segments, and one empty segment for nothing', async () => {
    const data = randomBytes(1000)
    const segs = []
    for await (const s of segmentsOf(chunks(data, 7), 300)) { segs.push(Buffer.from(s)) }
    assert.deepEqual(segs.map(s => s.byteLength), [300, 300, 300, 100])
    assert.ok(Buffer.concat(segs).equals(data))
    const empty = []
    for await (const s of segmentsOf(chunks(new Uint8Array(0)), 300)) { empty.push(s) }
    assert.deepEqual(empty.map(s => s.byteLength), [0])
  })
})

describe('files: put and get across real sellers', function () {
  this.timeout(120_000)
  const sellers: TestNode[] = []
  let buyer: TestNode
  const data = randomBytes(5 * MiB + 12345)
  let id = ''

  before(async () => {
    // sellers that serve what they hold without checking it: the buyer must
    sellers.push(await startNode({ storage: { verifyOnGet: false } }))
    for (let i = 1; i < 6; i++) { sellers.push(await startNode({ bootstrap: [sellers[0].addr], storage: { verifyOnGet: false } })) }
    buyer = await startNode({ bootstrap: [sellers[0].addr], sell: [] })
    const found = await eventually(async () => (await buyer.rankSellers('storage', { method: 'put', timeout: 2_000 })).length >= 6, 60_000, 500)
    assert.ok(found, 'the buyer found the 6 sellers')
  })

  after(async () => {
    await buyer?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
  })

  it('too few sellers for the redundancy asked: refused with a clear message, nothing stored', async () => {
    const used = sellers.map(s => s.storage.usedBytes)
    const err = await buyer.files.put(chunks(randomBytes(1000)), { redundancy: { k: 4, n: 8 }, lookupTimeout: 3_000 }).catch(e => e)
    assert.ok(err instanceof TooFewSellersError, String(err))
    assert.match(err.message, /4\/8 needs 8 distinct sellers; found 6/)
    assert.deepEqual(sellers.map(s => s.storage.usedBytes), used)
    assert.equal((await buyer.files.list()).length, 0)
  })

  it('put 2/4 of 5 MiB: n distinct sellers per segment, long-tail extras deleted; get gives the same bytes', async () => {
    let progress = 0
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 }, name: 'data.bin', onProgress: (b) => { progress = b } })
    id = res.id
    assert.equal(res.size, data.byteLength)
    assert.equal(res.k, 2)
    assert.equal(res.n, 4)
    assert.equal(progress, data.byteLength)
    // 2 MiB − 16 bytes of plaintext per segment
    assert.equal(res.segments, Math.ceil(data.byteLength / (2 * MiB - 16)))
    const status = await buyer.files.status(id, { check: true })
    assert.equal(status.state, 'complete')
    for (const s of status.segments) {
      assert.equal(s.pieces, 4)
      assert.equal(s.alive, 4)
    }
    // each segment's pieces are on 4 distinct sellers, and only those keep them (cancelled extras are deleted)
    const segs = await collectSegments(buyer, id)
    for (const s of segs) { assert.equal(new Set(s.pieces.map(p => p.peer)).size, 4) }
    const held = async (): Promise<number> => (await Promise.all(sellers.map(async s => (await s.storage.count()).blobs))).reduce((a, b) => a + b, 0)
    // and the file catalog (backup.ts): one piece on CATALOG_COPIES sellers
    assert.ok(await eventually(async () => await held() === 4 * res.segments + CATALOG_COPIES, 10_000), `sellers hold ${await held()} pieces, not ${4 * res.segments} + ${CATALOG_COPIES}`)
    const m = await buyer.files.manifest(id)
    assert.equal(m.name, 'data.bin')
    const list = await buyer.files.list()
    assert.deepEqual(list.map(f => f.id), [id])
    const got = await collect(buyer.files.get(id))
    assert.ok(got.equals(data), 'identical bytes')
  })

  it('a corrupted piece is detected on get (hash), and another piece used', async () => {
    const seg = await collectSegments(buyer, id)
    const first = seg[0]
    // corrupt segment 0 at two sellers (n − k) and make them the buyer's favourites, so they are asked first
    const victims = first.pieces.slice(0, 2)
    for (const p of victims) {
      const node = sellers.find(s => s.peerId.toString() === p.peer) as TestNode
      // one byte flipped in the seller's piece file (docs/storage.md)
      const file = join(node.dataDir, PIECES_DIR, p.id.slice(0, 2), p.id)
      const bytes = await readFile(file)
      bytes[10] ^= 0xff
      await writeFile(file, bytes)
      for (let i = 0; i < 50; i++) { await buyer.files.records.record(p.peer, true, 1, 1) }
    }
    const before = await Promise.all(victims.map(async p => (await buyer.files.records.get(p.peer)).fail))
    const got = await collect(buyer.files.get(id))
    assert.ok(got.equals(data), 'identical bytes despite the corrupt pieces')
    const after = await Promise.all(victims.map(async p => (await buyer.files.records.get(p.peer)).fail))
    assert.deepEqual(after, before.map(f => f + 1), 'each corrupt piece was fetched, rejected and recorded against its seller')
  })

  it('a wrong seed cannot decrypt (authentication fails); the right seed can', async () => {
    const withSeed = (seed: Uint8Array): Files => new Files({
      db: buyer.store.sub('files'),
      seed: async () => seed,
      pieces: new OpenCloudPieces(async (t, c, o) => buyer.opencloud.call(t, c, { signal: o.signal })),
      findSellers: async () => []
    })
    const err = await collect(withSeed(randomBytes(64)).get(id)).catch(e => e)
    assert.ok(err instanceof DecryptionFailedError, String(err))
    // the node's own seed (no wallet: its key) still opens it through a fresh instance
    const { sha256 } = await import('../src/protocols/opencloud/api/signing.js')
    const { readKey } = await import('../src/node/index.js')
    const key = await readKey(buyer.dataDir)
    assert.ok(key != null)
    const own = sha256(Buffer.concat([Buffer.from('decloud files: node key\n'), key.raw]))
    assert.ok((await collect(withSeed(own).get(id))).equals(data))
  })

  it('a recovery (as at start) while a put runs leaves that upload alone', async () => {
    let rec: ReturnType<Files['recover']> | undefined
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 }, onProgress: () => { rec ??= buyer.files.recover() } })
    assert.ok(rec != null)
    const r = await rec
    assert.deepEqual([r.files, r.deleted], [[], 0])
    assert.ok((await collect(buyer.files.get(res.id))).equals(data))
    await buyer.files.remove(res.id)
  })

  it('3/6 over the 6 sellers: with 3 sellers stopped get returns identical bytes; rm deletes the rest', async () => {
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 3, n: 6 } })
    assert.equal(res.sellers.length, 6)
    const stopped = sellers.slice(0, 3)
    await Promise.all(stopped.map(async s => s.stop()))
    const got = await collect(buyer.files.get(res.id))
    assert.ok(got.equals(data), 'identical bytes from the 3 sellers left')
    const status = await buyer.files.status(res.id, { check: true })
    for (const s of status.segments) { assert.equal(s.alive, 3) }
    const live = sellers.slice(3)
    const usedBefore = live.reduce((a, s) => a + s.storage.usedBytes, 0)
    const rm = await buyer.files.remove(res.id)
    assert.equal(rm.deleted, 3 * res.segments)
    assert.equal(rm.failed, 3 * res.segments)
    assert.ok(live.reduce((a, s) => a + s.storage.usedBytes, 0) < usedBefore)
    await assert.rejects(buyer.files.manifest(res.id), /no file/)
  })
})

async function collectSegments (buyer: TestNode, id: string): Promise<Array<{ pieces: Array<{ id: string, peer: string, shard: number }> }>> {
  const { ManifestStore } = await import('../src/files/manifest.js')
  const out = []
  for await (const s of new ManifestStore(buyer.store.sub('files')).segments(id)) { out.push(s) }
  return out
}

describe('files: paid through the wallet, keyed by its seed', function () {
  this.timeout(180_000)
  let chain: Awaited<ReturnType<typeof startRegtest>>
  const sellers: TestNode[] = []
  let buyer: TestNode

  before(async () => {
    chain = await startRegtest()
    // 1 sat per 64 KiB stored for 30 days (the default lease): 16 sat for a 1 MiB piece
    const paid = { payments: { chain, fulfilment: false as const }, storage: { pricing: { put: { rate: 1n, per: 65_536n * 2_592_000n } } } }
    sellers.push(await startNode(paid))
    for (let i = 1; i < 4; i++) { sellers.push(await startNode({ ...paid, bootstrap: [sellers[0].addr] })) }
    buyer = await startNode({ payments: { chain, fulfilment: false }, bootstrap: [sellers[0].addr], sell: [] })
    // the sellers' prices have reached the buyer's price book
    const priced = await eventually(async () => (await buyer.rankSellers('storage', { method: 'put', usage: BigInt(MiB), timeout: 2_000 })).filter(c => c.price != null).length >= 4, 60_000, 500)
    assert.ok(priced, 'the buyer knows the 4 sellers and their prices')
  })

  after(async () => {
    await buyer?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
    await chain?.close()
  })

  it('each piece is paid (cost > 0), and the wallet seed words alone open the file', async () => {
    const data = randomBytes(3 * MiB)
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 } })
    // segment 0: 4 pieces of 1 MiB at 16 sat; segment 1 (1 MiB + 32 bytes sealed): 4 of 0.5 MiB at 8 sat
    assert.ok(res.cost >= 4n * 16n + 4n * 8n, `cost ${res.cost}`)
    assert.ok(res.cost < 1_000n, `cost ${res.cost}`)
    assert.ok((await collect(buyer.files.get(res.id))).equals(data))
    const { mnemonicToSeed } = await import('@scure/bip39')
    const words = buyer.payments?.wallet.exportMnemonic()
    assert.ok(words != null)
    const restored = new Files({
      db: buyer.store.sub('files'),
      seed: async () => mnemonicToSeed(words),
      pieces: new OpenCloudPieces(async (t, c, o) => buyer.pay(t, c, { pay: { kind: 'auto' }, max: o.max, signal: o.signal })),
      findSellers: async () => []
    })
    assert.ok((await collect(restored.get(res.id))).equals(data))
  })

  it('restore: a fresh data dir with the same seed words finds the file again; another seed finds nothing', async () => {
    const data = randomBytes(2 * MiB + 5)
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 }, name: 'kept.bin' })
    const words = buyer.payments?.wallet.exportMnemonic()
    assert.ok(words != null)
    const dir = await tempDir()
    await restoreMnemonic(dir, words)
    const fresh = await startNode({ dataDir: dir, payments: { chain, fulfilment: false }, bootstrap: [sellers[0].addr], sell: [] })
    const other = await startNode({ payments: { chain, fulfilment: false }, bootstrap: [sellers[0].addr], sell: [] })
    // the restored wallet's identity address is bound at the sellers to the old node's OpenCloud ID (first
    // come wins), so this node's paid calls are refused; gets are free here, and go out unpaid
    const { mnemonicToSeed } = await import('@scure/bip39')
    assert.equal(fresh.payments?.wallet.exportMnemonic(), words)
    const files = new Files({
      db: fresh.store.sub('files'),
      seed: async () => mnemonicToSeed(words),
      pieces: new OpenCloudPieces(async (t, c, o) => fresh.opencloud.call(t, c, { signal: o.signal })),
      routing: fresh.libp2p.contentRouting,
      findSellers: async () => []
    })
    try {
      assert.deepEqual(await files.list(), [])
      assert.ok(await eventually(async () => fresh.libp2p.getPeers().length >= 4 && other.libp2p.getPeers().length >= 4, 30_000, 200), 'both joined the network')
      // another seed: no catalog of its own, and it cannot read this one
      await assert.rejects(other.files.restore(), (e: any) => e instanceof NoCatalogError)
      assert.deepEqual(await other.files.list(), [])
      const r = await files.restore()
      assert.ok(r.restored.includes(res.id), JSON.stringify(r))
      const listed = (await files.list()).find(f => f.id === res.id)
      assert.deepEqual([listed?.name, listed?.size, listed?.state], ['kept.bin', data.byteLength, 'complete'])
      assert.ok((await collect(files.get(res.id))).equals(data), 'identical bytes through the restored node')
    } finally {
      await Promise.all([fresh.stop(), other.destroy()])
    }
  })

  it('--max-price below every seller\'s price: refused, nothing paid', async () => {
    const err = await buyer.files.put(chunks(randomBytes(1000)), { redundancy: { k: 2, n: 4 }, maxPrice: 1n, lookupTimeout: 2_000 }).catch(e => e)
    assert.ok(err instanceof TooFewSellersError, String(err))
    assert.match(err.message, /found 0/)
  })
})
