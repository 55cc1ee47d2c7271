/**
 * Amounts and sizes are uint64 on the wire. protons-runtime writes a value
 * between 2³¹ and 2³² − 1 as zero bytes (src/util/uint64.ts); every module
 * that encodes such fields loads the fix. A payment of 30 BTC must arrive as
 * 30 BTC, not as 0.
 */
import assert from 'node:assert/strict'
import { Payment, Request } from '../src/protocols/opencloud/pb/opencloud.js'
import '../src/protocols/opencloud/api/signing.js'
import { StorageReceipt } from '../src/services/storage/pb/storage.js'

const VALUES = [0n, 1n, 127n, 128n, 2n ** 31n - 1n, 2n ** 31n, 3_000_000_000n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 64n - 1n]

describe('uint64 fields on the wire', () => {
  it('a payment amount survives encoding whatever its size, 2^31 to 2^32 - 1 included', () => {
    for (const amount of VALUES) {
      assert.equal(Payment.decode(Payment.encode({ amount })).amount, amount, String(amount))
    }
  })

  it('inside a request, and in a storage receipt', () => {
    const amount = 3_000_000_000n
    const req = Request.decode(Request.encode({ ...Request.decode(new Uint8Array()), service: 's', method: 'm', payment: { ...Payment.decode(new Uint8Array()), amount } }))
    assert.equal(req.payment?.amount, amount)
    const fields = StorageReceipt.decode(StorageReceipt.encode({ size: 2n ** 31n + 5n, paid: amount, promised: 2n ** 32n - 1n } as any))
    assert.equal(fields.size, 2n ** 31n + 5n)
    assert.equal(fields.paid, amount)
    assert.equal(fields.promised, 2n ** 32n - 1n)
  })
})
