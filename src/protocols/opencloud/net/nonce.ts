import { randomBytes } from 'node:crypto'
import { MAX_NONCE_PEERS, MAX_NONCES_PER_PEER, NONCE_LENGTH, NONCE_TTL } from '../api/constants.js'

/** Nonces drawn from the CSPRNG per call: one call per 256 nonces instead of one each */
const POOL_SIZE = 256 * NONCE_LENGTH

/** The map key of a nonce: its bytes as a latin1 string, without a copy */
function keyOf (nonce: Uint8Array): string {
  return Buffer.from(nonce.buffer, nonce.byteOffset, nonce.byteLength).toString('latin1')
}

export interface NonceStoreInit {
  /** @default 300_000 */
  ttl?: number
  /** @default 64 */
  maxPerPeer?: number
  /** @default 10_000 */
  maxPeers?: number
  /** clock, for tests */
  now?(): number
}

/**
 * Server-issued, single-use nonces bound to the peer they were issued to.
 * Memory is bounded: at most `maxPerPeer` outstanding nonces per peer (the
 * oldest is dropped first) and `maxPeers` peers (the least recently served
 * peer is dropped first). A dropped or expired nonce simply earns the client
 * a refresh-nonce, never a second service of the same request.
 */
export class NonceStore {
  private readonly ttl: number
  private readonly maxPerPeer: number
  private readonly maxPeers: number
  private readonly now: () => number
  /** peer → (nonce bytes as latin1 → expiry); Map iteration order is insertion order */
  private readonly peers = new Map<string, Map<string, number>>()
  private pool: Uint8Array = new Uint8Array(0)
  private poolAt = 0

  constructor (init: NonceStoreInit = {}) {
    this.ttl = init.ttl ?? NONCE_TTL
    this.maxPerPeer = init.maxPerPeer ?? MAX_NONCES_PER_PEER
    this.maxPeers = init.maxPeers ?? MAX_NONCE_PEERS
    this.now = init.now ?? Date.now
  }

  /** Issues a fresh nonce for `peer` */
  issue (peer: string): Uint8Array {
    if (this.poolAt + NONCE_LENGTH > this.pool.byteLength) {
      this.pool = randomBytes(POOL_SIZE)
      this.poolAt = 0
    }
    // a view of the pool: each nonce's 16 bytes are handed out once
    const nonce = this.pool.subarray(this.poolAt, this.poolAt + NONCE_LENGTH)
    this.poolAt += NONCE_LENGTH
    let nonces = this.peers.get(peer)
    if (nonces == null) {
      nonces = new Map()
    } else {
      // move the peer to the most recently used end
      this.peers.delete(peer)
    }
    this.peers.set(peer, nonces)
    nonces.set(keyOf(nonce), this.now() + this.ttl)
    while (nonces.size > this.maxPerPeer) {
      nonces.delete(nonces.keys().next().value as string)
    }
    while (this.peers.size > this.maxPeers) {
      this.peers.delete(this.peers.keys().next().value as string)
    }
    return nonce
  }

  /**
   * Consumes `nonce` for `peer`. True exactly once per issued nonce, before it
   * expires, and only for the peer it was issued to.
   */
  consume (peer: string, nonce: Uint8Array): boolean {
    if (nonce.byteLength !== NONCE_LENGTH) { return false }
    const nonces = this.peers.get(peer)
    if (nonces == null) { return false }
    const key = keyOf(nonce)
    const expiry = nonces.get(key)
    if (expiry == null) { return false }
    nonces.delete(key)
    if (nonces.size === 0) { this.peers.delete(peer) }
    return expiry > this.now()
  }

  /** Drops expired nonces (called on an interval) */
  sweep (): void {
    const now = this.now()
    for (const [peer, nonces] of this.peers) {
      for (const [k, exp] of nonces) {
        if (exp <= now) { nonces.delete(k) }
      }
      if (nonces.size === 0) { this.peers.delete(peer) }
    }
  }

  /** Outstanding nonces for a peer (for tests and metrics) */
  outstanding (peer: string): number {
    return this.peers.get(peer)?.size ?? 0
  }

  get size (): number {
    return this.peers.size
  }
}
