import { Level } from 'level'

/** Schema version of the LevelDB layout; checked at open */
export const SCHEMA_VERSION = 1
const VERSION_KEY = '/decloud/version'

export class StoreVersionError extends Error {
  static override name = 'StoreVersionError'
  override name = 'StoreVersionError'
}

export type Db = Level<string, Uint8Array>

export type BatchOp = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

/** The narrow key-value view a capability gets of the database */
export interface SubDb {
  get(key: string): Promise<Uint8Array | undefined>
  put(key: string, value: Uint8Array): Promise<void>
  del(key: string): Promise<void>
  batch(ops: BatchOp[]): Promise<void>
  iterator(options?: { gt?: string, gte?: string, lt?: string, lte?: string, limit?: number, reverse?: boolean }): AsyncIterable<[string, Uint8Array]>
}

/**
 * The node's LevelDB: one database per data dir, opened by one process at a
 * time, namespaced by sublevel per capability (`storage`, later `tabs`,
 * `reputation`, `market`…). Values are raw bytes.
 */
export class Store {
  readonly db: Db
  private readonly subs = new Map<string, SubDb>()

  constructor (location: string) {
    this.db = new Level<string, Uint8Array>(location, { valueEncoding: 'view', compression: false, writeBufferSize: 32 * 1024 * 1024 })
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
      s = this.db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' }) as unknown as SubDb
      this.subs.set(name, s)
    }
    return s
  }

  async close (): Promise<void> {
    await this.db.close()
  }
}
