/**
 * A local market simulation paid in bitcoin: N real decloud nodes in one
 * process on 127.0.0.1 sharing ONE embedded regtest chain (bcoin, in
 * memory). One bootstrap node, storage sellers at different prices (one of
 * them following the market), honest buyers that find the sellers through
 * the DHT, pick the cheapest from the gossiped price book, store a blob
 * there and read it back, paying now (auto or attached) or later (deferred
 * promises their fulfilment loops pay), and one freeloader that promises and
 * never pays. A block is mined every second. Prints a summary (and writes
 * it as JSON with --json FILE) and stops by itself.
 *
 * Run: `npm run sim`, or `npx tsc -p . && node dist/test/simulation/market-sim.js
 * [--nodes 12] [--sellers 4] [--blob 65536] [--deadline 60000] [--max SATS]
 * [--mine-interval 1000] [--json FILE]`. docs/simulation.md explains the output.
 *
 * Exit code 0 when every honest buyer stored and read back its blob at the
 * cheapest seller, every honest deferred tab was settled, the freeloader's
 * tab is broken at its seller, and the sellers received exactly (in sats)
 * what the honest buyers paid; 1 otherwise (what failed is printed); 2 on
 * bad options.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { p2wpkh } from '@scure/btc-signer'
import { createDecloudNode } from '../../src/node/index.js'
import { payAndCall } from '../../src/payments/buyer/bidding.js'
import { EmbeddedChain } from '../../src/payments/chain/embedded.js'
import { defaultPolicy } from '../../src/policy/defaults.js'
import type { DecloudNode, DecloudNodeOptions } from '../../src/node/index.js'
import type { PaymentsOptions } from '../../src/node/payments.js'
import type { PaidCallResult, PayOption } from '../../src/payments/buyer/bidding.js'

/** the default lease (30 days): a price per byte·second over it is the old per-byte price */
const MONTH = 2_592_000n

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '12' },
    sellers: { type: 'string', default: '4' },
    blob: { type: 'string', default: '65536' },
    deadline: { type: 'string', default: '60000' },
    max: { type: 'string' },
    'mine-interval': { type: 'string', default: '1000' },
    json: { type: 'string' }
  }
})
const N = Number(values.nodes)
const SELLERS = Number(values.sellers)
const BLOB = Number(values.blob)
const DEADLINE = Number(values.deadline)
const MINE_MS = Number(values['mine-interval'])
const BUYERS = N - 1 - SELLERS
if (!(Number.isInteger(N) && Number.isInteger(SELLERS) && N >= 4 && SELLERS >= 1 && BUYERS >= 2 &&
  Number.isInteger(BLOB) && BLOB > 0 && BLOB <= 4 * 1024 * 1024 - 1024 && DEADLINE > 0 && MINE_MS >= 100 &&
  (values.max == null || /^[0-9]{1,15}$/.test(values.max)))) {
  process.stderr.write('usage: market-sim [--nodes N≥4] [--sellers 1≤S≤N-3] [--blob BYTES≤4MiB-1KiB] [--deadline MS] [--max SATS] [--mine-interval MS≥100] [--json FILE]\n')
  process.exit(2)
}

/** prices in sat per MiB: puts 20,000, 30,000, 40,000…; the last seller (of 3 or more) follows the market */
const MiB = 1_048_576n
const putRates = Array.from({ length: SELLERS }, (_, i) => BigInt(i + 2) * 10_000n)
const GET_RATE = 5_000n
const FOLLOW_FLOOR = 10_000n
const follows = (i: number): boolean => i === SELLERS - 1 && SELLERS > 2
/** what `rate` sat per MiB cost for `bytes` (rounded up, as sellers price) */
const costOf = (rate: bigint, bytes: number): bigint => (rate * BigInt(bytes) + MiB - 1n) / MiB
/** the most a buyer pays or promises for one call: twice the dearest put, at least 1,000 sat */
const MAX = values.max != null ? BigInt(values.max) : [2n * costOf(putRates[SELLERS - 1], BLOB), 1000n].reduce((a, b) => a > b ? a : b)
/** sellers' grace before an overdue tab is broken (asked for, see docs/simulation.md) */
const GRACE = 3_000
/** the freeloader's defer threshold */
const FREELOAD_THRESHOLD = 'time:3'

