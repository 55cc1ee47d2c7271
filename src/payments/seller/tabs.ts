/**
 * Server side of deferred payments: one tab per (payer OpenCloud ID, defer
 * id). Spec "Decloud - Server": "store deferred payment promises made by
 * clients, and match that against the actual payment received. The
 * defer-threshold field is helpful in evaluating an honest client whose
 * payment is not yet due, vs. a cheating client."
 *
 * A tab accrues what the payer promised (`payment-type defer`) and what it
 * paid (`attached` payments naming the defer id). Each promise keeps its
 * evidence: the signed request, body replaced by nothing, plus the body
 * hash, which is enough to check the payer's signature again
 * (`verifyEvidence`). A tab whose threshold passed and that stays unpaid
 * past a grace period becomes `broken`: a broken-promise record is written
 * for reputation to read (`brokenPromises()`).
 *
 * Layout (keys in the tabs SubDb; payer and defer id never contain `/`):
 * - `t/<payer>/<deferId>`           the tab (JSON, amounts as decimal strings)
 * - `e/<payer>/<deferId>/<seq>`     evidence of one promise (JSON)
 * - `c/<payer>/<deferId>/<txid>`    a payment credited to the tab (makes credits idempotent)
 * - `p/<payer>`                     the payer's open and broken tab ids
 * - `d/<time>/<payer>/<deferId>`    due index (due time and latest due time), for the sweep
 * - `b/<brokenAt>/<payer>/<deferId>` broken promises
 * - `w/<payer>/<deferId>/<n>`       a promise taken back because its call was not served
 *
 * Every change of one tab runs under that tab's lock and is written in one
 * batch, so concurrent calls never lose an update; changes to the payer's
 * summary also take the payer's lock (always after the tab's, never before).
 */
import { Request } from '../../protocols/opencloud/pb/opencloud.js'
import { json as encodeJson } from '../../util/json.js'
import { KeyedMutex } from '../../util/locks.js'
import { Lru } from '../../util/lru.js'
import { DEFAULT_THRESHOLD, DEFER_ID, dueTime, formatThreshold, owedOf, parseThreshold, statusAt } from './tab.js'
import type { Tab, Threshold, BrokenPromise, Evidence } from './tab.js'
import type { BatchOp, SubDb } from '../../store/index.js'

export * from './tab.js'

export const DEFAULT_MAX_OPEN_TABS_PER_PAYER = 16
export const DEFAULT_MAX_EVIDENCE_PER_TAB = 64
/**
 * The latest a tab falls due, whatever its threshold: 24 hours after it
 * opened (a value threshold that is never reached must not defer payment
 * for ever). Longer time thresholds are refused.
 */
export const DEFAULT_MAX_TAB_AGE = 24 * 3600_000
/** Time an overdue tab is given before it is recorded as broken: 15 minutes */
export const DEFAULT_GRACE = 15 * 60_000
/** Tabs broken per sweep at most; the rest wait for the next one */
const SWEEP_BATCH = 1000

const PAYER = /^[A-Za-z0-9._:-]{1,256}$/

/** Tabs and payer summaries kept in memory (LevelDB stays the truth; this process is its only writer) */
const CACHE_SIZE = 10_000

export interface TabStoreInit {
  /** namespaced LevelDB, e.g. `store.sub('tabs')` */
  db: SubDb
  /** tabs a payer may have open (not settled) at once @default 16 */
  maxOpenTabsPerPayer?: number
  /** evidence records kept per tab; the oldest are dropped, counts kept @default 64 */
  maxEvidencePerTab?: number
  /** ms an overdue tab is given before it is broken @default 15 minutes */
  grace?: number
  /** ms after opening a tab falls due at the latest, whatever its threshold @default 24 hours */
  maxTabAge?: number
}

export interface PromiseInput {
  payer: string
  deferId: string
  /** sats promised by this request */
  amount: bigint
  /** the request's threshold, undefined when it named none */
  threshold?: Threshold
  /** the most the tab may owe after this promise */
  maxTab: bigint
  /** the signed request (its body is not stored) and the body's hash */
  request: Request
  bodyHash: Uint8Array
  now?: number
}

