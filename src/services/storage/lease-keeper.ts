/**
 * Leases, receipts and audits of the storage service: the methods `put`
 * (with a lease), `renew` and `audit`, the sweeper that ends leases after the
 * seller's grace, and what `stat` and `info` say about leases. The bytes and
 * owner claims stay with the piece side (`PieceAccess`, the StorageService);
 * lease changes take the lease lock first, then the piece's.
 */
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { parseUnsigned } from '../../protocols/opencloud/api/pricing.js'
import { sha256 } from '../../protocols/opencloud/api/signing.js'
import { ServiceError } from '../../protocols/opencloud/api/template.js'
import { BYTE_SECOND_UNITS, pricePerGiBMonth } from '../../protocols/opencloud/api/units.js'
import { Status } from '../../protocols/opencloud/pb/opencloud.js'
import { json } from '../../util/json.js'
import { answerAudit, challengedLeaves, CHALLENGE_SIZE, DEFAULT_AUDIT_LEAVES, MAX_AUDIT_LEAVES } from './audit.js'
import { LeaseStore } from './leases.js'
import { leafHashes, rootOfHashes, treeLevels } from './merkle.js'
import { signReceipt } from './receipts.js'
import type { LeaseRecord } from './leases.js'
import type { Pricing } from '../../protocols/opencloud/api/pricing.js'
import type { MethodDefinition, ServiceCall } from '../../protocols/opencloud/api/template.js'
import type { SubDb } from '../../store/index.js'
import type { Logger, PeerId, PrivateKey } from '@libp2p/interface'

export const DEFAULT_LEASE = 30 * 24 * 3600
export const DEFAULT_MAX_LEASE = 5 * 365 * 24 * 3600
export const DEFAULT_LEASE_GRACE = 24 * 3600
export const DEFAULT_SWEEP_INTERVAL = 60_000
/** leases swept per batch (the sweeper comes back for the rest at once) */
const SWEEP_BATCH = 256
/** the leaf hashes of a piece (32 bytes per 4 KiB leaf): audits prove from them and read only the challenged leaves */
const treeKey = (id: string): string => `tree/${id}`
/** trees of recently audited pieces kept in memory (64 KiB each for 4 MiB): building one costs ~1,000 hashes */
const TREE_CACHE_SIZE = 16
const ID = /^[0-9a-fA-F]{64}$/

/** Lease terms a seller sets (part of `StorageServiceInit`) */
export interface LeaseOptions {
  /** The seller's key: signs the receipts of puts and renewals (none: answers carry no receipt) */
  privateKey?: PrivateKey
  /**
   * Lease of a put that names none, seconds
   *
   * @default 30 days
   */
  defaultLease?: number
  /**
   * Longest lease one put or renewal may buy, seconds
   *
   * @default 5 years
   */
  maxLease?: number
  /**
   * How long a piece is kept after its last lease ended, seconds, so a late
   * renewal still finds it
   *
   * @default 1 day
   */
  leaseGrace?: number
  /**
   * How often ended leases are swept, ms
   *
   * @default 60 s
   */
  sweepInterval?: number
}

/** What the lease side needs of the piece side (the StorageService) */
export interface PieceAccess {
  put(body: Uint8Array, owner: string, bodyHash?: Uint8Array): Promise<string>
  delete(id: string, owner: string): Promise<boolean>
  meta(id: string): Promise<{ size: number } | undefined>
  isOwner(id: string, owner: string): Promise<boolean>
  get(id: string): Promise<Uint8Array>
  cannotPut(body: Uint8Array, bodyHash?: Uint8Array): Promise<ServiceError | undefined>
  /** a reader of byte ranges of a piece, for audits (only the challenged leaves are read) */
  rangeReader(id: string): Promise<(offset: number, length: number) => Promise<Uint8Array>>
}

export interface LeaseKeeperInit {
  /** the storage sublevel */
  db: SubDb
  pieces: PieceAccess
  maxBlobSize: number
  pricing?: { put?: Pricing, renew?: Pricing, audit?: Pricing }
  privateKey?: PrivateKey
  defaultLease?: number
  maxLease?: number
  leaseGrace?: number
  sweepInterval?: number
  log: Logger
}

