import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { PaymentType, Reason, Request, Response, Status, verifyResponse } from '../src/protocols/opencloud/index.js'
import { SPLIT_BODY_SIZE, encodeRequest, encodeResponse } from '../src/protocols/opencloud/net/encode.js'
import { parsePutAnswer } from '../src/services/storage/client.js'
import { startNode } from './fixtures.js'
import { startBareNode } from './protocol-fixtures.js'
import type { TestNode } from './fixtures.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { Uint8ArrayList } from 'uint8arraylist'

type Bytes = Uint8Array<ArrayBuffer>

/** `o` without its undefined properties (what a decoder yields for an absent optional field) */
const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T

const bytes = (n: number): Bytes => new Uint8Array(randomBytes(n))

function asList (encoded: Uint8Array | Uint8ArrayList): Uint8ArrayList {
  assert.ok(!(encoded instanceof Uint8Array), 'a large body is encoded as pieces, not copied into one buffer')
  return encoded
}

const baseRequest = (body: Bytes): Request => ({
  id: ['oc:a', '', 'btc:b'],
  sig: [bytes(64), new Uint8Array(0) as Bytes],
  nonce: bytes(32),
  service: 'storage',
  method: 'put',
  args: ['x', '', 'y'],
  paymentType: PaymentType.PAYMENT_DEFER,
  payment: { currency: 'BTC', amount: 7n, txn: new Uint8Array(0) as Bytes, deferId: 'tab', deferThreshold: '10' },
  body,
  audience: 'oc:server',
  signResponse: true
})

const baseResponse = (body: Bytes): Response => ({
  id: ['oc:server'],
  sig: [bytes(64)],
  nonce: bytes(32),
  status: Status.TOO_LOW,
  detail: 'costs 3 sat',
  body,
  nextNonce: bytes(32),
  acceptablePayment: { paymentType: PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount: 3n },
  requestDigest: bytes(32),
  reason: Reason.REASON_PRICE,
  audience: 'oc:client'
})

describe('bulk path', function () {
  this.timeout(120_000)

  describe('encoding a large body without copying it', () => {
    it('a request is the canonical encoding byte for byte, and its body is the caller\'s buffer', () => {
      const body = bytes(SPLIT_BODY_SIZE + 5)
      const variants: Request[] = [
        baseRequest(body),
        { ...baseRequest(body), audience: '', signResponse: false },
        { ...baseRequest(body), payment: undefined, paymentType: PaymentType.PAYMENT_NONE, id: [], sig: [], nonce: new Uint8Array(0) as Bytes },
        { ...baseRequest(body), signResponse: false }
      ]
      for (const request of variants) {
        const list = asList(encodeRequest(request))
        assert.deepEqual(Buffer.from(list.subarray()), Buffer.from(Request.encode(request)))
        assert.ok([...list].some(b => b === body), 'the body buffer itself is one of the pieces')
        assert.deepEqual(Request.decode(list), defined(request))
      }
    })

    it('a response is the canonical encoding byte for byte, and its body is the caller\'s buffer', () => {
      const body = bytes(4 * 1024 * 1024)
      const variants: Response[] = [
        baseResponse(body),
        { ...baseResponse(body), acceptablePayment: undefined, reason: Reason.REASON_UNSPECIFIED, requestDigest: new Uint8Array(0) as Bytes, sig: [], status: Status.OK, detail: '' },
        { ...baseResponse(body), audience: '', nextNonce: new Uint8Array(0) as Bytes }
      ]
      for (const response of variants) {
        const list = asList(encodeResponse(response))
        assert.deepEqual(Buffer.from(list.subarray()), Buffer.from(Response.encode(response)))
        assert.ok([...list].some(b => b === body), 'the body buffer itself is one of the pieces')
        assert.deepEqual(Response.decode(list), defined(response))
      }
    })

    it('a small body is encoded in one buffer, as before', () => {
      const small = bytes(100)
      assert.ok(encodeRequest(baseRequest(small)) instanceof Uint8Array)
      assert.ok(encodeResponse(baseResponse(small)) instanceof Uint8Array)
    })
  })

  describe('4 MiB bodies between real nodes', () => {
    let a: TestNode
    let b: TestNode
    before(async () => {
      [a, b] = await Promise.all([startNode(), startNode()])
    })
    after(async () => {
      await Promise.all([a?.destroy(), b?.destroy()])
    })

    it('storage.put and get of a 4 MiB body, unsigned and signed (the signature covers the split encoding)', async () => {
      for (const sign of [false, true]) {
        const blob = bytes(4 * 1024 * 1024)
        const id = createHash('sha256').update(blob).digest('hex')
        const put = await a.opencloud.call(b.addr, { service: 'storage', method: 'put', body: blob, sign, signResponse: sign })
        assert.equal(put.path, 'ok')
        assert.equal(parsePutAnswer(put.body).id, id)
        const got = await a.opencloud.call(b.addr, { service: 'storage', method: 'get', args: [id], signResponse: sign })
        assert.equal(got.path, 'ok')
        assert.equal(got.signed, sign)
        assert.equal(await verifyResponse(got), sign)
        assert.ok(Buffer.from(got.body).equals(blob))
      }
    })

    it('a handler that first reads its signal after the processing deadline finds it aborted (the signal is made on demand)', async () => {
      let report: (aborted: boolean) => void = () => {}
      const seen = new Promise<boolean>(resolve => { report = resolve })
      const late: ServiceDefinition = {
        name: 'late',
        version: '1.0.0',
        description: 'reads its signal only after the deadline',
        methods: {
          wait: {
            description: 'waits 1.5 s, then looks at its signal',
            handler: async (call) => {
              await new Promise(resolve => setTimeout(resolve, 1_500))
              report(call.signal.aborted)
              return {}
            }
          }
        }
      }
      const t = await startBareNode({ services: [late], messageTimeout: 1_000 })
      try {
        const res = await a.opencloud.call(t.addr, { service: 'late', method: 'wait' })
        assert.equal(res.path, 'server-error')
        assert.equal(await seen, true)
      } finally {
        await t.destroy()
      }
    })

    it('a signed call uses the caller\'s body hash for its digest: a wrong one fails to verify, the right one is served', async () => {
      const blob = bytes(SPLIT_BODY_SIZE * 2)
      const hash = createHash('sha256').update(blob).digest()
      const wrong = await a.opencloud.call(b.addr, { service: 'storage', method: 'put', body: blob, sign: true, bodyHash: createHash('sha256').update('other').digest() })
      assert.equal(wrong.path, 'client-error/invalid-signature')
      const right = await a.opencloud.call(b.addr, { service: 'storage', method: 'put', body: blob, sign: true, bodyHash: hash })
      assert.equal(right.path, 'ok')
      assert.equal(parsePutAnswer(right.body).id, hash.toString('hex'))
    })
  })
})
