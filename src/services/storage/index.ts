import { logger } from '@libp2p/logger'
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
import type { ServiceCall, ServiceDefinition } from '../../protocols/opencloud/api/template.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { Logger, PeerId, PrivateKey } from '@libp2p/interface'

export interface StorageServiceInit {
  /** namespaced LevelDB (e.g. `store.sub('storage')`) */
  db: SubDb
  /**
   * Largest blob accepted, bytes. Keep it at or below the node's body limit
   * (`createDecloudNode` does): a bigger blob could never be sent or served.
   *
   * @default 4 MiB
   */
  maxBlobSize?: number
  /**
   * total bytes of blob content this node will store
   *
   * @default 10 GiB
   */
  capacity?: number
  /**
   * Hash every blob read and refuse to serve one whose bytes no longer match
   * its id (server-error, logged). Costs one SHA-256 of the blob per get.
   *
   * @default true
   */
  verifyOnGet?: boolean
  pricing?: {
    /** per byte·second of lease (units `byte`, `second`); `perGiBMonth(sats)` writes one */
    put?: Pricing
    get?: Pricing
    /** per byte·second of lease added @default the put price */
    renew?: Pricing
    /** per audit @default free */
    audit?: Pricing
  }
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
  /** @default logger('decloud:storage') */
  log?: Logger
}

/** What the store keeps about a blob besides its bytes */
export interface BlobMeta {
  size: number
  /** ms since the epoch of the first put */
  created: number
  /** how many credentials hold a claim on the blob; it is erased when the last one deletes it */
  owners: number
}

/** The result of counting what the store really holds */
export interface StorageCount {
  blobs: number
  bytes: number
}

export const DEFAULT_CAPACITY = 10 * 1024 * 1024 * 1024
export const DEFAULT_MAX_BLOB_SIZE = 4 * 1024 * 1024
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
/** the usage counter: bytes of blob content stored, written in the same batch as every blob change */
const USED_KEY = 'used'
const blobKey = (id: string): string => `b/${id}`
const metaKey = (id: string): string => `m/${id}`
/** one key per owner, so a blob with many owners never makes one value grow */
const ownerKey = (id: string, owner: string): string => `o/${id}/${owner}`
const META_PREFIX = 'm/'
const META_END = 'm0' // '0' sorts right after '/'
const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()

/** Who a call acts for: its first verified credential, or the transport peer when the node accepts anonymous calls */
export function ownerOf (call: ServiceCall): string {
  return call.credentials[0] ?? `peer:${call.peer.toString()}`
}

