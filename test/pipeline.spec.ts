import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { Uint8ArrayList } from 'uint8arraylist'
import { priceOf } from '../src/protocols/opencloud/api/call.js'
import { QUOTE_VALIDITY, ServiceError } from '../src/protocols/opencloud/api/template.js'
import {
  NonceStore, PaymentType, Reason, Request, Response, Status, createPipeline, runPipeline, defaultPaymentGate, requestDigest, responseDigest,
  statusPath, statusClass, parseStatusPath, statusCode, statusFromCode, isStatus, encodeVarint, decodeVarint, BufferBudget,
  REQUEST_DOMAIN, RESPONSE_DOMAIN, openCloudId, openCloudSigner, openCloudVerifier
} from '../src/protocols/opencloud/index.js'
import { checkNonce, computeUsage, dispatch, resolveService, validateShape, verifySignatures } from '../src/protocols/opencloud/net/pipeline.js'
import { sha256Service } from '../src/services/sha256.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { CallState, Reply, Stage } from '../src/protocols/opencloud/index.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

type Bytes = Uint8Array<ArrayBuffer>
const enc = new TextEncoder()
const text = (b?: Uint8Array): string => new TextDecoder().decode(b)

function request (fields: Partial<Request> = {}): Request {
  return {
    id: [],
    sig: [],
    nonce: new Uint8Array() as Bytes,
    service: 'sha256',
    method: 'hash',
    args: [],
    paymentType: PaymentType.PAYMENT_NONE,
    body: new Uint8Array() as Bytes,
    audience: SELF,
    signResponse: false,
    ...fields
  }
}

/** the OpenCloud ID of the server these stages run in: the audience of its requests */
const SELF = 'oc:server'

async function sign (key: PrivateKey, peer: PeerId, r: Request): Promise<Request> {
  r.id = [openCloudId(peer)]
  r.sig = []
  r.sig = [await key.sign(requestDigest(r)) as Bytes]
  return r
}

