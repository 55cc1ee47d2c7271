import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { FrameReader, MAX_FRAME_SIZE, PROTOCOL, PaymentType, Reason, Request, Response, Status, openCloudId, requestDigest, responseDigest, openCloudVerifier, NONCE_LENGTH, MAX_BODY_SIZE } from '../src/protocols/opencloud/index.js'
import { verifyResponse } from '../src/protocols/opencloud/index.js'
import { sha256Service } from '../src/services/sha256.js'
import { eventually, startNode, within } from './fixtures.js'
import { RawStream, countingService, signedRequest, startBareNode, startKeyedNode } from './protocol-fixtures.js'
import type { TestNode } from './fixtures.js'
import type { BareNode, KeyedNode } from './protocol-fixtures.js'
import type { CallResult } from '../src/protocols/opencloud/index.js'

const enc = new TextEncoder()
const json = (res: CallResult): any => JSON.parse(new TextDecoder().decode(res.body))
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/**
 * A peer that speaks OpenCloud framing but answers every request with ok,
 * named by its own OpenCloud ID and signed with 64 zero bytes: what a client
 * only catches by verifying the signature
 */
async function startForger (): Promise<{ addr: string, answered(): number, destroy(): Promise<void> }> {
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  const id = openCloudId(libp2p.peerId)
  let answered = 0
  await libp2p.handle(PROTOCOL, (stream, connection) => {
    const frames = new FrameReader(stream, { maxFrameSize: MAX_FRAME_SIZE })
    void (async () => {
      for (let f = await frames.read(); f != null; f = await frames.read()) {
        const request = Request.decode(f)
        await frames.write(Response.encode({
          id: [id],
          sig: [new Uint8Array(64)],
          nonce: request.nonce,
          status: Status.OK,
          detail: '',
          body: enc.encode('forged'),
          nextNonce: new Uint8Array(NONCE_LENGTH),
          requestDigest: requestDigest(request) as Uint8Array<ArrayBuffer>,
          reason: Reason.REASON_UNSPECIFIED,
          audience: openCloudId(connection.remotePeer)
        }))
        answered++
      }
    })().catch((err: Error) => { stream.abort(err) })
  })
  return { addr: libp2p.getMultiaddrs()[0].toString(), answered: () => answered, destroy: async () => { await libp2p.stop() } }
}

