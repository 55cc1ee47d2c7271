/**
 * The storage Merkle tree (docs/protocol.md "Storage evidence"): a binary
 * SHA-256 tree over fixed-size leaves of a piece, so that a buyer who kept
 * only the 32-byte root can check any leaf the seller shows it.
 *
 * Leaves are the piece cut into `LEAF_SIZE` (4096) byte slices; the last one
 * may be shorter; an empty piece has one empty leaf. A leaf hashes to
 * SHA-256(0x00 ‖ leaf bytes), an inner node to SHA-256(0x01 ‖ left ‖ right):
 * the prefixes keep a leaf from ever passing for an inner node (the
 * second-preimage attack on unprefixed trees, RFC 6962 §2.1). Each level
 * pairs nodes (0,1), (2,3), …; a last node without a partner is carried up
 * unchanged. The root is the one node of the top level. A proof for leaf i
 * lists the sibling hashes from the leaf level up, skipping the levels where
 * the node was carried up; the verifier, knowing the piece size, knows which
 * those are.
 *
 * 4 KiB leaves: one disk page per audited leaf, and the leaf hashes a seller
 * keeps to answer audits without reading the piece are 0.8% of its size.
 */
import { createHash } from 'node:crypto'

/** Bytes per leaf */
export const LEAF_SIZE = 4096
export const HASH_SIZE = 32
const LEAF_PREFIX = new Uint8Array([0])
const NODE_PREFIX = new Uint8Array([1])

export class InvalidProofError extends Error {
  static override name = 'InvalidProofError'
  override name = 'InvalidProofError'
}

/** Number of leaves of a piece of `size` bytes (at least 1) */
export function leafCount (size: number): number {
  return Math.max(1, Math.ceil(size / LEAF_SIZE))
}

/** Byte length of leaf `index` of a piece of `size` bytes */
export function leafLength (size: number, index: number): number {
  return Math.max(0, Math.min(LEAF_SIZE, size - index * LEAF_SIZE))
}

export function hashLeaf (leaf: Uint8Array): Uint8Array {
  return createHash('sha256').update(LEAF_PREFIX).update(leaf).digest()
}

export function hashNode (left: Uint8Array, right: Uint8Array): Uint8Array {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest()
}

/** The leaf hashes of a piece, concatenated (32 bytes per leaf) */
export function leafHashes (piece: Uint8Array): Uint8Array {
  const n = leafCount(piece.byteLength)
  const out = new Uint8Array(n * HASH_SIZE)
  for (let i = 0; i < n; i++) {
    out.set(hashLeaf(piece.subarray(i * LEAF_SIZE, (i + 1) * LEAF_SIZE)), i * HASH_SIZE)
  }
  return out
}

function splitHashes (hashes: Uint8Array): Uint8Array[] {
  if (hashes.byteLength === 0 || hashes.byteLength % HASH_SIZE !== 0) { throw new RangeError('leaf hashes must be a non-empty multiple of 32 bytes') }
  const out: Uint8Array[] = []
  for (let o = 0; o < hashes.byteLength; o += HASH_SIZE) { out.push(hashes.subarray(o, o + HASH_SIZE)) }
  return out
}

function nextLevel (level: Uint8Array[]): Uint8Array[] {
  const up: Uint8Array[] = []
  for (let i = 0; i < level.length; i += 2) {
    up.push(i + 1 < level.length ? hashNode(level[i], level[i + 1]) : level[i])
  }
  return up
}

/** Every level of the tree, leaves first, root last */
export function treeLevels (hashes: Uint8Array): Uint8Array[][] {
  const levels = [splitHashes(hashes)]
  while (levels[levels.length - 1].length > 1) { levels.push(nextLevel(levels[levels.length - 1])) }
  return levels
}

/** The root of the tree over the given leaf hashes */
export function rootOfHashes (hashes: Uint8Array): Uint8Array {
  const levels = treeLevels(hashes)
  return levels[levels.length - 1][0]
}

/** The Merkle root of a piece */
export function merkleRoot (piece: Uint8Array): Uint8Array {
  return rootOfHashes(leafHashes(piece))
}

/** The proof (sibling hashes, leaf level first) for leaf `index`, from the tree's levels */
export function proofFromLevels (levels: Uint8Array[][], index: number): Uint8Array[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= levels[0].length) { throw new RangeError(`leaf ${index} out of range`) }
  const proof: Uint8Array[] = []
  let i = index
  for (let l = 0; l < levels.length - 1; l++) {
    const sibling = i ^ 1
    if (sibling < levels[l].length) { proof.push(levels[l][sibling]) }
    i >>= 1
  }
  return proof
}

/** The proof for leaf `index` of `piece` */
export function merkleProof (piece: Uint8Array, index: number): Uint8Array[] {
  return proofFromLevels(treeLevels(leafHashes(piece)), index)
}

function equal (a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}

/**
 * Checks that `leaf` is leaf `index` of the piece of `size` bytes whose root
 * is `root`. Throws InvalidProofError saying what does not fit.
 */
export function verifyProof (root: Uint8Array, size: number, index: number, leaf: Uint8Array, proof: readonly Uint8Array[]): void {
  if (!Number.isSafeInteger(size) || size < 0) { throw new InvalidProofError('bad piece size') }
  let width = leafCount(size)
  if (!Number.isSafeInteger(index) || index < 0 || index >= width) { throw new InvalidProofError(`leaf ${index} is out of range for ${width} leaves`) }
  if (leaf.byteLength !== leafLength(size, index)) { throw new InvalidProofError(`leaf ${index} must be ${leafLength(size, index)} bytes, got ${leaf.byteLength}`) }
  let h = hashLeaf(leaf)
  let i = index
  let used = 0
  while (width > 1) {
    const sibling = i ^ 1
    if (sibling < width) {
      const s = proof[used++]
      if (s?.byteLength !== HASH_SIZE) { throw new InvalidProofError(`proof for leaf ${index} is too short or malformed`) }
      h = (i & 1) === 1 ? hashNode(s, h) : hashNode(h, s)
    }
    i >>= 1
    width = Math.ceil(width / 2)
  }
  if (used !== proof.length) { throw new InvalidProofError(`proof for leaf ${index} is too long`) }
  if (!equal(h, root)) { throw new InvalidProofError(`leaf ${index} does not match the root`) }
}
