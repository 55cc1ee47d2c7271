/**
 * Leases: how long a seller keeps a piece for one identity, and what that
 * identity paid or promised for it. A lease belongs to the identity (the
 * call's first credential) that paid; two identities storing the same
 * content hold two independent leases, and the piece stays while any lease
 * (or its grace) runs.
 *
 * Layout (inside the storage sublevel, beside the piece metadata):
 * `lease/<id>/<owner>` JSON LeaseRecord, and an expiry index
 * `lexp/<expires, 16 decimal digits>/<id>/<owner>` (empty) that the sweeper
 * scans in time order. Both change in one batch, so the index never points
 * at a lease that says otherwise.
 */
import type { BatchOp, SubDb } from '../../store/index.js'

/** What a seller keeps about one lease */
export interface LeaseRecord {
  /** ms since the epoch when the lease ends (the piece is deleted after the grace) */
  expires: number
  /** satoshis paid over the lease's life (attached, credit) */
  paid: bigint
  /** satoshis promised over the lease's life (defer) */
  promised: bigint
  /** ms since the epoch of the first put */
  created: number
}

export interface Lease extends LeaseRecord {
  id: string
  owner: string
}

const LEASE_PREFIX = 'lease/'
const EXPIRY_PREFIX = 'lexp/'
const leaseKey = (id: string, owner: string): string => `${LEASE_PREFIX}${id}/${owner}`
const expiryKey = (expires: number, id: string, owner: string): string => `${EXPIRY_PREFIX}${String(expires).padStart(16, '0')}/${id}/${owner}`
const enc = new TextEncoder()
const dec = new TextDecoder()
const EMPTY = new Uint8Array(0)

function encodeLease (r: LeaseRecord): Uint8Array {
  return enc.encode(JSON.stringify({ expires: r.expires, paid: r.paid.toString(), promised: r.promised.toString(), created: r.created }))
}

function decodeLease (bytes: Uint8Array): LeaseRecord | undefined {
  try {
    const v = JSON.parse(dec.decode(bytes))
    if (Number.isSafeInteger(v?.expires) && Number.isSafeInteger(v.created) && /^[0-9]{1,20}$/.test(v.paid) && /^[0-9]{1,20}$/.test(v.promised)) {
      return { expires: v.expires, created: v.created, paid: BigInt(v.paid), promised: BigInt(v.promised) }
    }
  } catch {
    // unreadable, like a value of the wrong shape
  }
  return undefined
}

/** The lease records of the storage service; writes are serialised */
export class LeaseStore {
  private readonly db: SubDb
  private lock: Promise<unknown> = Promise.resolve()

  constructor (db: SubDb) {
    this.db = db
  }

  /** Runs `fn` alone among lease changes (callers that also change the piece take this lock first) */
  async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn, fn)
    this.lock = run.catch(() => {})
    return run
  }

  async get (id: string, owner: string): Promise<LeaseRecord | undefined> {
    const v = await this.db.get(leaseKey(id, owner))
    return v == null ? undefined : decodeLease(v)
  }

  /** Every lease on a piece */
  async list (id: string): Promise<Lease[]> {
    const out: Lease[] = []
    const prefix = `${LEASE_PREFIX}${id}/`
    for await (const [key, value] of this.db.iterator({ gte: prefix, lt: `${LEASE_PREFIX}${id}0` })) {
      const r = decodeLease(value)
      if (r != null) { out.push({ ...r, id, owner: key.slice(prefix.length) }) }
    }
    return out
  }

  /** Writes `next` for (id, owner) in place of `previous` (or removes it when `next` is undefined). Call inside `exclusive`. */
  async set (id: string, owner: string, previous: LeaseRecord | undefined, next: LeaseRecord | undefined): Promise<void> {
    const ops: BatchOp[] = []
    if (previous != null) { ops.push({ type: 'del', key: expiryKey(previous.expires, id, owner) }) }
    if (next == null) {
      ops.push({ type: 'del', key: leaseKey(id, owner) })
    } else {
      ops.push({ type: 'put', key: leaseKey(id, owner), value: encodeLease(next) })
      ops.push({ type: 'put', key: expiryKey(next.expires, id, owner), value: EMPTY })
    }
    await this.db.batch(ops)
  }

  /**
   * Adds `seconds` to the lease of (id, owner), from its current end or from
   * `now` when it has ended (or there is none), and the amounts to what was
   * paid and promised. Returns the previous record (for a rollback) and the
   * new one. Call inside `exclusive`.
   */
  async extend (id: string, owner: string, seconds: number, amounts: { paid: bigint, promised: bigint }, now = Date.now()): Promise<{ previous?: LeaseRecord, lease: LeaseRecord }> {
    const previous = await this.get(id, owner)
    const from = Math.max(now, previous?.expires ?? 0)
    const lease: LeaseRecord = {
      expires: from + seconds * 1000,
      paid: (previous?.paid ?? 0n) + amounts.paid,
      promised: (previous?.promised ?? 0n) + amounts.promised,
      created: previous?.created ?? now
    }
    await this.set(id, owner, previous, lease)
    return { previous, lease }
  }

  /** Leases that end at `from` (ms) or later, soonest first, at most `limit` (the dashboard's "expiring soonest") */
  async endingFrom (from: number, limit: number): Promise<Array<{ id: string, owner: string, expires: number }>> {
    const out: Array<{ id: string, owner: string, expires: number }> = []
    for await (const [key] of this.db.iterator({ gte: `${EXPIRY_PREFIX}${String(from).padStart(16, '0')}`, lt: `${EXPIRY_PREFIX}~`, limit })) {
      const [expires, id, ...owner] = key.slice(EXPIRY_PREFIX.length).split('/')
      out.push({ id, owner: owner.join('/'), expires: Number(expires) })
    }
    return out
  }

  /** Leases that ended before `before` (ms), oldest first, at most `limit` */
  async endedBefore (before: number, limit: number): Promise<Array<{ id: string, owner: string, expires: number }>> {
    const out: Array<{ id: string, owner: string, expires: number }> = []
    for await (const [key] of this.db.iterator({ gte: EXPIRY_PREFIX, lt: `${EXPIRY_PREFIX}${String(before).padStart(16, '0')}`, limit })) {
      const [expires, id, ...owner] = key.slice(EXPIRY_PREFIX.length).split('/')
      out.push({ id, owner: owner.join('/'), expires: Number(expires) })
    }
    return out
  }
}
