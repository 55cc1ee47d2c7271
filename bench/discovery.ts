/* eslint-disable no-console */
/**
 * Discovery and market benchmark: swarms of N real nodes on 127.0.0.1 (one
 * bootstrap node, 3 storage sellers, the rest buyers), in this process or
 * spread over child processes.
 *
 * Measured per swarm size: formation (time until every routing table has
 * peers, every node has a gossip peer on the market topic and every
 * seller's provider record reached a DHT peer); time to the first seller for
 * a fresh node, from `createDecloudNode()` (one swarm node as bootstrap) to
 * the first seller the DHT lookup yields, and the lookup alone once joined;
 * gossip delivery, from a seller's `market.announce()` until 50 % and 99 %
 * of the other nodes accepted the new price; memory per node (RSS and heap
 * growth divided by the nodes hosted).
 *
 * Run: `npx tsc -p . && node --expose-gc dist/bench/discovery.js [--sizes 10,30] [--procs 0] [--fresh 3] [--rounds 5]`;
 * 100 nodes: `--sizes 100 --procs 4`. It prints numbers; it asserts nothing
 * about speed.
 */
import '../src/polyfill.js'
import { fork } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MARKET_TOPIC } from '../src/market/announcement.js'
import { createDecloudNode } from '../src/node/index.js'
import { exitWhenDone, flags, fmt, machine, median, table } from './common.js'
import type { DecloudNode, DecloudNodeOptions } from '../src/node/index.js'
import type { ChildProcess } from 'node:child_process'

const usage = `usage: node --expose-gc dist/bench/discovery.js [--sizes 10,30] [--procs P] [--fresh F] [--rounds R]
  --sizes   swarm sizes, comma separated (default 10,30; 100 works with --procs 4)
  --procs   child processes hosting the swarm's nodes (default 0: all in this process)
  --fresh   fresh nodes timed per size (default 3)
  --rounds  gossip rounds per size (default 5)`

const DHT = { provideTimeout: 30_000, findTimeout: 15_000, provideRetry: 1_000 }
const SELLERS = 3
const START_BATCH = 10

// ---- a host of nodes: this process, or a child process driven over IPC ----

interface HostStatus { nodes: number, minTable: number, minMarketPeers: number, sellersReached: number, sellers: number }
interface HostMemory { rss: number, heap: number, nodes: number, baseRss: number, baseHeap: number }

class NodeHost {
  readonly nodes: DecloudNode[] = []
  private readonly dirs: string[] = []
  private readonly seen = new Map<string, number>()
  private readonly unwatch: Array<() => void> = []
  private baseRss = 0
  private baseHeap = 0

  async start (count: number, sellers: number, bootstrap: string): Promise<string[]> {
    gc()
    this.baseRss = process.memoryUsage().rss
    this.baseHeap = process.memoryUsage().heapUsed
    const opts = (i: number): DecloudNodeOptions => ({
      bootstrap: [bootstrap],
      sell: i < sellers ? ['storage'] : [],
      dht: DHT,
      storage: i < sellers ? { pricing: { put: { rate: BigInt(1000 + i * 100), per: 1_048_576n } } } : undefined
    })
    for (let b = 0; b < count; b += START_BATCH) {
      const batch = await Promise.all(Array.from({ length: Math.min(START_BATCH, count - b) }, async (_, k) => {
        const dataDir = await mkdtemp(join(tmpdir(), 'decloud-bench-'))
        this.dirs.push(dataDir)
        return createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], ...opts(b + k) })
      }))
      this.nodes.push(...batch)
    }
    return this.nodes.map(n => n.addresses()[0])
  }

  status (): HostStatus {
    const sellers = this.nodes.filter(n => n.selling().includes('storage'))
    return {
      nodes: this.nodes.length,
      minTable: Math.min(...this.nodes.map(n => n.discovery.routingTableSize())),
      minMarketPeers: Math.min(...this.nodes.map(n => n.libp2p.services.pubsub.getSubscribers(MARKET_TOPIC).length)),
      sellersReached: sellers.filter(s => s.discovery.advertised().some(a => a.reached > 0)).length,
      sellers: sellers.length
    }
  }

  /** Records when each node accepts an entry from `peerId` with a sequence number ≥ seq */
  watch (peerId: string, seq: string): void {
    this.clearWatch()
    const target = BigInt(seq)
    for (const n of this.nodes) {
      if (n.peerId.toString() === peerId) { continue }
      const id = n.peerId.toString()
      this.unwatch.push(n.market.onAnnouncement((e) => {
        if (e.peerId === peerId && e.seq >= target && !this.seen.has(id)) { this.seen.set(id, Date.now()) }
      }))
    }
  }

  count (): number {
    return this.seen.size
  }

  collect (): number[] {
    const times = [...this.seen.values()]
    this.clearWatch()
    return times
  }

  private clearWatch (): void {
    for (const u of this.unwatch.splice(0)) { u() }
    this.seen.clear()
  }

  memory (): HostMemory {
    gc()
    const m = process.memoryUsage()
    return { rss: m.rss, heap: m.heapUsed, nodes: this.nodes.length, baseRss: this.baseRss, baseHeap: this.baseHeap }
  }

  async stop (): Promise<void> {
    this.clearWatch()
    await Promise.allSettled(this.nodes.splice(0).map(async n => n.stop()))
    await Promise.allSettled(this.dirs.splice(0).map(async d => rm(d, { recursive: true, force: true })))
  }
}

