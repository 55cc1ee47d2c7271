/**
 * The buyer's side of storage evidence: what a buyer keeps before upload
 * (the piece's Merkle root), how it checks a seller's receipt, and how it
 * audits a seller later without downloading the piece.
 *
 * @example
 * ```ts
 * const root = pieceRoot(piece)                         // keep it with the piece's id and size
 * const put = parsePutAnswer(await node.opencloud.callOk(seller, { service: 'storage', method: 'put', args: ['2592000'], body: piece }))
 * const receipt = await verifyReceipt(put.receipt, { seller: sellerPeerId, piece: id, size: piece.byteLength, root })
 * // later
 * const challenge = newChallenge()
 * const answer = await node.opencloud.callOk(seller, { service: 'storage', method: 'audit', args: auditArgs(id, challenge) })
 * verifyAudit(answer, { root, size: piece.byteLength, challenge })   // throws AuditFailedError
 * ```
 */
import { randomBytes } from 'node:crypto'
import { checkAudit, DEFAULT_AUDIT_LEAVES, CHALLENGE_SIZE } from './audit.js'
import { merkleRoot } from './merkle.js'
import { InvalidReceiptError, openReceipt } from './receipts.js'
import type { Receipt } from './receipts.js'
import type { PeerId } from '@libp2p/interface'

export { AuditFailedError, challengedLeaves, detectionProbability, DEFAULT_AUDIT_LEAVES, MAX_AUDIT_LEAVES, CHALLENGE_SIZE } from './audit.js'
export { InvalidReceiptError, openReceipt, RECEIPT_DOMAIN } from './receipts.js'
export type { Receipt } from './receipts.js'
export { InvalidProofError, LEAF_SIZE, merkleRoot, merkleProof, verifyProof } from './merkle.js'

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** The hex Merkle root of a piece: what the buyer keeps to audit it later */
export function pieceRoot (piece: Uint8Array): string {
  return hex(merkleRoot(piece))
}

/** A fresh random audit challenge (never reuse one: a seller that saw it could keep just those leaves) */
export function newChallenge (): Uint8Array {
  return new Uint8Array(randomBytes(CHALLENGE_SIZE))
}

/** The args of `storage.audit` for a piece, a challenge and a leaf count */
export function auditArgs (id: string, challenge: Uint8Array, leaves = DEFAULT_AUDIT_LEAVES): string[] {
  return leaves === DEFAULT_AUDIT_LEAVES ? [id, hex(challenge)] : [id, hex(challenge), String(leaves)]
}

/** The answer of `storage.put` and `storage.renew` */
export interface LeaseAnswer {
  id: string
  size: number
  /** hex Merkle root the seller computed */
  root: string
  /** lease end, ms since the epoch */
  expires: number
  /** the signed receipt (SignedStorageReceipt bytes) */
  receipt: Uint8Array
}

/** Parses the JSON answer of `storage.put` or `storage.renew` */
export function parsePutAnswer (body: Uint8Array): LeaseAnswer {
  const v = JSON.parse(new TextDecoder().decode(body))
  if (typeof v?.id !== 'string' || typeof v.receipt !== 'string') { throw new InvalidReceiptError('not a storage lease answer') }
  return { id: v.id, size: Number(v.size), root: String(v.root), expires: Date.parse(v.expires), receipt: new Uint8Array(Buffer.from(v.receipt, 'base64')) }
}

/** What the buyer expects a receipt to say; every field given is checked */
export interface ReceiptExpectation {
  seller?: PeerId | string
  piece?: string
  size?: number
  /** hex Merkle root the buyer computed itself */
  root?: string
  owner?: string
  /** hex digest of the request the receipt answers */
  request?: string
  /** the lease must run at least until then (ms since the epoch) */
  minExpires?: number
}

/**
 * Checks a receipt's signature and that it says what the buyer expects.
 * Throws InvalidReceiptError naming the first field that does not match.
 */
export async function verifyReceipt (bytes: Uint8Array, expect: ReceiptExpectation = {}): Promise<Receipt> {
  const r = await openReceipt(bytes)
  if (expect.seller != null && r.seller.toString() !== expect.seller.toString()) { throw new InvalidReceiptError(`signed by ${r.seller.toString()}, not by ${expect.seller.toString()}`) }
  if (expect.piece != null && r.piece !== expect.piece.toLowerCase()) { throw new InvalidReceiptError('receipt names another piece') }
  if (expect.size != null && r.size !== expect.size) { throw new InvalidReceiptError(`receipt says ${r.size} bytes, the piece has ${expect.size}`) }
  if (expect.root != null && r.root !== expect.root.toLowerCase()) { throw new InvalidReceiptError('receipt names another Merkle root') }
  if (expect.owner != null && r.owner !== expect.owner) { throw new InvalidReceiptError(`lease holder is ${r.owner}, not ${expect.owner}`) }
  if (expect.request != null && r.request !== expect.request.toLowerCase()) { throw new InvalidReceiptError('receipt answers another request') }
  if (expect.minExpires != null && r.expires < expect.minExpires) { throw new InvalidReceiptError(`lease ends ${new Date(r.expires).toISOString()}, before ${new Date(expect.minExpires).toISOString()}`) }
  return r
}

/**
 * Checks an audit answer against the root the buyer kept. Throws
 * AuditFailedError when any challenged leaf is missing, out of place, or
 * does not prove against the root.
 */
export function verifyAudit (answer: Uint8Array, expect: { root: string | Uint8Array, size: number, challenge: Uint8Array, leaves?: number }): void {
  const root = typeof expect.root === 'string' ? new Uint8Array(Buffer.from(expect.root, 'hex')) : expect.root
  checkAudit(answer, root, expect.size, expect.challenge, expect.leaves ?? DEFAULT_AUDIT_LEAVES)
}
