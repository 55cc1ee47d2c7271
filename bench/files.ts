/* eslint-disable no-console */
/**
 * Files (docs/files.md) against one raw libp2p stream carrying the same user
 * bytes, MiB/s: `files.put` (segments, AES-256-GCM, Reed–Solomon k/n, one
 * piece per seller over OpenCloud `storage.put`) and `files.get` (k pieces
 * per segment, decode, decrypt) across local seller nodes, all in this
 * process; raw put/get on the `/bench/sink` and `/bench/source` streams of
 * one more node. Also CPU seconds per GiB of user bytes and peak RSS.
 *
 * A stub: the full comparison (256 MiB, 8 sellers in their own
 * processes, Helia, targets get ≥ 0.5× raw and put ≥ 0.25× raw) comes with
 * the later rounds. Usage: `node dist/bench/files.js --help`.
 */
import { randomBytes } from 'node:crypto'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { parseRedundancy } from '../src/files/index.js'
import { MiB, flags, fmt, machine, parsePositive, parseSize, runBenchmark, startBenchNode } from './common.js'
import { SINK_PROTOCOL, SOURCE_PROTOCOL, launchServer, readU64, u64 } from './server.js'
import type { BenchNode } from './common.js'
import type { Stream } from '@libp2p/interface'

const USAGE = `usage: node dist/bench/files.js [options]
  --size BYTES        user bytes per transfer, e.g. 32M, 256M (default 32M)
  --sellers N         seller nodes (default 8)
  --redundancy K/N    (default 4/8)
  --json              also print the results as one JSON line`

const opts = flags({ size: { type: 'string' }, sellers: { type: 'string' }, redundancy: { type: 'string' }, json: { type: 'boolean' } }, USAGE)
const size = parseSize((opts.size as string | undefined) ?? '32M')
const sellerCount = parsePositive('sellers', opts.sellers as string | undefined, 8, true)
const redundancy = parseRedundancy((opts.redundancy as string | undefined) ?? '4/8')

async function send (stream: Stream, data: Uint8Array): Promise<void> {
  if (!stream.send(data)) { await stream.onDrain({ signal: AbortSignal.timeout(30_000) }) }
}

async function * chunks (data: Uint8Array, chunk = 256 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += chunk) { yield data.subarray(i, i + chunk) }
}

/** ms and CPU ms of `fn` */
async function measure (fn: () => Promise<void>): Promise<{ ms: number, cpu: number }> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await fn()
  const c = process.cpuUsage(c0)
  return { ms: performance.now() - t0, cpu: (c.user + c.system) / 1000 }
}

async function main (): Promise<void> {
  console.log(`# files put/get vs a raw libp2p stream: ${fmt(size / MiB, 1)} MiB, ${redundancy.k}/${redundancy.n} over ${sellerCount} sellers, one process`)
  console.log(`# ${machine()}`)
  const server = await launchServer(false)
  const sellers: BenchNode[] = []
  let buyer: BenchNode | undefined
  try {
    for (let i = 0; i < sellerCount; i++) { sellers.push(await startBenchNode({ bootstrap: [server.addr] })) }
    buyer = await startBenchNode({ bootstrap: [server.addr], sell: [] })
    const b = buyer.node
    const deadline = Date.now() + 60_000
    while ((await b.rankSellers('storage', { method: 'put', timeout: 2_000 })).length < redundancy.n) {
      if (Date.now() > deadline) { throw new Error(`fewer than ${redundancy.n} sellers found in 60 s`) }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    const data = randomBytes(size)

    const sink = await b.libp2p.dialProtocol(multiaddr(server.addr), SINK_PROTOCOL)
    const sinkBytes = byteStream(sink, { maxBufferSize: 64 })
    const source = await b.libp2p.dialProtocol(multiaddr(server.addr), SOURCE_PROTOCOL)
    const sourceBytes = byteStream(source, { maxBufferSize: 64 * MiB })
    const rawPut = await measure(async () => {
      await send(sink, u64(data.byteLength))
      for await (const c of chunks(data, 4 * MiB)) { await send(sink, c) }
      const ack = await sinkBytes.read({ bytes: 8, signal: AbortSignal.timeout(120_000) })
      if (readU64(ack.subarray()) !== data.byteLength) { throw new Error('sink short') }
    })
    const rawGet = await measure(async () => {
      await send(source, u64(size))
      let got = 0
      while (got < size) {
        const c = await sourceBytes.read({ signal: AbortSignal.timeout(120_000) })
        if (c == null) { break }
        got += c.byteLength
      }
      if (got !== size) { throw new Error('source short') }
    })

    const lookup = await measure(async () => { await b.rankSellers('storage', { method: 'put', timeout: 10_000 }) })
    console.log(`# seller lookup (part of every put): ${fmt(lookup.ms, 0)} ms`)
    let id = ''
    const put = await measure(async () => { id = (await b.files.put(chunks(data), { redundancy })).id })
    let same = true
    const get = await measure(async () => {
      let at = 0
      for await (const c of b.files.get(id)) {
        same &&= Buffer.from(c).equals(data.subarray(at, at + c.byteLength))
        at += c.byteLength
      }
      same &&= at === size
    })
    if (!same) { throw new Error('files.get returned other bytes') }
    await b.files.remove(id)

    const mibs = (ms: number): number => (size / MiB) / (ms / 1000)
    const cpuPerGiB = (cpu: number): number => (cpu / 1000) * (1024 * MiB / size)
    const rows = [
      ['raw put', mibs(rawPut.ms), cpuPerGiB(rawPut.cpu)],
      ['raw get', mibs(rawGet.ms), cpuPerGiB(rawGet.cpu)],
      ['files put', mibs(put.ms), cpuPerGiB(put.cpu)],
      ['files get', mibs(get.ms), cpuPerGiB(get.cpu)]
    ] as const
    console.log('transfer    MiB/s   CPU s/GiB (all nodes: one process)')
    for (const [name, rate, cpu] of rows) { console.log(`${name.padEnd(10)}  ${fmt(rate, 1).padStart(6)}  ${fmt(cpu, 1).padStart(9)}`) }
    const putRatio = mibs(put.ms) / mibs(rawPut.ms)
    const getRatio = mibs(get.ms) / mibs(rawGet.ms)
    const rss = process.resourceUsage().maxRSS / 1024
    console.log(`put ${fmt(putRatio, 2)}× raw (target ≥ 0.25×), get ${fmt(getRatio, 2)}× raw (target ≥ 0.5×); peak RSS ${fmt(rss, 0)} MiB`)
    if (opts.json === true) {
      console.log(JSON.stringify({ size, k: redundancy.k, n: redundancy.n, sellers: sellerCount, rawPut: mibs(rawPut.ms), rawGet: mibs(rawGet.ms), put: mibs(put.ms), get: mibs(get.ms), putRatio, getRatio, peakRssMiB: rss }))
    }
    await Promise.all([sink, source].map(async s => s.close({ signal: AbortSignal.timeout(2_000) }).catch(() => {})))
  } finally {
    await buyer?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
    await server.stop()
  }
}

runBenchmark(main)
