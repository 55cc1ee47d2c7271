/**
 * The node as the user's agent for its files (docs/files.md "Audits, repair
 * and renewal"). While the node runs it audits every piece of every complete
 * file on a jittered schedule (a fresh Merkle challenge, checked against the
 * root the buyer computed at put) and records each result: in the segment's
 * record (last and next audit), for reputation (the seller's receipt as
 * evidence), in the node's counters. A piece that fails its audit, or whose
 * seller no longer has it, is dropped from its segment: no renewal, so no
 * more payment for it. A segment whose live pieces fall to `repairAt` is
 * repaired: the sealed segment is rebuilt from any k pieces (no key needed:
 * erasure decoding works on the ciphertext), the missing shards re-encoded
 * (the same bytes, so the same piece ids and roots) and placed on new
 * distinct sellers, paid like a put. Each lease is renewed `renewBefore` ms
 * before it ends, after an audit of the piece passed.
 *
 * The schedule is the segment records themselves (LevelDB): every tick scans
 * the complete files for pieces that are due, so a restarted node carries on
 * where it stopped, and a removed file is simply no longer there.
 */
import { setMaxListeners } from 'node:events'
import { AbortError, TimeoutError } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import { decodeShards, encodeShards } from './erasure.js'
import { ManifestStore } from './manifest.js'
import { rankForPut, successRate } from './sellers.js'
import { DEFAULT_MAX_PRICE, DEFAULT_PIECE_TIMEOUT, NotEnoughPiecesError } from './types.js'
import type { FileManifest, PieceRecord, SegmentRecord } from './manifest.js'
import type { PieceSellers, SellerRecords, SellerRef, TrustOf } from './sellers.js'
import type { SellerCandidate } from '../market/select.js'
import type { SubDb } from '../store/index.js'
import type { Logger } from '@libp2p/interface'

/** Mean time between two audits of a piece (ms) @default 12 h: with the jitter, every piece is audited at least daily */
export const DEFAULT_AUDIT_INTERVAL = 12 * 3600_000
/** Audit times are drawn uniformly in interval × [1 − jitter, 1 + jitter) */
export const DEFAULT_AUDIT_JITTER = 0.5
/** How often the agent looks for due work (ms) */
export const DEFAULT_TICK = 60_000
/** Renew this long before a lease ends (ms) @default a quarter of the lease, at most 3 days */
export const DEFAULT_RENEW_BEFORE = 3 * 24 * 3600_000

/** A fact for reputation (node.reputation.record's input) */
export interface AgentFact {
  peer: string
  role: 'seller'
  kind: 'audit-passed' | 'audit-failed'
  value: number
  weight: number
  evidence?: Record<string, unknown>
  dedupe?: string
}

export interface AgentOptions {
  /** @default DEFAULT_AUDIT_INTERVAL */
  auditInterval?: number
  /** 0 to 1 @default DEFAULT_AUDIT_JITTER */
  auditJitter?: number
  /** @default DEFAULT_TICK */
  tick?: number
  /** @default a quarter of the lease, at most DEFAULT_RENEW_BEFORE */
  renewBefore?: number
  /** live pieces at or below which a segment is repaired @default n − max(1, ⌊(n − k)/2⌋) */
  repairAt?(k: number, n: number): number
  /** most paid for one repaired piece or one renewal (sats) @default DEFAULT_MAX_PRICE */
  maxPrice?: bigint
  /** piece operations at once @default 8 */
  parallel?: number
  /** @default DEFAULT_PIECE_TIMEOUT */
  pieceTimeout?: number
}

export interface AgentInit extends AgentOptions {
  db: SubDb
  pieces: PieceSellers
  records: SellerRecords
  findSellers(options: { usage: bigint, timeout: number, signal?: AbortSignal }): Promise<SellerCandidate[]>
  trust?: TrustOf
  /** reputation facts (node.reputation.record) */
  record?(fact: AgentFact): Promise<unknown>
  /** the dashboard's counters (NodeCounters) */
  counters?: { audits(result: 'passed' | 'failed', role: 'buyer' | 'seller'): void, repairs(n?: number): void }
  log?: Logger
}

