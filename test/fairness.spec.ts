/**
 * Fair service between peers (docs/protocol.md "Fairness and admission"),
 * with real libp2p nodes over 127.0.0.1: a peer's requests in flight are
 * bounded across all its streams, requests over the bound are refused with
 * rate-limited before they are decoded or verified, and another peer's calls
 * are still served while one floods.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { NONCE_LENGTH, Reason, Status } from '../src/protocols/opencloud/index.js'
import { FairScheduler } from '../src/protocols/opencloud/net/scheduler.js'
import { sha256Service } from '../src/services/sha256.js'
import { within } from './fixtures.js'
import { CrashWatch, RawStream, signedRequest, startBareNode } from './protocol-fixtures.js'
import type { BareNode } from './protocol-fixtures.js'
import type { CredentialVerifier } from '../src/protocols/opencloud/api/signing.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { Response } from '../src/protocols/opencloud/index.js'

/** A service whose `wait` calls stay in the handler until `open()`; it counts them and their peak */
function gateService (): ServiceDefinition & { entered: number, peak: number, open(): void } {
  let inside = 0
  let release: () => void = () => {}
  let gate = new Promise<void>(resolve => { release = resolve })
  const svc = {
    name: 'gate',
    version: '1.0.0',
    description: 'holds calls until opened (tests)',
    entered: 0,
    peak: 0,
    open () {
      release()
      gate = new Promise<void>(resolve => { release = resolve })
    },
    methods: {
      wait: {
        description: 'returns once the gate opens',
        handler: async () => {
          svc.entered++
          inside++
          svc.peak = Math.max(svc.peak, inside)
          try {
            await gate
          } finally {
            inside--
          }
          return {}
        }
      }
    }
  }
  return svc
}

/**
 * Reads the answers of `streams` as they come; `settled(n)` resolves once
 * `n` answers matched `pred` (an event, not a sleep)
 */
function collect (streams: RawStream[]): { answers: Array<Promise<Response | null>>, got: Array<Response | null | undefined>, settled(n: number, pred: (r: Response | null) => boolean): Promise<void> } {
  const got: Array<Response | null | undefined> = streams.map(() => undefined)
  const waiters: Array<() => void> = []
  const answers = streams.map(async (raw, i) => {
    // a stream that never answers reads as null (after readResponse's own timeout)
    const r = await raw.readResponse().catch(() => null)
    got[i] = r
    waiters.forEach(w => { w() })
    return r
  })
  return {
    answers,
    got,
    async settled (n, pred) {
      await new Promise<void>((resolve) => {
        const check = (): void => { if (got.filter(r => r !== undefined && pred(r)).length >= n) { resolve() } }
        waiters.push(check)
        check()
      })
    }
  }
}

/** A credential kind `test:` whose verifier accepts every signature and counts the checks */
function countingVerifier (): CredentialVerifier & { calls: number } {
  const v = {
    prefix: 'test:',
    calls: 0,
    async verify () {
      v.calls++
      return true
    }
  }
  return v
}