/** Who a call acts for: its first verified credential, or the transport peer when the node accepts anonymous calls */
export function ownerOf (call: ServiceCall): string {
  return call.credentials[0] ?? `peer:${call.peer.toString()}`
}

/** A blob id as 64 hex characters (either case); answers bad-request otherwise */
export function parseBlobId (s: string | undefined): string {
  if (s == null || !ID.test(s)) { throw new ServiceError(Status.BAD_REQUEST, 'blob id must be 64 hex characters (the SHA-256 of the content)') }
  return s.toLowerCase()
}

export function checkArgCount (call: ServiceCall, max: number, synopsis: string): void {
  if (call.args.length > max) { throw new ServiceError(Status.BAD_REQUEST, `too many args; usage: storage.${call.method} ${synopsis}`.trimEnd()) }
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** The price of this call as paid (attached, from credit) or promised (defer): what a receipt records */
function amountsOf (call: ServiceCall): { paid: bigint, promised: bigint } {
  const p = call.payment
  if (p == null || p.kind === 'none') { return { paid: 0n, promised: 0n } }
  return p.kind === 'defer' ? { paid: 0n, promised: p.cost } : { paid: p.cost, promised: 0n }
}

function parseSeconds (s: string | undefined, max: number, what: string): number {
  const v = s == null ? undefined : parseUnsigned(s)
  if (v == null || v < 1n || v > BigInt(max)) { throw new ServiceError(Status.BAD_REQUEST, `${what} must be a whole number of seconds from 1 to ${max}`) }
  return Number(v)
}

export class LeaseKeeper {
  readonly leases: LeaseStore
  private readonly db: SubDb
  private readonly pieces: PieceAccess
  private readonly maxBlobSize: number
  private readonly pricing: LeaseKeeperInit['pricing']
  private readonly privateKey?: PrivateKey
  private readonly sellerId?: PeerId
  readonly defaultLease: number
  readonly maxLease: number
  readonly leaseGrace: number
  private readonly sweepInterval: number
  private readonly log: Logger
  private sweepTimer?: ReturnType<typeof setInterval>
  private sweeping?: Promise<unknown>
  private readonly trees = new Map<string, Uint8Array[][]>()
  /** audits answered with a proof, and refused because the stored copy was damaged */
  readonly audits = { answered: 0, damaged: 0 }

  constructor (init: LeaseKeeperInit) {
    this.db = init.db
    this.pieces = init.pieces
    this.maxBlobSize = init.maxBlobSize
    this.pricing = init.pricing
    this.log = init.log
    this.leases = new LeaseStore(init.db)
    this.privateKey = init.privateKey
    this.sellerId = init.privateKey == null ? undefined : peerIdFromPrivateKey(init.privateKey)
    this.defaultLease = init.defaultLease ?? DEFAULT_LEASE
    this.maxLease = init.maxLease ?? DEFAULT_MAX_LEASE
    this.leaseGrace = init.leaseGrace ?? DEFAULT_LEASE_GRACE
    this.sweepInterval = init.sweepInterval ?? DEFAULT_SWEEP_INTERVAL
    for (const [k, v] of [['defaultLease', this.defaultLease], ['maxLease', this.maxLease], ['leaseGrace', this.leaseGrace], ['sweepInterval', this.sweepInterval]] as const) {
      if (!Number.isSafeInteger(v) || v < 0) { throw new RangeError(`${k} must be a non-negative integer`) }
    }
  }

  /** Starts sweeping ended leases every `sweepInterval` */
  startSweeper (): void {
    if (this.sweepTimer != null || this.sweepInterval === 0) { return }
    this.sweepTimer = setInterval(() => {
      if (this.sweeping != null) { return }
      this.sweeping = this.sweep().catch(err => { this.log.error('lease sweep failed: %e', err) }).finally(() => { this.sweeping = undefined })
    }, this.sweepInterval)
    this.sweepTimer.unref?.()
  }

  async stopSweeper (): Promise<void> {
    clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
    await this.sweeping
  }

  /**
   * Ends the leases whose grace is over (ended before `now − leaseGrace`):
   * drops the owner's claim, and the piece with the last one. A renewal that
   * came in meanwhile wins (the lease is read again under the lock).
   * Returns the number of leases removed.
   */
  async sweep (now = Date.now()): Promise<number> {
    const before = now - this.leaseGrace * 1000
    let removed = 0
    for (;;) {
      const start = removed
      const due = await this.leases.endedBefore(before, SWEEP_BATCH)
      for (const d of due) {
        const done = await this.leases.exclusive(async () => {
          const lease = await this.leases.get(d.id, d.owner)
          if (lease != null && lease.expires >= before) { return false }
          let erased = false
          if (lease != null) {
            try {
              erased = await this.pieces.delete(d.id, d.owner)
            } catch (err: any) {
              // no piece or no claim (a put that failed after its lease was written): only the lease goes
              if (!(err instanceof ServiceError)) { throw err }
            }
          }
          await this.leases.set(d.id, d.owner, lease ?? { expires: d.expires, paid: 0n, promised: 0n, created: 0 }, undefined)
          if (erased) { await this.db.del(treeKey(d.id)) }
          this.log('lease of %s on %s ended %s; %s', d.owner, d.id, new Date(d.expires).toISOString(), erased ? 'piece erased' : 'claim dropped')
          return true
        })
        if (done) { removed++ }
      }
      // a full batch of which nothing could be removed would come back unchanged
      if (due.length < SWEEP_BATCH || removed === start) { return removed }
    }
  }

  /** The Merkle tree of a piece from its leaf hashes, from a small cache (the content of an id never changes) */
  private treeOf (id: string, hashes: Uint8Array): Uint8Array[][] {
    let levels = this.trees.get(id)
    if (levels == null) {
      levels = treeLevels(hashes)
      if (this.trees.size >= TREE_CACHE_SIZE) { this.trees.delete(this.trees.keys().next().value as string) }
      this.trees.set(id, levels)
    }
    return levels
  }

  /** The piece's leaf hashes: stored at put; computed from the piece (and stored) for a piece older than leases */
  async leafHashesOf (id: string, body?: Uint8Array): Promise<Uint8Array> {
    const stored = await this.db.get(treeKey(id))
    if (stored != null && stored.byteLength > 0 && stored.byteLength % 32 === 0) { return stored }
    const hashes = leafHashes(body ?? await this.pieces.get(id))
    await this.db.put(treeKey(id), hashes)
    return hashes
  }

  private renewArgs (call: ServiceCall): { id: string, seconds: number, size: number } {
    checkArgCount(call, 3, '<id> <seconds> <size>')
    const id = parseBlobId(call.args[0])
    const seconds = parseSeconds(call.args[1], this.maxLease, 'the renewal')
    const size = call.args[2] == null ? undefined : parseUnsigned(call.args[2])
    if (size == null || size > BigInt(this.maxBlobSize)) { throw new ServiceError(Status.BAD_REQUEST, `usage: storage.renew <id> <seconds> <size>; size is the piece's size in bytes (at most ${this.maxBlobSize})`) }
    return { id, seconds, size: Number(size) }
  }

  /** Why a renewal cannot be done, or undefined when it can: the piece is here, its size is the one paid for, the caller holds a claim on it */
  private async cannotRenew (call: ServiceCall): Promise<ServiceError | undefined> {
    const { id, size } = this.renewArgs(call)
    const meta = await this.pieces.meta(id)
    if (meta == null) { return new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
    if (meta.size !== size) { return new ServiceError(Status.BAD_REQUEST, `blob ${id} has ${meta.size} bytes, not ${size}`) }
    // a lease belongs to the identity that paid: another one takes its own by putting the content
    if (!await this.pieces.isOwner(id, ownerOf(call))) { return new ServiceError(Status.ACCESS_DENIED, 'you hold no lease on this blob; put it to take one') }
    return undefined
  }

  /** Lease terms and storage prices per GiB-month, for `storage.info` */
  terms (): Record<string, unknown> {
    const put = this.pricing?.put
    return {
      defaultLease: this.defaultLease,
      maxLease: this.maxLease,
      leaseGrace: this.leaseGrace,
      ...(put != null ? { putPerGiBMonth: pricePerGiBMonth(put), renewPerGiBMonth: pricePerGiBMonth(this.pricing?.renew ?? put) } : {})
    }
  }

  /** The JSON answer of a put or renew, with the signed receipt */
  private async leaseAnswer (call: ServiceCall, method: 'put' | 'renew', id: string, size: number, root: Uint8Array, lease: LeaseRecord, cost: { paid: bigint, promised: bigint }): Promise<Uint8Array> {
    const now = Date.now()
    const receipt = this.privateKey == null || this.sellerId == null
      ? undefined
      : await signReceipt(this.privateKey, {
        seller: this.sellerId,
        piece: id,
        size,
        root: hex(root),
        owner: ownerOf(call),
        expires: lease.expires,
        paid: cost.paid,
        promised: cost.promised,
        request: hex(call.requestDigest ?? new Uint8Array(32)),
        issued: now,
        method
      })
    return json({
      id,
      size,
      root: hex(root),
      expires: new Date(lease.expires).toISOString(),
      paid: cost.paid,
      promised: cost.promised,
      ...(receipt == null ? {} : { receipt: Buffer.from(receipt).toString('base64') })
    })
  }

  private putSeconds (call: ServiceCall): number {
    checkArgCount(call, 1, '[seconds]')
    return call.args.length === 0 ? this.defaultLease : parseSeconds(call.args[0], this.maxLease, 'the lease')
  }

  private auditArgs (call: ServiceCall): { id: string, challenge: Uint8Array, leaves: number } {
    checkArgCount(call, 3, '<id> <challenge> [leaves]')
    const id = parseBlobId(call.args[0])
    const c = call.args[1]
    if (c == null || !new RegExp(`^[0-9a-fA-F]{${CHALLENGE_SIZE * 2}}$`).test(c)) { throw new ServiceError(Status.BAD_REQUEST, `the challenge must be ${CHALLENGE_SIZE * 2} hex characters (fresh random bytes)`) }
    const n = call.args[2] == null ? BigInt(DEFAULT_AUDIT_LEAVES) : parseUnsigned(call.args[2])
    if (n == null || n < 1n || n > BigInt(MAX_AUDIT_LEAVES)) { throw new ServiceError(Status.BAD_REQUEST, `leaves must be from 1 to ${MAX_AUDIT_LEAVES}`) }
    return { id, challenge: new Uint8Array(Buffer.from(c, 'hex')), leaves: Number(n) }
  }

  /** What `stat` tells the caller about its lease and the piece's root */
  async stat (id: string, owner: string): Promise<{ expires: string | null, paid: bigint, promised: bigint, root: string }> {
    const lease = await this.leases.get(id, owner)
    return {
      // null: no lease, or a piece stored before leases (kept until deleted)
      expires: lease == null ? null : new Date(lease.expires).toISOString(),
      paid: lease?.paid ?? 0n,
      promised: lease?.promised ?? 0n,
      root: hex(rootOfHashes(await this.leafHashesOf(id)))
    }
  }

  /** `delete`: drops the caller's claim and lease at once (the piece and its tree with the last claim) */
  async delete (id: string, owner: string): Promise<boolean> {
    return this.leases.exclusive(async () => {
      const erased = await this.pieces.delete(id, owner)
      const lease = await this.leases.get(id, owner)
      if (lease != null) { await this.leases.set(id, owner, lease, undefined) }
      if (erased) { await this.db.del(treeKey(id)) }
      return erased
    })
  }

  /** The methods `put`, `renew` and `audit` */
  methods (): Record<'put' | 'renew' | 'audit', MethodDefinition> {
    return {
      put: {
        description: `stores the body for [seconds] (default ${this.defaultLease}); answers its id, Merkle root, lease expiry and a signed receipt (JSON)`,
        args: '[seconds]',
        units: [...BYTE_SECOND_UNITS],
        pricing: this.pricing?.put,
        usage: (call) => [BigInt(call.body.byteLength), BigInt(this.putSeconds(call))],
        // nothing is charged for a put that cannot be stored
        precheck: async (call) => {
          this.putSeconds(call)
          return this.pieces.cannotPut(call.body, call.bodyHash)
        },
        handler: async (call) => {
          const seconds = this.putSeconds(call)
          const owner = ownerOf(call)
          // hashed once: the same digest names the piece here and in the piece store
          const digest = call.bodyHash?.byteLength === 32 ? call.bodyHash : sha256(call.body)
          const id = hex(digest)
          const cost = amountsOf(call)
          return this.leases.exclusive(async () => {
            // the lease first: a crash before the piece is stored leaves a lease without a claim, which the sweeper drops
            const { previous, lease } = await this.leases.extend(id, owner, seconds, cost)
            try {
              await this.pieces.put(call.body, owner, digest)
            } catch (err) {
              await this.leases.set(id, owner, lease, previous)
              throw err
            }
            const root = rootOfHashes(await this.leafHashesOf(id, call.body))
            return { body: await this.leaseAnswer(call, 'put', id, call.body.byteLength, root, lease, cost), evidence: true }
          })
        }
      },
      renew: {
        description: 'extends your lease on a piece by <seconds>; <size> is the piece size in bytes (the price is known before the piece is looked up); answers like put',
        args: '<id> <seconds> <size>',
        units: [...BYTE_SECOND_UNITS],
        pricing: this.pricing?.renew ?? this.pricing?.put,
        usage: (call) => {
          const { seconds, size } = this.renewArgs(call)
          return [BigInt(size), BigInt(seconds)]
        },
        // nothing is charged for a lease that cannot be renewed
        precheck: async (call) => this.cannotRenew(call),
        handler: async (call) => {
          const { id, seconds } = this.renewArgs(call)
          const cost = amountsOf(call)
          return this.leases.exclusive(async () => {
            const refusal = await this.cannotRenew(call)
            if (refusal != null) { throw refusal }
            const size = (await this.pieces.meta(id))?.size ?? 0
            const { lease } = await this.leases.extend(id, ownerOf(call), seconds, cost)
            const root = rootOfHashes(await this.leafHashesOf(id))
            return { body: await this.leaseAnswer(call, 'renew', id, size, root, lease, cost), evidence: true }
          })
        }
      },
      audit: {
        description: `proves it holds a piece: for the leaves a 32-byte hex <challenge> selects (default ${DEFAULT_AUDIT_LEAVES}, at most ${MAX_AUDIT_LEAVES}), their bytes and Merkle proofs (AuditProof protobuf)`,
        args: '<id> <challenge> [leaves]',
        pricing: this.pricing?.audit,
        precheck: async (call) => {
          const { id } = this.auditArgs(call)
          if (await this.pieces.meta(id) == null) { return new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
          return undefined
        },
        handler: async (call) => {
          const { id, challenge, leaves } = this.auditArgs(call)
          const meta = await this.pieces.meta(id)
          if (meta == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
          const hashes = await this.leafHashesOf(id)
          const read = await this.pieces.rangeReader(id)
          const { proof, damaged } = await answerAudit(meta.size, hashes, challengedLeaves(challenge, meta.size, leaves), read, this.treeOf(id, hashes))
          if (damaged.length > 0) {
            this.log.error('blob %s failed its integrity check at leaves %s; audit refused', id, damaged.join(','))
            this.audits.damaged++
            throw new ServiceError(Status.SERVER_ERROR, 'the stored copy of this blob is damaged')
          }
          this.audits.answered++
          return { body: proof }
        }
      }
    }
  }
}