export type PromiseRefusal =
  /** the tab's threshold passed: it must be settled first */
  | 'due'
  /** this tab is broken */
  | 'broken'
  /** this tab was settled: promises go under a new defer id */
  | 'settled'
  /** the tab would owe more than its limit */
  | 'over-limit'
  /** the payer has as many open tabs as allowed */
  | 'too-many-tabs'
  /** another tab of the payer is broken */
  | 'payer-broken'
  /** the request names a threshold other than the tab's */
  | 'threshold'

export type PromiseOutcome =
  | { ok: true, tab: Tab }
  | { ok: false, reason: PromiseRefusal, detail: string, tab?: Tab }

export interface CreditInput {
  payer: string
  deferId: string
  amount: bigint
  txid: string
  now?: number
}

interface PayerSummary {
  open: string[]
  broken: string[]
}

const dec = new TextDecoder()

/** 15 digits of ms since the epoch sort like numbers until the year 33658 */
function pad (ms: number): string {
  return Math.max(0, Math.floor(ms)).toString().padStart(15, '0')
}

const tabKey = (payer: string, id: string): string => `t/${payer}/${id}`
const evidencePrefix = (payer: string, id: string): string => `e/${payer}/${id}/`
const evidenceKey = (payer: string, id: string, seq: number): string => `${evidencePrefix(payer, id)}${seq.toString().padStart(10, '0')}`
const creditKey = (payer: string, id: string, txid: string): string => `c/${payer}/${id}/${txid}`
const payerKey = (payer: string): string => `p/${payer}`
const dueKey = (dueAt: number, payer: string, id: string): string => `d/${pad(dueAt)}/${payer}/${id}`
const brokenKey = (brokenAt: number, payer: string, id: string): string => `b/${pad(brokenAt)}/${payer}/${id}`
const withdrawKey = (payer: string, id: string, n: number): string => `w/${payer}/${id}/${n.toString().padStart(10, '0')}`
/** sorts after every key under a prefix (keys are ASCII) */
const END = '\uffff'

function decodeTab (bytes: Uint8Array): Tab {
  const o = JSON.parse(dec.decode(bytes))
  return { ...o, accrued: BigInt(o.accrued), paid: BigInt(o.paid) }
}

function decodeBroken (bytes: Uint8Array): BrokenPromise {
  const o = JSON.parse(dec.decode(bytes))
  return { ...o, owed: BigInt(o.owed), accrued: BigInt(o.accrued), paid: BigInt(o.paid) }
}

function checkIds (payer: string, deferId: string): void {
  if (!PAYER.test(payer)) { throw new TypeError('payer id malformed') }
  if (!DEFER_ID.test(deferId)) { throw new TypeError('defer id malformed') }
}

/**
 * The tabs of deferred payments, on LevelDB.
 *
 * @example
 * ```ts
 * const tabs = new TabStore({ db: store.sub('tabs') })
 * const out = await tabs.promise({ payer, deferId: 'd1', amount: 100n, maxTab: 100_000n, request, bodyHash })
 * if (out.ok) console.log(tabView(out.tab))
 * ```
 */
export class TabStore {
  private readonly db: SubDb
  private readonly maxOpenTabs: number
  private readonly maxEvidence: number
  readonly grace: number
  readonly maxTabAge: number
  private readonly tabLocks = new KeyedMutex()
  private readonly payerLocks = new KeyedMutex()
  private readonly tabCache = new Lru<Tab>(CACHE_SIZE)
  private readonly payerCache = new Lru<PayerSummary>(CACHE_SIZE)

  constructor (init: TabStoreInit) {
    this.db = init.db
    this.maxOpenTabs = init.maxOpenTabsPerPayer ?? DEFAULT_MAX_OPEN_TABS_PER_PAYER
    this.maxEvidence = init.maxEvidencePerTab ?? DEFAULT_MAX_EVIDENCE_PER_TAB
    this.grace = init.grace ?? DEFAULT_GRACE
    this.maxTabAge = init.maxTabAge ?? DEFAULT_MAX_TAB_AGE
  }

