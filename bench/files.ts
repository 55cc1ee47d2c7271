/* eslint-disable no-console */
/**
 * Files (docs/files.md) against one raw libp2p stream carrying the same user
 * bytes and against Helia (IPFS), MiB/s of user bytes:
 *
 * `files.put` (segments, AES-256-GCM, Reed–Solomon k/n, one piece per seller
 * over OpenCloud `storage.put`) and `files.get` (k pieces per segment,
 * decode, decrypt) through the buyer node (this process) across seller nodes
 * that each run in their own process (bench/files-child.ts); raw put/get on
 * the `/bench/sink` and `/bench/source` streams of one more node in its own
 * process (bench/server-child.ts), same run, same buyer; Helia: the
 * two-process fetch benchmark of `../shared/baselines/helia-bench`
 * (`node bench.mjs MiB`), run after ours when its dependencies are installed.
 *
 * The user bytes are an AES-CTR keystream generated while they are sent (the
 * buyer never holds the file), checked by SHA-256 on the way back. Printed:
 * rates, ratios against the targets, CPU seconds per GiB of user bytes of the
 * buyer (and of the sellers together) and the buyer's peak RSS.
 * Usage: `node dist/bench/files.js --help`.
 */
import { fork, spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { loadavg } from 'node:os'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { byteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_CONCURRENCY, parseRedundancy } from '../src/files/index.js'
import { filesForNode } from '../src/files/node.js'
import { MiB, flags, fmt, machine, parsePositive, parseSize, runBenchmark, startBenchNode } from './common.js'
import { SINK_PROTOCOL, SOURCE_PROTOCOL, launchServer, readU64, u64 } from './server.js'
import type { BenchNode } from './common.js'
import type { Stream } from '@libp2p/interface'
import type { ChildProcess } from 'node:child_process'

const DEFAULT_HELIA = fileURLToPath(new URL('../../../shared/baselines/helia-bench', import.meta.url))

const USAGE = `usage: node dist/bench/files.js [options]
  --size BYTES        user bytes per transfer, e.g. 32M, 256M (default 256M)
  --sellers N         seller nodes, one process each (default 8)
  --redundancy K/N    (default 4/8)
  --helia DIR         the helia-bench baseline with its node_modules installed
                      (default ../shared/baselines/helia-bench next to the repo)
  --no-helia          skip the Helia run
  --concurrency N     segments in flight at put and get (default: the node's files, 2)
  --json              also print the results as one JSON line`

const opts = flags({
  size: { type: 'string' },
  sellers: { type: 'string' },
  redundancy: { type: 'string' },
  helia: { type: 'string' },
  'no-helia': { type: 'boolean' },
  concurrency: { type: 'string' },
  json: { type: 'boolean' }
}, USAGE)
const size = parseSize((opts.size as string | undefined) ?? '256M')
const sellerCount = parsePositive('sellers', opts.sellers as string | undefined, 8, true)
const redundancy = parseRedundancy((opts.redundancy as string | undefined) ?? '4/8')
const concurrency = opts.concurrency == null ? undefined : parsePositive('concurrency', opts.concurrency as string, DEFAULT_CONCURRENCY, true)
const heliaDir = resolve((opts.helia as string | undefined) ?? DEFAULT_HELIA)

const CHUNK = MiB

async function send (stream: Stream, data: Uint8Array): Promise<void> {
  if (!stream.send(data)) { await stream.onDrain({ signal: AbortSignal.timeout(60_000) }) }
}

/** The user bytes: `size` bytes of an AES-256-CTR keystream, made as they are read */
async function * userBytes (): AsyncGenerator<Uint8Array> {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 0))
  const zeros = new Uint8Array(CHUNK)
  for (let at = 0; at < size; at += CHUNK) {
    const c = cipher.update(zeros.subarray(0, Math.min(CHUNK, size - at)))
    yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength)
  }
}

async function digestOf (source: AsyncIterable<Uint8Array>): Promise<{ hex: string, bytes: number }> {
  const h = createHash('sha256')
  let bytes = 0
  for await (const c of source) { h.update(c); bytes += c.byteLength }
  return { hex: h.digest('hex'), bytes }
}

interface Usage { cpuMs: number, maxRssMiB: number }

/** ms and CPU ms of this process for `fn` */
async function measure (fn: () => Promise<void>): Promise<{ ms: number, cpu: number }> {
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  await fn()
  const c = process.cpuUsage(c0)
  return { ms: performance.now() - t0, cpu: (c.user + c.system) / 1000 }
}

interface Seller { child: ChildProcess, addr: string, exited: Promise<void> }

