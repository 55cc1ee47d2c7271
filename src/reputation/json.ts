/**
 * What `decloud reputation` and `GET /v1/reputation` show: one peer's
 * trust and why, or the peers this node knows and the reporters it heard.
 */
import type { Reputation, TrustExplanation } from './model.js'

/** Peers listed at most without a peer named */
export const MAX_LISTED = 256

export interface ReputationListJson {
  self: string
  pretrusted: readonly string[]
  /** most trusted first */
  peers: Array<{ peer: string, trust?: number, local?: number, global: number, facts: number, bad: number }>
  /** reporters heard, with how far their opinions are followed */
  reporters: Array<{ reporter: string, opinionTrust: number, global: number, claims: number, issued: number }>
}

export type ReputationJson = ReputationListJson | TrustExplanation

export async function reputationJson (rep: Reputation, peer?: string): Promise<ReputationJson> {
  if (peer != null) { return rep.explain(peer) }
  rep.refresh(true)
  const peers = rep.known().map(p => {
    const s = rep.records.state(p)
    const local = rep.localTrust(p)
    const trust = rep.trust(p)
    return { peer: p, ...(trust != null ? { trust } : {}), ...(local != null ? { local } : {}), global: rep.globalTrust(p), facts: s?.facts ?? 0, bad: s?.bad ?? 0 }
  }).sort((a, b) => (b.trust ?? -1) - (a.trust ?? -1) || b.facts - a.facts).slice(0, MAX_LISTED)
  const reporters = rep.reports().map(r => ({ reporter: r.reporter, opinionTrust: rep.opinionTrust(r.reporter) ?? 0, global: rep.globalTrust(r.reporter), claims: r.claims.length, issued: r.issued }))
    .sort((a, b) => b.global - a.global).slice(0, MAX_LISTED)
  return { self: rep.self, pretrusted: rep.pretrusted, peers, reporters }
}
