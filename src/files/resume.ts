/**
 * What a crash (kill -9) mid-upload leaves behind, and how a restart cleans
 * it up (docs/files.md#restart).
 *
 * Before a piece is sent to a seller the pipeline writes an intent,
 * `w/<file id>/<segment, 10 digits>/<shard>/<peer id>` → { id, addresses }
 * (the piece id is the hash of its bytes, known before the upload). An
 * intent is dropped once the piece is either kept in a complete manifest or
 * deleted at its seller. So after any crash, every piece a seller may hold
 * that no complete manifest accounts for has an intent, and `recoverUploads`
 * deletes it: an upload cut short is cleaned up, never resumed (the node
 * does not keep the user's bytes; the user puts the file again).
 */
import { PieceRefusedError } from './sellers.js'
import type { ManifestStore } from './manifest.js'
import type { PieceSellers, SellerRef } from './sellers.js'
import type { SubDb } from '../store/index.js'

const enc = new TextEncoder()
const dec = new TextDecoder()

export interface Intent {
  file: string
  segment: number
  shard: number
  peer: string
  /** the piece id (hex SHA-256) */
  id: string
  addresses: string[]
}

const keyOf = (file: string, segment: number, shard: number, peer: string): string => `w/${file}/${String(segment).padStart(10, '0')}/${shard}/${peer}`

/** The write-ahead record of pieces sent to sellers (the `files` sublevel, `w/`) */
export class IntentLog {
  private readonly db: SubDb

  constructor (db: SubDb) {
    this.db = db
  }

  /** Recorded before the piece leaves the node */
  async add (file: string, segment: number, shard: number, seller: SellerRef, id: string): Promise<void> {
    await this.db.put(keyOf(file, segment, shard, seller.peerId), enc.encode(JSON.stringify({ id, addresses: seller.addresses })))
  }

  async drop (i: Pick<Intent, 'file' | 'segment' | 'shard' | 'peer'>): Promise<void> {
    await this.db.del(keyOf(i.file, i.segment, i.shard, i.peer))
  }

  /** Every intent, or those of one file */
  async * list (file?: string): AsyncGenerator<Intent> {
    const range = file != null ? { gte: `w/${file}/`, lt: `w/${file}0` } : { gte: 'w/', lt: 'w0' }
    for await (const [k, v] of this.db.iterator(range)) {
      const [, f, seg, shard, peer] = k.split('/')
      let rec: { id?: unknown, addresses?: unknown }
      try {
        rec = JSON.parse(dec.decode(v))
      } catch {
        continue
      }
      if (typeof rec.id !== 'string' || !Array.isArray(rec.addresses)) { continue }
      yield { file: f, segment: Number(seg), shard: Number(shard), peer, id: rec.id, addresses: rec.addresses.filter((a): a is string => typeof a === 'string') }
    }
  }
}

export interface RecoveryResult {
  /** uploads found unfinished, their manifests removed */
  files: string[]
  /** pieces deleted at their sellers */
  deleted: number
  /** pieces whose seller could not be reached: their intents stay, retried at the next start */
  failed: number
}

/**
 * Cleans up after a crash: every manifest still `uploading` is removed (it
 * never shows as a file), and every piece with an intent that no complete
 * manifest keeps is deleted at its seller. With `only`, just that file
 * (the put's own failure path).
 */
export async function recoverUploads (d: { manifests: ManifestStore, intents: IntentLog, pieces: PieceSellers, timeout: number, signal?: AbortSignal, only?: string, running?: Set<string> }): Promise<RecoveryResult> {
  const files: string[] = []
  // uploads under way in this process are not cut short: their manifests and intents are theirs
  const busy = (file: string): boolean => d.only == null && d.running?.has(file) === true
  const heads = d.only != null ? [await d.manifests.get(d.only)].filter(m => m != null) : await collect(d.manifests.list())
  for (const m of heads) {
    if (m.state !== 'uploading' || busy(m.id)) { continue }
    // every placed piece has had an intent since before its upload; the segment records are not needed to find them
    await d.manifests.delete(m.id)
    files.push(m.id)
  }
  /** file id → piece ids its complete manifest keeps */
  const kept = new Map<string, Set<string> | null>()
  const keptBy = async (file: string): Promise<Set<string> | null> => {
    if (!kept.has(file)) {
      const m = await d.manifests.get(file)
      if (m == null || m.state !== 'complete') {
        kept.set(file, null)
      } else {
        const ids = new Set<string>()
        for await (const s of d.manifests.segments(file)) {
          for (const p of s.pieces) { ids.add(`${p.peer}/${p.id}`) }
        }
        kept.set(file, ids)
      }
    }
    return kept.get(file) ?? null
  }
  const orphans: Intent[] = []
  for await (const i of d.intents.list(d.only)) {
    if (busy(i.file)) { continue }
    const ids = await keptBy(i.file)
    if (ids?.has(`${i.peer}/${i.id}`) === true) {
      await d.intents.drop(i)
    } else {
      orphans.push(i)
    }
  }
  let deleted = 0
  let failed = 0
  let next = 0
  await Promise.all(Array.from({ length: Math.min(8, orphans.length) }, async () => {
    while (next < orphans.length) {
      const i = orphans[next++]
      try {
        const signals = [AbortSignal.timeout(d.timeout), ...(d.signal != null ? [d.signal] : [])]
        await d.pieces.delete({ peerId: i.peer, addresses: i.addresses }, i.id, { signal: AbortSignal.any(signals) }).catch((err: any) => {
          // the upload never reached the seller: nothing to delete
          if (!(err instanceof PieceRefusedError && err.status.endsWith('not-found'))) { throw err }
        })
        await d.intents.drop(i)
        deleted++
      } catch {
        failed++
      }
    }
  }))
  return { files, deleted, failed }
}

async function collect<T> (it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of it) { out.push(x) }
  return out
}
