import { createHash } from 'node:crypto'
import { InvalidParametersError, NotStartedError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { checkPieceId, DEFAULT_PIECE_CAPACITY, PIECE_ID } from './disk.js'
import { InsufficientStorageError, PieceDamagedError } from './errors.js'
import type { PieceStore, PieceUsage, PutOptions } from './types.js'
import type { Logger } from '@libp2p/interface'

export interface MemoryPieceStoreInit {
  /** @default 10 GiB */
  capacity?: number
  /** @default logger('decloud:pieces') */
  log?: Logger
}

/**
 * Pieces in a Map: gone with the process. For nodes on `Store.memory()`,
 * short-lived clients and tests of the logic above the store. It keeps the
 * contract of `DiskPieceStore` (verified gets, exact counting, capacity).
 */
export class MemoryPieceStore implements PieceStore {
  readonly durable = false
  readonly capacity: number
  private readonly pieces = new Map<string, Uint8Array>()
  private readonly log: Logger
  private bytes = 0
  private closed = false

  constructor (init: MemoryPieceStoreInit = {}) {
    this.capacity = init.capacity ?? DEFAULT_PIECE_CAPACITY
    this.log = init.log ?? logger('decloud:pieces')
    if (!Number.isSafeInteger(this.capacity) || this.capacity < 0) { throw new RangeError('capacity must be a non-negative integer') }
  }

  async open (): Promise<void> {
    this.closed = false
  }

  async put (id: string, bytes: Uint8Array, options: PutOptions = {}): Promise<boolean> {
    this.checkOpen()
    checkPieceId(id)
    options.signal?.throwIfAborted()
    if (options.trustedId !== true && createHash('sha256').update(bytes).digest('hex') !== id) { throw new InvalidParametersError('the piece id is not the SHA-256 of its bytes') }
    if (this.pieces.has(id)) { return false }
    if (this.bytes + bytes.byteLength > this.capacity) { throw new InsufficientStorageError(`the piece store has ${this.usage().free} bytes free; the piece needs ${bytes.byteLength}`) }
    // a copy: the caller may reuse its buffer
    this.pieces.set(id, Uint8Array.from(bytes))
    this.bytes += bytes.byteLength
    return true
  }

  async get (id: string): Promise<Uint8Array | undefined> {
    this.checkOpen()
    const bytes = this.pieces.get(id)
    if (bytes == null) { return undefined }
    if (createHash('sha256').update(bytes).digest('hex') !== id) {
      this.log.error('piece %s is damaged in memory; dropped', id)
      await this.delete(id)
      throw new PieceDamagedError(id, `piece ${id} is damaged and was dropped`)
    }
    return bytes.slice()
  }

  async read (id: string, offset: number, length: number): Promise<Uint8Array | undefined> {
    this.checkOpen()
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) { throw new RangeError('offset and length must be non-negative integers') }
    const bytes = this.pieces.get(id)
    if (bytes == null) { return undefined }
    if (offset > bytes.byteLength) { throw new RangeError(`offset ${offset} is past the end of the piece (${bytes.byteLength} bytes)`) }
    return bytes.slice(offset, Math.min(bytes.byteLength, offset + length))
  }

  async has (id: string): Promise<boolean> {
    return this.pieces.has(id)
  }

  async size (id: string): Promise<number | undefined> {
    return this.pieces.get(id)?.byteLength
  }

  async delete (id: string): Promise<boolean> {
    this.checkOpen()
    const bytes = this.pieces.get(id)
    if (bytes == null) { return false }
    this.pieces.delete(id)
    this.bytes -= bytes.byteLength
    return true
  }

  usage (): PieceUsage {
    return { pieces: this.pieces.size, bytes: this.bytes, capacity: this.capacity, free: Math.max(0, this.capacity - this.bytes) }
  }

  async * ids (): AsyncGenerator<string> {
    for (const id of [...this.pieces.keys()].filter(id => PIECE_ID.test(id)).sort()) { yield id }
  }

  async close (): Promise<void> {
    this.closed = true
  }

  private checkOpen (): void {
    if (this.closed) { throw new NotStartedError('the piece store is closed') }
  }
}
