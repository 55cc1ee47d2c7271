/**
 * A node's reputation knowledge: its first-hand records (records.ts), the
 * reports other nodes published (report.ts), the opinion trust of each
 * reporter, the global trust vector (EigenTrust) and the 0–1 trust the
 * policy's bands and seller choice read. It lives outside libp2p (the
 * policy's trust provider is needed before the node is built); the
 * `reputation` libp2p service (service.ts) feeds it reports and publishes
 * its own.
 */
import { InvalidParametersError } from '@libp2p/interface'
import { eigenTrust, validateEigenTrustParams } from './eigentrust.js'
import { combinedTrust, opinionTrust, validateOpinionParams } from './opinion.js'
import { RecordStore } from './records.js'
import { MAX_REPORT_ENTRIES } from './report.js'
import { betaTrust, FACT_WEIGHTS, validateScoreParams } from './score.js'
import type { EigenTrustParams } from './eigentrust.js'
import type { OpinionParams, WeighedClaim } from './opinion.js'
import type { Fact, FactInput, PeerState } from './records.js'
import type { Report, ReportClaim } from './report.js'
import type { ScoreParams } from './score.js'
import type { TabEvents } from './tabs.js'
import type { BrokenPromise, Evidence, Tab } from '../payments/seller/tab.js'
import type { SubDb } from '../store/index.js'

/** Reporters whose latest report is kept at most; beyond, the one with the least standing goes */
export const MAX_REPUTATION_REPORTERS = 1024

export interface ReputationOptions {
  /** peer ids trusted a priori (EigenTrust's p), e.g. bootstrap operators; this node is always one */
  pretrusted?: string[]
  score?: Partial<ScoreParams>
  eigentrust?: Partial<EigenTrustParams>
  opinion?: Partial<OpinionParams>
  /** how often this node publishes its report (ms) @default 10 minutes */
  reportInterval?: number
}

export interface ReputationInit extends ReputationOptions {
  /** `store.sub('reputation')` */
  db: SubDb
  /** this node's peer id */
  self: string
}

/** Why a peer has the trust it has (`decloud reputation PEER`) */
export interface TrustExplanation {
  peer: string
  /** the 0–1 trust the policy and seller choice use; undefined: nothing known */
  trust?: number
  /** first-hand: the beta state and its trust */
  local?: { trust: number, alpha: number, beta: number, facts: number, bad: number, updatedAt: number }
  /** share of the global trust vector (EigenTrust), 0–1 */
  global: number
  pretrusted: boolean
  /** the latest first-hand facts, newest first */
  facts: Fact[]
  /** what reporters said of it, with their weight */
  claims: Array<{ reporter: string, trust: number, facts: number, bad: number, weight: number, opinionTrust: number, global: number }>
}

/** Least time between two recomputations of the global vector (ms) */
export const REFRESH_INTERVAL = 1_000

/** The state of one reporter */
interface ReporterState {
  report: Report
  claims: Map<string, number>
  opinion: number
  compared: number
}

export class Reputation {
  readonly self: string
  readonly records: RecordStore
  readonly pretrusted: readonly string[]
  readonly reportInterval: number
  private readonly score: ScoreParams
  private readonly eigenParams: EigenTrustParams
  private readonly opinionParams: OpinionParams
  private readonly reporters = new Map<string, ReporterState>()
  /** claims about each peer: reporter → claimed trust */
  private readonly about = new Map<string, Map<string, number>>()
  private global = new Map<string, number>()
  /** standing of each reporter: global trust relative to the most trusted other peer, 0–1 */
  private standing = new Map<string, number>()
  private dirty = true
  private refreshedAt = -Infinity

  constructor (init: ReputationInit) {
    this.self = init.self
    this.score = validateScoreParams(init.score)
    this.eigenParams = validateEigenTrustParams(init.eigentrust)
    this.opinionParams = validateOpinionParams(init.opinion)
    const reportInterval = init.reportInterval ?? 10 * 60_000
    if (!Number.isSafeInteger(reportInterval) || reportInterval < 100) { throw new InvalidParametersError('reputation reportInterval must be an integer ≥ 100 ms') }
    this.reportInterval = reportInterval
    this.pretrusted = [...new Set([init.self, ...(init.pretrusted ?? [])])]
    this.records = new RecordStore({ db: init.db, params: this.score })
    this.records.onFact(() => { this.dirty = true })
  }

  private opened?: Promise<void>

  /** Loads the records (once) */
  async open (): Promise<void> {
    this.opened ??= this.records.load()
    await this.opened
  }

  /**
   * Records a first-hand fact about a peer (the API storage receipts and
   * audits use). Returns the fact, or undefined for a repeated `dedupe`.
   *
   * @example
   * ```ts
   * await reputation.record({ peer, role: 'seller', kind: 'audit-failed', value: -1, weight: 5, evidence: { receipt } })
   * ```
   */
  async record (input: FactInput): Promise<Fact | undefined> {
    return this.records.record(input)
  }

