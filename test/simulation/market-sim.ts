/**
 * A local market simulation: N real decloud nodes in one process on
 * 127.0.0.1, one bootstrap node, storage sellers at different prices (one
 * of them following the market), and buyers that find the sellers through
 * the DHT, pick the cheapest from the gossiped price book, store a blob there
 * and read it back. Prints a summary and stops by itself.
 *
 * Run: `npx tsc -p . && node dist/test/simulation/market-sim.js [--nodes 12] [--sellers 4] [--blob 65536]`
 *
 * Exit code 0 when every buyer stored and read back its blob at the
 * cheapest seller, 1 otherwise. Sellers serve unpaid calls (payments arrive
 * with the payment backends).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { callCheapest } from '../../src/market/select.js'
import { createDecloudNode } from '../../src/node/index.js'
import type { DecloudNode, DecloudNodeOptions } from '../../src/node/index.js'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '12' },
    sellers: { type: 'string', default: '4' },
    blob: { type: 'string', default: '65536' },
    deadline: { type: 'string', default: '60000' }
  }
})
const N = Number(values.nodes)
const SELLERS = Number(values.sellers)
const BLOB = Number(values.blob)
const DEADLINE = Number(values.deadline)
if (!(N >= 3 && SELLERS >= 1 && SELLERS < N - 1 && BLOB > 0)) {
  process.stderr.write('usage: market-sim [--nodes N≥3] [--sellers S<N-1] [--blob BYTES] [--deadline MS]\n')
  process.exit(2)
}

const root = await mkdtemp(join(tmpdir(), 'decloud-sim-'))
const nodes: DecloudNode[] = []
const t0 = Date.now()
const since = (): string => `${((Date.now() - t0) / 1000).toFixed(1)}s`
const log = (s: string): void => { process.stdout.write(`[${since()}] ${s}\n`) }

async function start (name: string, options: DecloudNodeOptions): Promise<DecloudNode> {
  const node = await createDecloudNode({
    dataDir: join(root, name),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    dht: { provideTimeout: 15_000, findTimeout: 5_000, provideRetry: 1_000 },
    ...options
  })
  nodes.push(node)
  return node
}

async function until (what: string, fn: () => boolean | Promise<boolean>, ms = DEADLINE): Promise<number> {
  const start = Date.now()
  while (!(await fn())) {
    if (Date.now() - start > ms) { throw new Error(`timed out waiting for ${what}`) }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return Date.now() - start
}

// fixed prices 2000, 3000, 4000… sat per MiB stored; the last seller follows the market (10 % under the median, floor 1000)
const MiB = 1_048_576n
const rates = Array.from({ length: SELLERS }, (_, i) => BigInt(i + 2) * 1000n)
const unpaid = { payment: () => undefined }
let exitCode = 1
try {
  const boot = await start('boot', { sell: [] })
  log(`bootstrap ${boot.addresses()[0]}`)
  const sellerOptions = (i: number): DecloudNodeOptions => ({
    bootstrap: boot.addresses(),
    sell: ['storage'],
    opencloud: unpaid,
    storage: { pricing: { put: { rate: rates[i], per: MiB }, get: { rate: 1000n, per: MiB } } },
    ...(i === SELLERS - 1 && SELLERS > 2
      ? { market: { strategies: { 'storage.put': { strategy: 'follow-market', undercutPercent: 10, floor: { rate: 1000n, per: MiB } } } } }
      : {})
  })
  const sellers = await Promise.all(Array.from({ length: SELLERS }, async (_, i) => start(`seller-${i}`, sellerOptions(i))))
  const buyers = await Promise.all(Array.from({ length: N - 1 - SELLERS }, async (_, i) => start(`buyer-${i}`, { bootstrap: boot.addresses(), sell: [] })))
  log(`${nodes.length} nodes started (${SELLERS} storage sellers, ${buyers.length} buyers)`)

  const sellerIds = new Set(sellers.map(s => s.peerId.toString()))
  const tables = await until('routing tables', () => nodes.every(n => n.discovery.routingTableSize() > 0))
  log(`every routing table has peers (+${tables} ms)`)
  const priced = await until('prices everywhere', () => buyers.every(b => b.market.book.entries({ service: 'storage', method: 'put' }).filter(e => sellerIds.has(e.peerId)).length === SELLERS))
  log(`every buyer knows every seller's price (+${priced} ms)`)
  const found = await until('sellers in the DHT', async () => {
    const results = await Promise.all(buyers.map(async b => (await b.findSellers('storage', { timeout: 3_000 })).length))
    return results.every(n => n === SELLERS)
  })
  log(`every buyer finds all ${SELLERS} sellers in the DHT (+${found} ms)`)

  const rows: string[][] = []
  let ok = 0
  for (const [i, buyer] of buyers.entries()) {
    const blob = randomBytes(BLOB)
    const ranked = await buyer.rankSellers('storage', { method: 'put', usage: BigInt(BLOB), timeout: 3_000 })
    const started = Date.now()
    const { seller, result } = await callCheapest(buyer.opencloud, ranked, { service: 'storage', method: 'put', body: blob })
    const putMs = Date.now() - started
    const id = new TextDecoder().decode(result.body)
    const back = result.ok ? await buyer.opencloud.call(seller.addresses[0], { service: 'storage', method: 'get', args: [id] }) : undefined
    const same = back?.ok === true && Buffer.compare(Buffer.from(back.body), blob) === 0
    const cheapest = ranked[0].peerId === seller.peerId && ranked.every(c => c.price == null || (seller.price ?? 0n) <= c.price)
    if (result.ok && same && cheapest) { ok++ }
    rows.push([`buyer-${i}`, `seller-${sellers.findIndex(s => s.peerId.toString() === seller.peerId)}`, String(seller.price ?? '?'), result.path, String(putMs), same ? 'yes' : 'NO'])
  }

  process.stdout.write('\nsellers\n')
  const sellerRows = await Promise.all(sellers.map(async (s, i) => {
    const own = s.market.book.entries({ peerId: s.peerId.toString(), method: 'put' })[0]
    const count = await s.storage.count()
    return [`seller-${i}`, i === SELLERS - 1 && SELLERS > 2 ? 'follow-market' : 'fixed', String(own?.rate ?? '?'), String(count.blobs)]
  }))
  table(['node', 'strategy', 'put sat/MiB', 'blobs'], sellerRows)
  process.stdout.write('\nbuyers\n')
  table(['node', 'chose', `put price (sat, ${BLOB} B)`, 'status', 'put ms', 'read back'], rows)
  const [put] = buyers[0].market.prices({ service: 'storage', method: 'put', usage: BigInt(BLOB) })
  process.stdout.write(`\nmarket (storage.put, ${BLOB} B): min ${put.min} median ${put.median} max ${put.max} spread ${put.spread} sat\n`)
  process.stdout.write(`result: ${ok}/${buyers.length} buyers stored and read back at the cheapest seller; ${since()} in all\n`)
  exitCode = ok === buyers.length ? 0 : 1
} catch (err: any) {
  process.stderr.write(`simulation failed: ${String(err?.stack ?? err)}\n`)
} finally {
  await Promise.allSettled(nodes.map(async n => n.stop()))
  await rm(root, { recursive: true, force: true })
}
process.exit(exitCode)

function table (head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  for (const r of [head, ...rows]) { process.stdout.write('  ' + r.map((c, i) => c.padEnd(widths[i])).join('  ') + '\n') }
}