async function forkSeller (bootstrap: string): Promise<Seller> {
  const child = fork(fileURLToPath(new URL('./files-child.js', import.meta.url)), [bootstrap], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const exited = new Promise<void>(resolve => { child.once('exit', () => { resolve() }) })
  const addr = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('seller child did not start within 30 s')) }, 30_000)
    child.once('message', (m: any) => { clearTimeout(timer); resolve(String(m.addr)) })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`seller child exited with code ${code}`)) })
  }).catch((err) => {
    child.kill()
    throw err
  })
  return { child, addr, exited }
}

async function usageOf (s: Seller): Promise<Usage> {
  return new Promise<Usage>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('seller child did not report its usage in 10 s')) }, 10_000)
    s.child.once('message', (m: any) => { clearTimeout(timer); resolve(m as Usage) })
    s.child.send({ cmd: 'usage' })
  })
}

async function stopSeller (s: Seller): Promise<void> {
  if (s.child.exitCode == null && s.child.connected) { s.child.send({ cmd: 'stop' }) }
  const timer = setTimeout(() => { s.child.kill() }, 10_000)
  await s.exited
  clearTimeout(timer)
}

/** Sellers' CPU ms together between two snapshots */
function sellerCpu (a: Usage[], b: Usage[]): number {
  return b.reduce((sum, u, i) => sum + u.cpuMs - a[i].cpuMs, 0)
}

