/* eslint-disable no-console */
/**
 * Bulk transfer between two real libp2p nodes over 127.0.0.1 TCP (noise +
 * yamux), MB/s (10^6 bytes per second):
 *
 * - raw put: all the bytes on a `/bench/sink/1.0.0` stream, acknowledged at the end
 * - raw get: all the bytes back on a `/bench/source/1.0.0` stream (both raw
 * streams stay open for the whole run, like OpenCloud's pooled streams)
 * - storage: OpenCloud `storage.put` / `storage.get` (LevelDB, so put includes
 * a disk write), one call per piece (the maximum body size by default)
 * - memstore: the same calls to an in-memory service that only hashes and
 * keeps the body: the protocol's cost without the database's
 *
 * Each round uses fresh bytes (so content addressing never finds a blob
 * already stored) and the order of the transfers alternates between rounds.
 * Targets: memstore put ≥ 0.8×, get ≥ 0.85× raw; storage put ≥ 0.6×, get ≥
 * 0.8× raw. Usage:
 * `node dist/bench/storage.js --help`.
 */
import { randomBytes } from 'node:crypto'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_BODY_SIZE } from '../src/protocols/opencloud/api/constants.js'
import { sha256 } from '../src/protocols/opencloud/api/signing.js'
import { parsePutAnswer } from '../src/services/storage/client.js'
import { MiB, flags, fmt, machine, median, parsePositive, parseSize, runBenchmark, spread, startBenchNode, table, time } from './common.js'
import { SINK_PROTOCOL, SOURCE_PROTOCOL, launchServer, readU64, u64 } from './server.js'
import type { BenchNode } from './common.js'
import type { Stream } from '@libp2p/interface'
import type { ByteStream } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'

const USAGE = `usage: node dist/bench/storage.js [options]
  --size BYTES      bytes moved per transfer, e.g. 64M, 256M (default 64M)
  --piece BYTES     bytes per OpenCloud call (default ${MAX_BODY_SIZE / MiB}M, the maximum body size)
  --rounds N        rounds of every transfer (default 5)
  --parallel N      OpenCloud calls in flight at once (default 1: one piece after the other)
  --two-process     run the server node in a child process
  --json            also print the results as one JSON line`

/** Targets of issue 13 §4, as ratios to the raw transfer of the same round */
const TARGETS = { 'storage put': 0.6, 'storage get': 0.8, 'memstore put': 0.8, 'memstore get': 0.85 } as const

const opts = flags({
  size: { type: 'string' },
  piece: { type: 'string' },
  rounds: { type: 'string' },
  parallel: { type: 'string' },
  'two-process': { type: 'boolean' },
  json: { type: 'boolean' }
}, USAGE)

const size = parseSize((opts.size as string | undefined) ?? '64M')
const piece = parseSize((opts.piece as string | undefined) ?? String(MAX_BODY_SIZE))
const rounds = parsePositive('rounds', opts.rounds as string | undefined, 5, true)
const parallel = parsePositive('parallel', opts.parallel as string | undefined, 1, true)
const twoProcess = opts['two-process'] === true
if (piece > MAX_BODY_SIZE) {
  console.error(`--piece must be at most the maximum body size, ${MAX_BODY_SIZE} bytes`)
  process.exit(2)
}
if (size > 1024 * MiB) {
  console.error('--size must be at most 1G')
  process.exit(2)
}

type Kind = 'raw put' | 'raw get' | 'storage put' | 'storage get' | 'memstore put' | 'memstore get'
const KINDS: Kind[] = ['raw put', 'raw get', 'storage put', 'storage get', 'memstore put', 'memstore get']

const dec = new TextDecoder()

/** Runs `fn` over `items` with at most `limit` in flight */
async function eachLimit<T> (items: T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      await fn(items[i], i)
    }
  }))
}

/** Pieces of `data`, each stamped with fresh random bytes so their ids are new */
function freshPieces (data: Uint8Array): { pieces: Uint8Array[], ids: string[] } {
  const pieces: Uint8Array[] = []
  for (let off = 0; off < data.byteLength; off += piece) {
    const p = data.subarray(off, Math.min(off + piece, data.byteLength))
    p.set(randomBytes(Math.min(32, p.byteLength)))
    pieces.push(p)
  }
  return { pieces, ids: pieces.map(p => Buffer.from(sha256(p)).toString('hex')) }
}

/** Long-lived raw streams, reused by every raw transfer (warmed up like OpenCloud's pooled streams) */
interface RawStreams {
  sink: Stream
  sinkBytes: ByteStream<Stream>
  source: Stream
  sourceBytes: ByteStream<Stream>
}

