import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { findRunningNode } from '../src/control/index.js'
import { priceOf } from '../src/market/price-book.js'
import { NoSellerReachedError, callCheapest } from '../src/market/select.js'
import { readKey } from '../src/node/index.js'
import { withClientNode } from '../src/node/stranger.js'
import { generateApiKey } from '../src/payments/chain/embedded.js'
import { killAll, runCli, startCliNode } from './cli-fixtures.js'
import { eventually as poll, startNode, tempDir } from './fixtures.js'
import { EmbeddedChain } from './regtest.js'
import type { CliNode } from './cli-fixtures.js'
import type { TestNode } from './fixtures.js'
import type { SellerCandidate } from '../src/market/select.js'
import type { Socket } from 'node:net'

/** the default lease (30 days): a price per byte·second over it is the old per-byte price */
const MONTH = 2_592_000n // put prices per 512 B × MONTH: 1024 × MONTH lies in [2^31, 2^32), which protons-runtime 7.1.2 cannot encode in a uint64

/** this file's polling: 20_000 ms, every 100 ms */
const eventually = async (fn: () => Promise<boolean> | boolean, deadline = 20_000, every = 100): Promise<boolean> => poll(fn, deadline, every)

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** The OpenCloud ID the data dir's key signs with */
async function openCloudIdOf (dataDir: string): Promise<string> {
  const key = await readKey(dataDir)
  assert.ok(key != null, `no key in ${dataDir}`)
  return `oc:${peerIdFromPrivateKey(key).toString()}`
}

describe('callCheapest (library): a seller that does not answer is skipped after the per-seller timeout', function () {
  this.timeout(60_000)
  let good: TestNode
  const sockets = new Set<Socket>()
  // a "seller" that accepts TCP connections and never says a word: its dial never completes
  const silent = createServer(socket => { sockets.add(socket) })
  let mute: SellerCandidate

  before(async () => {
    good = await startNode({ sell: ['sha256'] })
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    const port = (silent.address() as { port: number }).port
    const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    mute = { peerId: id, addresses: [`/ip4/127.0.0.1/tcp/${port}/p2p/${id}`], price: 0n, foundIn: ['book'] }
  })

  after(async () => {
    for (const s of sockets) { s.destroy() }
    await new Promise(resolve => silent.close(resolve))
    await good?.destroy()
  })

  it('the next seller answers; the skipped one is named with its deadline', async () => {
    const body = randomBytes(100)
    const candidates: SellerCandidate[] = [mute, { peerId: good.peerId.toString(), addresses: [good.addr], price: 1n, foundIn: ['book'] }]
    const start = Date.now()
    const picked = await withClientNode(undefined, async (oc) => callCheapest(oc, candidates, { service: 'sha256', method: 'hash', body }, { timeout: 700 }))
    const elapsed = Date.now() - start
    assert.equal(picked.seller.peerId, good.peerId.toString())
    assert.equal(Buffer.from(picked.result.body).toString('hex'), sha256hex(body))
    assert.deepEqual(picked.skipped, [{ peerId: mute.peerId, error: 'no answer within 700 ms' }])
    // the silent seller cost its 700 ms, not a dial timeout of libp2p's
    assert.ok(elapsed < 4_000, `took ${elapsed} ms`)
  })

  it('every seller silent: NoSellerReachedError; the overall signal ends it early', async () => {
    const err = await withClientNode(undefined, async (oc) => callCheapest(oc, [mute, mute], { service: 'sha256', method: 'hash' }, { timeout: 300 })).catch(e => e)
    assert.ok(err instanceof NoSellerReachedError, String(err))
    assert.equal(err.skipped.length, 2)
    const start = Date.now()
    const aborted = await withClientNode(undefined, async (oc) => callCheapest(oc, [mute, mute, mute], { service: 'sha256', method: 'hash' }, { timeout: 5_000, signal: AbortSignal.timeout(400) })).catch(e => e)
    assert.equal(aborted?.name, 'TimeoutError')
    assert.ok(Date.now() - start < 3_000, `took ${Date.now() - start} ms`)
  })
})

