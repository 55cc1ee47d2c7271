import { sha256 } from '../../protocols/opencloud/signing.js'
import { Status } from '../../protocols/opencloud/pb/opencloud.js'
import { parseUnsigned } from '../pricing.js'
import { ServiceError } from '../template.js'
import { json } from '../../protocols/opencloud/pipeline.js'
import type { SubDb } from '../../store/index.js'
import type { Pricing } from '../pricing.js'
import type { ServiceCall, ServiceDefinition } from '../template.js'

export interface StorageServiceInit {
  /** namespaced LevelDB (e.g. `store.sub('storage')`) */
  db: SubDb
  /** largest blob accepted, bytes @default 4 MiB (never more than the node's body limit) */
  maxBlobSize?: number
  /** total bytes this node will store @default 10 GiB */
  capacity?: number
  pricing?: {
    put?: Pricing
    get?: Pricing
  }
}

export interface BlobMeta {
  size: number
  created: number
  /** OpenCloud IDs (or peer ids for anonymous callers) that stored it; delete needs one of them */
  owners: string[]
}

export const DEFAULT_CAPACITY = 10 * 1024 * 1024 * 1024
const ID = /^[0-9a-f]{64}$/
const USED_KEY = 'used'
const blobKey = (id: string): string => `b/${id}`
const metaKey = (id: string): string => `m/${id}`
const enc = new TextEncoder()
const dec = new TextDecoder()

function ownerOf (call: ServiceCall): string {
  return call.credentials[0] ?? `peer:${call.peer.toString()}`
}

function parseId (s: string | undefined): string {
  if (s == null || !ID.test(s)) throw new ServiceError(Status.BAD_REQUEST, 'blob id must be 64 lowercase hex characters (the SHA-256 of the content)')
  return s
}

/**
 * `storage`: content-addressed blobs (id = hex SHA-256 of the content) in
 * LevelDB. Writes are serialised and batched (blob, metadata and the usage
 * counter change together, or not at all), so a crash never leaves a blob
 * counted but missing, and no peer can delete a blob another peer stored.
 */
export class StorageService {
  private readonly db: SubDb
  readonly maxBlobSize: number
  readonly capacity: number
  private used = 0
  /** serialises writes: puts and deletes touch the usage counter */
  private lock: Promise<unknown> = Promise.resolve()
  private readonly pricing: StorageServiceInit['pricing']

  constructor (init: StorageServiceInit) {
    this.db = init.db
    this.maxBlobSize = init.maxBlobSize ?? 4 * 1024 * 1024
    this.capacity = init.capacity ?? DEFAULT_CAPACITY
    this.pricing = init.pricing
  }

  async start (): Promise<void> {
    const v = await this.db.get(USED_KEY)
    this.used = v == null ? 0 : Number(dec.decode(v))
  }

