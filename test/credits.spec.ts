/**
 * The seller's credit ledger (CreditStore) on a real LevelDB: holds for
 * calls in progress, credit back of calls not served, and what survives a
 * restart.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { CreditStore } from '../src/payments/seller/credits.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'

describe('credit ledger (CreditStore on LevelDB)', () => {
  let dir: string
  let store: Store
  let credits: CreditStore

  beforeEach(async () => {
    dir = await tempDir('decloud-credits-')
    store = new Store(join(dir, 'db'))
    await store.open()
    credits = new CreditStore({ db: store.sub('payments') })
  })

  afterEach(async () => {
    await store.close()
  })

  /** the same database opened again, as after a restart */
  async function reopen (): Promise<void> {
    await store.close()
    store = new Store(join(dir, 'db'))
    await store.open()
    credits = new CreditStore({ db: store.sub('payments') })
  }

  it('concurrent takes never spend more than the credit', async () => {
    await credits.add('oc:a', 100n)
    const taken = await Promise.all(Array.from({ length: 10 }, async () => credits.take('oc:a', 30n)))
    assert.equal(taken.filter(t => t != null).length, 3)
    assert.equal(await credits.balance('oc:a'), 10n)
    // served: the money is the seller's
    for (const t of taken.filter(t => t != null)) { assert.equal(await credits.settle(t.id, true), 0n) }
    assert.equal(await credits.balance('oc:a'), 10n)
    assert.equal(await credits.balance('oc:b'), 0n)
  })

  it('a call not served gets its money back once, however often it is settled', async () => {
    await credits.add('oc:a', 50n)
    const t = await credits.take('oc:a', 50n)
    assert.ok(t != null)
    assert.equal(await credits.balance('oc:a'), 0n)
    const back = await Promise.all([credits.settle(t.id, false), credits.settle(t.id, false), credits.settle(t.id, true)])
    assert.deepEqual(back.filter(b => b > 0n), [50n])
    assert.equal(await credits.balance('oc:a'), 50n)
  })

  it('credit and holds survive a restart; a call never answered is credited back when the ledger is next used', async () => {
    await credits.add('oc:a', 194n, { hold: { id: 'txid-1', amount: 100n } })
    const t = await credits.take('oc:a', 94n)
    assert.ok(t != null)
    await credits.add('oc:b', 0n, { hold: { id: 'txid-2', amount: 16n } })
    assert.equal(await credits.settle('txid-2', true), 0n)
    // the process stops with two calls of oc:a unanswered
    await reopen()
    assert.equal(await credits.balance('oc:a'), 100n)
    assert.equal(await credits.recover(), 2)
    assert.equal(await credits.balance('oc:a'), 294n)
    assert.equal(await credits.balance('oc:b'), 0n)
    // once only
    await reopen()
    assert.equal(await credits.recover(), 0)
    assert.equal(await credits.balance('oc:a'), 294n)
  })
})
