/* eslint-disable no-console */
/**
 * The piece store against the layout before it (blobs as LevelDB values),
 * on the same disk, in one process:
 *
 * - write amplification under churn: `--size` bytes of pieces written, a
 * random half deleted, as many bytes written again (new content), then
 * everything deleted. Bytes written to disk are this process's
 * `write_bytes - cancelled_write_bytes` from /proc/self/io (every thread,
 * LevelDB's compactions included; the file system's journal, written by the
 * kernel, is not); amplification = disk bytes ÷ piece bytes written.
 * - put and get throughput of whole pieces (MiB/s, 2^20 bytes per second),
 * during the first write and reading back what is stored after the churn
 * - disk space after the churn and after deleting everything
 *
 * `leveldb` writes what the storage service wrote before the piece store:
 * `b/<id>` bytes, `m/<id>` metadata and the `used` counter in one batch, and
 * a delete in one batch. `pieces` is `DiskPieceStore` as a node runs it
 * (fsync of each file, its folder and the metadata), `pieces-nosync`
 * without the fsyncs. Usage: `node dist/bench/piece-store.js --help`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DiskPieceStore } from '../src/storage/index.js'
import { Store } from '../src/store/index.js'
import { MiB, flags, fmt, machine, parseSize, runBenchmark, table } from './common.js'

const USAGE = `usage: node dist/bench/piece-store.js [options]
  --size BYTES      piece bytes written before the churn, e.g. 256M, 2G (default 2G)
  --piece BYTES     bytes per piece (default 4M)
  --dir DIR         where the stores are made (default the OS temp dir)
  --only NAMES      comma-separated: leveldb,pieces,pieces-nosync (default all three)
  --json            also print the results as one JSON line`

const opts = flags({
  size: { type: 'string' },
  piece: { type: 'string' },
  dir: { type: 'string' },
  only: { type: 'string' },
  json: { type: 'boolean' }
}, USAGE)

const size = parseSize((opts.size as string | undefined) ?? '2G')
const pieceSize = parseSize((opts.piece as string | undefined) ?? '4M')
const baseDir = (opts.dir as string | undefined) ?? tmpdir()
const BACKENDS = ['leveldb', 'pieces', 'pieces-nosync'] as const
type Backend = typeof BACKENDS[number]
const only = ((opts.only as string | undefined) ?? BACKENDS.join(',')).split(',') as Backend[]
for (const b of only) {
  if (!BACKENDS.includes(b)) {
    console.error(`unknown backend ${b}; ${USAGE}`)
    process.exit(2)
  }
}
if (pieceSize < 1 || pieceSize > 64 * MiB || size < pieceSize) {
  console.error('--piece must be 1 byte to 64M and at most --size')
  process.exit(2)
}

/** bytes this process has had written to disk so far */
function diskWritten (): number {
  const io = readFileSync('/proc/self/io', 'utf8')
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN)
  return field('write_bytes') - field('cancelled_write_bytes')
}

/** bytes the files under `dir` take on disk */
async function diskUsage (dir: string): Promise<number> {
  let bytes = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) { bytes += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ blocks: 0 }))).blocks * 512 }
  }
  return bytes
}

/** waits until this process has written nothing for a second (LevelDB compacts in the background) */
async function settle (): Promise<void> {
  let last = diskWritten()
  for (let i = 0; i < 120; i++) {
    await new Promise(resolve => setTimeout(resolve, 1000))
    const now = diskWritten()
    if (now === last) { return }
    last = now
  }
}

interface Target {
  put(id: string, bytes: Uint8Array): Promise<void>
  get(id: string): Promise<Uint8Array | undefined>
  delete(id: string, size: number): Promise<void>
  close(): Promise<void>
}

const enc = new TextEncoder()