  async get (payer: string, deferId: string): Promise<Tab | undefined> {
    if (!PAYER.test(payer) || !DEFER_ID.test(deferId)) { return undefined }
    const tab = await this.load(payer, deferId)
    return tab == null ? undefined : { ...tab }
  }

  /** The stored tab (cached; never mutated: changes make a new object) */
  private async load (payer: string, deferId: string): Promise<Tab | undefined> {
    const key = tabKey(payer, deferId)
    const hit = this.tabCache.get(key)
    if (hit != null) { return hit }
    const v = await this.db.get(key)
    if (v == null) { return undefined }
    const tab = decodeTab(v)
    this.tabCache.set(key, tab)
    return tab
  }

  /** Writes a batch, then what it wrote into the caches */
  private async commit (ops: BatchOp[], tabs: Tab[], summary?: { payer: string, value: PayerSummary }): Promise<void> {
    for (const t of tabs) { ops.push({ type: 'put', key: tabKey(t.payer, t.deferId), value: encodeJson(t) }) }
    if (summary != null) { ops.push({ type: 'put', key: payerKey(summary.payer), value: encodeJson(summary.value) }) }
    await this.db.batch(ops)
    for (const t of tabs) { this.tabCache.set(tabKey(t.payer, t.deferId), t) }
    if (summary != null) { this.payerCache.set(summary.payer, summary.value) }
  }

  /** Every tab of a payer, settled ones included */
  async * tabsOf (payer: string): AsyncGenerator<Tab> {
    if (!PAYER.test(payer)) { return }
    const prefix = `t/${payer}/`
    for await (const [, v] of this.db.iterator({ gte: prefix, lt: prefix + END })) { yield decodeTab(v) }
  }

  /** Every tab, settled ones included, by payer and defer id; at most `limit` */
  async * all (options: { limit?: number } = {}): AsyncGenerator<Tab> { for await (const [, v] of this.db.iterator({ gte: 't/', lt: 't/' + END, limit: options.limit ?? -1 })) { yield decodeTab(v) } }

  /** The evidence kept for a tab, oldest first */
  async * evidence (payer: string, deferId: string): AsyncGenerator<Evidence> {
    if (!PAYER.test(payer) || !DEFER_ID.test(deferId)) { return }
    const prefix = evidencePrefix(payer, deferId)
    for await (const [, v] of this.db.iterator({ gte: prefix, lt: prefix + END })) {
      const o = JSON.parse(dec.decode(v))
      yield { seq: o.seq, at: o.at, amount: BigInt(o.amount), request: Buffer.from(o.request, 'base64'), bodyHash: Buffer.from(o.bodyHash, 'hex') }
    }
  }

  /** True when this transaction was already credited to the tab */
  async credited (payer: string, deferId: string, txid: string): Promise<boolean> {
    if (!PAYER.test(payer) || !DEFER_ID.test(deferId)) { return false }
    return await this.db.get(creditKey(payer, deferId, txid)) != null
  }

  /**
   * Records a promise on the payer's tab (opening it when it is new), or
   * says why not. The caller checked the amount against the call's cost.
   */
  async promise (input: PromiseInput): Promise<PromiseOutcome> {
    const { payer, deferId, amount } = input
    checkIds(payer, deferId)
    if (amount <= 0n) { throw new RangeError('a promise is for a positive amount') }
    const now = input.now ?? Date.now()
    return this.tabLocks.run(tabKey(payer, deferId), async () => {
      const existing = await this.load(payer, deferId)
      if (existing == null) {
        return this.payerLocks.run(payer, async () => this.openTab(input, now))
      }
      const tab = existing
      const status = statusAt(tab, now)
      if (status === 'settled') { return { ok: false, reason: 'settled', detail: `tab ${deferId} is settled; promise under a new defer id`, tab } }
      if (status === 'broken') { return { ok: false, reason: 'broken', detail: `tab ${deferId} is broken (${owedOf(tab)} sat overdue): settle it first`, tab } }
      if (status === 'due') { return { ok: false, reason: 'due', detail: `tab ${deferId} is due: settle it first (${owedOf(tab)} sat owed)`, tab } }
      if (input.threshold != null && formatThreshold(input.threshold) !== tab.threshold) {
        return { ok: false, reason: 'threshold', detail: `tab ${deferId} was opened with defer-threshold ${tab.threshold}; send that or none`, tab }
      }
      const summary = await this.summary(payer)
      if (summary.broken.length > 0) { return { ok: false, reason: 'payer-broken', detail: `your tab ${summary.broken[0]} is broken: settle it first`, tab } }
      const owedAfter = owedOf({ accrued: tab.accrued + amount, paid: tab.paid })
      if (owedAfter > input.maxTab) {
        return { ok: false, reason: 'over-limit', detail: `tab ${deferId} would owe ${owedAfter} sat, over this node's limit of ${input.maxTab} sat per tab`, tab }
      }
      const ops: BatchOp[] = []
      const next: Tab = { ...tab, accrued: tab.accrued + amount, promises: tab.promises + 1, updatedAt: now }
      // a tab that owed nothing (opened by a payment, or paid or taken back
      // down to zero) may have no due index: the sweep must find it again
      if (owedOf(tab) === 0n) { this.indexDue(next, ops) }
      this.setDue(next, now, ops)
      this.addEvidence(next, input, now, ops)
      await this.commit(ops, [next])
      return { ok: true, tab: { ...next } }
    })
  }

