/**
 * The encrypted copy of the manifests on the network, and restore from the
 * seed alone (docs/files.md#restore).
 *
 * Content addressing gives no fixed piece id a fresh node could look up, so
 * the catalog takes two steps:
 * the catalog, every complete manifest (head and segment records) as JSON,
 * sealed with AES-256-GCM under a key derived from the seed, cut into pieces
 * of at most 1 MiB, each stored on `copies` (3) distinct sellers like any
 * piece; and the pointer, which pieces in which order on which sellers (with
 * their addresses), sealed the same way and published in the DHT as a record
 * signed by an Ed25519 key derived from the seed (catalog-record.ts), under a
 * key only that seed gives.
 * Restore derives the same keys from the seed, reads the record, fetches the
 * pieces from any of their holders and writes the manifests back.
 * The previous catalog's pieces are deleted once a new one is published.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { NotFoundError } from '@libp2p/interface'
import { catalogRecordKey, encodeCatalogRecord, parseCatalogRecord, validateCatalogRecord } from './catalog-record.js'
import { DecryptionFailedError } from './crypto.js'
import type { FileManifest, ManifestStore, SegmentRecord } from './manifest.js'
import type { PieceSellers, SellerRef } from './sellers.js'
import type { SubDb } from '../store/index.js'
import type { AbortOptions, Logger, PrivateKey } from '@libp2p/interface'

/** The DHT's key-value side (libp2p.contentRouting) */
export interface CatalogRouting {
  put(key: Uint8Array, value: Uint8Array, options?: AbortOptions): Promise<void>
  get(key: Uint8Array, options?: AbortOptions): Promise<Uint8Array>
}

/** Bytes of one catalog piece */
export const CATALOG_CHUNK = 1024 * 1024
/** Sellers holding each catalog piece */
export const CATALOG_COPIES = 3

interface Pointer {
  v: 1
  created: number
  files: number
  chunks: Array<{ id: string, size: number, holders: SellerRef[] }>
}

interface Catalog {
  v: 1
  files: Array<{ head: FileManifest, segments: SegmentRecord[] }>
}

/** No catalog of this seed was found in the DHT */
export class NoCatalogError extends NotFoundError {
  static override name = 'NoCatalogError'
  override name = 'NoCatalogError'
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const POINTER = 'b/pointer'
const AAD = {
  catalog: enc.encode('decloud files catalog'),
  pointer: enc.encode('decloud files catalog pointer')
}

function hkdf (root: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', root, enc.encode('decloud/files/catalog/v1'), enc.encode(info), 32))
}

function seal (key: Uint8Array, aad: Uint8Array, plain: Uint8Array): Uint8Array {
  const iv = randomBytes(12)
  const c = createCipheriv('aes-256-gcm', key, iv)
  c.setAAD(aad)
  return Buffer.concat([iv, c.update(plain), c.final(), c.getAuthTag()])
}

function open (key: Uint8Array, aad: Uint8Array, sealed: Uint8Array, what: string): Uint8Array {
  if (sealed.byteLength < 28) { throw new DecryptionFailedError(`the ${what} is too short`) }
  const d = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12))
  d.setAAD(aad)
  d.setAuthTag(sealed.subarray(sealed.byteLength - 16))
  try {
    return Buffer.concat([d.update(sealed.subarray(12, sealed.byteLength - 16)), d.final()])
  } catch {
    throw new DecryptionFailedError(`the ${what} failed authentication: another seed's, or changed`)
  }
}

export interface CatalogInit {
  db: SubDb
  manifests: ManifestStore
  pieces: PieceSellers
  routing: CatalogRouting
  /** the files root key (crypto.ts filesRootKey) */
  root(): Promise<Uint8Array>
  /** sellers to place catalog pieces on, best first */
  sellers(options: AbortOptions): Promise<SellerRef[]>
  maxPrice: bigint
  timeout: number
  copies?: number
  log: Logger
}

export class CatalogBackup {
  private readonly init: CatalogInit
  private keys?: Promise<{ key: Uint8Array, signer: PrivateKey }>
  private chain: Promise<unknown> = Promise.resolve()

  constructor (init: CatalogInit) {
    this.init = init
  }

  private async keyPair (): Promise<{ key: Uint8Array, signer: PrivateKey }> {
    this.keys ??= this.init.root().then(async root => ({ key: hkdf(root, 'catalog-key'), signer: await generateKeyPairFromSeed('Ed25519', hkdf(root, 'catalog-sign')) }))
    return this.keys
  }

  /** Publishes the catalog of every complete file; one at a time, in order */
  async publish (options: AbortOptions = {}): Promise<{ files: number, chunks: number }> {
    const run = this.chain.then(async () => this.publishNow(options))
    this.chain = run.catch(() => {})
    return run
  }