function gc (): void {
  (globalThis as { gc?(): void }).gc?.()
}

/** The same operations, on a child process */
class ChildHost {
  private readonly child: ChildProcess
  private nextId = 0
  private readonly waiting = new Map<number, { resolve(v: any): void, reject(e: Error): void }>()

  constructor () {
    this.child = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.child.on('message', (m: { id: number, result?: unknown, error?: string }) => {
      const w = this.waiting.get(m.id)
      if (w == null) { return }
      this.waiting.delete(m.id)
      if (m.error != null) { w.reject(new Error(m.error)) } else { w.resolve(m.result) }
    })
    this.child.on('exit', () => {
      for (const w of this.waiting.values()) { w.reject(new Error('bench child exited')) }
      this.waiting.clear()
    })
  }

  private async ask<T> (op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject })
      this.child.send({ id, op, args })
    })
  }

  async start (count: number, sellers: number, bootstrap: string): Promise<string[]> { return this.ask('start', count, sellers, bootstrap) }
  async status (): Promise<HostStatus> { return this.ask('status') }
  async watch (peerId: string, seq: string): Promise<void> { return this.ask('watch', peerId, seq) }
  async count (): Promise<number> { return this.ask('count') }
  async collect (): Promise<number[]> { return this.ask('collect') }
  async memory (): Promise<HostMemory> { return this.ask('memory') }
  async stop (): Promise<void> {
    await this.ask('stop').catch(() => {})
    this.child.disconnect()
  }
}

type Host = Pick<NodeHost, 'start' | 'watch' | 'stop'> & { status(): HostStatus | Promise<HostStatus>, memory(): HostMemory | Promise<HostMemory>, count(): number | Promise<number>, collect(): number[] | Promise<number[]> }

if (process.argv.includes('--child')) {
  const host = new NodeHost()
  process.on('message', (m: { id: number, op: keyof NodeHost, args: unknown[] }) => {
    void (async () => {
      try {
        const result = await (host[m.op] as (...a: unknown[]) => unknown).apply(host, m.args)
        process.send?.({ id: m.id, result })
        if (m.op === 'stop') { process.disconnect() }
      } catch (err: any) {
        process.send?.({ id: m.id, error: String(err?.message ?? err) })
      }
    })()
  })
} else {
  await main()
}

// ---- the benchmark ----