describe('pipeline stages', () => {
  let key: PrivateKey
  let peer: PeerId
  const state = (r: Request): CallState => ({ peer, request: r, digest: requestDigest(r), credentials: [], signal: new AbortController().signal })
  const priced: ServiceDefinition = {
    name: 'priced',
    version: '1.0.0',
    description: 'priced methods',
    methods: {
      flat: { description: '10 sat a call', pricing: { base: 10n }, handler: () => ({ body: enc.encode('done') }) },
      bytes: {
        description: '3 sat per 1000 bytes, rounded up',
        units: ['byte'],
        pricing: { rate: 3n, per: 1000n },
        usage: (call) => [BigInt(call.body.byteLength)],
        handler: () => ({})
      },
      free: { description: 'free', handler: () => ({ body: enc.encode('free') }) }
    }
  }

  before(async () => {
    key = await generateKeyPair('Ed25519')
    peer = peerIdFromPrivateKey(key)
  })

  describe('validateShape', () => {
    const stage = validateShape(100)
    const check = (fields: Partial<Request>): Reply | undefined => stage(state(request(fields))) as Reply | undefined

    it('passes a well-formed request', () => {
      assert.equal(check({}), undefined)
    })

    it('too-large for a body over the limit, before anything else', () => {
      assert.equal(check({ body: new Uint8Array(101) as Bytes, service: 'BAD' })?.status, Status.TOO_LARGE)
      assert.equal(check({ body: new Uint8Array(100) as Bytes }), undefined)
    })

    it('bad-request for malformed names, too many or too long args and credentials, odd nonces', () => {
      for (const fields of [
        { service: '' }, { method: '' }, { service: 'Sha256' }, { method: '__proto__' }, { service: 'a'.repeat(65) },
        { args: Array.from({ length: 33 }, () => 'x') }, { args: ['x'.repeat(1025)] },
        { id: Array.from({ length: 9 }, () => 'oc:x'), sig: Array.from({ length: 9 }, () => new Uint8Array(64) as Bytes) },
        // btc: signatures are costly to verify: at most two per request
        { id: ['oc:x', 'btc:a', 'btc:b', 'btc:c'], sig: Array.from({ length: 4 }, () => new Uint8Array(64) as Bytes) },
        { id: ['oc:' + 'x'.repeat(300)], sig: [new Uint8Array(64) as Bytes] },
        { id: ['oc:x'], sig: [new Uint8Array(2000) as Bytes] },
        { nonce: new Uint8Array(15) as Bytes }, { nonce: new Uint8Array(17) as Bytes },
        { payment: { currency: 'B'.repeat(300), amount: 1n, txn: new Uint8Array() as Bytes, deferId: '', deferThreshold: '' } }
      ] satisfies Array<Partial<Request>>) {
        assert.equal(check(fields)?.status, Status.BAD_REQUEST, JSON.stringify(Object.keys(fields)))
      }
    })

    it('invalid-signature when credentials and signatures do not pair up', () => {
      assert.equal(check({ id: ['oc:x', 'oc:y'], sig: [new Uint8Array(64) as Bytes] })?.status, Status.INVALID_SIGNATURE)
    })
  })

  describe('verifySignatures', () => {
    const stage = verifySignatures([openCloudVerifier], true, SELF)

    it('accepts a request signed by its credential and records the credential', async () => {
      const s = state(await sign(key, peer, request()))
      assert.equal(await stage(s), undefined)
      assert.deepEqual(s.credentials, [openCloudId(peer)])
    })

    it('access-denied without a credential when credentials are required; passes when not', async () => {
      assert.equal((await stage(state(request())))?.status, Status.ACCESS_DENIED)
      assert.equal(await verifySignatures([openCloudVerifier], false, SELF)(state(request())), undefined)
    })

    it('invalid-signature for a changed field, a signature by another key, an unknown credential kind', async () => {
      const r = await sign(key, peer, request({ body: enc.encode('x') as Bytes }))
      r.body = enc.encode('y') as Bytes
      assert.equal((await stage(state(r)))?.status, Status.INVALID_SIGNATURE)
      const other = await generateKeyPair('Ed25519')
      const forged = request()
      forged.id = [openCloudId(peer)]
      forged.sig = [await other.sign(requestDigest(forged)) as Bytes]
      assert.equal((await stage(state(forged)))?.status, Status.INVALID_SIGNATURE)
      const btc = request({ id: ['btc:bc1qxyz'], sig: [new Uint8Array(64) as Bytes] })
      assert.equal((await stage(state(btc)))?.status, Status.INVALID_SIGNATURE)
    })
  })

  describe('checkNonce', () => {
    it('refresh-nonce for a missing, unknown or used nonce; passes a fresh one once', () => {
      const nonces = new NonceStore()
      const stage = checkNonce(nonces)
      assert.equal((stage(state(request())) as Reply).status, Status.REFRESH_NONCE)
      const n = nonces.issue(peer.toString())
      assert.equal(stage(state(request({ nonce: n as Bytes }))), undefined)
      assert.equal((stage(state(request({ nonce: n as Bytes }))) as Reply).status, Status.REFRESH_NONCE)
    })
  })

  describe('resolveService', () => {
    const stage = resolveService(new Map([['sha256', sha256Service()], ['priced', priced]]))

    it('finds service, method and the template methods', () => {
      const s = state(request())
      assert.equal(stage(s), undefined)
      assert.equal(s.methodName, 'hash')
      assert.ok(s.method != null)
      const t = state(request({ method: 'quote' }))
      assert.equal(stage(t), undefined)
      assert.equal(t.method, undefined)
      assert.equal(t.methodName, 'quote')
    })

    it('service-unsupported and method-unsupported, also for inherited property names', () => {
      assert.equal((stage(state(request({ service: 'nope' }))) as Reply).status, Status.SERVICE_UNSUPPORTED)
      assert.equal((stage(state(request({ service: 'constructor' }))) as Reply).status, Status.SERVICE_UNSUPPORTED)
      for (const method of ['nope', 'constructor', 'tostring', 'valueof']) {
        assert.equal((stage(state(request({ method }))) as Reply).status, Status.METHOD_UNSUPPORTED, method)
      }
    })
  })

  describe('payment gate and pricing', () => {
    const resolve = resolveService(new Map([['priced', priced]]))
    const gate = async (fields: Partial<Request>): Promise<Reply | undefined> => {
      const s = state(request({ service: 'priced', ...fields }))
      assert.equal(resolve(s), undefined)
      // the pipeline's order: the usage stage right after the method is resolved
      assert.equal(computeUsage(s), undefined)
      return defaultPaymentGate(s) as Reply | undefined
    }

    it('serves free methods and template methods for payment none', async () => {
      assert.equal(await gate({ method: 'free' }), undefined)
      assert.equal(await gate({ method: 'quote' }), undefined)
    })

    it('too-low with the acceptable payment for a priced method and payment none', async () => {
      const flat = await gate({ method: 'flat' })
      assert.equal(flat?.status, Status.TOO_LOW)
      assert.deepEqual(flat?.acceptablePayment, { paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: 10n })
      // 3 sat per 1000 bytes, rounded up: 1001 bytes cost 4 sat
      const bytes = await gate({ method: 'bytes', body: new Uint8Array(1001) as Bytes })
      assert.equal(bytes?.acceptablePayment?.amount, 4n)
      // zero units of a rate-only method cost nothing: served
      assert.equal(await gate({ method: 'bytes' }), undefined)
    })

    it('payment-declined without a payment backend, for attached and defer', async () => {
      for (const paymentType of [PaymentType.PAYMENT_ATTACHED, PaymentType.PAYMENT_DEFER]) {
        const r = await gate({ method: 'free', paymentType })
        assert.equal(r?.status, Status.PAYMENT_DECLINED)
        assert.equal(r?.reason, Reason.REASON_NO_PAYMENT_BACKEND)
        assert.match(r?.detail ?? '', /no payment backend/)
      }
    })

    it('priceOf is exact integer arithmetic, rounds up, and reports amounts beyond uint64 as unpriceable', () => {
      const m = priced.methods.bytes
      assert.equal(priceOf(m, [0n])?.total, 0n)
      assert.equal(priceOf(m, [1n])?.total, 1n)
      assert.equal(priceOf(m, [1000n])?.total, 3n)
      assert.equal(priceOf(m, [1001n])?.total, 4n)
      assert.equal(priceOf(m, [10n ** 30n]), undefined)
    })
  })

  describe('dispatch', () => {
    const call = async (def: ServiceDefinition, method: string): Promise<Reply | undefined> => {
      const s = state(request({ service: def.name, method }))
      assert.equal(resolveService(new Map([[def.name, def]]))(s), undefined)
      return dispatch(10)(s)
    }
    const odd: ServiceDefinition = {
      name: 'odd',
      version: '1.0.0',
      description: 'misbehaving handlers',
      methods: {
        big: { description: 'too big a body', handler: () => ({ body: new Uint8Array(11) }) },
        status: { description: 'unknown status', handler: () => ({ status: 'NOPE' as any }) },
        ok: { description: 'ok', handler: () => ({ body: enc.encode('fine') }) }
      }
    }

    it('runs the handler and returns its answer', async () => {
      const r = await call(odd, 'ok')
      assert.equal(r?.status, Status.OK)
      assert.equal(text(r?.body), 'fine')
    })

    it('throws (→ server-error in the server) for a body over the limit or an unknown status', async () => {
      await assert.rejects(call(odd, 'big'))
      await assert.rejects(call(odd, 'status'))
    })

    it('quote is computed from the method pricing', async () => {
      const s = state(request({ service: 'priced', method: 'quote', args: ['bytes', '2500'] }))
      assert.equal(resolveService(new Map([['priced', priced]]))(s), undefined)
      const r = await dispatch(1000)(s)
      const { validUntil, ...quote } = JSON.parse(text(r?.body))
      assert.deepEqual(quote, { service: 'priced', method: 'bytes', currency: 'BTC', units: { byte: '2500' }, base: '0', usage: '8', amount: '8' })
      assert.ok(validUntil >= Date.now() + QUOTE_VALIDITY - 60_000, 'valid for QUOTE_VALIDITY')
    })
  })

  describe('createPipeline / runPipeline', () => {
    it('runs stages in order and stops at the first answer', async () => {
      const seen: string[] = []
      const mark = (name: string, reply?: Reply): Stage => () => { seen.push(name); return reply }
      const r = await runPipeline([mark('a'), mark('b', { status: Status.RATE_LIMITED }), mark('c')], state(request()))
      assert.equal(r.status, Status.RATE_LIMITED)
      assert.deepEqual(seen, ['a', 'b'])
    })

    it('calls the access and reputation hooks after validation and before payment', async () => {
      const seen: string[] = []
      const nonces = new NonceStore()
      const stages = createPipeline({
        self: SELF,
        services: new Map([['priced', priced]]),
        nonces,
        verifiers: [openCloudVerifier],
        maxBodySize: 100,
        requireCredentials: true,
        access: () => { seen.push('access'); return undefined },
        reputation: () => { seen.push('reputation'); return undefined },
        payment: (s) => { seen.push('payment'); return defaultPaymentGate(s) }
      })
      const r = await sign(key, peer, request({ service: 'priced', method: 'flat', nonce: nonces.issue(peer.toString()) as Bytes }))
      const reply = await runPipeline(stages, state(r))
      assert.equal(reply.status, Status.TOO_LOW)
      assert.deepEqual(seen, ['access', 'reputation', 'payment'])
      // a request that fails validation never reaches the hooks
      seen.length = 0
      const bad = await runPipeline(stages, state(request({ service: 'priced', method: 'flat' })))
      assert.equal(bad.status, Status.ACCESS_DENIED)
      assert.deepEqual(seen, [])
    })

    it('a method\'s precheck runs after usage and before payment: a refusal is answered and nothing is charged', async () => {
      const seen: string[] = []
      const nonces = new NonceStore()
      const checked: ServiceDefinition = {
        name: 'checked',
        version: '1.0.0',
        description: 'a priced method that can tell it cannot serve a call',
        methods: {
          get: {
            description: '10 sat a call, for ids it has',
            units: ['byte'],
            pricing: { base: 10n },
            usage: (call) => { seen.push('usage'); return [BigInt(call.body.byteLength)] },
            precheck: (call) => {
              seen.push('precheck')
              if (call.args[0] === 'thrown') { throw new ServiceError(Status.BAD_REQUEST, 'bad range') }
              return call.args[0] === 'have' ? undefined : { status: Status.NOT_FOUND, detail: `no ${call.args[0]}` }
            },
            handler: () => { seen.push('handler'); return { body: enc.encode('here') } }
          }
        }
      }
      const stages = createPipeline({
        self: SELF,
        services: new Map([['checked', checked]]),
        nonces,
        verifiers: [openCloudVerifier],
        maxBodySize: 100,
        requireCredentials: true,
        payment: (s) => { seen.push('payment'); return undefined }
      })
      const call = async (arg: string): Promise<Reply> => {
        const r = await sign(key, peer, request({ service: 'checked', method: 'get', args: [arg], nonce: nonces.issue(peer.toString()) as Bytes }))
        return runPipeline(stages, state(r))
      }
      const missing = await call('other')
      assert.deepEqual([missing.status, missing.detail], [Status.NOT_FOUND, 'no other'])
      assert.deepEqual(seen, ['usage', 'precheck'], 'the payment gate never saw it')
      seen.length = 0
      const thrown = await call('thrown')
      assert.deepEqual([thrown.status, thrown.detail], [Status.BAD_REQUEST, 'bad range'])
      assert.deepEqual(seen, ['usage', 'precheck'])
      seen.length = 0
      const ok = await call('have')
      assert.equal(ok.status, Status.OK)
      assert.deepEqual(seen, ['usage', 'precheck', 'payment', 'handler'])
    })
  })
})