  /** This node's first-hand trust of a peer; undefined without facts */
  localTrust (peer: string): number | undefined {
    const s = this.records.state(peer)
    return s == null || s.facts === 0 ? undefined : betaTrust(s, this.score)
  }

  /**
   * The trust (0–1) of a peer: first-hand facts and the weighed claims of
   * reporters; undefined when nothing is known (a newcomer: no trust band
   * above 0 matches it). The policy's trust provider.
   */
  trust (peer: string): number | undefined {
    if (peer === this.self) { return undefined }
    this.refresh()
    return combinedTrust(this.records.state(peer), this.claimsAbout(peer), this.opinionParams, this.score)
  }

  /**
   * Gossipsub's application-specific score (P5, weight 1) of a peer: 0 for
   * a peer trusted at least halfway or not known at all (a newcomer is not
   * punished), down to −10 (gossipsub's default gossip threshold) at trust
   * 0: a peer that broke its promises stops receiving and giving gossip.
   */
  gossipScore (peer: string): number {
    const t = this.trust(peer)
    return t == null || t >= 0.5 ? 0 : -20 * (0.5 - t)
  }

  /** Global trust share of a peer (EigenTrust vector), 0 when unknown */
  globalTrust (peer: string): number {
    this.refresh()
    return this.global.get(peer) ?? 0
  }

  /** The opinion trust of a reporter (undefined: no report from it) */
  opinionTrust (reporter: string): number | undefined {
    this.refresh()
    return this.reporters.get(reporter)?.opinion
  }

  private claimsAbout (peer: string): WeighedClaim[] {
    const out: WeighedClaim[] = []
    for (const [reporter, value] of this.about.get(peer) ?? []) {
      if (reporter === peer) { continue }
      const r = this.reporters.get(reporter)
      if (r == null) { continue }
      out.push({ reporter, value, weight: r.opinion * (this.standing.get(reporter) ?? 0) })
    }
    return out
  }

  /** The latest report of each reporter */
  reports (): Report[] {
    return [...this.reporters.values()].map(r => r.report)
  }

  /** The last sequence number taken from `reporter` (0n: none) */
  seqOf (reporter: string): bigint {
    return this.reporters.get(reporter)?.report.seq ?? 0n
  }

  /**
   * Takes a verified report in place of its reporter's earlier one. Returns
   * false for a stale one (its seq not above the last) or one of this node.
   */
  accept (report: Report): boolean {
    if (report.reporter === this.self) { return false }
    const prev = this.reporters.get(report.reporter)
    if (prev != null && report.seq <= prev.report.seq) { return false }
    if (prev == null && this.reporters.size >= MAX_REPUTATION_REPORTERS) {
      // room for the newcomer only at the expense of a reporter with no standing at all
      this.refresh()
      const victim = [...this.reporters.keys()].find(r => (this.standing.get(r) ?? 0) === 0)
      if (victim == null) { return false }
      this.forget(victim)
    }
    if (prev != null) { this.forget(report.reporter) }
    const claims = new Map<string, number>()
    for (const c of report.claims) {
      claims.set(c.peer, c.trust)
      let m = this.about.get(c.peer)
      if (m == null) {
        m = new Map()
        this.about.set(c.peer, m)
      }
      m.set(report.reporter, c.trust)
    }
    this.reporters.set(report.reporter, { report, claims, opinion: this.opinionParams.neutral, compared: 0 })
    this.dirty = true
    return true
  }

  private forget (reporter: string): void {
    const r = this.reporters.get(reporter)
    if (r == null) { return }
    for (const peer of r.claims.keys()) {
      const m = this.about.get(peer)
      m?.delete(reporter)
      if (m?.size === 0) { this.about.delete(peer) }
    }
    this.reporters.delete(reporter)
  }

  /**
   * Recomputes opinion trust and the global vector when facts or reports
   * changed, at most once per `REFRESH_INTERVAL` unless `force`d: the trust
   * provider runs on the call path, and reports keep arriving. Our own
   * facts count at once whatever the interval (`trust` reads them live).
   */
  refresh (force = false): void {
    if (!this.dirty) { return }
    const now = Date.now()
    if (!force && now - this.refreshedAt < REFRESH_INTERVAL) { return }
    this.refreshedAt = now
    this.dirty = false
    const ours = this.records.states
    for (const r of this.reporters.values()) {
      const o = opinionTrust(r.claims, ours, this.opinionParams, this.score)
      r.opinion = o.trust
      r.compared = o.compared
    }
    const own = new Map<string, number>()
    for (const [peer, s] of ours) { if (s.facts > 0) { own.set(peer, betaTrust(s, this.score)) } }
    const rows = [{ from: this.self, trust: own }, ...[...this.reporters.values()].map(r => ({ from: r.report.reporter, trust: r.claims, weight: r.opinion }))]
    this.global = eigenTrust({ rows, pretrusted: this.pretrusted, previous: this.global, params: this.eigenParams }).trust
    let max = 0
    for (const [peer, t] of this.global) { if (peer !== this.self && t > max) { max = t } }
    const standing = new Map<string, number>()
    for (const reporter of this.reporters.keys()) {
      standing.set(reporter, max > 0 ? (this.global.get(reporter) ?? 0) / max : 0)
    }
    this.standing = standing
  }