describe('decloud call --cheapest', function () {
  this.timeout(60_000)
  // sellers serve unpaid calls: payments arrive with the payment backends
  const serveUnpaid = { payment: () => undefined }
  const market = { announceInterval: 10 * 60_000 }
  // storage.put in sat per KiB: the second seller is the cheapest
  const putRates = [3n, 1n, 2n]
  // storage.get in sat per KiB, in another order: the first seller gets cheapest
  const getRates = [1n, 3n, 2n]
  let work: string
  let boot: TestNode
  let sellers: TestNode[] = []
  const extra: TestNode[] = []
  let cheapest: TestNode

  before(async () => {
    work = await tempDir('decloud-cheapest-')
    boot = await startNode({ sell: [], market })
    sellers = await Promise.all(putRates.map(async (rate, i) => startNode({
      bootstrap: [boot.addr],
      sell: ['storage'],
      storage: { pricing: { put: { rate, per: 512n * MONTH }, get: { rate: getRates[i], per: 1024n } } },
      opencloud: serveUnpaid,
      market
    })))
    cheapest = sellers[1]
    const knowsAll = (): boolean => sellers.every((s, i) => boot.market.book.entries({ service: 'storage', method: 'put', peerId: s.peerId.toString() })[0]?.rate === putRates[i])
    assert.ok(await eventually(knowsAll), 'the prices did not reach the bootstrap node')
  })

  after(async () => {
    await killAll()
    await Promise.all([boot, ...sellers, ...extra].map(async n => n?.destroy()))
    await rm(work, { recursive: true, force: true })
  })

  /** Where a blob landed: the sellers that hold it */
  async function holders (id: string): Promise<TestNode[]> {
    const held = await Promise.all(sellers.map(async s => s.storage.meta(id)))
    return sellers.filter((_, i) => held[i] != null)
  }

  const expectedLine = (body: Uint8Array): RegExp => {
    const price = priceOf({ base: 0n, rate: 1n, per: 512n * MONTH, units: ['byte', 'second'] }, BigInt(body.byteLength) * MONTH)
    return new RegExp(`^decloud: cheapest seller ${cheapest.peerId.toString()} \\(${price} sat\\)$`, 'm')
  }

  it('checks its command line', async () => {
    const dir = join(work, 'usage')
    const cases: Array<[string[], RegExp]> = [
      [['call', '--cheapest'], /usage: decloud call --cheapest/],
      [['call', '--cheapest', cheapest.addr, 'storage.put'], /--cheapest takes no target/],
      [['call', '--cheapest', 'storage'], /not <service>\.<method>/],
      [['call', '--cheapest', '--service', 'sha256', 'storage.put'], /--service sha256 does not match storage\.put/],
      [['call', '--service', 'storage', cheapest.addr, 'storage.put'], /--service goes with --cheapest/],
      [['call', '--cheapest', 'storage.put', '--bootstrap', 'nonsense'], /--bootstrap "nonsense" is not a valid multiaddr/],
      // no node runs for the data dir and no way into a swarm
      [['call', '--cheapest', 'storage.put'], /no node is running for .*--bootstrap MULTIADDR/]
    ]
    for (const [args, message] of cases) {
      const r = await runCli([...args, '--data-dir', dir])
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
    }
    const help = await runCli(['call', '--help'])
    assert.match(help.stdout.toString(), /decloud call --cheapest \[--service S\] <service>\.<method>/)
    assert.match(help.stdout.toString(), /--bootstrap MULTIADDR/)
  })

  it('without a running node: joins through --bootstrap and stores at the cheapest seller with the data dir\'s key', async () => {
    const dir = join(work, 'transient')
    const blob = randomBytes(5_000)
    const file = join(work, 'transient.bin')
    await writeFile(file, blob)
    const r = await runCli(['call', '--cheapest', 'storage.put', '--body-file', file, '--bootstrap', boot.addr, '--data-dir', dir], { timeout: 45_000 })
    assert.equal(r.code, 0, r.stderr)
    const id = r.stdout.toString().trim()
    assert.equal(id, sha256hex(blob))
    assert.match(r.stderr, expectedLine(blob))
    assert.deepEqual(await holders(id), [cheapest])
    // the seller serves it back, and it belongs to the data dir's identity
    const got = await boot.opencloud.callOk(cheapest.addr, { service: 'storage', method: 'get', args: [id] })
    assert.ok(Buffer.from(got).equals(blob))
    assert.equal(await cheapest.storage.isOwner(id, await openCloudIdOf(dir)), true)

    // a service nobody sells: a clear message, exit 1
    const none = await runCli(['call', '--cheapest', 'nothing.here', '--bootstrap', boot.addr, '--data-dir', dir, '--timeout', '3000'], { timeout: 45_000 })
    assert.equal(none.code, 1, none.stderr)
    assert.match(none.stderr, /^decloud: no seller of nothing found/m)
  })

  describe('through a running node', () => {
    let node: CliNode
    let dir: string

    before(async () => {
      dir = join(work, 'running')
      node = await startCliNode(dir, ['--bootstrap', boot.addr])
      const running = await findRunningNode(dir)
      assert.ok(running != null)
      const knowsAll = async (): Promise<boolean> => {
        const [put] = (await running.client.market({ service: 'storage', method: 'put' })).summary as Array<{ sellers: Array<{ peerId: string }> }>
        return sellers.every(s => put?.sellers.some(e => e.peerId === s.peerId.toString()))
      }
      assert.ok(await eventually(knowsAll), 'the running node did not learn the prices')
    })

    after(async () => {
      await node?.stop('SIGINT').catch(() => {})
    })

    it('decloud sellers storage ranks by the put price when no method is named (not by get)', async () => {
      const knowsGets = async (): Promise<boolean> => {
        const running = await findRunningNode(dir)
        const [get] = (await running?.client.market({ service: 'storage', method: 'get' }))?.summary as Array<{ sellers: Array<{ peerId: string }> }>
        return sellers.every(s => get?.sellers.some(e => e.peerId === s.peerId.toString()))
      }
      assert.ok(await eventually(knowsGets), 'the running node did not learn the get prices')
      const r = await runCli(['sellers', 'storage', '--timeout', '3000', '--json', '--data-dir', dir])
      assert.equal(r.code, 0, r.stderr)
      const answer = JSON.parse(r.stdout.toString())
      assert.equal(answer.method, 'put')
      assert.equal(answer.sellers[0].peerId, cheapest.peerId.toString())
      const text = await runCli(['sellers', 'storage', '--timeout', '3000', '--data-dir', dir])
      assert.equal(text.code, 0, text.stderr)
      const lines = text.stdout.toString().split('\n')
      assert.match(lines[1], /^peer\s+put price/)
      assert.ok(lines[2].startsWith(cheapest.peerId.toString()), lines[2])
    })

    it('finds the sellers (GET /v1/sellers) and stores at the cheapest (POST /v1/call)', async () => {
      const blob = randomBytes(20_000)
      const file = join(work, 'running.bin')
      await writeFile(file, blob)
      const r = await runCli(['call', '--service', 'storage', '--cheapest', 'storage.put', '--body-file', file, '--data-dir', dir])
      assert.equal(r.code, 0, r.stderr)
      const id = r.stdout.toString().trim()
      assert.equal(id, sha256hex(blob))
      assert.match(r.stderr, expectedLine(blob))
      assert.deepEqual(await holders(id), [cheapest])
      // made by the running node (its identity)
      assert.equal(await cheapest.storage.isOwner(id, `oc:${node.peerId}`), true)

      // storage.get at that seller returns the bytes
      const out = join(work, 'running.out')
      const get = await runCli(['call', cheapest.addr, 'storage.get', id, '--out', out, '--data-dir', dir])
      assert.equal(get.code, 0, get.stderr)
      assert.ok((await readFile(out)).equals(blob))

      // --json prints the response as a normal call does
      const json = await runCli(['call', '--cheapest', 'storage.put', '-f', file, '--json', '--data-dir', dir])
      assert.equal(json.code, 0, json.stderr)
      const res = JSON.parse(json.stdout.toString())
      assert.equal(res.status, 'ok')
      assert.equal(res.peer, cheapest.peerId.toString())
    })

    it('decloud sellers and decloud market answer from the running node', async () => {
      const s = await runCli(['sellers', 'storage', '--method', 'put', '--units', String(512n * MONTH), '--timeout', '5000', '--json', '--data-dir', dir])
      assert.equal(s.code, 0, s.stderr)
      const found = JSON.parse(s.stdout.toString())
      // cheapest first; the running node itself (free storage) is not a seller to itself
      assert.deepEqual(found.sellers.slice(0, 3).map((x: any) => x.peerId), [1, 2, 0].map(i => sellers[i].peerId.toString()))
      assert.deepEqual(found.sellers.slice(0, 3).map((x: any) => x.price), ['1', '2', '3'])
      assert.ok(found.sellers.every((x: any) => x.peerId !== node.peerId))
      const one = await runCli(['sellers', 'storage', '--method', 'put', '--limit', '1', '--timeout', '5000', '--json', '--data-dir', dir])
      assert.equal(JSON.parse(one.stdout.toString()).sellers.length, 1)
      const m = await runCli(['market', 'storage', '--method', 'put', '--json', '--data-dir', dir])
      assert.equal(m.code, 0, m.stderr)
      const { summary } = JSON.parse(m.stdout.toString())
      // the running node's own free price is in its book
      assert.equal(summary[0].sellers[0].peerId, node.peerId)
      assert.ok(sellers.every(x => summary[0].sellers.some((e: any) => e.peerId === x.peerId.toString())))
    })

    it('moves on to the next seller when the cheapest cannot be reached', async () => {
      // a seller cheaper than all, whose process dies without withdrawing its price
      const ghost = await startNode({ bootstrap: [boot.addr], sell: ['storage'], storage: { pricing: { put: { rate: 0n, per: 512n * MONTH } } }, opencloud: serveUnpaid, market })
      extra.push(ghost)
      const running = await findRunningNode(dir)
      assert.ok(running != null)
      const ghostId = ghost.peerId.toString()
      assert.ok(await eventually(async () => {
        const found = await running.client.sellers({ service: 'storage', method: 'put', timeout: 3_000 })
        return found.sellers[0]?.peerId === ghostId
      }), 'the running node never ranked the new seller first')
      await ghost.libp2p.stop()

      const blob = randomBytes(3_000)
      const file = join(work, 'ghost.bin')
      await writeFile(file, blob)
      const r = await runCli(['call', '--cheapest', 'storage.put', '-f', file, '--timeout', '5000', '--data-dir', dir])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stderr, new RegExp(`^decloud: seller ${ghostId} did not answer .*; trying the next$`, 'm'))
      assert.match(r.stderr, expectedLine(blob))
      assert.deepEqual(await holders(r.stdout.toString().trim()), [cheapest])
    })
  })
})

