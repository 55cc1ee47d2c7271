import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { NonceStore, NONCE_LENGTH, NONCE_TTL, MAX_NONCES_PER_PEER } from '../src/protocols/opencloud/index.js'

/** A clock the test moves by hand */
function fakeClock (start = 1_000_000): { now(): number, advance(ms: number): void } {
  let t = start
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('NonceStore', () => {
  it('issues 16 random bytes, each usable exactly once', () => {
    const store = new NonceStore()
    const a = store.issue('peer-a')
    const b = store.issue('peer-a')
    assert.equal(a.byteLength, NONCE_LENGTH)
    assert.notDeepEqual(a, b)
    assert.equal(store.consume('peer-a', a), true)
    assert.equal(store.consume('peer-a', a), false)
    assert.equal(store.consume('peer-a', b), true)
    assert.equal(store.consume('peer-a', b), false)
  })

  it('binds a nonce to the peer it was issued to; another peer cannot use or burn it', () => {
    const store = new NonceStore()
    const n = store.issue('peer-a')
    assert.equal(store.consume('peer-b', n), false)
    assert.equal(store.consume('peer-a', n), true)
  })

  it('refuses nonces it never issued and nonces of the wrong length', () => {
    const store = new NonceStore()
    const n = store.issue('peer-a')
    assert.equal(store.consume('peer-a', randomBytes(NONCE_LENGTH)), false)
    assert.equal(store.consume('peer-a', new Uint8Array()), false)
    assert.equal(store.consume('peer-a', new Uint8Array([...n, 0])), false)
    assert.equal(store.consume('peer-a', n.subarray(0, 8)), false)
    assert.equal(store.consume('peer-a', n), true)
  })

  it('expires nonces after the TTL (injected clock)', () => {
    const clock = fakeClock()
    const store = new NonceStore({ now: clock.now })
    const early = store.issue('p')
    const late = store.issue('p')
    clock.advance(NONCE_TTL - 1)
    assert.equal(store.consume('p', early), true)
    clock.advance(1)
    assert.equal(store.consume('p', late), false, 'expired exactly at the TTL')
  })

  it('honours a configured TTL', () => {
    const clock = fakeClock()
    const store = new NonceStore({ ttl: 1_000, now: clock.now })
    const n = store.issue('p')
    clock.advance(1_000)
    assert.equal(store.consume('p', n), false)
  })

  it('sweep drops expired nonces and forgets peers left with none', () => {
    const clock = fakeClock()
    const store = new NonceStore({ ttl: 1_000, now: clock.now })
    store.issue('a')
    store.issue('a')
    clock.advance(500)
    const fresh = store.issue('b')
    clock.advance(600)
    store.sweep()
    assert.equal(store.outstanding('a'), 0)
    assert.equal(store.outstanding('b'), 1)
    assert.equal(store.size, 1)
    assert.equal(store.consume('b', fresh), true)
    assert.equal(store.size, 0, 'a peer whose last nonce is used is forgotten')
  })

  it('keeps at most maxPerPeer outstanding nonces per peer, dropping the oldest', () => {
    const store = new NonceStore()
    const issued = Array.from({ length: MAX_NONCES_PER_PEER + 6 }, () => store.issue('p'))
    assert.equal(store.outstanding('p'), MAX_NONCES_PER_PEER)
    for (const n of issued.slice(0, 6)) { assert.equal(store.consume('p', n), false) }
    for (const n of issued.slice(6)) { assert.equal(store.consume('p', n), true) }
  })

  it('keeps nonces for at most maxPeers peers, forgetting the least recently served', () => {
    const store = new NonceStore({ maxPeers: 3 })
    const n1 = store.issue('p1')
    const n2 = store.issue('p2')
    store.issue('p3')
    // p1 is served again: now p2 is the least recent
    const n1b = store.issue('p1')
    store.issue('p4')
    assert.equal(store.size, 3)
    assert.equal(store.consume('p2', n2), false, 'p2 forgotten')
    assert.equal(store.consume('p1', n1), true)
    assert.equal(store.consume('p1', n1b), true)
  })

  it('stays bounded under a flood of peers and nonces', () => {
    const store = new NonceStore({ maxPeers: 100, maxPerPeer: 4 })
    for (let i = 0; i < 10_000; i++) { store.issue(`peer-${i % 1000}`) }
    assert.ok(store.size <= 100)
    let total = 0
    for (let i = 0; i < 1000; i++) { total += store.outstanding(`peer-${i}`) }
    assert.ok(total <= 400)
  })
})
