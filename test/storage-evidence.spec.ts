import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { parsePolicy } from '../src/policy/parse.js'
import { computeCost } from '../src/protocols/opencloud/api/pricing.js'
import { BYTE_SECONDS_PER_GIB_MONTH, perGiBMonth, pricePerGiBMonth } from '../src/protocols/opencloud/api/units.js'
import { answerAudit, challengedLeaves, checkAudit, detectionProbability } from '../src/services/storage/audit.js'
import { auditArgs, newChallenge, pieceRoot, verifyAudit, verifyReceipt } from '../src/services/storage/client.js'
import { LeaseStore } from '../src/services/storage/leases.js'
import { LEAF_SIZE, leafHashes, merkleProof, merkleRoot, verifyProof } from '../src/services/storage/merkle.js'
import { AuditProof, SignedStorageReceipt } from '../src/services/storage/pb/storage.js'
import { signReceipt } from '../src/services/storage/receipts.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'

const H = (...parts: Uint8Array[]): Uint8Array => { const h = createHash('sha256'); for (const p of parts) { h.update(p) } return h.digest() }
const leafH = (b: Uint8Array): Uint8Array => H(new Uint8Array([0]), b)
const nodeH = (l: Uint8Array, r: Uint8Array): Uint8Array => H(new Uint8Array([1]), l, r)
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('storage Merkle tree', () => {
  it('matches the documented construction: prefixed leaf/node hashes, an odd last node carried up', () => {
    const piece = randomBytes(3 * LEAF_SIZE + 10) // 4 leaves, the last short
    const L = [0, 1, 2, 3].map(i => leafH(piece.subarray(i * LEAF_SIZE, (i + 1) * LEAF_SIZE)))
    assert.equal(hex(merkleRoot(piece)), hex(nodeH(nodeH(L[0], L[1]), nodeH(L[2], L[3]))))
    const five = randomBytes(5 * LEAF_SIZE) // 5 leaves: the fifth is carried up twice
    const F = [0, 1, 2, 3, 4].map(i => leafH(five.subarray(i * LEAF_SIZE, (i + 1) * LEAF_SIZE)))
    assert.equal(hex(merkleRoot(five)), hex(nodeH(nodeH(nodeH(F[0], F[1]), nodeH(F[2], F[3])), F[4])))
    assert.equal(hex(merkleRoot(new Uint8Array(0))), hex(leafH(new Uint8Array(0))), 'the empty piece has one empty leaf')
    const one = randomBytes(100)
    assert.equal(hex(merkleRoot(one)), hex(leafH(one)))
  })

  it('a proof for every leaf verifies, for piece sizes around the leaf boundaries', () => {
    for (const size of [0, 1, LEAF_SIZE - 1, LEAF_SIZE, LEAF_SIZE + 1, 3 * LEAF_SIZE, 7 * LEAF_SIZE + 5, 33 * LEAF_SIZE]) {
      const piece = randomBytes(size)
      const root = merkleRoot(piece)
      const n = Math.max(1, Math.ceil(size / LEAF_SIZE))
      for (let i = 0; i < n; i++) {
        verifyProof(root, size, i, piece.subarray(i * LEAF_SIZE, (i + 1) * LEAF_SIZE), merkleProof(piece, i))
      }
    }
  })

  it('a proof for the wrong leaf, the wrong root, a flipped byte or a truncated path fails', () => {
    const piece = randomBytes(9 * LEAF_SIZE)
    const root = merkleRoot(piece)
    const leaf = (i: number): Uint8Array => piece.subarray(i * LEAF_SIZE, (i + 1) * LEAF_SIZE)
    const proof3 = merkleProof(piece, 3)
    assert.throws(() => verifyProof(root, piece.byteLength, 4, leaf(3), proof3), { name: 'InvalidProofError' })
    assert.throws(() => verifyProof(root, piece.byteLength, 3, leaf(4), proof3), { name: 'InvalidProofError' })
    assert.throws(() => verifyProof(merkleRoot(randomBytes(9 * LEAF_SIZE)), piece.byteLength, 3, leaf(3), proof3), { name: 'InvalidProofError' })
    const flipped = Uint8Array.from(leaf(3)); flipped[100] ^= 1
    assert.throws(() => verifyProof(root, piece.byteLength, 3, flipped, proof3), { name: 'InvalidProofError' })
    assert.throws(() => verifyProof(root, piece.byteLength, 3, leaf(3), proof3.slice(1)), { name: 'InvalidProofError' })
    assert.throws(() => verifyProof(root, piece.byteLength, 3, leaf(3), [...proof3, proof3[0]]), { name: 'InvalidProofError' })
    // an inner node cannot pass for a leaf (domain separation)
    const L = [0, 1].map(i => leafH(leaf(i)))
    assert.throws(() => verifyProof(root, piece.byteLength, 0, Buffer.concat([L[0], L[1]]), merkleProof(piece, 0).slice(1)), { name: 'InvalidProofError' })
  })
})

