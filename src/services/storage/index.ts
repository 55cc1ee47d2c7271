import { logger } from '@libp2p/logger'
import { parseUnsigned } from '../../protocols/opencloud/api/pricing.js'
import { sha256 } from '../../protocols/opencloud/api/signing.js'
import { ServiceError } from '../../protocols/opencloud/api/template.js'
import { Status } from '../../protocols/opencloud/pb/opencloud.js'
import { DiskPieceStore, MemoryPieceStore, PieceDamagedError, InsufficientStorageError, migrateLevelBlobs } from '../../storage/index.js'
import { json } from '../../util/json.js'
import { checkArgCount, LeaseKeeper, ownerOf, parseBlobId } from './lease-keeper.js'
import type { LeaseOptions } from './lease-keeper.js'
import type { LeaseStore } from './leases.js'
import type { Pricing } from '../../protocols/opencloud/api/pricing.js'
import type { ServiceCall, ServiceDefinition } from '../../protocols/opencloud/api/template.js'
import type { PieceStore } from '../../storage/index.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { Logger } from '@libp2p/interface'

export { ownerOf, parseBlobId, DEFAULT_LEASE, DEFAULT_MAX_LEASE, DEFAULT_LEASE_GRACE, DEFAULT_SWEEP_INTERVAL } from './lease-keeper.js'

export interface StorageServiceInit extends LeaseOptions {
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
   * Where the blobs' bytes live (docs/storage.md). A node on disk passes a
   * `DiskPieceStore` (`createDecloudNode` does: `<data dir>/pieces`), whose
   * capacity is then the service's.
   *
   * @default a MemoryPieceStore of `capacity`: blobs last as long as the process
   */
  pieces?: PieceStore
  /**
   * total bytes of blob content this node will store (when `pieces` is not given)
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

/** the usage counter before the piece store (which now counts): removed at start */
const USED_KEY = 'used'
/** blobs as LevelDB values before the piece store: moved into it at start */
const LEGACY_BLOB_PREFIX = 'b/'
/** a piece put or deleted without its metadata settled yet; start() settles it */
const pendingKey = (id: string): string => `n/${id}`
const PENDING_PREFIX = 'n/'
const PENDING_END = 'n0'
const metaKey = (id: string): string => `m/${id}`
/** one key per owner, so a blob with many owners never makes one value grow */
const ownerKey = (id: string, owner: string): string => `o/${id}/${owner}`
const META_PREFIX = 'm/'
const META_END = 'm0' // '0' sorts right after '/'
const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()

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

/**
 * `storage`: content-addressed blobs (id = hex SHA-256 of the content); the
 * bytes in a piece store (src/storage, docs/storage.md), the metadata and
 * owners in LevelDB.
 *
 * Invariants. The usage is the piece store's, which counts exactly what it
 * holds. A blob's piece and its metadata change together: a put stores the
 * piece under a pending mark `n/<id>` and writes the metadata, the owner and
 * the mark's removal in one batch; a delete removes them and sets the mark
 * before it deletes the piece; start() deletes the piece of any mark without
 * metadata. Writes are serialised, so concurrent puts of the same blob store
 * and count it once. A blob is erased only when the last credential that
 * stored it deletes it. Bytes that no longer hash to their id are never
 * served (verifyOnGet): the piece store drops them, and putting the same
 * content again restores them.
 *
 * Layout (inside the sublevel): `m/<id>` JSON BlobMeta, `o/<id>/<owner>`
 * empty, `n/<id>` empty. Before the piece store, `b/<id>` held the bytes and
 * `used` the count: start() moves them over once (re-runnable after a crash).
 */
export class StorageService {
  private readonly db: SubDb
  /** where the bytes live */
  readonly pieceStore: PieceStore
  readonly maxBlobSize: number
  private readonly verifyOnGet: boolean
  private readonly pricing: StorageServiceInit['pricing']
  private readonly log: Logger
  /** serialises writes: puts and deletes read and change the metadata, the owners and the pieces */
  private lock: Promise<unknown> = Promise.resolve()
  /** leases, receipts, audits and the sweeper */
  readonly keeper: LeaseKeeper
  /** start()'s work: every read waits for it */
  private opening: Promise<void> = Promise.resolve()