describe('fairness between peers', function () {
  this.timeout(60_000)
  const watch = new CrashWatch()
  const nodes: BareNode[] = []

  before(() => { watch.install() })
  after(async () => {
    await Promise.all(nodes.map(async n => { await n.destroy() }))
    watch.uninstall()
    assert.deepEqual(watch.events, [], 'no unhandled rejection or uncaught exception')
  })

  async function node (init: Parameters<typeof startBareNode>[0] = {}): Promise<BareNode> {
    const n = await startBareNode(init)
    nodes.push(n)
    return n
  }

  /** A nonce the server issued to `raw`'s peer */
  async function nonce (raw: RawStream, from: BareNode, to: BareNode): Promise<Uint8Array> {
    const res = await raw.exchange(await signedRequest(from.key, { service: 'info', method: 'info', audience: to.openCloudId }))
    assert.equal(res.status, Status.REFRESH_NONCE)
    assert.equal(res.nextNonce.byteLength, NONCE_LENGTH)
    return res.nextNonce
  }

  it('a peer flooding on many streams is refused with rate-limited while another peer is served', async () => {
    const server = await node({ services: [sha256Service()], fairness: { maxActive: 1, maxInFlightPerPeer: 4, refusalDelay: 50 } })
    const mallory = await node()
    const honest = await node()
    // one signed request with a nonce the server never issued: the cheapest to send again and again
    const stale = await signedRequest(mallory.key, { service: 'sha256', method: 'hash', body: randomBytes(64), nonce: randomBytes(NONCE_LENGTH), audience: server.openCloudId })
    const streams: RawStream[] = []
    for (let i = 0; i < 24; i++) { streams.push(await RawStream.open(mallory, server)) }
    const statuses = new Map<string, number>()
    const flood = { on: true }
    let onRefused: () => void = () => {}
    const refusedOnce = new Promise<void>(resolve => { onRefused = resolve })
    const floods = streams.map(async (raw) => {
      while (flood.on) {
        let res: Response
        try {
          res = await raw.exchange(stale)
        } catch {
          // a loaded machine's connection monitor may hang up on the flood: that stream is done
          return
        }
        statuses.set(String(res.status), (statuses.get(String(res.status)) ?? 0) + 1)
        if (res.status === Status.RATE_LIMITED) { onRefused() }
      }
    })
    try {
      // the flood is refused (its answers say so); the honest peer is served meanwhile
      await within(refusedOnce, 15_000, 'the flooder is refused rate-limited')
      // the honest peer's calls go through, one after the other, while the flood goes on
      for (let i = 0; i < 20; i++) {
        const res = await within(honest.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: randomBytes(32) }), 20_000, 'an honest call during the flood')
        assert.equal(res.status, Status.OK, res.detail)
      }
    } finally {
      flood.on = false
      await Promise.all(floods)
      await Promise.all(streams.map(async s => { await s.close() }))
    }
    assert.ok((statuses.get(String(Status.RATE_LIMITED)) ?? 0) > 0, `the flooder was refused (got ${JSON.stringify([...statuses])})`)
    assert.ok((statuses.get(String(Status.REFRESH_NONCE)) ?? 0) > 0, 'the flooder was served within its bound')
    const stats = server.opencloud.stats()
    assert.ok((stats.scheduler?.refusedPeer ?? 0) > 0, 'the server counted the refusals')
  })

  it('bounds one peer\'s requests in flight across all its streams; the refused never reach the handler', async () => {
    const gate = gateService()
    const server = await node({ services: [gate], fairness: { maxActive: 8, maxActivePerPeer: 8, maxInFlightPerPeer: 3, refusalDelay: 100 } })
    const mallory = await node()
    const honest = await node()
    const streams = await Promise.all(Array.from({ length: 10 }, async () => RawStream.open(mallory, server)))
    const nonces: Uint8Array[] = []
    for (const raw of streams) { nonces.push(await nonce(raw, mallory, server)) }
    const calls = await Promise.all(streams.map(async (raw, i) => signedRequest(mallory.key, { service: 'gate', method: 'wait', nonce: nonces[i], audience: server.openCloudId })))
    for (let i = 0; i < streams.length; i++) { await streams[i].sendRequest(calls[i]) }
    const { answers, got, settled } = collect(streams)
    // the seven over the bound are answered rate-limited while three wait in the handler
    await within(settled(7, r => r?.status === Status.RATE_LIMITED), 10_000, 'seven refusals')
    const refused = got.filter(r => r?.status === Status.RATE_LIMITED)
    assert.equal(refused.length, 7, `seven refused, got ${JSON.stringify(got.map(r => String(r?.status)))}`)
    assert.ok(refused.every(r => r?.reason === Reason.REASON_MAX_CONCURRENT))
    assert.equal(got.filter(r => r === undefined).length, 3, 'three still wait for their answer')
    assert.equal(gate.entered, 3, 'only three requests reached the handler')
    assert.equal(gate.peak, 3)
    // another peer is not held by mallory's bound
    const info = await honest.opencloud.call(server.addr, { service: 'info', method: 'info' })
    assert.equal(info.status, Status.OK)
    gate.open()
    const rest = await Promise.all(answers)
    assert.equal(rest.filter(r => r?.status === Status.OK).length, 3)
    assert.equal(gate.entered, 3)
    await Promise.all(streams.map(async s => { await s.close() }))
  })

  it('refuses over the bound before signature verification', async () => {
    const gate = gateService()
    const verifier = countingVerifier()
    const server = await node({ services: [gate], verifiers: [verifier], fairness: { maxActive: 8, maxInFlightPerPeer: 2, refusalDelay: 100 } })
    const mallory = await node()
    const streams = await Promise.all(Array.from({ length: 8 }, async () => RawStream.open(mallory, server)))
    const as = 'test:mallory'
    const nonces: Uint8Array[] = []
    for (const raw of streams) {
      const res = await raw.exchange(await signedRequest(mallory.key, { service: 'gate', method: 'wait', audience: server.openCloudId }, as))
      assert.equal(res.status, Status.REFRESH_NONCE)
      nonces.push(res.nextNonce)
    }
    const before = verifier.calls
    assert.equal(before, streams.length, 'each nonce request was verified')
    for (let i = 0; i < streams.length; i++) {
      await streams[i].sendRequest(await signedRequest(mallory.key, { service: 'gate', method: 'wait', nonce: nonces[i], audience: server.openCloudId }, as))
    }
    const { answers, got, settled } = collect(streams)
    await within(settled(6, r => r?.status === Status.RATE_LIMITED), 10_000, 'six refusals')
    assert.equal(got.filter(r => r === undefined).length, 2, 'two wait in the handler')
    // two admitted requests were verified; the six refused were not
    assert.equal(verifier.calls - before, 2)
    gate.open()
    assert.equal((await Promise.all(answers)).filter(r => r?.status === Status.OK).length, 2)
    assert.equal(verifier.calls - before, 2)
    await Promise.all(streams.map(async s => { await s.close() }))
  })
})

