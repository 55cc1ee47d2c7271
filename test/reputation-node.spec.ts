/**
 * Reputation in whole decloud nodes: real libp2p nodes over 127.0.0.1,
 * gossipsub, LevelDB in temp dirs, and for the tab a real embedded regtest
 * chain and the payment gate.
 */
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { findRunningNode } from '../src/control/client.js'
import { ControlServer } from '../src/control/server.js'
import { parsePolicy } from '../src/policy/parse.js'
import { PaymentType, Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { ReputationReport, SignedReputationReport } from '../src/reputation/pb/reputation.js'
import { REPUTATION_TOPIC, signReport, MAX_REPORT_ENTRIES } from '../src/reputation/report.js'
import { runCli } from './cli-fixtures.js'
import { eventually, startNode, within } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { ReputationListJson } from '../src/reputation/json.js'
import type { TrustExplanation } from '../src/reputation/model.js'
import type { ReportListener } from '../src/reputation/service.js'

const enc = new TextEncoder()

/** The next event a node's reputation validator reports that `match` accepts */
async function nextReport (node: TestNode, match: (e: Parameters<ReportListener>[0]) => boolean): Promise<Parameters<ReportListener>[0]> {
  return new Promise(resolve => {
    const off = node.libp2p.services.reputation.onReport(e => {
      if (match(e)) {
        off()
        resolve(e)
      }
    })
  })
}

async function meshed (a: TestNode, b: TestNode): Promise<void> {
  await a.libp2p.dial(multiaddr(b.addr))
  const ok = await eventually(() =>
    a.libp2p.services.pubsub.getSubscribers(REPUTATION_TOPIC).some(p => p.equals(b.peerId)) &&
    b.libp2p.services.pubsub.getSubscribers(REPUTATION_TOPIC).some(p => p.equals(a.peerId)), 15_000)
  assert.ok(ok, 'the two nodes never met on the reputation topic')
}

describe('reputation between nodes (gossipsub)', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []
  let a: TestNode
  let b: TestNode

  before(async () => {
    a = await startNode()
    nodes.push(a)
    b = await startNode()
    nodes.push(b)
    await meshed(a, b)
  })

  after(async () => {
    await Promise.all(nodes.map(async n => n.destroy().catch(() => {})))
  })

  it('two nodes exchange signed reports over gossipsub, and serve them through the core reputation service', async () => {
    const x = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const y = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    await a.reputation.record({ peer: x, role: 'buyer', kind: 'promise-broken', value: -1, weight: 5 })
    await b.reputation.record({ peer: y, role: 'seller', kind: 'call-served', value: 1, weight: 1 })
    const atB = nextReport(b, e => e.accepted && e.report?.reporter === a.peerId.toString())
    const atA = nextReport(a, e => e.accepted && e.report?.reporter === b.peerId.toString())
    assert.equal((await a.libp2p.services.reputation.publish()).recipients, 1)
    assert.equal((await b.libp2p.services.reputation.publish()).recipients, 1)
    const fromA = await within(atB, 10_000, 'B never accepted A\'s report')
    const fromB = await within(atA, 10_000, 'A never accepted B\'s report')
    assert.deepEqual(fromA.report?.claims.map(c => [c.peer, c.bad]), [[x, 1]])
    assert.ok((fromA.report?.claims[0].trust ?? 1) === 0)
    assert.deepEqual(fromB.report?.claims.map(c => c.peer), [y])
    // B now knows what A said of x (with A's opinion trust and standing), and x's trust at B is what A's claim made it
    const why = await b.reputation.explain(x)
    assert.equal(why.claims[0]?.reporter, a.peerId.toString())
    // a third node fetches A's latest report through the core service
    const c = await startNode()
    nodes.push(c)
    await c.libp2p.dial(multiaddr(a.addr))
    assert.equal(await c.libp2p.services.reputation.fetchFrom(a.peerId), true)
    assert.deepEqual(c.reputation.reports().map(r => r.reporter), [a.peerId.toString()])
  })

  it('forged, oversized and over-long reports are rejected and cost their sender gossip score', async () => {
    const pubsub = a.libp2p.services.pubsub
    const stranger = await generateKeyPair('Ed25519')
    const z = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    // A's peer id, a stranger's signature: a forgery
    const forged = await signReport(stranger, a.peerId, { issued: Date.now(), seq: BigInt(Date.now()) + 10_000n, claims: [{ peer: z, trust: 0, facts: 9, bad: 9 }] })
    let seen = nextReport(b, e => !e.accepted && e.from === a.peerId.toString())
    await pubsub.publish(REPUTATION_TOPIC, forged)
    let e = await within(seen, 10_000, 'the forged report was never judged')
    assert.equal(e.action, 'reject')
    assert.match(e.reason ?? '', /signature/)

    seen = nextReport(b, e => !e.accepted && e.from === a.peerId.toString())
    await pubsub.publish(REPUTATION_TOPIC, new Uint8Array(20 * 1024).fill(7))
    e = await within(seen, 10_000, 'the oversized report was never judged')
    assert.equal(e.action, 'reject')
    assert.match(e.reason ?? '', /oversized/)

    // properly signed (by the stranger, about itself as reporter), but more entries than a report may
    // carry: signReport keeps to the bound, so this one is encoded by hand
    const strangerId = peerIdFromPrivateKey(stranger)
    const entries = await Promise.all(Array.from({ length: MAX_REPORT_ENTRIES + 1 }, async () => ({
      peer: peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toMultihash().bytes as Uint8Array<ArrayBuffer>, trust: 10_000, facts: 1, bad: 0
    })))
    const body = ReputationReport.encode({ reporter: strangerId.toMultihash().bytes as Uint8Array<ArrayBuffer>, issued: BigInt(Date.now()), seq: 1n, entries })
    const sig = await stranger.sign(new Uint8Array([...enc.encode('decloud/reputation/1 report\n'), ...body]))
    seen = nextReport(b, e => !e.accepted && e.from === a.peerId.toString())
    await pubsub.publish(REPUTATION_TOPIC, SignedReputationReport.encode({ report: body, signature: sig as Uint8Array<ArrayBuffer> }))
    e = await within(seen, 10_000, 'the over-long report was never judged')
    assert.equal(e.action, 'reject')
    assert.match(e.reason ?? '', /entries|oversized/)

    assert.ok(!b.reputation.known().includes(z), 'nothing of the forged report was taken')
    assert.ok(!b.reputation.reports().some(r => r.reporter === strangerId.toString()), 'nothing of the over-long report was taken')
    // gossipsub's P4 (invalid messages) scores the sender down
    const score = (): number => (b.libp2p.services.pubsub as any).getScore(a.peerId.toString())
    assert.ok(await eventually(() => score() < 0, 5_000, 20), `A's score at B: ${score()}`)
  })
})

