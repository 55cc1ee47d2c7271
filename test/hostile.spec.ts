/**
 * Hostile input against a real node over 127.0.0.1: raw bytes on raw
 * `/opencloud/1.0.0` streams. After every case the node must still serve
 * other peers and every blob stored before must come back byte-identical.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { MAX_BODY_SIZE, MAX_FRAME_SIZE, NONCE_LENGTH, PROTOCOL, Request, Status, encodeVarint } from '../src/protocols/opencloud/index.js'
import { eventually, startNode, within } from './fixtures.js'
import { CrashWatch, RawStream, countingService, frame, newIdentity, signedRequest, startBareNode, startKeyedNode } from './protocol-fixtures.js'
import type { TestNode } from './fixtures.js'
import type { BareNode, KeyedNode, RawRequestFields } from './protocol-fixtures.js'
import type { Response } from '../src/protocols/opencloud/index.js'

const enc = new TextEncoder()
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('hostile input', function () {
  this.timeout(120_000)

  const watch = new CrashWatch()
  /** the node under attack: a full decloud node */
  let server: TestNode
  const counter = countingService()
  /** attackers, whose keys the test holds */
  let mallory: KeyedNode
  let eve: KeyedNode
  /** an honest peer that checks the server after every case */
  let honest: BareNode
  const blobs: Array<{ id: string, bytes: Uint8Array }> = []

  /** A nonce the server issued to `peer` (asks with a request that has none) */
  async function nonceFor (raw: RawStream, who: KeyedNode): Promise<Uint8Array> {
    const res = await raw.exchange(await signedRequest(who.key, { audience: server.openCloudId, service: 'sha256', method: 'hash' }))
    assert.equal(res.status, Status.REFRESH_NONCE)
    assert.equal(res.nextNonce.byteLength, NONCE_LENGTH)
    return res.nextNonce
  }

  /**
   * The server's refusal of a bad frame: the response `status`, or nothing when
   * the reset that follows the response overtook it on the way. Either way the
   * server counted a bad frame and the stream then ends; a stream still open,
   * or any other status, fails.
   */
  async function refused (raw: RawStream, status: Status, badFramesBefore: number): Promise<void> {
    const res = await raw.readResponse()
    assert.ok(res == null || res.status === status, `expected ${String(status)} or the end of the stream, got ${String(res?.status)} ${res?.detail ?? ''}`)
    // null from readResponse is a clean end or a reset, never a timeout (that throws); read once more to prove the end
    assert.equal(await within(raw.ended(), 20_000, 'the server ends the stream'), true, 'the server ended the stream')
    assert.ok(server.opencloud.stats().badFrames > badFramesBefore, 'the server counted the bad frame')
  }

  /** Every byte inbound streams held unread is given back once they are done */
  async function budgetReturned (node: { opencloud: { stats(): { bufferedBytes?: number } } }): Promise<void> {
    assert.equal(typeof node.opencloud.stats().bufferedBytes, 'number', 'stats report bufferedBytes')
    const back = await eventually(() => node.opencloud.stats().bufferedBytes === 0, 10_000, 10)
    assert.ok(back, `buffered bytes returned to 0 (still ${String(node.opencloud.stats().bufferedBytes)})`)
  }

  /** Sends a request with a fresh nonce on `raw`, signed by `who` */
  async function call (raw: RawStream, who: KeyedNode, fields: RawRequestFields): Promise<Response> {
    const nonce = await nonceFor(raw, who)
    return raw.exchange(await signedRequest(who.key, { audience: server.openCloudId, ...fields, nonce }))
  }

  before(async () => {
    watch.install()
    // without the fair scheduler (docs/protocol.md §11, covered by test/fairness.spec.ts): with it,
    // 200 raw streams of one peer that each take a nonce and then use it are served in turn, all
    // nonce requests before the calls, and the 64 nonces kept per peer are evicted before use
    // (a known open point of the scheduler)
    server = await startNode({ services: [counter], opencloud: { fairness: false } })
    mallory = await startKeyedNode()
    eve = await startKeyedNode()
    honest = await startBareNode()
    for (const size of [1, 1000, 300_000]) {
      const bytes = randomBytes(size)
      const id: string = JSON.parse(new TextDecoder().decode(await honest.opencloud.callOk(server.addr, { service: 'storage', method: 'put', body: bytes }))).id
      assert.equal(id, createHash('sha256').update(bytes).digest('hex'))
      blobs.push({ id, bytes })
    }
  })

  afterEach(async function () {
    // the node still serves another peer, and every stored blob is intact
    const body = randomBytes(100)
    const res = await honest.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body }, { signal: AbortSignal.timeout(20_000) })
    assert.equal(res.path, 'ok', `after "${this.currentTest?.title ?? ''}"`)
    assert.equal(Buffer.from(res.body).toString('hex'), createHash('sha256').update(body).digest('hex'))
    for (const { id, bytes } of blobs) {
      const got = await honest.opencloud.callOk(server.addr, { service: 'storage', method: 'get', args: [id] }, { signal: AbortSignal.timeout(20_000) })
      assert.ok(Buffer.from(got).equals(bytes), `blob ${id} intact`)
    }
    assert.deepEqual(watch.events, [], 'no unhandled rejection or uncaught exception')
  })

  after(async () => {
    watch.uninstall()
    await honest?.destroy()
    await mallory?.destroy()
    await eve?.destroy()
    await server?.destroy()
    assert.deepEqual(watch.events, [])
  })

  describe('framing', () => {
    it('a truncated frame then close: answered bad-request or closed, nothing served', async () => {
      const before = counter.counts.get('hit') ?? 0
      const badFrames = server.opencloud.stats().badFrames
      const raw = await RawStream.open(mallory, server)
      const full = frame(Request.encode(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit' })))
      await raw.sendRaw(full.subarray(0, Math.floor(full.byteLength / 2)))
      await raw.stream.close()
      await refused(raw, Status.BAD_REQUEST, badFrames)
      assert.equal(counter.counts.get('hit') ?? 0, before)
    })

    it('garbage inside a valid length prefix: bad-request, and the stream stays usable', async () => {
      const raw = await RawStream.open(mallory, server)
      await raw.sendRaw(frame(new Uint8Array(64).fill(0xff)))
      const bad = await raw.readResponse()
      assert.equal(bad?.status, Status.BAD_REQUEST)
      assert.equal(bad?.requestDigest.byteLength, 0)
      // random bytes too (whatever they decode to, never ok and never a crash)
      for (let i = 0; i < 20; i++) {
        await raw.sendRaw(frame(randomBytes(1 + (i * 37) % 500)))
        const res = await raw.readResponse()
        assert.ok(res != null)
        assert.notEqual(res.status, Status.OK)
      }
      // an empty frame is an empty request: bad-request
      await raw.sendRaw(frame(new Uint8Array()))
      assert.equal((await raw.readResponse())?.status, Status.BAD_REQUEST)
      // the same stream then serves a valid request
      const ok = await call(raw, mallory, { service: 'sha256', method: 'hash', body: enc.encode('still here') })
      assert.equal(ok.status, Status.OK)
      await raw.close()
    })

    it('an oversized length prefix: too-large or closed, and the data is never buffered', async () => {
      const badFrames = server.opencloud.stats().badFrames
      const raw = await RawStream.open(mallory, server)
      await raw.sendRaw(encodeVarint(1024 * 1024 * 1024))
      // keep sending what would be the body: the server must not keep it
      for (let i = 0; i < 8; i++) {
        try {
          await raw.sendRaw(new Uint8Array(64 * 1024))
        } catch {
          break
        }
      }
      await refused(raw, Status.TOO_LARGE, badFrames)
      // what arrived before the reset is not kept: the stream's charge is given back
      await budgetReturned(server)
    })

    it('a length prefix of endless continuation bytes: too-large or closed after a few bytes', async () => {
      const badFrames = server.opencloud.stats().badFrames
      const raw = await RawStream.open(mallory, server)
      await raw.sendRaw(new Uint8Array(64).fill(0xff))
      await refused(raw, Status.TOO_LARGE, badFrames)
    })

    it('a frame just over the frame limit: too-large', async () => {
      const badFrames = server.opencloud.stats().badFrames
      const raw = await RawStream.open(mallory, server)
      await raw.sendRaw(encodeVarint(MAX_FRAME_SIZE + 1))
      await refused(raw, Status.TOO_LARGE, badFrames)
    })

    it('an oversized body within the frame limit: too-large, stream usable', async () => {
      const raw = await RawStream.open(mallory, server)
      const res = await raw.exchange(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'storage', method: 'put', body: new Uint8Array(MAX_BODY_SIZE + 1) }))
      assert.equal(res.status, Status.TOO_LARGE)
      const ok = await call(raw, mallory, { service: 'sha256', method: 'hash' })
      assert.equal(ok.status, Status.OK)
      await raw.close()
    })

    it('two requests written back to back are answered in order', async () => {
      const raw = await RawStream.open(mallory, server)
      const n1 = await nonceFor(raw, mallory)
      const r1 = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash', body: enc.encode('one'), nonce: n1 })
      const r2 = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'Nope', method: 'x' })
      await raw.sendRaw(new Uint8Array([...frame(Request.encode(r1)), ...frame(Request.encode(r2))]))
      assert.equal((await raw.readResponse())?.status, Status.OK)
      assert.equal((await raw.readResponse())?.status, Status.BAD_REQUEST)
      await raw.close()
    })
  })

  describe('names, signatures, credentials', () => {
    it('unknown service and method', async () => {
      const raw = await RawStream.open(mallory, server)
      assert.equal((await call(raw, mallory, { service: 'nope', method: 'x' })).status, Status.SERVICE_UNSUPPORTED)
      assert.equal((await call(raw, mallory, { service: 'storage', method: 'nope' })).status, Status.METHOD_UNSUPPORTED)
      assert.equal((await call(raw, mallory, { service: 'storage', method: '__proto__' })).status, Status.BAD_REQUEST)
      assert.equal((await call(raw, mallory, { service: 'x'.repeat(100_000), method: 'y' })).status, Status.BAD_REQUEST)
      await raw.close()
    })

    it('a forged signature (one byte flipped): invalid-signature, nothing served', async () => {
      const before = counter.counts.get('hit') ?? 0
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const req = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce })
      req.sig[0][0] ^= 0x01
      assert.equal((await raw.exchange(req)).status, Status.INVALID_SIGNATURE)
      // a signed field changed after signing
      const req2 = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce })
      req2.args = ['tampered']
      assert.equal((await raw.exchange(req2)).status, Status.INVALID_SIGNATURE)
      assert.equal(counter.counts.get('hit') ?? 0, before)
      await raw.close()
    })

    it('a credential of key A with a signature by key B: invalid-signature', async () => {
      const victim = await newIdentity()
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const req = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash', nonce }, victim.id)
      assert.equal((await raw.exchange(req)).status, Status.INVALID_SIGNATURE)
      await raw.close()
    })

    it('malformed credentials and signature counts: invalid-signature or bad-request, never ok', async () => {
      const raw = await RawStream.open(mallory, server)
      const cases: Array<(r: Request) => void> = [
        r => { r.id = ['oc:not-a-peer-id'] },
        r => { r.id = ['btc:bc1qnotsupportedyet'] },
        r => { r.id = ['oc:' + '1'.repeat(5000)] },
        // no signature is an unsigned request, which may name only the connection's own id
        r => { r.id = [server.openCloudId]; r.sig = [] },
        r => { r.id = [r.id[0], r.id[0]]; r.sig = [] },
        r => { r.sig = [r.sig[0], r.sig[0]] },
        r => { r.sig = [new Uint8Array(100_000)] },
        r => { r.id = Array.from({ length: 9 }, () => r.id[0]); r.sig = Array.from({ length: 9 }, () => r.sig[0]) }
      ]
      for (const mutate of cases) {
        const req = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash' })
        mutate(req)
        const res = await raw.exchange(req)
        assert.ok(res.status === Status.INVALID_SIGNATURE || res.status === Status.BAD_REQUEST, `${String(res.status)} ${res.detail}`)
      }
      await raw.close()
    })
  })

  describe('nonces and replay', () => {
    it('a request without a nonce gets refresh-nonce carrying a next nonce', async () => {
      const raw = await RawStream.open(mallory, server)
      const res = await raw.exchange(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit' }))
      assert.equal(res.status, Status.REFRESH_NONCE)
      assert.equal(res.nextNonce.byteLength, NONCE_LENGTH)
      await raw.close()
    })

    it('a made-up or wrong-length nonce: refresh-nonce or bad-request', async () => {
      const raw = await RawStream.open(mallory, server)
      const made = await raw.exchange(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash', nonce: randomBytes(NONCE_LENGTH) }))
      assert.equal(made.status, Status.REFRESH_NONCE)
      const long = await raw.exchange(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash', nonce: randomBytes(1000) }))
      assert.equal(long.status, Status.BAD_REQUEST)
      // never reflects arbitrary bytes back
      assert.equal(long.nonce.byteLength, 0)
      await raw.close()
    })

    it('the same storage.put bytes sent twice: the second gets refresh-nonce', async () => {
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const bytes = Request.encode(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'storage', method: 'put', body: enc.encode('replay me'), nonce }))
      await raw.sendRaw(frame(bytes))
      const first = await raw.readResponse()
      assert.equal(first?.status, Status.OK)
      assert.deepEqual(first?.nonce, nonce)
      await raw.sendRaw(frame(bytes))
      const second = await raw.readResponse()
      assert.equal(second?.status, Status.REFRESH_NONCE)
      await raw.close()
    })

    it('a replayed request is never served twice: same stream, another stream, concurrently', async () => {
      const before = counter.counts.get('hit') ?? 0
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const bytes = frame(Request.encode(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce })))
      // five streams send the same bytes at once, then the first stream again
      const streams = [raw, ...await Promise.all(Array.from({ length: 4 }, async () => RawStream.open(mallory, server)))]
      const answers = await Promise.all(streams.map(async (s) => {
        await s.sendRaw(bytes)
        return s.readResponse()
      }))
      await raw.sendRaw(bytes)
      answers.push(await raw.readResponse())
      assert.equal(answers.filter(r => r?.status === Status.OK).length, 1)
      assert.equal(answers.filter(r => r?.status === Status.REFRESH_NONCE).length, 5)
      assert.equal(counter.counts.get('hit'), before + 1)
      await Promise.all(streams.map(async s => { await s.close() }))
    })

    it('a nonce issued to peer A is refused from peer B (own request or A\'s replayed bytes)', async () => {
      const before = counter.counts.get('hit') ?? 0
      const fromA = await RawStream.open(mallory, server)
      const fromB = await RawStream.open(eve, server)
      const nonce = await nonceFor(fromA, mallory)
      const own = await fromB.exchange(await signedRequest(eve.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce }))
      assert.equal(own.status, Status.REFRESH_NONCE)
      const aBytes = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce })
      const stolen = await fromB.exchange(aBytes)
      assert.equal(stolen.status, Status.REFRESH_NONCE)
      assert.equal(counter.counts.get('hit') ?? 0, before)
      // A's nonce is still good for A
      assert.equal((await fromA.exchange(aBytes)).status, Status.OK)
      assert.equal(counter.counts.get('hit'), before + 1)
      await fromA.close()
      await fromB.close()
    })
  })

  describe('misbehaving streams', () => {
    it('a stream reset in the middle of a request', async () => {
      const before = counter.counts.get('hit') ?? 0
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const request = await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'hit', nonce, body: randomBytes(50_000) })
      const full = frame(Request.encode(request))
      // the server's end of this stream (yamux gives both ends the same id)
      const serverEnd = (): boolean => server.libp2p.getConnections(mallory.libp2p.peerId).some(c => c.streams.some(s => s.id === raw.stream.id && s.protocol === PROTOCOL && s.status === 'open'))
      assert.ok(serverEnd(), 'the server holds the stream')
      await raw.sendRaw(full.subarray(0, 20_000))
      raw.stream.abort(new Error('reset by the test'))
      // the server lets go of the stream (no buffer or task left behind)…
      assert.ok(await eventually(() => !serverEnd(), 10_000, 10), 'the server closed its end of the reset stream')
      // …without having run the request: nothing counted, and its nonce was never spent,
      // so the whole request, sent again on a new stream, is served once
      assert.equal(counter.counts.get('hit') ?? 0, before)
      const again = await RawStream.open(mallory, server)
      assert.equal((await again.exchange(request)).status, Status.OK)
      assert.equal(counter.counts.get('hit'), before + 1)
      await again.close()
    })

    it('a stream reset while its request is being processed', async () => {
      const raw = await RawStream.open(mallory, server)
      const nonce = await nonceFor(raw, mallory)
      const slowBefore = counter.counts.get('slow') ?? 0
      await raw.sendRequest(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'counter', method: 'slow', nonce }))
      assert.ok(await eventually(() => (counter.counts.get('slow') ?? 0) > slowBefore, 10_000, 10), 'the slow handler started')
      const abortedBefore = counter.counts.get('slow-aborted') ?? 0
      raw.stream.abort(new Error('gone'))
      // the handler is told through its signal that nobody waits for the answer
      // (well before the 30 s message timeout, which would abort it too)
      assert.ok(await eventually(() => (counter.counts.get('slow-aborted') ?? 0) > abortedBefore, 10_000, 10), 'the handler\'s signal aborted when the stream was reset')
    })

    it('a slow client that sends half a frame and stalls does not block other peers', async () => {
      const raw = await RawStream.open(mallory, server)
      const full = frame(Request.encode(await signedRequest(mallory.key, { audience: server.openCloudId, service: 'sha256', method: 'hash', body: randomBytes(10_000) })))
      await raw.sendRaw(full.subarray(0, 5_000))
      // meanwhile, other peers (and the same peer on other streams) are served
      const others = await Promise.all(Array.from({ length: 10 }, async (_, i) => honest.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode(String(i)) })))
      assert.ok(others.every(r => r.path === 'ok'))
      const raw2 = await RawStream.open(mallory, server)
      assert.equal((await call(raw2, mallory, { service: 'sha256', method: 'hash' })).status, Status.OK)
      raw.stream.abort(new Error('done'))
      await raw2.close()
    })

    it('200 concurrent streams from one peer are all answered', async () => {
      const before = counter.counts.get('hit') ?? 0
      const streams = await Promise.all(Array.from({ length: 200 }, async () => RawStream.open(mallory, server)))
      // every stream asks for a nonce and uses it; with 200 nonces in flight the
      // server keeps only the newest 64 per peer, so some must ask again
      const results = await Promise.all(streams.map(async (raw) => {
        for (let attempt = 0; attempt < 20; attempt++) {
          const res = await call(raw, mallory, { service: 'counter', method: 'hit' })
          if (res.status === Status.OK) { return res }
          assert.equal(res.status, Status.REFRESH_NONCE)
        }
        throw new Error('never served')
      }))
      assert.equal(results.length, 200)
      assert.equal(counter.counts.get('hit'), before + 200)
      await Promise.all(streams.map(async s => { await s.close() }))
    })

    it('200 concurrent calls through the client from one peer', async () => {
      const before = counter.counts.get('hit') ?? 0
      const results = await Promise.all(Array.from({ length: 200 }, async () => mallory.opencloud.call(server.addr, { service: 'counter', method: 'hit' })))
      assert.ok(results.every(r => r.path === 'ok'), results.map(r => r.path).join(','))
      assert.equal(counter.counts.get('hit'), before + 200)
    })
  })

  describe('limits and timeouts (a server with short timeouts and a small buffer budget)', () => {
    let tight: BareNode

    before(async () => {
      tight = await startBareNode({
        services: [countingService()],
        messageTimeout: 1_000,
        idleTimeout: 1_500,
        maxBufferedBytesPerPeer: 256 * 1024
      })
    })

    after(async () => {
      await tight?.destroy()
    })

    afterEach(async () => {
      // the tight server serves other peers too
      assert.equal((await honest.opencloud.call(tight.addr, { service: 'info', method: 'info' })).path, 'ok')
    })

    it('a stalled half frame is dropped after the message timeout', async () => {
      const raw = await RawStream.open(mallory, tight)
      const full = frame(Request.encode(await signedRequest(mallory.key, { audience: tight.openCloudId, service: 'info', method: 'info', body: randomBytes(10_000) })))
      await raw.sendRaw(full.subarray(0, 5_000))
      assert.equal(await raw.ended(), true)
      assert.ok(tight.opencloud.stats().badFrames >= 1)
    })

    it('a dribbling client (one byte at a time, under the idle timeout) is still cut at the message timeout', async () => {
      const raw = await RawStream.open(mallory, tight)
      const full = frame(Request.encode(await signedRequest(mallory.key, { audience: tight.openCloudId, service: 'info', method: 'info', body: randomBytes(1_000) })))
      let i = 0
      const ended = raw.ended()
      const cut = { done: false }
      void ended.then(() => { cut.done = true })
      while (!cut.done && i < full.byteLength) {
        try {
          await raw.sendRaw(full.subarray(i, i + 1))
        } catch {
          break
        }
        i++
        await sleep(100)
      }
      assert.equal(await ended, true)
      assert.ok(i < full.byteLength, 'the server cut the stream before the frame was complete')
    })

    it('an idle stream is closed after the idle timeout', async () => {
      const raw = await RawStream.open(mallory, tight)
      assert.equal(await raw.ended(), true)
    })

    it('streams holding more unread bytes than the per-peer budget are reset; the budget is returned', async () => {
      const streams = await Promise.all(Array.from({ length: 6 }, async () => RawStream.open(mallory, tight)))
      // each announces a 200 KiB frame and sends 100 KiB of it: 600 KiB > 256 KiB
      await Promise.all(streams.map(async (raw) => {
        try {
          await raw.sendRaw(encodeVarint(200 * 1024))
          await raw.sendRaw(new Uint8Array(100 * 1024))
        } catch {
          // reset by the server while sending: expected
        }
      }))
      const ended = await Promise.all(streams.map(async raw => raw.ended()))
      assert.ok(ended.every(e => e))
      assert.ok(tight.opencloud.stats().overBudget >= 1, 'a stream was reset for going over the budget')
      await budgetReturned(tight)
    })
  })
})