  constructor (init: StorageServiceInit) {
    this.db = init.db
    this.maxBlobSize = init.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE
    const capacity = init.capacity ?? DEFAULT_CAPACITY
    if (!Number.isSafeInteger(capacity) || capacity < 0) { throw new RangeError('capacity must be a non-negative integer') }
    this.pieceStore = init.pieces ?? new MemoryPieceStore({ capacity })
    this.verifyOnGet = init.verifyOnGet ?? true
    this.pricing = init.pricing
    this.log = init.log ?? logger('decloud:storage')
    this.keeper = new LeaseKeeper({ ...init, pieces: this, maxBlobSize: this.maxBlobSize, log: this.log })
    if (!Number.isSafeInteger(this.maxBlobSize) || this.maxBlobSize < 0) { throw new RangeError('maxBlobSize must be a non-negative integer') }
  }

  /**
   * Opens the piece store, settles puts and deletes a crash interrupted, and
   * moves blobs held in LevelDB by an older version into the piece store.
   * Returns at once (a move can take minutes, and OpenCloud starts its
   * services before it serves): calls wait for the work, `ready()` says
   * when it is done.
   */
  async start (): Promise<void> {
    this.opening = this.exclusive(async () => {
      await this.pieceStore.open()
      for await (const [key] of this.db.iterator({ gte: PENDING_PREFIX, lt: PENDING_END })) {
        const id = key.slice(PENDING_PREFIX.length)
        if (await this.db.get(metaKey(id)) == null) { await this.pieceStore.delete(id) }
        await this.db.del(key)
      }
      // a memory piece store would lose them: they stay where they are
      if (this.pieceStore instanceof DiskPieceStore) {
        const moved = await migrateLevelBlobs(this.db, LEGACY_BLOB_PREFIX, this.pieceStore, this.log)
        if (moved.moved + moved.damaged > 0) { this.log('moved %d blobs (%d bytes) from LevelDB into the piece store; %d damaged ones dropped', moved.moved, moved.bytes, moved.damaged) }
        if (await this.db.get(USED_KEY) != null) { await this.db.del(USED_KEY) }
      }
    })
    this.opening.catch((err) => { this.log.error('could not open the piece store - %e', err) })
  }

  /** Resolves once start() has opened the piece store; rejects with what made it fail */
  async ready (): Promise<void> {
    await this.opening
  }

  /** Waits for writes in progress, so the database can be closed */
  async stop (): Promise<void> {
    await this.exclusive(async () => {
      await this.pieceStore.close()
    })
  }

  /** Blobs stored (pieces in the piece store) */
  get pieces (): number {
    return this.pieceStore.usage().pieces
  }

  /** Bytes of blob content stored */
  get usedBytes (): number {
    return this.pieceStore.usage().bytes
  }

  get capacity (): number {
    return this.pieceStore.usage().capacity
  }

