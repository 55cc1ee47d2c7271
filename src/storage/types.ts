import type { AbortOptions } from '@libp2p/interface'

/** What a piece store holds, counted exactly */
export interface PieceUsage {
  /** pieces stored */
  pieces: number
  /** bytes of piece content stored (the sum of their sizes) */
  bytes: number
  /** the most bytes of content the store accepts */
  capacity: number
  /** capacity - bytes - bytes reserved by puts in flight (never negative) */
  free: number
}

export interface PutOptions extends AbortOptions {
  /**
   * The caller already checked that `id` is the SHA-256 of the bytes (the
   * OpenCloud pipeline hashes every body): skip hashing them again.
   *
   * @default false
   */
  trustedId?: boolean
}

/**
 * Content-addressed pieces (id = lower-case hex SHA-256 of the content, up
 * to a few MiB each) with exact capacity accounting. Every method is safe
 * to call concurrently.
 *
 * Guarantees of every implementation: a put is atomic (after a crash a
 * piece is whole and counted, or absent and uncounted); `get` never returns
 * bytes that do not hash to their id (it throws `PieceDamagedError` and
 * drops the piece instead); `usage()` always equals the sum of the sizes of
 * the pieces `ids()` lists.
 *
 * @example
 * ```ts
 * const pieces = new DiskPieceStore({ dir: join(dataDir, 'pieces'), db: store.sub('pieces'), capacity: 10 * 2 ** 30 })
 * await pieces.open()
 * await pieces.put(id, bytes)            // true: stored; false: it was already here
 * const whole = await pieces.get(id)     // verified against id
 * const leaf = await pieces.read(id, 4096, 1024) // only these bytes are read (not verified)
 * await pieces.delete(id)
 * await pieces.close()
 * ```
 */
export interface PieceStore {
  /** true when pieces outlive the process (on disk) */
  readonly durable: boolean
  /** Recovers from a crash (bounded by the puts and deletes that were in flight) and loads the counters; idempotent */
  open(): Promise<void>
  /**
   * Stores a piece, atomically and durably before it resolves. False when it
   * was already here (nothing written). Throws `InsufficientStorageError`
   * past capacity, `InvalidParametersError` when `id` is not the SHA-256 of
   * `bytes`.
   */
  put(id: string, bytes: Uint8Array, options?: PutOptions): Promise<boolean>
  /** The whole piece, verified against its id; undefined when absent; `PieceDamagedError` (piece dropped) when damaged */
  get(id: string, options?: AbortOptions): Promise<Uint8Array | undefined>
  /**
   * Bytes [offset, offset + length) of a piece, clipped to its end; only
   * those bytes are read, and not verified (audits check them by Merkle
   * proof). Undefined when absent; RangeError when offset is past the end.
   */
  read(id: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array | undefined>
  has(id: string): Promise<boolean>
  /** the piece's size in bytes, or undefined when absent */
  size(id: string): Promise<number | undefined>
  /** Removes a piece and gives its space back; false when it was not here */
  delete(id: string): Promise<boolean>
  usage(): PieceUsage
  /** ids of the stored pieces, in id order */
  ids(): AsyncIterable<string>
  /** Waits for puts and deletes in flight; the database stays open (its owner closes it) */
  close(): Promise<void>
}