describe('reputation in seller choice', function () {
  this.timeout(60_000)
  const nodes: TestNode[] = []

  after(async () => {
    await Promise.all(nodes.map(async n => n.destroy().catch(() => {})))
  })

  it('sellers rank by price × trust: a trusted seller beats a cheaper stranger; exploration puts the stranger first', async () => {
    const cheap = await startNode({ sha256: { pricing: { base: 100n } } })
    nodes.push(cheap)
    const trusted = await startNode({ sha256: { pricing: { base: 120n } } })
    nodes.push(trusted)
    const buyer = await startNode({ bootstrap: [cheap.addr, trusted.addr] })
    nodes.push(buyer)
    const sellers = [cheap.peerId.toString(), trusted.peerId.toString()]
    // (the buyer's book holds its own price too: node.rankSellers leaves it out)
    const known = (): boolean => {
      const ranked = new Set(buyer.market.rank('sha256', 'hash').map(e => e.peerId))
      return sellers.every(p => ranked.has(p))
    }
    assert.ok(await eventually(known, 20_000), 'the buyer never learned both prices')
    const order = async (o: { explore?: number, random?(): number } = {}): Promise<string[]> =>
      (await buyer.rankSellers('sha256', { method: 'hash', discover: false, explore: 0, ...o })).map(c => c.peerId)
    assert.deepEqual(await order(), [cheap.peerId.toString(), trusted.peerId.toString()], 'no trust known: by price')
    // calls served well by the dearer seller: trust ≈ 0.65, so 120 × 1.35 < 100 × 2
    for (let i = 0; i < 4; i++) { await buyer.reputation.record({ peer: trusted.peerId.toString(), role: 'seller', kind: 'call-served', value: 1, weight: 1 }) }
    const ranked = await buyer.rankSellers('sha256', { method: 'hash', discover: false, explore: 0 })
    assert.deepEqual(ranked.map(c => c.peerId), [trusted.peerId.toString(), cheap.peerId.toString()])
    assert.ok((ranked[0].trust ?? 0) > 0.6)
    assert.equal(ranked[1].trust, undefined)
    // an exploring ranking gives the stranger its chance
    assert.deepEqual(await order({ explore: 0.05, random: () => 0.01 }), [cheap.peerId.toString(), trusted.peerId.toString()])
    assert.deepEqual(await order({ explore: 0.05, random: () => 0.5 }), [trusted.peerId.toString(), cheap.peerId.toString()])
  })
})

