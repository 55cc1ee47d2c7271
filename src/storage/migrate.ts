import { createHash } from 'node:crypto'
import type { DiskPieceStore } from './disk.js'
import type { SubDb } from '../store/index.js'
import type { Logger } from '@libp2p/interface'

/** What a migration moved */
export interface MigrationResult {
  /** values moved into the piece store (or found there already) */
  moved: number
  bytes: number
  /** values whose bytes did not hash to their key: dropped, never served */
  damaged: number
}

/**
 * Moves blobs kept as LevelDB values (`<prefix><hex sha-256>` → bytes, the
 * storage service's layout before the piece store) into `pieces`, one at a
 * time: each is stored (durably) before its value is deleted, so a crash
 * at any point leaves every blob in one place or both, and running it
 * again finishes the job. Capacity is not checked: the node already held
 * these bytes.
 */
export async function migrateLevelBlobs (db: SubDb, prefix: string, pieces: DiskPieceStore, log: Logger): Promise<MigrationResult> {
  const result: MigrationResult = { moved: 0, bytes: 0, damaged: 0 }
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)
  // the keys first: deleting under an open iterator is avoided
  const keys: string[] = []
  for await (const [key] of db.iterator({ gte: prefix, lt: end })) { keys.push(key) }
  for (const key of keys) {
    const value = await db.get(key)
    if (value == null) { continue }
    const id = key.slice(prefix.length).toLowerCase()
    if (createHash('sha256').update(value).digest('hex') !== id) {
      log.error('blob %s does not match its id; dropped in the move to the piece store', id)
      result.damaged++
    } else {
      await pieces.putOverCapacity(id, value)
      result.moved++
      result.bytes += value.byteLength
    }
    await db.del(key)
  }
  return result
}
