/** Options, results and shapes of the files API (index.ts), and the stream cutter */
import type { CatalogRouting } from './backup.js'
import type { FileManifest } from './manifest.js'
import type { Redundancy } from './redundancy.js'
import type { PieceSellers, TrustOf } from './sellers.js'
import type { SellerCandidate } from '../market/select.js'
import type { SubDb } from '../store/index.js'
import type { Logger } from '@libp2p/interface'

/** Target bytes of one piece (a segment is k of them) */
export const DEFAULT_PIECE_SIZE = 1024 * 1024
/** A seller's largest blob today */
export const MAX_PIECE_SIZE = 4 * 1024 * 1024
/** Extra parity pieces sent at put, the slowest cancelled */
export const DEFAULT_PUT_MARGIN = 2
/** Extra pieces asked for at get once the first k are late */
export const DEFAULT_GET_MARGIN = 2
/** Segments in flight at once (put and get) */
export const DEFAULT_CONCURRENCY = 2
/** Most paid or promised for one piece (sats) unless told */
export const DEFAULT_MAX_PRICE = 1_000n
/** Lease asked for (s) @default 30 days */
export const DEFAULT_DURATION = 30 * 24 * 3600
/** Deadline of one piece operation (ms) */
export const DEFAULT_PIECE_TIMEOUT = 60_000

/** The file cannot be rebuilt: fewer than k good pieces of a segment could be fetched */
export class NotEnoughPiecesError extends Error {
  static override name = 'NotEnoughPiecesError'
  override name = 'NotEnoughPiecesError'
}

/** Fewer than n pieces of a segment could be placed */
export class PlacementFailedError extends Error {
  static override name = 'PlacementFailedError'
  override name = 'PlacementFailedError'
}

export interface FilesInit {
  /** namespaced LevelDB (`store.sub('files')`) */
  db: SubDb
  /** the wallet's BIP39 seed (64 bytes), root of every file key; asked for once, when first needed */
  seed(): Promise<Uint8Array>
  pieces: PieceSellers
  /** sellers of `storage`, ranked by the price of a put of `usage` bytes (price book + DHT) */
  findSellers(options: { usage: bigint, timeout: number, signal?: AbortSignal }): Promise<SellerCandidate[]>
  /** the DHT, where the encrypted file catalog's pointer is published (backup.ts); none: no backup, no restore */
  routing?: CatalogRouting
  /** trust in a seller, 0 to 1 (reputation, when it lands) @default 1 for all */
  trust?: TrustOf
  /** @default DEFAULT_PIECE_SIZE */
  pieceSize?: number
  /** @default DEFAULT_PUT_MARGIN */
  putMargin?: number
  /** @default DEFAULT_GET_MARGIN */
  getMargin?: number
  /** ms before asking for more pieces of a segment at get @default adaptive: twice the last segment's time, 200–5000 ms, 1000 at first */
  getDelay?: number
  /** @default DEFAULT_CONCURRENCY */
  concurrency?: number
  /** @default DEFAULT_PIECE_TIMEOUT */
  pieceTimeout?: number
  log?: Logger
}

export interface PutOptions {
  /** K/N asked for; default from the sellers found (chooseRedundancy) */
  redundancy?: Redundancy
  /** lease length (s), sent to every seller @default DEFAULT_DURATION */
  duration?: number
  /** the most paid or promised for one piece (sats) @default DEFAULT_MAX_PRICE */
  maxPrice?: bigint
  name?: string
  /** deadline of the seller lookup (ms) @default 10000 */
  lookupTimeout?: number
  signal?: AbortSignal
  /** plaintext bytes placed so far (every segment stored on n sellers) */
  onProgress?(bytes: number): void
}

export interface PutResult {
  id: string
  size: number
  k: number
  n: number
  segments: number
  sellers: string[]
  /** sats paid or promised */
  cost: bigint
  /** ms since the epoch, when known (leases) */
  expiry?: number
}

export interface GetOptions {
  maxPrice?: bigint
  signal?: AbortSignal
}

export interface SegmentStatus {
  index: number
  size: number
  /** pieces the manifest holds (n when complete) */
  pieces: number
  /** pieces a seller confirmed holding (`check`), else undefined */
  alive?: number
  cost: string
  /** ISO time of the segment's latest audit (agent.ts), null before the first */
  lastAudit: string | null
  /** ISO time its next lease renewal is due, null without leases */
  nextRenewal: string | null
}

export interface FileStatus {
  id: string
  name?: string
  size: number
  k: number
  n: number
  state: FileManifest['state']
  created: string
  cost: string
  expiry?: string
  sellers: string[]
  segments: SegmentStatus[]
}

/** The summary `list` and `GET /v1/files` give of a file */
export interface FileSummary {
  id: string
  name?: string
  size: number
  k: number
  n: number
  state: FileManifest['state']
  created: string
  cost: string
  expiry?: string
}

export function fileSummary (m: FileManifest): FileSummary {
  return {
    id: m.id,
    ...(m.name != null ? { name: m.name } : {}),
    size: m.size,
    k: m.k,
    n: m.n,
    state: m.state,
    created: new Date(m.created).toISOString(),
    cost: m.cost,
    ...(m.expiry != null ? { expiry: new Date(m.expiry).toISOString() } : {})
  }
}

/**
 * Cuts a byte stream into segments of exactly `size` bytes (the last one
 * shorter, and one empty segment for an empty stream), holding at most one
 * segment and one chunk
 */
export async function * segmentsOf (source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size)
  let fill = 0
  let any = false
  for await (const chunk of source) {
    let at = 0
    while (at < chunk.byteLength) {
      const take = Math.min(size - fill, chunk.byteLength - at)
      buf.set(chunk.subarray(at, at + take), fill)
      fill += take
      at += take
      if (fill === size) {
        yield buf
        any = true
        buf = new Uint8Array(size)
        fill = 0
      }
    }
  }
  if (fill > 0 || !any) { yield buf.subarray(0, fill) }
}