  /** A new tab: checks the payer's summary (payer lock held) */
  private async openTab (input: PromiseInput, now: number): Promise<PromiseOutcome> {
    const { payer, deferId, amount } = input
    const summary = await this.summary(payer)
    if (summary.broken.length > 0) { return { ok: false, reason: 'payer-broken', detail: `your tab ${summary.broken[0]} is broken: settle it first` } }
    if (summary.open.length >= this.maxOpenTabs) {
      return { ok: false, reason: 'too-many-tabs', detail: `you have ${summary.open.length} open tabs here, the most this node allows: settle one first` }
    }
    if (amount > input.maxTab) {
      return { ok: false, reason: 'over-limit', detail: `tab ${deferId} would owe ${amount} sat, over this node's limit of ${input.maxTab} sat per tab` }
    }
    const threshold = input.threshold ?? parseThreshold(DEFAULT_THRESHOLD)
    if (threshold.kind === 'time' && threshold.seconds * 1000 > this.maxTabAge) {
      return { ok: false, reason: 'threshold', detail: `this node takes defer-threshold time:<seconds> up to ${Math.floor(this.maxTabAge / 1000)} seconds` }
    }
    const tab: Tab = {
      payer,
      deferId,
      accrued: amount,
      paid: 0n,
      threshold: formatThreshold(threshold),
      openedAt: now,
      dueAt: threshold.kind === 'time' ? now + threshold.seconds * 1000 : undefined,
      latestDue: now + this.maxTabAge,
      promises: 1,
      evidenceDropped: 0,
      payments: 0,
      status: 'open',
      updatedAt: now
    }
    const ops: BatchOp[] = []
    this.indexDue(tab, ops)
    this.setDue(tab, now, ops)
    this.addEvidence(tab, input, now, ops)
    await this.commit(ops, [tab], { payer, value: { ...summary, open: [...summary.open, deferId] } })
    return { ok: true, tab: { ...tab } }
  }

  /** Puts the tab's latest due time (and its due time, when set) in the due index */
  private indexDue (tab: Tab, ops: BatchOp[]): void {
    ops.push({ type: 'put', key: dueKey(tab.latestDue, tab.payer, tab.deferId), value: new Uint8Array(0) })
    if (tab.dueAt != null) { ops.push({ type: 'put', key: dueKey(tab.dueAt, tab.payer, tab.deferId), value: new Uint8Array(0) }) }
  }

  /** An open value-threshold tab that owes less than its threshold again (paid, or a promise taken back) is not due */
  private undue (tab: Tab, ops: BatchOp[]): void {
    if (tab.status !== 'open' || tab.dueAt == null) { return }
    const t = parseThreshold(tab.threshold)
    if (t.kind === 'value' && owedOf(tab) < t.sats) {
      ops.push({ type: 'del', key: dueKey(tab.dueAt, tab.payer, tab.deferId) })
      tab.dueAt = undefined
    }
  }