  /** What this node reports: its first-hand trust of the peers it has most facts about (≤ 256) */
  ownClaims (): ReportClaim[] {
    const states: PeerState[] = [...this.records.states.values()].filter(s => s.facts > 0 && s.peer !== this.self)
    states.sort((a, b) => (b.alpha + b.beta) - (a.alpha + a.beta) || b.updatedAt - a.updatedAt)
    return states.slice(0, MAX_REPORT_ENTRIES).map(s => ({ peer: s.peer, trust: betaTrust(s, this.score), facts: s.facts, bad: s.bad }))
  }

  /** Why a peer has its trust */
  async explain (peer: string): Promise<TrustExplanation> {
    this.refresh(true)
    const s = this.records.state(peer)
    const claims = [...(this.about.get(peer) ?? [])].map(([reporter, trust]) => {
      const r = this.reporters.get(reporter)
      const claim = r?.report.claims.find(c => c.peer === peer)
      return {
        reporter,
        trust,
        facts: claim?.facts ?? 0,
        bad: claim?.bad ?? 0,
        opinionTrust: r?.opinion ?? 0,
        global: this.global.get(reporter) ?? 0,
        weight: (r?.opinion ?? 0) * (this.standing.get(reporter) ?? 0)
      }
    }).sort((a, b) => b.weight - a.weight)
    return {
      peer,
      trust: this.trust(peer),
      ...(s != null && s.facts > 0 ? { local: { trust: betaTrust(s, this.score), alpha: s.alpha, beta: s.beta, facts: s.facts, bad: s.bad, updatedAt: s.updatedAt } } : {}),
      global: this.global.get(peer) ?? 0,
      pretrusted: this.pretrusted.includes(peer),
      facts: await this.records.facts(peer, 20),
      claims
    }
  }

  /** Peers known (facts or claims), for listings */
  known (): string[] {
    return [...new Set([...this.records.states.keys(), ...this.about.keys()])].filter(p => p !== this.self)
  }

  /**
   * Tab events as facts: a tab paid in full is a promise kept by its payer,
   * a broken tab a promise broken (with the tab's record as evidence). The
   * payer is an OpenCloud ID (`oc:<peer id>`); other payers are skipped.
   */
  tabEvents (tabs?: { evidence(payer: string, deferId: string): AsyncIterable<Evidence> }): TabEvents {
    // the last signed promise of a broken tab: proof to anyone that the payer promised (not that it did not pay)
    const lastPromise = async (payer: string, deferId: string): Promise<Record<string, unknown> | undefined> => {
      if (tabs == null) { return undefined }
      let last: Evidence | undefined
      for await (const ev of tabs.evidence(payer, deferId)) { last = ev }
      return last == null ? undefined : { seq: last.seq, at: last.at, amount: last.amount.toString(), request: Buffer.from(last.request).toString('base64'), bodyHash: Buffer.from(last.bodyHash).toString('hex') }
    }
    const peerOf = (payer: string): string | undefined => payer.startsWith('oc:') ? payer.slice(3) : undefined
    const fail = (): void => {}
    return {
      settled: (tab: Tab) => {
        const peer = peerOf(tab.payer)
        if (peer == null || tab.accrued === 0n) { return }
        // paid late, after the tab was found broken: the broken fact stands, the payment earns nothing more
        const late = tab.brokenAt != null
        this.record({
          peer,
          role: 'buyer',
          kind: 'promise-kept',
          value: late ? 0 : 1,
          weight: FACT_WEIGHTS.promiseKept,
          dedupe: `tab/settled/${tab.payer}/${tab.deferId}`,
          evidence: { deferId: tab.deferId, accrued: tab.accrued.toString(), paid: tab.paid.toString(), threshold: tab.threshold, openedAt: tab.openedAt, settledAt: tab.settledAt, promises: tab.promises, late }
        }).catch(fail)
      },
      broken: (b: BrokenPromise) => {
        const peer = peerOf(b.payer)
        if (peer == null) { return }
        lastPromise(b.payer, b.deferId).catch(() => undefined).then(async promise => this.record({
          peer,
          role: 'buyer',
          kind: 'promise-broken',
          value: -1,
          weight: FACT_WEIGHTS.promiseBroken,
          dedupe: `tab/broken/${b.payer}/${b.deferId}`,
          evidence: { deferId: b.deferId, owed: b.owed.toString(), accrued: b.accrued.toString(), paid: b.paid.toString(), threshold: b.threshold, dueAt: b.dueAt, brokenAt: b.brokenAt, promises: b.promises, ...(promise != null ? { promise } : {}) }
        })).catch(fail)
      }
    }
  }
}