describe('decloud call --cheapest pays a seller that asks (real processes, a shared regtest chain)', function () {
  this.timeout(180_000)
  let chain: EmbeddedChain
  let work: string
  let seller: CliNode
  let buyer: CliNode

  before(async () => {
    work = await tempDir('decloud-cheapest-pay-')
    chain = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
    const url = chain.rpcUrl as string
    seller = await startCliNode(join(work, 'seller'), ['--chain-rpc', url, '--price', 'storage.put=1048576/GiB-month'], 60_000, { payments: true })
    buyer = await startCliNode(join(work, 'buyer'), ['--chain-rpc', url, '--bootstrap', seller.addr], 60_000, { payments: true })
    const knowsSeller = async (): Promise<boolean> => {
      const running = await findRunningNode(buyer.dataDir)
      const [put] = (await running?.client.market({ service: 'storage', method: 'put' }))?.summary as Array<{ sellers: Array<{ peerId: string }> }>
      return put?.sellers.some(e => e.peerId === seller.peerId) ?? false
    }
    assert.ok(await eventually(knowsSeller), 'the buyer did not learn the seller\'s price')
  })

  after(async () => {
    await seller?.stop().catch(() => {})
    await buyer?.stop().catch(() => {})
    await killAll()
    await chain?.close()
    await rm(work, { recursive: true, force: true })
  })

  it('without --pay, through a running node: pays with --pay auto --max 1000, says so, and stores', async () => {
    const blob = randomBytes(20_000)
    const file = join(work, 'blob.bin')
    await writeFile(file, blob)
    const r = await runCli(['call', '--cheapest', 'storage.put', '--body-file', file, '--timeout', '20000', '--data-dir', buyer.dataDir], { timeout: 90_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.toString().trim(), sha256hex(blob))
    assert.match(r.stderr, new RegExp(`seller ${seller.peerId} asks [0-9]+ sat: paying with --pay auto --max 1000`))
    assert.match(r.stderr, /^decloud: (paid|promised) [0-9]+ sat/m)
  })
})