  /**
   * Value and completion thresholds fall due with promises (time ones are
   * fixed when the tab opens): sets `dueAt` and the due index.
   */
  private setDue (tab: Tab, now: number, ops: BatchOp[]): void {
    if (tab.dueAt != null) { return }
    const t = parseThreshold(tab.threshold)
    const due = t.kind === 'completion' || (t.kind === 'value' && owedOf(tab) >= t.sats)
    if (!due) { return }
    tab.dueAt = now
    ops.push({ type: 'put', key: dueKey(now, tab.payer, tab.deferId), value: new Uint8Array(0) })
  }

  private addEvidence (tab: Tab, input: PromiseInput, now: number, ops: BatchOp[]): void {
    const seq = tab.promises
    const request = Request.encode({ ...input.request, body: new Uint8Array(0) })
    ops.push({
      type: 'put',
      key: evidenceKey(tab.payer, tab.deferId, seq),
      value: encodeJson({ seq, at: now, amount: input.amount, request: Buffer.from(request).toString('base64'), bodyHash: Buffer.from(input.bodyHash).toString('hex') })
    })
    const drop = seq - this.maxEvidence
    if (drop >= 1) {
      ops.push({ type: 'del', key: evidenceKey(tab.payer, tab.deferId, drop) })
      tab.evidenceDropped++
    }
  }

  /**
   * Takes back a promise whose call was not served (the method failed after
   * the gate accepted the promise): the tab owes `amount` less. The
   * promise's evidence stays, with a withdrawal record next to it, so the
   * tab's history still adds up. A tab that is settled or broken by then is
   * left as it is.
   */
  async withdraw (input: { payer: string, deferId: string, amount: bigint, reason: string, now?: number }): Promise<boolean> {
    const { payer, deferId, amount } = input
    checkIds(payer, deferId)
    if (amount <= 0n) { return false }
    const now = input.now ?? Date.now()
    return this.tabLocks.run(tabKey(payer, deferId), async () => {
      const tab = await this.load(payer, deferId)
      if (tab == null) { return false }
      const status = statusAt(tab, now)
      if (status === 'settled' || status === 'broken' || tab.accrued - amount < tab.paid) { return false }
      const withdrawn = (tab.withdrawn ?? 0) + 1
      const next: Tab = { ...tab, accrued: tab.accrued - amount, withdrawn, updatedAt: now }
      const ops: BatchOp[] = [{
        type: 'put',
        key: withdrawKey(payer, deferId, withdrawn),
        value: encodeJson({ withdrawn: amount, at: now, reason: input.reason.slice(0, 200) })
      }]
      this.undue(next, ops)
      await this.commit(ops, [next])
      return true
    })
  }

  /**
   * Credits a payment to the payer's tab (opening an empty one when the
   * payment comes first). Idempotent per txid: the same transaction is never
   * credited twice.
   */
  async credit (input: CreditInput): Promise<{ tab: Tab, credited: boolean }> {
    const { payer, deferId, amount, txid } = input
    checkIds(payer, deferId)
    if (!/^[0-9a-f]{64}$/.test(txid)) { throw new TypeError('txid malformed') }
    if (amount < 0n) { throw new RangeError('a credit is not negative') }
    const now = input.now ?? Date.now()
    return this.tabLocks.run(tabKey(payer, deferId), async () => {
      const existing = await this.load(payer, deferId)
      if (existing != null && await this.credited(payer, deferId, txid)) { return { tab: { ...existing }, credited: false } }
      return this.payerLocks.run(payer, async () => {
        const summary = await this.summary(payer)
        const ops: BatchOp[] = []
        let tab: Tab
        if (existing == null) {
          // paid before any promise: a credit the payer's promises draw on
          // (no due index: it owes nothing until a promise comes)
          tab = { payer, deferId, accrued: 0n, paid: amount, threshold: DEFAULT_THRESHOLD, openedAt: now, latestDue: now + this.maxTabAge, promises: 0, evidenceDropped: 0, payments: 1, status: 'open', updatedAt: now }
          summary.open.push(deferId)
        } else {
          tab = { ...existing, paid: existing.paid + amount, payments: existing.payments + 1, updatedAt: now }
        }
        if (tab.status !== 'settled' && tab.accrued > 0n && tab.paid >= tab.accrued) {
          if (tab.dueAt != null) { ops.push({ type: 'del', key: dueKey(tab.dueAt, payer, deferId) }) }
          ops.push({ type: 'del', key: dueKey(tab.latestDue, payer, deferId) })
          if (tab.status === 'broken' && tab.brokenAt != null) {
            const bk = brokenKey(tab.brokenAt, payer, deferId)
            const rec = await this.db.get(bk)
            if (rec != null) { ops.push({ type: 'put', key: bk, value: encodeJson({ ...decodeBroken(rec), settledAt: now }) }) }
          }
          tab.status = 'settled'
          tab.settledAt = now
          summary.open = summary.open.filter(id => id !== deferId)
          summary.broken = summary.broken.filter(id => id !== deferId)
        } else {
          // a value threshold no longer reached after a partial payment: open again
          this.undue(tab, ops)
        }
        ops.push({ type: 'put', key: creditKey(payer, deferId, txid), value: encodeJson({ amount, at: now }) })
        await this.commit(ops, [tab], { payer, value: summary })
        return { tab: { ...tab }, credited: true }
      })
    })
  }

