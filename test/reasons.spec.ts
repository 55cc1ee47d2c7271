/**
 * Typed refusal reasons (docs/protocol.md "Reasons") and the call state
 * that carries the policy's terms and the units of service: real nodes over
 * loopback, a real gate with its tabs on LevelDB, a real regtest chain.
 *
 * The seller here rewords every no-defer detail into text that says the
 * opposite of its reason: a buyer that read the text would take the wrong
 * branch, one that reads the reason takes the right one.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { payAndCall, PaymentRefusedError } from '../src/payments/buyer/bidding.js'
import { PromiseBook } from '../src/payments/buyer/promises.js'
import { PaymentGate } from '../src/payments/seller/gate.js'
import { paymentsService } from '../src/payments/seller/service.js'
import { TabStore } from '../src/payments/seller/tabs.js'
import { Wallet } from '../src/payments/wallet/wallet.js'
import { PolicyEngine } from '../src/policy/engine.js'
import { parsePolicy } from '../src/policy/index.js'
import { chainStages, policyStages } from '../src/policy/stage.js'
import { costOf, UsageNotComputedError } from '../src/protocols/opencloud/api/call.js'
import { openCloudVerifier, requestDigest } from '../src/protocols/opencloud/api/signing.js'
import { ServiceError } from '../src/protocols/opencloud/api/template.js'
import { verifyResponse } from '../src/protocols/opencloud/net/client.js'
import { NonceStore } from '../src/protocols/opencloud/net/nonce.js'
import { createPipeline, defaultPaymentGate, runPipeline } from '../src/protocols/opencloud/net/pipeline.js'
import { PaymentType, Reason, Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { Store } from '../src/store/index.js'
import { eventually, tempDir } from './fixtures.js'
import { signedRequest, startBareNode } from './protocol-fixtures.js'
import { fundAddress, startRegtest } from './regtest.js'
import type { BareNode } from './protocol-fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { PayAndCallOptions } from '../src/payments/buyer/bidding.js'
import type { CallState, PolicyTerms, Stage } from '../src/protocols/opencloud/api/call.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'

/** test.work: 500 sat per call, well above the dust limit of an attached payment */
const PRICE = 500n

const workService = (): ServiceDefinition => ({
  name: 'test',
  version: '1.0.0',
  description: 'one priced method',
  methods: { work: { description: 'ok', pricing: { base: PRICE }, handler: () => ({ body: new TextEncoder().encode('done') }) } }
})

interface Side {
  node: BareNode
  store: Store
  wallet: Wallet
  dir: string
}

interface Seller extends Side {
  tabs: TabStore
  /** the detail every no-defer answer is given instead of the gate's own */
  wording: string
  /** the policy's terms written into each call, when set */
  terms?: PolicyTerms
}

interface Buyer extends Side {
  book: PromiseBook
}

async function openSide (chain: EmbeddedChain): Promise<Omit<Side, 'node'>> {
  const dir = await tempDir('decloud-reasons-')
  const store = new Store(join(dir, 'db'))
  await store.open()
  const wallet = await Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: chain })
  return { dir, store, wallet }
}

/** `maxTabAge` 1 ms: every tab owing anything is due at the seller at once, while the buyer, which knows no such limit, thinks it open */
async function startSeller (chain: EmbeddedChain, maxTabAge?: number): Promise<Seller> {
  const side = await openSide(chain)
  const tabs = new TabStore({ db: side.store.sub('tabs'), maxTabAge })
  const gate = new PaymentGate({ wallet: side.wallet, backend: chain, db: side.store.sub('payments'), tabs })
  const seller = { ...side, tabs, wording: '' } as Seller
  const access: Stage = (state) => {
    if (seller.terms != null) { state.policy = seller.terms }
    return undefined
  }
  const payment: Stage = async (state) => {
    const reply = await gate.stage(state)
    return reply?.status === Status.NO_DEFER ? { ...reply, detail: seller.wording } : reply
  }
  seller.node = await startBareNode({ services: [workService(), paymentsService({ wallet: side.wallet, tabs, credits: gate.credits })], access, payment })
  return seller
}

async function startBuyer (chain: EmbeddedChain): Promise<Buyer> {
  const side = await openSide(chain)
  await fundAddress(chain, await side.wallet.newAddress())
  return { ...side, node: await startBareNode(), book: new PromiseBook({ db: side.store.sub('promises') }) }
}

async function stop (s: Side | undefined): Promise<void> {
  if (s == null) { return }
  await s.node.destroy().catch(() => {})
  await s.store.close().catch(() => {})
  await rm(s.dir, { recursive: true, force: true })
}

const work = { service: 'test', method: 'work' }

