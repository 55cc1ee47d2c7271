/**
 * Manifests of the files this node stored, in LevelDB (the node's store,
 * sublevel `files`): `f/<file id>` → JSON FileManifest, and one record per
 * segment, `s/<file id>/<index, 10 digits>` → JSON SegmentRecord, written
 * as the upload goes (a 1 GiB file has 256 segments: never one huge value).
 * Seller records of `sellers.ts` share the sublevel under `r/`.
 */
import type { SubDb } from '../store/index.js'

export const MANIFEST_VERSION = 1

export interface FileManifest {
  version: number
  /** 32 hex characters, random */
  id: string
  /** the name given at put (a file name), for people */
  name?: string
  /** plaintext bytes; set when the upload completes */
  size: number
  k: number
  n: number
  /** plaintext bytes of every segment but the last */
  segmentSize: number
  segments: number
  /** hex; with the seed it gives the file's key (crypto.ts) */
  salt: string
  /** ms since the epoch */
  created: number
  /** lease length asked for (s) */
  duration: number
  /** ms since the epoch when the first of its pieces' leases ends (renewals move it) */
  expiry?: number
  /** sats paid or promised, decimal */
  cost: string
  /** `uploading` until every segment is placed; an upload a crash cut short is cleaned up when the node starts (resume.ts) */
  state: 'uploading' | 'complete'
  /** peer id → addresses of the sellers holding pieces */
  sellers: Record<string, string[]>
}

export interface PieceRecord {
  /** the erasure shard index, 0 … n − 1 (below k: data) */
  shard: number
  /** hex SHA-256 of the piece: its id at the seller */
  id: string
  peer: string
  /** sats, decimal */
  cost: string
  /** ms since the epoch when the seller's lease ends */
  expiry?: number
  /** hex Merkle root the buyer computed at put: audits check against it (agent.ts) */
  root?: string
  /** the seller's last signed receipt (put or renew), base64: the evidence behind audits */
  receipt?: string
  /** the last audit: when (ms since the epoch), whether it passed, why not */
  audit?: { at: number, ok: boolean, error?: string }
  /** when the agent audits it next (ms since the epoch; jittered) */
  nextAudit?: number
  /** set when it failed an audit or could not be fetched: dropped from the segment, replaced by repair */
  lost?: number
}

export interface SegmentRecord {
  index: number
  plainSize: number
  sealedSize: number
  shardSize: number
  /** shards the segment was encoded into (n + the put's margin): decoding needs the same count */
  total: number
  pieces: PieceRecord[]
  /** pieces dropped (failed audits, gone), the latest 64: their sellers are not chosen again for this segment */
  lost?: Array<{ shard: number, id: string, peer: string, at: number }>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const ID = /^[0-9a-f]{32}$/

export const isFileId = (s: string): boolean => ID.test(s)

const headKey = (id: string): string => `f/${id}`
const segKey = (id: string, i: number): string => `s/${id}/${String(i).padStart(10, '0')}`

function parse<T> (raw: Uint8Array | undefined): T | undefined {
  if (raw == null) { return undefined }
  try {
    return JSON.parse(dec.decode(raw)) as T
  } catch {
    return undefined
  }
}

export class ManifestStore {
  private readonly db: SubDb

  constructor (db: SubDb) {
    this.db = db
  }

  async get (id: string): Promise<FileManifest | undefined> {
    if (!isFileId(id)) { return undefined }
    return parse<FileManifest>(await this.db.get(headKey(id)))
  }

  async putHead (m: FileManifest): Promise<void> {
    await this.db.put(headKey(m.id), enc.encode(JSON.stringify(m)))
  }

  async putSegment (id: string, s: SegmentRecord): Promise<void> {
    await this.db.put(segKey(id, s.index), enc.encode(JSON.stringify(s)))
  }

  async segment (id: string, index: number): Promise<SegmentRecord | undefined> {
    return parse<SegmentRecord>(await this.db.get(segKey(id, index)))
  }

  async * segments (id: string): AsyncGenerator<SegmentRecord> {
    for await (const [, v] of this.db.iterator({ gte: `s/${id}/`, lt: `s/${id}0` })) {
      const s = parse<SegmentRecord>(v)
      if (s != null) { yield s }
    }
  }

  async * list (): AsyncGenerator<FileManifest> {
    for await (const [, v] of this.db.iterator({ gte: 'f/', lt: 'f0' })) {
      const m = parse<FileManifest>(v)
      if (m != null) { yield m }
    }
  }

  /** Removes a manifest and its segment records */
  async delete (id: string): Promise<void> {
    const keys: string[] = []
    for await (const [k] of this.db.iterator({ gte: `s/${id}/`, lt: `s/${id}0` })) { keys.push(k) }
    await this.db.batch([...keys.map(key => ({ type: 'del' as const, key })), { type: 'del', key: headKey(id) }])
  }
}
