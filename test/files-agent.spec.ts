import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { OpenCloudPieces, PieceRefusedError } from '../src/files/index.js'
import { ManifestStore } from '../src/files/manifest.js'
import { PIECES_DIR } from '../src/node/data-dir.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { AgentOptions, SegmentRecord } from '../src/files/index.js'

async function * chunks (data: Uint8Array, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.byteLength; i += size) { yield data.subarray(i, i + size) }
}

async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of it) { parts.push(c) }
  return Buffer.concat(parts)
}

async function segmentsOf (node: TestNode, id: string): Promise<SegmentRecord[]> {
  const out = []
  for await (const s of new ManifestStore(node.store.sub('files')).segments(id)) { out.push(s) }
  return out
}

// audits every ~300 ms (jittered ±50%), looked for every 100 ms
const AGENT: AgentOptions = { auditInterval: 300, auditJitter: 0.5, tick: 100 }

describe('files agent: audits, repair, renewal, restart', function () {
  this.timeout(60_000)
  const sellers: TestNode[] = []
  let buyer: TestNode
  let buyerDir = ''
  const data = randomBytes(300_000)
  let id = ''

  const startBuyer = async (): Promise<TestNode> => startNode({ dataDir: buyerDir, bootstrap: [sellers[0].addr], sell: [], filesAgent: AGENT })
  const sellerOf = (peer: string): TestNode => sellers.find(s => s.peerId.toString() === peer) as TestNode
  /** the seller drops every piece it holds for the buyer, telling no one */
  const dropPieces = async (seller: TestNode): Promise<string[]> => {
    const ids: string[] = []
    for (const s of await segmentsOf(buyer, id)) {
      for (const p of s.pieces.filter(p => p.peer === seller.peerId.toString())) {
        assert.equal(await seller.storage.delete(p.id, buyer.openCloudId), true)
        ids.push(p.id)
      }
    }
    return ids
  }

  before(async () => {
    buyerDir = await tempDir()
    sellers.push(await startNode({}))
    for (let i = 1; i < 6; i++) { sellers.push(await startNode({ bootstrap: [sellers[0].addr] })) }
    buyer = await startBuyer()
    const found = await eventually(async () => (await buyer.rankSellers('storage', { method: 'put', timeout: 2_000 })).length >= 6, 30_000, 250)
    assert.ok(found, 'the buyer found the 6 sellers')
    // 2/4 over 6 sellers: one spare for the long tail, at least one for repairs
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 }, name: 'agent.bin' })
    id = res.id
  })

  after(async () => {
    await buyer?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
    if (buyerDir !== '') { await rm(buyerDir, { recursive: true, force: true }) }
  })

  it('put checks each receipt: another seller\'s signature or another price is refused', async () => {
    const [a, b] = sellers
    const piece = randomBytes(10_000)
    const plain = new OpenCloudPieces(async (t, c, o) => buyer.opencloud.call(t, c, { signal: o.signal }))
    const ok = await plain.put({ peerId: a.peerId.toString(), addresses: [a.addr] }, piece, { maxPrice: 0n, duration: 60 })
    assert.ok(ok.root?.length === 64 && ok.receipt != null && (ok.expiry as number) > Date.now() + 50_000)
    // the piece went to a, but the buyer meant b: a's receipt does not name b
    const err = await plain.put({ peerId: b.peerId.toString(), addresses: [a.addr] }, piece, { maxPrice: 0n, duration: 60 }).catch(e => e)
    assert.ok(err instanceof PieceRefusedError && err.status === 'bad-receipt' && /signed by/.test(err.message), String(err))
    // a call the buyer paid 5 sat for, with a receipt that says 0
    const overcharged = new OpenCloudPieces(async (t, c, o) => ({ ...await buyer.opencloud.call(t, c, { signal: o.signal }), paid: 5n }))
    const err2 = await overcharged.put({ peerId: a.peerId.toString(), addresses: [a.addr] }, piece, { maxPrice: 5n, duration: 60 }).catch(e => e)
    assert.ok(err2 instanceof PieceRefusedError && /receipt says 0 sat, the call cost 5/.test(err2.message), String(err2))
  })

  it('every piece is audited on the schedule; status shows the last audit', async () => {
    const audited = await eventually(async () => (await segmentsOf(buyer, id)).every(s => s.pieces.every(p => p.audit?.ok === true)), 10_000, 100)
    assert.ok(audited, 'every piece passed an audit')
    const st = await buyer.files.status(id)
    for (const g of st.segments) {
      assert.equal(g.pieces, 4)
      assert.ok(g.lastAudit != null && Date.parse(g.lastAudit) > Date.parse(st.created), String(g.lastAudit))
    }
    // the next audits are spread over interval × [0.5, 1.5)
    for (const s of await segmentsOf(buyer, id)) {
      for (const p of s.pieces) {
        const gap = (p.nextAudit as number) - (p.audit?.at as number)
        assert.ok(gap >= 150 && gap < 450, `next audit ${gap} ms after the last`)
      }
    }
  })

  it('a seller that silently deletes its pieces fails its next audit, is recorded as failed, and its pieces are repaired onto another seller (n/n again)', async () => {
    const before = await segmentsOf(buyer, id)
    const victim = sellerOf(before[0].pieces[0].peer)
    const victimId = victim.peerId.toString()
    const holders = new Set(before.flatMap(s => s.pieces.map(p => p.peer)))
    const dropped = await dropPieces(victim)
    assert.ok(dropped.length > 0)
    const repaired = await eventually(async () => {
      const segs = await segmentsOf(buyer, id)
      return segs.every(s => s.pieces.length === 4 && s.pieces.every(p => p.peer !== victimId))
    }, 15_000, 100)
    assert.ok(repaired, 'every segment is back to 4 pieces, none at the seller that dropped its own')
    const after = await segmentsOf(buyer, id)
    for (const s of after) {
      assert.equal(new Set(s.pieces.map(p => p.peer)).size, 4, 'distinct sellers')
      assert.ok(s.lost?.some(l => l.peer === victimId), 'the dropped piece is recorded as lost')
    }
    // the rebuilt shards are the same bytes: same ids, now held by a seller that held none of the file
    const moved = after.flatMap(s => s.pieces).filter(p => dropped.includes(p.id))
    assert.equal(moved.length, dropped.length)
    for (const p of moved) {
      assert.ok(!holders.has(p.peer), 'placed on a new seller')
      assert.ok(await sellerOf(p.peer).storage.meta(p.id) != null, 'the new seller holds it')
    }
    const st = await buyer.files.status(id, { check: true })
    for (const g of st.segments) {
      assert.equal(g.pieces, 4)
      assert.equal(g.alive, 4)
    }
    // reputation: a failed audit, with the piece as evidence
    const why = await buyer.reputation.explain(victimId)
    const failed = why.facts.filter(f => f.kind === 'audit-failed')
    assert.ok(failed.length > 0, 'an audit-failed fact about the seller')
    assert.ok(dropped.includes(String(failed[0].evidence?.piece)))
    assert.ok((await buyer.files.records.get(victimId)).fail > 0)
    assert.ok((await collect(buyer.files.get(id))).equals(data), 'identical bytes after repair')
  })

  it('the schedule survives a restart of the buyer: a piece dropped while it was down is found and repaired', async () => {
    const before = await segmentsOf(buyer, id)
    const victim = sellerOf(before[0].pieces[before[0].pieces.length - 1].peer)
    const victimId = victim.peerId.toString()
    const owner = buyer.openCloudId
    await buyer.stop()
    // dropped while the buyer is down: only its stored schedule can find it
    for (const p of before.flatMap(s => s.pieces).filter(p => p.peer === victimId)) {
      assert.equal(await victim.storage.delete(p.id, owner), true)
    }
    buyer = await startBuyer()
    const reloaded = await segmentsOf(buyer, id)
    assert.ok(reloaded.every(s => s.pieces.every(p => p.nextAudit != null)), 'the audit schedule kept across the restart')
    const repaired = await eventually(async () => (await segmentsOf(buyer, id)).every(s => s.pieces.length === 4 && s.pieces.every(p => p.peer !== victimId)), 20_000, 100)
    assert.ok(repaired, 'repaired after the restart')
    const st = await buyer.files.status(id)
    for (const g of st.segments) { assert.equal(g.pieces, 4) }
    assert.ok((await collect(buyer.files.get(id))).equals(data))
  })
})