/** A blob id as 64 hex characters (either case); answers bad-request otherwise */
export function parseBlobId (s: string | undefined): string {
  if (s == null || !ID.test(s)) { throw new ServiceError(Status.BAD_REQUEST, 'blob id must be 64 hex characters (the SHA-256 of the content)') }
  return s.toLowerCase()
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function encodeMeta (meta: BlobMeta): Uint8Array {
  return enc.encode(JSON.stringify(meta))
}

function decodeMeta (bytes: Uint8Array): BlobMeta | undefined {
  try {
    const m = JSON.parse(dec.decode(bytes))
    if (Number.isSafeInteger(m?.size) && m.size >= 0 && Number.isSafeInteger(m.created) && Number.isSafeInteger(m.owners) && m.owners >= 0) {
      return { size: m.size, created: m.created, owners: m.owners }
    }
  } catch {
    // not JSON: unreadable, like a JSON value of the wrong shape
  }
  return undefined
}

function parseCounter (bytes: Uint8Array | undefined): number | undefined {
  if (bytes == null) { return undefined }
  const s = dec.decode(bytes)
  if (!/^[0-9]{1,16}$/.test(s)) { return undefined }
  const n = Number(s)
  return Number.isSafeInteger(n) ? n : undefined
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

function checkArgCount (call: ServiceCall, max: number, synopsis: string): void {
  if (call.args.length > max) { throw new ServiceError(Status.BAD_REQUEST, `too many args; usage: storage.${call.method} ${synopsis}`.trimEnd()) }
}

/**
 * `storage`: content-addressed blobs (id = hex SHA-256 of the content) in
 * LevelDB.
 *
 * Invariants. The usage counter equals the sum of the sizes of the stored
 * blobs: every change to a blob, its metadata, its owners and the counter is
 * one batch, and writes are serialised, so concurrent puts of the same blob
 * store and count it once, and puts racing for the last free bytes never
 * exceed the capacity. A blob is erased only when the last credential that
 * stored it deletes it. Bytes that no longer hash to their id are never served
 * (verifyOnGet), and putting the same content again repairs them.
 *
 * Layout (inside the sublevel): `b/<id>` bytes, `m/<id>` JSON BlobMeta,
 * `o/<id>/<owner>` empty, `used` decimal byte count.
 */
export class StorageService {
  private readonly db: SubDb
  readonly maxBlobSize: number
  readonly capacity: number
  private readonly verifyOnGet: boolean
  private readonly pricing: StorageServiceInit['pricing']
  private readonly log: Logger
  private used = 0
  /** serialises writes: puts and deletes read and change the usage counter */
  private lock: Promise<unknown> = Promise.resolve()
  /** leases per (piece, owner); their lock is taken before the piece's */
  readonly leases: LeaseStore
  private readonly privateKey?: PrivateKey
  private readonly sellerId?: PeerId
  readonly defaultLease: number
  readonly maxLease: number
  readonly leaseGrace: number
  private readonly sweepInterval: number
  private sweepTimer?: ReturnType<typeof setInterval>
  private sweeping?: Promise<unknown>
  private readonly trees = new Map<string, Uint8Array[][]>()

  constructor (init: StorageServiceInit) {
    this.db = init.db
    this.maxBlobSize = init.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE
    this.capacity = init.capacity ?? DEFAULT_CAPACITY
    this.verifyOnGet = init.verifyOnGet ?? true
    this.pricing = init.pricing
    this.log = init.log ?? logger('decloud:storage')
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
    if (!Number.isSafeInteger(this.maxBlobSize) || this.maxBlobSize < 0) { throw new RangeError('maxBlobSize must be a non-negative integer') }
    if (!Number.isSafeInteger(this.capacity) || this.capacity < 0) { throw new RangeError('capacity must be a non-negative integer') }
  }

  /** Loads the usage counter; recounts the blobs when it is missing or unreadable */
  async start (): Promise<void> {
    await this.exclusive(async () => {
      const raw = await this.db.get(USED_KEY)
      const stored = parseCounter(raw)
      if (stored != null) {
        this.used = stored
        return
      }
      const { bytes } = await this.count()
      if (raw != null) { this.log.error('usage counter unreadable; recounted %d bytes', bytes) }
      await this.db.put(USED_KEY, enc.encode(String(bytes)))
      this.used = bytes
    })
  }

  /** Waits for writes in progress, so the database can be closed */
  async stop (): Promise<void> {
    await this.exclusive(async () => {})
  }

  /** Bytes of blob content stored */
  get usedBytes (): number {
    return this.used
  }

  get freeBytes (): number {
    return Math.max(0, this.capacity - this.used)
  }

  /** Counts the blobs and bytes the metadata records (a full scan: for checks and repair, not the hot path) */
  async count (): Promise<StorageCount> {
    let blobs = 0
    let bytes = 0
    for await (const [key, value] of this.db.iterator({ gte: META_PREFIX, lt: META_END })) {
      const meta = decodeMeta(value)
      if (meta == null) {
        this.log.error('unreadable metadata at %s', key)
        continue
      }
      blobs++
      bytes += meta.size
    }
    return { blobs, bytes }
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn)
    this.lock = run.catch(() => {})
    return run
  }

  async meta (id: string): Promise<BlobMeta | undefined> {
    const m = await this.db.get(metaKey(id))
    if (m == null) { return undefined }
    const meta = decodeMeta(m)
    if (meta == null) {
      this.log.error('unreadable metadata for blob %s', id)
      throw new ServiceError(Status.SERVER_ERROR, 'stored metadata of this blob is unreadable')
    }
    return meta
  }

  async isOwner (id: string, owner: string): Promise<boolean> {
    return (await this.db.get(ownerKey(id, owner))) != null
  }

  /**
   * Stores `body` for `owner` and returns its id. Storing content that is
   * already here adds the owner's claim and uses no more capacity.
   */
  async put (body: Uint8Array, owner: string, bodyHash?: Uint8Array): Promise<string> {
    if (body.byteLength > this.maxBlobSize) {
      throw new ServiceError(Status.TOO_LARGE, `blob of ${body.byteLength} bytes exceeds the limit of ${this.maxBlobSize} bytes per blob; split the file into pieces`)
    }
    const digest = bodyHash?.byteLength === 32 ? bodyHash : sha256(body)
    const id = hex(digest)
    return this.exclusive(async () => {
      const existing = await this.meta(id)
      if (existing != null) {
        const ops: BatchOp[] = []
        if (!await this.isOwner(id, owner)) {
          ops.push({ type: 'put', key: ownerKey(id, owner), value: EMPTY })
          ops.push({ type: 'put', key: metaKey(id), value: encodeMeta({ ...existing, owners: existing.owners + 1 }) })
        }
        // repair: the caller holds the true bytes, so rewrite a copy that went missing or bad
        const stored = await this.db.get(blobKey(id))
        if (stored == null || !Buffer.from(sha256(stored)).equals(digest)) {
          this.log.error('blob %s was missing or corrupt; rewritten from a new put', id)
          ops.push({ type: 'put', key: blobKey(id), value: body })
        }
        if (ops.length > 0) { await this.db.batch(ops) }
        return id
      }
      if (this.used + body.byteLength > this.capacity) {
        throw new ServiceError(Status.INSUFFICIENT_STORAGE, `this node has ${this.freeBytes} bytes free; the blob needs ${body.byteLength}`)
      }
      const used = this.used + body.byteLength
      await this.db.batch([
        { type: 'put', key: blobKey(id), value: body },
        { type: 'put', key: metaKey(id), value: encodeMeta({ size: body.byteLength, created: Date.now(), owners: 1 }) },
        { type: 'put', key: ownerKey(id, owner), value: EMPTY },
        { type: 'put', key: USED_KEY, value: enc.encode(String(used)) }
      ])
      this.used = used
      return id
    })
  }

  /**
   * Why a put of `body` cannot be stored now, or undefined when it can (as
   * far as can be told before the payment is taken: a concurrent put may
   * still take the last free bytes)
   */
  async cannotPut (body: Uint8Array, bodyHash?: Uint8Array): Promise<ServiceError | undefined> {
    if (body.byteLength > this.maxBlobSize) {
      return new ServiceError(Status.TOO_LARGE, `blob of ${body.byteLength} bytes exceeds the limit of ${this.maxBlobSize} bytes per blob; split the file into pieces`)
    }
    if (this.used + body.byteLength <= this.capacity) { return undefined }
    // content already here takes no room
    const id = hex(bodyHash?.byteLength === 32 ? bodyHash : sha256(body))
    if (await this.meta(id) != null) { return undefined }
    return new ServiceError(Status.INSUFFICIENT_STORAGE, `this node has ${this.freeBytes} bytes free; the blob needs ${body.byteLength}`)
  }

  /** Why a get of [offset, …) of blob `id` cannot be served, or undefined when it can */
  async cannotGet (id: string, offset: number): Promise<ServiceError | undefined> {
    const meta = await this.meta(id)
    if (meta == null) { return new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
    if (offset > meta.size) { return new ServiceError(Status.BAD_REQUEST, `offset ${offset} is past the end of the blob (${meta.size} bytes)`) }
    return undefined
  }

  /** The blob, or its bytes [offset, offset + length) clipped to its end */
  async get (id: string, offset = 0, length?: number): Promise<Uint8Array> {
    const blob = await this.db.get(blobKey(id))
    if (blob == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
    if (this.verifyOnGet && hex(sha256(blob)) !== id) {
      this.log.error('blob %s failed its integrity check (%d bytes stored); not served', id, blob.byteLength)
      throw new ServiceError(Status.SERVER_ERROR, 'the stored copy of this blob is damaged')
    }
    if (offset > blob.byteLength) { throw new ServiceError(Status.BAD_REQUEST, `offset ${offset} is past the end of the blob (${blob.byteLength} bytes)`) }
    const end = length == null ? blob.byteLength : Math.min(blob.byteLength, offset + length)
    return blob.subarray(offset, end)
  }

  /**
   * Removes `owner`'s claim on a blob and returns true when that erased it
   * (no owner left). Only an owner may delete: access-denied otherwise.
   */
  async delete (id: string, owner: string): Promise<boolean> {
    return this.exclusive(async () => {
      const meta = await this.meta(id)
      if (meta == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
      if (!await this.isOwner(id, owner)) { throw new ServiceError(Status.ACCESS_DENIED, 'only a peer that stored this blob may delete it') }
      if (meta.owners > 1) {
        await this.db.batch([
          { type: 'del', key: ownerKey(id, owner) },
          { type: 'put', key: metaKey(id), value: encodeMeta({ ...meta, owners: meta.owners - 1 }) }
        ])
        return false
      }
      const used = Math.max(0, this.used - meta.size)
      await this.db.batch([
        { type: 'del', key: blobKey(id) },
        { type: 'del', key: metaKey(id) },
        { type: 'del', key: ownerKey(id, owner) },
        { type: 'put', key: USED_KEY, value: enc.encode(String(used)) }
      ])
      this.used = used
      return true
    })
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
              erased = await this.delete(d.id, d.owner)
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
  private async leafHashesOf (id: string, body?: Uint8Array): Promise<Uint8Array> {
    const stored = await this.db.get(treeKey(id))
    if (stored != null && stored.byteLength > 0 && stored.byteLength % 32 === 0) { return stored }
    const hashes = leafHashes(body ?? await this.get(id))
    await this.db.put(treeKey(id), hashes)
    return hashes
  }

  /**
   * Reads [offset, offset + length) of a piece without hashing all of it
   * (audits check the leaves they read against the stored leaf hashes)
   */
  private async readRange (id: string): Promise<(offset: number, length: number) => Promise<Uint8Array>> {
    // the LevelDB store has no range read: one read of the value; the piece store reads just the range
    const blob = await this.db.get(blobKey(id))
    if (blob == null) { throw new ServiceError(Status.NOT_FOUND, `the bytes of blob ${id} are missing`) }
    return async (offset, length) => blob.subarray(offset, offset + length)
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
    const meta = await this.meta(id)
    if (meta == null) { return new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
    if (meta.size !== size) { return new ServiceError(Status.BAD_REQUEST, `blob ${id} has ${meta.size} bytes, not ${size}`) }
    // a lease belongs to the identity that paid: another one takes its own by putting the content
    if (!await this.isOwner(id, ownerOf(call))) { return new ServiceError(Status.ACCESS_DENIED, 'you hold no lease on this blob; put it to take one') }
    return undefined
  }

  /** Lease terms and storage prices per GiB-month, for `storage.info` */
  private leaseTerms (): Record<string, unknown> {
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

  /** The service definition to register with OpenCloud */
  definition (): ServiceDefinition {
    const rangeArgs = (call: ServiceCall): { id: string, offset: number, length?: number } => {
      checkArgCount(call, 3, '<id> [offset] [length]')
      const id = parseBlobId(call.args[0])
      const o = call.args.length > 1 ? parseUnsigned(call.args[1]) : 0n
      const l = call.args.length > 2 ? parseUnsigned(call.args[2]) : undefined
      if (o == null || (call.args.length > 2 && l == null)) { throw new ServiceError(Status.BAD_REQUEST, 'offset and length must be non-negative decimal integers') }
      if (o > BigInt(Number.MAX_SAFE_INTEGER) || (l ?? 0n) > BigInt(Number.MAX_SAFE_INTEGER)) { throw new ServiceError(Status.BAD_REQUEST, 'offset or length too large') }
      return { id, offset: Number(o), length: l == null ? undefined : Number(l) }
    }
    const putSeconds = (call: ServiceCall): number => {
      checkArgCount(call, 1, '[seconds]')
      return call.args.length === 0 ? this.defaultLease : parseSeconds(call.args[0], this.maxLease, 'the lease')
    }
    const renewArgs = (call: ServiceCall): { id: string, seconds: number, size: number } => this.renewArgs(call)
    const auditArgs = (call: ServiceCall): { id: string, challenge: Uint8Array, leaves: number } => {
      checkArgCount(call, 3, '<id> <challenge> [leaves]')
      const id = parseBlobId(call.args[0])
      const c = call.args[1]
      if (c == null || !new RegExp(`^[0-9a-fA-F]{${CHALLENGE_SIZE * 2}}$`).test(c)) { throw new ServiceError(Status.BAD_REQUEST, `the challenge must be ${CHALLENGE_SIZE * 2} hex characters (fresh random bytes)`) }
      const n = call.args[2] == null ? BigInt(DEFAULT_AUDIT_LEAVES) : parseUnsigned(call.args[2])
      if (n == null || n < 1n || n > BigInt(MAX_AUDIT_LEAVES)) { throw new ServiceError(Status.BAD_REQUEST, `leaves must be from 1 to ${MAX_AUDIT_LEAVES}`) }
      return { id, challenge: new Uint8Array(Buffer.from(c, 'hex')), leaves: Number(n) }
    }
    return {
      name: 'storage',
      version: '1.0.0',
      description: 'content-addressed blob storage (id = SHA-256 of the content)',
      describe: () => ({ capacity: this.capacity, used: this.used, free: this.freeBytes, maxBlobSize: this.maxBlobSize, ...this.leaseTerms() }),
      start: async () => {
        await this.start()
        this.startSweeper()
      },
      stop: async () => {
        await this.stopSweeper()
        await this.stop()
      },
      methods: {
        put: {
          description: `stores the body for [seconds] (default ${this.defaultLease}); answers its id, Merkle root, lease expiry and a signed receipt (JSON)`,
          args: '[seconds]',
          units: [...BYTE_SECOND_UNITS],
          pricing: this.pricing?.put,
          usage: (call) => [BigInt(call.body.byteLength), BigInt(putSeconds(call))],
          // nothing is charged for a put that cannot be stored
          precheck: async (call) => {
            putSeconds(call)
            return this.cannotPut(call.body, call.bodyHash)
          },
          handler: async (call) => {
            const seconds = putSeconds(call)
            const owner = ownerOf(call)
            const id = hex(call.bodyHash?.byteLength === 32 ? call.bodyHash : sha256(call.body))
            const cost = amountsOf(call)
            return this.leases.exclusive(async () => {
              // the lease first: a crash before the piece is stored leaves a lease without a claim, which the sweeper drops
              const { previous, lease } = await this.leases.extend(id, owner, seconds, cost)
              try {
                await this.put(call.body, owner, call.bodyHash)
              } catch (err) {
                await this.leases.set(id, owner, lease, previous)
                throw err
              }
              const root = rootOfHashes(await this.leafHashesOf(id, call.body))
              return { body: await this.leaseAnswer(call, 'put', id, call.body.byteLength, root, lease, cost) }
            })
          }
        },
        renew: {
          description: 'extends your lease on a piece by <seconds>; <size> is the piece size in bytes (the price is known before the piece is looked up); answers like put',
          args: '<id> <seconds> <size>',
          units: [...BYTE_SECOND_UNITS],
          pricing: this.pricing?.renew ?? this.pricing?.put,
          usage: (call) => {
            const { seconds, size } = renewArgs(call)
            return [BigInt(size), BigInt(seconds)]
          },
          // nothing is charged for a lease that cannot be renewed
          precheck: async (call) => this.cannotRenew(call),
          handler: async (call) => {
            const { id, seconds } = renewArgs(call)
            const cost = amountsOf(call)
            return this.leases.exclusive(async () => {
              const refusal = await this.cannotRenew(call)
              if (refusal != null) { throw refusal }
              const size = (await this.meta(id))?.size ?? 0
              const { lease } = await this.leases.extend(id, ownerOf(call), seconds, cost)
              const root = rootOfHashes(await this.leafHashesOf(id))
              return { body: await this.leaseAnswer(call, 'renew', id, size, root, lease, cost) }
            })
          }
        },
        audit: {
          description: `proves it holds a piece: for the leaves a 32-byte hex <challenge> selects (default ${DEFAULT_AUDIT_LEAVES}, at most ${MAX_AUDIT_LEAVES}), their bytes and Merkle proofs (AuditProof protobuf)`,
          args: '<id> <challenge> [leaves]',
          pricing: this.pricing?.audit,
          precheck: async (call) => {
            const { id } = auditArgs(call)
            if (await this.meta(id) == null) { return new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
            return undefined
          },
          handler: async (call) => {
            const { id, challenge, leaves } = auditArgs(call)
            const meta = await this.meta(id)
            if (meta == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
            const hashes = await this.leafHashesOf(id)
            const read = await this.readRange(id)
            const { proof, damaged } = await answerAudit(meta.size, hashes, challengedLeaves(challenge, meta.size, leaves), read, this.treeOf(id, hashes))
            if (damaged.length > 0) {
              this.log.error('blob %s failed its integrity check at leaves %s; audit refused', id, damaged.join(','))
              throw new ServiceError(Status.SERVER_ERROR, 'the stored copy of this blob is damaged')
            }
            return { body: proof }
          }
        },
        get: {
          description: 'returns the blob, or the range [offset, offset+length)',
          args: '<id> [offset] [length]',
          units: ['byte'],
          pricing: this.pricing?.get,
          // priced before the blob is read: the bytes asked for, at most one blob
          usage: (call) => {
            const { length } = rangeArgs(call)
            return [BigInt(Math.min(length ?? this.maxBlobSize, this.maxBlobSize))]
          },
          // nothing is charged for a blob this node does not have, or a range past its end
          precheck: async (call) => {
            const { id, offset } = rangeArgs(call)
            return this.cannotGet(id, offset)
          },
          handler: async (call) => {
            const { id, offset, length } = rangeArgs(call)
            const body = await this.get(id, offset, length)
            // a whole blob hashes to its id (get checked it): no need to hash it again to sign the response
            return this.verifyOnGet && offset === 0 && length == null ? { body, bodyHash: Buffer.from(id, 'hex') } : { body }
          }
        },
        stat: {
          description: 'size, creation time and owner count of a blob (JSON)',
          args: '<id>',
          handler: async (call) => {
            checkArgCount(call, 1, '<id>')
            const id = parseBlobId(call.args[0])
            const meta = await this.meta(id)
            if (meta == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
            const lease = await this.leases.get(id, ownerOf(call))
            return {
              body: json({
                id,
                size: meta.size,
                created: new Date(meta.created).toISOString(),
                owners: meta.owners,
                yours: await this.isOwner(id, ownerOf(call)),
                // your lease (null: none, or a piece stored before leases, kept until deleted)
                expires: lease == null ? null : new Date(lease.expires).toISOString(),
                paid: lease?.paid ?? 0n,
                promised: lease?.promised ?? 0n,
                root: hex(rootOfHashes(await this.leafHashesOf(id)))
              })
            }
          }
        },
        delete: {
          description: 'drops your claim on a blob; it is erased when no one else stored it',
          args: '<id>',
          handler: async (call) => {
            checkArgCount(call, 1, '<id>')
            const id = parseBlobId(call.args[0])
            const owner = ownerOf(call)
            const erased = await this.leases.exclusive(async () => {
              const erased = await this.delete(id, owner)
              const lease = await this.leases.get(id, owner)
              if (lease != null) { await this.leases.set(id, owner, lease, undefined) }
              if (erased) { await this.db.del(treeKey(id)) }
              return erased
            })
            return { body: json({ id, erased }) }
          }
        }
      }
    }
  }
}

/** The storage service definition, for embedding with `openCloud({ services: [...] })` */
export function storageService (init: StorageServiceInit): ServiceDefinition {
  return new StorageService(init).definition()
}
