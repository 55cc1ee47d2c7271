import { Level } from 'level'
import { MemoryLevel } from 'memory-level'

/** Schema version of the LevelDB layout; checked at open */
export const SCHEMA_VERSION = 1
const VERSION_KEY = '/decloud/version'

export class StoreVersionError extends Error {
  static override name = 'StoreVersionError'
  override name = 'StoreVersionError'
}

/** LevelDB on disk, or the same API in memory */
export type Db = Level<string, Uint8Array> | MemoryLevel<string, Uint8Array>

/**
 * Where a store keeps its data: a LevelDB directory, or `{ memory: true }`
 * for a database that lives as long as the process and is gone at `close()`.
 */
export type StoreLocation = string | { memory: true }

export type BatchOp = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

/** `sync`: LevelDB fsyncs its log before the write resolves (survives a power loss, not only a crash) */
export interface WriteOptions { sync?: boolean }

/** The narrow key-value view a capability gets of the database */
export interface SubDb {
  get(key: string): Promise<Uint8Array | undefined>
  put(key: string, value: Uint8Array, options?: WriteOptions): Promise<void>
  del(key: string): Promise<void>
  batch(ops: BatchOp[], options?: WriteOptions): Promise<void>
  iterator(options?: { gt?: string, gte?: string, lt?: string, lte?: string, limit?: number, reverse?: boolean }): AsyncIterable<[string, Uint8Array]>
}

/**
 * The node's LevelDB: one database per data dir, opened by one process at a
 * time, namespaced by sublevel per capability (`storage`, later `tabs`,
 * `reputation`, `market`…). Values are raw bytes.
 *
 * `Store.memory()` is the same store in memory (memory-level): for
 * short-lived clients that must leave nothing behind, and for tests of the
 * logic above the store. A node that should remember anything uses disk.
 *
 * @example
 * ```ts
 * const disk = new Store('/home/me/.decloud/db')
 * const scratch = Store.memory()
 * await scratch.open()
 * await scratch.sub('tabs').put('k', new Uint8Array([1]))
 * await scratch.close() // and the data is gone
 * ```
 */
export class Store {
  readonly db: Db
  /** true when the data lives in memory only */
  readonly memory: boolean
  private readonly subs = new Map<string, SubDb>()

  constructor (location: StoreLocation) {
    if (typeof location === 'string') {
      this.memory = false
      this.db = new Level<string, Uint8Array>(location, { valueEncoding: 'view', compression: false, writeBufferSize: 32 * 1024 * 1024 })
    } else {
      this.memory = true
      // stored as views: reads give Uint8Array as LevelDB's do, not Buffer
      this.db = new MemoryLevel<string, Uint8Array>({ valueEncoding: 'view', storeEncoding: 'view' })
    }
  }

  /** A store in memory (not yet opened) */
  static memory (): Store {
    return new Store({ memory: true })
  }

  async open (): Promise<void> {
    await this.db.open()
    const v = await this.db.get(VERSION_KEY)
    if (v == null) {
      await this.db.put(VERSION_KEY, new TextEncoder().encode(String(SCHEMA_VERSION)) as Uint8Array<ArrayBuffer>)
    } else {
      const found = Number(new TextDecoder().decode(v))
      if (found !== SCHEMA_VERSION) { throw new StoreVersionError(`data dir has schema version ${found}, this decloud understands ${SCHEMA_VERSION}`) }
    }
  }

  /** A namespaced view of the database, e.g. `sub('storage')` */
  sub (name: string): SubDb {
    let s = this.subs.get(name)
    if (s == null) {
      // both backends are abstract-level databases: one sublevel API
      s = (this.db as Level<string, Uint8Array>).sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as unknown as SubDb
      this.subs.set(name, s)
    }
    return s
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