  get usedBytes (): number {
    return this.used
  }

  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn)
    this.lock = run.catch(() => {})
    return run
  }

  async meta (id: string): Promise<BlobMeta | undefined> {
    const m = await this.db.get(metaKey(id))
    return m == null ? undefined : JSON.parse(dec.decode(m))
  }

  async put (body: Uint8Array, owner: string): Promise<string> {
    if (body.byteLength > this.maxBlobSize) {
      throw new ServiceError(Status.TOO_LARGE, `blob of ${body.byteLength} bytes exceeds the limit of ${this.maxBlobSize} bytes per blob; split the file into pieces`)
    }
    const id = Buffer.from(sha256(body)).toString('hex')
    return this.exclusive(async () => {
      const existing = await this.meta(id)
      if (existing != null) {
        if (!existing.owners.includes(owner)) {
          existing.owners.push(owner)
          await this.db.put(metaKey(id), enc.encode(JSON.stringify(existing)))
        }
        return id
      }
      if (this.used + body.byteLength > this.capacity) {
        throw new ServiceError(Status.INSUFFICIENT_STORAGE, `this node has ${Math.max(0, this.capacity - this.used)} bytes free; the blob needs ${body.byteLength}`)
      }
      const meta: BlobMeta = { size: body.byteLength, created: Date.now(), owners: [owner] }
      const used = this.used + body.byteLength
      await this.db.batch([
        { type: 'put', key: blobKey(id), value: body },
        { type: 'put', key: metaKey(id), value: enc.encode(JSON.stringify(meta)) },
        { type: 'put', key: USED_KEY, value: enc.encode(String(used)) }
      ])
      this.used = used
      return id
    })
  }

  async get (id: string, offset = 0, length?: number): Promise<Uint8Array> {
    const blob = await this.db.get(blobKey(id))
    if (blob == null) throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`)
    if (offset > blob.byteLength) throw new ServiceError(Status.BAD_REQUEST, `offset ${offset} is past the end of the blob (${blob.byteLength} bytes)`)
    const end = length == null ? blob.byteLength : Math.min(blob.byteLength, offset + length)
    return blob.subarray(offset, end)
  }

  /** Removes `owner`'s claim on a blob; the bytes go when no owner is left */
  async delete (id: string, owner: string): Promise<boolean> {
    return this.exclusive(async () => {
      const meta = await this.meta(id)
      if (meta == null) throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`)
      if (!meta.owners.includes(owner)) throw new ServiceError(Status.ACCESS_DENIED, 'only a peer that stored this blob may delete it')
      meta.owners = meta.owners.filter(o => o !== owner)
      if (meta.owners.length > 0) {
        await this.db.put(metaKey(id), enc.encode(JSON.stringify(meta)))
        return false
      }
      const used = Math.max(0, this.used - meta.size)
      await this.db.batch([
        { type: 'del', key: blobKey(id) },
        { type: 'del', key: metaKey(id) },
        { type: 'put', key: USED_KEY, value: enc.encode(String(used)) }
      ])
      this.used = used
      return true
    })
  }

  /** The service definition to register with OpenCloud */
  definition (): ServiceDefinition {
    const rangeArgs = (call: ServiceCall): { id: string, offset: number, length?: number } => {
      const id = parseId(call.args[0])
      const o = call.args[1] == null ? 0n : parseUnsigned(call.args[1])
      const l = call.args[2] == null ? undefined : parseUnsigned(call.args[2])
      if (o == null || (call.args[2] != null && l == null)) throw new ServiceError(Status.BAD_REQUEST, 'offset and length must be non-negative integers')
      if (o > BigInt(Number.MAX_SAFE_INTEGER) || (l ?? 0n) > BigInt(Number.MAX_SAFE_INTEGER)) throw new ServiceError(Status.BAD_REQUEST, 'offset or length too large')
      return { id, offset: Number(o), length: l == null ? undefined : Number(l) }
    }
    return {
      name: 'storage',
      version: '1.0.0',
      description: 'content-addressed blob storage (id = SHA-256 of the content)',
      describe: () => ({ capacity: this.capacity, used: this.used, free: Math.max(0, this.capacity - this.used), maxBlobSize: this.maxBlobSize }),
      start: async () => { await this.start() },
      methods: {
        put: {
          description: 'stores the body; returns its id (hex SHA-256)',
          units: ['byte'],
          pricing: this.pricing?.put,
          usage: (call) => [BigInt(call.body.byteLength)],
          handler: async (call) => ({ body: enc.encode(await this.put(call.body, ownerOf(call))) })
        },
        get: {
          description: 'returns the blob, or the range [offset, offset+length)',
          args: '<id> [offset] [length]',
          units: ['byte'],
          pricing: this.pricing?.get,
          usage: (call) => {
            const { length } = rangeArgs(call)
            return [BigInt(length ?? this.maxBlobSize)]
          },
          handler: async (call) => {
            const { id, offset, length } = rangeArgs(call)
            return { body: await this.get(id, offset, length) }
          }
        },
        stat: {
          description: 'size and creation time of a blob (JSON)',
          args: '<id>',
          handler: async (call) => {
            const id = parseId(call.args[0])
            const meta = await this.meta(id)
            if (meta == null) throw new ServiceError(Status.NOT_FOUND, `no blob ${id}`)
            return { body: json({ id, size: meta.size, created: new Date(meta.created).toISOString(), owners: meta.owners.length, yours: meta.owners.includes(ownerOf(call)) }) }
          }
        },
        delete: {
          description: 'drops your claim on a blob; it is erased when no one else stored it',
          args: '<id>',
          handler: async (call) => {
            const id = parseId(call.args[0])
            const erased = await this.delete(id, ownerOf(call))
            return { body: json({ id, erased }) }
          }
        }
      }
    }
  }
}

export function storageService (init: StorageServiceInit): ServiceDefinition {
  return new StorageService(init).definition()
}