  private async publishNow (options: AbortOptions): Promise<{ files: number, chunks: number }> {
    const { key, signer } = await this.keyPair()
    const catalog: Catalog = { v: 1, files: [] }
    for await (const head of this.init.manifests.list()) {
      if (head.state !== 'complete') { continue }
      const segments: SegmentRecord[] = []
      for await (const s of this.init.manifests.segments(head.id)) { segments.push(s) }
      catalog.files.push({ head, segments })
    }
    const sealed = seal(key, AAD.catalog, enc.encode(JSON.stringify(catalog)))
    const sellers = await this.init.sellers(options)
    const copies = Math.min(this.init.copies ?? CATALOG_COPIES, sellers.length)
    if (copies === 0) { throw new NotFoundError('no seller to hold the file catalog') }
    const chunks: Pointer['chunks'] = []
    for (let at = 0; at < sealed.byteLength || at === 0; at += CATALOG_CHUNK) {
      const piece = sealed.subarray(at, at + CATALOG_CHUNK)
      chunks.push({ id: createHash('sha256').update(piece).digest('hex'), size: piece.byteLength, holders: await this.place(piece, sellers, copies, options) })
      if (at + CATALOG_CHUNK >= sealed.byteLength) { break }
    }
    const previous = await this.pointer()
    const pointer: Pointer = { v: 1, created: Date.now(), files: catalog.files.length, chunks }
    const seq = BigInt(Math.max(pointer.created, previous != null ? previous.created + 1 : 0))
    pointer.created = Number(seq)
    const record = await encodeCatalogRecord(signer, seq, seal(key, AAD.pointer, enc.encode(JSON.stringify(pointer))))
    await this.init.routing.put(record.key, record.value, options)
    await this.init.db.put(POINTER, enc.encode(JSON.stringify(pointer)))
    // the previous catalog's pieces are not needed any more
    if (previous != null) {
      const keep = new Set(chunks.flatMap(c => c.holders.map(h => `${h.peerId}/${c.id}`)))
      await Promise.all(previous.chunks.flatMap(c => c.holders.filter(h => !keep.has(`${h.peerId}/${c.id}`)).map(async h =>
        this.init.pieces.delete(h, c.id, { signal: AbortSignal.timeout(this.init.timeout) }).catch(() => {}))))
    }
    return { files: catalog.files.length, chunks: chunks.length }
  }

  /** One catalog piece on `copies` distinct sellers, trying the next seller when one fails */
  private async place (piece: Uint8Array, sellers: SellerRef[], copies: number, options: AbortOptions): Promise<SellerRef[]> {
    const holders: SellerRef[] = []
    let next = 0
    await Promise.all(Array.from({ length: copies }, async () => {
      while (next < sellers.length) {
        const s = sellers[next++]
        try {
          const signals = [AbortSignal.timeout(this.init.timeout), ...(options.signal != null ? [options.signal] : [])]
          await this.init.pieces.put(s, piece, { maxPrice: this.init.maxPrice, signal: AbortSignal.any(signals) })
          holders.push(s)
          return
        } catch (err) {
          this.init.log('catalog piece not placed at %s - %e', s.peerId, err)
        }
      }
    }))
    if (holders.length === 0) { throw new NotFoundError('no seller took the file catalog') }
    return holders
  }

  private async pointer (): Promise<Pointer | undefined> {
    const raw = await this.init.db.get(POINTER)
    if (raw == null) { return undefined }
    try {
      return JSON.parse(dec.decode(raw))
    } catch {
      return undefined
    }
  }

  /**
   * Finds this seed's catalog in the DHT, fetches it and writes back every
   * manifest this node does not have
   */
  async restore (options: AbortOptions = {}): Promise<{ files: number, restored: string[] }> {
    const { key, signer } = await this.keyPair()
    const rkey = catalogRecordKey(signer.publicKey.raw)
    let value: Uint8Array
    try {
      value = await this.init.routing.get(rkey, options)
    } catch (err: any) {
      if (options.signal?.aborted === true) { throw err }
      throw new NoCatalogError(`no file catalog of this seed was found in the DHT (${String(err?.message ?? err)})`)
    }
    await validateCatalogRecord(rkey, value)
    const record = parseCatalogRecord(value)
    if (record == null) { throw new NoCatalogError('the DHT record is not a file catalog') }
    const pointer = JSON.parse(dec.decode(open(key, AAD.pointer, record.payload, 'catalog pointer'))) as Pointer
    const parts: Uint8Array[] = []
    for (const c of pointer.chunks) {
      let got: Uint8Array | undefined
      const errors: string[] = []
      for (const h of c.holders) {
        try {
          const signals = [AbortSignal.timeout(this.init.timeout), ...(options.signal != null ? [options.signal] : [])]
          // OpenCloudPieces checks the bytes against the id
          got = await this.init.pieces.get(h, c.id, { maxPrice: this.init.maxPrice, signal: AbortSignal.any(signals) })
          break
        } catch (err: any) {
          errors.push(`${h.peerId}: ${String(err?.message ?? err)}`)
        }
      }
      if (got == null) { throw new NotFoundError(`catalog piece ${c.id} could not be fetched (${errors.join('; ')})`) }
      parts.push(got)
    }
    const catalog = JSON.parse(dec.decode(open(key, AAD.catalog, Buffer.concat(parts), 'file catalog'))) as Catalog
    const restored: string[] = []
    for (const f of catalog.files) {
      if (await this.init.manifests.get(f.head.id) != null) { continue }
      // segments first: a head without its segments never shows
      for (const s of f.segments) { await this.init.manifests.putSegment(f.head.id, s) }
      await this.init.manifests.putHead(f.head)
      restored.push(f.head.id)
    }
    const local = await this.pointer()
    if (local == null || local.created < pointer.created) { await this.init.db.put(POINTER, enc.encode(JSON.stringify(pointer))) }
    return { files: catalog.files.length, restored }
  }
}