describe('OpenCloud between real nodes', function () {
  this.timeout(60_000)

  /** the client */
  let a: KeyedNode
  /** a server with a counting service and a small storage capacity */
  let b: TestNode
  /** a server that sells sha256 for 10 sat per call */
  let priced: TestNode
  const counter = countingService()

  before(async () => {
    a = await startKeyedNode()
    b = await startNode({ services: [counter], storage: { capacity: 1000 } })
    priced = await startNode({ sha256: { pricing: { base: 10n } } })
  })

  after(async () => {
    await a?.destroy()
    await b?.destroy()
    await priced?.destroy()
  })

  describe('response signatures as evidence', () => {
    it('verifyResponse accepts a genuine response and rejects a tampered one or the wrong signer', async () => {
      const body = enc.encode('evidence')
      const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'hash', body, signResponse: true })
      assert.equal(res.ok, true)
      assert.equal(res.signed, true)
      assert.equal(await verifyResponse(res), true)
      // the client it answered is signed: the response cannot be passed off as another client's
      assert.equal(res.response.audience, a.openCloudId)
      assert.equal(await verifyResponse({ ...res, response: { ...res.response, audience: priced.openCloudId } }), false)
      // any signed field changed: body, status, request digest
      const tamperedBody = { ...res, response: { ...res.response, body: new Uint8Array(32) as typeof res.response.body } }
      assert.equal(await verifyResponse(tamperedBody), false)
      const tamperedStatus = { ...res, response: { ...res.response, status: Status.NOT_FOUND } }
      assert.equal(await verifyResponse(tamperedStatus), false)
      const digest = new Uint8Array(res.response.requestDigest)
      digest[0] ^= 1
      assert.equal(await verifyResponse({ ...res, response: { ...res.response, requestDigest: digest as typeof res.response.requestDigest } }), false)
      // a genuine response presented as another peer's
      assert.equal(await verifyResponse({ ...res, peer: priced.peerId }), false)
    })

    it('with verifyResponses the client checks every response as it arrives', async () => {
      const c = await startNode({ opencloud: { verifyResponses: true } })
      const forger = await startForger()
      try {
        const res = await c.opencloud.call(b.addr, { service: 'sha256', method: 'hash', body: enc.encode('x') })
        assert.equal(res.ok, true)
        assert.equal(await verifyResponse(res), true)
        // the forged answer reached the client (the forger counts it) and was refused for its signature
        await assert.rejects(c.opencloud.call(forger.addr, { service: 'sha256', method: 'hash' }), { name: 'InvalidResponseSignatureError', message: /signature 0 does not verify/ })
        assert.equal(forger.answered(), 1)
        // a client that does not verify checks the signer's name only, and takes the same answer
        const trusting = await a.opencloud.call(forger.addr, { service: 'sha256', method: 'hash' })
        assert.equal(trusting.ok, true)
        assert.equal(new TextDecoder().decode(trusting.body), 'forged')
        assert.equal(await verifyResponse(trusting), false)
      } finally {
        await forger.destroy()
        await c.destroy()
      }
    })
  })

  describe('every status, produced by a real request', () => {
    it('ok: sha256.hash returns the digest of the body, signed by the server', async () => {
      const body = enc.encode('hello decloud')
      const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'hash', body, signResponse: true })
      assert.equal(res.path, 'ok')
      assert.equal(res.status, Status.OK)
      assert.equal(hex(res.body), createHash('sha256').update(body).digest('hex'))
      assert.equal(res.signer, b.openCloudId)
      // the response signature verifies against the server's OpenCloud ID
      assert.equal(await openCloudVerifier.verify(b.openCloudId, responseDigest(res.response), res.response.sig[0]), true)
      assert.equal(res.response.nextNonce.byteLength, NONCE_LENGTH)
    })

    it('client-error/bad-request: a malformed blob id', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'storage', method: 'get', args: ['not-an-id'] })
      assert.equal(res.path, 'client-error/bad-request')
      assert.match(res.detail, /64/)
    })

    it('client-error/bad-request: a malformed method name', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'Hash!' })
      assert.equal(res.path, 'client-error/bad-request')
    })

    it('client-error/invalid-signature: a forged signature', async () => {
      const raw = await RawStream.open(a, b)
      const req = await signedRequest(a.key, { audience: b.openCloudId, service: 'sha256', method: 'hash', body: enc.encode('x') })
      req.sig[0][5] ^= 0xff
      const res = await raw.exchange(req)
      assert.equal(res.status, Status.INVALID_SIGNATURE)
      await raw.close()
    })

    it('client-error/service-unsupported', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'nope', method: 'x' })
      assert.equal(res.status, Status.SERVICE_UNSUPPORTED)
      assert.equal(res.path, 'client-error/service-unsupported')
    })

    it('client-error/method-unsupported, also for names inherited from Object.prototype', async () => {
      for (const method of ['nope', 'constructor', 'tostring', 'hasownproperty']) {
        const res = await a.opencloud.call(b.addr, { service: 'sha256', method })
        assert.equal(res.path, 'client-error/method-unsupported', method)
      }
    })

    it('client-error/not-found: a blob that is not there', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'storage', method: 'get', args: ['0'.repeat(64)] })
      assert.equal(res.path, 'client-error/not-found')
    })

    it('client-error/too-large: a body over the limit (frame still within the frame limit)', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'hash', body: new Uint8Array(MAX_BODY_SIZE + 1) })
      assert.equal(res.path, 'client-error/too-large')
      assert.match(res.detail, /4194304/)
    })

    it('server-error: a handler that throws is answered with "internal error", nothing leaked', async () => {
      const before = counter.counts.get('boom') ?? 0
      const res = await a.opencloud.call(b.addr, { service: 'counter', method: 'boom' })
      assert.equal(res.path, 'server-error')
      assert.equal(res.detail, 'internal error')
      assert.equal(new TextDecoder().decode(res.body), '')
      assert.doesNotMatch(JSON.stringify({ d: res.detail }), /secret|passwd/)
      assert.equal(counter.counts.get('boom'), before + 1)
    })

    it('server-error: a handler that returns an unknown status', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'counter', method: 'bogus' })
      assert.equal(res.path, 'server-error')
      assert.equal(res.detail, 'internal error')
    })

    it('server-error/insufficient-storage: a blob over the free capacity', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'storage', method: 'put', body: new Uint8Array(1001).fill(7) })
      assert.equal(res.path, 'server-error/insufficient-storage')
    })

    it('request-declined/refresh-nonce: a request without a nonce, with a fresh nonce in the answer', async () => {
      const raw = await RawStream.open(a, b)
      const req = await signedRequest(a.key, { audience: b.openCloudId, service: 'sha256', method: 'hash', signResponse: true })
      const res = await raw.exchange(req)
      assert.equal(res.status, Status.REFRESH_NONCE)
      assert.equal(res.nextNonce.byteLength, NONCE_LENGTH)
      // the request digest in the answer is the request's signing digest itself
      assert.deepEqual(res.requestDigest, requestDigest(req))
      // the nonce works once
      const ok = await raw.exchange(await signedRequest(a.key, { audience: b.openCloudId, service: 'sha256', method: 'hash', nonce: res.nextNonce }))
      assert.equal(ok.status, Status.OK)
      await raw.close()
    })

    it('request-declined/access-denied: a request with no credential', async () => {
      const raw = await RawStream.open(a, b)
      const req = await signedRequest(a.key, { audience: b.openCloudId, service: 'sha256', method: 'hash' })
      req.id = []
      req.sig = []
      const res = await raw.exchange(req)
      assert.equal(res.status, Status.ACCESS_DENIED)
      assert.match(res.detail, /credential/)
      await raw.close()
    })

    it('request-declined/payment-declined: a node without a payment backend takes no attached or defer payment', async () => {
      for (const paymentType of [PaymentType.PAYMENT_ATTACHED, PaymentType.PAYMENT_DEFER]) {
        const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'hash', paymentType })
        assert.equal(res.path, 'request-declined/payment-declined')
        assert.equal(res.reason, Reason.REASON_NO_PAYMENT_BACKEND)
        assert.match(res.detail, /no payment backend/)
      }
    })

    it('request-declined/payment-declined/too-low with acceptable-payment: a priced method with payment none', async () => {
      const res = await a.opencloud.call(priced.addr, { service: 'sha256', method: 'hash', body: enc.encode('abc') })
      assert.equal(res.path, 'request-declined/payment-declined/too-low')
      assert.deepEqual(res.acceptablePayment, { paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: 10n })
      // the template methods stay free
      const q = await a.opencloud.call(priced.addr, { service: 'sha256', method: 'quote', args: ['hash', '3'] })
      assert.equal(q.path, 'ok')
      assert.equal(json(q).amount, '10')
    })
  })

  describe('template methods', () => {
    it('sha256.info, sha256.methods, sha256.quote', async () => {
      const info = json(await a.opencloud.call(b.addr, { service: 'sha256', method: 'info' }))
      assert.equal(info.service, 'sha256')
      assert.equal(info.version, '1.0.0')
      const methods = json(await a.opencloud.call(b.addr, { service: 'sha256', method: 'methods' }))
      assert.deepEqual(methods.methods.map((m: any) => m.name).sort(), ['hash', 'info', 'methods', 'quote'])
      const hash = methods.methods.find((m: any) => m.name === 'hash')
      assert.deepEqual(hash.units, ['byte'])
      const { validUntil, ...quote } = json(await a.opencloud.call(b.addr, { service: 'sha256', method: 'quote', args: ['hash', '1024'] }))
      assert.deepEqual(quote, { service: 'sha256', method: 'hash', currency: 'BTC', units: { byte: '1024' }, base: '0', usage: '0', amount: '0' })
      assert.ok(validUntil > Date.now(), 'the quote says until when it holds')
    })

    it('storage.info reports capacity and use; storage.methods lists put/get/stat/delete', async () => {
      const info = json(await a.opencloud.call(b.addr, { service: 'storage', method: 'info' }))
      assert.equal(info.service, 'storage')
      assert.equal(info.capacity, 1000)
      const methods = json(await a.opencloud.call(b.addr, { service: 'storage', method: 'methods' }))
      for (const m of ['put', 'get', 'stat', 'delete']) { assert.ok(methods.methods.some((x: any) => x.name === m), m) }
      const quote = await a.opencloud.call(b.addr, { service: 'storage', method: 'quote', args: ['put', '100'] })
      assert.equal(quote.path, 'ok')
      assert.equal(json(quote).amount, '0')
    })

    it('quote refuses unknown methods and malformed units', async () => {
      assert.equal((await a.opencloud.call(b.addr, { service: 'sha256', method: 'quote', args: ['nope'] })).path, 'client-error/method-unsupported')
      assert.equal((await a.opencloud.call(b.addr, { service: 'sha256', method: 'quote', args: ['hash', '-1'] })).path, 'client-error/bad-request')
      assert.equal((await a.opencloud.call(b.addr, { service: 'sha256', method: 'quote' })).path, 'client-error/bad-request')
    })

    it('info.info describes the node: version, services, addresses', async () => {
      const res = await a.opencloud.call(b.addr, { service: 'info', method: 'info' })
      assert.equal(res.path, 'ok')
      const { node } = json(res)
      assert.equal(typeof node.version, 'string')
      assert.equal(node.protocol, '/opencloud/1.1.0')
      assert.equal(node.openCloudId, b.openCloudId)
      const names = node.services.map((s: any) => s.name)
      for (const name of ['counter', 'info', 'sha256', 'storage']) { assert.ok(names.includes(name), name) }
      assert.ok(node.addresses.some((x: string) => x.startsWith('/ip4/127.0.0.1/tcp/')))
      const methods = json(await a.opencloud.call(b.addr, { service: 'info', method: 'methods' }))
      assert.deepEqual(methods.methods.map((m: any) => m.name).sort(), ['info', 'methods', 'quote'])
    })
  })

  describe('storage round trip', () => {
    it('put, get (whole and range), stat, delete', async () => {
      const blob = enc.encode('a small blob for the storage round trip')
      const put = await a.opencloud.call(b.addr, { service: 'storage', method: 'put', body: blob })
      assert.equal(put.path, 'ok')
      const id = json(put).id
      assert.equal(id, createHash('sha256').update(blob).digest('hex'))
      const got = await a.opencloud.callOk(b.addr, { service: 'storage', method: 'get', args: [id] })
      assert.deepEqual(Buffer.from(got), Buffer.from(blob))
      const part = await a.opencloud.callOk(b.addr, { service: 'storage', method: 'get', args: [id, '2', '5'] })
      assert.deepEqual(Buffer.from(part), Buffer.from(blob.subarray(2, 7)))
      const stat = json(await a.opencloud.call(b.addr, { service: 'storage', method: 'stat', args: [id] }))
      assert.equal(stat.size, blob.byteLength)
      const del = await a.opencloud.call(b.addr, { service: 'storage', method: 'delete', args: [id] })
      assert.equal(del.path, 'ok')
      assert.equal((await a.opencloud.call(b.addr, { service: 'storage', method: 'get', args: [id] })).path, 'client-error/not-found')
    })
  })

  describe('client (bare OpenCloud nodes, so that only the test talks)', () => {
    let server: BareNode
    let client: BareNode

    before(async () => {
      server = await startBareNode({ services: [sha256Service()] })
      client = await startBareNode()
    })

    after(async () => {
      await client?.destroy()
      await server?.destroy()
    })

    it('runs several exchanges on one stream, using the next nonce of every response', async () => {
      for (let i = 0; i < 5; i++) {
        assert.equal((await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode(String(i)) })).path, 'ok')
      }
      const stats = server.opencloud.stats()
      assert.equal(stats.streams, 1)
      // one refresh-nonce for the very first request, none after
      assert.equal(stats.byStatus[Status.REFRESH_NONCE], 1)
      assert.equal(stats.byStatus[Status.OK], 5)
    })

    it('calls concurrently over at most maxStreamsPerPeer streams', async () => {
      const before = server.opencloud.stats().streams
      const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode(String(i)) })))
      assert.ok(results.every(r => r.path === 'ok'))
      assert.ok(server.opencloud.stats().streams - before <= 8)
    })

    it('callOk throws OpenCloudStatusError with the status path', async () => {
      await assert.rejects(a.opencloud.callOk(b.addr, { service: 'nope', method: 'x' }), (err: any) => {
        assert.equal(err.name, 'OpenCloudStatusError')
        assert.equal(err.path, 'client-error/service-unsupported')
        return true
      })
    })
  })

  describe('timeouts and the stream pool', () => {
    /** a server with short timeouts */
    let t: BareNode
    const slow = countingService()

    before(async () => {
      t = await startBareNode({ services: [slow, sha256Service()], messageTimeout: 1_000, idleTimeout: 500 })
    })

    after(async () => {
      await t?.destroy()
    })

    it('a handler that outlives the message timeout is answered with server-error and told to stop', async () => {
      const aborted = slow.counts.get('slow-aborted') ?? 0
      const res = await a.opencloud.call(t.addr, { service: 'counter', method: 'slow' })
      assert.equal(res.path, 'server-error')
      assert.match(res.detail, /too long/)
      assert.equal(slow.counts.get('slow-aborted'), aborted + 1)
    })

    it('a pooled stream the server closed for idleness is replaced, the call succeeds', async () => {
      const c = await startBareNode()
      try {
        assert.equal((await c.opencloud.call(t.addr, { service: 'sha256', method: 'hash' })).path, 'ok')
        const streamsBefore = t.opencloud.stats().streams
        // wait for the server to drop the idle stream (its idle timeout is 500 ms)
        const conn = c.libp2p.getConnections(t.peerId)[0]
        const pooled = (): boolean => conn.streams.some(s => s.protocol === PROTOCOL)
        assert.ok(await eventually(() => !pooled(), 10_000, 50), 'the server kept the idle stream open for 10 s (idle timeout 500 ms)')
        assert.equal((await c.opencloud.call(t.addr, { service: 'sha256', method: 'hash' })).path, 'ok')
        assert.equal(t.opencloud.stats().streams - streamsBefore, 1)
      } finally {
        await c.destroy()
      }
    })

    it('waiting for a stream is bounded by the caller signal, and an abandoned wait loses no wake-up', async () => {
      const c = await startBareNode({ maxStreamsPerPeer: 1 })
      try {
        // warm up: one stream, one nonce
        assert.equal((await c.opencloud.call(t.addr, { service: 'sha256', method: 'hash' })).path, 'ok')
        const started = slow.counts.get('slow') ?? 0
        const busy = c.opencloud.call(t.addr, { service: 'counter', method: 'slow' })
        // the only stream is now busy in the handler
        assert.ok(await eventually(() => (slow.counts.get('slow') ?? 0) > started, 10_000, 10), 'the slow handler never started')
        const opened = t.opencloud.stats().streams
        const abandoned = c.opencloud.call(t.addr, { service: 'sha256', method: 'hash' }, { signal: AbortSignal.timeout(100) })
        const patient = c.opencloud.call(t.addr, { service: 'sha256', method: 'hash' })
        await assert.rejects(within(abandoned, 10_000, 'the abandoned wait outlived its signal'), (err: any) => err.name === 'TimeoutError' || err.name === 'AbortError')
        // the server's message timeout (1 s) ends the busy call; the waiting one then gets the stream
        assert.equal((await within(busy, 10_000, 'the busy call outlived the server\'s message timeout')).path, 'server-error')
        assert.equal((await within(patient, 10_000, 'the waiting call was never woken when the stream came free')).path, 'ok')
        // woken by the release itself, it took the busy call's stream: a lost wake-up would leave it
        // waiting until the server closed that stream for idleness, and then open a new one
        assert.equal(t.opencloud.stats().streams, opened, 'the waiting call opened a stream of its own')
      } finally {
        await c.destroy()
      }
    })
  })
})