/** What one pass did (tests and logs) */
export interface AgentPass {
  audited: number
  failed: number
  renewed: number
  repaired: number
}

/** Live pieces at or below which a segment is repaired, by default: half the spare pieces lost (at least one) */
export function defaultRepairAt (k: number, n: number): number {
  return n - Math.max(1, Math.floor((n - k) / 2))
}

export class FilesAgent {
  private readonly init: AgentInit
  private readonly manifests: ManifestStore
  private readonly log: Logger
  private readonly interval: number
  private readonly jitter: number
  private readonly tickMs: number
  private timer?: ReturnType<typeof setTimeout>
  private running?: Promise<unknown>
  private stopper = new AbortController()
  private started = false
  counters?: AgentInit['counters']
  /** listeners told after every pass (tests await them instead of sleeping) */
  private readonly passListeners = new Set<(p: AgentPass) => void>()

  constructor (init: AgentInit) {
    this.init = init
    this.manifests = new ManifestStore(init.db)
    this.log = init.log ?? logger('decloud:files:agent')
    this.interval = init.auditInterval ?? DEFAULT_AUDIT_INTERVAL
    this.jitter = init.auditJitter ?? DEFAULT_AUDIT_JITTER
    this.tickMs = init.tick ?? DEFAULT_TICK
    this.counters = init.counters
    if (!(this.interval > 0) || !(this.jitter >= 0 && this.jitter < 1) || !(this.tickMs > 0)) { throw new RangeError('auditInterval and tick must be > 0, auditJitter in [0, 1)') }
  }

  /** Runs a pass at once, then every tick */
  start (): void {
    if (this.started) { return }
    this.started = true
    this.stopper = new AbortController()
    setMaxListeners(Infinity, this.stopper.signal)
    this.schedule(0)
  }

  async stop (): Promise<void> {
    this.started = false
    clearTimeout(this.timer)
    this.stopper.abort(new AbortError('files agent stopped'))
    await this.running?.catch(() => {})
  }

  private schedule (ms: number): void {
    if (!this.started) { return }
    this.timer = setTimeout(() => {
      this.running = this.pass().catch(err => { this.log.error('files agent pass failed: %e', err) }).finally(() => {
        this.running = undefined
        this.schedule(this.tickMs)
      })
    }, ms)
    this.timer.unref?.()
  }

