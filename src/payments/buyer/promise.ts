/**
 * One deferred promise as the buyer keeps it (see `promises.ts` for its
 * states), its stored form, and when it falls due.
 */
import type { Threshold } from '../seller/tabs.js'

export type PromiseState = 'open' | 'paying' | 'settled'

/** A payment built for a promise, persisted before it leaves this node */
export interface PendingPayment {
  txid: string
  raw: Uint8Array
  amount: bigint
  address: string
  /** ms since the epoch */
  at: number
}

export interface DeferredPromise {
  /** the seller's peer id */
  seller: string
  deferId: string
  /** how to reach the seller: a multiaddr with /p2p/, or the peer id */
  target: string
  /** sats promised on calls the seller answered ok */
  promised: bigint
  /**
   * sats promised on calls that reached the seller but did not answer ok:
   * the seller may or may not have counted them
   */
  uncertain: bigint
  paid: bigint
  /** canonical defer-threshold */
  threshold: string
  openedAt: number
  /** when payment falls due; undefined while a value threshold is not reached */
  dueAt?: number
  /** the latest it falls due, whatever the threshold (sellers' default maximum tab age) */
  latestDue?: number
  promises: number
  state: PromiseState
  payment?: PendingPayment
  /** txids of payments made for it */
  txids: string[]
  settledAt?: number
  /** what went wrong the last time the loop tried to pay it */
  lastError?: string
  updatedAt: number
}

export interface RecordInput {
  seller: string
  target: string
  deferId: string
  amount: bigint
  threshold?: string
  /** false when the call did not answer ok (the seller may not count it) @default true */
  certain?: boolean
  now?: number
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function encodePromise (p: DeferredPromise): Uint8Array {
  return enc.encode(JSON.stringify({
    ...p,
    promised: p.promised.toString(),
    uncertain: p.uncertain.toString(),
    paid: p.paid.toString(),
    payment: p.payment == null ? undefined : { ...p.payment, raw: Buffer.from(p.payment.raw).toString('base64'), amount: p.payment.amount.toString() }
  }))
}

export function decodePromise (bytes: Uint8Array): DeferredPromise {
  const o = JSON.parse(dec.decode(bytes))
  return {
    ...o,
    promised: BigInt(o.promised),
    uncertain: BigInt(o.uncertain),
    paid: BigInt(o.paid),
    payment: o.payment == null ? undefined : { ...o.payment, raw: new Uint8Array(Buffer.from(o.payment.raw, 'base64')), amount: BigInt(o.payment.amount) }
  }
}

/** sats surely owed: promised on ok calls, less what was paid */
export function owedOn (p: DeferredPromise): bigint {
  return p.promised > p.paid ? p.promised - p.paid : 0n
}

/** True when the promise should be paid at `now` (`lead` ms early for time thresholds) */
export function isDue (p: DeferredPromise, now: number, lead = 0): boolean {
  if (p.state === 'paying') { return true }
  // what may be owed: uncertain promises are settled (or closed) with the seller's tab
  if (p.state !== 'open' || owedOn(p) + p.uncertain === 0n) { return false }
  const due = Math.min(p.dueAt ?? Infinity, p.latestDue ?? Infinity)
  return due - lead <= now
}

/** True when a promise under threshold `t` is due as soon as it is recorded */
export function dueNow (t: Threshold, p: DeferredPromise): boolean {
  return t.kind === 'completion' || (t.kind === 'value' && owedOn(p) + p.uncertain >= t.sats)
}