function optsOf (buyer: Buyer, chain: EmbeddedChain, pay: PayAndCallOptions['pay'], extra: Partial<PayAndCallOptions> = {}): PayAndCallOptions {
  return { pay, max: 5000n, wallet: buyer.wallet, promises: buyer.book, backend: chain, ...extra }
}

describe('typed refusal reasons between real nodes', function () {
  this.timeout(120_000)

  let chain: EmbeddedChain
  let seller: Seller
  let buyer: Buyer

  before(async () => {
    chain = await startRegtest()
  })

  beforeEach(async function () {
    seller = await startSeller(chain, this.currentTest?.title.includes('tab:') === true ? 1 : undefined)
    buyer = await startBuyer(chain)
  })

  afterEach(async () => {
    await stop(buyer)
    await stop(seller)
  })

  after(async () => {
    await chain?.close()
  })

  /** A first promise on a fresh tab; returns its defer id */
  async function promiseOnce (threshold: string): Promise<string> {
    const first = await payAndCall(buyer.node.opencloud, seller.node.addr, work, optsOf(buyer, chain, { kind: 'defer', amount: PRICE, threshold }))
    assert.equal(first.ok, true, first.detail)
    assert.equal(first.kind, 'defer')
    return first.deferId as string
  }

  it('a settled tab: the buyer promises again under a new defer id (the detail says "due")', async () => {
    const deferId = await promiseOnce('value:100000')
    // the tab is paid off at the seller: no more promises on it
    await seller.tabs.credit({ payer: buyer.node.openCloudId, deferId, amount: PRICE, txid: 'ab'.repeat(32) })
    seller.wording = `tab ${deferId} is due: settle it first`
    const res = await payAndCall(buyer.node.opencloud, seller.node.addr, work, optsOf(buyer, chain, { kind: 'defer', amount: PRICE, threshold: 'value:100000' }))
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.kind, 'defer')
    assert.notEqual(res.deferId, deferId)
    assert.deepEqual(res.attempts.map(a => [a.kind, a.path, a.reason]), [
      ['defer', 'request-declined/payment-declined/no-defer', Reason.REASON_TAB_SETTLED],
      ['defer', 'ok', Reason.REASON_UNSPECIFIED]
    ])
    // the settled tab was never marked due on the buyer's side
    assert.equal((await buyer.book.get(seller.node.peerId.toString(), deferId))?.dueAt, undefined)
  })

  /** A tab due (or broken) at the seller that the buyer thinks open: refused with its reason, whatever the detail says */
  async function refusedTab (kind: 'due' | 'broken', reason: Reason): Promise<void> {
    const threshold = 'value:100000'
    const deferId = await promiseOnce(threshold)
    const sellerId = seller.node.peerId.toString()
    assert.equal((await buyer.book.get(sellerId, deferId))?.dueAt, undefined, 'the buyer thinks the tab open')
    const tab = await seller.tabs.get(buyer.node.openCloudId, deferId)
    assert.ok(tab != null)
    // the seller's 1 ms limit has passed once the clock moved on
    assert.ok(await eventually(() => Date.now() > tab.latestDue, 5_000, 1))
    if (kind === 'broken') { assert.equal(await seller.tabs.sweep(Date.now() + seller.tabs.grace + 60_000), 1) }
    seller.wording = `tab ${deferId} is settled; promise under a new defer id`
    const res = await payAndCall(buyer.node.opencloud, seller.node.addr, work, optsOf(buyer, chain, { kind: 'defer', amount: PRICE, threshold }))
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.kind, 'attached')
    assert.equal(res.paid, PRICE)
    assert.deepEqual(res.attempts.map(a => [a.kind, a.path, a.reason]), [
      ['defer', 'request-declined/payment-declined/no-defer', reason],
      ['attached', 'ok', Reason.REASON_UNSPECIFIED]
    ])
    assert.ok((await buyer.book.get(sellerId, deferId))?.dueAt != null, 'marked due, so the fulfilment loop pays it')
    assert.notEqual(await buyer.book.deferIdFor(sellerId, threshold), deferId)
  }

  it('a due tab: the buyer marks it due and pays attached (the detail says "settled")', async () => { await refusedTab('due', Reason.REASON_TAB_DUE) })
  it('a broken tab: the buyer marks it due and pays attached (the detail says "settled")', async () => { await refusedTab('broken', Reason.REASON_TAB_BROKEN) })

  it('a policy that takes no promises: the buyer pays attached (the detail says "settled"); not allowed to, it gives up with the reason', async () => {
    seller.terms = { defer: 'no promises here', maxTab: 0n, minPayment: 0n }
    seller.wording = 'tab x is settled; promise under a new defer id'
    const res = await payAndCall(buyer.node.opencloud, seller.node.addr, work, optsOf(buyer, chain, { kind: 'defer', amount: PRICE }))
    assert.equal(res.ok, true, res.detail)
    assert.equal(res.kind, 'attached')
    assert.deepEqual(res.attempts.map(a => [a.kind, a.path]), [['defer', 'request-declined/payment-declined/no-defer'], ['attached', 'ok']])
    await assert.rejects(payAndCall(buyer.node.opencloud, seller.node.addr, work, optsOf(buyer, chain, { kind: 'defer', amount: PRICE }, { allowAttached: false })),
      (err: any) => err instanceof PaymentRefusedError && err.reason === Reason.REASON_DEFER_POLICY && err.attempts.length === 1)
  })

  it('the gate reads the policy\'s tab limit from the call state: a promise over it is refused as tab-limit', async () => {
    seller.terms = { defer: true, maxTab: PRICE - 1n, minPayment: 0n }
    const res = await buyer.node.opencloud.call(seller.node.addr, {
      ...work,
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: PRICE, txn: new Uint8Array(0), deferId: 'd1', deferThreshold: '' }
    })
    assert.equal(res.status, Status.NO_DEFER)
    assert.equal(res.reason, Reason.REASON_TAB_LIMIT)
  })

  it('the reason is on the signed response: a tampered reason fails verifyResponse', async () => {
    const res = await buyer.node.opencloud.call(seller.node.addr, work)
    assert.equal(res.status, Status.TOO_LOW)
    assert.equal(res.reason, Reason.REASON_PRICE)
    assert.equal(res.response.reason, Reason.REASON_PRICE)
    assert.equal(await verifyResponse(res), true)
    assert.equal(await verifyResponse({ ...res, response: { ...res.response, reason: Reason.REASON_MIN_PAYMENT } }), false)
    assert.equal(await verifyResponse({ ...res, response: { ...res.response, reason: Reason.REASON_UNSPECIFIED } }), false)
    // ok carries none
    const ok = await buyer.node.opencloud.call(seller.node.addr, { service: 'test', method: 'info' })
    assert.equal(ok.reason, Reason.REASON_UNSPECIFIED)
  })
})

