import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { createDecloudNode } from '../src/node/index.js'
import { computeCost, parseUnsigned } from '../src/protocols/opencloud/api/pricing.js'
import { ServiceError, validateService } from '../src/protocols/opencloud/api/template.js'
import { PaymentType, Status } from '../src/protocols/opencloud/index.js'
import { startNode, tempDir } from './fixtures.js'
import type { TestNode } from './fixtures.js'
import type { Pricing } from '../src/protocols/opencloud/api/pricing.js'
import type { MethodDefinition, ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { CallResult } from '../src/protocols/opencloud/index.js'

const enc = new TextEncoder()
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const parse = (res: CallResult): any => JSON.parse(text(res.body))

const KEEP_PRICING: Pricing = { base: 3n, rate: 7n, per: 1000n }

/** A user-defined service: it declares methods, units and prices, and nothing about info/methods/quote */
function archiveService (): ServiceDefinition {
  return {
    name: 'archive',
    version: '2.1.0',
    description: 'keeps bytes for a number of days',
    describe: () => ({ region: 'loopback' }),
    methods: {
      keep: {
        description: 'keeps the body for <days> days',
        args: '<days>',
        units: ['byte', 'day'],
        pricing: KEEP_PRICING,
        usage: (call) => {
          const days = parseUnsigned(call.args[0] ?? '')
          if (days == null) { throw new ServiceError(Status.BAD_REQUEST, 'days must be a non-negative integer') }
          return [BigInt(call.body.byteLength), days]
        },
        handler: () => ({ body: enc.encode('kept') })
      },
      echo: {
        description: 'returns the body',
        handler: (call) => ({ body: call.body })
      },
      missing: {
        description: 'always answers not-found',
        handler: () => { throw new ServiceError(Status.NOT_FOUND, 'nothing here') }
      },
      crash: {
        description: 'fails with an unexpected error',
        handler: () => { throw new Error('secret internal state') }
      }
    }
  }
}

describe('service template', () => {
  let server: TestNode
  let client: TestNode

  before(async () => {
    server = await startNode({ services: [archiveService()] })
    client = await startNode()
  })

  after(async () => {
    await client?.destroy()
    await server?.destroy()
  })

  async function call (method: string, args: string[] = [], body?: Uint8Array, service = 'archive'): Promise<CallResult> {
    return client.opencloud.call(server.addr, { service, method, args, body })
  }

  it('a user-defined service gets info without writing it', async () => {
    const res = await call('info')
    assert.equal(res.path, 'ok')
    assert.deepEqual(parse(res), { service: 'archive', version: '2.1.0', description: 'keeps bytes for a number of days', region: 'loopback' })
  })

  it('… and methods, listing its own methods, units and prices, then the template ones', async () => {
    const res = await call('methods')
    assert.equal(res.path, 'ok')
    const { service, methods } = parse(res)
    assert.equal(service, 'archive')
    assert.deepEqual(methods.map((m: any) => m.name), ['keep', 'echo', 'missing', 'crash', 'info', 'methods', 'quote'])
    const keep = methods[0]
    assert.equal(keep.description, 'keeps the body for <days> days')
    assert.equal(keep.args, '<days>')
    assert.deepEqual(keep.units, ['byte', 'day'])
    assert.deepEqual(keep.pricing, { base: '3', rate: '7', per: '1000', currency: 'BTC' })
    assert.deepEqual(methods[1].units, [])
    assert.deepEqual(methods[1].pricing, { base: '0', rate: '0', per: '1', currency: 'BTC' })
  })

  it('… and quote: base + ceil(rate × byte × day / per), exact integers, computed by computeCost', async () => {
    const cases: Array<[string[], bigint]> = [
      [['1500', '2'], 24n], // 3 + 7 × 3000 / 1000
      [['1', '1'], 4n], // 3 + ceil(7 / 1000)
      [['1000', '1'], 10n], // exact, no rounding
      [['0', '365'], 3n],
      [['500'], 7n], // day defaults to 1: 3 + ceil(3.5)
      [[], 4n] // every unit defaults to 1
    ]
    for (const [units, amount] of cases) {
      const res = await call('quote', ['keep', ...units])
      assert.equal(res.path, 'ok', res.detail)
      const { validUntil, ...q } = parse(res)
      assert.ok(Number.isSafeInteger(validUntil) && validUntil > Date.now(), 'a quote says until when it is valid')
      const values = [BigInt(units[0] ?? 1), BigInt(units[1] ?? 1)]
      const cost = computeCost(KEEP_PRICING, values)
      assert.equal(cost.total, amount)
      assert.deepEqual(q, {
        service: 'archive',
        method: 'keep',
        currency: 'BTC',
        units: { byte: String(values[0]), day: String(values[1]) },
        base: String(cost.base),
        usage: String(cost.usage),
        amount: String(amount)
      }, `quote keep ${units.join(' ')}`)
    }
  })

  it('quote is exact beyond the range of a double', async () => {
    const res = await call('quote', ['keep', '999999999999999999', '3'])
    assert.equal(res.path, 'ok')
    assert.equal(parse(res).amount, '21000000000000003') // 3 + ceil(7 × 2,999,999,999,999,999,997 / 1000)
    assert.equal(parse(res).amount, String(computeCost(KEEP_PRICING, [999_999_999_999_999_999n, 3n]).total))
  })

  it('the payment gate asks for exactly what quote says', async () => {
    for (const [bytes, days] of [[1500, 2], [1, 1], [4096, 30], [0, 7], [999, 1]]) {
      const quote = parse(await call('quote', ['keep', String(bytes), String(days)]))
      const res = await call('keep', [String(days)], new Uint8Array(bytes))
      assert.equal(res.path, 'request-declined/payment-declined/too-low')
      assert.ok(res.acceptablePayment != null)
      assert.equal(res.acceptablePayment.amount, BigInt(quote.amount), `${bytes} bytes × ${days} days`)
      assert.equal(res.acceptablePayment.amount, computeCost(KEEP_PRICING, [BigInt(bytes), BigInt(days)]).total)
      assert.equal(res.acceptablePayment.currency, 'BTC')
      assert.equal(res.acceptablePayment.paymentType, PaymentType.PAYMENT_ATTACHED)
      assert.match(res.detail, new RegExp(`costs ${quote.amount as string} sat`))
    }
  })

  it('a usage function that refuses the args answers bad-request before any payment talk', async () => {
    const res = await call('keep', ['forever'], new Uint8Array(10))
    assert.equal(res.path, 'client-error/bad-request')
    assert.equal(res.detail, 'days must be a non-negative integer')
    assert.equal(res.acceptablePayment, undefined)
  })

  it('a cost above the largest wire amount is never quoted or asked for (no silent wrap)', async () => {
    const huge = '9'.repeat(25)
    const quote = await call('quote', ['keep', huge, huge])
    assert.equal(quote.path, 'client-error/bad-request')
    assert.equal(quote.body.byteLength, 0)
    const res = await call('keep', [huge], new Uint8Array(10))
    assert.equal(res.path, 'client-error/too-large')
    assert.equal(res.acceptablePayment, undefined)
    assert.equal((await call('echo', [], enc.encode('still here'))).path, 'ok')
  })

  it('quote refuses what it cannot price', async () => {
    assert.equal((await call('quote')).path, 'client-error/bad-request', 'no method')
    assert.equal((await call('quote', ['nope'])).path, 'client-error/method-unsupported')
    assert.equal((await call('quote', ['keep', 'ten'])).path, 'client-error/bad-request')
    assert.equal((await call('quote', ['keep', '-1'])).path, 'client-error/bad-request')
    assert.equal((await call('quote', ['keep', '1.5'])).path, 'client-error/bad-request')
    assert.equal((await call('quote', ['keep', '1', '2', '3'])).path, 'client-error/bad-request', 'more units than dimensions')
    assert.equal((await call('quote', ['echo', '5'])).path, 'client-error/bad-request', 'echo is priced per call')
    assert.equal((await call('quote', ['__proto__'])).path, 'client-error/method-unsupported')
    assert.equal((await call('quote', ['toString'])).path, 'client-error/method-unsupported')
  })

  it('quote of a free method or a template method is 0', async () => {
    for (const m of ['echo', 'info', 'methods', 'quote']) {
      const res = await call('quote', [m])
      assert.equal(res.path, 'ok')
      assert.equal(parse(res).amount, '0', m)
    }
  })

  it('free methods are served for payment-type none; a method\'s own status and detail reach the caller', async () => {
    const echo = await call('echo', [], enc.encode('hello'))
    assert.equal(echo.path, 'ok')
    assert.equal(text(echo.body), 'hello')
    const missing = await call('missing')
    assert.equal(missing.path, 'client-error/not-found')
    assert.equal(missing.detail, 'nothing here')
  })

  it('an unexpected error in a handler → server-error without internals', async () => {
    const res = await call('crash')
    assert.equal(res.path, 'server-error')
    assert.doesNotMatch(res.detail, /secret/)
    assert.equal((await call('echo', [], enc.encode('x'))).path, 'ok')
  })

  it('info.info lists the user-defined service; unknown methods → method-unsupported', async () => {
    const info = parse(await call('info', [], undefined, 'info'))
    assert.ok(info.node.services.some((s: any) => s.name === 'archive' && s.version === '2.1.0'))
    assert.equal((await call('nope')).path, 'client-error/method-unsupported')
    assert.equal((await call('constructor')).path, 'client-error/method-unsupported')
  })

  it('a service added to a running node gets the template too', async () => {
    server.opencloud.addService({
      name: 'upper',
      version: '1.0.0',
      description: 'upper-cases text',
      methods: { upper: { description: 'upper-cases the body', units: ['byte'], pricing: { rate: 1n, per: 100n }, handler: (c) => ({ body: enc.encode(text(c.body).toUpperCase()) }) } }
    })
    assert.equal(parse(await call('quote', ['upper', '250'], undefined, 'upper')).amount, '3')
    assert.deepEqual(parse(await call('methods', [], undefined, 'upper')).methods.map((m: any) => m.name), ['upper', 'info', 'methods', 'quote'])
    assert.throws(() => { server.opencloud.addService(archiveService()) }, /already registered/)
  })
})

describe('service definitions are validated', () => {
  const handler: MethodDefinition['handler'] = () => ({})
  const service = (methods: Record<string, Partial<MethodDefinition>>, extra: Partial<ServiceDefinition> = {}): ServiceDefinition =>
    ({ name: 'x', version: '1.0.0', description: 'x', methods: methods as Record<string, MethodDefinition>, ...extra })

  for (const reserved of ['info', 'methods', 'quote']) {
    it(`defining the reserved method "${reserved}" throws InvalidServiceError`, () => {
      assert.throws(() => { validateService(service({ [reserved]: { description: '', handler } })) }, { name: 'InvalidServiceError', message: /template method/ })
    })
  }

  it('other broken definitions throw InvalidServiceError', () => {
    const broken: ServiceDefinition[] = [
      service({}, { name: 'Upper' }),
      service({}, { name: '' }),
      service({}, { name: 'a'.repeat(65) }),
      service({}, { version: '' }),
      service({ 'Bad Name': { description: '', handler } }),
      service({ m: { description: '' } }),
      service({ m: { description: '', handler, units: ['byte', 'byte'] } }),
      service({ m: { description: '', handler, units: ['Byte'] } }),
      service({ m: { description: '', handler, units: Array.from({ length: 9 }, (_, i) => `u${i}`) } }),
      service({ m: { description: '', handler, pricing: { rate: -1n } } }),
      service({ m: { description: '', handler, pricing: { per: 0n } } }),
      service({ m: { description: '', handler, pricing: { base: 0.5 as unknown as bigint } } })
    ]
    for (const def of broken) {
      assert.throws(() => { validateService(def) }, { name: 'InvalidServiceError' }, JSON.stringify(def, (_k, v) => typeof v === 'bigint' ? `${v}n` : v))
    }
  })

  it('a node given a service that redefines a template method refuses to start, and frees its data dir', async () => {
    const dataDir = await tempDir()
    try {
      await assert.rejects(createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], services: [service({ quote: { description: '', handler } })] }), { name: 'InvalidServiceError' })
      // the data dir is not left locked
      const node = await createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'] })
      await node.stop()
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it('a second service with a taken name is refused', async () => {
    const dataDir = await tempDir()
    try {
      await assert.rejects(createDecloudNode({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], services: [service({ m: { description: '', handler } }, { name: 'sha256' })] }), /already registered/)
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})

describe('built-in service prices', () => {
  let free: TestNode
  let priced: TestNode
  let client: TestNode
  const SHA_PRICING: Pricing = { base: 2n, rate: 5n, per: 1024n }
  const PUT_PRICING: Pricing = { rate: 1n, per: 1000n }
  const GET_PRICING: Pricing = { base: 1n }

  before(async () => {
    free = await startNode()
    priced = await startNode({ sha256: { pricing: SHA_PRICING }, storage: { pricing: { put: PUT_PRICING, get: GET_PRICING } } })
    client = await startNode()
  })

  after(async () => {
    await client?.destroy()
    await free?.destroy()
    await priced?.destroy()
  })

  it('sha256.hash is free by default: quote 0, served for payment-type none', async () => {
    const quote = await client.opencloud.call(free.addr, { service: 'sha256', method: 'quote', args: ['hash', '1048576'] })
    assert.equal(parse(quote).amount, '0')
    const body = enc.encode('free hashing')
    const res = await client.opencloud.call(free.addr, { service: 'sha256', method: 'hash', body })
    assert.equal(res.path, 'ok')
    assert.equal(Buffer.from(res.body).toString('hex'), createHash('sha256').update(body).digest('hex'))
    const methods = parse(await client.opencloud.call(free.addr, { service: 'sha256', method: 'methods' })).methods
    assert.deepEqual(methods[0], { name: 'hash', description: 'returns the SHA-256 digest (32 bytes) of the body', args: '', units: ['byte'], pricing: { base: '0', rate: '0', per: '1', currency: 'BTC' } })
  })

  it('sha256.hash priced by configuration: too-low asks base + ceil(rate × bytes / per), as quote says', async () => {
    for (const size of [0, 1, 1024, 3000, 65_536]) {
      const expected = computeCost(SHA_PRICING, [BigInt(size)]).total
      const quote = await client.opencloud.call(priced.addr, { service: 'sha256', method: 'quote', args: ['hash', String(size)] })
      assert.equal(parse(quote).amount, String(expected))
      const res = await client.opencloud.call(priced.addr, { service: 'sha256', method: 'hash', body: new Uint8Array(size) })
      assert.equal(res.status, Status.TOO_LOW)
      assert.equal(res.acceptablePayment?.amount, expected, `${size} bytes`)
      assert.equal(res.body.byteLength, 0, 'nothing is served unpaid')
    }
    assert.equal(computeCost(SHA_PRICING, [3000n]).total, 17n) // 2 + ceil(15000 / 1024)
  })

  it('storage prices: put per byte·second of lease, get per call; unpaid calls store and serve nothing', async () => {
    const body = new Uint8Array(2500).fill(7)
    const put = await client.opencloud.call(priced.addr, { service: 'storage', method: 'put', args: ['1'], body })
    assert.equal(put.status, Status.TOO_LOW)
    assert.equal(put.acceptablePayment?.amount, 3n) // ceil(2500 × 1 / 1000)
    const month = await client.opencloud.call(priced.addr, { service: 'storage', method: 'put', args: ['60'], body })
    assert.equal(month.acceptablePayment?.amount, 150n) // 2500 × 60 / 1000
    assert.equal(priced.storage.usedBytes, 0)
    const id = createHash('sha256').update(body).digest('hex')
    // stat and delete are free
    assert.equal((await client.opencloud.call(priced.addr, { service: 'storage', method: 'stat', args: [id] })).path, 'client-error/not-found')
    // a blob that is not here is not-found before any price is asked
    const missing = await client.opencloud.call(priced.addr, { service: 'storage', method: 'get', args: [id, '0', '10'] })
    assert.equal(missing.status, Status.NOT_FOUND)
    await priced.storage.put(body, 'oc:someone-else')
    const get = await client.opencloud.call(priced.addr, { service: 'storage', method: 'get', args: [id, '0', '10'] })
    assert.equal(get.status, Status.TOO_LOW)
    assert.equal(get.acceptablePayment?.amount, 1n)
    await priced.storage.delete(id, 'oc:someone-else')
  })
})
