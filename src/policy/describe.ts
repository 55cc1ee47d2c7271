/**
 * Scopes and commands as text: the canonical key equal scopes share, and
 * the wording `explain` and refusals show.
 */
import type { MinPayment, RateLimit, Rule, Scope } from './types.js'

/**
 * A `btc:` address as compared: bech32 addresses are case-insensitive and
 * compared in lower case; base58 ones are kept as they are.
 */
export function normalizeAddress (credential: string): string {
  const addr = credential.startsWith('btc:') ? credential.slice(4) : credential
  const lower = addr.toLowerCase()
  const bech32 = /^(bc|tb|bcrt|rb)1[02-9ac-hj-np-z]+$/.test(lower) && (addr === lower || addr === addr.toUpperCase())
  return 'btc:' + (bech32 ? lower : addr)
}

/** The canonical text of a scope: equal scopes, equal keys */
export function scopeKey (s: Scope): string {
  const parts: string[] = []
  if (s.method !== undefined) { parts.push(`method=${s.method}`) }
  if (s.service !== undefined) { parts.push(`service=${s.service}`) }
  if (s.id !== undefined) { parts.push(`id=${s.id}`) }
  if (s.address !== undefined) { parts.push(`address=${normalizeAddress(s.address)}`) }
  if (s.bitcoin !== undefined) { parts.push(`bitcoin>=${s.bitcoin.minBalance}/${s.bitcoin.minAge ?? 0}`) }
  if (s.trust !== undefined) { parts.push(`trust=${s.trust.min}..${s.trust.max ?? ''}`) }
  return parts.length === 0 ? 'global' : parts.join(',')
}

/** A scope as people read it: `global`, `service storage, bitcoin ≥ 100000 sat held ≥ 6 blocks` */
export function describeScope (s: Scope): string {
  const parts: string[] = []
  if (s.method !== undefined) { parts.push(`method ${s.method}`) }
  if (s.service !== undefined) { parts.push(`service ${s.service}`) }
  if (s.id !== undefined) { parts.push(`id ${s.id}`) }
  if (s.address !== undefined) { parts.push(`address ${s.address}`) }
  if (s.bitcoin !== undefined) { parts.push(`bitcoin ≥ ${s.bitcoin.minBalance} sat held ≥ ${s.bitcoin.minAge ?? 0} blocks`) }
  if (s.trust !== undefined) { parts.push(s.trust.max !== undefined ? `trust ${s.trust.min}–${s.trust.max}` : `trust ≥ ${s.trust.min}`) }
  return parts.length === 0 ? 'global' : parts.join(', ')
}

/** A rule's commands as people read them */
export function describeCommands (r: Rule): string {
  const out: string[] = []
  if (r.allow === true) { out.push('allow') }
  if (r.deny === true) { out.push('deny') }
  if (r.requireCredential !== undefined) { out.push(`require-credential ${r.requireCredential}`) }
  if (r.minBalance !== undefined || r.minAge !== undefined) { out.push(`needs btc ≥ ${r.minBalance ?? 0n} sat held ≥ ${r.minAge ?? 0} blocks`) }
  if (r.minPayment !== undefined) { out.push(`min-payment ${describeMinPayment(r.minPayment)}`) }
  if (r.rateLimit !== undefined) { out.push(`rate-limit ${describeRateLimit(r.rateLimit)}`) }
  if (r.maxConcurrent !== undefined) { out.push(`max-concurrent ${r.maxConcurrent}`) }
  if (r.defer !== undefined) { out.push(`defer ${r.defer}`) }
  if (r.maxTab !== undefined) { out.push(`max-tab ${r.maxTab} sat`) }
  return out.join(', ')
}

export function describeMinPayment (m: bigint | MinPayment): string {
  if (typeof m === 'bigint') { return `${m} sat per unit` }
  const parts: string[] = []
  if ((m.base ?? 0n) > 0n) { parts.push(`${m.base} sat per call`) }
  if ((m.rate ?? 0n) > 0n) { parts.push((m.per ?? 1n) === 1n ? `${m.rate} sat per unit` : `${m.rate} sat per ${m.per} units`) }
  return parts.length === 0 ? '0 sat' : parts.join(' + ')
}

export function describeRateLimit (l: RateLimit): string {
  const parts: string[] = []
  if (l.requests !== undefined) { parts.push(`${l.requests} requests/s (burst ${l.requestBurst ?? Math.max(1, l.requests)})`) }
  if (l.bytes !== undefined) { parts.push(`${l.bytes} bytes/s (burst ${l.byteBurst ?? l.bytes})`) }
  return parts.join(', ')
}