describe('FairScheduler', () => {
  it('serves peers round-robin whatever their number of waiting requests, a newly active peer first', async () => {
    const s = new FairScheduler({ maxActive: 1, maxInFlightPerPeer: 100 })
    const order: string[] = []
    const run = async (peer: string): Promise<void> => {
      const a = await s.acquire(peer, 10)
      assert.ok(a.ok)
      order.push(peer)
      await new Promise(resolve => setImmediate(resolve))
      a.release()
    }
    const all: Array<Promise<void>> = []
    for (let i = 0; i < 6; i++) { all.push(run('flood')) }
    for (let i = 0; i < 2; i++) { all.push(run('other')) }
    await Promise.all(all)
    // flood's first request started at once; other came fresh and went next
    assert.deepEqual(order.slice(0, 5), ['flood', 'other', 'flood', 'other', 'flood'])
  })

  it('gives a peer of weight w w turns per round', async () => {
    const s = new FairScheduler({ maxActive: 1, maxInFlightPerPeer: 100, weight: (p) => p === 'heavy' ? 3 : 1 })
    const hold = await s.acquire('x', 1)
    assert.ok(hold.ok)
    const order: string[] = []
    const run = async (peer: string): Promise<void> => {
      const a = await s.acquire(peer, 1)
      assert.ok(a.ok)
      order.push(peer)
      await new Promise(resolve => setImmediate(resolve))
      a.release()
    }
    const all: Array<Promise<void>> = []
    for (let i = 0; i < 6; i++) { all.push(run('heavy')) }
    for (let i = 0; i < 6; i++) { all.push(run('light')) }
    hold.release()
    await Promise.all(all)
    // both start fresh (one turn each), then rounds of 3 heavy to 1 light
    assert.deepEqual(order.slice(0, 6), ['heavy', 'light', 'heavy', 'heavy', 'heavy', 'light'])
  })
})