describe('signing', () => {
  it('the OpenCloud ID signer and verifier agree with libp2p keys both ways', async () => {
    const key = await generateKeyPair('Ed25519')
    const peer = peerIdFromPrivateKey(key)
    const signer = openCloudSigner(key, peer)
    const d = createHash('sha256').update('digest').digest()
    const ours = await signer.sign(d)
    assert.equal(signer.credential, openCloudId(peer))
    assert.deepEqual(Buffer.from(ours), Buffer.from(await key.sign(d)), 'Ed25519 signatures are deterministic')
    assert.equal(await key.publicKey.verify(d, ours), true)
    assert.equal(await openCloudVerifier.verify(openCloudId(peer), d, await key.sign(d)), true)
    const bad = new Uint8Array(ours)
    bad[10] ^= 1
    assert.equal(await openCloudVerifier.verify(openCloudId(peer), d, bad), false)
    assert.equal(await openCloudVerifier.verify(openCloudId(peer), d, ours.subarray(0, 63)), false)
    assert.equal(await openCloudVerifier.verify('oc:garbage', d, ours), false)
  })

  it('secp256k1 OpenCloud IDs sign and verify through libp2p keys', async () => {
    const key = await generateKeyPair('secp256k1')
    const peer = peerIdFromPrivateKey(key)
    const d = createHash('sha256').update('digest').digest()
    const sig = await openCloudSigner(key, peer).sign(d)
    assert.equal(await openCloudVerifier.verify(openCloudId(peer), d, sig), true)
    assert.equal(await openCloudVerifier.verify(openCloudId(peer), createHash('sha256').update('other').digest(), sig), false)
  })

  it('the request digest is SHA-256(domain, 0, request with sig empty and body replaced by its SHA-256)', () => {
    const body = enc.encode('some body')
    const r = request({ body: body as Bytes, id: ['oc:x'], sig: [new Uint8Array([1, 2, 3]) as Bytes] })
    const encoded = Request.encode({ ...r, sig: [], body: createHash('sha256').update(body).digest() as Bytes })
    const expected = createHash('sha256').update(REQUEST_DOMAIN).update(new Uint8Array([0])).update(encoded).digest()
    assert.deepEqual(Buffer.from(requestDigest(r)), expected)
    // signatures are not covered; every other field is
    assert.deepEqual(requestDigest({ ...r, sig: [] }), requestDigest(r))
    assert.notDeepEqual(requestDigest({ ...r, args: ['a'] }), requestDigest(r))
    assert.notDeepEqual(requestDigest({ ...r, nonce: new Uint8Array(16) as Bytes }), requestDigest(r))
    // the audience is signed: a request cannot be readdressed to another server
    assert.notDeepEqual(requestDigest({ ...r, audience: 'oc:other' }), requestDigest(r))
    assert.equal(REQUEST_DOMAIN, 'opencloud/1.1.0 request')
  })

  it('the response digest is built the same way under the response domain, request_digest included', () => {
    const body = enc.encode('answer')
    const res: Response = {
      id: ['oc:server'],
      sig: [new Uint8Array(64) as Bytes],
      nonce: new Uint8Array(16) as Bytes,
      status: Status.OK,
      detail: '',
      body: body as Bytes,
      nextNonce: new Uint8Array(16).fill(1) as Bytes,
      requestDigest: new Uint8Array(32).fill(2) as Bytes,
      reason: Reason.REASON_UNSPECIFIED,
      audience: 'oc:client'
    }
    const encoded = Response.encode({ ...res, sig: [], body: createHash('sha256').update(body).digest() as Bytes })
    const expected = createHash('sha256').update(RESPONSE_DOMAIN).update(new Uint8Array([0])).update(encoded).digest()
    assert.deepEqual(Buffer.from(responseDigest(res)), expected)
    assert.notDeepEqual(responseDigest({ ...res, requestDigest: new Uint8Array(32) as Bytes }), responseDigest(res))
    // the reason is signed like every field
    assert.notDeepEqual(responseDigest({ ...res, reason: Reason.REASON_TAB_SETTLED }), responseDigest(res))
    // so is the client it answers
    assert.notDeepEqual(responseDigest({ ...res, audience: 'oc:other' }), responseDigest(res))
    assert.notEqual(REQUEST_DOMAIN, RESPONSE_DOMAIN)
  })
})