type Mode = 'auto' | 'defer:completion' | 'attached' | 'defer:value'
const MODES: Mode[] = ['auto', 'defer:completion', 'attached', 'defer:value']

interface CallRecord {
  status: string
  kind: 'none' | 'attached' | 'defer'
  /** sats attached */
  paid: bigint
  /** sats promised */
  promised: bigint
  deferId?: string
  txid?: string
  error?: string
}

interface BuyerRecord {
  name: string
  node: DecloudNode
  mode: Mode | 'freeload'
  honest: boolean
  seller?: number
  cheapest: boolean
  putPrice?: bigint
  put?: CallRecord
  get?: CallRecord
  readBack: boolean
  /** defer ids of this buyer's tabs at its seller */
  tabs: Set<string>
  /** sats paid on promises by the fulfilment loop */
  paidLater: bigint
  /** the buyer's spendable balance change (payments and fees) */
  spent?: bigint
  tabStatus: string[]
}

const root = await mkdtemp(join(tmpdir(), 'decloud-sim-'))
const nodes: DecloudNode[] = []
const t0 = Date.now()
const since = (): string => `${((Date.now() - t0) / 1000).toFixed(1)}s`
const log = (s: string): void => { process.stdout.write(`[${since()}] ${s}\n`) }
const failures: string[] = []
const fail = (s: string): void => { failures.push(s) }
const phases: Record<string, number> = {}

let chain: EmbeddedChain | undefined
let miner: ReturnType<typeof setInterval> | undefined
let mining: Promise<void> = Promise.resolve()
let busy = false
let blocks = 0
let exitCode = 1

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
    if (Date.now() - start > ms) { throw new Error(`timed out after ${ms} ms waiting for ${what}`) }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return Date.now() - start
}

/** An address nobody keeps the key of: the periodic blocks' rewards */
function burnAddress (c: EmbeddedChain): string {
  const address = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), c.network).address
  if (address == null) { throw new Error('cannot encode a burn address') }
  return address
}

/** Spendable balance, confirmed and unconfirmed together */
async function total (node: DecloudNode): Promise<bigint> {
  const b = await node.payments!.wallet.balance()
  return b.confirmed + b.unconfirmed
}

function record (res: PaidCallResult): CallRecord {
  return { status: res.path, kind: res.kind, paid: res.paid, promised: res.promised, deferId: res.deferId, txid: res.txid }
}

function failed (err: any): CallRecord {
  return { status: 'error', kind: 'none', paid: 0n, promised: 0n, error: String(err?.message ?? err) }
}