async function until (fn: () => Promise<boolean>, ms: number): Promise<number> {
  const start = Date.now()
  while (!(await fn())) {
    if (Date.now() - start > ms) { return NaN }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return Date.now() - start
}

interface SizeResult {
  size: number
  formation: number
  firstSeller: number[]
  lookup: number[]
  found: number[]
  gossip50: number[]
  gossip99: number[]
  delivered: number[]
  rssPerNode: number
  heapPerNode: number
}

async function runSize (size: number, procs: number, freshCount: number, rounds: number): Promise<SizeResult> {
  const dirs: string[] = []
  const local: DecloudNode[] = []
  const startLocal = async (options: DecloudNodeOptions): Promise<DecloudNode> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'decloud-bench-'))
    dirs.push(dataDir)
    const n = await createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], dht: DHT, ...options })
    local.push(n)
    return n
  }
  // this process: the bootstrap node and the announcing seller; the hosts: the other size − 2 nodes
  const boot = await startLocal({ sell: [] })
  const announcer = await startLocal({ bootstrap: boot.addresses(), sell: ['storage'], storage: { pricing: { put: { rate: 900n, per: 1_048_576n } } } })
  const hosts: Host[] = procs > 0 ? Array.from({ length: procs }, () => new ChildHost()) : [new NodeHost()]
  const rest = size - 2
  const started = Date.now()
  const shares = hosts.map((_, i) => Math.floor(rest / hosts.length) + (i < rest % hosts.length ? 1 : 0))
  const addrs = (await Promise.all(hosts.map(async (h, i) => h.start(shares[i], i === 0 ? SELLERS - 1 : 0, boot.addresses()[0])))).flat()

  const waited = await until(async () => {
    const st = await Promise.all(hosts.map(async h => h.status()))
    return st.every(s => s.minTable > 0 && s.minMarketPeers > 0 && s.sellersReached === s.sellers) &&
      announcer.discovery.advertised()[0].reached > 0 && boot.discovery.routingTableSize() > 0
  }, 180_000)

  const result: SizeResult = { size, formation: Number.isNaN(waited) ? NaN : Date.now() - started, firstSeller: [], lookup: [], found: [], gossip50: [], gossip99: [], delivered: [], rssPerNode: 0, heapPerNode: 0 }

  // memory, before the fresh nodes come and go
  const mem = await Promise.all(hosts.map(async h => h.memory()))
  const nodesHosted = mem.reduce((a, m) => a + m.nodes, 0)
  result.rssPerNode = mem.reduce((a, m) => a + (m.rss - m.baseRss), 0) / nodesHosted
  result.heapPerNode = mem.reduce((a, m) => a + (m.heap - m.baseHeap), 0) / nodesHosted

  // fresh nodes: time to the first seller
  for (let f = 0; f < freshCount; f++) {
    const via = addrs[Math.floor(Math.random() * addrs.length)]
    const dataDir = await mkdtemp(join(tmpdir(), 'decloud-bench-'))
    dirs.push(dataDir)
    const t0 = performance.now()
    const fresh = await createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [via], sell: [], dht: DHT })
    const lookup = fresh.discovery.findSellersStream('storage', { timeout: 30_000 })
    const found = await lookup.next()
    const first = found.done === true ? NaN : performance.now() - t0
    await lookup.return(undefined)
    result.firstSeller.push(first)
    const t1 = performance.now()
    const all = await fresh.findSellers('storage', { timeout: 15_000, limit: SELLERS })
    result.lookup.push(performance.now() - t1)
    result.found.push(all.length)
    await fresh.stop()
  }

  // gossip: a new price from the announcer, time until 50 % / 99 % of the others have it
  const id = announcer.peerId.toString()
  const others = size - 1
  for (let r = 0; r < rounds; r++) {
    // the next announcement's sequence number is above every one so far
    const seq = announcer.market.book.lastSeqOf(id) + 1n
    await Promise.all(hosts.map(async h => h.watch(id, seq.toString())))
    const seenLocal: number[] = []
    const off = boot.market.onAnnouncement(e => { if (e.peerId === id && e.seq >= seq && seenLocal.length === 0) { seenLocal.push(Date.now()) } })
    const t0 = Date.now()
    await announcer.market.announce()
    await until(async () => seenLocal.length + (await Promise.all(hosts.map(async h => h.count()))).reduce((a, b) => a + b, 0) >= Math.ceil(others * 0.99), 10_000)
    off()
    const times = [...seenLocal, ...(await Promise.all(hosts.map(async h => h.collect()))).flat()].map(t => t - t0).sort((a, b) => a - b)
    result.delivered.push(times.length / others)
    result.gossip50.push(times.length >= Math.ceil(others * 0.5) ? times[Math.ceil(others * 0.5) - 1] : NaN)
    result.gossip99.push(times.length >= Math.ceil(others * 0.99) ? times[Math.ceil(others * 0.99) - 1] : NaN)
    await new Promise(resolve => setTimeout(resolve, 500))
  }

  await Promise.allSettled(hosts.map(async h => h.stop()))
  await Promise.allSettled(local.map(async n => n.stop()))
  await Promise.allSettled(dirs.map(async d => rm(d, { recursive: true, force: true })))
  return result
}

async function main (): Promise<void> {
  const f = flags({ sizes: { type: 'string' }, procs: { type: 'string' }, fresh: { type: 'string' }, rounds: { type: 'string' } }, usage)
  const sizes = String(f.sizes ?? '10,30').split(',').map(Number)
  const procs = Number(f.procs ?? 0)
  const fresh = Number(f.fresh ?? 3)
  const rounds = Number(f.rounds ?? 5)
  if (sizes.some(s => !Number.isInteger(s) || s < 5) || !Number.isInteger(procs) || procs < 0 || !(fresh >= 1) || !(rounds >= 1)) {
    console.error(usage)
    process.exit(2)
  }
  if ((globalThis as { gc?: unknown }).gc == null) { console.error('(run with node --expose-gc for steadier memory figures)') }
  console.log(`discovery and market benchmark · ${machine()}`)
  console.log(`${SELLERS} storage sellers per swarm · ${procs > 0 ? `${procs} child processes host the nodes` : 'one process'}`)
  const results: SizeResult[] = []
  for (const size of sizes) {
    const r = await runSize(size, procs, fresh, rounds)
    results.push(r)
    console.error(`size ${size} done`)
  }
  const ms = (xs: number[]): string => xs.some(Number.isNaN) ? `${fmt(median(xs.filter(x => !Number.isNaN(x))))} (${xs.filter(Number.isNaN).length} missed)` : fmt(median(xs))
  console.log()
  console.log(table(
    ['nodes', 'formation ms', 'fresh → 1st seller ms', 'lookup ms', 'sellers found', 'gossip 50% ms', 'gossip 99% ms', 'delivered', 'RSS/node MiB', 'heap/node MiB'],
    results.map(r => [
      String(r.size),
      fmt(r.formation),
      ms(r.firstSeller),
      ms(r.lookup),
      `${Math.min(...r.found)}–${Math.max(...r.found)}/${SELLERS}`,
      ms(r.gossip50),
      ms(r.gossip99),
      `${fmt(Math.min(...r.delivered) * 100, 0)}%`,
      fmt(r.rssPerNode / 1_048_576, 1),
      fmt(r.heapPerNode / 1_048_576, 1)
    ])
  ))
  console.log('\nmedians over fresh nodes and gossip rounds; "delivered": the worst round\'s share of nodes that had the new price within 10 s')
  exitWhenDone()
}
