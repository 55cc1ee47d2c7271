/**
 * Merkle audits (docs/protocol.md "Storage evidence"). The buyer sends a
 * fresh random challenge; both sides derive the same leaf indexes from it,
 * so the seller cannot know in advance which leaves it will have to show.
 * The seller answers each challenged leaf with its bytes and Merkle proof;
 * the buyer checks them against the root it kept.
 *
 * One audit of c leaves catches a seller that lost a fraction ρ of the piece
 * with probability 1 − (1 − ρ)^c. With the default c = 32: ρ = 5% → 81%,
 * 10% → 97%, 20% → 99.9%; a seller that lost half is caught with
 * probability 1 − 2⁻³². Audits compound: k audits of c leaves act like one of
 * k·c.
 */
import { createHash } from 'node:crypto'
import { HASH_SIZE, InvalidProofError, hashLeaf, LEAF_SIZE, leafCount, leafLength, proofFromLevels, treeLevels, verifyProof } from './merkle.js'
import { AuditProof } from './pb/storage.js'

/** Leaves per audit unless the request names another count */
export const DEFAULT_AUDIT_LEAVES = 32
/** Most leaves one audit may ask for (a bounded answer: 256 × 4 KiB + proofs ≈ 1.1 MiB) */
export const MAX_AUDIT_LEAVES = 256
/** Bytes of a challenge */
export const CHALLENGE_SIZE = 32
const DOMAIN = 'decloud/storage/1 audit\n'

export class AuditFailedError extends InvalidProofError {
  static override name = 'AuditFailedError'
  override name = 'AuditFailedError'
}

/**
 * The leaf indexes a challenge selects in a piece of `size` bytes: for j = 0
 * … count−1, the first 8 bytes of SHA-256(domain ‖ challenge ‖ uint32be(j))
 * as a big-endian integer, modulo the leaf count. Repeats are kept out, so a
 * piece with fewer leaves than `count` is audited whole.
 */
export function challengedLeaves (challenge: Uint8Array, size: number, count = DEFAULT_AUDIT_LEAVES): number[] {
  if (challenge.byteLength !== CHALLENGE_SIZE) { throw new RangeError(`a challenge is ${CHALLENGE_SIZE} bytes`) }
  const n = leafCount(size)
  const want = Math.min(count, n)
  const out = new Set<number>()
  const j = new Uint8Array(4)
  // bounded: each round adds a new index with probability ≥ 1 − (want−1)/n; 64 rounds per wanted index is far past need
  for (let k = 0; out.size < want && k < want * 64; k++) {
    new DataView(j.buffer).setUint32(0, k)
    const h = createHash('sha256').update(DOMAIN).update(challenge).update(j).digest()
    out.add(Number(h.readBigUInt64BE(0) % BigInt(n)))
  }
  return [...out].sort((a, b) => a - b)
}

/**
 * Answers an audit: reads only the challenged leaves (`readLeaf`) and takes
 * the rest of each proof from the stored leaf hashes (or the tree built from
 * them, `levels`, when the caller keeps it). A leaf that no longer
 * hashes to its stored hash is reported through `damaged` (the seller must
 * not vouch for bytes it knows are bad).
 */
export async function answerAudit (
  size: number,
  hashes: Uint8Array,
  indexes: readonly number[],
  readLeaf: (offset: number, length: number) => Promise<Uint8Array>,
  levels: Uint8Array[][] = treeLevels(hashes)
): Promise<{ proof: Uint8Array, damaged: number[] }> {
  const damaged: number[] = []
  const leaves = []
  for (const index of indexes) {
    const data = await readLeaf(index * LEAF_SIZE, leafLength(size, index))
    const expected = hashes.subarray(index * HASH_SIZE, (index + 1) * HASH_SIZE)
    if (!Buffer.from(hashLeaf(data)).equals(expected)) { damaged.push(index) }
    leaves.push({ index, data: data as Uint8Array<ArrayBuffer>, path: proofFromLevels(levels, index) as Array<Uint8Array<ArrayBuffer>> })
  }
  return { proof: AuditProof.encode({ size: BigInt(size), leaves }), damaged }
}

/**
 * The buyer's check of an audit answer: every challenged leaf is there, in
 * order, and proves against `root` for a piece of `size` bytes. Throws
 * AuditFailedError naming the first thing wrong.
 */
export function checkAudit (answer: Uint8Array, root: Uint8Array, size: number, challenge: Uint8Array, count = DEFAULT_AUDIT_LEAVES): void {
  let proof: AuditProof
  try {
    proof = AuditProof.decode(answer, { limits: { leaves: MAX_AUDIT_LEAVES } })
  } catch (err: any) {
    throw new AuditFailedError(`undecodable audit answer: ${String(err?.message ?? err)}`)
  }
  if (proof.size !== BigInt(size)) { throw new AuditFailedError(`the seller claims ${proof.size} bytes, the piece has ${size}`) }
  const want = challengedLeaves(challenge, size, count)
  if (proof.leaves.length !== want.length) { throw new AuditFailedError(`${want.length} leaves challenged, ${proof.leaves.length} answered`) }
  for (let k = 0; k < want.length; k++) {
    const leaf = proof.leaves[k]
    if (leaf.index !== want[k]) { throw new AuditFailedError(`leaf ${want[k]} was challenged, leaf ${leaf.index} answered`) }
    try {
      verifyProof(root, size, leaf.index, leaf.data, leaf.path)
    } catch (err: any) {
      throw new AuditFailedError(String(err?.message ?? err))
    }
  }
}

/** Probability that one audit of `c` leaves catches a seller that lost a fraction `rho` of a large piece */
export function detectionProbability (rho: number, c = DEFAULT_AUDIT_LEAVES): number {
  return 1 - Math.pow(1 - rho, c)
}
