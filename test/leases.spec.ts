/**
 * Leases, receipts and audits of the storage service, over real nodes on
 * loopback with LevelDB in temp dirs; payments over a real regtest chain.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { PIECES_DIR } from '../src/node/data-dir.js'
import { computeCost } from '../src/protocols/opencloud/api/pricing.js'
import { BYTE_SECONDS_PER_GIB_MONTH, perGiBMonth } from '../src/protocols/opencloud/api/units.js'
import { Status } from '../src/protocols/opencloud/index.js'
import { auditArgs, newChallenge, parsePutAnswer, pieceRoot, verifyAudit, verifyReceipt } from '../src/services/storage/client.js'
import { LEAF_SIZE } from '../src/services/storage/merkle.js'
import { SignedStorageReceipt, StorageReceipt } from '../src/services/storage/pb/storage.js'
import { eventually, startNode } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { CallResult } from '../src/protocols/opencloud/index.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const parse = (res: CallResult): any => JSON.parse(text(res.body))
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

async function call (from: TestNode, to: TestNode, method: string, args: string[] = [], body?: Uint8Array): Promise<CallResult> {
  return from.opencloud.call(to.addr, { service: 'storage', method, args, body })
}

async function ok (from: TestNode, to: TestNode, method: string, args: string[] = [], body?: Uint8Array): Promise<CallResult> {
  const res = await call(from, to, method, args, body)
  assert.equal(res.path, 'ok', `${method}: ${res.detail}`)
  return res
}

describe('storage leases over real nodes', function () {
  this.timeout(60_000)
  const GRACE = 2 // seconds
  let s: TestNode
  let a: TestNode
  let b: TestNode

  before(async () => {
    // the sweeper is driven by the tests (sweep(now)), so no timer races them
    s = await startNode({ storage: { leaseGrace: GRACE, sweepInterval: 0, maxBlobSize: 1024 * 1024 } })
    a = await startNode()
    b = await startNode()
  })

  after(async () => {
    await Promise.all([a?.destroy(), b?.destroy(), s?.destroy()])
  })

  it('put takes a lease of the given seconds; stat shows its expiry; the piece is swept only after the grace; renew extends it', async () => {
    const body = randomBytes(10_000)
    const t0 = Date.now()
    const put = parsePutAnswer((await ok(a, s, 'put', ['100'], body)).body)
    assert.equal(put.id, sha(body))
    assert.ok(put.expires >= t0 + 100_000 && put.expires <= Date.now() + 100_000, 'lease of 100 s from the put')
    const stat = parse(await ok(a, s, 'stat', [put.id]))
    assert.equal(Date.parse(stat.expires), put.expires)
    assert.equal(stat.root, pieceRoot(body))

    // ended, but within the grace: kept and still served
    assert.equal(await s.storage.sweep(put.expires + GRACE * 1000 - 1), 0)
    assert.equal((await call(a, s, 'get', [put.id])).path, 'ok')

    // a renewal during the grace adds to the lease's end (here still in the future: from its end)
    const renewed = parsePutAnswer((await ok(a, s, 'renew', [put.id, '50', String(body.byteLength)])).body)
    assert.equal(renewed.expires, put.expires + 50_000)
    assert.equal(Date.parse(parse(await ok(a, s, 'stat', [put.id])).expires), renewed.expires)
    assert.equal(await s.storage.sweep(put.expires + GRACE * 1000 + 1), 0, 'the renewed lease is not swept at the old end')

    // past the new end and the grace: the claim and the piece are gone, and the space is free
    const used = s.storage.usedBytes
    assert.equal(await s.storage.sweep(renewed.expires + GRACE * 1000 + 1), 1)
    assert.equal((await call(a, s, 'stat', [put.id])).path, 'client-error/not-found')
    assert.equal((await call(a, s, 'get', [put.id])).path, 'client-error/not-found')
    assert.equal(s.storage.usedBytes, used - body.byteLength)
    assert.equal((await call(a, s, 'renew', [put.id, '50', String(body.byteLength)])).path, 'client-error/not-found')
  })

  it('the sweeper timer removes an ended lease after the grace, with no call from anyone', async () => {
    const t = await startNode({ storage: { leaseGrace: 1, sweepInterval: 100 } })
    try {
      const body = randomBytes(3000)
      const { id } = parsePutAnswer((await ok(a, t, 'put', ['1'], body)).body)
      assert.equal((await call(a, t, 'stat', [id])).path, 'ok')
      assert.ok(await eventually(async () => (await call(a, t, 'stat', [id])).path === 'client-error/not-found', 15_000, 200), 'swept after 1 s lease + 1 s grace')
      assert.equal(t.storage.usedBytes, 0)
    } finally {
      await t.destroy()
    }
  })

  it('two identities storing the same content hold independent leases', async () => {
    const body = randomBytes(20_000)
    const pa = parsePutAnswer((await ok(a, s, 'put', ['100'], body)).body)
    const pb = parsePutAnswer((await ok(b, s, 'put', ['1000'], body)).body)
    assert.equal(pa.id, pb.id)
    assert.ok(pb.expires > pa.expires + 800_000)
    assert.equal(Date.parse(parse(await ok(a, s, 'stat', [pa.id])).expires), pa.expires)
    assert.equal(Date.parse(parse(await ok(b, s, 'stat', [pa.id])).expires), pb.expires)
    const used = s.storage.usedBytes

    // b cannot renew for a... and a's renewal does not move b's lease
    const ra = parsePutAnswer((await ok(a, s, 'renew', [pa.id, '10', String(body.byteLength)])).body)
    assert.equal(ra.expires, pa.expires + 10_000)
    assert.equal(Date.parse(parse(await ok(b, s, 'stat', [pa.id])).expires), pb.expires)

    // a's lease ends: the piece stays for b, counted once; a holds nothing any more
    assert.equal(await s.storage.sweep(ra.expires + GRACE * 1000 + 1), 1)
    const afterA = parse(await ok(a, s, 'stat', [pa.id]))
    assert.equal(afterA.yours, false)
    assert.equal(afterA.expires, null)
    assert.equal(afterA.owners, 1)
    assert.equal(s.storage.usedBytes, used)
    assert.ok(Buffer.from((await ok(b, s, 'get', [pa.id])).body).equals(body))
    assert.equal((await call(a, s, 'renew', [pa.id, '10', String(body.byteLength)])).path, 'request-declined/access-denied', 'a lease belongs to the identity that paid')

    // b's ends too: the piece goes
    assert.equal(await s.storage.sweep(pb.expires + GRACE * 1000 + 1), 1)
    assert.equal((await call(b, s, 'stat', [pa.id])).path, 'client-error/not-found')
    assert.equal(s.storage.usedBytes, used - body.byteLength)
  })

  it('renew refuses what it cannot price or honour before any payment: wrong size, no lease, bad seconds', async () => {
    const body = randomBytes(500)
    const { id } = parsePutAnswer((await ok(a, s, 'put', ['100'], body)).body)
    assert.equal((await call(a, s, 'renew', [id, '10', '501'])).path, 'client-error/bad-request')
    assert.equal((await call(b, s, 'renew', [id, '10', '500'])).path, 'request-declined/access-denied')
    assert.equal((await call(a, s, 'renew', [id, '0', '500'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'renew', [id, '10'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'put', ['-1'], body)).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'put', [String(10 * 365 * 86400)], body)).path, 'client-error/bad-request', 'longer than the longest lease')
    await ok(a, s, 'delete', [id])
  })

  it('put and renew answer a receipt anyone can verify; a tampered one does not verify', async () => {
    const body = randomBytes(3 * LEAF_SIZE + 17)
    const res = await ok(a, s, 'put', ['3600'], body)
    const put = parsePutAnswer(res.body)
    const expect = { seller: s.peerId, piece: sha(body), size: body.byteLength, root: pieceRoot(body), owner: a.openCloudId, request: hex(res.response.requestDigest), minExpires: put.expires }
    const r = await verifyReceipt(put.receipt, expect)
    assert.equal(r.method, 'put')
    assert.equal(r.expires, put.expires)

    const renew = await ok(a, s, 'renew', [put.id, '60', String(body.byteLength)])
    const rr = await verifyReceipt(parsePutAnswer(renew.body).receipt, { ...expect, request: hex(renew.response.requestDigest), minExpires: put.expires + 60_000 })
    assert.equal(rr.method, 'renew')
    // a receipt for one request is not one for another
    await assert.rejects(verifyReceipt(parsePutAnswer(renew.body).receipt, expect), { name: 'InvalidReceiptError' })

    // a buyer who edits the receipt (a longer lease) no longer has a seller's signature
    const signed = SignedStorageReceipt.decode(put.receipt)
    const fields = StorageReceipt.decode(signed.receipt)
    const forged = SignedStorageReceipt.encode({ receipt: StorageReceipt.encode({ ...fields, expires: fields.expires + 86_400_000n }), signature: signed.signature })
    await assert.rejects(verifyReceipt(forged), { name: 'InvalidReceiptError', message: /invalid signature/ })
    // nor is the receipt of another seller one of this seller
    await assert.rejects(verifyReceipt(put.receipt, { seller: b.peerId }), { name: 'InvalidReceiptError' })
    await ok(a, s, 'delete', [put.id])
  })
})

describe('storage audits over real nodes', function () {
  this.timeout(60_000)
  let s: TestNode
  let a: TestNode
  const body = randomBytes(100 * LEAF_SIZE + 99)
  const root = pieceRoot(body)
  let id: string

  before(async () => {
    s = await startNode({ storage: { sweepInterval: 0 } })
    a = await startNode()
    id = parsePutAnswer((await ok(a, s, 'put', ['3600'], body)).body).id
  })

  after(async () => {
    await Promise.all([a?.destroy(), s?.destroy()])
  })

  it('an honest seller\'s audit verifies against the root the buyer kept; against another root or challenge it fails', async () => {
    for (const leaves of [32, 5, 200]) {
      const challenge = newChallenge()
      const answer = (await ok(a, s, 'audit', auditArgs(id, challenge, leaves))).body
      verifyAudit(answer, { root, size: body.byteLength, challenge, leaves })
      assert.throws(() => verifyAudit(answer, { root: pieceRoot(randomBytes(body.byteLength)), size: body.byteLength, challenge, leaves }), { name: 'AuditFailedError' })
      // (a challenge of more leaves than the piece has selects them all, whatever its bytes)
      if (leaves < 101) { assert.throws(() => verifyAudit(answer, { root, size: body.byteLength, challenge: newChallenge(), leaves }), { name: 'AuditFailedError' }) }
    }
    assert.equal((await call(a, s, 'audit', [id, 'zz'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'audit', [id, hex(newChallenge()), '257'])).path, 'client-error/bad-request')
    assert.equal((await call(a, s, 'audit', [sha(randomBytes(5)), hex(newChallenge())])).path, 'client-error/not-found')
  })

  it('a flipped byte in the stored piece is detected by the audit that challenges its leaf', async () => {
    // one byte flipped in the piece file on disk
    const file = join(s.dataDir, PIECES_DIR, id.slice(0, 2), id)
    const stored = await readFile(file)
    const bad = Uint8Array.from(stored)
    bad[57 * LEAF_SIZE + 3] ^= 0x01
    await writeFile(file, bad)
    try {
      // 200 of 101 leaves: every leaf is challenged, so leaf 57 is
      const res = await call(a, s, 'audit', auditArgs(id, newChallenge(), 200))
      assert.equal(res.path, 'server-error', 'the seller does not vouch for bytes it knows are bad')
      assert.equal(res.body.byteLength, 0)
    } finally {
      await writeFile(file, stored)
    }
    const challenge = newChallenge()
    verifyAudit((await ok(a, s, 'audit', auditArgs(id, challenge))).body, { root, size: body.byteLength, challenge })
  })

  it('an audit of a piece the seller dropped fails', async () => {
    const other = randomBytes(50 * LEAF_SIZE)
    const oid = parsePutAnswer((await ok(a, s, 'put', ['3600'], other)).body).id
    // the seller keeps the metadata (and so its lease) but dropped the bytes
    await rm(join(s.dataDir, PIECES_DIR, oid.slice(0, 2), oid))
    const challenge = newChallenge()
    const res = await call(a, s, 'audit', auditArgs(oid, challenge))
    assert.notEqual(res.path, 'ok')
    assert.throws(() => verifyAudit(res.body, { root: pieceRoot(other), size: other.byteLength, challenge }), { name: 'AuditFailedError' })
  })
})

describe('storage priced per byte·second, paid on a tab', function () {
  this.timeout(120_000)
  let chain: EmbeddedChain
  let s: TestNode
  let buyer: TestNode
  const GIB_MONTH = 100_000n // sat: a price that makes small pieces cost whole satoshis

  before(async () => {
    chain = await startRegtest()
    s = await startNode({ payments: { chain, fulfilment: false }, policy: false, storage: { pricing: { put: perGiBMonth(GIB_MONTH) } } })
    buyer = await startNode({ payments: { chain, fulfilment: false } })
  })

  after(async () => {
    await Promise.all([buyer?.destroy(), s?.destroy()])
    await chain?.close()
  })

  it('quote, too-low and info speak byte·seconds (GiB-month shown); a deferred put\'s receipt records the promised price', async () => {
    const size = 1024 * 1024
    const seconds = 30 * 86400
    const expected = computeCost(perGiBMonth(GIB_MONTH), [BigInt(size), BigInt(seconds)]).total
    assert.equal(expected, (GIB_MONTH + 1023n) / 1024n) // a MiB for a month, rounded up

    const quote = JSON.parse(text(await buyer.opencloud.callOk(s.addr, { service: 'storage', method: 'quote', args: ['put', String(size), String(seconds)] })))
    assert.deepEqual(quote.units, { byte: String(size), second: String(seconds) })
    assert.equal(BigInt(quote.amount), expected)
    assert.equal(BigInt(quote.perGiBMonth), GIB_MONTH)
    const info = JSON.parse(text(await buyer.opencloud.callOk(s.addr, { service: 'storage', method: 'info' })))
    assert.equal(BigInt(info.putPerGiBMonth), GIB_MONTH)
    const methods = JSON.parse(text(await buyer.opencloud.callOk(s.addr, { service: 'storage', method: 'methods' })))
    const put = methods.methods.find((m: any) => m.name === 'put')
    assert.deepEqual(put.units, ['byte', 'second'])
    assert.equal(BigInt(put.pricing.per), BYTE_SECONDS_PER_GIB_MONTH)

    const body = randomBytes(size)
    const unpaid = await buyer.opencloud.call(s.addr, { service: 'storage', method: 'put', args: [String(seconds)], body })
    assert.equal(unpaid.status, Status.TOO_LOW)
    assert.equal(unpaid.acceptablePayment?.amount, expected)
    // twice the time, twice the price
    const twice = await buyer.opencloud.call(s.addr, { service: 'storage', method: 'put', args: [String(2 * seconds)], body })
    assert.equal(twice.acceptablePayment?.amount, 2n * expected)

    const res = await buyer.pay(multiaddr(s.addr), { service: 'storage', method: 'put', args: [String(seconds)], body }, { pay: { kind: 'auto' }, max: 10_000n })
    assert.equal(res.status, Status.OK, res.detail)
    const answer = parsePutAnswer(res.body)
    const receipt = await verifyReceipt(answer.receipt, { seller: s.peerId, piece: sha(body), root: pieceRoot(body), size })
    assert.equal(receipt.promised, expected)
    assert.equal(receipt.paid, 0n)
    assert.equal(BigInt(parse(await ok(buyer, s, 'stat', [answer.id])).promised), expected)
  })
})
