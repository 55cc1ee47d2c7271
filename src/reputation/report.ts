/**
 * Signed reputation reports: a reporter's local trust of up to 256 peers,
 * signed by the reporter's key over a domain-separated encoding (like the
 * market's price announcements), published on `/decloud/reputation/1`.
 */
import '../util/uint64.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { ReputationReport, SignedReputationReport } from './pb/reputation.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

/** The gossipsub topic of reputation reports */
export const REPUTATION_TOPIC = '/decloud/reputation/1'
/** Signatures cover this string followed by the encoded report */
export const REPORT_DOMAIN = 'decloud/reputation/1 report\n'
/** Most entries in one report */
export const MAX_REPORT_ENTRIES = 256
/** Largest encoded SignedReputationReport accepted (256 entries of ~50 bytes, with room) */
export const MAX_REPORT_SIZE = 16 * 1024
/** How far in the future a report's issue time may lie (clock skew, ms) */
export const MAX_CLOCK_SKEW = 2 * 60_000
/** Reports older than this are rejected (ms) */
export const MAX_REPORT_AGE = 7 * 24 * 3600_000
/** Trust on the wire is in units of 1/TRUST_SCALE */
export const TRUST_SCALE = 10_000
const MAX_PEER_BYTES = 64

const domainBytes = new TextEncoder().encode(REPORT_DOMAIN)

/** One claim of a report */
export interface ReportClaim {
  peer: string
  /** 0–1 */
  trust: number
  facts: number
  bad: number
}

/** A verified report as the application sees it */
export interface Report {
  reporter: string
  issued: number
  seq: bigint
  claims: ReportClaim[]
}

export type ReportVerdict =
  | { ok: true, report: Report, bytes: Uint8Array }
  /** `reject`: provably bad (forged, malformed, oversized): gossipsub scores the sender down */
  | { ok: false, action: 'reject' | 'ignore', reason: string }

function signingInput (report: Uint8Array): Uint8Array {
  const out = new Uint8Array(domainBytes.byteLength + report.byteLength)
  out.set(domainBytes, 0)
  out.set(report, domainBytes.byteLength)
  return out
}

function peerBytes (id: string): Uint8Array<ArrayBuffer> {
  return peerIdFromString(id).toMultihash().bytes as Uint8Array<ArrayBuffer>
}

function peerOf (bytes: Uint8Array): PeerId {
  return peerIdFromString(uint8ArrayToString(bytes, 'base58btc'))
}

/** Encodes and signs a report (claims beyond MAX_REPORT_ENTRIES are dropped); returns the bytes to publish */
export async function signReport (key: PrivateKey, reporter: PeerId, r: { issued: number, seq: bigint, claims: readonly ReportClaim[] }): Promise<Uint8Array> {
  const report = ReputationReport.encode({
    reporter: reporter.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    issued: BigInt(r.issued),
    seq: r.seq,
    entries: r.claims.slice(0, MAX_REPORT_ENTRIES).map(c => ({
      peer: peerBytes(c.peer),
      trust: Math.round(Math.min(1, Math.max(0, c.trust)) * TRUST_SCALE),
      facts: Math.min(0xffffffff, Math.max(0, Math.round(c.facts))),
      bad: Math.min(0xffffffff, Math.max(0, Math.round(c.bad)))
    }))
  })
  const signature = await key.sign(signingInput(report))
  return SignedReputationReport.encode({ report, signature: signature as Uint8Array<ArrayBuffer> })
}

/**
 * Decodes and checks a report: size, entry count, shape, the signature by
 * the reporter, `from` (the gossip message's signer, when given) being the
 * reporter, issue time. Sequence numbers are the report book's business.
 */
export async function verifyReport (bytes: Uint8Array, options: { now?: number, from?: PeerId } = {}): Promise<ReportVerdict> {
  const now = options.now ?? Date.now()
  if (bytes.byteLength > MAX_REPORT_SIZE) { return { ok: false, action: 'reject', reason: `oversized (${bytes.byteLength} > ${MAX_REPORT_SIZE} bytes)` } }
  let signed: SignedReputationReport
  let rr: ReputationReport
  try {
    signed = SignedReputationReport.decode(bytes)
    // one entry more than allowed is enough to know the report is over the limit
    rr = ReputationReport.decode(signed.report, { limits: { entries: MAX_REPORT_ENTRIES + 1 } })
  } catch (err: any) {
    return { ok: false, action: 'reject', reason: `malformed: ${String(err.message).slice(0, 100)}` }
  }
  if (rr.entries.length > MAX_REPORT_ENTRIES) { return { ok: false, action: 'reject', reason: `more than ${MAX_REPORT_ENTRIES} entries` } }
  let reporter: PeerId
  try {
    reporter = peerOf(rr.reporter)
  } catch {
    return { ok: false, action: 'reject', reason: 'invalid reporter id' }
  }
  if (reporter.publicKey == null) { return { ok: false, action: 'reject', reason: 'the reporter id does not embed its public key' } }
  if (options.from != null && !options.from.equals(reporter)) { return { ok: false, action: 'reject', reason: 'the gossip message was not signed by the reporter' } }
  let valid = false
  try {
    valid = await reporter.publicKey.verify(signingInput(signed.report), signed.signature)
  } catch {}
  if (!valid) { return { ok: false, action: 'reject', reason: 'invalid signature' } }
  const issued = Number(rr.issued)
  if (issued > now + MAX_CLOCK_SKEW) { return { ok: false, action: 'reject', reason: 'issued in the future' } }
  if (issued < now - MAX_REPORT_AGE) { return { ok: false, action: 'ignore', reason: 'too old' } }
  const self = reporter.toString()
  const seen = new Set<string>()
  const claims: ReportClaim[] = []
  for (const e of rr.entries) {
    if (e.peer.byteLength > MAX_PEER_BYTES || e.trust > TRUST_SCALE) { return { ok: false, action: 'reject', reason: 'entry out of range' } }
    let peer: string
    try {
      peer = peerOf(e.peer).toString()
    } catch {
      return { ok: false, action: 'reject', reason: 'invalid peer id in an entry' }
    }
    if (seen.has(peer)) { return { ok: false, action: 'reject', reason: 'a peer listed twice' } }
    seen.add(peer)
    // what a reporter says of itself is no opinion of another
    if (peer === self) { continue }
    claims.push({ peer, trust: e.trust / TRUST_SCALE, facts: e.facts, bad: e.bad })
  }
  return { ok: true, bytes, report: { reporter: self, issued, seq: rr.seq, claims } }
}
