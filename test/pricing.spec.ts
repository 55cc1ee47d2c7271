import assert from 'node:assert/strict'
import { callPrice } from '../src/protocols/opencloud/api/call.js'
import { AmountOverflowError, computeCost, InvalidPricingError, isFree, MAX_AMOUNT, parseUnsigned, validatePricing } from '../src/protocols/opencloud/api/pricing.js'
import { QUOTE_VALIDITY, reprice } from '../src/protocols/opencloud/api/template.js'
import type { MethodDefinition } from '../src/protocols/opencloud/api/template.js'

describe('pricing (integer satoshis)', () => {
  describe('computeCost', () => {
    it('no pricing costs nothing, whatever the units', () => {
      assert.deepEqual(computeCost(undefined, []), { base: 0n, units: 1n, usage: 0n, total: 0n })
      assert.deepEqual(computeCost(undefined, [123n, 456n]), { base: 0n, units: 56088n, usage: 0n, total: 0n })
      assert.deepEqual(computeCost({}, [10n]), { base: 0n, units: 10n, usage: 0n, total: 0n })
    })

    it('base is charged per call, also for zero units', () => {
      assert.equal(computeCost({ base: 5n }, []).total, 5n)
      assert.equal(computeCost({ base: 5n, rate: 9n }, [0n]).total, 5n)
    })

    it('rate × units / per, rounded up, never down', () => {
      const p = { rate: 7n, per: 1000n }
      assert.equal(computeCost(p, [1n]).usage, 1n, '7/1000 rounds up to 1')
      assert.equal(computeCost(p, [1000n]).usage, 7n, 'exact division is not rounded')
      assert.equal(computeCost(p, [1001n]).usage, 8n)
      assert.equal(computeCost(p, [142n]).usage, 1n, '994/1000')
      assert.equal(computeCost(p, [143n]).usage, 2n, '1001/1000')
      assert.equal(computeCost(p, [0n]).usage, 0n)
      assert.equal(computeCost({ rate: 3n }, [4n]).usage, 12n, 'per defaults to 1')
    })

    it('multi-dimension units multiply (byte × day)', () => {
      // 3 sat per call + 7 sat per 1000 byte·days; 1500 bytes for 2 days
      assert.deepEqual(computeCost({ base: 3n, rate: 7n, per: 1000n }, [1500n, 2n]), { base: 3n, units: 3000n, usage: 21n, total: 24n })
      assert.equal(computeCost({ rate: 1n, per: 86_400n }, [1024n, 30n, 86_400n]).total, 30_720n, 'byte × day × seconds')
      assert.equal(computeCost({ rate: 5n }, [7n, 0n]).total, 0n, 'a zero dimension zeroes the usage')
    })

    it('is exact beyond the range of a double', () => {
      const units = [999_999_999_999_999_999n, 3n]
      const cost = computeCost({ base: 1n, rate: 7n, per: 1000n }, units)
      // 7 × 2,999,999,999,999,999,997 / 1000 = 20,999,999,999,999,999.979 → 21,000,000,000,000,000
      assert.equal(cost.usage, 21_000_000_000_000_000n)
      assert.equal(cost.total, 21_000_000_000_000_001n)
      assert.notEqual(BigInt(Number(cost.total)), cost.total, 'a double could not have held this')
    })

    it('the largest amount the wire carries is accepted; one more is refused', () => {
      assert.equal(computeCost({ base: MAX_AMOUNT }, []).total, MAX_AMOUNT)
      assert.equal(computeCost({ rate: 1n }, [MAX_AMOUNT]).total, MAX_AMOUNT)
      assert.throws(() => computeCost({ base: MAX_AMOUNT, rate: 1n }, [1n]), { name: 'AmountOverflowError' })
      assert.throws(() => computeCost({ rate: 1n }, [2n ** 40n, 2n ** 40n]), AmountOverflowError)
    })

    it('negative or non-bigint units are refused', () => {
      assert.throws(() => computeCost({ rate: 1n }, [-1n]), InvalidPricingError)
      assert.throws(() => computeCost({ rate: 1n }, [2n, -3n]), { name: 'InvalidPricingError' })
      assert.throws(() => computeCost({ rate: 1n }, [1.5 as unknown as bigint]), { name: 'InvalidPricingError' })
    })
  })

  describe('validatePricing', () => {
    it('accepts bigints in range', () => {
      validatePricing({})
      validatePricing({ base: 0n, rate: 0n, per: 1n })
      validatePricing({ base: MAX_AMOUNT, rate: MAX_AMOUNT, per: MAX_AMOUNT })
    })

    it('refuses negative, zero per, floats, numbers and out-of-range values', () => {
      for (const p of [
        { base: -1n },
        { rate: -1n },
        { per: 0n },
        { per: -5n },
        { base: 1 },
        { rate: 0.5 },
        { per: '1000' },
        { base: MAX_AMOUNT + 1n }
      ]) {
        assert.throws(() => { validatePricing(p as any) }, { name: 'InvalidPricingError' }, JSON.stringify(p, (_k, v) => typeof v === 'bigint' ? `${v}n` : v))
      }
    })
  })

  it('isFree is true only when neither base nor rate charges anything', () => {
    assert.equal(isFree(undefined), true)
    assert.equal(isFree({}), true)
    assert.equal(isFree({ per: 5n }), true)
    assert.equal(isFree({ base: 1n }), false)
    assert.equal(isFree({ rate: 1n, per: 1_000_000n }), false)
  })

  it('parseUnsigned takes plain decimal digits only', () => {
    assert.equal(parseUnsigned('0'), 0n)
    assert.equal(parseUnsigned('42'), 42n)
    assert.equal(parseUnsigned('007'), 7n)
    assert.equal(parseUnsigned('9'.repeat(30)), BigInt('9'.repeat(30)))
    for (const s of ['', '-1', '+1', '1.5', '1e3', '0x10', ' 1', '1 ', '١٢', '9'.repeat(31), 'NaN', 'Infinity']) {
      assert.equal(parseUnsigned(s), undefined, JSON.stringify(s))
    }
  })

  describe('quotes are honoured until they expire', () => {
    const method = (): MethodDefinition => ({ description: 'm', units: ['byte'], pricing: { base: 100n }, handler: () => ({}) })

    it('after a price rise the old price is accepted until the quotes given at it expire', () => {
      const m = method()
      const t0 = 1_000_000
      assert.equal(callPrice(m, [1n], t0)?.total, 100n)
      reprice(m, { base: 250n }, t0)
      assert.equal(m.pricing?.base, 250n)
      assert.equal(callPrice(m, [1n], t0 + 1)?.total, 100n, 'a quote at 100 is still valid')
      assert.equal(callPrice(m, [1n], t0 + QUOTE_VALIDITY - 1)?.total, 100n)
      assert.equal(callPrice(m, [1n], t0 + QUOTE_VALIDITY)?.total, 250n, 'expired: the new price')
    })

    it('a price cut applies at once; repricing to the same price keeps the old window', () => {
      const m = method()
      reprice(m, { base: 40n }, 0)
      assert.equal(callPrice(m, [1n], 1)?.total, 40n)
      const before = m.previousPricing
      reprice(m, { base: 40n }, 5)
      assert.equal(m.previousPricing, before)
    })
  })
})