async function openRaw (client: BenchNode, target: Multiaddr): Promise<RawStreams> {
  const sink = await client.node.libp2p.dialProtocol(target, SINK_PROTOCOL)
  const source = await client.node.libp2p.dialProtocol(target, SOURCE_PROTOCOL)
  return {
    sink,
    sinkBytes: byteStream(sink, { maxBufferSize: 64 }),
    source,
    // yamux lets at most one window (16 MiB) be in flight
    sourceBytes: byteStream(source, { maxBufferSize: 64 * MiB })
  }
}

async function closeRaw (raw: RawStreams): Promise<void> {
  await Promise.all([raw.sink, raw.source].map(async s => s.close({ signal: AbortSignal.timeout(2_000) }).catch(() => { s.abort(new Error('benchmark done')) })))
}

async function send (stream: Stream, data: Uint8Array): Promise<void> {
  if (!stream.send(data)) { await stream.onDrain({ signal: AbortSignal.timeout(30_000) }) }
}

async function rawPut (raw: RawStreams, data: Uint8Array): Promise<void> {
  await send(raw.sink, u64(data.byteLength))
  for (let off = 0; off < data.byteLength; off += piece) {
    await send(raw.sink, data.subarray(off, Math.min(off + piece, data.byteLength)))
  }
  const ack = await raw.sinkBytes.read({ bytes: 8, signal: AbortSignal.timeout(60_000) })
  const n = readU64(ack.subarray())
  if (n !== data.byteLength) { throw new Error(`sink received ${n} of ${data.byteLength} bytes`) }
}

async function rawGet (raw: RawStreams, n: number): Promise<void> {
  await send(raw.source, u64(n))
  const signal = AbortSignal.timeout(60_000)
  let got = 0
  while (got < n) {
    const chunk = await raw.sourceBytes.read({ signal })
    if (chunk == null) { break }
    got += chunk.byteLength
  }
  if (got !== n) { throw new Error(`source sent ${got} of ${n} bytes`) }
}