describe('status codes', () => {
  it('paths, classes and codes of every status', () => {
    assert.equal(statusPath(Status.TOO_LOW), 'request-declined/payment-declined/too-low')
    assert.equal(statusPath(311), 'request-declined/payment-declined/too-low')
    assert.equal(statusPath(999), 'unknown-999')
    assert.equal(statusClass(Status.OK), 'ok')
    assert.equal(statusClass(Status.NOT_FOUND), 'client-error')
    assert.equal(statusClass(Status.INSUFFICIENT_STORAGE), 'server-error')
    assert.equal(statusClass(Status.REFRESH_NONCE), 'request-declined')
    assert.equal(statusClass(Status.NO_DEFER), 'request-declined')
    assert.equal(statusCode(Status.RATE_LIMITED), 303)
    assert.equal(statusFromCode(106), Status.TOO_LARGE)
    assert.equal(isStatus('OK'), true)
    assert.equal(isStatus('codec'), false)
    for (const s of Object.values(Status).filter(isStatus)) {
      assert.equal(parseStatusPath(statusPath(s)), s)
      assert.equal(statusFromCode(statusCode(s)), s)
    }
  })

  it('every status survives the wire', () => {
    for (const s of Object.values(Status).filter(isStatus)) {
      assert.equal(Response.decode(Response.encode({ status: s } as any)).status, s)
    }
  })
})

describe('framing helpers', () => {
  it('varint round trip at the edges', () => {
    for (const n of [0, 1, 127, 128, 16_383, 16_384, 4 * 1024 * 1024 + 64 * 1024, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      assert.equal(decodeVarint(encodeVarint(n)), n)
      assert.equal(decodeVarint(new Uint8ArrayList(encodeVarint(n))), n)
    }
    assert.deepEqual([...encodeVarint(300)], [0xac, 0x02])
  })

  it('BufferBudget enforces per-peer and total limits', () => {
    const b = new BufferBudget({ perPeer: 10, total: 15 })
    assert.equal(b.charge('a', 10), true)
    assert.equal(b.charge('a', 1), false)
    assert.equal(b.charge('a', -1), true)
    assert.equal(b.charge('b', 6), false, 'total exceeded')
    assert.equal(b.charge('b', -6), true)
    assert.equal(b.charge('a', -10), true)
    assert.equal(b.usage(), 0)
    assert.equal(b.peerCount, 0)
  })
})