  /**
   * Marks tabs that were due before `now − grace` and are still unpaid as
   * broken, and records a broken promise for each. Returns how many tabs it
   * broke (at most 1000 per call).
   */
  async sweep (now = Date.now()): Promise<number> {
    const found: Array<{ key: string, payer: string, deferId: string }> = []
    for await (const [key] of this.db.iterator({ gte: 'd/', lt: `d/${pad(now - this.grace)}/${END}`, limit: SWEEP_BATCH })) {
      const [, , payer, deferId] = key.split('/')
      if (payer == null || deferId == null) { continue }
      found.push({ key, payer, deferId })
    }
    let broken = 0
    for (const { key, payer, deferId } of found) {
      const done = await this.tabLocks.run(tabKey(payer, deferId), async () => {
        const tab = await this.load(payer, deferId)
        // a key may be stale (a value threshold no longer reached, a tab paid): the tab decides
        if (tab == null || tab.status !== 'open' || owedOf(tab) === 0n || dueTime(tab) > now - this.grace) {
          await this.db.del(key)
          return false
        }
        return this.payerLocks.run(payer, async () => {
          const summary = await this.summary(payer)
          const next: Tab = { ...tab, status: 'broken', brokenAt: now, updatedAt: now }
          const record: BrokenPromise = {
            payer,
            deferId,
            owed: owedOf(tab),
            accrued: tab.accrued,
            paid: tab.paid,
            threshold: tab.threshold,
            dueAt: dueTime(tab),
            brokenAt: now,
            promises: tab.promises
          }
          await this.commit([
            { type: 'del', key },
            { type: 'put', key: brokenKey(now, payer, deferId), value: encodeJson(record) }
          ], [next], { payer, value: { open: summary.open.filter(id => id !== deferId), broken: [...summary.broken.filter(id => id !== deferId), deferId] } })
          return true
        })
      })
      if (done) { broken++ }
    }
    return broken
  }

  /** Broken promises, oldest first (optionally only those broken at or after `since`, ms) */
  async * brokenPromises (options: { since?: number, limit?: number } = {}): AsyncGenerator<BrokenPromise> {
    const it = this.db.iterator({ gte: `b/${pad(options.since ?? 0)}`, lt: `b/${END}`, limit: options.limit })
    for await (const [, v] of it) { yield decodeBroken(v) }
  }

  /** The payer's open and broken tab ids (a copy) */
  private async summary (payer: string): Promise<PayerSummary> {
    let s = this.payerCache.get(payer)
    if (s == null) {
      const v = await this.db.get(payerKey(payer))
      const o = v == null ? {} : JSON.parse(dec.decode(v))
      s = { open: Array.isArray(o.open) ? o.open : [], broken: Array.isArray(o.broken) ? o.broken : [] }
      this.payerCache.set(payer, s)
    }
    return { open: [...s.open], broken: [...s.broken] }
  }
}
