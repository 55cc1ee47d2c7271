/**
 * Payments in a row and at once without a block between, on both kinds of
 * backend: one that lists confirmed coins only (bitcoind JSON-RPC's
 * scantxoutset, here against bcoin's RPC server) and one that sees the
 * mempool (the embedded chain). The wallet must never build a transaction
 * that conflicts with one of its own, never refuse to pay while its coins
 * are only out in its own unconfirmed payments, and show its history in
 * both directions with confirmations.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { p2wpkh, Transaction } from '@scure/btc-signer'
import { BitcoindRpcBackend } from '../src/payments/chain/bitcoind-rpc.js'
import { generateApiKey } from '../src/payments/chain/embedded.js'
import { Wallet } from '../src/payments/wallet/wallet.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'
import { EmbeddedChain } from './regtest.js'
import type { ChainBackend, SignedPayment } from '../src/payments/types.js'

const BTC = 100_000_000n

/** The outpoints a raw transaction spends */
function inputsOf (raw: Uint8Array): string[] {
  const tx = Transaction.fromRaw(raw)
  return Array.from({ length: tx.inputsLength }, (_, i) => {
    const input = tx.getInput(i)
    return `${Buffer.from(input.txid as Uint8Array).toString('hex')}:${String(input.index)}`
  })
}

describe('wallet: payments in a row and at once, no block between', function () {
  this.timeout(120_000)
  let served: EmbeddedChain
  let rpc: BitcoindRpcBackend
  let to: string
  const stores: Store[] = []

  before(async () => {
    served = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
    rpc = await BitcoindRpcBackend.connect(served.rpcUrl as string, { chain: 'regtest' })
    to = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), rpc.network).address as string
  })

  after(async () => {
    for (const s of stores) { await s.close().catch(() => {}) }
    await rpc?.close()
    await served?.close()
  })

  async function open (backend: ChainBackend, inFlightWait = 0): Promise<Wallet> {
    const dir = await tempDir()
    const store = new Store(join(dir, 'db'))
    await store.open()
    stores.push(store)
    return Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend, inFlightWait })
  }

  it('confirmed-only backend: payments Q, P (Q\'s change), R (P\'s change) and 20 more in a row from one coin', async () => {
    const wallet = await open(rpc)
    await served.fund(await wallet.newAddress(), BTC)
    const sent = []
    for (let i = 0; i < 23; i++) { sent.push(await wallet.send(to, 10_000n + BigInt(i))) }
    // each spends the one before's change: nothing is spent twice
    const spent = sent.flatMap(p => inputsOf(p.raw))
    assert.equal(new Set(spent).size, spent.length)
    for (let i = 1; i < sent.length; i++) {
      assert.ok(inputsOf(sent[i].raw)[0].startsWith(sent[i - 1].txid), `payment ${i} spends payment ${i - 1}'s change`)
    }
    await served.mine(1, to)
    const b = await wallet.balance()
    const paid = sent.reduce((s, p) => s + p.amount + p.fee, 0n)
    assert.deepEqual(b, { confirmed: BTC - paid, unconfirmed: 0n })
    for (const p of sent) { assert.equal((await rpc.transaction(p.txid))?.confirmations, 1) }
  })

  it('confirmed-only backend: a payment not yet broadcast keeps its coin across later attempts and a block; no conflicting transaction is built', async () => {
    const wallet = await open(rpc)
    await served.fund(await wallet.newAddress(), BTC)
    const q = await wallet.send(to, 10_000n)
    // P spends Q's unconfirmed change and is handed to a seller that has not broadcast it yet
    const p = await wallet.createPayment(to, 20_000n)
    assert.ok(inputsOf(p.raw)[0].startsWith(q.txid))
    await assert.rejects(wallet.createPayment(to, 30_000n), (err: any) => {
      assert.equal(err.name, 'InsufficientFundsError')
      assert.equal(err.available, 0n)
      assert.ok(err.inFlight > 0n, 'P holds the coins')
      assert.match(err.message, /have 0 sat spendable \(0 confirmed, 0 unconfirmed\); [0-9]+ sat more are reserved by 1 payment the chain has not seen yet/)
      return true
    })
    // a block confirms Q: its change is a confirmed coin now, and still P's
    await served.mine(1, to)
    await assert.rejects(wallet.createPayment(to, 30_000n), { name: 'InsufficientFundsError' })
    assert.equal(await rpc.broadcast(p.raw), p.txid, 'P does not conflict with anything')
    const r = await wallet.send(to, 30_000n)
    assert.ok(inputsOf(r.raw)[0].startsWith(p.txid), 'R spends P\'s change')
    await served.mine(1, to)
    assert.deepEqual(await wallet.balance(), { confirmed: BTC - 60_000n - q.fee - p.fee - r.fee, unconfirmed: 0n })
  })

  it('waits for a payment in flight instead of refusing, then spends its change', async () => {
    for (const backend of [rpc, served] as ChainBackend[]) {
      const wallet = await open(backend, 20_000)
      await served.fund(await wallet.newAddress(), BTC)
      const p = await wallet.createPayment(to, 20_000n)
      const r = wallet.send(to, 30_000n)
      // the seller broadcasts P a moment later
      await new Promise(resolve => setTimeout(resolve, 300))
      await backend.broadcast(p.raw)
      const paid = await r
      assert.ok(inputsOf(paid.raw)[0].startsWith(p.txid), `${backend.description}: R spends P's change`)
      await served.mine(1, to)
      assert.deepEqual(await wallet.balance(), { confirmed: BTC - 50_000n - p.fee - paid.fee, unconfirmed: 0n })
    }
  })

  it('8 payments at once from 8 coins take 8 coins; from one coin they chain, none conflicts', async () => {
    const pay = async (wallet: Wallet, i: number): Promise<SignedPayment> => {
      const p = await wallet.createPayment(to, 10_000n + BigInt(i))
      // the seller broadcasts it
      await rpc.broadcast(p.raw)
      return p
    }
    for (const coins of [8, 1]) {
      const wallet = await open(rpc, 20_000)
      await served.fundEach(await Promise.all(Array.from({ length: coins }, async () => wallet.newAddress())), BTC)
      const payments = await Promise.all(Array.from({ length: 8 }, async (_, i) => pay(wallet, i)))
      const spent = payments.flatMap(p => inputsOf(p.raw))
      assert.equal(new Set(spent).size, spent.length, 'no coin spent twice')
      await served.mine(1, to)
      const total = payments.reduce((s, p) => s + p.amount + p.fee, 0n)
      assert.deepEqual(await wallet.balance(), { confirmed: BigInt(coins) * BTC - total, unconfirmed: 0n })
    }
  })

  it('history shows both directions with confirmations, with and without an address index', async () => {
    for (const backend of [rpc, served] as ChainBackend[]) {
      const buyer = await open(backend)
      const seller = await open(backend)
      const funding = await served.fund(await buyer.newAddress(), BTC)
      const payments = []
      for (let i = 0; i < 3; i++) { payments.push(await buyer.send(await seller.addressFor(`buyer-${i % 2}`), 10_000n + BigInt(i))) }
      await served.mine(1, to)
      const height = await served.height()
      await served.mine(4, to)
      const sold = await seller.history()
      assert.deepEqual(
        sold.map(t => [t.txid, t.height, t.confirmations, t.delta]).sort(),
        payments.map(p => [p.txid, height, 5, p.amount]).sort(),
        `${backend.description}: the seller sees what it received`
      )
      const bought = await buyer.history()
      assert.deepEqual(
        bought.map(t => [t.txid, t.height, t.confirmations, t.delta]).sort(),
        [...payments.map(p => [p.txid, height, 5, -(p.amount + p.fee)]), [funding.txid, funding.height, height + 4 - funding.height + 1, BTC]].sort(),
        `${backend.description}: the buyer sees its payments confirmed and its funding`
      )
    }
  })
})