describe('storage audits', () => {
  const piece = randomBytes(64 * LEAF_SIZE + 123)
  const hashes = leafHashes(piece)
  const root = merkleRoot(piece)
  const read = async (o: number, l: number): Promise<Uint8Array> => piece.subarray(o, o + l)

  it('the challenge picks distinct, deterministic leaves; a small piece is audited whole', () => {
    const ch = newChallenge()
    const a = challengedLeaves(ch, piece.byteLength)
    assert.equal(a.length, 32)
    assert.equal(new Set(a).size, 32)
    assert.deepEqual(challengedLeaves(ch, piece.byteLength), a)
    assert.notDeepEqual(challengedLeaves(newChallenge(), piece.byteLength), a)
    assert.deepEqual(challengedLeaves(ch, 3 * LEAF_SIZE), [0, 1, 2])
    assert.ok(detectionProbability(0.1) > 0.96 && detectionProbability(0.05) > 0.8)
  })

  it('an honest answer verifies; the same answer fails for another challenge, root or size', async () => {
    const ch = newChallenge()
    const { proof, damaged } = await answerAudit(piece.byteLength, hashes, challengedLeaves(ch, piece.byteLength), read)
    assert.deepEqual(damaged, [])
    verifyAudit(proof, { root: hex(root), size: piece.byteLength, challenge: ch })
    assert.throws(() => verifyAudit(proof, { root, size: piece.byteLength, challenge: newChallenge() }), { name: 'AuditFailedError' })
    assert.throws(() => verifyAudit(proof, { root: merkleRoot(randomBytes(10)), size: piece.byteLength, challenge: ch }), { name: 'AuditFailedError' })
    assert.throws(() => verifyAudit(proof, { root, size: piece.byteLength + 1, challenge: ch }), { name: 'AuditFailedError' })
    assert.throws(() => verifyAudit(new Uint8Array([255, 255]), { root, size: piece.byteLength, challenge: ch }), { name: 'AuditFailedError' })
    assert.deepEqual(auditArgs('ab', ch), ['ab', hex(ch)])
  })

  it('a flipped byte in a challenged leaf is detected by the seller (damaged) and by the buyer', async () => {
    const ch = newChallenge()
    const idx = challengedLeaves(ch, piece.byteLength)
    const bad = Uint8Array.from(piece); bad[idx[5] * LEAF_SIZE + 7] ^= 0x10
    const { proof, damaged } = await answerAudit(piece.byteLength, hashes, idx, async (o, l) => bad.subarray(o, o + l))
    assert.deepEqual(damaged, [idx[5]])
    assert.throws(() => checkAudit(proof, root, piece.byteLength, ch), { name: 'AuditFailedError', message: new RegExp(`leaf ${idx[5]} does not match`) })
  })

  it('a seller that answers other leaves than the challenged ones fails', async () => {
    const ch = newChallenge()
    const idx = challengedLeaves(ch, piece.byteLength)
    const other = idx.map(i => (i + 1) % 65)
    const { proof } = await answerAudit(piece.byteLength, hashes, other, read)
    assert.throws(() => checkAudit(proof, root, piece.byteLength, ch), { name: 'AuditFailedError' })
    const { proof: short } = await answerAudit(piece.byteLength, hashes, idx.slice(1), read)
    assert.throws(() => checkAudit(short, root, piece.byteLength, ch), { name: 'AuditFailedError', message: /32 leaves challenged, 31 answered/ })
    assert.equal(AuditProof.decode(short).leaves.length, 31)
  })
})