async function main (): Promise<void> {
  console.log(`# bulk transfer MB/s: OpenCloud storage/memstore put+get vs a raw libp2p stream, ${fmt(size / MiB, 1)} MiB in ${fmt(piece / MiB, 2)} MiB pieces, ${parallel} call(s) in flight`)
  console.log(`# ${machine()}`)
  const server = await launchServer(twoProcess)
  const client = await startBenchNode()
  let raw: RawStreams | undefined
  try {
    console.log(`# layout: ${server.layout}; ${rounds} rounds`)
    const target = multiaddr(server.addr)
    const oc = client.node.opencloud
    const data = randomBytes(size)

    const put = async (service: string, pieces: Uint8Array[], ids: string[]): Promise<void> => {
      await eachLimit(pieces, parallel, async (p, i) => {
        const answer = await oc.callOk(target, { service, method: 'put', body: p })
        // storage answers with its lease (id, Merkle root, signed receipt); memstore with the id
        const id = service === 'storage' ? parsePutAnswer(answer).id : dec.decode(answer)
        if (id !== ids[i]) { throw new Error(`${service}.put answered id ${id}, expected ${ids[i]}`) }
      })
    }
    const get = async (service: string, ids: string[], out: Uint8Array[]): Promise<void> => {
      await eachLimit(ids, parallel, async (id, i) => {
        out[i] = await oc.callOk(target, { service, method: 'get', args: [id] })
      })
    }
    const check = (service: string, pieces: Uint8Array[], out: Uint8Array[]): void => {
      pieces.forEach((p, i) => {
        if (!Buffer.from(p).equals(out[i] ?? new Uint8Array())) { throw new Error(`${service}.get returned different bytes for piece ${i}`) }
      })
    }
    const cleanup = async (ids: string[]): Promise<void> => {
      for (const id of new Set(ids)) { await oc.callOk(target, { service: 'storage', method: 'delete', args: [id] }) }
      await oc.callOk(target, { service: 'memstore', method: 'clear' })
    }

    raw = await openRaw(client, target)
    const rawStreams = raw
    // warm-up: a few pieces through every path (connection, streams, JIT)
    {
      const warm = data.subarray(0, Math.min(size, 4 * piece))
      const { pieces, ids } = freshPieces(warm)
      await rawPut(rawStreams, warm)
      await rawGet(rawStreams, warm.byteLength)
      for (const service of ['storage', 'memstore']) {
        const out: Uint8Array[] = []
        await put(service, pieces, ids)
        await get(service, ids, out)
        check(service, pieces, out)
      }
      await cleanup(ids)
    }

    /** MB/s per round */
    const results = new Map<Kind, number[]>(KINDS.map(k => [k, []]))
    /** CPU ms of this process per MiB moved, per round */
    const cpu = new Map<Kind, number[]>(KINDS.map(k => [k, []]))
    for (let round = 0; round < rounds; round++) {
      const { pieces, ids } = freshPieces(data)
      const steps: Array<[Kind, () => Promise<void>]> = []
      const storageOut: Uint8Array[] = []
      const memOut: Uint8Array[] = []
      steps.push(['raw put', async () => { await rawPut(rawStreams, data) }])
      steps.push(['raw get', async () => { await rawGet(rawStreams, size) }])
      steps.push(['storage put', async () => { await put('storage', pieces, ids) }])
      steps.push(['storage get', async () => { await get('storage', ids, storageOut) }])
      steps.push(['memstore put', async () => { await put('memstore', pieces, ids) }])
      steps.push(['memstore get', async () => { await get('memstore', ids, memOut) }])
      // odd rounds: OpenCloud first, raw last (each get still follows its put)
      const ordered = round % 2 === 0 ? steps : [...steps.slice(2), ...steps.slice(0, 2)]
      const line: string[] = []
      for (const [kind, fn] of ordered) {
        const c = process.cpuUsage()
        const ms = await time(fn)
        const used = process.cpuUsage(c)
        const mbs = size / 1e6 / (ms / 1000)
        results.get(kind)?.push(mbs)
        cpu.get(kind)?.push((used.user + used.system) / 1000 / (size / MiB))
        line.push(`${kind} ${fmt(mbs, 1)}`)
      }
      check('storage', pieces, storageOut)
      check('memstore', pieces, memOut)
      console.log(`  round ${round + 1}: ${line.join(', ')} MB/s`)
      await cleanup(ids)
    }

    const med = (k: Kind): number => median(results.get(k) ?? [])
    const medCpu = (k: Kind): number => median(cpu.get(k) ?? [])
    const rawOf = (k: Kind): Kind => k.endsWith('put') ? 'raw put' : 'raw get'
    /** ratios to the raw transfer of the same round (paired: both saw the same load) */
    const paired = (k: Kind): number[] => (results.get(k) ?? []).map((x, i) => x / (results.get(rawOf(k)) ?? [])[i])
    console.log()
    const rows = KINDS.map(k => {
      const xs = results.get(k) ?? []
      const raw = k.startsWith('raw')
      return [
        k,
        ...xs.map(x => fmt(x, 1)),
        fmt(med(k), 1),
        `${fmt(spread(xs))}%`,
        raw ? '' : fmt(median(paired(k)), 2),
        raw ? '' : `${fmt(Math.min(...paired(k)), 2)}–${fmt(Math.max(...paired(k)), 2)}`,
        fmt(medCpu(k), 1),
        raw ? '' : fmt(medCpu(rawOf(k)) / medCpu(k), 2)
      ]
    })
    console.log(table(['MB/s', ...Array.from({ length: rounds }, (_, i) => `round ${i + 1}`), 'median', 'spread', 'vs raw', 'range', 'CPU ms/MiB', 'vs raw by CPU'], rows))
    console.log(`(vs raw: median of the per-round ratios to the raw transfer of the same round; CPU: this process${twoProcess ? ', i.e. the client side only' : ', i.e. client and server together'})`)
    console.log()
    const verdict = (k: Kind, target: number): string => {
      const v = median(paired(k))
      return `${k} / ${rawOf(k)} = ${fmt(v, 2)} (by CPU time ${fmt(medCpu(rawOf(k)) / medCpu(k), 2)}), target >= ${target}: ${v >= target ? 'met' : 'NOT met'}`
    }
    for (const [k, target] of Object.entries(TARGETS)) { console.log(verdict(k as Kind, target)) }
    if (opts.json === true) {
      console.log(JSON.stringify({
        bench: 'storage',
        node: process.version,
        date: new Date().toISOString(),
        layout: server.layout,
        size,
        piece,
        parallel,
        results: Object.fromEntries(KINDS.map(k => [k, { runs: results.get(k), median: med(k), cpuMsPerMiB: cpu.get(k), ratio: k.startsWith('raw') ? undefined : median(paired(k)) }]))
      }))
    }
  } finally {
    if (raw != null) { await closeRaw(raw) }
    await client.destroy()
    await server.stop()
  }
}

runBenchmark(main)