async function open (backend: Backend, dir: string): Promise<Target> {
  const store = new Store(join(dir, 'db'))
  await store.open()
  if (backend === 'leveldb') {
    const db = store.sub('storage')
    let used = 0
    return {
      async put (id, bytes) {
        used += bytes.byteLength
        await db.batch([
          { type: 'put', key: `b/${id}`, value: bytes },
          { type: 'put', key: `m/${id}`, value: enc.encode(JSON.stringify({ size: bytes.byteLength, created: Date.now(), owners: 1 })) },
          { type: 'put', key: `o/${id}/bench`, value: new Uint8Array(0) },
          { type: 'put', key: 'used', value: enc.encode(String(used)) }
        ])
      },
      async get (id) {
        const bytes = await db.get(`b/${id}`)
        if (bytes != null && createHash('sha256').update(bytes).digest('hex') !== id) { throw new Error('damaged') }
        return bytes
      },
      async delete (id, n) {
        used -= n
        await db.batch([{ type: 'del', key: `b/${id}` }, { type: 'del', key: `m/${id}` }, { type: 'del', key: `o/${id}/bench` }, { type: 'put', key: 'used', value: enc.encode(String(used)) }])
      },
      async close () { await store.close() }
    }
  }
  const pieces = new DiskPieceStore({ dir: join(dir, 'pieces'), db: store.sub('pieces'), capacity: Number.MAX_SAFE_INTEGER, sync: backend === 'pieces' })
  await pieces.open()
  return {
    async put (id, bytes) { await pieces.put(id, bytes, { trustedId: true }) },
    async get (id) { return pieces.get(id) },
    async delete (id) { await pieces.delete(id) },
    async close () { await pieces.close(); await store.close() }
  }
}

interface Result {
  backend: Backend
  written: number
  disk: number
  amplification: number
  putMiBs: number
  getMiBs: number
  sizeAfterChurn: number
  sizeAfterDeleteAll: number
}

async function run (backend: Backend): Promise<Result> {
  const dir = await mkdtemp(join(baseDir, `decloud-bench-${backend}-`))
  try {
    const target = await open(backend, dir)
    const held: string[] = []
    let written = 0
    let putMs = 0
    const writeSome = async (bytes: number): Promise<void> => {
      for (let done = 0; done < bytes; done += pieceSize) {
        const piece = randomBytes(Math.min(pieceSize, bytes - done))
        const id = createHash('sha256').update(piece).digest('hex')
        const t = performance.now()
        await target.put(id, piece)
        putMs += performance.now() - t
        held.push(id)
        written += piece.byteLength
      }
    }
    const disk0 = diskWritten()
    await writeSome(size)
    const putMiBs = size / MiB / (putMs / 1000)
    // a random half deleted, as many bytes written again
    for (let i = held.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [held[i], held[j]] = [held[j], held[i]]
    }
    const gone = held.splice(0, held.length >> 1)
    for (const id of gone) { await target.delete(id, pieceSize) }
    await writeSome(gone.length * pieceSize)
    await settle()
    const disk = diskWritten() - disk0
    const sizeAfterChurn = await diskUsage(dir)
    let read = 0
    const t = performance.now()
    for (const id of held) {
      const bytes = await target.get(id)
      if (bytes == null) { throw new Error(`piece ${id} missing`) }
      read += bytes.byteLength
    }
    const getMiBs = read / MiB / ((performance.now() - t) / 1000)
    for (const id of held) { await target.delete(id, pieceSize) }
    await settle()
    const sizeAfterDeleteAll = await diskUsage(dir)
    await target.close()
    return { backend, written, disk, amplification: disk / written, putMiBs, getMiBs, sizeAfterChurn, sizeAfterDeleteAll }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

runBenchmark(async () => {
  console.log(machine())
  console.log(`churn: ${fmt(size / MiB)} MiB in ${fmt(pieceSize / MiB, 2)} MiB pieces, half deleted, rewritten, then all deleted; disk under ${baseDir}`)
  const results: Result[] = []
  for (const backend of only) {
    const r = await run(backend)
    results.push(r)
  }
  console.log(table(
    ['store', 'piece MiB written', 'disk MiB written', 'write amplification', 'put MiB/s', 'get MiB/s', 'MiB on disk after churn', 'MiB on disk, all deleted'],
    results.map(r => [r.backend, fmt(r.written / MiB), fmt(r.disk / MiB), fmt(r.amplification, 2), fmt(r.putMiBs, 1), fmt(r.getMiBs, 1), fmt(r.sizeAfterChurn / MiB, 1), fmt(r.sizeAfterDeleteAll / MiB, 1)])
  ))
  if (opts.json === true) { console.log(JSON.stringify(results)) }
})
