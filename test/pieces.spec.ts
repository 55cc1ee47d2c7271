import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { mkdir, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DB_DIR } from '../src/node/data-dir.js'
import { Status } from '../src/protocols/opencloud/index.js'
import { StorageService } from '../src/services/storage/index.js'
import { DiskPieceStore, InsufficientStorageError, MemoryPieceStore, PieceDamagedError } from '../src/storage/index.js'
import { Store } from '../src/store/index.js'
import { startNode, tempDir } from './fixtures.js'
import type { PieceStore } from '../src/storage/index.js'

const hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'pieces-child.js')

/** bytes the files under `dir` take on disk (allocated blocks), and their count */
async function diskUsage (dir: string): Promise<{ files: number, bytes: number }> {
  let files = 0
  let bytes = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) { continue }
    files++
    bytes += (await stat(join(entry.parentPath, entry.name))).blocks * 512
  }
  return { files, bytes }
}

/** every piece listed verifies, and the counters are exactly what is listed */
async function assertExact (pieces: PieceStore): Promise<Map<string, number>> {
  const sizes = new Map<string, number>()
  for await (const id of pieces.ids()) {
    const bytes = await pieces.get(id)
    assert.ok(bytes != null, `listed piece ${id} is readable`)
    assert.equal(hex(bytes), id)
    sizes.set(id, bytes.byteLength)
  }
  const usage = pieces.usage()
  assert.equal(usage.pieces, sizes.size)
  assert.equal(usage.bytes, [...sizes.values()].reduce((a, b) => a + b, 0))
  assert.equal(usage.free, usage.capacity - usage.bytes)
  return sizes
}

interface Opened { pieces: DiskPieceStore, store: Store, close(): Promise<void> }

async function openDisk (dir: string, capacity = 64 * 1024 * 1024): Promise<Opened> {
  const store = new Store(join(dir, 'db'))
  await store.open()
  const pieces = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces'), capacity })
  await pieces.open()
  return { pieces, store, async close () { await pieces.close(); await store.close() } }
}

for (const kind of ['disk', 'memory'] as const) {
  describe(`piece store contract (${kind})`, () => {
    let dir: string
    let opened: Opened | undefined
    let pieces: PieceStore

    beforeEach(async () => {
      dir = await tempDir('decloud-pieces-')
      if (kind === 'disk') {
        opened = await openDisk(dir, 100_000)
        pieces = opened.pieces
      } else {
        pieces = new MemoryPieceStore({ capacity: 100_000 })
        await pieces.open()
      }
    })

    afterEach(async () => {
      await opened?.close()
      opened = undefined
      await rm(dir, { recursive: true, force: true })
    })

    it('put, get, read a range, has, size, ids, delete; usage counts exactly', async () => {
      const a = randomBytes(10_000)
      const b = randomBytes(1)
      const empty = new Uint8Array(0)
      assert.equal(await pieces.put(hex(a), a), true)
      assert.equal(await pieces.put(hex(a), a), false, 'already present')
      assert.equal(await pieces.put(hex(b), b), true)
      assert.equal(await pieces.put(hex(empty), empty), true)
      assert.deepEqual(pieces.usage(), { pieces: 3, bytes: 10_001, capacity: 100_000, free: 89_999 })
      assert.ok(Buffer.from(await pieces.get(hex(a)) ?? []).equals(a))
      assert.equal((await pieces.get(hex(empty)))?.byteLength, 0)
      assert.ok(Buffer.from(await pieces.read(hex(a), 1234, 100) ?? []).equals(a.subarray(1234, 1334)))
      assert.ok(Buffer.from(await pieces.read(hex(a), 9990, 100) ?? []).equals(a.subarray(9990)), 'clipped to the end')
      assert.equal((await pieces.read(hex(a), 10_000, 5))?.byteLength, 0)
      await assert.rejects(pieces.read(hex(a), 10_001, 1), RangeError)
      assert.equal(await pieces.has(hex(a)), true)
      assert.equal(await pieces.size(hex(a)), 10_000)
      const listed: string[] = []
      for await (const id of pieces.ids()) { listed.push(id) }
      assert.deepEqual(listed, [hex(a), hex(b), hex(empty)].sort())
      assert.equal(await pieces.delete(hex(a)), true)
      assert.equal(await pieces.delete(hex(a)), false)
      assert.equal(await pieces.get(hex(a)), undefined)
      assert.equal(await pieces.read(hex(a), 0, 1), undefined)
      assert.equal(await pieces.has(hex(a)), false)
      assert.equal(await pieces.size(hex(a)), undefined)
      assert.deepEqual(pieces.usage(), { pieces: 2, bytes: 1, capacity: 100_000, free: 99_999 })
      await assertExact(pieces)
    })

    it('refuses an id that is not the SHA-256 of the bytes, or not lower-case hex', async () => {
      const a = randomBytes(100)
      await assert.rejects(pieces.put(hex(randomBytes(100)), a), { name: 'InvalidParametersError' })
      await assert.rejects(pieces.put(hex(a).toUpperCase(), a), { name: 'InvalidParametersError' })
      await assert.rejects(pieces.put('../../etc/passwd', a), { name: 'InvalidParametersError' })
      assert.equal(pieces.usage().pieces, 0)
    })

    it('puts racing for the last free bytes never exceed the capacity: InsufficientStorageError', async () => {
      const blobs = Array.from({ length: 30 }, () => randomBytes(10_000))
      const results = await Promise.allSettled(blobs.map(async b => pieces.put(hex(b), b)))
      assert.equal(results.filter(r => r.status === 'fulfilled').length, 10)
      for (const r of results) {
        if (r.status === 'rejected') { assert.ok(r.reason instanceof InsufficientStorageError, String(r.reason)) }
      }
      assert.equal(pieces.usage().bytes, 100_000)
      assert.equal(pieces.usage().free, 0)
      await assertExact(pieces)
    })

    it('the same piece put many times at once is stored and counted once', async () => {
      const a = randomBytes(5000)
      const results = await Promise.all(Array.from({ length: 8 }, async () => pieces.put(hex(a), a)))
      assert.equal(results.filter(r => r).length, 1)
      assert.deepEqual(pieces.usage(), { pieces: 1, bytes: 5000, capacity: 100_000, free: 95_000 })
    })
  })
}

