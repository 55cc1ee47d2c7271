/**
 * Call outcomes as facts about the seller (the buyer's side of the spec's
 * "promises of a level of service against the service received"): a paid
 * call answered OK is a small kept promise, a server error or no answer at
 * all a broken one. A refused payment or an error of the buyer's own
 * (funds, chain) says nothing about the seller and records nothing.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { FACT_WEIGHTS } from './score.js'
import type { FactInput } from './records.js'
import type { CallResult, CallTarget } from '../protocols/opencloud/net/client.js'

/** Errors that are about the payment or the buyer, not the seller's service */
const NOT_THE_SELLER = new Set(['PaymentRefusedError', 'InsufficientFundsError', 'TxRejectedError', 'ChainUnavailableError', 'ChainUnsupportedError', 'AbortError', 'UnsupportedOperationError', 'InvalidParametersError', 'RangeError', 'TypeError'])

/** The peer id a call target names, when it names one */
export function targetPeer (target: CallTarget): string | undefined {
  const fromAddr = (a: string): string | undefined => {
    const m = /\/p2p\/([A-Za-z0-9]+)$/.exec(a)
    return m == null ? undefined : peerIdFromString(m[1]).toString()
  }
  try {
    if (typeof target === 'string') { return target.startsWith('/') ? fromAddr(multiaddr(target).toString()) : peerIdFromString(target).toString() }
    if (isMultiaddr(target)) { return fromAddr(target.toString()) }
    return target.toString()
  } catch {
    return undefined
  }
}

/** The fact a finished call leaves about its seller, if any */
export function callFact (call: { service: string, method: string }, outcome: { result: CallResult, ms: number } | { error: any, target: CallTarget, ms: number }): FactInput | undefined {
  if ('result' in outcome) {
    const r = outcome.result
    const peer = r.peer.toString()
    const base = { service: call.service, method: call.method, status: r.path, ms: Math.round(outcome.ms) }
    if (r.status === Status.OK) {
      const bytesPerSecond = outcome.ms > 0 ? Math.round(r.body.byteLength * 1000 / outcome.ms) : undefined
      return { peer, role: 'seller', kind: 'call-served', value: 1, weight: FACT_WEIGHTS.callServed, evidence: { ...base, bytes: r.body.byteLength, ...(bytesPerSecond != null ? { bytesPerSecond } : {}) } }
    }
    if (r.status === Status.SERVER_ERROR) {
      return { peer, role: 'seller', kind: 'call-failed', value: -1, weight: FACT_WEIGHTS.callFailed, evidence: { ...base, detail: r.detail.slice(0, 200) } }
    }
    return undefined
  }
  const name = String(outcome.error?.name ?? '')
  if (NOT_THE_SELLER.has(name)) { return undefined }
  const peer = targetPeer(outcome.target)
  if (peer == null) { return undefined }
  return { peer, role: 'seller', kind: 'call-failed', value: -1, weight: FACT_WEIGHTS.callFailed / 2, evidence: { service: call.service, method: call.method, error: `${name}: ${String(outcome.error?.message ?? '')}`.slice(0, 200), ms: Math.round(outcome.ms) } }
}