describe('storage receipts', () => {
  it('a receipt verifies with nothing but its bytes; a tampered or re-signed one does not', async () => {
    const key = await generateKeyPair('Ed25519')
    const seller = peerIdFromPrivateKey(key)
    const piece = randomBytes(5000)
    const fields = { seller, piece: hex(H(piece)), size: 5000, root: pieceRoot(piece), owner: 'oc:12D3KooWbuyer', expires: 1_800_000_000_000, paid: 1234n, promised: 0n, request: hex(randomBytes(32)), issued: 1_790_000_000_000, method: 'put' as const }
    const bytes = await signReceipt(key, fields)
    const r = await verifyReceipt(bytes, { seller, piece: fields.piece, size: 5000, root: fields.root, owner: fields.owner, request: fields.request, minExpires: fields.expires })
    assert.equal(r.paid, 1234n)
    assert.equal(r.expires, fields.expires)

    // one flipped bit anywhere in the signed receipt
    const signed = SignedStorageReceipt.decode(bytes)
    for (const at of [0, 10, signed.receipt.byteLength - 1]) {
      const t = Uint8Array.from(signed.receipt); t[at] ^= 1
      await assert.rejects(verifyReceipt(SignedStorageReceipt.encode({ receipt: t, signature: signed.signature })), { name: 'InvalidReceiptError' })
    }
    // the same fields signed by another key that claims to be the seller
    const other = await generateKeyPair('Ed25519')
    await assert.rejects(verifyReceipt(await signReceipt(other, fields)), { name: 'InvalidReceiptError', message: /invalid signature/ })
    // a genuine receipt that does not say what the buyer expects
    await assert.rejects(verifyReceipt(bytes, { size: 5001 }), { name: 'InvalidReceiptError' })
    await assert.rejects(verifyReceipt(bytes, { minExpires: fields.expires + 1 }), { name: 'InvalidReceiptError' })
    await assert.rejects(verifyReceipt(bytes, { seller: peerIdFromPrivateKey(other) }), { name: 'InvalidReceiptError' })
    await assert.rejects(verifyReceipt(randomBytes(50)), { name: 'InvalidReceiptError' })
  })
})

describe('lease records in LevelDB', () => {
  let dir: string
  let store: Store
  before(async () => {
    dir = await tempDir()
    store = new Store(dir)
    await store.open()
  })
  after(async () => {
    await store?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('extend adds time from the current end (or now), sums payments; owners are independent; the expiry index follows', async () => {
    const leases = new LeaseStore(store.sub('storage'))
    const id = 'a'.repeat(64)
    await leases.exclusive(async () => leases.extend(id, 'oc:A', 100, { paid: 10n, promised: 0n }, 1_000_000))
    await leases.exclusive(async () => leases.extend(id, 'oc:B', 50, { paid: 0n, promised: 5n }, 1_000_000))
    const { previous, lease } = await leases.exclusive(async () => leases.extend(id, 'oc:A', 100, { paid: 10n, promised: 0n }, 1_050_000))
    assert.equal(previous?.expires, 1_100_000)
    assert.equal(lease.expires, 1_200_000)
    assert.equal(lease.paid, 20n)
    assert.equal((await leases.get(id, 'oc:B'))?.expires, 1_050_000)
    assert.deepEqual((await leases.list(id)).map(l => l.owner).sort(), ['oc:A', 'oc:B'])
    assert.deepEqual(await leases.endedBefore(1_100_000, 10), [{ id, owner: 'oc:B', expires: 1_050_000 }])
    assert.deepEqual((await leases.endedBefore(2_000_000, 10)).map(l => l.owner), ['oc:B', 'oc:A'])
    // a lease that ended long ago restarts from now
    const { lease: again } = await leases.exclusive(async () => leases.extend(id, 'oc:B', 10, { paid: 0n, promised: 0n }, 5_000_000))
    assert.equal(again.expires, 5_010_000)
    assert.deepEqual((await leases.endedBefore(2_000_000, 10)).map(l => l.owner), ['oc:A'], 'the old index entry went with the old expiry')
    await leases.exclusive(async () => leases.set(id, 'oc:A', lease, undefined))
    assert.equal(await leases.get(id, 'oc:A'), undefined)
    assert.deepEqual(await leases.endedBefore(2_000_000, 10), [])
  })
})

describe('per byte·second pricing', () => {
  it('a GiB-month price is exact in byte·seconds and shown back the same', () => {
    const p = perGiBMonth(2000n)
    assert.equal(pricePerGiBMonth(p), 2000n)
    assert.equal(computeCost(p, [1n << 30n, 30n * 86400n]).total, 2000n)
    assert.equal(computeCost(p, [1n << 29n, 30n * 86400n]).total, 1000n)
    assert.equal(computeCost(p, [1n << 30n, 15n * 86400n]).total, 1000n)
    assert.equal(computeCost(p, [1n, 1n]).total, 1n, 'rounds up: a seller never undercharges')
    assert.equal(pricePerGiBMonth({ rate: 1n, per: 1024n * 86400n }), BYTE_SECONDS_PER_GIB_MONTH / (1024n * 86400n))
  })
})

describe('policy min-payment per GiB-month', () => {
  it('per: GiB-month is the byte·seconds of a GiB-month', () => {
    const policy = parsePolicy('rules:\n  - scope: { method: storage.put }\n    min-payment: { rate: 1000, per: GiB-month }\n')
    const min = policy.rules[0].minPayment
    assert.ok(typeof min === 'object')
    assert.equal(min.per, BYTE_SECONDS_PER_GIB_MONTH)
    assert.equal(min.rate, 1000n)
    assert.throws(() => parsePolicy('rules:\n  - scope: { method: storage.put }\n    min-payment: { rate: 1000, per: GiB-year }\n'))
  })
})
