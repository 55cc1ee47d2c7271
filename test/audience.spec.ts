/**
 * OpenCloud 1.1 (docs/protocol.md §4, §5, "Versions"): signed requests name
 * the server they are meant for, responses the client they answer; requests
 * go unsigned unless they are evidence; responses are signed when they are
 * evidence or asked for; 1.0.0 is no longer served. Real nodes over
 * 127.0.0.1; the relay case runs against a seller with real tabs on a real
 * regtest chain.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { FrameReader, MAX_FRAME_SIZE, NONCE_LENGTH, PROTOCOL, PaymentType, Reason, Request, Response, Status, openCloudId, verifyResponse } from '../src/protocols/opencloud/index.js'
import { sha256Service } from '../src/services/sha256.js'
import { startNode } from './fixtures.js'
import { RawStream, signedRequest, startBareNode, startKeyedNode } from './protocol-fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { BareNode, KeyedNode } from './protocol-fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { CallState, Stage } from '../src/protocols/opencloud/index.js'
import type { Libp2p } from 'libp2p'

type Bytes = Uint8Array<ArrayBuffer>
const enc = new TextEncoder()

/** An unsigned request on the connection's own OpenCloud ID */
function unsigned (from: { openCloudId: string }, fields: Partial<Request>): Request {
  return {
    id: [from.openCloudId],
    sig: [],
    nonce: new Uint8Array() as Bytes,
    service: 'sha256',
    method: 'hash',
    args: [],
    paymentType: PaymentType.PAYMENT_NONE,
    body: new Uint8Array() as Bytes,
    audience: '',
    signResponse: false,
    ...fields
  }
}

/** A nonce `raw`'s node holds from the server (asked with an unsigned request without one) */
async function nonceOf (raw: RawStream, from: { openCloudId: string }): Promise<Uint8Array> {
  const res = await raw.exchange(unsigned(from, {}))
  assert.equal(res.status, Status.REFRESH_NONCE)
  assert.equal(res.nextNonce.byteLength, NONCE_LENGTH)
  return res.nextNonce
}

