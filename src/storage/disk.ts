import { createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidParametersError, NotStartedError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { KeyedMutex, Mutex } from '../util/locks.js'
import { InsufficientStorageError, PieceDamagedError } from './errors.js'
import type { PieceStore, PieceUsage, PutOptions } from './types.js'
import type { BatchOp, SubDb } from '../store/index.js'
import type { AbortOptions, Logger } from '@libp2p/interface'

export interface DiskPieceStoreInit {
  /** the folder of the piece files (e.g. `<data dir>/pieces`); created when missing */
  dir: string
  /** the piece metadata's namespace in the node's LevelDB (e.g. `store.sub('pieces')`) */
  db: SubDb
  /**
   * most bytes of piece content stored
   *
   * @default 10 GiB
   */
  capacity?: number
  /**
   * fsync each piece file, its folder and the metadata before a put or
   * delete resolves, so that a power loss keeps what was acknowledged. Off,
   * a crash of the process still leaves every piece whole or absent (the
   * kernel keeps what was written), a power loss may not.
   *
   * @default true
   */
  sync?: boolean
  /** @default logger('decloud:pieces') */
  log?: Logger
}

export const DEFAULT_PIECE_CAPACITY = 10 * 1024 * 1024 * 1024

/** Piece ids: the lower-case hex SHA-256 of the content */
export const PIECE_ID = /^[0-9a-f]{64}$/
/** `p/<id>` → JSON { size, created }: a piece that is whole on disk and counted */
const META = 'p/'
const META_END = 'p0' // '0' sorts right after '/'
/** `i/<id>` → empty: a put or delete of this piece's file was in progress; open() settles it */
const INTENT = 'i/'
const INTENT_END = 'i0'
/** JSON { pieces, bytes }, written in the same batch as every `p/` change */
const USED = 'used'
/** files being written; only puts in flight have one, so recovery empties it */
const TMP_DIR = 'tmp'
const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()

interface PieceMeta { size: number, created: number }

function hexSha256 (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function decodeMeta (bytes: Uint8Array): PieceMeta | undefined {
  try {
    const m = JSON.parse(dec.decode(bytes))
    if (Number.isSafeInteger(m?.size) && m.size >= 0 && Number.isSafeInteger(m.created)) { return { size: m.size, created: m.created } }
  } catch {
    // unreadable, like a value of the wrong shape
  }
  return undefined
}

function decodeUsed (bytes: Uint8Array | undefined): { pieces: number, bytes: number } | undefined {
  if (bytes == null) { return undefined }
  try {
    const u = JSON.parse(dec.decode(bytes))
    if (Number.isSafeInteger(u?.pieces) && u.pieces >= 0 && Number.isSafeInteger(u.bytes) && u.bytes >= 0) { return { pieces: u.pieces, bytes: u.bytes } }
  } catch {
    // recounted by the caller
  }
  return undefined
}

function isNotFound (err: any): boolean {
  return err?.code === 'ENOENT'
}

export function checkPieceId (id: string): void {
  if (typeof id !== 'string' || !PIECE_ID.test(id)) { throw new InvalidParametersError('a piece id is the lower-case hex SHA-256 of its content (64 characters)') }
}

/**
 * Pieces as one file each, `<dir>/<first 2 hex of id>/<id>`, holding exactly
 * the piece's bytes (a range read is one positioned read); LevelDB keeps
 * only the metadata and the counters. Why this layout, and the numbers
 * behind it: docs/storage.md.
 *
 * Crash safety. A put writes the intent `i/<id>`, writes `tmp/<id>.<rand>`,
 * fsyncs it, renames it into place, fsyncs the folder, then writes `p/<id>`,
 * the counters and the removal of the intent in one batch. A delete does the
 * reverse: one batch drops `p/<id>`, uncounts it and writes the intent; then
 * the file is unlinked and the intent removed. So at any instant a piece is
 * counted if and only if `p/<id>` exists, and then its file is whole; what a
 * crash can leave behind is a file under an intent without `p/<id>`, or a
 * temp file: `open()` removes both, in time proportional to the operations
 * that were in flight, never to the size of the store.
 */
export class DiskPieceStore implements PieceStore {
  readonly durable = true
  readonly capacity: number
  private readonly dir: string
  private readonly tmp: string
  private readonly db: SubDb
  private readonly sync: boolean
  private readonly log: Logger
  /** one put or delete at a time per piece */
  private readonly perPiece = new KeyedMutex()
  /** the counters change in the order their batches are written */
  private readonly counter = new Mutex()
  private readonly shards = new Set<string>()
  private readonly inFlight = new Set<Promise<unknown>>()
  private pieces = 0
  private bytes = 0
  /** bytes promised to puts writing their file */
  private reserved = 0
  private state: 'new' | 'open' | 'closed' = 'new'

  constructor (init: DiskPieceStoreInit) {
    this.dir = init.dir
    this.tmp = join(init.dir, TMP_DIR)
    this.db = init.db
    this.capacity = init.capacity ?? DEFAULT_PIECE_CAPACITY
    this.sync = init.sync ?? true
    this.log = init.log ?? logger('decloud:pieces')
    if (!Number.isSafeInteger(this.capacity) || this.capacity < 0) { throw new RangeError('capacity must be a non-negative integer') }
  }

  async open (): Promise<void> {
    if (this.state === 'open') { return }
    await mkdir(this.tmp, { recursive: true })
    // temp files belong to puts that never finished: none of them is counted
    for (const name of await readdir(this.tmp)) {
      await unlink(join(this.tmp, name)).catch(() => {})
    }
    // an intent without its metadata: a put that did not finish or a delete that did not unlink
    const settled: BatchOp[] = []
    for await (const [key] of this.db.iterator({ gte: INTENT, lt: INTENT_END })) {
      const id = key.slice(INTENT.length)
      if (PIECE_ID.test(id) && await this.db.get(META + id) == null) {
        await unlink(this.path(id)).catch((err) => { if (!isNotFound(err)) { throw err } })
      }
      settled.push({ type: 'del', key })
    }
    if (settled.length > 0) {
      this.log('settled %d interrupted puts or deletes', settled.length)
      await this.db.batch(settled, { sync: this.sync })
    }
    const raw = await this.db.get(USED)
    const used = decodeUsed(raw)
    if (used != null) {
      this.pieces = used.pieces
      this.bytes = used.bytes
    } else {
      // missing (a new store) or unreadable: count the metadata once
      let pieces = 0
      let bytes = 0
      for await (const [key, value] of this.db.iterator({ gte: META, lt: META_END })) {
        const meta = decodeMeta(value)
        if (meta == null) {
          this.log.error('unreadable metadata at %s', key)
          continue
        }
        pieces++
        bytes += meta.size
      }
      if (raw != null) { this.log.error('piece counters unreadable; recounted %d pieces, %d bytes', pieces, bytes) }
      await this.db.put(USED, this.encodeUsed(pieces, bytes), { sync: this.sync })
      this.pieces = pieces
      this.bytes = bytes
    }
    this.state = 'open'
  }

  async put (id: string, bytes: Uint8Array, options: PutOptions = {}): Promise<boolean> {
    this.checkOpen()
    checkPieceId(id)
    options.signal?.throwIfAborted()
    if (options.trustedId !== true && hexSha256(bytes) !== id) { throw new InvalidParametersError('the piece id is not the SHA-256 of its bytes') }
    return this.track(this.perPiece.run(id, async () => this.putLocked(id, bytes, false)))
  }

  /**
   * Stores a piece even past capacity (never more than it was given):
   * for moving an existing store in, which already held these bytes
   */
  async putOverCapacity (id: string, bytes: Uint8Array): Promise<boolean> {
    this.checkOpen()
    checkPieceId(id)
    return this.track(this.perPiece.run(id, async () => this.putLocked(id, bytes, true)))
  }

  private async putLocked (id: string, bytes: Uint8Array, overCapacity: boolean): Promise<boolean> {
    if (await this.meta(id) != null) { return false }
    const size = bytes.byteLength
    // reserved synchronously after the check: puts racing for the last free bytes never exceed the capacity
    if (!overCapacity && this.bytes + this.reserved + size > this.capacity) {
      throw new InsufficientStorageError(`the piece store has ${this.usage().free} bytes free; the piece needs ${size}`)
    }
    this.reserved += size
    const tmp = join(this.tmp, `${id}.${randomBytes(6).toString('hex')}`)
    const final = this.path(id)
    let placed = false
    try {
      await this.db.put(INTENT + id, EMPTY, { sync: this.sync })
      const fh = await open(tmp, 'wx')
      try {
        await fh.writeFile(bytes)
        if (this.sync) { await fh.sync() }
      } finally {
        await fh.close()
      }
      await this.shard(id)
      await rename(tmp, final)
      placed = true
      if (this.sync) { await this.syncDir(join(this.dir, id.slice(0, 2))) }
      await this.counter.run(async () => {
        await this.db.batch([
          { type: 'put', key: META + id, value: enc.encode(JSON.stringify({ size, created: Date.now() })) },
          { type: 'del', key: INTENT + id },
          { type: 'put', key: USED, value: this.encodeUsed(this.pieces + 1, this.bytes + size) }
        ], { sync: this.sync })
        this.pieces++
        this.bytes += size
      })
      return true
    } catch (err) {
      // undo what is undoable now; the intent makes open() finish the job if this fails too
      await unlink(placed ? final : tmp).catch(() => {})
      await this.db.del(INTENT + id).catch(() => {})
      throw err
    } finally {
      this.reserved -= size
    }
  }

  async get (id: string, options: AbortOptions = {}): Promise<Uint8Array | undefined> {
    this.checkOpen()
    if (!PIECE_ID.test(id)) { return undefined }
    options.signal?.throwIfAborted()
    return this.getOnce(id, true)
  }

  private async getOnce (id: string, retry: boolean): Promise<Uint8Array | undefined> {
    const meta = await this.meta(id)
    if (meta == null) { return undefined }
    let bytes: Uint8Array | undefined
    try {
      bytes = await readFile(this.path(id))
    } catch (err) {
      if (!isNotFound(err)) { throw err }
    }
    if (bytes != null && bytes.byteLength === meta.size && hexSha256(bytes) === id) { return bytes }
    // replaced while being read (rare): read the new copy once
    return await this.damaged(id) === 'whole' && retry ? this.getOnce(id, false) : undefined
  }

  async read (id: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array | undefined> {
    this.checkOpen()
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) { throw new RangeError('offset and length must be non-negative integers') }
    if (!PIECE_ID.test(id)) { return undefined }
    options.signal?.throwIfAborted()
    return this.readOnce(id, offset, length, true)
  }

  private async readOnce (id: string, offset: number, length: number, retry: boolean): Promise<Uint8Array | undefined> {
    const meta = await this.meta(id)
    if (meta == null) { return undefined }
    if (offset > meta.size) { throw new RangeError(`offset ${offset} is past the end of the piece (${meta.size} bytes)`) }
    const n = Math.min(length, meta.size - offset)
    let fh
    try {
      fh = await open(this.path(id), 'r')
    } catch (err) {
      if (!isNotFound(err)) { throw err }
      return await this.damaged(id) === 'whole' && retry ? this.readOnce(id, offset, length, false) : undefined
    }
    try {
      const buf = new Uint8Array(n)
      let got = 0
      while (got < n) {
        const { bytesRead } = await fh.read(buf, got, n - got, offset + got)
        if (bytesRead === 0) { break }
        got += bytesRead
      }
      if (got === n) { return buf }
    } finally {
      await fh.close()
    }
    return await this.damaged(id) === 'whole' && retry ? this.readOnce(id, offset, length, false) : undefined
  }

  async has (id: string): Promise<boolean> {
    return PIECE_ID.test(id) && await this.meta(id) != null
  }

  async size (id: string): Promise<number | undefined> {
    if (!PIECE_ID.test(id)) { return undefined }
    return (await this.meta(id))?.size
  }

  async delete (id: string): Promise<boolean> {
    this.checkOpen()
    if (!PIECE_ID.test(id)) { return false }
    return this.track(this.perPiece.run(id, async () => this.deleteLocked(id)))
  }

  private async deleteLocked (id: string): Promise<boolean> {
    const meta = await this.meta(id)
    if (meta == null) { return false }
    await this.counter.run(async () => {
      await this.db.batch([
        { type: 'del', key: META + id },
        { type: 'put', key: INTENT + id, value: EMPTY },
        { type: 'put', key: USED, value: this.encodeUsed(this.pieces - 1, this.bytes - meta.size) }
      ], { sync: this.sync })
      this.pieces--
      this.bytes -= meta.size
    })
    // uncounted from here; the intent has open() unlink the file if this process dies first
    await unlink(this.path(id)).catch((err) => { if (!isNotFound(err)) { throw err } })
    await this.db.del(INTENT + id)
    return true
  }

  /**
   * A piece failed its check outside the lock: check again under it (a
   * delete and a new put may have replaced the file meanwhile), and drop it
   * when it is still bad. Resolves to what the piece is now when it is not
   * damaged ('gone', or 'whole' again), throws `PieceDamagedError` when it
   * was dropped.
   */
  private async damaged (id: string): Promise<'gone' | 'whole'> {
    const outcome = await this.track(this.perPiece.run(id, async () => {
      const meta = await this.meta(id)
      if (meta == null) { return 'gone' }
      const bytes = await readFile(this.path(id)).catch((err) => { if (isNotFound(err)) { return undefined } throw err })
      if (bytes != null && bytes.byteLength === meta.size && hexSha256(bytes) === id) { return 'whole' }
      this.log.error('piece %s is damaged (%s, %d bytes expected); dropped', id, bytes == null ? 'file missing' : `${bytes.byteLength} bytes on disk`, meta.size)
      await this.deleteLocked(id)
      return 'dropped'
    }))
    if (outcome === 'dropped') { throw new PieceDamagedError(id, `piece ${id} is damaged on disk and was dropped`) }
    return outcome
  }

  usage (): PieceUsage {
    return { pieces: this.pieces, bytes: this.bytes, capacity: this.capacity, free: Math.max(0, this.capacity - this.bytes - this.reserved) }
  }

  async * ids (): AsyncGenerator<string> {
    for await (const [key] of this.db.iterator({ gte: META, lt: META_END })) {
      yield key.slice(META.length)
    }
  }

  async close (): Promise<void> {
    if (this.state !== 'open') { this.state = 'closed'; return }
    this.state = 'closed'
    await Promise.allSettled([...this.inFlight])
  }

  /** where a piece's file lives */
  path (id: string): string {
    return join(this.dir, id.slice(0, 2), id)
  }

  private async meta (id: string): Promise<PieceMeta | undefined> {
    const raw = await this.db.get(META + id)
    if (raw == null) { return undefined }
    const meta = decodeMeta(raw)
    if (meta == null) { throw new PieceDamagedError(id, `metadata of piece ${id} is unreadable`) }
    return meta
  }

  private encodeUsed (pieces: number, bytes: number): Uint8Array {
    return enc.encode(JSON.stringify({ pieces, bytes }))
  }

  private async shard (id: string): Promise<void> {
    const name = id.slice(0, 2)
    if (this.shards.has(name)) { return }
    await mkdir(join(this.dir, name), { recursive: true })
    if (this.sync) { await this.syncDir(this.dir) }
    this.shards.add(name)
  }

  private async syncDir (dir: string): Promise<void> {
    const fh = await open(dir, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
  }

  private checkOpen (): void {
    if (this.state !== 'open') { throw new NotStartedError(this.state === 'new' ? 'the piece store is not open' : 'the piece store is closed') }
  }

  private async track<T> (p: Promise<T>): Promise<T> {
    this.inFlight.add(p)
    try {
      return await p
    } finally {
      this.inFlight.delete(p)
    }
  }
}
