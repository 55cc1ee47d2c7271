/**
 * A tab of deferred payments as data: its thresholds, its status at a given
 * time, what the `payments.tab` method shows of it, and the check that a
 * promise's evidence still carries its payer's signature. Pure: the store
 * that keeps tabs (and their locks, indexes and sweep) is `tabs.ts`.
 */
import { MAX_AMOUNT } from '../../protocols/opencloud/api/pricing.js'
import { OPENCLOUD_ID_PREFIX, openCloudVerifier, requestDigest, verifyAll } from '../../protocols/opencloud/api/signing.js'
import { Request } from '../../protocols/opencloud/pb/opencloud.js'
import type { CredentialVerifier } from '../../protocols/opencloud/api/signing.js'

/** When a deferred payment falls due (spec "defer-threshold") */
export type Threshold =
  | { kind: 'time', seconds: number }
  | { kind: 'value', sats: bigint }
  | { kind: 'completion' }

/** The threshold of a tab whose first promise named none */
export const DEFAULT_THRESHOLD = 'time:3600'
/** The accepted forms, for error messages */
export const THRESHOLD_FORMS = '"time:<seconds>" (due that long after the tab opened), "value:<sats>" (due once that much is owed) or "completion" (due once the service was delivered)'
/** Longest time threshold: one year */
export const MAX_THRESHOLD_SECONDS = 365 * 24 * 3600

/** A defer id: what the wire's `defer_id` may hold */
export const DEFER_ID = /^[A-Za-z0-9._:-]{1,64}$/

export class InvalidThresholdError extends Error {
  static override name = 'InvalidThresholdError'
  override name = 'InvalidThresholdError'
}

/**
 * Parses a wire `defer_threshold`. Empty means the default
 * (`time:3600`); anything else not in the accepted forms throws
 * InvalidThresholdError, whose message names them.
 *
 * @example
 * ```ts
 * parseThreshold('value:5000') // → { kind: 'value', sats: 5000n }
 * parseThreshold('')           // → { kind: 'time', seconds: 3600 }
 * ```
 */
export function parseThreshold (s: string): Threshold {
  if (s === '') { return parseThreshold(DEFAULT_THRESHOLD) }
  if (s === 'completion') { return { kind: 'completion' } }
  let m = /^time:(\d{1,10})$/.exec(s)
  if (m != null) {
    const seconds = Number(m[1])
    if (seconds < 1 || seconds > MAX_THRESHOLD_SECONDS) { throw new InvalidThresholdError(`defer-threshold time must be 1 to ${MAX_THRESHOLD_SECONDS} seconds`) }
    return { kind: 'time', seconds }
  }
  m = /^value:(\d{1,20})$/.exec(s)
  if (m != null) {
    const sats = BigInt(m[1])
    if (sats < 1n || sats > MAX_AMOUNT) { throw new InvalidThresholdError(`defer-threshold value must be 1 to ${MAX_AMOUNT} sat`) }
    return { kind: 'value', sats }
  }
  throw new InvalidThresholdError(`defer-threshold "${s.slice(0, 64)}" is not understood; use ${THRESHOLD_FORMS}, or leave it empty for ${DEFAULT_THRESHOLD}`)
}

export function formatThreshold (t: Threshold): string {
  switch (t.kind) {
    case 'time': return `time:${t.seconds}`
    case 'value': return `value:${t.sats}`
    default: return 'completion'
  }
}

export type TabStatus = 'open' | 'due' | 'settled' | 'broken'

