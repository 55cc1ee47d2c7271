import '../util/uint64.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { NAME } from '../util/names.js'
import { PriceAnnouncement, SignedPriceAnnouncement } from './pb/market.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

/** The gossipsub topic of price announcements */
export const MARKET_TOPIC = '/decloud/market/1'
/** Signatures cover this string followed by the encoded announcement */
export const ANNOUNCEMENT_DOMAIN = 'decloud/market/1 price-announcement\n'
/** Largest encoded SignedPriceAnnouncement accepted */
export const MAX_ANNOUNCEMENT_SIZE = 2048
/** Longest validity an announcement may claim (ms) */
export const MAX_VALIDITY = 24 * 60 * 60_000
/** How far in the future an announcement's issue time may lie (clock skew, ms) */
export const MAX_CLOCK_SKEW = 2 * 60_000
/**
 * An announcement that expired less than this long ago is ignored without
 * blame (it may just have been slow); older ones are rejected (ms)
 */
export const EXPIRY_GRACE = 60_000
/** as many unit dimensions as a service method may have (MAX_UNIT_DIMENSIONS) */
export const MAX_UNITS = 8
export const MAX_ADDRS = 8
const MAX_ADDR_BYTES = 128
const VERSION = /^[0-9A-Za-z.+-]{1,32}$/
const UINT64_MAX = (1n << 64n) - 1n

const domainBytes = new TextEncoder().encode(ANNOUNCEMENT_DOMAIN)

/** An announcement as the application sees it */
export interface Announcement {
  peer: PeerId
  service: string
  version: string
  method: string
  units: string[]
  currency: string
  base: bigint
  rate: bigint
  per: bigint
  capacity: bigint
  issued: number
  validUntil: number
  seq: bigint
  addrs: string[]
  withdrawn: boolean
}

export type Verdict =
  | { ok: true, announcement: Announcement, signed: SignedPriceAnnouncement }
  /** `reject`: provably bad (forged, malformed, long expired): the sender is scored down. `ignore`: not useful (e.g. just expired) */
  | { ok: false, action: 'reject' | 'ignore', reason: string }

function signingInput (announcement: Uint8Array): Uint8Array {
  const out = new Uint8Array(domainBytes.byteLength + announcement.byteLength)
  out.set(domainBytes, 0)
  out.set(announcement, domainBytes.byteLength)
  return out
}

export type AnnouncementFields = Omit<Announcement, 'peer' | 'addrs' | 'withdrawn' | 'currency' | 'version' | 'units' | 'capacity'> & Partial<Pick<Announcement, 'addrs' | 'withdrawn' | 'currency' | 'version' | 'units' | 'capacity'>>

/** Encodes and signs an announcement with the seller's key; returns the bytes to publish */
export async function signAnnouncement (key: PrivateKey, peer: PeerId, a: AnnouncementFields): Promise<Uint8Array> {
  const announcement = PriceAnnouncement.encode({
    peer: peer.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    service: a.service,
    version: a.version ?? '1.0.0',
    method: a.method,
    units: a.units ?? [],
    currency: a.currency ?? 'BTC',
    base: a.base,
    rate: a.rate,
    per: a.per,
    capacity: a.capacity ?? 0n,
    issued: BigInt(a.issued),
    validUntil: BigInt(a.validUntil),
    seq: a.seq,
    addrs: (a.addrs ?? []).slice(0, MAX_ADDRS).map(s => multiaddr(s).bytes as Uint8Array<ArrayBuffer>).filter(b => b.byteLength <= MAX_ADDR_BYTES),
    withdrawn: a.withdrawn ?? false
  })
  const signature = await key.sign(signingInput(announcement))
  return SignedPriceAnnouncement.encode({ announcement, signature: signature as Uint8Array<ArrayBuffer> })
}

/**
 * Decodes and checks an announcement: size, shape, the signature by the
 * announcement's own peer, `from` (the gossip message's signer, when given)
 * being that peer, issue time and expiry. Sequence numbers are the price
 * book's business (they need its state).
 */
export async function verifyAnnouncement (bytes: Uint8Array, options: { now?: number, from?: PeerId } = {}): Promise<Verdict> {
  const now = options.now ?? Date.now()
  if (bytes.byteLength > MAX_ANNOUNCEMENT_SIZE) { return { ok: false, action: 'reject', reason: `oversized (${bytes.byteLength} > ${MAX_ANNOUNCEMENT_SIZE} bytes)` } }
  let signed: SignedPriceAnnouncement
  let pa: PriceAnnouncement
  try {
    signed = SignedPriceAnnouncement.decode(bytes)
    pa = PriceAnnouncement.decode(signed.announcement, { limits: { units: MAX_UNITS, addrs: MAX_ADDRS } })
  } catch (err: any) {
    return { ok: false, action: 'reject', reason: `malformed: ${err.message}` }
  }
  if (!NAME.test(pa.service) || !NAME.test(pa.method)) { return { ok: false, action: 'reject', reason: 'invalid service or method name' } }
  if (!VERSION.test(pa.version)) { return { ok: false, action: 'reject', reason: 'invalid version' } }
  if (pa.currency !== 'BTC') { return { ok: false, action: 'reject', reason: `unknown currency "${pa.currency}"` } }
  if (!pa.units.every(u => NAME.test(u))) { return { ok: false, action: 'reject', reason: 'invalid unit name' } }
  if (pa.per === 0n) { return { ok: false, action: 'reject', reason: 'per must be positive' } }
  if (pa.base > UINT64_MAX || pa.rate > UINT64_MAX) { return { ok: false, action: 'reject', reason: 'price out of range' } }
  let peer: PeerId
  try {
    peer = peerIdFromString(uint8ArrayToString(pa.peer, 'base58btc'))
  } catch {
    return { ok: false, action: 'reject', reason: 'invalid peer id' }
  }
  if (peer.publicKey == null) { return { ok: false, action: 'reject', reason: 'the peer id does not embed its public key' } }
  if (options.from != null && !options.from.equals(peer)) { return { ok: false, action: 'reject', reason: 'the gossip message was not signed by the announcing peer' } }
  let valid = false
  try {
    valid = await peer.publicKey.verify(signingInput(signed.announcement), signed.signature)
  } catch {}
  if (!valid) { return { ok: false, action: 'reject', reason: 'invalid signature' } }
  const issued = Number(pa.issued)
  const validUntil = Number(pa.validUntil)
  if (issued > now + MAX_CLOCK_SKEW) { return { ok: false, action: 'reject', reason: 'issued in the future' } }
  if (validUntil < issued || validUntil - issued > MAX_VALIDITY) { return { ok: false, action: 'reject', reason: 'validity out of range' } }
  if (validUntil <= now) {
    return now - validUntil > EXPIRY_GRACE
      ? { ok: false, action: 'reject', reason: 'expired' }
      : { ok: false, action: 'ignore', reason: 'just expired' }
  }
  const addrs: string[] = []
  for (const b of pa.addrs) {
    if (b.byteLength > MAX_ADDR_BYTES) { continue }
    try {
      addrs.push(multiaddr(b).toString())
    } catch {}
  }
  return {
    ok: true,
    signed,
    announcement: {
      peer,
      service: pa.service,
      version: pa.version,
      method: pa.method,
      units: pa.units,
      currency: pa.currency,
      base: pa.base,
      rate: pa.rate,
      per: pa.per,
      capacity: pa.capacity,
      issued,
      validUntil,
      seq: pa.seq,
      addrs,
      withdrawn: pa.withdrawn
    }
  }
}