describe('reputation and the policy: a broken promise', function () {
  this.timeout(120_000)
  let chain: EmbeddedChain
  const nodes: TestNode[] = []
  const PRICE = 1_000n
  // sha256 is paid at its price; only peers trusted at least halfway may run up a tab
  const rules = parsePolicy(`version: 1
rules:
  - name: pay-now
    scope: { service: sha256 }
    allow: true
    defer: deny
  - name: tab-for-trusted
    scope: { service: sha256, trust: { min: 0.5 } }
    defer: allow
    max-tab: 100000
`, { file: '<test>' })

  before(async () => {
    chain = await startRegtest()
  })

  after(async () => {
    await Promise.all(nodes.map(async n => n.destroy().catch(() => {})))
    await chain?.close()
  })

  it('a payer that breaks a deferred promise past its due time loses local trust, and the trust band refuses it a tab', async () => {
    const seller = await startNode({ payments: { chain, fulfilment: false, tabGrace: 0, sweepInterval: 3_600_000 }, policy: { rules }, sha256: { pricing: { base: PRICE } } })
    nodes.push(seller)
    // the buyer never pays its promises: no fulfilment loop
    const buyer = await startNode({ payments: { chain, fulfilment: false } })
    nodes.push(buyer)
    const wallet = buyer.payments?.wallet
    assert.ok(wallet != null)
    const deferred = async (tab: string): Promise<{ status: Status, detail: string }> => {
      const res = await buyer.opencloud.call(multiaddr(seller.addr), {
        service: 'sha256',
        method: 'hash',
        body: enc.encode(tab),
        paymentType: PaymentType.PAYMENT_DEFER,
        payment: { currency: 'BTC', amount: PRICE, txn: new Uint8Array(), deferId: tab, deferThreshold: 'time:1' }
      })
      return { status: res.status, detail: res.detail }
    }
    const b = buyer.peerId.toString()

    // a stranger gets no tab: nothing is known of it, no band matches
    assert.equal(seller.reputation.trust(b), undefined)
    assert.equal((await deferred('t0')).status, Status.NO_DEFER)

    // its earlier dealings here: three tabs paid in full (facts as the tab events record them)
    for (let i = 0; i < 3; i++) { await seller.reputation.record({ peer: b, role: 'buyer', kind: 'promise-kept', value: 1, weight: 1 }) }
    assert.ok((seller.reputation.trust(b) ?? 0) >= 0.5, `trust after kept promises: ${seller.reputation.trust(b)}`)
    const ok = await deferred('t1')
    assert.equal(ok.status, Status.OK, ok.detail)

    // the tab falls due after 1 s and is never paid: the sweep (grace 0) finds it broken
    const tabs = seller.payments?.tabs
    assert.ok(tabs != null)
    assert.equal(await tabs.sweep(Date.now() + 2_000), 1)
    assert.ok(await eventually(() => (seller.reputation.trust(b) ?? 1) < 0.5, 5_000), `trust after the broken promise: ${seller.reputation.trust(b)}`)
    const [broken] = await seller.reputation.records.facts(b, 1)
    assert.equal(broken.kind, 'promise-broken')
    assert.equal(broken.evidence?.deferId, 't1')
    // the payer's signed promise is the evidence kept with the fact
    assert.equal(typeof (broken.evidence?.promise as { request?: unknown })?.request, 'string')

    // a new tab is refused by the policy's trust band (not by the broken tab: the policy decides first)
    const refused = await deferred('t2')
    assert.equal(refused.status, Status.NO_DEFER)
    assert.match(refused.detail, /pay-now|not accepted/)
    assert.doesNotMatch(refused.detail, /broken/)
    const decision = seller.policy?.current().decide({ peer: b, trust: seller.reputation.trust(b), service: 'sha256', method: 'hash' })
    assert.equal(decision?.defer.allowed, false)
    // and it loses gossip standing at the seller (gossipsub's application-specific score, P5)
    const gossipScore = (): number => (seller.libp2p.services.pubsub as any).getScore(b)
    assert.ok(await eventually(() => gossipScore() < -1, 5_000, 50), `the buyer's gossip score at the seller: ${gossipScore()}`)

    // the record outlives the peer's connection: it comes back to the same score
    const before = seller.reputation.trust(b)
    await buyer.libp2p.hangUp(seller.peerId)
    await buyer.libp2p.dial(multiaddr(seller.addr))
    assert.equal(seller.reputation.trust(b), before)
    assert.equal((await deferred('t3')).status, Status.NO_DEFER)

    // a seller that never dealt with the buyer, and that pre-trusts the first one (say, its operator's
    // other node): it gives strangers a tab but not peers it distrusts, and learns from one report round
    const other = await startNode({
      payments: { chain, fulfilment: false },
      policy: {
        rules: parsePolicy(`version: 1
rules:
  - name: tab-for-all
    scope: { service: sha256 }
    allow: true
    defer: allow
    max-tab: 100000
  - name: no-tab-for-distrusted
    scope: { service: sha256, trust: { min: 0, max: 0.3 } }
    defer: deny
`, { file: '<test>' })
      },
      sha256: { pricing: { base: PRICE } },
      reputation: { pretrusted: [seller.peerId.toString()] }
    })
    nodes.push(other)
    const deferredAt = async (to: TestNode, tab: string): Promise<Status> => (await buyer.opencloud.call(multiaddr(to.addr), {
      service: 'sha256',
      method: 'hash',
      body: enc.encode(tab),
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: PRICE, txn: new Uint8Array(), deferId: tab, deferThreshold: 'time:3600' }
    })).status
    assert.equal(await deferredAt(other, 'o1'), Status.OK, 'a stranger gets a tab there')
    await other.libp2p.dial(multiaddr(seller.addr))
    assert.ok(await eventually(() => seller.libp2p.services.pubsub.getSubscribers(REPUTATION_TOPIC).some(p => p.equals(other.peerId)), 15_000))
    const heard = nextReport(other, e => e.accepted && e.report?.reporter === seller.peerId.toString())
    await seller.libp2p.services.reputation.publish()
    await within(heard, 10_000, 'the other seller never heard the report')
    // (the global vector is recomputed at most once a second)
    assert.ok(await eventually(() => (other.reputation.trust(b) ?? 1) < 0.3, 5_000), `trust of the buyer at the other seller: ${other.reputation.trust(b)}`)
    assert.equal(other.reputation.localTrust(b), undefined, 'no first-hand facts there')
    assert.equal(await deferredAt(other, 'o2'), Status.NO_DEFER, 'refused a tab on hearsay from a trusted reporter')

    // the control API (and so `decloud reputation PEER`) says why
    const control = new ControlServer({ node: seller, dataDir: seller.dataDir })
    await control.start()
    try {
      const running = await findRunningNode(seller.dataDir)
      assert.ok(running != null)
      const why = await running.client.reputation(b) as TrustExplanation
      assert.equal(why.peer, b)
      assert.ok((why.trust ?? 1) < 0.5)
      assert.equal(why.local?.bad, 1)
      assert.equal(why.facts[0].kind, 'promise-broken')
      const cli = await runCli(['reputation', b, '--json', '--data-dir', seller.dataDir])
      assert.equal(cli.code, 0, cli.stderr)
      assert.equal((JSON.parse(cli.stdout.toString()) as TrustExplanation).local?.bad, 1)
      const list = await running.client.reputation() as ReputationListJson
      assert.deepEqual(list.peers.map(p => p.peer), [b])
    } finally {
      await control.stop()
    }
  })
})