describe('files agent: lease renewal, paid only after a passed audit', function () {
  this.timeout(60_000)
  let chain: Awaited<ReturnType<typeof startRegtest>>
  const sellers: TestNode[] = []
  let buyer: TestNode

  before(async () => {
    chain = await startRegtest()
    // 1 sat per 16 KiB·second: a 75 KB piece for 6 s costs ~28 sat, its renewal as much
    const paid = { payments: { chain, fulfilment: false as const }, storage: { pricing: { put: { rate: 1n, per: 16_384n } } } }
    sellers.push(await startNode(paid))
    for (let i = 1; i < 5; i++) { sellers.push(await startNode({ ...paid, bootstrap: [sellers[0].addr] })) }
    // audits not due before the renewals (30–90 s); renewals 3 s before a lease ends
    buyer = await startNode({ payments: { chain, fulfilment: false }, bootstrap: [sellers[0].addr], sell: [], filesAgent: { auditInterval: 60_000, tick: 100, renewBefore: 3_000 } })
    const found = await eventually(async () => (await buyer.rankSellers('storage', { method: 'put', timeout: 2_000 })).filter(c => c.price != null).length >= 5, 30_000, 250)
    assert.ok(found, 'the buyer found the 5 sellers and their prices')
  })

  after(async () => {
    await buyer?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
    await chain?.close()
  })

  /** the buyer's lease at the seller on a piece (storage.stat): its end (ms) and what was paid or promised for it */
  const lease = async (peer: string, id: string): Promise<{ at: number, sats: bigint }> => {
    const seller = sellers.find(s => s.peerId.toString() === peer) as TestNode
    const res = await buyer.pay(seller.peerId, { service: 'storage', method: 'stat', args: [id] }, { pay: { kind: 'auto' }, max: 0n })
    assert.ok(res.ok, res.detail)
    const v = JSON.parse(new TextDecoder().decode(res.body))
    return { at: Date.parse(v.expires), sats: BigInt(v.paid) + BigInt(v.promised) }
  }
  const leaseAt = async (peer: string, id: string): Promise<number> => (await lease(peer, id)).at

  it('a 6 s lease is renewed before it ends; a piece that fails its audit is not renewed and is repaired', async () => {
    const data = randomBytes(150_000)
    const res = await buyer.files.put(chunks(data), { redundancy: { k: 2, n: 4 }, duration: 6 })
    const [seg] = await segmentsOf(buyer, res.id)
    // the receipts were checked and kept, with the root the buyer computed
    for (const p of seg.pieces) {
      assert.ok(p.root?.length === 64 && p.receipt != null && p.expiry != null, JSON.stringify(p))
      assert.ok(Math.abs((p.expiry as number) - await leaseAt(p.peer, p.id)) < 1, 'the manifest has the seller\'s lease end')
    }
    const head = await buyer.files.manifest(res.id)
    assert.ok(head.expiry != null && head.expiry > Date.now() + 4_000 && head.expiry < Date.now() + 7_000)
    // one seller's copy goes bad (a byte flipped on its disk): its next audit, before the renewal, fails
    const bad = seg.pieces[0]
    const badSeller = sellers.find(s => s.peerId.toString() === bad.peer) as TestNode
    const file = join(badSeller.dataDir, PIECES_DIR, bad.id.slice(0, 2), bad.id)
    const bytes = await readFile(file)
    bytes[100] ^= 0xff
    await writeFile(file, bytes)
    const badLease = await lease(bad.peer, bad.id)
    const paidBefore = await Promise.all(seg.pieces.map(async p => (await lease(p.peer, p.id)).sats))
    assert.ok(paidBefore.every(x => x > 0n), 'every put was paid')
    // renewed before the lease ended: 6 s more at every seller whose audit passed
    const renewed = await eventually(async () => {
      for (const p of seg.pieces.slice(1)) { if (await leaseAt(p.peer, p.id) < (p.expiry as number) + 5_000) { return false } }
      return true
    }, 10_000, 100)
    assert.ok(renewed, 'the 3 good leases were extended')
    assert.ok(Date.now() < (head.expiry as number), 'before the first lease ended')
    // the good pieces' renewals were paid; the corrupt piece's lease was neither renewed nor paid
    for (const [i, p] of seg.pieces.entries()) {
      if (i === 0) { continue }
      assert.ok((await lease(p.peer, p.id)).sats > paidBefore[i], 'the renewal was paid')
    }
    assert.deepEqual(await lease(bad.peer, bad.id), badLease)
    const repaired = await eventually(async () => {
      const [s] = await segmentsOf(buyer, res.id)
      return s.pieces.length === 4 && s.pieces.every(p => p.peer !== bad.peer)
    }, 10_000, 100)
    assert.ok(repaired, 'the corrupt piece was placed on another seller')
    const after = await buyer.files.manifest(res.id)
    assert.ok((after.expiry as number) > (head.expiry as number), 'the file\'s expiry moved')
    const st = await buyer.files.status(res.id)
    assert.equal(st.segments[0].pieces, 4)
    assert.ok(st.segments[0].nextRenewal != null && Date.parse(st.segments[0].nextRenewal) > Date.now() - 1_000)
    assert.ok((await collect(buyer.files.get(res.id))).equals(data))
  })
})