describe('piece store on disk', function () {
  this.timeout(120_000)
  let dir: string

  beforeEach(async () => { dir = await tempDir('decloud-pieces-') })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('a flipped byte or a truncated file is detected, never served, dropped and uncounted', async () => {
    const s = await openDisk(dir)
    try {
      const a = randomBytes(50_000)
      const b = randomBytes(50_000)
      await s.pieces.put(hex(a), a)
      await s.pieces.put(hex(b), b)
      const fileA = s.pieces.path(hex(a))
      const bytes = await readFile(fileA)
      bytes[31_337] ^= 0x01
      await writeFile(fileA, bytes)
      await assert.rejects(s.pieces.get(hex(a)), (err: any) => err instanceof PieceDamagedError && err.id === hex(a))
      assert.equal(await s.pieces.get(hex(a)), undefined, 'dropped')
      await assert.rejects(stat(fileA), { code: 'ENOENT' })
      assert.deepEqual(s.pieces.usage(), { pieces: 1, bytes: 50_000, capacity: 64 * 1024 * 1024, free: 64 * 1024 * 1024 - 50_000 })
      // a range read past what a truncated file holds
      await truncate(s.pieces.path(hex(b)), 10_000)
      assert.ok(Buffer.from(await s.pieces.read(hex(b), 0, 100) ?? []).equals(b.subarray(0, 100)), 'the bytes still there are read (audits check them by proof)')
      await assert.rejects(s.pieces.read(hex(b), 20_000, 100), PieceDamagedError)
      assert.equal(s.pieces.usage().pieces, 0)
      // the true bytes restore it
      assert.equal(await s.pieces.put(hex(a), a), true)
      await assertExact(s.pieces)
    } finally {
      await s.close()
    }
  })

  it('deleting every piece gives the disk back: files and LevelDB shrink to near nothing', async () => {
    const s = await openDisk(dir, 1024 * 1024 * 1024)
    try {
      for (let round = 0; round < 3; round++) {
        const ids: string[] = []
        for (let i = 0; i < 32; i++) {
          const p = randomBytes(512 * 1024)
          await s.pieces.put(hex(p), p)
          ids.push(hex(p))
        }
        const full = await diskUsage(join(dir, 'pieces'))
        assert.equal(full.files, 32)
        assert.ok(full.bytes >= 16 * 1024 * 1024, `${full.bytes} bytes on disk for 16 MiB stored`)
        for (const id of ids) { assert.equal(await s.pieces.delete(id), true) }
        assert.deepEqual(s.pieces.usage(), { pieces: 0, bytes: 0, capacity: 1024 * 1024 * 1024, free: 1024 * 1024 * 1024 })
        assert.deepEqual(await diskUsage(join(dir, 'pieces')), { files: 0, bytes: 0 })
      }
      const db = await diskUsage(join(dir, 'db'))
      assert.ok(db.bytes < 1024 * 1024, `LevelDB holds only metadata: ${db.bytes} bytes after 48 MiB went through`)
    } finally {
      await s.close()
    }
  })

  it('open() removes temp files and settles interrupted puts and deletes, touching nothing else', async () => {
    let s = await openDisk(dir)
    const keep = randomBytes(1000)
    const orphan = randomBytes(2000)
    await s.pieces.put(hex(keep), keep)
    await s.close()
    // what a crash mid-put leaves: a temp file, and a placed file under an intent without metadata
    const store = new Store(join(dir, 'db'))
    await store.open()
    await store.sub('pieces').put(`i/${hex(orphan)}`, new Uint8Array(0))
    await store.close()
    await writeFile(join(dir, 'pieces', 'tmp', `${hex(orphan)}.abc`), orphan.subarray(0, 100))
    await mkdir(join(dir, 'pieces', hex(orphan).slice(0, 2)), { recursive: true })
    await writeFile(join(dir, 'pieces', hex(orphan).slice(0, 2), hex(orphan)), orphan)

    s = await openDisk(dir)
    try {
      assert.deepEqual(await diskUsage(join(dir, 'pieces')), { files: 1, bytes: (await stat(s.pieces.path(hex(keep)))).blocks * 512 })
      assert.equal(await s.pieces.has(hex(orphan)), false)
      assert.deepEqual([...(await assertExact(s.pieces)).keys()], [hex(keep)])
      const intents: string[] = []
      for await (const [key] of s.store.sub('pieces').iterator({ gte: 'i/', lt: 'i0' })) { intents.push(key) }
      assert.deepEqual(intents, [])
    } finally {
      await s.close()
    }
  })

  it('kill -9 at random moments during puts and deletes: every piece whole and counted, or absent', async () => {
    const acked = new Set<string>()
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      let inFlight: string | undefined
      const exited = new Promise<void>(resolve => child.on('exit', () => { resolve() }))
      const ready = new Promise<void>((resolve, reject) => {
        child.on('exit', () => { reject(new Error('child exited before it was ready')) })
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString()
          let nl: number
          while ((nl = out.indexOf('\n')) >= 0) {
            const [what, op, id] = out.slice(0, nl).split(' ')
            out = out.slice(nl + 1)
            if (what === 'ready') { resolve() }
            if (what === 'begin') { inFlight = `${op} ${id}` }
            if (what === 'done') {
              inFlight = undefined
              if (op === 'put') { acked.add(id) } else { acked.delete(id) }
            }
          }
        })
      })
      await ready
      await new Promise(resolve => setTimeout(resolve, randomInt(50, 700)))
      child.kill('SIGKILL')
      await exited

      const s = await openDisk(dir, 1024 * 1024 * 1024)
      try {
        const present = new Set((await assertExact(s.pieces)).keys())
        const [op, id] = inFlight?.split(' ') ?? []
        for (const a of acked) {
          if (op === 'del' && a === id) { continue }
          assert.ok(present.has(a), `acknowledged piece ${a} survived (round ${round})`)
        }
        for (const p of present) {
          assert.ok(acked.has(p) || (op === 'put' && p === id), `piece ${p} was put (round ${round})`)
        }
        // settle the in-flight operation into the bookkeeping for the next round
        if (op === 'put' && present.has(id)) { acked.add(id) }
        if (op === 'del' && !present.has(id)) { acked.delete(id) }
        // no file that is not a counted piece, no temp file
        const files = await diskUsage(join(dir, 'pieces'))
        assert.equal(files.files, present.size, `files on disk = pieces counted (round ${round})`)
      } finally {
        await s.close()
      }
    }
    assert.ok(acked.size > 0, 'the child stored something')
  })
})

