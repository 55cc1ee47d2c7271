/**
 * Payments and policy inside whole decloud nodes (createDecloudNode): real
 * libp2p nodes over 127.0.0.1, one real in-process regtest chain shared by
 * the nodes, real wallets and LevelDB in temp dirs, the policy files of the
 * spec's two bars (test/fixtures/policy).
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { multiaddr } from '@multiformats/multiaddr'
import { findRunningNode } from '../src/control/client.js'
import { ControlServer } from '../src/control/server.js'
import { PaymentType, Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { eventually, startNode } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { EmbeddedChain } from './regtest.js'

/** the default lease (30 days): a price per byte·second over it is the old per-byte price */
const MONTH = 2_592_000n

const fixture = (name: string): string => fileURLToPath(new URL(`../../test/fixtures/policy/${name}`, import.meta.url))
const enc = new TextEncoder()
/** sha256.hash at a fixed price per call, so tabs grow in known steps */
const PRICE = 50_000n

describe('payments and policy in a decloud node', function () {
  this.timeout(120_000)
  let chain: EmbeddedChain
  const nodes: TestNode[] = []

  before(async () => {
    chain = await startRegtest()
  })

  after(async () => {
    await Promise.all(nodes.map(async n => n.destroy().catch(() => {})))
    await chain?.close()
  })

  async function seller (policyFile: string): Promise<TestNode> {
    const n = await startNode({
      payments: { chain, fulfilment: false },
      policy: { file: fixture(policyFile) },
      sha256: { pricing: { base: PRICE } },
      storage: { pricing: { put: { rate: 1n, per: 1024n * MONTH } } }
    })
    nodes.push(n)
    return n
  }

  async function buyer (): Promise<TestNode> {
    const n = await startNode({ payments: { chain, fulfilment: { interval: 500, lead: 0 } } })
    nodes.push(n)
    return n
  }

  /** One deferred sha256.hash on tab `tab`, with or without the btc: identity credential */
  async function deferredHash (from: TestNode, to: TestNode, tab: string, withCoins: boolean): Promise<{ status: Status, detail: string, amount?: bigint }> {
    const wallet = from.payments?.wallet
    assert.ok(wallet != null)
    const res = await from.opencloud.call(multiaddr(to.addr), {
      service: 'sha256',
      method: 'hash',
      body: enc.encode(`call on ${tab}`),
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: PRICE, txn: new Uint8Array(), deferId: tab, deferThreshold: 'time:3600' },
      signers: withCoins ? [wallet.identitySigner()] : []
    })
    return { status: res.status, detail: res.detail, amount: res.acceptablePayment?.amount }
  }

  it('a dev node on a mining chain starts with coins: an aged identity and a spending balance', async () => {
    const b = await buyer()
    const wallet = b.payments?.wallet
    assert.ok(wallet != null)
    const [identity] = await chain.addresses([wallet.identityAddress])
    assert.ok(identity.confirmed >= 100_000_000n, `identity holds ${identity.confirmed}`)
    const height = await chain.height()
    assert.ok(identity.heldSince != null && height - identity.heldSince + 1 >= 6, 'identity coins are at least 6 blocks old')
    const balance = await wallet.balance()
    assert.ok(balance.confirmed >= 1_000_000_000n, `spendable ${balance.confirmed}`)
  })

  it('the exclusive bar: a rich identity runs up a large tab; an anonymous one is turned away at the door', async () => {
    const bar = await seller('exclusive-bar.yaml')
    const rich = await buyer()
    // 1,000,000 sat of tab at 50,000 sat per call: 20 calls deferred, the 21st refused
    for (let i = 0; i < 20; i++) {
      const r = await deferredHash(rich, bar, 'rich-tab', true)
      assert.equal(r.status, Status.OK, `call ${i + 1}: ${r.detail}`)
    }
    const over = await deferredHash(rich, bar, 'rich-tab', true)
    assert.equal(over.status, Status.NO_DEFER, over.detail)
    assert.equal(over.amount, PRICE, 'no-defer says what would be accepted: the price, attached')
    const tab = await rich.opencloud.call(multiaddr(bar.addr), { service: 'payments', method: 'tab', args: ['rich-tab'], signers: [rich.payments!.wallet.identitySigner()] })
    assert.equal(tab.status, Status.OK, tab.detail)
    const view = JSON.parse(new TextDecoder().decode(tab.body))
    assert.equal(String(view.accrued), '1000000')

    // the same node without its coins in the request is a stranger here
    const anon = await deferredHash(rich, bar, 'anon-tab', false)
    assert.equal(anon.status, Status.ACCESS_DENIED, anon.detail)
    assert.match(anon.detail, /btc|bitcoin/i, 'the refusal says which credential would be accepted')
  })

  it('the open bar: an anonymous identity is capped at the small tab, then refused with no-defer', async () => {
    const bar = await seller('open-bar.yaml')
    const anon = await buyer()
    assert.equal((await deferredHash(anon, bar, 'small', false)).status, Status.OK)
    assert.equal((await deferredHash(anon, bar, 'small', false)).status, Status.OK)
    const third = await deferredHash(anon, bar, 'small', false)
    assert.equal(third.status, Status.NO_DEFER, third.detail)
    // coins do not buy a bigger tab at this bar
    const rich = await buyer()
    assert.equal((await deferredHash(rich, bar, 'small', true)).status, Status.OK)
    assert.equal((await deferredHash(rich, bar, 'small', true)).status, Status.OK)
    assert.equal((await deferredHash(rich, bar, 'small', true)).status, Status.NO_DEFER)
  })

  it('node.pay: auto pays a priced call; the seller’s wallet holds the payment after a block', async () => {
    const s = await seller('open-bar.yaml')
    const b = await buyer()
    const sellerWallet = s.payments?.wallet
    assert.ok(sellerWallet != null)
    const before = await sellerWallet.balance()
    const body = new Uint8Array(400 * 1024).fill(7)
    const res = await b.pay(multiaddr(s.addr), { service: 'storage', method: 'put', body }, { pay: { kind: 'attached', amount: 1n }, max: 10_000n })
    assert.equal(res.status, Status.OK, res.detail)
    assert.equal(res.kind, 'attached')
    assert.ok(res.paid >= 400n, `paid ${res.paid} for 400 KiB at 1 sat/KiB`)
    assert.ok(res.attempts.length >= 2, 'the first bid (1 sat) was too low and was raised')
    await chain.mine(1, await b.payments!.wallet.newAddress())
    const after = await sellerWallet.balance()
    assert.equal(after.confirmed - before.confirmed, res.paid, 'the seller received exactly what was paid')
  })

  it('the control API: wallet, paid call, promises; bad pay options are 400', async () => {
    const s = await seller('open-bar.yaml')
    const b = await buyer()
    const control = new ControlServer({ node: b, dataDir: b.dataDir })
    await control.start()
    try {
      const running = await findRunningNode(b.dataDir)
      assert.ok(running != null)
      const client = running.client
      const w = await client.wallet()
      assert.equal(w.chain, 'regtest')
      assert.equal(w.identityAddress, b.payments?.wallet.identityAddress)
      assert.ok(BigInt(w.balance.confirmed) > 0n)
      const res = await client.call({ target: s.addr, service: 'sha256', method: 'hash', body: Buffer.from('x').toString('base64'), pay: `defer:${PRICE}:time:3600`, max: String(PRICE) })
      assert.equal(res.status, 'ok', res.detail)
      assert.equal(res.payment?.kind, 'defer')
      assert.equal(res.payment?.promised, String(PRICE))
      const promises = await client.request('GET', '/promises') as { promises: unknown[] }
      assert.equal(promises.promises.length, 1)
      await assert.rejects(client.call({ target: s.addr, service: 'sha256', method: 'hash', pay: 'defer:lots', max: '1' }), (e: any) => e.status === 400 && /pay:/.test(e.message))
      await assert.rejects(client.call({ target: s.addr, service: 'sha256', method: 'hash', pay: 'auto' }), (e: any) => e.status === 400 && /max/.test(e.message))
      const mined = await client.mine(2)
      assert.ok(mined.height > 0)
      // the buyer runs the default policy (payments on, no policy given)
      const policy = await client.request('GET', '/policy') as { file: string | null, rules: number }
      assert.equal(policy.file, null)
      assert.ok(policy.rules >= 5)
      // no policy.yaml in the data dir: a reload looks again and keeps the default policy
      const reloaded = await client.request('POST', '/policy/reload', {}) as { file: string | null, rules: number }
      assert.equal(reloaded.file, null)
      assert.equal(reloaded.rules, policy.rules)
    } finally {
      await control.stop()
    }
  })

  it('a development chain mines on its own while transactions wait (autoMine), and not while none does', async () => {
    const b = await buyer()
    const wallet = b.payments!.wallet
    // the timer's ticks, run by the test itself: each tick is seen to happen, none is left to timing
    const ticks: Array<() => void> = []
    const realSetInterval = globalThis.setInterval
    globalThis.setInterval = ((fn: () => void, ms?: number) => {
      ticks.push(fn)
      return realSetInterval(() => {}, ms)
    }) as typeof setInterval
    let stop: () => void
    try {
      stop = chain.autoMine(200)
    } finally {
      globalThis.setInterval = realSetInterval
    }
    try {
      assert.equal(ticks.length, 1, 'autoMine runs on one interval timer')
      const tick = ticks[0]
      const heightBefore = await chain.height()
      // ticks with nothing waiting
      for (let i = 0; i < 5; i++) { tick() }
      const sent = await wallet.send(await wallet.newAddress(), 10_000n)
      tick()
      assert.ok(await eventually(async () => ((await chain.transaction(sent.txid))?.confirmations ?? 0) >= 1, 10_000), 'the payment confirmed without anyone mining')
      // every tick is queued with the chain's mining, so the ticks on an empty mempool would have
      // mined before the payment's block: exactly one block means they mined nothing
      assert.equal(await chain.height(), heightBefore + 1, 'one block, for the one tick that found a transaction waiting')
      tick()
      tick()
      const sent2 = await wallet.send(await wallet.newAddress(), 10_000n)
      tick()
      assert.ok(await eventually(async () => ((await chain.transaction(sent2.txid))?.confirmations ?? 0) >= 1, 10_000))
      assert.equal(await chain.height(), heightBefore + 2, 'the empty mempool after the first block made no block either')
    } finally {
      stop()
    }
  })

  it('auto promises on a fresh dev node\'s first call under the default policy; no coin moves', async () => {
    // the default policy (no policy file): a tab for a btc: credential with ≥ 100,000 sat held ≥ 6 blocks
    const s = await startNode({ payments: { chain, fulfilment: false }, storage: { pricing: { put: { base: 16n } } } })
    nodes.push(s)
    const b = await buyer()
    const before = await b.payments!.wallet.balance()
    for (let i = 0; i < 3; i++) {
      const res = await b.pay(multiaddr(s.addr), { service: 'storage', method: 'put', body: enc.encode(`piece ${i}`) }, { pay: { kind: 'auto' }, max: 1000n })
      assert.equal(res.status, Status.OK, res.detail)
      assert.equal(res.kind, 'defer', `call ${i + 1} was paid ${res.kind}`)
      assert.deepEqual(res.attempts.map(a => [a.kind, a.amount]), [['none', 0n], ['defer', 16n]])
      assert.equal(res.paid, 0n)
    }
    assert.deepEqual(await b.payments!.wallet.balance(), before, 'promises move no coin: no dust-sized output, no fee')
    const [promise] = await b.payments!.promises.outstanding()
    assert.equal(promise.promised, 48n)
  })

  it('a paid storage.get of a blob the seller does not have is not-found and charges nothing', async () => {
    const s = await startNode({ payments: { chain, fulfilment: false }, storage: { pricing: { get: { base: 16n } } } })
    nodes.push(s)
    const b = await buyer()
    const absent = 'ab'.repeat(32)
    for (const pay of [{ kind: 'attached' as const, amount: 16n }, { kind: 'auto' as const }]) {
      const res = await b.pay(multiaddr(s.addr), { service: 'storage', method: 'get', args: [absent] }, { pay, max: 1000n })
      assert.equal(res.status, Status.NOT_FOUND, res.detail)
      assert.equal(res.paid, 0n)
      assert.equal(res.txid, undefined)
      assert.equal(res.attempts.length, 1)
    }
    const credit = await b.opencloud.call(multiaddr(s.addr), { service: 'payments', method: 'credit' })
    assert.equal(JSON.parse(new TextDecoder().decode(credit.body)).credit, '0')
    assert.equal((await s.payments!.wallet.balance()).unconfirmed, 0n, 'no payment reached the seller')
  })

  it('a deferred call that is not served is taken off the tab', async () => {
    const s = await startNode({
      payments: { chain, fulfilment: false },
      policy: { file: fixture('open-bar.yaml') },
      storage: { capacity: 64 * 1024, pricing: { put: { rate: 1n, per: 1024n * MONTH } } }
    })
    nodes.push(s)
    const b = await buyer()
    const put = async (size: number): Promise<Status> => {
      const res = await b.opencloud.call(multiaddr(s.addr), {
        service: 'storage',
        method: 'put',
        body: new Uint8Array(size).fill(size % 251),
        paymentType: PaymentType.PAYMENT_DEFER,
        payment: { currency: 'BTC', amount: BigInt(size / 1024), txn: new Uint8Array(), deferId: 'served-only', deferThreshold: 'time:3600' }
      })
      return res.status
    }
    assert.equal(await put(32 * 1024), Status.OK)
    // over the seller's capacity: the gate took the promise, the method failed
    assert.equal(await put(48 * 1024), Status.INSUFFICIENT_STORAGE)
    const tab = await b.opencloud.call(multiaddr(s.addr), { service: 'payments', method: 'tab', args: ['served-only'] })
    const view = JSON.parse(new TextDecoder().decode(tab.body))
    assert.equal(String(view.accrued), '32', 'only the served put is owed')
  })

  it('a deferred promise is paid by the buyer’s fulfilment loop and the tab closes', async () => {
    const s = await seller('open-bar.yaml')
    const b = await buyer()
    const res = await b.pay(multiaddr(s.addr), { service: 'sha256', method: 'hash', body: enc.encode('later') }, { pay: { kind: 'defer', amount: PRICE, threshold: 'completion' }, max: PRICE })
    assert.equal(res.status, Status.OK, res.detail)
    assert.equal(res.kind, 'defer')
    const deferId = res.deferId
    assert.ok(deferId != null)
    // the loop runs every 500 ms; the seller sees the tab settled
    const deadline = Date.now() + 30_000
    let view: any
    while (Date.now() < deadline) {
      const tab = await b.opencloud.call(multiaddr(s.addr), { service: 'payments', method: 'tab', args: [deferId] })
      view = JSON.parse(new TextDecoder().decode(tab.body))
      if (view.status === 'settled') { break }
      await new Promise(resolve => setTimeout(resolve, 250))
    }
    assert.equal(view?.status, 'settled', JSON.stringify(view))
    assert.equal(String(view.paid), String(PRICE))
    // the buyer notes the settlement once the seller's answer is back
    while (Date.now() < deadline && (await b.payments!.promises.outstanding()).length > 0) {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    assert.equal((await b.payments!.promises.outstanding()).length, 0)
  })
})
