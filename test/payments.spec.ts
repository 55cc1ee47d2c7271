import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { p2wpkh, Transaction } from '@scure/btc-signer'
import { createLibp2p } from 'libp2p'
import { payAndCall, PaymentRefusedError } from '../src/payments/buyer/bidding.js'
import { FulfilmentLoop } from '../src/payments/buyer/fulfilment.js'
import { PromiseBook } from '../src/payments/buyer/promises.js'
import { PaymentGate } from '../src/payments/seller/gate.js'
import { paymentsService } from '../src/payments/seller/service.js'
import { InvalidThresholdError, parseThreshold, statusAt, TabStore, verifyEvidence } from '../src/payments/seller/tabs.js'
import { Wallet } from '../src/payments/wallet/wallet.js'
import { openCloudId, openCloudSigner, requestDigest, sha256 } from '../src/protocols/opencloud/api/signing.js'
import { ServiceError } from '../src/protocols/opencloud/api/template.js'
import { openCloud } from '../src/protocols/opencloud/net/opencloud.js'
import { PaymentType, Request, Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { storageService } from '../src/services/storage/index.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'
import { fundAddress, startRegtest } from './regtest.js'
import type { EmbeddedChain } from './regtest.js'
import type { AttachedCost, PayAndCallOptions } from '../src/payments/buyer/bidding.js'
import type { DeferredPromise, PendingPayment } from '../src/payments/buyer/promise.js'
import type { Evidence } from '../src/payments/seller/tabs.js'
import type { Stage } from '../src/protocols/opencloud/api/call.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { CallResult } from '../src/protocols/opencloud/net/client.js'
import type { OpenCloud } from '../src/protocols/opencloud/net/opencloud.js'
import type { PrivateKey } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'

const dec = new TextDecoder()
const json = (res: CallResult): any => JSON.parse(dec.decode(res.body))

/** storage.put: 1000 sat per call + 1 sat per byte */
/** 1000 sat + 1 sat per byte for the default lease (30 days: priced per byte·second) */
const PUT_PRICING = { base: 1000n, rate: 1n, per: 2_592_000n }
const BODY_SIZE = 100
const PUT_COST = 1100n
/** test.cheap: a price far below the dust limit of an attached payment */
const CHEAP = 16n
/** test.fail: priced, and always fails after the payment gate let it through */
const FAIL_PRICE = 100n

/** A service whose calls the gate lets through and the method then answers as it likes */
const testService = (): ServiceDefinition => ({
  name: 'test',
  version: '1.0.0',
  description: 'priced calls that succeed or fail',
  methods: {
    cheap: { description: 'ok', pricing: { base: CHEAP }, handler: () => ({ body: new TextEncoder().encode('ok') }) },
    fail: { description: 'fails', pricing: { base: FAIL_PRICE }, handler: () => { throw new ServiceError(Status.NOT_FOUND, 'gone meanwhile') } }
  }
})

interface PeerOptions {
  dir?: string
  key?: PrivateKey
  port?: number
  maxTab?: bigint
  allowDefer?: boolean
  minConfirmations?: number
  /** storage capacity, bytes */
  capacity?: number
}

/** One decloud peer built like an embedding app: libp2p + OpenCloud + storage + payments, its own wallet and LevelDB */
interface Peer {
  libp2p: Libp2p<{ opencloud: OpenCloud }>
  oc: OpenCloud
  store: Store
  wallet: Wallet
  tabs: TabStore
  gate: PaymentGate
  book: PromiseBook
  loop: FulfilmentLoop
  dir: string
  key: PrivateKey
  port: number
  addr: string
  peerId: string
  /** OpenCloud ID, `oc:<peer id>` */
  id: string
  stop(): Promise<void>
}

async function startPeer (chain: EmbeddedChain, opts: PeerOptions = {}): Promise<Peer> {
  const dir = opts.dir ?? await tempDir('decloud-pay-')
  const key = opts.key ?? await generateKeyPair('Ed25519')
  const store = new Store(join(dir, 'db'))
  await store.open()
  const wallet = await Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: chain })
  const tabs = new TabStore({ db: store.sub('tabs') })
  const storage = storageService({ db: store.sub('storage'), capacity: opts.capacity, pricing: { put: PUT_PRICING, get: { base: CHEAP } } })
  const gate = new PaymentGate({
    wallet,
    backend: chain,
    db: store.sub('payments'),
    tabs,
    maxTab: opts.maxTab,
    minConfirmations: opts.minConfirmations
  })
  // a seller whose policy takes no promises: the terms a policy's access stage writes for each call
  const access: Stage | undefined = opts.allowDefer === false
    ? (state) => { state.policy = { defer: 'this seller takes attached payments only', maxTab: 0n, minPayment: 0n }; return undefined }
    : undefined
  const libp2p = await createLibp2p({
    privateKey: key,
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${opts.port ?? 0}`] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      opencloud: openCloud({
        services: [storage, testService(), paymentsService({ wallet, tabs, credits: gate.credits })],
        access,
        payment: gate.stage
      })
    }
  })
  const book = new PromiseBook({ db: store.sub('promises') })
  const loop = new FulfilmentLoop({ opencloud: libp2p.services.opencloud, wallet, backend: chain, book, interval: 3_600_000 })
  const addr = libp2p.getMultiaddrs()[0].toString()
  const peerId = peerIdFromPrivateKey(key).toString()
  return {
    libp2p,
    oc: libp2p.services.opencloud,
    store,
    wallet,
    tabs,
    gate,
    book,
    loop,
    dir,
    key,
    port: Number(addr.split('/')[4]),
    addr,
    peerId,
    id: openCloudId(peerId),
    async stop () {
      await loop.stop()
      await libp2p.stop()
      await store.close()
    }
  }
}

/** The same peer again: same data dir, key and port */
async function restart (chain: EmbeddedChain, p: Peer, opts: PeerOptions = {}): Promise<Peer> {
  await p.stop()
  return startPeer(chain, { ...opts, dir: p.dir, key: p.key, port: p.port })
}

/** An address no test wallet owns, for block rewards */
function strangerAddress (chain: EmbeddedChain): string {
  return p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey()), chain.network).address as string
}

async function fund (chain: EmbeddedChain, p: Peer, amount?: bigint): Promise<void> {
  await fundAddress(chain, await p.wallet.newAddress(), amount)
}

/** confirmed + unconfirmed */
async function total (p: Peer): Promise<bigint> {
  const b = await p.wallet.balance()
  return b.confirmed + b.unconfirmed
}

async function tabOf (buyer: Peer, seller: Peer, deferId: string): Promise<any> {
  const res = await buyer.oc.call(seller.addr, { service: 'payments', method: 'tab', args: [deferId] })
  assert.equal(res.ok, true, res.detail)
  return json(res)
}

/** The caller's unused credit at a seller (payments.credit) */
async function creditAt (buyer: Peer, seller: Peer): Promise<bigint> {
  const res = await buyer.oc.call(seller.addr, { service: 'payments', method: 'credit' })
  assert.equal(res.ok, true, res.detail)
  return BigInt(json(res).credit)
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) { out.push(x) }
  return out
}

function opts (buyer: Peer, chain: EmbeddedChain, pay: PayAndCallOptions['pay'], max: bigint, extra: Partial<PayAndCallOptions> = {}): PayAndCallOptions {
  return { pay, max, wallet: buyer.wallet, promises: buyer.book, backend: chain, ...extra }
}

const put = (body = randomBytes(BODY_SIZE)): { service: string, method: string, body: Uint8Array } => ({ service: 'storage', method: 'put', body })

describe('payments on a regtest chain between real nodes', function () {
  this.timeout(120_000)

  let chain: EmbeddedChain
  let miner: string
  let seller: Peer
  let buyer: Peer
  const extra: Peer[] = []

  before(async () => {
    chain = await startRegtest()
    miner = strangerAddress(chain)
    seller = await startPeer(chain, { maxTab: 5000n })
    buyer = await startPeer(chain)
    await fund(chain, buyer)
  })

  after(async () => {
    for (const p of [buyer, seller, ...extra]) { await p?.stop().catch(() => {}) }
    await chain?.close()
  })

  it('pays storage.put with an attached transaction; the seller\'s balance grows by the price after a block', async () => {
    const before = await seller.wallet.balance()
    assert.equal(before.unconfirmed, 0n)
    const body = randomBytes(BODY_SIZE)
    const res = await payAndCall(buyer.oc, seller.addr, put(body), opts(buyer, chain, { kind: 'attached', amount: PUT_COST }, 5000n))
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.kind, 'attached')
    assert.equal(res.paid, PUT_COST)
    assert.match(res.txid ?? '', /^[0-9a-f]{64}$/)
    assert.equal(json(res).id, Buffer.from(sha256(body)).toString('hex'))
    // the seller broadcast it: in the mempool now
    assert.equal((await chain.transaction(res.txid as string))?.confirmations, 0)
    await chain.mine(1, miner)
    const after = await seller.wallet.balance()
    assert.equal(after.confirmed - before.confirmed, PUT_COST)
    // paid to the address payments.address gives this buyer
    const address = json(await buyer.oc.call(seller.addr, { service: 'payments', method: 'address' })).address
    const tx = Transaction.fromRaw((await chain.transaction(res.txid as string))?.raw as Uint8Array, { allowUnknownOutputs: true })
    const outs = Array.from({ length: tx.outputsLength }, (_, i) => ({ to: tx.getOutputAddress(i, chain.network), amount: tx.getOutput(i).amount }))
    assert.deepEqual(outs.filter(o => o.to === address).map(o => o.amount), [PUT_COST])
  })

  it('underpays, is told too-low with the price, raises the bid automatically and is served', async () => {
    const before = await total(seller)
    const reserved = new Set(buyer.wallet.reservedOutpoints())
    const res = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, { kind: 'attached', amount: 400n }, 2000n))
    assert.equal(res.ok, true, res.detail)
    assert.deepEqual(res.attempts.map(a => [a.kind, a.amount, a.path]), [
      ['attached', 400n, 'request-declined/payment-declined/too-low'],
      ['attached', PUT_COST, 'ok']
    ])
    assert.equal(res.paid, PUT_COST)
    // the refused transaction's coins were given back: only the accepted payment may hold new ones
    const tx = Transaction.fromRaw((await chain.transaction(res.txid as string))?.raw as Uint8Array)
    const spent = new Set(Array.from({ length: tx.inputsLength }, (_, i) => `${Buffer.from(tx.getInput(i).txid as Uint8Array).toString('hex')}:${tx.getInput(i).index}`))
    assert.deepEqual(buyer.wallet.reservedOutpoints().filter(o => !reserved.has(o) && !spent.has(o)), [])
    assert.equal(await total(seller) - before, PUT_COST)
  })

  it('auto promises where the seller allows a tab, at the seller\'s price; a free method stays free', async () => {
    // a buyer of its own, so its tab does not mix with the other tests'
    const fresh = await startPeer(chain)
    extra.push(fresh)
    await fund(chain, fresh)
    const before = await fresh.wallet.balance()
    const asked = await fresh.oc.call(seller.addr, put())
    assert.equal(asked.status, Status.TOO_LOW)
    assert.deepEqual(asked.acceptablePayment, { paymentType: PaymentType.PAYMENT_DEFER, currency: 'BTC', amount: PUT_COST }, 'a caller that may run a tab is offered one')
    const res = await payAndCall(fresh.oc, seller.addr, put(), opts(fresh, chain, { kind: 'auto' }, 5000n))
    assert.equal(res.ok, true, res.detail)
    assert.deepEqual(res.attempts.map(a => [a.kind, a.amount]), [['none', 0n], ['defer', PUT_COST]])
    assert.equal(res.kind, 'defer')
    assert.equal(res.promised, PUT_COST)
    assert.equal(res.paid, 0n)
    assert.equal(res.cost, undefined)
    assert.equal((await tabOf(fresh, seller, res.deferId as string)).owed, String(PUT_COST))
    // no coin moved: no fee, no dust-sized output
    assert.deepEqual(await fresh.wallet.balance(), before)
    const free = await payAndCall(buyer.oc, seller.addr, { service: 'storage', method: 'stat', args: [Buffer.from(sha256(randomBytes(4))).toString('hex')] }, opts(buyer, chain, { kind: 'auto' }, 0n))
    assert.equal(free.kind, 'none')
    assert.equal(free.status, Status.NOT_FOUND)
    assert.equal(free.paid, 0n)
  })

  it('gives up clearly when the price is above the max, and keeps no coins reserved', async () => {
    const reserved = new Set(buyer.wallet.reservedOutpoints())
    await assert.rejects(
      payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, { kind: 'attached', amount: 500n }, 800n)),
      (err: any) => {
        assert.equal(err.name, PaymentRefusedError.name)
        assert.deepEqual(err.tried, [500n])
        assert.equal(err.asked, PUT_COST)
        assert.match(err.message, /asks 1100 sat, over the max/)
        assert.match(err.message, /max 800 sat/)
        assert.match(err.detail, /storage\.put costs 1100 sat/)
        return true
      })
    // every coin reserved now was reserved before (the refused payment's were given back)
    assert.deepEqual(buyer.wallet.reservedOutpoints().filter(o => !reserved.has(o)), [])
    await assert.rejects(payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, { kind: 'auto' }, 1000n)), (err: any) => err.name === PaymentRefusedError.name && err.asked === PUT_COST)
    // a starting bid above the max is never sent
    await assert.rejects(payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, { kind: 'defer', amount: 3000n }, 2000n)), (err: any) => err.name === PaymentRefusedError.name && err.attempts.length === 0)
  })

  it('defers; the tab falls due at its value threshold; the fulfilment loop pays it and the tab closes', async () => {
    const before = await total(seller)
    const pay = { kind: 'defer' as const, amount: PUT_COST, threshold: 'value:3000' }
    const r1 = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))
    const r2 = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))
    assert.equal(r1.ok && r2.ok, true)
    assert.equal(r1.kind, 'defer')
    assert.equal(r1.promised, PUT_COST)
    assert.equal(r1.deferId, r2.deferId)
    const deferId = r1.deferId as string
    assert.deepEqual(pick(await tabOf(buyer, seller, deferId)), { accrued: '2200', paid: '0', owed: '2200', status: 'open', threshold: 'value:3000' })
    // nothing due yet: the loop pays nothing
    assert.deepEqual((await buyer.loop.runOnce()).settled, [])
    const r3 = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))
    assert.equal(r3.deferId, deferId)
    assert.deepEqual(pick(await tabOf(buyer, seller, deferId)), { accrued: '3300', paid: '0', owed: '3300', status: 'due', threshold: 'value:3000' })

    // the promises are signed evidence the seller can show
    const evidence = await collect(seller.tabs.evidence(buyer.id, deferId))
    assert.equal(evidence.length, 3)
    for (const ev of evidence) { assert.equal(await verifyEvidence(ev, { payer: buyer.id }), true) }
    assert.equal(await verifyEvidence(evidence[0], { payer: seller.id }), false)
    const forged: Evidence = { ...evidence[0], bodyHash: sha256(new Uint8Array([1])) }
    assert.equal(await verifyEvidence(forged), false)
    const decoded = Request.decode(evidence[0].request)
    assert.equal(decoded.payment?.deferId, deferId)
    assert.equal(decoded.payment?.amount, PUT_COST)
    assert.equal(decoded.body.byteLength, 0)

    const report = await buyer.loop.runOnce()
    assert.deepEqual(report.failed, [])
    assert.deepEqual(report.settled.map(s => [s.deferId, s.amount]), [[deferId, 3300n]])
    assert.deepEqual(pick(await tabOf(buyer, seller, deferId)), { accrued: '3300', paid: '3300', owed: '0', status: 'settled', threshold: 'value:3000' })
    const promise = await buyer.book.get(seller.peerId, deferId)
    assert.equal(promise?.state, 'settled')
    assert.equal(promise?.paid, 3300n)
    // the next promise goes under a new tab
    const r4 = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))
    assert.notEqual(r4.deferId, deferId)
    assert.deepEqual((await buyer.loop.runOnce()).settled, [])
    // deferred calls moved no coin; the settlement moved exactly the tab
    assert.equal(await total(seller) - before, 3300n)
  })

  it('a deferred call the method refused is taken off the seller\'s tab; the buyer pays nothing for it', async () => {
    const pay = { kind: 'defer' as const, amount: FAIL_PRICE, threshold: 'completion' }
    // test.fail answers not-found after the gate took the promise
    const res = await payAndCall(buyer.oc, seller.addr, { service: 'test', method: 'fail' }, opts(buyer, chain, pay, 5000n))
    assert.equal(res.status, Status.NOT_FOUND)
    assert.equal(res.promised, FAIL_PRICE)
    const deferId = res.deferId as string
    const mine = await buyer.book.get(seller.peerId, deferId)
    assert.deepEqual([mine?.promised, mine?.uncertain], [0n, FAIL_PRICE])
    // the seller took the promise back when the call failed
    const tab = pick(await tabOf(buyer, seller, deferId))
    assert.equal(tab.accrued, '0')
    assert.equal(tab.owed, '0')
    const before = await buyer.wallet.balance()
    const report = await buyer.loop.runOnce()
    assert.deepEqual(report.settled.filter(x => x.amount > 0n), [], 'nothing was paid for the call that was not served')
    assert.notEqual((await buyer.book.get(seller.peerId, deferId))?.state, 'paying')
    const after = await buyer.wallet.balance()
    assert.equal(after.confirmed + after.unconfirmed, before.confirmed + before.unconfirmed)
  })

  it('concurrent deferred calls on one tab lose no update', async () => {
    const pay = { kind: 'defer' as const, amount: PUT_COST, threshold: 'value:100000' }
    const results = await Promise.all(Array.from({ length: 4 }, async () => payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))))
    assert.ok(results.every(r => r.ok))
    const deferId = results[0].deferId as string
    assert.ok(results.every(r => r.deferId === deferId))
    const tab = await tabOf(buyer, seller, deferId)
    assert.equal(tab.accrued, String(4n * PUT_COST))
    assert.equal(tab.promises, 4)
    assert.equal((await buyer.book.get(seller.peerId, deferId))?.promised, 4n * PUT_COST)
  })

  it('at the tab limit the seller answers no-defer and the bidding switches to an attached payment', async () => {
    // the tab of the previous test owes 4400 of the seller's 5000 limit
    const pay = { kind: 'defer' as const, amount: PUT_COST, threshold: 'value:100000' }
    const res = await payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n))
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.kind, 'attached')
    assert.equal(res.paid, PUT_COST)
    assert.deepEqual(res.attempts.map(a => [a.kind, a.path]), [
      ['defer', 'request-declined/payment-declined/no-defer'],
      ['attached', 'ok']
    ])
    // not allowed to switch: a clear refusal naming the limit
    await assert.rejects(payAndCall(buyer.oc, seller.addr, put(), opts(buyer, chain, pay, 5000n, { allowAttached: false })),
      (err: any) => err.name === PaymentRefusedError.name && /over this node's limit of 5000 sat per tab/.test(err.detail))
  })

  it('refuses a defer-threshold it does not understand, naming the accepted forms', async () => {
    const res = await buyer.oc.call(seller.addr, {
      ...put(),
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: PUT_COST, txn: new Uint8Array(0), deferId: 'weird-threshold', deferThreshold: 'weekly' }
    })
    assert.equal(res.status, Status.BAD_REQUEST)
    assert.match(res.detail, /time:<seconds>.*value:<sats>.*completion/)
    const low = await buyer.oc.call(seller.addr, {
      ...put(),
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: 10n, txn: new Uint8Array(0), deferId: 'low', deferThreshold: '' }
    })
    assert.equal(low.status, Status.TOO_LOW)
    assert.deepEqual(low.acceptablePayment, { paymentType: PaymentType.PAYMENT_DEFER, currency: 'BTC', amount: PUT_COST })
  })

  it('refuses a replayed transaction, also when two requests race with it', async () => {
    const address = json(await buyer.oc.call(seller.addr, { service: 'payments', method: 'address' })).address
    const attach = (raw: Uint8Array, deferId = ''): any => ({ paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: raw, deferId, deferThreshold: '' } })
    const p1 = await buyer.wallet.createPayment(address, PUT_COST)
    const first = await buyer.oc.call(seller.addr, { ...put(), ...attach(p1.raw) })
    assert.equal(first.ok, true, first.detail)
    const again = await buyer.oc.call(seller.addr, { ...put(), ...attach(p1.raw) })
    assert.equal(again.status, Status.BAD_REQUEST)
    assert.equal(again.detail, `transaction ${p1.txid} was already used`)
    // nor can it be passed off as a tab payment
    const asSettle = await buyer.oc.call(seller.addr, { service: 'payments', method: 'settle', args: ['replay'], ...attach(p1.raw, 'replay') })
    assert.equal(asSettle.status, Status.BAD_REQUEST)

    const p2 = await buyer.wallet.createPayment(address, PUT_COST)
    const raced = await Promise.all(Array.from({ length: 3 }, async () => buyer.oc.call(seller.addr, { ...put(), ...attach(p2.raw) })))
    assert.equal(raced.filter(r => r.ok).length, 1)
    assert.deepEqual(raced.filter(r => !r.ok).map(r => r.detail), [`transaction ${p2.txid} was already used`, `transaction ${p2.txid} was already used`])
  })

  it('rejects the second of two transactions spending the same coin (double spend)', async () => {
    const payer = await startPeer(chain)
    extra.push(payer)
    await fund(chain, payer, 50_000n)
    const address = json(await payer.oc.call(seller.addr, { service: 'payments', method: 'address' })).address
    const a = await payer.wallet.createPayment(address, PUT_COST)
    // give the coin back and spend it again: two signed transactions, one coin
    await payer.wallet.release(a.txid)
    const b = await payer.wallet.createPayment(address, PUT_COST + 10n)
    const inputs = (raw: Uint8Array): string[] => {
      const tx = Transaction.fromRaw(raw)
      return Array.from({ length: tx.inputsLength }, (_, i) => `${Buffer.from(tx.getInput(i).txid as Uint8Array).toString('hex')}:${tx.getInput(i).index}`)
    }
    assert.deepEqual(inputs(a.raw), inputs(b.raw))
    assert.notEqual(a.txid, b.txid)
    const attach = (raw: Uint8Array): any => ({ paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: raw, deferId: '', deferThreshold: '' } })
    const first = await payer.oc.call(seller.addr, { ...put(), ...attach(a.raw) })
    assert.equal(first.ok, true, first.detail)
    const second = await payer.oc.call(seller.addr, { ...put(), ...attach(b.raw) })
    assert.equal(second.status, Status.BAD_REQUEST)
    assert.equal(second.detail, 'transaction conflicts with a spent output (double spend)')
    assert.equal(await chain.transaction(b.txid), undefined)
  })

  it('answers bad-request to a payment that is not a transaction, and too-low to one paying someone else', async () => {
    const attach = (raw: Uint8Array): any => ({ paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: raw, deferId: '', deferThreshold: '' } })
    for (const garbage of [randomBytes(200), new Uint8Array([2, 0, 0, 0, 0]), randomBytes(1)]) {
      const res = await buyer.oc.call(seller.addr, { ...put(), ...attach(garbage) })
      assert.equal(res.status, Status.BAD_REQUEST)
      assert.equal(res.detail, 'payment.txn is not a bitcoin transaction')
    }
    const huge = await buyer.oc.call(seller.addr, { ...put(), ...attach(randomBytes(200_000)) })
    assert.equal(huge.status, Status.BAD_REQUEST)
    assert.match(huge.detail, /exceeds 100000 bytes/)
    const missing = await buyer.oc.call(seller.addr, { ...put(), paymentType: PaymentType.PAYMENT_ATTACHED })
    assert.equal(missing.status, Status.BAD_REQUEST)
    // a real transaction, paying a stranger: nothing to this buyer's payment address
    const elsewhere = await buyer.wallet.createPayment(strangerAddress(chain), PUT_COST)
    const res = await buyer.oc.call(seller.addr, { ...put(), ...attach(elsewhere.raw) })
    await buyer.wallet.release(elsewhere.txid)
    assert.equal(res.status, Status.TOO_LOW)
    assert.match(res.detail, /pays 0 sat to your payment address/)
    assert.equal(await chain.transaction(elsewhere.txid), undefined)
  })

  it('a seller that takes no deferred payment says no-defer; the buyer pays attached instead', async () => {
    const strict = await startPeer(chain, { allowDefer: false })
    extra.push(strict)
    const res = await payAndCall(buyer.oc, strict.addr, put(), opts(buyer, chain, { kind: 'defer', amount: PUT_COST }, 5000n))
    assert.equal(res.kind, 'attached')
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.attempts[0].path, 'request-declined/payment-declined/no-defer')
  })

  it('a seller that wants a confirmation declines the payment until the same transaction has one', async () => {
    const careful = await startPeer(chain, { minConfirmations: 1 })
    extra.push(careful)
    const address = json(await buyer.oc.call(careful.addr, { service: 'payments', method: 'address' })).address
    const payment = await buyer.wallet.createPayment(address, PUT_COST)
    const call = { ...put(), paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: payment.raw as Uint8Array<ArrayBuffer>, deferId: '', deferThreshold: '' } }
    const first = await buyer.oc.call(careful.addr, call)
    assert.equal(first.status, Status.PAYMENT_DECLINED)
    assert.match(first.detail, /has 0 of the 1 confirmations this node requires: send the same transaction again/)
    // broadcast though: in the mempool, waiting for a block
    assert.equal((await chain.transaction(payment.txid))?.confirmations, 0)
    // nobody else can claim it meanwhile
    const other = await startPeer(chain)
    extra.push(other)
    const stolen = await other.oc.call(careful.addr, call)
    assert.equal(stolen.status, Status.TOO_LOW)
    assert.match(stolen.detail, /pays 0 sat to your payment address \(1100 sat go to another of this node's addresses/)
    await chain.mine(1, miner)
    const second = await buyer.oc.call(careful.addr, call)
    assert.equal(second.ok, true, second.detail)
    const third = await buyer.oc.call(careful.addr, call)
    assert.equal(third.detail, `transaction ${payment.txid} was already used`)
  })

  it('payAndCall to a seller that wants a confirmation gives up with the pending transaction, which is sent again after a block', async () => {
    const careful = await startPeer(chain, { minConfirmations: 1 })
    extra.push(careful)
    let pending: { txid: string, raw: Uint8Array } | undefined
    await assert.rejects(payAndCall(buyer.oc, careful.addr, put(), opts(buyer, chain, { kind: 'attached', amount: PUT_COST }, 5000n)), (err: any) => {
      assert.equal(err.name, PaymentRefusedError.name)
      pending = err.pending
      return true
    })
    assert.ok(pending != null, 'the refusal carries the transaction that is out')
    assert.equal((await chain.transaction(pending.txid))?.confirmations, 0)
    await chain.mine(1, miner)
    const again = await buyer.oc.call(careful.addr, { ...put(), paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: pending.raw as Uint8Array<ArrayBuffer>, deferId: '', deferThreshold: '' } })
    assert.equal(again.ok, true, again.detail)
  })

  it('answers server-error while its chain backend is down, without burning the transaction', async () => {
    // a seller on a chain of its own, which goes away
    const lonely = await startRegtest()
    const cut = await startPeer(lonely)
    extra.push(cut)
    try {
      const address = json(await buyer.oc.call(cut.addr, { service: 'payments', method: 'address' })).address
      const payment = await buyer.wallet.createPayment(address, PUT_COST)
      const call = { ...put(), paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: payment.raw as Uint8Array<ArrayBuffer>, deferId: '', deferThreshold: '' } }
      await lonely.close()
      const res = await buyer.oc.call(cut.addr, call)
      assert.equal(res.status, Status.SERVER_ERROR)
      assert.equal(res.detail, 'the chain backend is unavailable; try again later')
      // the txid was not burnt: sent again, it is judged afresh, not refused as used
      const again = await buyer.oc.call(cut.addr, call)
      assert.equal(again.status, Status.SERVER_ERROR)
      await buyer.wallet.release(payment.txid)
    } finally {
      await lonely.close()
    }
  })

  it('payments.tab and payments.settle answer clearly when misused', async () => {
    const none = await buyer.oc.call(seller.addr, { service: 'payments', method: 'tab', args: ['no-such-tab'] })
    assert.equal(none.status, Status.NOT_FOUND)
    const bad = await buyer.oc.call(seller.addr, { service: 'payments', method: 'tab', args: ['a/b'] })
    assert.equal(bad.status, Status.BAD_REQUEST)
    const unpaid = await buyer.oc.call(seller.addr, { service: 'payments', method: 'settle', args: ['t1'] })
    assert.equal(unpaid.status, Status.BAD_REQUEST)
    assert.match(unpaid.detail, /settle needs payment-type attached with payment.defer_id t1/)
    const other = await buyer.oc.call(seller.addr, { service: 'storage', method: 'put', body: randomBytes(8), paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'EUR', amount: 5n, txn: randomBytes(100), deferId: '', deferThreshold: '' } })
    assert.equal(other.status, Status.BAD_REQUEST)
    assert.match(other.detail, /takes payment in BTC/)
  })

  ;['after the payment was persisted, before it was sent', 'after the seller took the payment, before the buyer noted it'].forEach((crash) => {
    it(`restarting both nodes ${crash} still settles the tab exactly once`, async () => {
      let s = await startPeer(chain)
      let b = await startPeer(chain)
      extra.push(s, b)
      await fund(chain, b)
      const pay = { kind: 'defer' as const, amount: PUT_COST, threshold: 'value:2000' }
      const r1 = await payAndCall(b.oc, s.addr, put(), opts(b, chain, pay, 5000n))
      const r2 = await payAndCall(b.oc, s.addr, put(), opts(b, chain, pay, 5000n))
      assert.equal(r1.deferId, r2.deferId)
      const deferId = r1.deferId as string
      const [due] = await b.book.due()
      assert.equal(due.deferId, deferId)
      const paying = await b.loop.prepare(due)
      const payment = paying?.payment
      assert.ok(payment != null)
      assert.equal(payment.amount, 2200n)
      if (crash.startsWith('after the seller')) {
        // what the loop sends, answered ok, but the buyer stops before it notes it
        const res = await b.oc.call(s.addr, {
          service: 'payments',
          method: 'settle',
          args: [deferId],
          paymentType: PaymentType.PAYMENT_ATTACHED,
          payment: { currency: 'BTC', amount: payment.amount, txn: payment.raw as Uint8Array<ArrayBuffer>, deferId, deferThreshold: '' }
        })
        assert.equal(res.ok, true, res.detail)
        assert.equal(json(res).status, 'settled')
      }
      assert.equal((await b.book.get(s.peerId, deferId))?.state, 'paying')

      s = await restart(chain, s)
      b = await restart(chain, b)
      extra.push(s, b)
      // the loop runs as it starts
      await b.loop.start()
      const report = await b.loop.idle()
      assert.deepEqual(report.failed, [])
      assert.deepEqual(report.settled.map(x => [x.deferId, x.txid, x.amount]), [[deferId, payment.txid, 2200n]])
      assert.equal((await b.book.get(s.peerId, deferId))?.state, 'settled')
      const tab = await s.tabs.get(b.id, deferId)
      assert.equal(tab?.status, 'settled')
      assert.equal(tab?.paid, 2200n)
      assert.equal(tab?.payments, 1)
      // nothing more to pay, however often the loop runs
      assert.deepEqual((await b.loop.runOnce()).settled, [])
      await chain.mine(1, miner)
      assert.equal((await s.wallet.balance()).confirmed, 2200n)
      const received = (await s.wallet.history()).filter(t => t.delta > 0n)
      assert.deepEqual(received.map(t => [t.txid, t.delta]), [[payment.txid, 2200n]])
    })
  })

  it('an overdue unpaid tab is swept into a broken promise; the payer is refused until it pays', async () => {
    const s = await startPeer(chain)
    const b = await startPeer(chain)
    extra.push(s, b)
    await fund(chain, b)
    const now = Date.now()
    const r = await payAndCall(b.oc, s.addr, put(), opts(b, chain, { kind: 'defer', amount: PUT_COST, threshold: 'time:60' }, 5000n))
    const deferId = r.deferId as string
    assert.equal(await s.tabs.sweep(now + 30_000), 0)
    // due at +60 s, broken after the grace period
    assert.equal(await s.tabs.sweep(now + 60_000 + s.tabs.grace - 5_000), 0)
    assert.equal(await s.tabs.sweep(now + 60_000 + s.tabs.grace + 5_000), 1)
    assert.equal(await s.tabs.sweep(now + 60_000 + s.tabs.grace + 10_000), 0)
    const broken = await collect(s.tabs.brokenPromises())
    assert.equal(broken.length, 1)
    assert.deepEqual([broken[0].payer, broken[0].deferId, broken[0].owed], [b.id, deferId, PUT_COST])
    assert.ok(broken[0].dueAt >= now + 60_000 && broken[0].settledAt == null)
    assert.equal((await tabOf(b, s, deferId)).status, 'broken')
    // no more credit for this payer, on any tab
    await assert.rejects(payAndCall(b.oc, s.addr, put(), opts(b, chain, { kind: 'defer', amount: PUT_COST, threshold: 'time:60' }, 5000n, { allowAttached: false })),
      (err: any) => err.name === PaymentRefusedError.name && /is broken/.test(err.detail))
    // paying late settles the tab; the broken promise stays on record, marked settled
    const report = await b.loop.runOnce(now + 120_000)
    assert.deepEqual(report.settled.map(x => [x.deferId, x.amount]), [[deferId, PUT_COST]])
    assert.equal((await tabOf(b, s, deferId)).status, 'settled')
    const after = await collect(s.tabs.brokenPromises())
    assert.equal(after.length, 1)
    assert.ok(after[0].settledAt != null)
    const again = await payAndCall(b.oc, s.addr, put(), opts(b, chain, { kind: 'defer', amount: PUT_COST }, 5000n))
    assert.equal(again.kind, 'defer')
  })

  it('auto pays attached where the seller allows no tab, telling the true cost first; what the dust limit adds stays as credit and pays the next calls', async () => {
    const strict = await startPeer(chain, { allowDefer: false })
    extra.push(strict)
    const asked = await buyer.oc.call(strict.addr, { service: 'test', method: 'cheap' })
    assert.deepEqual(asked.acceptablePayment, { paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: CHEAP })
    const heard: AttachedCost[] = []
    let sentBefore = true
    const res = await payAndCall(buyer.oc, strict.addr, { service: 'test', method: 'cheap' }, opts(buyer, chain, { kind: 'auto' }, 1000n, {
      onAttached: async (c) => {
        heard.push(c)
        // told before the seller has the transaction
        const r = await creditAt(buyer, strict)
        sentBefore = r !== 0n
      }
    }))
    assert.equal(res.ok, true, res.detail)
    assert.equal(sentBefore, false)
    assert.equal(res.kind, 'attached')
    assert.deepEqual(res.attempts.map(a => [a.kind, a.amount]), [['none', 0n], ['attached', 294n]])
    assert.equal(heard.length, 1)
    assert.deepEqual(res.cost, heard[0])
    const c = heard[0]
    assert.deepEqual([c.price, c.dustMinimum, c.amount], [CHEAP, 294n, 294n])
    assert.ok(c.fee > 0n, `fee ${c.fee}`)
    assert.equal(c.total, c.amount + c.fee)
    const tx = await chain.transaction(res.txid as string)
    assert.ok(tx != null)
    // the seller keeps the price; the rest of the dust-sized output is the buyer's credit there
    assert.equal(await creditAt(buyer, strict), 294n - CHEAP)
    // the next calls are paid from it: no transaction, served on the first request
    const reserved = buyer.wallet.reservedOutpoints().length
    for (let i = 1; i <= 3; i++) {
      const next = await payAndCall(buyer.oc, strict.addr, { service: 'test', method: 'cheap' }, opts(buyer, chain, { kind: 'auto' }, 1000n))
      assert.equal(next.ok, true, next.detail)
      assert.deepEqual(next.attempts.map(a => [a.kind, a.path]), [['none', 'ok']])
      assert.equal(await creditAt(buyer, strict), 294n - CHEAP - BigInt(i) * CHEAP)
    }
    assert.equal(buyer.wallet.reservedOutpoints().length, reserved)
  })

  it('an attached payment for a call that then fails is credited back in full, kept across a restart, and pays the next call', async () => {
    let strict = await startPeer(chain, { allowDefer: false })
    extra.push(strict)
    const res = await payAndCall(buyer.oc, strict.addr, { service: 'test', method: 'fail' }, opts(buyer, chain, { kind: 'auto' }, 1000n))
    // the gate took the payment, then the method failed
    assert.equal(res.status, Status.NOT_FOUND)
    assert.equal(res.kind, 'attached')
    assert.equal(res.paid, 294n)
    assert.equal((await chain.transaction(res.txid as string))?.confirmations, 0)
    // 194 sat beyond the price, and the price of the call it could not serve
    assert.equal(await creditAt(buyer, strict), 294n)
    strict = await restart(chain, strict, { allowDefer: false })
    extra.push(strict)
    assert.equal(await creditAt(buyer, strict), 294n)
    const again = await payAndCall(buyer.oc, strict.addr, { service: 'test', method: 'fail' }, opts(buyer, chain, { kind: 'auto' }, 1000n))
    // paid from credit, not served, credited back: never charged twice, never lost
    assert.deepEqual(again.attempts.map(a => [a.kind, a.path]), [['none', 'client-error/not-found']])
    assert.equal(await creditAt(buyer, strict), 294n)
    const next = await payAndCall(buyer.oc, strict.addr, { service: 'test', method: 'cheap' }, opts(buyer, chain, { kind: 'auto' }, 1000n))
    assert.deepEqual(next.attempts.map(a => [a.kind, a.path]), [['none', 'ok']])
    assert.equal(await creditAt(buyer, strict), 294n - CHEAP)
  })

  it('a paid storage.get of a blob the seller does not have, or past its end, and a put that does not fit, are refused before any payment', async () => {
    const small = await startPeer(chain, { allowDefer: false, capacity: 150 })
    extra.push(small)
    const reserved = new Set(buyer.wallet.reservedOutpoints())
    const absent = Buffer.from(sha256(randomBytes(8))).toString('hex')
    for (const pay of [{ kind: 'attached' as const, amount: CHEAP }, { kind: 'auto' as const }]) {
      const get = await payAndCall(buyer.oc, small.addr, { service: 'storage', method: 'get', args: [absent] }, opts(buyer, chain, pay, 1000n))
      assert.equal(get.status, Status.NOT_FOUND)
      assert.equal(get.attempts.length, 1)
      assert.equal(get.paid, 0n)
      assert.equal(get.txid, undefined)
    }
    // a blob it has, read past its end
    const body = randomBytes(100)
    const stored = await payAndCall(buyer.oc, small.addr, put(body), opts(buyer, chain, { kind: 'auto' }, 5000n))
    assert.equal(stored.ok, true, stored.detail)
    const id: string = json(stored).id
    const credit = await creditAt(buyer, small)
    const past = await payAndCall(buyer.oc, small.addr, { service: 'storage', method: 'get', args: [id, '101'] }, opts(buyer, chain, { kind: 'attached', amount: CHEAP }, 1000n))
    assert.equal(past.status, Status.BAD_REQUEST)
    assert.match(past.detail, /past the end of the blob \(100 bytes\)/)
    // 100 bytes stored of 150: another 100 do not fit
    const full = await payAndCall(buyer.oc, small.addr, put(randomBytes(100)), opts(buyer, chain, { kind: 'attached', amount: PUT_COST }, 5000n))
    assert.equal(full.status, Status.INSUFFICIENT_STORAGE)
    assert.equal(full.paid, 0n)
    assert.equal(past.paid, 0n)
    // the same content again takes no room: it passes the check and is paid for
    const same = await payAndCall(buyer.oc, small.addr, put(body), opts(buyer, chain, { kind: 'auto' }, 5000n))
    assert.equal(same.ok, true, same.detail)
    // nothing was charged for the refused calls: no credit moved, no coin of theirs stays reserved
    assert.equal(await creditAt(buyer, small), credit)
    const mine = new Set<string>()
    for (const t of [stored.txid, same.txid]) {
      const tx = Transaction.fromRaw((await chain.transaction(t as string))?.raw as Uint8Array)
      for (let i = 0; i < tx.inputsLength; i++) { mine.add(`${Buffer.from(tx.getInput(i).txid as Uint8Array).toString('hex')}:${tx.getInput(i).index}`) }
    }
    assert.deepEqual(buyer.wallet.reservedOutpoints().filter(o => !reserved.has(o) && !mine.has(o)), [])
  })

  it('a tab\'s settlement transaction is not accepted again as payment for a priced call', async () => {
    const b = await startPeer(chain)
    extra.push(b)
    await fund(chain, b)
    const r = await payAndCall(b.oc, seller.addr, put(), opts(b, chain, { kind: 'defer', amount: PUT_COST, threshold: 'completion' }, 5000n))
    assert.equal(r.kind, 'defer')
    const deferId = r.deferId as string
    const report = await b.loop.runOnce()
    assert.deepEqual(report.settled.map(x => [x.deferId, x.amount]), [[deferId, PUT_COST]])
    const settlement = await chain.transaction(report.settled[0].txid)
    assert.ok(settlement != null)
    const attach = (id: string): any => ({ paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: PUT_COST, txn: settlement.raw, deferId: id, deferThreshold: '' } })
    // the same payer, naming the same tab, or none: it paid the tab, it pays nothing else
    for (const id of [deferId, '']) {
      const res = await b.oc.call(seller.addr, { ...put(), ...attach(id) })
      assert.equal(res.status, Status.BAD_REQUEST, `defer id "${id}": ${res.detail}`)
      assert.equal(res.detail, `transaction ${settlement.txid} was already used`)
    }
    // settling again with it is still fine (a buyer retrying after a crash), and credits nothing twice
    const again = await b.oc.call(seller.addr, { service: 'payments', method: 'settle', args: [deferId], ...attach(deferId) })
    assert.equal(again.ok, true, again.detail)
    assert.equal(json(again).paid, String(PUT_COST))
  })
})

function pick (tab: any): Record<string, string> {
  return { accrued: tab.accrued, paid: tab.paid, owed: tab.owed, status: tab.status, threshold: tab.threshold }
}

describe('tabs (TabStore on LevelDB)', () => {
  let store: Store
  let tabs: TabStore
  let key: PrivateKey
  let payer: string

  /** a signed defer request, as a payer's node makes it */
  async function signed (deferId: string, amount: bigint): Promise<{ request: Request, bodyHash: Uint8Array }> {
    const body = randomBytes(16)
    const signer = openCloudSigner(key, peerIdFromPrivateKey(key))
    const unsigned: Request = {
      id: [signer.credential],
      sig: [],
      nonce: randomBytes(16),
      service: 'storage',
      method: 'put',
      args: [],
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount, txn: new Uint8Array(0), deferId, deferThreshold: '' },
      body,
      audience: 'oc:seller',
      signResponse: false
    }
    const bodyHash = sha256(body)
    const sig = await signer.sign(requestDigest(unsigned, bodyHash))
    return { request: { ...unsigned, sig: [sig as Uint8Array<ArrayBuffer>] }, bodyHash }
  }

  beforeEach(async () => {
    store = new Store(join(await tempDir('decloud-tabs-'), 'db'))
    await store.open()
    tabs = new TabStore({ db: store.sub('tabs'), maxOpenTabsPerPayer: 2, maxEvidencePerTab: 3 })
    key = await generateKeyPair('Ed25519')
    payer = openCloudId(peerIdFromPrivateKey(key))
  })

  afterEach(async () => {
    await store.close()
  })

  it('parses the accepted thresholds and names them when refusing others', () => {
    assert.deepEqual(parseThreshold(''), { kind: 'time', seconds: 3600 })
    assert.deepEqual(parseThreshold('time:60'), { kind: 'time', seconds: 60 })
    assert.deepEqual(parseThreshold('value:5000'), { kind: 'value', sats: 5000n })
    assert.deepEqual(parseThreshold('completion'), { kind: 'completion' })
    for (const bad of ['time:0', 'time:-1', 'time:1.5', 'value:0', 'value:x', 'monthly', 'time:', 'TIME:60', `value:${2n ** 64n}`]) {
      assert.throws(() => parseThreshold(bad), (err: any) => err.name === InvalidThresholdError.name, bad)
    }
    assert.throws(() => parseThreshold('monthly'), /time:<seconds>.*value:<sats>.*completion/)
  })

  it('keeps a bounded number of evidence records, oldest dropped, counts kept', async () => {
    for (let i = 0; i < 5; i++) {
      const out = await tabs.promise({ payer, deferId: 't1', amount: 10n, maxTab: 1000n, ...await signed('t1', 10n) })
      assert.equal(out.ok, true)
    }
    const tab = await tabs.get(payer, 't1')
    assert.equal(tab?.promises, 5)
    assert.equal(tab?.accrued, 50n)
    assert.equal(tab?.evidenceDropped, 2)
    const ev = await collect(tabs.evidence(payer, 't1'))
    assert.deepEqual(ev.map(e => e.seq), [3, 4, 5])
    for (const e of ev) { assert.equal(await verifyEvidence(e), true) }
  })

  it('limits open tabs per payer and the amount one tab may owe', async () => {
    assert.equal((await tabs.promise({ payer, deferId: 'a', amount: 10n, maxTab: 100n, ...await signed('a', 10n) })).ok, true)
    const over = await tabs.promise({ payer, deferId: 'a', amount: 91n, maxTab: 100n, ...await signed('a', 91n) })
    assert.equal(over.ok, false)
    assert.equal(!over.ok && over.reason, 'over-limit')
    assert.equal((await tabs.promise({ payer, deferId: 'b', amount: 10n, maxTab: 100n, ...await signed('b', 10n) })).ok, true)
    const third = await tabs.promise({ payer, deferId: 'c', amount: 10n, maxTab: 100n, ...await signed('c', 10n) })
    assert.equal(!third.ok && third.reason, 'too-many-tabs')
    // settling one frees a slot; a settled tab takes no more promises
    await tabs.credit({ payer, deferId: 'a', amount: 10n, txid: 'aa'.repeat(32) })
    assert.equal((await tabs.get(payer, 'a'))?.status, 'settled')
    const onSettled = await tabs.promise({ payer, deferId: 'a', amount: 10n, maxTab: 100n, ...await signed('a', 10n) })
    assert.equal(!onSettled.ok && onSettled.reason, 'settled')
    assert.equal((await tabs.promise({ payer, deferId: 'c', amount: 10n, maxTab: 100n, ...await signed('c', 10n) })).ok, true)
    // the same transaction is credited once
    const again = await tabs.credit({ payer, deferId: 'a', amount: 10n, txid: 'aa'.repeat(32) })
    assert.equal(again.credited, false)
    assert.equal((await tabs.get(payer, 'a'))?.paid, 10n)
  })

  it('a value threshold never reached still falls due at the latest due time; longer time thresholds are refused', async () => {
    const now = Date.now()
    const day = 24 * 3600_000
    const out = await tabs.promise({ payer, deferId: 'slow', amount: 10n, maxTab: 1000n, threshold: parseThreshold('value:500'), now, ...await signed('slow', 10n) })
    assert.equal(out.ok, true)
    assert.equal(statusAt(out.ok ? out.tab : ({} as any), now + day - 1), 'open')
    assert.equal(statusAt(out.ok ? out.tab : ({} as any), now + day), 'due')
    assert.equal(await tabs.sweep(now + day + tabs.grace - 1), 0)
    assert.equal(await tabs.sweep(now + day + tabs.grace), 1)
    const [broken] = await collect(tabs.brokenPromises())
    assert.deepEqual([broken.deferId, broken.owed, broken.dueAt], ['slow', 10n, now + day])
    const long = await tabs.promise({ payer: 'oc:other', deferId: 'long', amount: 10n, maxTab: 1000n, threshold: parseThreshold('time:90000'), ...await signed('long', 10n) })
    assert.equal(!long.ok && long.reason, 'threshold')
    assert.match(!long.ok ? long.detail : '', /up to 86400 seconds/)
  })

  it('a tab paid before its first promise is still swept when its promises go unpaid', async () => {
    const now = Date.now()
    const day = 24 * 3600_000
    await tabs.credit({ payer, deferId: 'pre', amount: 5n, txid: 'bb'.repeat(32), now })
    const out = await tabs.promise({ payer, deferId: 'pre', amount: 15n, maxTab: 1000n, now, ...await signed('pre', 15n) })
    assert.equal(out.ok, true)
    assert.equal(await tabs.sweep(now + day + tabs.grace - 1), 0)
    assert.equal(await tabs.sweep(now + day + tabs.grace), 1)
    const [broken] = await collect(tabs.brokenPromises())
    assert.deepEqual([broken.deferId, broken.owed, broken.paid], ['pre', 10n, 5n])
    assert.equal((await tabs.get(payer, 'pre'))?.status, 'broken')
  })

  it('a promise taken back below a value threshold makes the tab not due again', async () => {
    const now = Date.now()
    for (const amount of [10n, 10n]) {
      assert.equal((await tabs.promise({ payer, deferId: 'v', amount, maxTab: 1000n, threshold: parseThreshold('value:20'), now, ...await signed('v', amount) })).ok, true)
    }
    const due = await tabs.get(payer, 'v')
    assert.equal(due != null && statusAt(due, now), 'due')
    assert.equal(await tabs.withdraw({ payer, deferId: 'v', amount: 10n, reason: 'status 500', now }), true)
    const after = await tabs.get(payer, 'v')
    assert.equal(after?.dueAt, undefined)
    assert.equal(after != null && statusAt(after, now + 1), 'open')
    assert.equal(await tabs.sweep(now + 2 * tabs.grace), 0)
  })

  it('serializes concurrent promises on one tab', async () => {
    const inputs = await Promise.all(Array.from({ length: 20 }, async () => signed('busy', 7n)))
    const outs = await Promise.all(inputs.map(async i => tabs.promise({ payer, deferId: 'busy', amount: 7n, maxTab: 10_000n, ...i })))
    assert.ok(outs.every(o => o.ok))
    const tab = await tabs.get(payer, 'busy')
    assert.equal(tab?.accrued, 140n)
    assert.equal(tab?.promises, 20)
  })
})

describe('promise book (PromiseBook on LevelDB)', () => {
  let store: Store
  let book: PromiseBook
  let seller: string

  beforeEach(async () => {
    store = new Store(join(await tempDir('decloud-book-'), 'db'))
    await store.open()
    book = new PromiseBook({ db: store.sub('promises') })
    seller = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  })

  afterEach(async () => {
    await store.close()
  })

  it('two concurrent beginPayments of one promise: exactly one starts paying it, the other is refused', async () => {
    await book.record({ seller, target: `/ip4/127.0.0.1/tcp/1/p2p/${seller}`, deferId: 'race', amount: 500n, threshold: 'completion' })
    const payment = (n: number): PendingPayment => ({ txid: String(n).repeat(64).slice(0, 64), raw: new Uint8Array([n]), amount: 500n, address: 'bcrt1qexample', at: Date.now() })
    // many at once, so the race is not left to one lucky interleaving
    const results = await Promise.allSettled(Array.from({ length: 8 }, async (_, i) => book.beginPayment(seller, 'race', payment(i + 1))))
    const won = results.filter(r => r.status === 'fulfilled')
    assert.equal(won.length, 1, 'one payment for one promise')
    for (const r of results.filter(r => r.status === 'rejected')) {
      assert.match(String((r as PromiseRejectedResult).reason?.message), /is already being paid by/)
    }
    const txid = (won[0] as PromiseFulfilledResult<DeferredPromise>).value.payment?.txid
    // what is persisted is the payment that won
    const stored = await book.get(seller, 'race')
    assert.equal(stored?.state, 'paying')
    assert.equal(stored?.payment?.txid, txid)
  })
})