try {
  chain = await EmbeddedChain.start({ memory: true })
  const c = chain
  const burn = burnAddress(c)
  miner = setInterval(() => {
    if (busy) { return }
    busy = true
    mining = c.mine(1, burn).then(() => { blocks++ }, () => {}).finally(() => { busy = false })
  }, MINE_MS)
  log(`regtest chain at height ${await c.height()}; a block every ${MINE_MS} ms`)

  const boot = await start('boot', { sell: [], payments: false })
  log(`bootstrap ${boot.addresses()[0]}`)
  // a short grace: the sellers' own sweep breaks the freeloader's tab within seconds
  const sellerPayments: PaymentsOptions = { chain: c, fulfilment: false, sweepInterval: 250, tabGrace: GRACE }
  const sellerOptions = (i: number): DecloudNodeOptions => ({
    bootstrap: boot.addresses(),
    sell: ['storage'],
    payments: sellerPayments,
    policy: { rules: defaultPolicy() },
    storage: { pricing: { put: { rate: putRates[i], per: MiB * MONTH }, get: { rate: GET_RATE, per: MiB } } },
    ...(follows(i)
      ? { market: { strategies: { 'storage.put': { strategy: 'follow-market', undercutPercent: 10, floor: { rate: FOLLOW_FLOOR, per: MiB } } } } }
      : {})
  })
  const [sellers, buyers] = await Promise.all([
    Promise.all(Array.from({ length: SELLERS }, async (_, i) => start(`seller-${i}`, sellerOptions(i)))),
    Promise.all(Array.from({ length: BUYERS }, async (_, i) => {
      const freeloader = i === BUYERS - 1
      return start(freeloader ? 'freeloader' : `buyer-${i}`, {
        bootstrap: boot.addresses(),
        sell: [],
        payments: { chain: c, fulfilment: freeloader ? false : { interval: 500, lead: 0 } },
        // the default policy, as rules: no policy file to watch per node
        policy: { rules: defaultPolicy() }
      })
    }))
  ])
  phases.start = Date.now() - t0
  log(`${nodes.length} nodes started, wallets dev-funded (${SELLERS} storage sellers, ${BUYERS - 1} honest buyers, 1 freeloader); chain at height ${await c.height()}`)

  const sellerBefore = await Promise.all(sellers.map(total))
  const buyerBefore = await Promise.all(buyers.map(total))
  const sellerIds = new Set(sellers.map(s => s.peerId.toString()))
  const indexOf = (peerId: string): number => sellers.findIndex(s => s.peerId.toString() === peerId)

  const tables = await until('routing tables', () => nodes.every(n => n.discovery.routingTableSize() > 0))
  log(`every routing table has peers (+${tables} ms)`)
  const priced = await until('prices everywhere', () => buyers.every(b => b.market.book.entries({ service: 'storage', method: 'put' }).filter(e => sellerIds.has(e.peerId)).length === SELLERS))
  log(`every buyer knows every seller's price (+${priced} ms)`)
  const found = await until('sellers in the DHT', async () => {
    const results = await Promise.all(buyers.map(async b => (await b.findSellers('storage', { timeout: 3_000 })).length))
    return results.every(n => n === SELLERS)
  })
  log(`every buyer finds all ${SELLERS} sellers in the DHT (+${found} ms)`)
  phases.discovery = Date.now() - t0 - phases.start

  const records: BuyerRecord[] = buyers.map((node, i) => {
    const freeloader = i === BUYERS - 1
    return { name: freeloader ? 'freeloader' : `buyer-${i}`, node, mode: freeloader ? 'freeload' : MODES[i % MODES.length], honest: !freeloader, cheapest: false, readBack: false, tabs: new Set(), paidLater: 0n, tabStatus: [] }
  })
  // the freeloader goes first, so its time threshold has passed by the time honest tabs are settled
  const order = [records[records.length - 1], ...records.slice(0, -1)]
  const buying = Date.now()
  /** One buyer: the cheapest seller, a paid put, a paid get of the same bytes */
  const buy = async (r: BuyerRecord): Promise<void> => {
    const buyer = r.node
    const wallet = buyer.payments!.wallet
    const blob = randomBytes(BLOB)
    try {
      const ranked = await buyer.rankSellers('storage', { method: 'put', usage: BigInt(BLOB) * MONTH, timeout: 3_000 })
      const best = ranked[0]
      if (best == null) { throw new Error('no storage seller found') }
      const target = best.addresses[0]
      r.seller = indexOf(best.peerId)
      r.putPrice = best.price
      r.cheapest = best.price != null && r.seller >= 0 &&
        ranked.filter(cand => sellerIds.has(cand.peerId) && cand.price != null).length === SELLERS &&
        ranked.every(cand => cand.price == null || best.price! <= cand.price)
      // the get's price at this seller, from the price book (the bytes asked for: the whole blob)
      const getPrice = (await buyer.rankSellers('storage', { method: 'get', usage: BigInt(BLOB), discover: false })).find(cand => cand.peerId === best.peerId)?.price ?? 1n
      const putPrice = best.price ?? 1n
      const option = (price: bigint): PayOption => payOption(r.mode, price, putPrice)
      // honest buyers pay through the node (bidding strategy, switching to attached when a promise is refused);
      // the freeloader only ever promises
      const pay = async (call: Parameters<DecloudNode['pay']>[1], price: bigint): Promise<PaidCallResult> => r.honest
        ? buyer.pay(target, call, { pay: option(price), max: MAX })
        : payAndCall(buyer.opencloud, target, { ...call, signers: [wallet.identitySigner()] }, {
          pay: option(price), max: MAX, wallet, promises: buyer.payments!.promises, backend: buyer.payments!.backend, allowAttached: false
        })
      let id: string | undefined
      try {
        const put = await pay({ service: 'storage', method: 'put', body: blob }, putPrice)
        r.put = record(put)
        if (put.ok) { id = JSON.parse(new TextDecoder().decode(put.body)).id }
      } catch (err) {
        r.put = failed(err)
      }
      if (id != null) {
        try {
          const get = await pay({ service: 'storage', method: 'get', args: [id, '0', String(BLOB)] }, getPrice)
          r.get = record(get)
          r.readBack = get.ok && Buffer.compare(Buffer.from(get.body), blob) === 0
        } catch (err) {
          r.get = failed(err)
        }
      }
      for (const call of [r.put, r.get]) { if (call?.deferId != null) { r.tabs.add(call.deferId) } }
    } catch (err: any) {
      r.put ??= failed(err)
    }
    log(`${r.name} (${r.mode}) → seller-${r.seller ?? '?'}: put ${outcome(r.put)}, get ${outcome(r.get)}`)
  }
  for (const r of order) { await buy(r) }
  phases.buying = Date.now() - buying

  // honest promises: the buyers' fulfilment loops pay them; the sellers see the tabs settled
  const settling = Date.now()
  const honestDeferred = records.filter(r => r.honest && r.tabs.size > 0)
  const tabOf = async (r: BuyerRecord, deferId: string): Promise<string> => {
    const tab = r.seller != null && r.seller >= 0 ? await sellers[r.seller].payments!.tabs.get(r.node.openCloudId, deferId) : undefined
    return tab?.status ?? 'missing'
  }
  // `auto` promises go on the seller's default tab (time:3600): it falls due in an hour, so the
  // buyer's loop is run with its clock advanced to that time, as the sweep is below without a grace
  const advanced = new Set<string>()
  try {
    const ms = await until('honest deferred tabs settled', async () => {
      for (const r of honestDeferred) {
        const open = await r.node.payments!.promises.outstanding()
        const later = open.map(p => Math.min(p.dueAt ?? Infinity, p.latestDue ?? Infinity)).filter(due => due > Date.now() + DEADLINE)
        if (later.length > 0) {
          advanced.add(r.name)
          await r.node.payments!.fulfilment!.runOnce(Math.max(...later))
        }
        if (open.length > 0) { return false }
        for (const id of r.tabs) { if (await tabOf(r, id) !== 'settled') { return false } }
      }
      return true
    })
    log(`${honestDeferred.reduce((n, r) => n + r.tabs.size, 0)} honest tabs settled by the buyers' fulfilment loops (+${ms} ms${advanced.size > 0 ? `; ${[...advanced].join(', ')} with the clock advanced to their tabs' due time` : ''})`)
  } catch (err: any) {
    fail(String(err.message))
  }
  phases.settling = Date.now() - settling

  // the freeloader's tab: due after its threshold, broken by its seller's sweep after the grace
  const sweeping = Date.now()
  const free = records[records.length - 1]
  const freeSeller = free.seller != null && free.seller >= 0 ? sellers[free.seller] : undefined
  const nodeSweep = freeSeller != null && freeSeller.payments!.tabs.grace <= GRACE
  const brokenAt = async (s: DecloudNode): Promise<Array<{ payer: string, deferId: string, owed: bigint }>> => {
    const out = []
    for await (const b of s.payments!.tabs.brokenPromises()) { out.push(b) }
    return out
  }
  if (freeSeller == null || free.tabs.size === 0) {
    fail('the freeloader opened no tab')
  } else {
    try {
      const ms = await until('the freeloader\'s tab broken', async () => {
        // without a grace option the node's own sweep would wait 15 minutes: sweep as it would then
        if (!nodeSweep) { await freeSeller.payments!.tabs.sweep(Date.now() + freeSeller.payments!.tabs.grace) }
        const broken = await brokenAt(freeSeller)
        return [...free.tabs].every(id => broken.some(b => b.payer === free.node.openCloudId && b.deferId === id))
      })
      log(`the freeloader's tab is a broken promise at seller-${free.seller} (+${ms} ms, ${nodeSweep ? `the seller's sweep, grace ${GRACE} ms` : `sweep with the clock advanced by the ${freeSeller.payments!.tabs.grace} ms grace`})`)
    } catch (err: any) {
      fail(String(err.message))
    }
  }
  phases.sweep = Date.now() - sweeping

  // a final block confirms every payment; then count what each side holds
  clearInterval(miner)
  miner = undefined
  await mining
  await c.mine(1, burn)
  blocks++
  const height = await c.height()
  for (const r of records) {
    r.paidLater = 0n
    for await (const p of r.node.payments!.promises.all()) { r.paidLater += p.paid }
    r.spent = buyerBefore[buyers.indexOf(r.node)] - await total(r.node)
    for (const id of r.tabs) { r.tabStatus.push(await tabOf(r, id)) }
  }
  const paidNow = (r: BuyerRecord): bigint => (r.put?.paid ?? 0n) + (r.get?.paid ?? 0n)
  const promisedOf = (r: BuyerRecord): bigint => (r.put?.promised ?? 0n) + (r.get?.promised ?? 0n)
  const paidOf = (r: BuyerRecord): bigint => paidNow(r) + r.paidLater

  const sellerSummary = await Promise.all(sellers.map(async (s, i) => {
    const balance = await s.payments!.wallet.balance()
    const own = s.market.book.entries({ peerId: s.peerId.toString(), method: 'put' })[0]
    const customers = records.filter(r => r.seller === i)
    const broken = await brokenAt(s)
    return {
      name: `seller-${i}`,
      peerId: s.peerId.toString(),
      strategy: follows(i) ? 'follow-market' : 'fixed',
      putRate: own?.rate,
      blobs: (await s.storage.count()).blobs,
      received: balance.confirmed - sellerBefore[i],
      unconfirmed: balance.unconfirmed,
      expected: customers.filter(r => r.honest).reduce((sum, r) => sum + paidOf(r), 0n),
      tabsSettled: customers.filter(r => r.honest).reduce((n, r) => n + r.tabStatus.filter(st => st === 'settled').length, 0),
      brokenPromises: broken.length,
      brokenOwed: broken.reduce((sum, b) => sum + b.owed, 0n)
    }
  }))

  // the checks
  for (const r of records.filter(r => r.honest)) {
    if (r.put?.status !== 'ok') { fail(`${r.name}: put ${r.put?.status ?? 'not sent'}${r.put?.error != null ? `: ${r.put.error}` : ''}`) }
    if (r.put?.status === 'ok' && r.get?.status !== 'ok') { fail(`${r.name}: get ${r.get?.status ?? 'not sent'}${r.get?.error != null ? `: ${r.get.error}` : ''}`) }
    if (r.get?.status === 'ok' && !r.readBack) { fail(`${r.name}: read back different bytes`) }
    if (!r.cheapest) { fail(`${r.name}: seller-${r.seller ?? '?'} is not the cheapest of all ${SELLERS} sellers`) }
    r.tabStatus.forEach((st, k) => { if (st !== 'settled') { fail(`${r.name}: tab ${[...r.tabs][k]} is ${st}, not settled`) } })
    if (r.paidLater < promisedOf(r)) { fail(`${r.name}: promised ${promisedOf(r)} sat, paid ${r.paidLater} sat on its promises`) }
  }
  if (free.put?.status !== 'ok') { fail(`freeloader: its deferred put was not served (${free.put?.status ?? 'not sent'}${free.put?.error != null ? `: ${free.put.error}` : ''})`) }
  if (paidOf(free) !== 0n) { fail(`freeloader: paid ${paidOf(free)} sat`) }
  free.tabStatus.forEach((st, k) => { if (st !== 'broken') { fail(`freeloader: tab ${[...free.tabs][k]} is ${st}, not broken`) } })
  for (const s of sellerSummary) {
    if (s.received !== s.expected) { fail(`${s.name}: received ${s.received} sat on chain, honest buyers paid it ${s.expected} sat`) }
    if (s.unconfirmed !== 0n) { fail(`${s.name}: ${s.unconfirmed} sat still unconfirmed after the final block`) }
  }
  const honest = records.filter(r => r.honest)
  const totals = {
    honestPaid: honest.reduce((sum, r) => sum + paidOf(r), 0n),
    paidAttached: honest.reduce((sum, r) => sum + paidNow(r), 0n),
    paidOnPromises: honest.reduce((sum, r) => sum + r.paidLater, 0n),
    promised: honest.reduce((sum, r) => sum + promisedOf(r), 0n),
    sellersReceived: sellerSummary.reduce((sum, s) => sum + s.received, 0n),
    feesPaid: honest.reduce((sum, r) => sum + (r.spent ?? 0n) - paidOf(r), 0n),
    freeloaderOwes: sellerSummary.reduce((sum, s) => sum + s.brokenOwed, 0n)
  }
  if (totals.sellersReceived !== totals.honestPaid) { fail(`the sellers received ${totals.sellersReceived} sat, honest buyers paid ${totals.honestPaid} sat`) }
  const ok = honest.filter(r => r.put?.status === 'ok' && r.readBack && r.cheapest).length
  const seconds = (Date.now() - t0) / 1000

  process.stdout.write('\nsellers\n')
  table(['node', 'strategy', 'put sat/MiB', 'blobs', 'received sat', 'tabs settled', 'broken promises'], sellerSummary.map(s =>
    [s.name, s.strategy, String(s.putRate ?? '?'), String(s.blobs), String(s.received), String(s.tabsSettled), s.brokenPromises === 0 ? '0' : `${s.brokenPromises} (${s.brokenOwed} sat owed)`]))
  process.stdout.write('\nbuyers\n')
  table(['node', 'pays', 'chose', `put sat (${BLOB} B)`, 'paid attached', 'promised', 'paid on promises', 'spent incl. fees', 'tabs', 'read back'], records.map(r =>
    [r.name, r.mode, `seller-${r.seller ?? '?'}`, String(r.putPrice ?? '?'), String(paidNow(r)), String(promisedOf(r)), String(r.paidLater), String(r.spent ?? '?'), r.tabStatus.join(',') || '-', r.readBack ? 'yes' : 'NO']))
  const [put] = buyers[0].market.prices({ service: 'storage', method: 'put', usage: BigInt(BLOB) * MONTH })
  process.stdout.write(`\nmarket (storage.put, ${BLOB} B): min ${put?.min} median ${put?.median} max ${put?.max} spread ${put?.spread} sat; max per call ${MAX} sat\n`)
  process.stdout.write(`totals: honest buyers paid ${totals.honestPaid} sat (${totals.paidAttached} attached, ${totals.paidOnPromises} on ${totals.promised} sat promised) + ${totals.feesPaid} sat fees; sellers received ${totals.sellersReceived} sat; the freeloader owes ${totals.freeloaderOwes} sat\n`)
  process.stdout.write(`chain: height ${height}, ${blocks} blocks mined by the simulation\n`)
  process.stdout.write(`time: ${seconds.toFixed(1)} s (start ${ms(phases.start)}, discovery ${ms(phases.discovery)}, buying ${ms(phases.buying)}, settling ${ms(phases.settling)}, sweep ${ms(phases.sweep)})\n`)
  process.stdout.write(`result: ${ok}/${honest.length} honest buyers stored and read back at the cheapest seller; ${failures.length === 0 ? 'all checks passed' : `${failures.length} checks FAILED`}\n`)
  for (const f of failures) { process.stdout.write(`  FAILED: ${f}\n`) }

  if (values.json != null) {
    const summary = {
      ok: failures.length === 0,
      failures,
      options: { nodes: N, sellers: SELLERS, blob: BLOB, deadline: DEADLINE, max: MAX, mineInterval: MINE_MS },
      sweep: nodeSweep ? 'node' : 'advanced-clock',
      seconds,
      phases,
      chain: { height, blocksMined: blocks },
      market: put == null ? null : { service: 'storage', method: 'put', usage: BLOB, min: put.min, median: put.median, max: put.max, spread: put.spread },
      sellers: sellerSummary,
      buyers: records.map(r => ({
        name: r.name,
        mode: r.mode,
        honest: r.honest,
        seller: r.seller != null && r.seller >= 0 ? `seller-${r.seller}` : null,
        cheapest: r.cheapest,
        putPrice: r.putPrice ?? null,
        put: r.put ?? null,
        get: r.get ?? null,
        readBack: r.readBack,
        paidAttached: paidNow(r),
        promised: promisedOf(r),
        paidOnPromises: r.paidLater,
        spent: r.spent ?? null,
        tabs: [...r.tabs].map((id, k) => ({ deferId: id, status: r.tabStatus[k] }))
      })),
      totals
    }
    await writeFile(values.json, JSON.stringify(summary, (_, v) => typeof v === 'bigint' ? v.toString() : v, 2) + '\n')
    process.stdout.write(`summary written to ${values.json}\n`)
  }
  exitCode = failures.length === 0 ? 0 : 1
} catch (err: any) {
  process.stderr.write(`simulation failed: ${String(err?.stack ?? err)}\n`)
  for (const f of failures) { process.stderr.write(`  FAILED: ${f}\n`) }
} finally {
  if (miner != null) { clearInterval(miner) }
  await mining
  await Promise.allSettled(nodes.map(async n => n.stop()))
  await chain?.close().catch(() => {})
  await rm(root, { recursive: true, force: true })
}
process.exit(exitCode)

/** How a buyer in `mode` bids for a call the price book prices at `price` */
function payOption (mode: BuyerRecord['mode'], price: bigint, putPrice: bigint): PayOption {
  switch (mode) {
    case 'auto': return { kind: 'auto' }
    case 'attached': return { kind: 'attached', amount: price }
    case 'defer:completion': return { kind: 'defer', amount: price, threshold: 'completion' }
    // the put alone stays under the threshold; the get takes the tab over it
    case 'defer:value': return { kind: 'defer', amount: price, threshold: `value:${putPrice + 1n}` }
    default: return { kind: 'defer', amount: price, threshold: FREELOAD_THRESHOLD }
  }
}

function outcome (call: CallRecord | undefined): string {
  if (call == null) { return '-' }
  return call.error != null ? `${call.status} (${call.error})` : call.status
}

function ms (v: number | undefined): string {
  return v == null ? '-' : `${(v / 1000).toFixed(1)} s`
}

function table (head: string[], rows: string[][]): void {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => r[i].length)))
  for (const r of [head, ...rows]) { process.stdout.write('  ' + r.map((c, i) => c.padEnd(widths[i])).join('  ') + '\n') }
}
