/**
 * The per-seller piece operations the file pipeline uses, behind one
 * interface (PieceSellers) so that leases, receipts and audits plug in later
 * without changing the pipeline; the node's own records of each seller's
 * successes and failures; and the ranking of sellers for a put.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { sha256 } from '../protocols/opencloud/api/signing.js'
import { InvalidReceiptError, auditArgs, newChallenge, parsePutAnswer, pieceRoot, verifyAudit, verifyReceipt } from '../services/storage/client.js'
import type { SellerCandidate } from '../market/select.js'
import type { CallRequest, CallResult, CallTarget } from '../protocols/opencloud/net/client.js'
import type { Receipt } from '../services/storage/client.js'
import type { SubDb } from '../store/index.js'
import type { AbortOptions } from '@libp2p/interface'

/** A seller the pipeline deals with */
export interface SellerRef {
  peerId: string
  /** multiaddrs ending in /p2p/<peerId>; may be empty when the node knows the peer */
  addresses: string[]
}

/** What a seller gave back for a stored piece */
export interface StoredPiece {
  /** hex SHA-256 of the piece */
  id: string
  /** sats paid or promised for it */
  cost: bigint
  /** ms since the epoch when the seller's lease ends (from its verified receipt) */
  expiry?: number
  /** the seller's signed receipt, verified, kept as evidence for audits and reputation */
  receipt?: Uint8Array
  /** hex Merkle root of the piece, computed by the buyer (audits check against it) */
  root?: string
}

export interface PieceOptions extends AbortOptions {
  /** the most to pay or promise for this one call (sats) */
  maxPrice: bigint
  /** lease length asked for (seconds) */
  duration?: number
  /** hex Merkle root the buyer kept (renew checks the receipt against it) */
  root?: string
}

/**
 * The operations on one seller's pieces. `OpenCloudPieces` does them over
 * the storage service (`storage.put`/`get`/`delete`/`stat`/`renew`/`audit`).
 */
export interface PieceSellers {
  put(seller: SellerRef, piece: Uint8Array, options: PieceOptions): Promise<StoredPiece>
  get(seller: SellerRef, id: string, options: PieceOptions): Promise<Uint8Array>
  delete(seller: SellerRef, id: string, options: AbortOptions): Promise<void>
  /** whether the seller says it still holds the piece (an audit proves it) */
  has(seller: SellerRef, id: string, options: AbortOptions): Promise<boolean>
  /** extends the lease on a piece of `size` bytes by `seconds` (paid like a put) */
  renew?(seller: SellerRef, id: string, size: number, seconds: number, options: PieceOptions): Promise<StoredPiece>
  /** a fresh Merkle challenge answered against `root`; throws when the seller cannot prove it holds the piece */
  audit?(seller: SellerRef, id: string, root: string, size: number, options: AbortOptions): Promise<void>
}

/** A seller answered a piece operation with a status other than ok, or with bytes that do not match */
export class PieceRefusedError extends Error {
  static override name = 'PieceRefusedError'
  override name = 'PieceRefusedError'
  readonly status: string

  constructor (status: string, message: string) {
    super(message)
    this.status = status
  }
}

/** How the node calls a seller: plain, or paid through its wallet (at most `max` sats) */
export type PieceCaller = (target: CallTarget, call: CallRequest, options: { max: bigint, signal?: AbortSignal }) => Promise<CallResult & { paid?: bigint, promised?: bigint }>