describe('usage computed once, policy terms in the call state', () => {
  it('the pipeline asks a method for its usage once per call, also when the policy reads it and when it fails', async () => {
    const key = await generateKeyPair('Ed25519')
    const peer = peerIdFromPrivateKey(key)
    let asked = 0
    const svc: ServiceDefinition = {
      name: 'echo',
      version: '1.0.0',
      description: 'bytes in',
      methods: {
        say: {
          description: 'priced per byte',
          units: ['byte'],
          pricing: { rate: 1n },
          usage: (c) => {
            asked++
            if (c.args[0] === 'bad') { throw new ServiceError(Status.BAD_REQUEST, 'bad args') }
            return [BigInt(c.body.byteLength)]
          },
          handler: (c) => ({ body: c.body })
        }
      }
    }
    // a bytes rate limit and a min-payment: both read the units of service
    const p = policyStages(new PolicyEngine(parsePolicy('rules:\n  - scope: global\n    rate-limit: { bytes: 100000 }\n    min-payment: { rate: 2 }\n')))
    const nonces = new NonceStore()
    const pipeline = createPipeline({ self: 'oc:server', services: new Map([['echo', svc]]), nonces, verifiers: [openCloudVerifier], maxBodySize: 1 << 20, requireCredentials: true, access: p.access, payment: chainStages(p.payment, defaultPaymentGate) })
    const run = async (args: string[]): Promise<{ status: Status, reason?: Reason, state: CallState }> => {
      const request = await signedRequest(key, { audience: 'oc:server', service: 'echo', method: 'say', body: randomBytes(10), args, nonce: nonces.issue(peer.toString()) })
      const state: CallState = { peer, request, digest: requestDigest(request), credentials: [], signal: new AbortController().signal }
      const reply = await runPipeline(pipeline, state)
      return { status: reply.status, reason: reply.reason, state }
    }
    const priced = await run([])
    assert.equal(priced.status, Status.TOO_LOW)
    assert.equal(priced.reason, Reason.REASON_MIN_PAYMENT)
    assert.deepEqual(priced.state.usage, [10n])
    assert.equal(priced.state.policy?.minPayment, 20n)
    assert.equal(asked, 1)
    const bad = await run(['bad'])
    assert.equal(bad.status, Status.BAD_REQUEST)
    assert.equal(asked, 2, 'a failing usage is asked once too')
    // the price is never computed from anything but state.usage
    assert.throws(() => costOf({ ...priced.state, usage: undefined }), UsageNotComputedError)
  })
})