  get freeBytes (): number {
    return this.pieceStore.usage().free
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
    await this.opening
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
        // repair: the caller holds the true bytes, so restore a copy that went missing or bad (the piece store dropped it)
        if (!await this.pieceStore.has(id)) {
          this.log.error('blob %s was missing or corrupt; restored from a new put', id)
          await this.putPiece(id, body)
        }
        if (ops.length > 0) { await this.db.batch(ops) }
        return id
      }
      await this.db.put(pendingKey(id), EMPTY, { sync: this.pieceStore.durable })
      try {
        await this.putPiece(id, body)
        await this.db.batch([
          { type: 'put', key: metaKey(id), value: encodeMeta({ size: body.byteLength, created: Date.now(), owners: 1 }) },
          { type: 'put', key: ownerKey(id, owner), value: EMPTY },
          { type: 'del', key: pendingKey(id) }
        ], { sync: this.pieceStore.durable })
      } catch (err) {
        // nothing refers to the piece: take it back (start() does, if this fails too)
        await this.pieceStore.delete(id).catch(() => {})
        await this.db.del(pendingKey(id)).catch(() => {})
        throw err
      }
      return id
    })
  }

  /** Stores a piece whose id the caller computed from its bytes, naming a full store as the protocol does */
  private async putPiece (id: string, body: Uint8Array): Promise<void> {
    try {
      await this.pieceStore.put(id, body, { trustedId: true })
    } catch (err) {
      if (err instanceof InsufficientStorageError) { throw new ServiceError(Status.INSUFFICIENT_STORAGE, `this node has ${this.freeBytes} bytes free; the blob needs ${body.byteLength}`) }
      throw err
    }
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
    if (body.byteLength <= this.freeBytes) { return undefined }
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
    await this.opening
    let blob: Uint8Array | undefined
    try {
      // verified whole, or only the bytes asked for when not verifying
      blob = this.verifyOnGet ? await this.pieceStore.get(id) : await this.readRange(id, offset, length)
    } catch (err) {
      if (err instanceof PieceDamagedError) {
        this.log.error('blob %s failed its integrity check; not served: %e', id, err)
        throw new ServiceError(Status.SERVER_ERROR, 'the stored copy of this blob is damaged')
      }
      throw err
    }
    if (blob == null) {
      if (await this.meta(id) == null) { throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`) }
      // metadata without its piece: the piece store dropped a damaged copy
      throw new ServiceError(Status.SERVER_ERROR, 'the stored copy of this blob is damaged')
    }
    if (!this.verifyOnGet) { return blob }
    if (offset > blob.byteLength) { throw new ServiceError(Status.BAD_REQUEST, `offset ${offset} is past the end of the blob (${blob.byteLength} bytes)`) }
    const end = length == null ? blob.byteLength : Math.min(blob.byteLength, offset + length)
    return blob.subarray(offset, end)
  }

  private async readRange (id: string, offset: number, length?: number): Promise<Uint8Array | undefined> {
    const size = await this.pieceStore.size(id)
    if (size == null) { return undefined }
    if (offset > size) { throw new ServiceError(Status.BAD_REQUEST, `offset ${offset} is past the end of the blob (${size} bytes)`) }
    return this.pieceStore.read(id, offset, length ?? size)
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
      await this.db.batch([
        { type: 'del', key: metaKey(id) },
        { type: 'del', key: ownerKey(id, owner) },
        { type: 'put', key: pendingKey(id), value: EMPTY }
      ], { sync: this.pieceStore.durable })
      await this.pieceStore.delete(id)
      await this.db.del(pendingKey(id))
      return true
    })
  }

  /** The lease records */
  get leases (): LeaseStore {
    return this.keeper.leases
  }

  /** Ends the leases whose grace is over (see LeaseKeeper.sweep) */
  async sweep (now = Date.now()): Promise<number> {
    return this.keeper.sweep(now)
  }

  /**
   * Reads [offset, offset + length) of a piece without hashing all of it
   * (audits check the leaves they read against the stored leaf hashes)
   */
  async rangeReader (id: string): Promise<(offset: number, length: number) => Promise<Uint8Array>> {
    await this.opening
    return async (offset, length) => {
      // the piece store reads just these bytes (unverified: the caller checks them against the leaf hashes)
      const bytes = await this.pieceStore.read(id, offset, length)
      if (bytes == null) { throw new ServiceError(Status.NOT_FOUND, `the bytes of blob ${id} are missing`) }
      return bytes
    }
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
    return {
      name: 'storage',
      version: '1.0.0',
      description: 'content-addressed blob storage (id = SHA-256 of the content)',
      describe: () => ({ capacity: this.capacity, used: this.usedBytes, free: this.freeBytes, maxBlobSize: this.maxBlobSize, ...this.keeper.terms() }),
      start: async () => {
        await this.start()
        this.keeper.startSweeper()
      },
      stop: async () => {
        await this.keeper.stopSweeper()
        await this.stop()
      },
      methods: {
        ...this.keeper.methods(),
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
            return { body: json({ id, size: meta.size, created: new Date(meta.created).toISOString(), owners: meta.owners, yours: await this.isOwner(id, ownerOf(call)), ...await this.keeper.stat(id, ownerOf(call)) }) }
          }
        },
        delete: {
          description: 'drops your claim on a blob; it is erased when no one else stored it',
          args: '<id>',
          handler: async (call) => {
            checkArgCount(call, 1, '<id>')
            const id = parseBlobId(call.args[0])
            const erased = await this.keeper.delete(id, ownerOf(call))
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