describe('storage service over the piece store', function () {
  this.timeout(60_000)

  it('without verifyOnGet a range get reads only its bytes from the piece file', async () => {
    const dir = await tempDir('decloud-range-')
    const store = new Store(join(dir, DB_DIR))
    await store.open()
    const pieces = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces') })
    const service = new StorageService({ db: store.sub('storage'), pieces, verifyOnGet: false })
    try {
      await service.start()
      const body = randomBytes(100_000)
      const id = await service.put(body, 'oc:a')
      // damage outside the range: not read, so not seen (audits check ranges by proof)
      const bytes = await readFile(pieces.path(id))
      bytes[90_000] ^= 0xff
      await writeFile(pieces.path(id), bytes)
      assert.ok(Buffer.from(await service.get(id, 1000, 500)).equals(body.subarray(1000, 1500)))
      assert.ok(Buffer.from(await service.get(id, 99_990)).equals(body.subarray(99_990)))
      await assert.rejects(service.get(id, 100_001), (err: any) => err.status === Status.BAD_REQUEST)
      await assert.rejects(service.get(hex(randomBytes(8))), (err: any) => err.status === Status.NOT_FOUND)
    } finally {
      await service.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a piece stored without its blob metadata (a put cut short) is deleted at the next start', async () => {
    const dir = await tempDir('decloud-pending-')
    const kept = randomBytes(2000)
    const cut = randomBytes(3000)
    let node = await startNode({ dataDir: dir })
    await node.storage.put(kept, 'oc:a')
    await node.stop()
    // what a crash between the piece's put and the metadata batch leaves: the mark and the piece
    const store = new Store(join(dir, DB_DIR))
    await store.open()
    await store.sub('storage').put(`n/${hex(cut)}`, new Uint8Array(0))
    const pieces = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces') })
    await pieces.open()
    await pieces.put(hex(cut), cut)
    await pieces.close()
    await store.close()

    node = await startNode({ dataDir: dir })
    try {
      assert.equal(node.storage.usedBytes, 2000)
      assert.equal(node.storage.pieces, 1)
      assert.equal(await node.storage.pieceStore.has(hex(cut)), false)
      assert.equal(await node.storage.pieceStore.has(hex(kept)), true)
      assert.equal(await node.store.sub('storage').get(`n/${hex(cut)}`), undefined)
    } finally {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('migration of blobs held in LevelDB (the layout before the piece store)', function () {
  this.timeout(60_000)
  const enc = new TextEncoder()

  it('moves every blob into the piece store at first start, keeps owners and counts, drops damaged ones; re-runnable', async () => {
    const dir = await tempDir('decloud-migrate-')
    const big = randomBytes(1024 * 1024)
    const small = randomBytes(3000)
    const shared = randomBytes(5000)
    const bad = randomBytes(700)
    // the layout the storage service wrote before: `b/<id>` bytes, `m/<id>` JSON, `o/<id>/<owner>`, `used` decimal
    const store = new Store(join(dir, DB_DIR))
    await store.open()
    const db = store.sub('storage')
    const created = Date.now() - 60_000
    for (const [blob, owners] of [[big, ['oc:a']], [small, ['oc:a']], [shared, ['oc:a', 'oc:b']], [bad, ['oc:b']]] as const) {
      const id = hex(blob)
      const stored = blob === bad ? Buffer.from(blob).fill(7, 0, 10) : blob
      await db.put(`b/${id}`, stored)
      await db.put(`m/${id}`, enc.encode(JSON.stringify({ size: blob.byteLength, created, owners: owners.length })))
      for (const o of owners) { await db.put(`o/${id}/${o}`, new Uint8Array(0)) }
    }
    await db.put('used', enc.encode(String(big.byteLength + small.byteLength + shared.byteLength + bad.byteLength)))
    // as if an earlier start had moved `small` and died before deleting its value
    const early = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces') })
    await early.open()
    await early.put(hex(small), small)
    await early.close()
    await store.close()

    const good = big.byteLength + small.byteLength + shared.byteLength
    for (let start = 0; start < 2; start++) {
      const node = await startNode({ dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'] })
      try {
        assert.equal(node.storage.usedBytes, good, `start ${start}`)
        for (const blob of [big, small, shared]) {
          assert.ok(Buffer.from(await node.storage.get(hex(blob))).equals(blob))
          assert.equal((await node.storage.meta(hex(blob)))?.created, created, 'metadata kept')
        }
        assert.equal((await node.storage.meta(hex(shared)))?.owners, 2)
        assert.equal(await node.storage.isOwner(hex(shared), 'oc:b'), true)
        await assert.rejects(node.storage.get(hex(bad)), /damaged/)
        const left: string[] = []
        for await (const [key] of node.store.sub('storage').iterator({ gte: 'b/', lt: 'b0' })) { left.push(key) }
        assert.deepEqual(left, [], 'no blob left in LevelDB')
        assert.equal(await node.store.sub('storage').get('used'), undefined)
        assert.deepEqual(await diskUsage(join(dir, 'pieces')).then(u => u.files), 3)
      } finally {
        await node.stop()
      }
    }
    await rm(dir, { recursive: true, force: true })
  })
})