/** Runs the helia-bench baseline on the same number of MiB; its fetch rate, or why not */
async function runHelia (mib: number): Promise<{ mibs?: number, note: string }> {
  if (opts['no-helia'] === true) { return { note: 'skipped (--no-helia)' } }
  if (!existsSync(resolve(heliaDir, 'bench.mjs')) || !existsSync(resolve(heliaDir, 'node_modules'))) {
    return { note: `skipped (no helia-bench with node_modules at ${heliaDir}: copy it, run npm ci there, pass --helia DIR)` }
  }
  const child = spawn(process.execPath, ['bench.mjs', String(mib), '--timeout', '900'], { cwd: heliaDir, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (s: string) => { out += s })
  const code = await new Promise<number | null>(resolve => { child.once('exit', resolve) })
  const line = out.trim().split('\n').reverse().find(l => l.startsWith('{'))
  try {
    const r = JSON.parse(line ?? '')
    if (typeof r.fetch_mib_s === 'number') { return { mibs: r.fetch_mib_s, note: `helia-bench bench.mjs ${mib} (in-memory blockstore, two processes), fetcher CPU ${fmt(r.fetcher_cpu_s, 1)} s, add ${fmt(r.add_s, 2)} s` } }
    return { note: `failed (exit ${code}): ${String(r.error ?? line)}` }
  } catch {
    return { note: `failed (exit ${code}, no JSON line)` }
  }
}

async function main (): Promise<void> {
  const mib = size / MiB
  console.log(`# files put/get vs a raw libp2p stream vs Helia: ${fmt(mib, 1)} MiB, ${redundancy.k}/${redundancy.n} over ${sellerCount} sellers (one process each), buyer in this process, ${concurrency ?? DEFAULT_CONCURRENCY} segments in flight`)
  console.log(`# ${machine()}; load average ${loadavg().map(l => fmt(l, 2)).join(' ')}`)
  const server = await launchServer(true)
  const sellers: Seller[] = []
  let buyer: BenchNode | undefined
  let helia: { mibs?: number, note: string } = { note: 'not run' }
  try {
    // forked one at a time: nine nodes starting together on two cores time out their bootstrap
    for (let i = 0; i < sellerCount; i++) { sellers.push(await forkSeller(server.addr)) }
    buyer = await startBenchNode({ bootstrap: [server.addr], sell: [] })
    const b = buyer.node
    // the node's own files, or the same wiring with another number of segments in flight
    // (keyed by a throwaway key: the bench needs no restore)
    const files = concurrency == null ? b.files : filesForNode(b, await generateKeyPair('Ed25519'), { concurrency })
    const deadline = Date.now() + 90_000
    while ((await b.rankSellers('storage', { method: 'put', timeout: 2_000 })).length < redundancy.n) {
      if (Date.now() > deadline) { throw new Error(`fewer than ${redundancy.n} sellers found in 90 s`) }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    const expected = await digestOf(userBytes())

    const sink = await b.libp2p.dialProtocol(multiaddr(server.addr), SINK_PROTOCOL)
    const sinkBytes = byteStream(sink, { maxBufferSize: 64 })
    const source = await b.libp2p.dialProtocol(multiaddr(server.addr), SOURCE_PROTOCOL)
    const sourceBytes = byteStream(source, { maxBufferSize: 64 * MiB })
    const rawPut = await measure(async () => {
      await send(sink, u64(size))
      for await (const c of userBytes()) { await send(sink, c) }
      const ack = await sinkBytes.read({ bytes: 8, signal: AbortSignal.timeout(300_000) })
      if (readU64(ack.subarray()) !== size) { throw new Error('sink short') }
    })
    const rawGet = await measure(async () => {
      await send(source, u64(size))
      // hashed like the files get below, so both pay the same check
      const h = createHash('sha256')
      let got = 0
      while (got < size) {
        const c = await sourceBytes.read({ signal: AbortSignal.timeout(300_000) })
        if (c == null) { break }
        h.update(c.subarray())
        got += c.byteLength
      }
      h.digest()
      if (got !== size) { throw new Error('source short') }
    })
    await Promise.all([sink, source].map(async s => s.close({ signal: AbortSignal.timeout(2_000) }).catch(() => {})))
    const rssBefore = process.resourceUsage().maxRSS / 1024

    const s0 = await Promise.all(sellers.map(usageOf))
    let id = ''
    const put = await measure(async () => { id = (await files.put(userBytes(), { redundancy })).id })
    const s1 = await Promise.all(sellers.map(usageOf))
    let got = { hex: '', bytes: 0 }
    const get = await measure(async () => { got = await digestOf(files.get(id)) })
    const s2 = await Promise.all(sellers.map(usageOf))
    if (got.hex !== expected.hex || got.bytes !== size) { throw new Error('files.get returned other bytes') }
    await files.remove(id)
    const rss = process.resourceUsage().maxRSS / 1024
    const sellerRss = Math.max(...s2.map(u => u.maxRssMiB))

    await Promise.all(sellers.splice(0).map(stopSeller))
    await buyer.destroy()
    buyer = undefined
    await server.stop()
    helia = await runHelia(Math.round(mib))

    const mibs = (ms: number): number => mib / (ms / 1000)
    const perGiB = (cpuMs: number): number => (cpuMs / 1000) * (1024 / mib)
    const rows: Array<[string, number, number, number | undefined]> = [
      ['raw put', mibs(rawPut.ms), perGiB(rawPut.cpu), undefined],
      ['raw get', mibs(rawGet.ms), perGiB(rawGet.cpu), undefined],
      ['files put', mibs(put.ms), perGiB(put.cpu), perGiB(sellerCpu(s0, s1))],
      ['files get', mibs(get.ms), perGiB(get.cpu), perGiB(sellerCpu(s1, s2))]
    ]
    console.log('transfer     MiB/s  buyer CPU s/GiB  sellers CPU s/GiB')
    for (const [name, rate, cpu, sc] of rows) {
      console.log(`${name.padEnd(10)}  ${fmt(rate, 1).padStart(6)}  ${fmt(cpu, 1).padStart(15)}  ${(sc == null ? '-' : fmt(sc, 1)).padStart(17)}`)
    }
    console.log(`helia get   ${helia.mibs == null ? '     -' : fmt(helia.mibs, 1).padStart(6)}  ${helia.note}`)
    const putRatio = mibs(put.ms) / mibs(rawPut.ms)
    const getRatio = mibs(get.ms) / mibs(rawGet.ms)
    const vsHelia = helia.mibs == null ? undefined : mibs(get.ms) / helia.mibs
    const ok = (b: boolean): string => b ? 'met' : 'NOT met'
    console.log(`put ${fmt(putRatio, 2)}× raw (target ≥ 0.25×: ${ok(putRatio >= 0.25)}; ${redundancy.n / redundancy.k}× the user bytes go out)`)
    console.log(`get ${fmt(getRatio, 2)}× raw (target ≥ 0.5×: ${ok(getRatio >= 0.5)}), ${vsHelia == null ? 'Helia not measured' : `${fmt(vsHelia, 2)}× Helia (target > 1×: ${ok(vsHelia > 1)})`}`)
    console.log(`buyer peak RSS ${fmt(rss, 0)} MiB (${fmt(rssBefore, 0)} MiB after the raw transfers); largest seller peak RSS ${fmt(sellerRss, 0)} MiB`)
    console.log(`# load average at the end ${loadavg().map(l => fmt(l, 2)).join(' ')}`)
    if (opts.json === true) {
      console.log(JSON.stringify({
        size,
        k: redundancy.k,
        n: redundancy.n,
        sellers: sellerCount,
        concurrency: concurrency ?? DEFAULT_CONCURRENCY,
        rawPut: mibs(rawPut.ms),
        rawGet: mibs(rawGet.ms),
        put: mibs(put.ms),
        get: mibs(get.ms),
        helia: helia.mibs ?? null,
        putRatio,
        getRatio,
        getVsHelia: vsHelia ?? null,
        buyerCpuPerGiB: { put: perGiB(put.cpu), get: perGiB(get.cpu) },
        sellersCpuPerGiB: { put: perGiB(sellerCpu(s0, s1)), get: perGiB(sellerCpu(s1, s2)) },
        buyerPeakRssMiB: rss,
        loadavg: loadavg()
      }))
    }
  } finally {
    await buyer?.destroy()
    await Promise.all(sellers.map(stopSeller))
    await server.stop().catch(() => {})
  }
}

runBenchmark(main)