  /** Resolves after the next pass that satisfies `accept` (bounded by `ms`) */
  async nextPass (accept: (p: AgentPass) => boolean = () => true, ms = 30_000): Promise<AgentPass> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.passListeners.delete(on)
        reject(new TimeoutError(`no matching files agent pass within ${ms} ms`))
      }, ms)
      const on = (p: AgentPass): void => {
        if (!accept(p)) { return }
        clearTimeout(timer)
        this.passListeners.delete(on)
        resolve(p)
      }
      this.passListeners.add(on)
    })
  }

  /** When a piece is next audited: now + interval × [1 − jitter, 1 + jitter) */
  nextAuditTime (now = Date.now()): number {
    return now + Math.round(this.interval * (1 - this.jitter + 2 * this.jitter * Math.random()))
  }

  /** When a lease of `m` ending at `expiry` is renewed */
  renewalTime (m: FileManifest, expiry: number): number {
    const before = this.init.renewBefore ?? Math.min(DEFAULT_RENEW_BEFORE, m.duration * 1000 / 4)
    return expiry - before
  }

  /** One look at every complete file: due audits, renewals and repairs */
  async pass (now = Date.now()): Promise<AgentPass> {
    const done: AgentPass = { audited: 0, failed: 0, renewed: 0, repaired: 0 }
    const files: FileManifest[] = []
    for await (const m of this.manifests.list()) { if (m.state === 'complete') { files.push(m) } }
    for (const m of files) {
      if (this.stopper.signal.aborted) { break }
      const segments: SegmentRecord[] = []
      for await (const s of this.manifests.segments(m.id)) { segments.push(s) }
      const spent = { sats: 0n }
      let changed = false
      for (const s of segments) {
        if (this.stopper.signal.aborted) { break }
        const before = JSON.stringify(s)
        await this.tendSegment(m, s, now, done, spent)
        if (JSON.stringify(s) === before) { continue }
        // a file removed meanwhile stays removed
        if (await this.manifests.get(m.id) == null) { break }
        await this.manifests.putSegment(m.id, s)
        changed = true
      }
      if (!changed) { continue }
      const head = await this.manifests.get(m.id)
      if (head == null) { continue }
      const expiries = segments.flatMap(s => s.pieces.map(p => p.expiry)).filter((e): e is number => e != null)
      if (expiries.length > 0) { head.expiry = Math.min(...expiries) }
      head.cost = (BigInt(head.cost) + spent.sats).toString()
      for (const s of segments) {
        for (const p of s.pieces) {
          const a = this.addrs.get(p.peer)
          if (head.sellers[p.peer] == null && a != null) { head.sellers[p.peer] = a }
        }
      }
      await this.manifests.putHead(head)
    }
    await this.init.records.flush()
    for (const l of [...this.passListeners]) { l(done) }
    return done
  }

  /** addresses of sellers chosen for repairs, until their file's head records them */
  private readonly addrs = new Map<string, string[]>()

  private seller (m: FileManifest, peer: string): SellerRef {
    return { peerId: peer, addresses: m.sellers[peer] ?? this.addrs.get(peer) ?? [] }
  }

  private signal (): AbortSignal {
    return AbortSignal.any([this.stopper.signal, AbortSignal.timeout(this.init.pieceTimeout ?? DEFAULT_PIECE_TIMEOUT)])
  }

  /** Audits and renews the segment's due pieces, then repairs it if too few are left */
  private async tendSegment (m: FileManifest, s: SegmentRecord, now: number, done: AgentPass, spent: { sats: bigint }): Promise<void> {
    const jobs: Array<() => Promise<void>> = []
    for (const p of s.pieces) {
      const renewDue = p.expiry != null && this.init.pieces.renew != null && now >= this.renewalTime(m, p.expiry)
      const auditDue = p.nextAudit == null || now >= p.nextAudit
      if (!renewDue && !auditDue) { continue }
      jobs.push(async () => {
        // a renewal pays again: only after an audit of the piece passed, now
        const ok = await this.audit(m, s, p, done)
        if (ok && renewDue) { await this.renew(m, s, p, done, spent) }
      })
    }
    await runLimited(jobs, this.init.parallel ?? 8)
    const lost = s.pieces.filter(p => p.lost != null)
    if (lost.length > 0) {
      s.pieces = s.pieces.filter(p => p.lost == null)
      s.lost = [...(s.lost ?? []), ...lost.map(p => ({ shard: p.shard, id: p.id, peer: p.peer, at: p.lost as number }))].slice(-64)
    }
    const threshold = (this.init.repairAt ?? defaultRepairAt)(m.k, m.n)
    if (s.pieces.length <= threshold && s.pieces.length < m.n) {
      try {
        if (await this.repair(m, s, spent)) { done.repaired++ }
      } catch (err) {
        this.log.error('file %s segment %d: repair failed - %e', m.id, s.index, err)
      }
    }
  }

  /**
   * One audit; false (and the piece marked lost) when it failed. A piece
   * with a Merkle root gets a fresh challenge; one stored without (before
   * leases) can only be asked about (`storage.stat`), which proves less
   */
  private async audit (m: FileManifest, s: SegmentRecord, p: PieceRecord, done: AgentPass): Promise<boolean> {
    const pieces = this.init.pieces
    const seller = this.seller(m, p.peer)
    const at = Date.now()
    let error: string | undefined
    try {
      if (pieces.audit != null && p.root != null) {
        await pieces.audit(seller, p.id, p.root, s.shardSize, { signal: this.signal() })
      } else if (!await this.init.pieces.has(seller, p.id, { signal: this.signal() })) {
        error = 'the seller no longer has the piece'
      }
    } catch (err: any) {
      // the node stopping is no verdict on the seller
      if (this.stopper.signal.aborted) { return false }
      // a fault of this node is no verdict on the seller either
      if (err instanceof TypeError || err instanceof RangeError) {
        this.log.error('file %s segment %d piece %d: audit could not run - %e', m.id, s.index, p.shard, err)
        return false
      }
      error = String(err?.message ?? err).slice(0, 300)
    }
    const ok = error == null
    done.audited++
    p.audit = { at, ok, ...(error != null ? { error } : {}) }
    p.nextAudit = this.nextAuditTime(at)
    if (!ok) {
      done.failed++
      p.lost = at
      this.log('file %s segment %d piece %d failed its audit at %s: %s', m.id, s.index, p.shard, p.peer, error)
    }
    this.counters?.audits(ok ? 'passed' : 'failed', 'buyer')
    void this.init.records.record(p.peer, ok)
    await this.init.record?.({
      peer: p.peer,
      role: 'seller',
      kind: ok ? 'audit-passed' : 'audit-failed',
      value: ok ? 1 : -1,
      // a failed audit is a broken storage promise; a passed one, a promise kept so far
      weight: ok ? 0.5 : 5,
      evidence: { piece: p.id, root: p.root, size: s.shardSize, ...(p.receipt != null ? { receipt: p.receipt } : {}), ...(error != null ? { error } : {}) },
      dedupe: `audit:${p.peer}:${p.id}:${at}`
    }).catch(() => {})
    return ok
  }

  /** Extends the piece's lease by the file's duration (pays the seller) */
  private async renew (m: FileManifest, s: SegmentRecord, p: PieceRecord, done: AgentPass, spent: { sats: bigint }): Promise<void> {
    const pieces = this.init.pieces
    if (pieces.renew == null) { return }
    try {
      const r = await pieces.renew(this.seller(m, p.peer), p.id, s.shardSize, m.duration, { maxPrice: this.init.maxPrice ?? DEFAULT_MAX_PRICE, signal: this.signal(), root: p.root })
      if (r.expiry != null) { p.expiry = r.expiry }
      if (r.receipt != null) { p.receipt = Buffer.from(r.receipt).toString('base64') }
      p.cost = (BigInt(p.cost) + r.cost).toString()
      spent.sats += r.cost
      done.renewed++
    } catch (err) {
      // tried again next tick; a lease that ends unrenewed is found by the next audit
      this.log('file %s segment %d piece %d: renewal at %s failed - %e', m.id, s.index, p.shard, p.peer, err)
    }
  }

  /**
   * Rebuilds the segment's missing shards from any k live pieces and places
   * them on sellers that hold nothing of this segment. True when the segment
   * has n pieces again.
   */
  private async repair (m: FileManifest, s: SegmentRecord, spent: { sats: bigint }): Promise<boolean> {
    const shards: Array<Uint8Array | undefined> = new Array(s.total).fill(undefined)
    const order = [...s.pieces]
    const rate = new Map<string, number>()
    for (const p of order) { rate.set(p.peer, successRate(await this.init.records.get(p.peer))) }
    order.sort((a, b) => (rate.get(b.peer) ?? 0) - (rate.get(a.peer) ?? 0) || a.shard - b.shard)
    let got = 0
    const maxPrice = this.init.maxPrice ?? DEFAULT_MAX_PRICE
    for (const p of order) {
      if (got >= m.k) { break }
      try {
        shards[p.shard] = await this.init.pieces.get(this.seller(m, p.peer), p.id, { maxPrice, signal: this.signal() })
        got++
      } catch (err) {
        if (this.stopper.signal.aborted) { throw err }
        // the seller cannot give it back: it is lost too
        p.lost = Date.now()
        void this.init.records.record(p.peer, false)
      }
    }
    if (got < m.k) { throw new NotEnoughPiecesError(`only ${got} of the ${m.k} pieces needed could be fetched`) }
    const sealed = decodeShards(shards, m.k, s.total, s.shardSize, s.sealedSize)
    const all = encodeShards(sealed, m.k, s.total)
    const held = new Set(s.pieces.filter(p => p.lost == null).map(p => p.shard))
    // the shards just lost first (their ids and roots are known to be the same again), then any other spare row
    const gone = new Set([...s.pieces.filter(p => p.lost != null), ...(s.lost ?? [])].map(p => p.shard))
    const missing = Array.from({ length: s.total }, (_, i) => i).filter(i => !held.has(i)).sort((a, b) => Number(gone.has(b)) - Number(gone.has(a)) || a - b).slice(0, m.n - held.size)
    // new sellers: none that holds (or held, and lost) a piece of this segment
    const avoid = new Set([...s.pieces.map(p => p.peer), ...(s.lost ?? []).map(p => p.peer)])
    const keep = s.pieces.filter(p => p.lost == null)
    const lostNow = s.pieces.filter(p => p.lost != null)
    const placed: PieceRecord[] = []
    const expiries = keep.map(p => p.expiry).filter((e): e is number => e != null)
    // the new leases end with the segment's others
    const seconds = expiries.length > 0 ? Math.max(1, Math.ceil((Math.min(...expiries) - Date.now()) / 1000)) : m.duration
    const found = await this.init.findSellers({ usage: BigInt(s.shardSize) * BigInt(seconds), timeout: 10_000, signal: this.stopper.signal })
    const ranked = (await rankForPut(found.filter(c => !avoid.has(c.peerId)), this.init.records, { maxPrice, trust: this.init.trust }))
    const seen = new Set<string>()
    const candidates = ranked.filter(c => !seen.has(c.peerId) && seen.add(c.peerId) != null)
    for (const shard of missing) {
      while (candidates.length > 0) {
        const c = candidates.shift() as SellerCandidate
        const seller: SellerRef = { peerId: c.peerId, addresses: c.addresses }
        try {
          const t0 = Date.now()
          const r = await this.init.pieces.put(seller, all[shard], { maxPrice, duration: seconds, signal: this.signal() })
          void this.init.records.record(c.peerId, true, all[shard].byteLength, Date.now() - t0)
          this.addrs.set(c.peerId, c.addresses)
          placed.push({ shard, id: r.id, peer: c.peerId, cost: r.cost.toString(), ...(r.expiry != null ? { expiry: r.expiry } : {}), ...(r.root != null ? { root: r.root } : {}), ...(r.receipt != null ? { receipt: Buffer.from(r.receipt).toString('base64') } : {}), nextAudit: this.nextAuditTime() })
          spent.sats += r.cost
          break
        } catch (err) {
          if (this.stopper.signal.aborted) { throw err }
          void this.init.records.record(c.peerId, false)
          this.log('file %s segment %d: repair piece %d at %s failed - %e', m.id, s.index, shard, c.peerId, err)
        }
      }
    }
    if (lostNow.length > 0) {
      s.lost = [...(s.lost ?? []), ...lostNow.map(p => ({ shard: p.shard, id: p.id, peer: p.peer, at: p.lost as number }))].slice(-64)
    }
    s.pieces = [...keep, ...placed].sort((a, b) => a.shard - b.shard)
    if (placed.length > 0) {
      this.counters?.repairs(placed.length)
      this.log('file %s segment %d: %d pieces placed on new sellers', m.id, s.index, placed.length)
    }
    return s.pieces.length >= m.n
  }

  /** Last audit and next renewal of a segment, for status */
  segmentStatus (m: FileManifest, s: SegmentRecord): { lastAudit: string | null, nextRenewal: string | null } {
    const audits = s.pieces.map(p => p.audit?.at).filter((a): a is number => a != null)
    const expiries = s.pieces.map(p => p.expiry).filter((e): e is number => e != null)
    return {
      lastAudit: audits.length > 0 ? new Date(Math.max(...audits)).toISOString() : null,
      nextRenewal: expiries.length > 0 && this.init.pieces.renew != null ? new Date(this.renewalTime(m, Math.min(...expiries))).toISOString() : null
    }
  }
}

async function runLimited (jobs: Array<() => Promise<void>>, limit: number): Promise<void> {
  let i = 0
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, async () => {
    while (i < jobs.length) { await jobs[i++]() }
  }))
}