describe('embedded chain: reads while blocks are connected', function () {
  this.timeout(120_000)

  it('utxos, addresses and scantxoutset never fail while blocks are mined through the RPC (on disk)', async () => {
    const served = await EmbeddedChain.start({ dir: join(await tempDir(), 'chain'), memory: false, http: { port: 0, apiKey: generateApiKey() } })
    const rpc = await BitcoindRpcBackend.connect(served.rpcUrl as string, { chain: 'regtest' })
    const dir = await tempDir()
    const store = new Store(join(dir, 'db'))
    await store.open()
    try {
      const wallet = await Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: served, inFlightWait: 0 })
      const addresses = await Promise.all(Array.from({ length: 40 }, async () => wallet.newAddress()))
      const elsewhere = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), rpc.network).address as string
      await served.fundEach(addresses, BTC)
      const state = { stop: false }
      const failures: unknown[] = []
      let reads = 0
      const reader = async (): Promise<void> => {
        while (!state.stop) {
          try {
            await served.utxos(addresses)
            await served.addresses(addresses)
            await rpc.utxos(addresses)
            reads++
          } catch (err) {
            failures.push(err)
            return
          }
        }
      }
      const readers = [reader(), reader()]
      // blocks that spend and create the coins being read, mined outside the chain's own queue
      for (let i = 0; i < 15 && failures.length === 0; i++) {
        for (let k = 0; k < 3; k++) { await wallet.send(addresses[(i * 3 + k) % addresses.length], 50_000n) }
        await rpc.mine(1, elsewhere)
      }
      state.stop = true
      await Promise.all(readers)
      assert.deepEqual(failures.map(e => String((e as Error)?.message ?? e)), [])
      assert.ok(reads > 0)
    } finally {
      await store.close()
      await rpc.close()
      await served.close()
    }
  })
})