describe('OpenCloud 1.1: audiences and evidence-only signatures', function () {
  this.timeout(120_000)

  describe('signing rules between real nodes', () => {
    /** what the server saw of each call: was it signed, how many signatures */
    const seen: Array<{ method: string, signed: boolean | undefined, sigs: number }> = []
    /** methods for which the server's policy demands a signature */
    const demand = new Set<string>()
    const access: Stage = (state: CallState) => {
      seen.push({ method: state.request.method, signed: state.signed, sigs: state.request.sig.length })
      if (demand.has(state.request.method) && state.signed !== true) {
        return { status: Status.ACCESS_DENIED, reason: Reason.REASON_SIGNATURE_REQUIRED, detail: 'sign this one' }
      }
      return undefined
    }
    let server: BareNode
    let client: BareNode

    before(async () => {
      const priced: ServiceDefinition = {
        name: 'priced',
        version: '1.0.0',
        description: 'one priced method',
        methods: { hash: { description: '7 sat a call', pricing: { base: 7n }, handler: () => ({ body: new Uint8Array(32) }) } }
      }
      server = await startBareNode({ services: [sha256Service(), priced], access })
      client = await startBareNode()
    })

    after(async () => {
      await client?.destroy()
      await server?.destroy()
    })

    it('a free call goes unsigned and is answered unsigned: the channel authenticates both ends', async () => {
      seen.length = 0
      const res = await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode('x') })
      assert.equal(res.status, Status.OK)
      assert.equal(res.signed, false)
      assert.equal(res.response.sig.length, 0)
      assert.equal(res.response.requestDigest.byteLength, 0)
      // still named: the server first, the client as the audience
      assert.equal(res.signer, server.openCloudId)
      assert.equal(res.response.audience, client.openCloudId)
      // an unsigned response is no evidence
      assert.equal(await verifyResponse(res), false)
      const served = seen.filter(s => s.method === 'hash')
      assert.ok(served.length >= 1)
      for (const s of served) {
        assert.equal(s.sigs, 0)
        assert.equal(s.signed, false)
      }
    })

    it('sign: true and signResponse: true sign the request and the response', async () => {
      seen.length = 0
      const res = await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode('x'), sign: true, signResponse: true })
      assert.equal(res.status, Status.OK)
      assert.equal(res.signed, true)
      assert.equal(res.response.requestDigest.byteLength, 32)
      assert.equal(await verifyResponse(res), true)
      assert.deepEqual(seen.at(-1), { method: 'hash', signed: true, sigs: 1 })
    })

    it('evidence is signed unasked: a quote, and a too-low with its price', async () => {
      const quote = await client.opencloud.call(server.addr, { service: 'priced', method: 'quote', args: ['hash'] })
      assert.equal(quote.status, Status.OK)
      assert.equal(quote.signed, true)
      assert.equal(await verifyResponse(quote), true)
      const body = JSON.parse(new TextDecoder().decode(quote.body))
      assert.equal(body.amount, '7')
      assert.equal(typeof body.validUntil, 'number')
      const tooLow = await client.opencloud.call(server.addr, { service: 'priced', method: 'hash' })
      assert.equal(tooLow.status, Status.TOO_LOW)
      assert.equal(tooLow.acceptablePayment?.amount, 7n)
      assert.equal(tooLow.signed, true)
      assert.equal(await verifyResponse(tooLow), true)
    })

    it('a payment is always signed, and so is its answer', async () => {
      seen.length = 0
      const res = await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', paymentType: PaymentType.PAYMENT_DEFER, payment: { currency: 'BTC', amount: 1n, txn: new Uint8Array() as Bytes, deferId: 'd1', deferThreshold: '' } })
      // this node has no payment backend
      assert.equal(res.status, Status.PAYMENT_DECLINED)
      assert.equal(res.signed, true)
      assert.deepEqual(seen.at(-1), { method: 'hash', signed: true, sigs: 1 })
    })

    it('a policy may demand a signature: the client signs and sends again', async () => {
      demand.add('hash')
      try {
        seen.length = 0
        const res = await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body: enc.encode('y') })
        assert.equal(res.status, Status.OK)
        const hashes = seen.filter(s => s.method === 'hash')
        assert.deepEqual(hashes.map(s => s.signed), [false, true])
      } finally {
        demand.delete('hash')
      }
    })

    it('raw: an unsigned payment, an unsigned foreign credential and a wrong audience are refused, burning no nonce', async () => {
      const raw = await RawStream.open(client, server)
      try {
        let nonce = await nonceOf(raw, client)
        const payment = await raw.exchange(unsigned(client, { nonce: nonce as Bytes, paymentType: PaymentType.PAYMENT_ATTACHED, payment: { currency: 'BTC', amount: 1n, txn: new Uint8Array(1) as Bytes, deferId: '', deferThreshold: '' } }))
        assert.equal(payment.status, Status.ACCESS_DENIED)
        assert.equal(payment.reason, Reason.REASON_SIGNATURE_REQUIRED)
        const foreign = await raw.exchange(unsigned(client, { id: [server.openCloudId], nonce: nonce as Bytes }))
        assert.equal(foreign.status, Status.INVALID_SIGNATURE)
        const elsewhere = await raw.exchange(unsigned(client, { audience: openCloudId(client.peerId), nonce: nonce as Bytes }))
        assert.equal(elsewhere.status, Status.INVALID_SIGNATURE)
        assert.equal(elsewhere.reason, Reason.REASON_WRONG_AUDIENCE)
        const signedNoAudience = await raw.exchange(await signedRequest(client.key, { service: 'sha256', method: 'hash', nonce }))
        assert.equal(signedNoAudience.status, Status.INVALID_SIGNATURE)
        assert.equal(signedNoAudience.reason, Reason.REASON_WRONG_AUDIENCE)
        // none of these consumed the nonce
        const ok = await raw.exchange(unsigned(client, { nonce: nonce as Bytes, audience: server.openCloudId }))
        assert.equal(ok.status, Status.OK)
        // the response names this client, and is unsigned (nothing asked it to be signed)
        assert.equal(ok.audience, client.openCloudId)
        assert.equal(ok.sig.length, 0)
        nonce = ok.nextNonce
        // an unsigned request may leave its audience empty
        assert.equal((await raw.exchange(unsigned(client, { nonce: nonce as Bytes }))).status, Status.OK)
      } finally {
        await raw.close()
      }
    })

    it('the client refuses a response addressed to another client', async () => {
      const liar = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
      try {
        const id = openCloudId(liar.peerId)
        await liar.handle(PROTOCOL, (stream) => {
          const frames = new FrameReader(stream, { maxFrameSize: MAX_FRAME_SIZE })
          void (async () => {
            for (let f = await frames.read(); f != null; f = await frames.read()) {
              // a genuine-looking answer, but for another client (e.g. one replayed from elsewhere)
              await frames.write(Response.encode({ id: [id], sig: [], nonce: Request.decode(f).nonce, status: Status.OK, detail: '', body: enc.encode('not yours') as Bytes, nextNonce: new Uint8Array(NONCE_LENGTH) as Bytes, requestDigest: new Uint8Array() as Bytes, reason: Reason.REASON_UNSPECIFIED, audience: server.openCloudId }))
            }
          })().catch((err: Error) => { stream.abort(err) })
        })
        await assert.rejects(client.opencloud.call(liar.getMultiaddrs()[0], { service: 'sha256', method: 'hash' }), { name: 'InvalidResponseSignatureError', message: /addressed to/ })
      } finally {
        await liar.stop()
      }
    })

    it('/opencloud/1.0.0 is no longer served', async () => {
      await assert.rejects(client.libp2p.dialProtocol(multiaddr(server.addr), '/opencloud/1.0.0'), { name: 'UnsupportedProtocolError' })
      assert.equal(PROTOCOL, '/opencloud/1.1.0')
    })
  })

  describe('the relay attack (issue: a signed request bound to its server)', () => {
    let chain: EmbeddedChain
    /** A: a seller that takes promises (payments on, no policy: every signed call may be deferred) */
    let a: TestNode
    /** V: the buyer whose promise R tries to book at A */
    let v: KeyedNode
    /** R: a malicious seller that hands V one of A's nonces and relays V's signed request to A */
    let r: Libp2p
    let toA: RawStream
    /** how R treats V's request before relaying it */
    let mode: 'as-is' | 'readdress' = 'as-is'
    /** A's answers to what R relayed */
    const relayed: Response[] = []
    const body = randomBytes(64)

    before(async () => {
      chain = await startRegtest()
      a = await startNode({ payments: { chain, fulfilment: false }, policy: false, storage: { pricing: { put: { base: 1n } } } })
      v = await startKeyedNode()
      r = await createLibp2p({ addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] }, transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
      const rId = openCloudId(r.peerId)
      toA = await RawStream.open({ libp2p: r }, a)
      await r.handle(PROTOCOL, (stream, connection) => {
        const frames = new FrameReader(stream, { maxFrameSize: MAX_FRAME_SIZE })
        void (async () => {
          for (let f = await frames.read(); f != null; f = await frames.read()) {
            const request = Request.decode(f)
            let answer: Response
            if (request.nonce.byteLength === 0) {
              // hand the buyer a nonce A issued to R
              const aNonce = await nonceOf(toA, { openCloudId: rId })
              answer = { id: [rId], sig: [], nonce: new Uint8Array() as Bytes, status: Status.REFRESH_NONCE, detail: '', body: new Uint8Array() as Bytes, nextNonce: aNonce as Bytes, requestDigest: new Uint8Array() as Bytes, reason: Reason.REASON_NONCE_MISSING, audience: openCloudId(connection.remotePeer) }
            } else {
              const out = mode === 'readdress' ? { ...request, audience: a.openCloudId } : request
              answer = await toA.exchange(out)
              relayed.push(answer)
            }
            await frames.write(Response.encode(answer))
          }
        })().catch((err: Error) => { stream.abort(err) })
      })
    })

    after(async () => {
      await toA?.close()
      await r?.stop()
      await v?.destroy()
      await a?.destroy()
      await chain?.close()
    })

    const promise = (deferId: string): Parameters<KeyedNode['opencloud']['call']>[1] => ({
      service: 'storage',
      method: 'put',
      body,
      paymentType: PaymentType.PAYMENT_DEFER,
      payment: { currency: 'BTC', amount: 1n, txn: new Uint8Array() as Bytes, deferId, deferThreshold: '' }
    })

    async function tabsOfV (): Promise<number> {
      const tabs = []
      for await (const tab of a.payments?.tabs.tabsOf(v.openCloudId) ?? []) { tabs.push(tab) }
      return tabs.length
    }

    it('V\'s promise to R, relayed to A with A\'s nonce, is refused and books nothing; A\'s answer to R is refused by V', async () => {
      const tabsBefore = await tabsOfV()
      for (const m of ['as-is', 'readdress'] as const) {
        mode = m
        relayed.length = 0
        // V's client refuses the relayed answer: it names A, not R, and is addressed to R, not V
        await assert.rejects(v.opencloud.call(multiaddr(`${r.getMultiaddrs()[0].toString()}`), promise(`relay-${m}`)), { name: 'InvalidResponseSignatureError' })
        assert.equal(relayed.length, 1, `R relayed V's signed promise (${m})`)
        const [answer] = relayed
        assert.equal(answer.status, Status.INVALID_SIGNATURE, `${m}: ${answer.detail}`)
        if (m === 'as-is') {
          // addressed to R: refused before any signature is checked
          assert.equal(answer.reason, Reason.REASON_WRONG_AUDIENCE)
        }
        // A signed its refusal (a payment was offered) for R, its client
        assert.equal(answer.audience, openCloudId(r.peerId))
        assert.equal(await tabsOfV(), tabsBefore, `no tab booked for V (${m})`)
      }
      // the nonce R handed on was not burnt: the refusal came before the nonce stage
      // (checked with a fresh one here, then reused below)
      const nonce = await nonceOf(toA, { openCloudId: openCloudId(r.peerId) })
      assert.equal((await toA.exchange(unsigned({ openCloudId: openCloudId(r.peerId) }, { nonce: nonce as Bytes, audience: 'oc:someone-else' }))).reason, Reason.REASON_WRONG_AUDIENCE)
      assert.equal((await toA.exchange(unsigned({ openCloudId: openCloudId(r.peerId) }, { nonce: nonce as Bytes }))).status, Status.OK)
    })

    it('the same promise made to A directly is booked (the relay failed only for its audience)', async () => {
      const res = await v.opencloud.call(multiaddr(a.addr), promise('direct'))
      assert.equal(res.status, Status.OK, `${res.path} ${res.detail}`)
      assert.equal(res.signed, true)
      assert.equal(res.response.audience, v.openCloudId)
      assert.equal(await verifyResponse(res), true)
      const tab = await a.payments?.tabs.get(v.openCloudId, 'direct')
      assert.ok(tab != null, 'A booked the promise on V\'s tab')
    })
  })
})