function hex (b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

function targetOf (s: SellerRef): CallTarget {
  return s.addresses.length > 0 ? multiaddr(s.addresses[0]) : peerIdFromString(s.peerId)
}

/** Piece operations over today's `storage` service */
export class OpenCloudPieces implements PieceSellers {
  private readonly caller: PieceCaller

  constructor (caller: PieceCaller) {
    this.caller = caller
  }

  private async call (seller: SellerRef, call: CallRequest, max: bigint, signal?: AbortSignal): Promise<CallResult & { paid?: bigint, promised?: bigint }> {
    const res = await this.caller(targetOf(seller), call, { max, signal })
    if (!res.ok) { throw new PieceRefusedError(res.path, `${seller.peerId} answered storage.${call.method} with ${res.path}${res.detail !== '' ? `: ${res.detail}` : ''}`) }
    return res
  }

  async put (seller: SellerRef, piece: Uint8Array, options: PieceOptions): Promise<StoredPiece> {
    const hash = sha256(piece)
    const id = hex(hash)
    // computed before upload: audits check the seller against this root, never against one it names
    const root = pieceRoot(piece)
    const t0 = Date.now()
    // the id's hash also serves the request signature of a paid put (the piece is hashed once)
    const res = await this.call(seller, { service: 'storage', method: 'put', args: options.duration != null ? [String(options.duration)] : [], body: piece, bodyHash: hash }, options.maxPrice, options.signal)
    return this.lease(seller, res, { id, size: piece.byteLength, root, seconds: options.duration, t0 })
  }

  async renew (seller: SellerRef, id: string, size: number, seconds: number, options: PieceOptions): Promise<StoredPiece> {
    const t0 = Date.now()
    const res = await this.call(seller, { service: 'storage', method: 'renew', args: [id, String(seconds), String(size)] }, options.maxPrice, options.signal)
    return this.lease(seller, res, { id, size, root: options.root, seconds, t0 })
  }

  /**
   * Checks the answer of a put or renew: its receipt is signed by this
   * seller and names this piece, its size, the root the buyer computed, a
   * lease at least as long as asked (a minute of clock skew allowed) and
   * the price paid or promised for this call
   */
  private async lease (seller: SellerRef, res: CallResult & { paid?: bigint, promised?: bigint }, want: { id: string, size: number, root?: string, seconds?: number, t0: number }): Promise<StoredPiece> {
    const cost = (res.paid ?? 0n) + (res.promised ?? 0n)
    let receipt: Receipt
    let bytes: Uint8Array
    try {
      const answer = parsePutAnswer(res.body)
      if (answer.id !== want.id) { throw new InvalidReceiptError(`stored the piece under ${answer.id.slice(0, 64)}, not ${want.id}`) }
      bytes = answer.receipt
      const skew = want.seconds == null ? 0 : Math.min(60_000, want.seconds * 100)
      receipt = await verifyReceipt(bytes, {
        seller: seller.peerId,
        piece: want.id,
        size: want.size,
        ...(want.root != null ? { root: want.root } : {}),
        ...(want.seconds != null ? { minExpires: want.t0 + want.seconds * 1000 - skew } : {})
      })
      if (receipt.paid + receipt.promised !== cost) { throw new InvalidReceiptError(`the receipt says ${receipt.paid + receipt.promised} sat, the call cost ${cost}`) }
    } catch (err: any) {
      throw new PieceRefusedError('bad-receipt', `${seller.peerId}: ${String(err?.message ?? err)}`)
    }
    return { id: want.id, cost, root: receipt.root, expiry: receipt.expires, receipt: bytes }
  }

  async audit (seller: SellerRef, id: string, root: string, size: number, options: AbortOptions): Promise<void> {
    // fresh for every audit: a seller that saw a challenge could keep just the leaves it selects
    const challenge = newChallenge()
    const res = await this.call(seller, { service: 'storage', method: 'audit', args: auditArgs(id, challenge) }, 0n, options.signal)
    verifyAudit(res.body, { root, size, challenge })
  }

  async get (seller: SellerRef, id: string, options: PieceOptions): Promise<Uint8Array> {
    const res = await this.call(seller, { service: 'storage', method: 'get', args: [id] }, options.maxPrice, options.signal)
    // the piece is checked against its id here, whatever the seller claims
    if (hex(sha256(res.body)) !== id) { throw new PieceRefusedError('corrupt', `${seller.peerId} sent piece ${id} with bytes that do not match its hash`) }
    return res.body
  }

  async delete (seller: SellerRef, id: string, options: AbortOptions): Promise<void> {
    await this.call(seller, { service: 'storage', method: 'delete', args: [id] }, 0n, options.signal)
  }

  async has (seller: SellerRef, id: string, options: AbortOptions): Promise<boolean> {
    try {
      await this.call(seller, { service: 'storage', method: 'stat', args: [id] }, 0n, options.signal)
      return true
    } catch (err) {
      if (err instanceof PieceRefusedError && err.status.endsWith('not-found')) { return false }
      throw err
    }
  }
}

/** What the node saw of one seller */
export interface SellerRecord {
  ok: number
  fail: number
  /** bytes moved in successful operations, and the ms they took */
  bytes: number
  ms: number
}

/**
 * The node's own records of each seller's successes and failures (puts and
 * gets), in LevelDB: `r/<peer id>` → JSON SellerRecord. Until reputation
 * lands they are the trust the ranking uses.
 */
export class SellerRecords {
  private readonly db: SubDb
  private readonly cache = new Map<string, SellerRecord>()
  private writes: Promise<unknown> = Promise.resolve()

  constructor (db: SubDb) {
    this.db = db
  }

  async get (peerId: string): Promise<SellerRecord> {
    const c = this.cache.get(peerId)
    if (c != null) { return c }
    let r: SellerRecord = { ok: 0, fail: 0, bytes: 0, ms: 0 }
    const raw = await this.db.get(`r/${peerId}`)
    if (raw != null) {
      try {
        const v = JSON.parse(new TextDecoder().decode(raw))
        if ([v.ok, v.fail, v.bytes, v.ms].every(x => Number.isSafeInteger(x) && x >= 0)) { r = v }
      } catch {
        // unreadable: start again
      }
    }
    this.cache.set(peerId, r)
    return r
  }

  /** Records one operation; the write is queued (awaited by `flush`) */
  async record (peerId: string, ok: boolean, bytes = 0, ms = 0): Promise<void> {
    const r = { ...await this.get(peerId) }
    if (ok) {
      r.ok++
      r.bytes += bytes
      r.ms += Math.max(0, Math.round(ms))
    } else {
      r.fail++
    }
    this.cache.set(peerId, r)
    const value = new TextEncoder().encode(JSON.stringify(r))
    this.writes = this.writes.then(async () => this.db.put(`r/${peerId}`, value)).catch(() => {})
  }

  async flush (): Promise<void> {
    await this.writes
  }
}

/** Trust in a seller from 0 to 1; reputation supplies it when it lands (hook) */
export type TrustOf = (peerId: string) => number | Promise<number>

/** Success rate with a prior of one success and one failure: 0.5 for a stranger */
export function successRate (r: SellerRecord): number {
  return (r.ok + 1) / (r.ok + r.fail + 2)
}

/**
 * Orders sellers for a put, best first: success rate × trust per sat of
 * price (a seller with no announced price counts as 1 sat), then measured
 * speed, then peer id. Sellers asking more than `maxPrice` per piece are left out.
 */
export async function rankForPut (candidates: SellerCandidate[], records: SellerRecords, options: { maxPrice: bigint, trust?: TrustOf }): Promise<SellerCandidate[]> {
  const scored: Array<{ c: SellerCandidate, score: number, speed: number }> = []
  for (const c of candidates) {
    if (c.price != null && c.price > options.maxPrice) { continue }
    const r = await records.get(c.peerId)
    const trust = options.trust != null ? await options.trust(c.peerId) : 1
    const price = Number(c.price ?? 0n) + 1
    scored.push({ c, score: successRate(r) * trust / price, speed: r.ms > 0 ? r.bytes / r.ms : 0 })
  }
  scored.sort((a, b) => b.score - a.score || b.speed - a.speed || (a.c.peerId < b.c.peerId ? -1 : 1))
  return scored.map(s => s.c)
}
