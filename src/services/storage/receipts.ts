/**
 * Storage receipts (docs/protocol.md "Storage evidence"): what a seller
 * signs when it takes or extends a lease. A receipt is evidence: anyone who
 * holds its bytes can check, with nothing but the seller's peer id (which
 * embeds its public key), that this seller promised to keep this piece for
 * this owner until this time, for this price.
 */
import '../../util/uint64.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { SignedStorageReceipt, StorageReceipt } from './pb/storage.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

/** Signatures cover this string followed by the encoded StorageReceipt */
export const RECEIPT_DOMAIN = 'decloud/storage/1 receipt\n'
/** Largest encoded SignedStorageReceipt accepted (a receipt is ~300 bytes) */
export const MAX_RECEIPT_SIZE = 2048
const MAX_OWNER_LENGTH = 256

const domainBytes = new TextEncoder().encode(RECEIPT_DOMAIN)

export class InvalidReceiptError extends Error {
  static override name = 'InvalidReceiptError'
  override name = 'InvalidReceiptError'
}

/** A receipt as the application sees it */
export interface Receipt {
  seller: PeerId
  /** hex SHA-256 of the content */
  piece: string
  size: number
  /** hex Merkle root */
  root: string
  owner: string
  /** lease end, ms since the epoch */
  expires: number
  paid: bigint
  promised: bigint
  /** hex request digest of the put or renew */
  request: string
  issued: number
  method: 'put' | 'renew'
}

function signingInput (receipt: Uint8Array): Uint8Array {
  const out = new Uint8Array(domainBytes.byteLength + receipt.byteLength)
  out.set(domainBytes, 0)
  out.set(receipt, domainBytes.byteLength)
  return out
}

const fromHex = (h: string): Uint8Array<ArrayBuffer> => new Uint8Array(Buffer.from(h, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** Encodes and signs a receipt with the seller's key; returns the bytes to hand to the buyer */
export async function signReceipt (key: PrivateKey, r: Omit<Receipt, 'seller'> & { seller: PeerId }): Promise<Uint8Array> {
  const receipt = StorageReceipt.encode({
    seller: r.seller.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    piece: fromHex(r.piece),
    size: BigInt(r.size),
    root: fromHex(r.root),
    owner: r.owner,
    expires: BigInt(r.expires),
    paid: r.paid,
    promised: r.promised,
    request: fromHex(r.request),
    issued: BigInt(r.issued),
    method: r.method
  })
  const signature = await key.sign(signingInput(receipt))
  return SignedStorageReceipt.encode({ receipt, signature: signature as Uint8Array<ArrayBuffer> })
}

/**
 * Decodes a signed receipt and checks its shape and its signature by the
 * seller it names. Throws InvalidReceiptError otherwise. It does not check
 * that the receipt says what the buyer expected: compare the fields (or use
 * `verifyReceipt` in `client.ts`).
 */
export async function openReceipt (bytes: Uint8Array): Promise<Receipt> {
  if (bytes.byteLength > MAX_RECEIPT_SIZE) { throw new InvalidReceiptError(`receipt larger than ${MAX_RECEIPT_SIZE} bytes`) }
  let signed: SignedStorageReceipt
  let r: StorageReceipt
  let seller: PeerId
  try {
    signed = SignedStorageReceipt.decode(bytes)
    r = StorageReceipt.decode(signed.receipt)
    seller = peerIdFromString(uint8ArrayToString(r.seller, 'base58btc'))
  } catch (err: any) {
    throw new InvalidReceiptError(`undecodable receipt: ${String(err?.message ?? err)}`)
  }
  if (r.piece.byteLength !== 32 || r.root.byteLength !== 32 || r.request.byteLength !== 32) { throw new InvalidReceiptError('piece, root and request must be 32 bytes') }
  if (r.owner === '' || r.owner.length > MAX_OWNER_LENGTH) { throw new InvalidReceiptError('owner missing or too long') }
  if (r.method !== 'put' && r.method !== 'renew') { throw new InvalidReceiptError(`unknown method ${JSON.stringify(r.method)}`) }
  if (r.size > BigInt(Number.MAX_SAFE_INTEGER) || r.expires > BigInt(Number.MAX_SAFE_INTEGER) || r.issued > BigInt(Number.MAX_SAFE_INTEGER)) { throw new InvalidReceiptError('size or time out of range') }
  if (seller.publicKey == null) { throw new InvalidReceiptError('the seller id does not embed its public key') }
  let valid = false
  try {
    valid = await seller.publicKey.verify(signingInput(signed.receipt), signed.signature)
  } catch {
    valid = false
  }
  if (!valid) { throw new InvalidReceiptError('invalid signature') }
  return {
    seller,
    piece: toHex(r.piece),
    size: Number(r.size),
    root: toHex(r.root),
    owner: r.owner,
    expires: Number(r.expires),
    paid: r.paid,
    promised: r.promised,
    request: toHex(r.request),
    issued: Number(r.issued),
    method: r.method
  }
}