export interface Tab {
  payer: string
  deferId: string
  /** sats promised */
  accrued: bigint
  /** sats paid (attached payments naming the defer id) */
  paid: bigint
  /** canonical defer-threshold */
  threshold: string
  /** ms since the epoch */
  openedAt: number
  /** when payment is (or was) due; undefined while a value threshold is not reached */
  dueAt?: number
  /** the latest the tab falls due, whatever its threshold (opened + max tab age) */
  latestDue: number
  /** promises accepted */
  promises: number
  /** evidence records dropped (oldest first) to keep the tab bounded */
  evidenceDropped: number
  /** promises taken back because their call failed (`withdraw`) */
  withdrawn?: number
  /** payments credited */
  payments: number
  /** stored status: `open`, `settled` or `broken` (`due` is derived, see `statusAt`) */
  status: TabStatus
  settledAt?: number
  brokenAt?: number
  updatedAt: number
}

/** A tab as the `payments.tab` method answers it (JSON) */
export interface TabView {
  deferId: string
  accrued: string
  paid: string
  owed: string
  threshold: string
  openedAt: string
  due?: string
  latestDue: string
  status: TabStatus
  promises: number
  payments: number
}

/** What an overdue tab leaves behind: read by reputation */
export interface BrokenPromise {
  payer: string
  deferId: string
  /** sats owed when the tab was found broken */
  owed: bigint
  accrued: bigint
  paid: bigint
  threshold: string
  dueAt: number
  brokenAt: number
  promises: number
  /** set when the payer paid in full after all (late) */
  settledAt?: number
}

/** One accepted promise: the signed request, body removed, and the body's hash */
export interface Evidence {
  seq: number
  at: number
  amount: bigint
  /** protobuf Request with `body` empty; `sig` kept */
  request: Uint8Array
  /** SHA-256 of the original body */
  bodyHash: Uint8Array
}

export function owedOf (tab: Pick<Tab, 'accrued' | 'paid'>): bigint {
  return tab.accrued > tab.paid ? tab.accrued - tab.paid : 0n
}

/** When the tab falls due: its threshold's time, or its latest due time if sooner */
export function dueTime (tab: Pick<Tab, 'dueAt' | 'latestDue'>): number {
  return tab.dueAt != null && tab.dueAt < tab.latestDue ? tab.dueAt : tab.latestDue
}

/** The status at time `now`: an open tab that owes and whose due time passed is `due` */
export function statusAt (tab: Tab, now: number): TabStatus {
  if (tab.status === 'open' && dueTime(tab) <= now && owedOf(tab) > 0n) { return 'due' }
  return tab.status
}

export function tabView (tab: Tab, now = Date.now()): TabView {
  return {
    deferId: tab.deferId,
    accrued: tab.accrued.toString(),
    paid: tab.paid.toString(),
    owed: owedOf(tab).toString(),
    threshold: tab.threshold,
    openedAt: new Date(tab.openedAt).toISOString(),
    ...(tab.dueAt != null ? { due: new Date(tab.dueAt).toISOString() } : {}),
    latestDue: new Date(tab.latestDue).toISOString(),
    status: statusAt(tab, now),
    promises: tab.promises,
    payments: tab.payments
  }
}

/**
 * Checks that an evidence record still carries a valid signature of its
 * payer: the request's digest is recomputed from the stored request and
 * body hash, then the signature of its OpenCloud ID (the payer, `payer`
 * when given) is verified. With `verifiers`, every credential of the
 * request must verify instead (e.g. with the `btc:` verifier as well).
 */
export async function verifyEvidence (ev: Evidence, options: { payer?: string, verifiers?: readonly CredentialVerifier[] } = {}): Promise<boolean> {
  let req: Request
  try {
    req = Request.decode(ev.request)
  } catch {
    return false
  }
  if (req.id.length === 0 || req.id.length !== req.sig.length) { return false }
  const digest = requestDigest(req, ev.bodyHash)
  if (options.verifiers != null) { return await verifyAll(options.verifiers, req.id, req.sig, digest) < 0 }
  const i = req.id.findIndex(c => c.startsWith(OPENCLOUD_ID_PREFIX))
  if (i < 0 || (options.payer != null && req.id[i] !== options.payer)) { return false }
  return openCloudVerifier.verify(req.id[i], digest, req.sig[i])
}
