/**
 * Files of any size, encrypted and erasure-coded across many sellers
 * (docs/files.md): the buyer side of storage.
 *
 * put: stream → segments (k × pieceSize − 16 bytes of plaintext) → AES-256-GCM
 * under a key derived from the wallet seed → Reed–Solomon k-of-n (+ a few
 * extra parity pieces as a long-tail margin) → one piece per distinct seller,
 * uploaded in parallel; the first n stored win and the rest are cancelled →
 * manifest in LevelDB. get: per segment the k most promising pieces, a few
 * more after a delay, the rest cancelled once k have arrived; each piece is
 * checked against its hash, the segment decoded, authenticated and decrypted.
 * Memory stays bounded: at most `concurrency` segments are in flight.
 *
 * An upload a crash cut short is cleaned up at the next start (resume.ts);
 * the encrypted catalog of the manifests is published on the network after
 * every put and rm, and restore finds it from the seed alone (backup.ts).
 * Leases, receipts, audits, repair and renewal: agent.ts.
 */
import { createHash, randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { AbortError, NotFoundError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { CATALOG_CHUNK, CatalogBackup } from './backup.js'
import { TAG_BYTES, fileKey, filesRootKey, newSalt, openSegment, sealSegment } from './crypto.js'
import { decodeShards, encodeShards } from './erasure.js'
import { ManifestStore, MANIFEST_VERSION } from './manifest.js'
import { chooseRedundancy } from './redundancy.js'
import { IntentLog, recoverUploads } from './resume.js'
import { SellerRecords, rankForPut, successRate } from './sellers.js'
import { DEFAULT_CONCURRENCY, DEFAULT_DURATION, DEFAULT_GET_MARGIN, DEFAULT_MAX_PRICE, DEFAULT_PIECE_SIZE, DEFAULT_PIECE_TIMEOUT, DEFAULT_PUT_MARGIN, MAX_PIECE_SIZE, NotEnoughPiecesError, PlacementFailedError, fileSummary, segmentsOf } from './types.js'
import type { FilesAgent } from './agent.js'
import type { FileManifest, PieceRecord, SegmentRecord } from './manifest.js'
import type { RecoveryResult } from './resume.js'
import type { SellerRef, StoredPiece } from './sellers.js'
import type { FileStatus, FileSummary, FilesInit, GetOptions, PutOptions, PutResult, SegmentStatus } from './types.js'
import type { SellerCandidate } from '../market/select.js'
import type { Logger } from '@libp2p/interface'

export { DecryptionFailedError } from './crypto.js'
export { NoCatalogError, CATALOG_COPIES } from './backup.js'
export type { CatalogRouting } from './backup.js'
export { ErasureCodingError } from './erasure.js'
export { TooFewSellersError, chooseRedundancy, parseRedundancy, pLoss, DEFAULT_LADDER } from './redundancy.js'
export { OpenCloudPieces, PieceRefusedError, SellerRecords } from './sellers.js'
export { FilesAgent, defaultRepairAt, DEFAULT_AUDIT_INTERVAL, DEFAULT_AUDIT_JITTER, DEFAULT_RENEW_BEFORE, DEFAULT_TICK } from './agent.js'
export type { AgentOptions, AgentPass, AgentFact } from './agent.js'
export type { Redundancy } from './redundancy.js'
export type { PieceSellers, PieceCaller, SellerRef, StoredPiece, TrustOf } from './sellers.js'
export type { FileManifest, SegmentRecord, PieceRecord } from './manifest.js'
export type { RecoveryResult } from './resume.js'
export { DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, DEFAULT_PUT_MARGIN, DEFAULT_GET_MARGIN, DEFAULT_CONCURRENCY, DEFAULT_MAX_PRICE, DEFAULT_DURATION, DEFAULT_PIECE_TIMEOUT, NotEnoughPiecesError, PlacementFailedError, fileSummary, segmentsOf } from './types.js'
export type { FilesInit, PutOptions, PutResult, GetOptions, SegmentStatus, FileStatus, FileSummary } from './types.js'

/**
 * The node's files: put, get, list, remove, status. One per node
 * (`node.files`), used by the control API.
 */
export class Files {
  private readonly manifests: ManifestStore
  readonly records: SellerRecords
  private readonly intents: IntentLog
  /** ids of the uploads under way: a recovery leaves them alone */
  private readonly uploading = new Set<string>()
  private readonly catalog?: CatalogBackup
  private readonly init: FilesInit
  private readonly pieceSize: number
  private readonly log: Logger
  private root?: Promise<Uint8Array>
  /** ms the last segment took to fetch: the get margin's delay follows it */
  private lastFetchMs = 500
  /** the node's agent (audits, repair, renewal: agent.ts), when it runs one */
  agent?: FilesAgent

  constructor (init: FilesInit) {
    this.init = init
    this.manifests = new ManifestStore(init.db)
    this.records = new SellerRecords(init.db)
    this.intents = new IntentLog(init.db)
    this.log = init.log ?? logger('decloud:files')
    if (init.routing != null) {
      this.catalog = new CatalogBackup({
        db: init.db,
        manifests: this.manifests,
        pieces: init.pieces,
        routing: init.routing,
        root: async () => this.rootKey(),
        sellers: async (o) => (await rankForPut(dedupe(await init.findSellers({ usage: BigInt(CATALOG_CHUNK), timeout: 10_000, signal: o.signal })), this.records, { maxPrice: DEFAULT_MAX_PRICE, trust: init.trust })).map(c => ({ peerId: c.peerId, addresses: c.addresses })),
        maxPrice: DEFAULT_MAX_PRICE,
        timeout: init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT,
        log: this.log
      })
    }
    this.pieceSize = init.pieceSize ?? DEFAULT_PIECE_SIZE
    if (!Number.isSafeInteger(this.pieceSize) || this.pieceSize < 64 || this.pieceSize > MAX_PIECE_SIZE) { throw new RangeError(`pieceSize must be 64 to ${MAX_PIECE_SIZE} bytes`) }
  }

  private async rootKey (): Promise<Uint8Array> {
    this.root ??= this.init.seed().then(filesRootKey)
    return this.root
  }

  /** Stores a stream of bytes; resolves once every segment is on n sellers */
  async put (source: AsyncIterable<Uint8Array>, options: PutOptions = {}): Promise<PutResult> {
    const signal = options.signal
    const maxPrice = options.maxPrice ?? DEFAULT_MAX_PRICE
    const duration = options.duration ?? DEFAULT_DURATION
    // storage is priced per byte·second: a piece for the whole lease
    const found = await this.init.findSellers({ usage: BigInt(this.pieceSize) * BigInt(duration), timeout: options.lookupTimeout ?? 10_000, signal })
    const ranked = await rankForPut(dedupe(found), this.records, { maxPrice, trust: this.init.trust })
    const { k, n } = chooseRedundancy(ranked.length, options.redundancy)
    const margin = Math.min(this.init.putMargin ?? DEFAULT_PUT_MARGIN, ranked.length - n)
    const segmentSize = k * this.pieceSize - TAG_BYTES
    const salt = newSalt()
    const key = fileKey(await this.rootKey(), salt)
    const id = randomBytes(16).toString('hex')
    const manifest: FileManifest = {
      version: MANIFEST_VERSION,
      id,
      ...(options.name != null ? { name: options.name } : {}),
      size: 0,
      k,
      n,
      segmentSize,
      segments: 0,
      salt: Buffer.from(salt).toString('hex'),
      created: Date.now(),
      duration,
      cost: '0',
      state: 'uploading',
      sellers: {}
    }
    // an `uploading` manifest found at start is cleaned up (recover(), resume.ts)
    this.uploading.add(id)
    await this.manifests.putHead(manifest)
    const sellers: SellerRef[] = ranked.map(c => ({ peerId: c.peerId, addresses: c.addresses }))
    const inFlight: Array<Promise<SegmentRecord>> = []
    const concurrency = this.init.concurrency ?? DEFAULT_CONCURRENCY
    let cost = 0n
    let size = 0
    let placed = 0
    let index = 0
    const stop = new AbortController()
    const all = signal != null ? AbortSignal.any([signal, stop.signal]) : stop.signal
    // every piece in flight listens to it
    setMaxListeners(Infinity, all)
    const finish = async (p: Promise<SegmentRecord>): Promise<void> => {
      const rec = await p
      await this.manifests.putSegment(id, rec)
      for (const piece of rec.pieces) {
        cost += BigInt(piece.cost)
        if (piece.expiry != null) { manifest.expiry = Math.min(manifest.expiry ?? Infinity, piece.expiry) }
        const s = sellers.find(x => x.peerId === piece.peer)
        if (s != null) { manifest.sellers[s.peerId] = s.addresses }
      }
      placed += rec.plainSize
      options.onProgress?.(placed)
    }
    try {
      for await (const plain of segmentsOf(source, segmentSize)) {
        all.throwIfAborted()
        size += plain.byteLength
        inFlight.push(this.placeSegment(index++, plain, { file: id, key, salt, k, n, margin, sellers, maxPrice, duration, signal: all }))
        if (inFlight.length >= concurrency) { await finish(inFlight.shift() as Promise<SegmentRecord>) }
      }
      while (inFlight.length > 0) { await finish(inFlight.shift() as Promise<SegmentRecord>) }
    } catch (err) {
      stop.abort(err)
      await Promise.allSettled(inFlight)
      this.uploading.delete(id)
      // nothing half-stored is left behind: what was placed is deleted (best effort; a piece
      // that lands later keeps its intent and is deleted at the next start)
      await this.recover({ only: id }).catch(() => {})
      throw err
    }
    Object.assign(manifest, { size, segments: index, cost: cost.toString(), state: 'complete' })
    await this.manifests.putHead(manifest)
    this.uploading.delete(id)
    // the kept pieces' intents go; long-tail pieces not kept are deleted
    await this.recover({ only: id }).catch(() => {})
    await this.records.flush()
    // the encrypted catalog on the network now lists this file (backup.ts)
    await this.backup()
    return { id, size, k, n, segments: index, sellers: Object.keys(manifest.sellers), cost }
  }

  /**
   * Encrypts, encodes and places one segment: n + margin uploads at once,
   * the first n stored win; the put does not wait for the others, and those
   * that land are deleted (aborting them would not tell whether the seller
   * stored the piece anyway); a failed upload moves to the next seller not yet used
   */
  private async placeSegment (index: number, plain: Uint8Array, o: { file: string, key: Uint8Array, salt: Uint8Array, k: number, n: number, margin: number, sellers: SellerRef[], maxPrice: bigint, duration: number, signal: AbortSignal }): Promise<SegmentRecord> {
    const sealed = new Uint8Array(plain.byteLength + TAG_BYTES)
    sealSegment(o.key, o.salt, index, plain, sealed)
    const total = o.n + o.margin
    const shards = encodeShards(sealed, o.k, total)
    const size = shards[0].byteLength
    const pieceIds = shards.map(b => createHash('sha256').update(b).digest('hex'))
    const signal = o.signal
    const stored: PieceRecord[] = []
    const failures: string[] = []
    let next = 0
    const timeout = this.init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT
    await new Promise<void>((resolve, reject) => {
      let running = 0
      const start = (shard: number): void => {
        if (next >= o.sellers.length) {
          if (running === 0 && stored.length < o.n) {
            reject(new PlacementFailedError(`segment ${index}: only ${stored.length} of ${o.n} pieces could be placed (${failures.join('; ')})`))
          }
          return
        }
        const seller = o.sellers[next++]
        running++
        const t0 = Date.now()
        const intent = { file: o.file, segment: index, shard, peer: seller.peerId }
        // written before the piece leaves: a crash from here on leaves a record of it (resume.ts)
        this.intents.add(o.file, index, shard, seller, pieceIds[shard]).then(async () => this.init.pieces.put(seller, shards[shard], { maxPrice: o.maxPrice, duration: o.duration, signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]) })).then(async (p) => {
          running--
          void this.records.record(seller.peerId, true, size, Date.now() - t0)
          if (stored.length >= o.n) {
            // a long-tail upload that landed after the first n: not kept
            void this.init.pieces.delete(seller, p.id, { signal: AbortSignal.timeout(timeout) }).then(async () => this.intents.drop(intent)).catch(() => {})
            return
          }
          stored.push({ shard, id: p.id, peer: seller.peerId, cost: p.cost.toString(), ...(p.expiry != null ? { expiry: p.expiry } : {}), ...pieceEvidence(p, this.agent) })
          if (stored.length === o.n) {
            // the long-tail margin: the slowest uploads are not waited for
            resolve()
          }
        }, (err: any) => {
          running--
          if (stored.length >= o.n) { return }
          if (o.signal.aborted) {
            reject(o.signal.reason)
            return
          }
          void this.records.record(seller.peerId, false)
          failures.push(`${seller.peerId}: ${String(err?.message ?? err)}`)
          this.log('segment %d piece %d failed at %s - %e', index, shard, seller.peerId, err)
          start(shard)
        })
      }
      for (let s = 0; s < total; s++) { start(s) }
    })
    return { index, plainSize: plain.byteLength, sealedSize: sealed.byteLength, shardSize: size, total, pieces: stored.sort((a, b) => a.shard - b.shard) }
  }

  /**
   * Cleans up uploads a crash cut short (resume.ts): run when the node
   * starts; `only` limits it to one file
   */
  async recover (options: { only?: string, signal?: AbortSignal } = {}): Promise<RecoveryResult> {
    return recoverUploads({ manifests: this.manifests, intents: this.intents, pieces: this.init.pieces, timeout: this.init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT, running: this.uploading, ...options })
  }

  /**
   * Publishes the encrypted catalog of every complete file (backup.ts);
   * a failure is logged, not thrown: the files themselves are stored
   */
  async backup (options: { signal?: AbortSignal } = {}): Promise<{ files: number, chunks: number } | undefined> {
    if (this.catalog == null) { return undefined }
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(60_000), ...(options.signal != null ? [options.signal] : [])])
      // the DHT query listens on it once per peer asked
      setMaxListeners(Infinity, signal)
      return await this.catalog.publish({ signal })
    } catch (err) {
      this.log.error('the file catalog was not published - %e', err)
      return undefined
    }
  }

  /**
   * Finds the catalog this seed published (an empty data dir with the same
   * seed words) and writes back the manifests this node does not have
   */
  async restore (options: { signal?: AbortSignal } = {}): Promise<{ files: number, restored: string[] }> {
    if (this.catalog == null) { throw new NotFoundError('this node has no DHT to find a file catalog in') }
    const signal = AbortSignal.any([AbortSignal.timeout(120_000), ...(options.signal != null ? [options.signal] : [])])
    setMaxListeners(Infinity, signal)
    return this.catalog.restore({ signal })
  }

  async manifest (id: string): Promise<FileManifest> {
    const m = await this.manifests.get(id)
    if (m == null) { throw new NotFoundError(`no file ${id}`) }
    return m
  }

  /**
   * The file's bytes, segment by segment, verified and decrypted; at most
   * `concurrency` segments are fetched ahead
   */
  async * get (id: string, options: GetOptions = {}): AsyncGenerator<Uint8Array> {
    const m = await this.manifest(id)
    if (m.state !== 'complete') { throw new NotFoundError(`file ${id} is not completely stored (its upload did not finish)`) }
    const key = fileKey(await this.rootKey(), Buffer.from(m.salt, 'hex'))
    const salt = Buffer.from(m.salt, 'hex')
    const concurrency = this.init.concurrency ?? DEFAULT_CONCURRENCY
    const stop = new AbortController()
    const signal = options.signal != null ? AbortSignal.any([options.signal, stop.signal]) : stop.signal
    setMaxListeners(Infinity, signal)
    const ahead: Array<Promise<Uint8Array>> = []
    const segments = this.manifests.segments(id)
    let more = true
    const fill = async (): Promise<void> => {
      while (more && ahead.length < concurrency) {
        const r = await segments.next()
        if (r.done === true) {
          more = false
          break
        }
        const p = this.fetchSegment(m, r.value, key, salt, options.maxPrice ?? DEFAULT_MAX_PRICE, signal)
        p.catch(() => {})
        ahead.push(p)
      }
    }
    try {
      let count = 0
      await fill()
      while (ahead.length > 0) {
        const plain = await (ahead.shift() as Promise<Uint8Array>)
        count++
        await fill()
        yield plain
      }
      if (count !== m.segments) { throw new NotEnoughPiecesError(`file ${id}: the manifest lists ${count} of its ${m.segments} segments`) }
    } finally {
      stop.abort(new AbortError('get ended'))
      await segments.return(undefined)
    }
  }

  /**
   * One segment: the k most promising pieces, more after a delay or a
   * failure, the rest cancelled once k good ones are in
   */
  private async fetchSegment (m: FileManifest, s: SegmentRecord, key: Uint8Array, salt: Uint8Array, maxPrice: bigint, outer: AbortSignal): Promise<Uint8Array> {
    const total = s.total
    const order = [...s.pieces]
    const rate = new Map<string, number>()
    for (const p of order) { rate.set(p.peer, successRate(await this.records.get(p.peer))) }
    // most reliable first; data shards first among equals (no decoding needed)
    order.sort((a, b) => (rate.get(b.peer) ?? 0) - (rate.get(a.peer) ?? 0) || a.shard - b.shard)
    const shards: Array<Uint8Array | undefined> = new Array(total).fill(undefined)
    const done = new AbortController()
    const signal = AbortSignal.any([outer, done.signal])
    setMaxListeners(Infinity, signal)
    const t0 = Date.now()
    const timeout = this.init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT
    const failures: string[] = []
    let got = 0
    let next = 0
    let running = 0
    let timer: ReturnType<typeof setTimeout> | undefined
    let onAbort: (() => void) | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        const start = (): void => {
          if (next >= order.length) {
            if (running === 0 && got < m.k) { reject(new NotEnoughPiecesError(`segment ${s.index}: ${got} of the ${m.k} pieces needed could be fetched (${failures.join('; ')})`)) }
            return
          }
          const p = order[next++]
          const seller: SellerRef = { peerId: p.peer, addresses: m.sellers[p.peer] ?? [] }
          running++
          const t = Date.now()
          this.init.pieces.get(seller, p.id, { maxPrice, signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]) }).then((bytes) => {
            running--
            if (got >= m.k) { return }
            if (bytes.byteLength !== s.shardSize) {
              failures.push(`${p.peer}: piece of ${bytes.byteLength} bytes, not ${s.shardSize}`)
              start()
              return
            }
            void this.records.record(p.peer, true, bytes.byteLength, Date.now() - t)
            shards[p.shard] = bytes
            if (++got === m.k) { resolve() }
          }, (err: any) => {
            running--
            if (got >= m.k) { return }
            if (outer.aborted) {
              reject(outer.reason)
              return
            }
            void this.records.record(p.peer, false)
            failures.push(`${p.peer}: ${String(err?.message ?? err)}`)
            this.log('segment %d piece %d failed at %s - %e', s.index, p.shard, p.peer, err)
            start()
          })
        }
        for (let i = 0; i < m.k; i++) { start() }
        // the long tail: a few more pieces once the first k are late
        const delay = this.init.getDelay ?? Math.min(5_000, Math.max(200, 2 * this.lastFetchMs))
        timer = setTimeout(() => {
          for (let i = 0; i < (this.init.getMargin ?? DEFAULT_GET_MARGIN) && got < m.k; i++) { start() }
        }, delay)
        onAbort = () => { reject(outer.reason) }
        if (outer.aborted) { onAbort() } else { outer.addEventListener('abort', onAbort, { once: true }) }
      })
    } finally {
      if (onAbort != null) { outer.removeEventListener('abort', onAbort) }
      clearTimeout(timer)
      done.abort(new AbortError('enough pieces'))
    }
    this.lastFetchMs = Date.now() - t0
    const sealed = decodeShards(shards, m.k, total, s.shardSize, s.sealedSize)
    return openSegment(key, salt, s.index, sealed)
  }

  /** Every file's summary, oldest id order */
  async list (): Promise<FileSummary[]> {
    const out: FileSummary[] = []
    for await (const m of this.manifests.list()) { out.push(fileSummary(m)) }
    return out
  }

  /**
   * Deletes the file's pieces where the sellers allow, then its manifest.
   * With the manifest gone the agent no longer audits, renews or pays for its pieces.
   */
  async remove (id: string, options: { signal?: AbortSignal } = {}): Promise<{ id: string, deleted: number, failed: number }> {
    const m = await this.manifest(id)
    const count = { deleted: 0, failed: 0 }
    const pieces: PieceRecord[] = []
    for await (const s of this.manifests.segments(id)) { pieces.push(...s.pieces) }
    const del = async (p: PieceRecord): Promise<void> => {
      try {
        await this.init.pieces.delete({ peerId: p.peer, addresses: m.sellers[p.peer] ?? [] }, p.id, { signal: AbortSignal.any([...(options.signal != null ? [options.signal] : []), AbortSignal.timeout(this.init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT)]) })
        count.deleted++
      } catch {
        count.failed++
      }
    }
    await runLimited(pieces.map(p => async () => del(p)), 8)
    const { deleted, failed } = count
    await this.manifests.delete(id)
    await this.backup()
    return { id, deleted, failed }
  }

  /**
   * Per segment: pieces held of n, and with `check` how many sellers still
   * have theirs (asked now); last audit and next renewal from the agent.
   */
  async status (id: string, options: { check?: boolean, signal?: AbortSignal } = {}): Promise<FileStatus> {
    const m = await this.manifest(id)
    const segments: SegmentStatus[] = []
    const jobs: Array<() => Promise<void>> = []
    for await (const s of this.manifests.segments(id)) {
      const st: SegmentStatus = { index: s.index, size: s.plainSize, pieces: s.pieces.length, cost: s.pieces.reduce((a, p) => a + BigInt(p.cost), 0n).toString(), lastAudit: null, nextRenewal: null, ...this.agent?.segmentStatus(m, s) }
      segments.push(st)
      if (options.check === true) {
        st.alive = 0
        for (const p of s.pieces) {
          jobs.push(async () => {
            const seller = { peerId: p.peer, addresses: m.sellers[p.peer] ?? [] }
            const ok = await this.init.pieces.has(seller, p.id, { signal: AbortSignal.any([...(options.signal != null ? [options.signal] : []), AbortSignal.timeout(10_000)]) }).catch(() => false)
            if (ok) { (st.alive as number)++ }
          })
        }
      }
    }
    await runLimited(jobs, 8)
    return {
      ...fileSummary(m),
      sellers: Object.keys(m.sellers),
      segments
    }
  }
}

/** What a piece's record keeps for audits: the buyer's root, the seller's receipt, the first audit's time */
function pieceEvidence (p: StoredPiece, agent?: FilesAgent): Partial<PieceRecord> {
  return {
    ...(p.root != null ? { root: p.root } : {}),
    ...(p.receipt != null ? { receipt: Buffer.from(p.receipt).toString('base64') } : {}),
    ...(agent != null ? { nextAudit: agent.nextAuditTime() } : {})
  }
}

function dedupe (c: SellerCandidate[]): SellerCandidate[] {
  const seen = new Set<string>()
  return c.filter(x => !seen.has(x.peerId) && seen.add(x.peerId) != null)
}

async function runLimited (jobs: Array<() => Promise<void>>, limit: number): Promise<void> {
  let i = 0
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (i < jobs.length) { await jobs[i++]() }
  }))
}
