import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { join } from 'node:path'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { Address, Transaction, p2wpkh } from '@scure/btc-signer'
import { BitcoindRpcBackend, btcToSats, rejectionOf } from '../src/payments/chain/bitcoind-rpc.js'
import { EmbeddedChain, generateApiKey, SEGWIT_HEIGHT } from '../src/payments/chain/embedded.js'
import { EsploraBackend } from '../src/payments/chain/esplora.js'
import { ChainConfigError, createChainBackend } from '../src/payments/chain/index.js'
import { BCOIN_REGTEST, TESTNET } from '../src/payments/chain/networks.js'
import { maskUrl, readSecretFile } from '../src/payments/chain/secrets.js'
import { ChainUnavailableError, ChainUnsupportedError, TxRejectedError, canMine } from '../src/payments/types.js'
import { BIN, killAll, runCli } from './cli-fixtures.js'
import { tempDir } from './fixtures.js'
import { fundAddress, startRegtest } from './regtest.js'
import type { AddressNetwork, ChainBackend, RejectKind } from '../src/payments/types.js'
import type { ChildProcess } from 'node:child_process'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'

const BTC = 100_000_000n
/** test/fixtures/esplora (tests run from dist/test/) */
const FIXTURES = new URL('../../test/fixtures/esplora/', import.meta.url)

interface Key { priv: Uint8Array, address: string, script: Uint8Array }
interface Coin { txid: string, vout: number, value: bigint }

function newKey (network: AddressNetwork = BCOIN_REGTEST): Key {
  const priv = secp256k1.utils.randomSecretKey()
  const pay = p2wpkh(secp256k1.getPublicKey(priv, true), network)
  return { priv, address: pay.address ?? '', script: pay.script }
}

/** a P2WPKH transaction spending key's coins, built and signed with `@scure/btc-signer` */
function spend (key: Key, coins: Coin[], outputs: Array<{ address: string, value: bigint }>, network: AddressNetwork = BCOIN_REGTEST): { raw: Uint8Array, txid: string } {
  const tx = new Transaction()
  for (const c of coins) { tx.addInput({ txid: c.txid, index: c.vout, witnessUtxo: { script: key.script, amount: c.value } }) }
  for (const o of outputs) { tx.addOutputAddress(o.address, o.value, network) }
  tx.sign(key.priv)
  tx.finalize()
  return { raw: tx.extract(), txid: tx.id }
}

/** pays amount from one coin of key, the rest (less the fee) back to key */
function pay (key: Key, coin: Coin, to: string, amount: bigint, fee: bigint = 1000n): { raw: Uint8Array, txid: string } {
  return spend(key, [coin], [{ address: to, value: amount }, { address: key.address, value: coin.value - amount - fee }])
}

async function rejected (p: Promise<unknown>, kind: RejectKind): Promise<TxRejectedError> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof TxRejectedError, `expected TxRejectedError, got ${String(err)}`)
    assert.equal(err.kind, kind, `kind ${err.kind} (${err.reason})`)
    return err
  }
  assert.fail(`expected a ${kind} rejection`)
}

/** a TCP port nothing listens on (listened on, then closed) */
async function freePort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

/** an HTTP server on 127.0.0.1 answering with handler */
async function httpServer (handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ url: string, server: Server, close(): Promise<void> }> {
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (b: Buffer) => chunks.push(b))
    req.on('end', () => { handler(req, res, Buffer.concat(chunks).toString('utf8')) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${port}/`,
    server,
    async close () {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

/** A small seeded generator of numbers in [0, 1) (mulberry32) */
function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('chain secrets', () => {
  it('maskUrl hides passwords, token user names, key-like path segments and query values, keeps the rest', () => {
    assert.equal(maskUrl('http://x:0123456789abcdef@127.0.0.1:48443/'), 'http://x:***@127.0.0.1:48443/')
    assert.equal(maskUrl('https://tok3n@esplora.example/api'), 'https://***@esplora.example/api')
    assert.equal(maskUrl('https://esplora.example/v1/k3y0123456789abcdefghij/api?token=sekrit&x=1#frag'), 'https://esplora.example/v1/***/api?token=***&x=***')
    assert.equal(maskUrl('https://mempool.space/signet/api'), 'https://mempool.space/signet/api')
    assert.equal(maskUrl('not a url with a p4ssword'), '(not a URL)')
  })

  it('backend descriptions (start line, errors, GET /v1/wallet) never carry the secrets; Esplora keeps the query on every request', async () => {
    const rpc = new BitcoindRpcBackend('http://alice:pa55word-0123456789@127.0.0.1:1/wallet/k3y0123456789abcdefghij')
    assert.doesNotMatch(rpc.description, /pa55word|alice|k3y0/)
    await assert.rejects(rpc.height(), (err: any) => !/pa55word|k3y0/.test(err.message))
    const urls: string[] = []
    const server = await httpServer((req, res) => { urls.push(req.url ?? ''); res.end('195010') })
    try {
      const esplora = await EsploraBackend.connect(`${server.url}k3y0123456789abcdefghij/api?token=sekrit`, { chain: 'signet' })
      assert.deepEqual(urls, ['/k3y0123456789abcdefghij/api/blocks/tip/height?token=sekrit'])
      assert.doesNotMatch(esplora.description, /sekrit|k3y0/)
      assert.match(esplora.description, /\/\*\*\*\/api\/\?token=\*\*\*/)
      await esplora.close()
    } finally {
      await server.close()
    }
  })

  it('reads a secret from a file only its owner can read', async () => {
    const dir = await tempDir()
    const file = join(dir, 'rpc-url')
    await writeFile(file, 'http://x:key@127.0.0.1:1/\n', { mode: 0o600 })
    assert.equal(readSecretFile(file, '--chain-rpc-file'), 'http://x:key@127.0.0.1:1/')
    await chmod(file, 0o640)
    assert.throws(() => readSecretFile(file, '--chain-rpc-file'), (err: any) => err.name === 'SecretFileError' && err.message.includes(`chmod 600 ${file}`))
    assert.throws(() => readSecretFile(join(dir, 'missing'), '--chain-rpc-file'), { name: 'SecretFileError' })
  })
})

describe('chain backends', function () {
  this.timeout(120_000)

  describe('EmbeddedChain (bcoin regtest in process)', () => {
    let chain: EmbeddedChain
    const burn = Address(BCOIN_REGTEST).encode({ type: 'wpkh', hash: new Uint8Array(20) })

    before(async () => { chain = await startRegtest() })
    after(async () => { await chain?.close() })

    it('starts at the SegWit height on bcoin\'s regtest encoding', async () => {
      assert.equal(chain.chain, 'regtest')
      assert.deepEqual(chain.network, BCOIN_REGTEST)
      assert.ok(canMine(chain))
      assert.ok(await chain.height() >= SEGWIT_HEIGHT)
    })

    it('mines blocks paying the coinbase to an address: height, balance, coins, age', async () => {
      const key = newKey()
      const h0 = await chain.height()
      assert.equal(await chain.mine(2, key.address), h0 + 2)
      assert.equal(await chain.height(), h0 + 2)
      assert.equal(await chain.mine(0, key.address), h0 + 2)
      const coins = await chain.utxos([key.address])
      assert.equal(coins.length, 2)
      assert.deepEqual(coins.map(c => c.height).sort(), [h0 + 1, h0 + 2])
      for (const c of coins) {
        assert.equal(c.script, Buffer.from(key.script).toString('hex'))
        assert.ok(c.value > 0n)
      }
      const [state] = await chain.addresses([key.address])
      assert.equal(state.confirmed, coins[0].value + coins[1].value)
      assert.equal(state.unconfirmed, 0n)
      assert.equal(state.heldSince, h0 + 1)
      const history = await chain.history(key.address)
      assert.deepEqual(history.map(t => t.height), [h0 + 2, h0 + 1], 'newest first')
    })

    it('refuses bad mining requests and foreign addresses', async () => {
      await assert.rejects(chain.mine(-1, burn), RangeError)
      await assert.rejects(chain.mine(1.5, burn), RangeError)
      await assert.rejects(chain.mine(1, 'bcrt1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq'), TypeError)
      await assert.rejects(chain.addresses(['tb1qgw5x3jaszvsvsdkxf03dfgl3rw8wq8fsa4ffyu']), TypeError)
      await assert.rejects(chain.utxos(['not an address']), TypeError)
    })

    it('funds an address with spendable, confirmed coins; an empty address has nothing', async () => {
      const key = newKey()
      const f = await fundAddress(chain, key.address)
      assert.equal(f.value, 10n * BTC)
      assert.equal(f.height, await chain.height())
      const [state, empty] = await chain.addresses([key.address, newKey().address])
      assert.deepEqual(state, { address: key.address, confirmed: 10n * BTC, unconfirmed: 0n, heldSince: f.height })
      assert.equal(empty.confirmed, 0n)
      assert.equal(empty.heldSince, undefined)
      const small = await chain.fund(newKey().address, 12_345n)
      assert.equal(small.value, 12_345n)
      await assert.rejects(chain.fund(key.address, 0n), RangeError)
    })

    it('accepts a P2WPKH spend signed with @scure/btc-signer: unconfirmed, then confirmed after a block', async () => {
      const payer = newKey()
      const payee = newKey()
      const f = await fundAddress(chain, payer.address)
      const tx = spend(payer, [f], [{ address: payee.address, value: BTC }, { address: payer.address, value: 9n * BTC - 1000n }])
      assert.equal(await chain.broadcast(tx.raw), tx.txid)

      const pending = await chain.utxos([payee.address])
      assert.deepEqual(pending, [{ txid: tx.txid, vout: 0, value: BTC, script: Buffer.from(payee.script).toString('hex'), height: undefined }])
      const [payeeState, payerState] = await chain.addresses([payee.address, payer.address])
      assert.equal(payeeState.confirmed, 0n)
      assert.equal(payeeState.unconfirmed, BTC)
      assert.equal(payeeState.heldSince, undefined)
      // the funding coin is spent in the mempool: only the change is left, unconfirmed
      assert.equal(payerState.confirmed, 0n)
      assert.equal(payerState.unconfirmed, 9n * BTC - 1000n)
      const status = await chain.transaction(tx.txid)
      assert.equal(status?.confirmations, 0)
      assert.equal(status?.height, undefined)
      assert.deepEqual(status?.raw, tx.raw)
      assert.deepEqual((await chain.history(payer.address))[0], { txid: tx.txid, height: undefined, delta: -BTC - 1000n })

      const height = await chain.mine(1, burn)
      const confirmed = await chain.transaction(tx.txid)
      assert.equal(confirmed?.confirmations, 1, 'the mempool transaction went into the mined block')
      assert.equal(confirmed?.height, height)
      const [after] = await chain.addresses([payee.address])
      assert.deepEqual(after, { address: payee.address, confirmed: BTC, unconfirmed: 0n, heldSince: height })
      await chain.mine(2, burn)
      assert.equal((await chain.transaction(tx.txid))?.confirmations, 3)
      assert.deepEqual((await chain.history(payee.address)).map(t => [t.txid, t.height, t.delta]), [[tx.txid, height, BTC]])
    })

    it('heldSince is the lowest height among the coins still unspent', async () => {
      const key = newKey()
      const first = await fundAddress(chain, key.address, BTC)
      const second = await fundAddress(chain, key.address, 2n * BTC)
      assert.ok(second.height > first.height)
      assert.equal((await chain.addresses([key.address]))[0].heldSince, first.height)
      const tx = spend(key, [first], [{ address: burn, value: BTC - 500n }])
      await chain.broadcast(tx.raw)
      await chain.mine(1, burn)
      const [state] = await chain.addresses([key.address])
      assert.equal(state.confirmed, 2n * BTC)
      assert.equal(state.heldSince, second.height)
    })

    it('rejects a double spend, in the mempool and after the block', async () => {
      const key = newKey()
      const f = await fundAddress(chain, key.address)
      const a = pay(key, f, newKey().address, 5n * BTC)
      const b = pay(key, f, newKey().address, 6n * BTC)
      assert.notEqual(a.txid, b.txid)
      await chain.broadcast(a.raw)
      const e = await rejected(chain.broadcast(b.raw), 'double-spend')
      assert.match(e.reason, /conflict/)
      await chain.mine(1, burn)
      await rejected(chain.broadcast(b.raw), 'double-spend')
      assert.equal(await chain.transaction(b.txid), undefined, 'the refused spend is not kept (not even as an orphan)')
      assert.equal((await chain.transaction(a.txid))?.confirmations, 1)
    })

    it('says already-known for a transaction it has, in the mempool or in a block', async () => {
      const key = newKey()
      const f = await fundAddress(chain, key.address)
      const tx = pay(key, f, newKey().address, BTC)
      await chain.broadcast(tx.raw)
      await rejected(chain.broadcast(tx.raw), 'already-known')
      await chain.mine(1, burn)
      await rejected(chain.broadcast(tx.raw), 'already-known')
    })

    it('refuses garbage, truncated and badly signed transactions as invalid without harm', async () => {
      await rejected(chain.broadcast(new Uint8Array([1, 2, 3])), 'invalid')
      await rejected(chain.broadcast(new Uint8Array(0)), 'invalid')
      await rejected(chain.broadcast(new Uint8Array(5_000_000)), 'invalid')
      const key = newKey()
      const f = await fundAddress(chain, key.address)
      const tx = pay(key, f, newKey().address, BTC)
      await rejected(chain.broadcast(tx.raw.subarray(0, tx.raw.length - 3)), 'invalid')
      const trailing = new Uint8Array(tx.raw.length + 1)
      trailing.set(tx.raw)
      await rejected(chain.broadcast(trailing), 'invalid')
      // a byte of the signature changed (witness: …, <sig>, <33-byte key>, then the 4-byte locktime)
      const forged = Uint8Array.from(tx.raw)
      forged[forged.length - 4 - 34 - 12] ^= 0x01
      await rejected(chain.broadcast(forged), 'invalid')
      // pays out more than its input holds (signed as if the coin held 20 BTC)
      const greedy = spend(key, [{ ...f, value: 20n * BTC }], [{ address: newKey().address, value: 11n * BTC }])
      assert.match((await rejected(chain.broadcast(greedy.raw), 'invalid')).reason, /belowout/)
      // the honest one still goes through
      assert.equal(await chain.broadcast(tx.raw), tx.txid)
    })

    it('answers unknown or malformed txids with undefined, and a fee rate of at least 1', async () => {
      assert.equal(await chain.transaction('00'.repeat(32)), undefined)
      assert.equal(await chain.transaction('not a txid'), undefined)
      assert.ok(await chain.feeRate() >= 1n)
    })

    it('keeps its chain on disk across a restart, faucet included', async () => {
      const dir = await tempDir('decloud-chain-')
      const disk = await EmbeddedChain.start({ dir })
      const key = newKey()
      let height: number
      try {
        assert.equal(await disk.height(), SEGWIT_HEIGHT)
        const f = await disk.fund(key.address, 3n * BTC)
        height = f.height
      } finally {
        await disk.close()
      }
      assert.ok(existsSync(join(dir, 'regtest')))
      const again = await EmbeddedChain.start({ dir })
      try {
        assert.equal(await again.height(), height)
        assert.deepEqual((await again.addresses([key.address]))[0], { address: key.address, confirmed: 3n * BTC, unconfirmed: 0n, heldSince: height })
        await again.fund(newKey().address)
        assert.equal(await again.height(), height + 1)
      } finally {
        await again.close()
      }
      await assert.rejects(again.height(), ChainUnavailableError)
    })
  })

  describe('BitcoindRpcBackend against bcoin\'s real RPC server on 127.0.0.1', () => {
    let chain: EmbeddedChain
    let rpc: BitcoindRpcBackend
    const burn = Address(BCOIN_REGTEST).encode({ type: 'wpkh', hash: new Uint8Array(20) })

    before(async () => {
      chain = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
      rpc = await BitcoindRpcBackend.connect(chain.rpcUrl ?? '')
    })
    after(async () => {
      await rpc?.close()
      await chain?.close()
    })

    it('connects, finds the chain and tells bcoin\'s address encoding from Core\'s', async () => {
      assert.match(chain.rpcUrl ?? '', /^http:\/\/x:[0-9a-f]{48}@127\.0\.0\.1:\d+\/$/)
      assert.equal(rpc.chain, 'regtest')
      assert.deepEqual(rpc.network, BCOIN_REGTEST)
      assert.doesNotMatch(rpc.description, /[0-9a-f]{48}/, 'the API key stays out of logs')
      assert.equal(await rpc.height(), await chain.height())
      await assert.rejects(BitcoindRpcBackend.connect(chain.rpcUrl ?? '', { chain: 'mainnet' }), (e: Error) => e instanceof ChainUnavailableError && /not mainnet/.test(e.message))
    })

    it('reads balances, coins and age with scantxoutset (confirmed coins only)', async () => {
      const key = newKey()
      const f = await chain.fund(key.address, 123_456_789n)
      const [state, empty] = await rpc.addresses([key.address, newKey().address])
      assert.deepEqual(state, { address: key.address, confirmed: 123_456_789n, unconfirmed: 0n, heldSince: f.height })
      assert.deepEqual(empty.confirmed, 0n)
      assert.deepEqual(await rpc.utxos([key.address]), [{ txid: f.txid, vout: 0, value: 123_456_789n, script: Buffer.from(key.script).toString('hex'), height: f.height }])
      await assert.rejects(rpc.addresses(['bcrt1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq']), TypeError)
      await assert.rejects(rpc.history(key.address), ChainUnsupportedError)
    })

    it('broadcasts, refuses a double spend, a re-broadcast and garbage, and sees confirmations', async () => {
      const key = newKey()
      const f = await chain.fund(key.address)
      const a = pay(key, f, newKey().address, 5n * BTC)
      const b = pay(key, f, newKey().address, 4n * BTC)
      assert.equal(await rpc.broadcast(a.raw), a.txid)
      await rejected(rpc.broadcast(b.raw), 'double-spend')
      await rejected(rpc.broadcast(a.raw), 'already-known')
      await rejected(rpc.broadcast(new Uint8Array([0xde, 0xad])), 'invalid')
      const pending = await rpc.transaction(a.txid)
      assert.equal(pending?.confirmations, 0)
      assert.equal(pending?.height, undefined)
      assert.deepEqual(pending?.raw, a.raw)
      assert.equal(await rpc.transaction('11'.repeat(32)), undefined)

      const h = await rpc.height()
      assert.equal(await rpc.mine(2, burn), h + 2)
      const done = await rpc.transaction(a.txid)
      assert.equal(done?.confirmations, 2)
      assert.equal(done?.height, h + 1)
      await rejected(rpc.broadcast(b.raw), 'double-spend')
      await rejected(rpc.broadcast(a.raw), 'already-known')
      assert.ok(await rpc.feeRate() >= 1n)
    })

    it('funds an address from the served chain\'s faucet (sendtoaddress), regtest only', async () => {
      const key = newKey()
      const h = await rpc.height()
      const f = await rpc.fund(key.address, 2n * BTC + 1n)
      assert.equal(f.height, h + 1)
      assert.equal(f.value, 2n * BTC + 1n)
      const again = await rpc.fund(key.address)
      assert.equal(again.value, 10n * BTC)
      assert.deepEqual((await rpc.addresses([key.address]))[0], { address: key.address, confirmed: 12n * BTC + 1n, unconfirmed: 0n, heldSince: f.height })
      // spendable at once: not a coinbase
      const tx = pay(key, f, newKey().address, BTC)
      assert.equal(await rpc.broadcast(tx.raw), tx.txid)
      const mainnet = new BitcoindRpcBackend(chain.rpcUrl ?? '', { chain: 'mainnet' })
      await assert.rejects(mainnet.mine(1, burn), ChainUnsupportedError)
      await assert.rejects(mainnet.fund(burn), ChainUnsupportedError)
    })

    it('refuses a wrong API key with a clear error', async () => {
      const wrong = (chain.rpcUrl ?? '').replace(/x:[0-9a-f]+@/, 'x:wrongwrongwrong@')
      await assert.rejects(BitcoindRpcBackend.connect(wrong), (e: Error) => e instanceof ChainUnavailableError && /refused the credentials \(HTTP 401\)/.test(e.message))
      await assert.rejects(new BitcoindRpcBackend(wrong.replace('x:wrongwrongwrong@', '')).height(), /HTTP 401/)
    })

    it('fails fast with ChainUnavailableError when nothing listens', async () => {
      const port = await freePort()
      const dead = new BitcoindRpcBackend(`http://x:key@127.0.0.1:${port}/`, { timeoutMs: 5000 })
      await assert.rejects(dead.height(), (e: Error) => e instanceof ChainUnavailableError && /connection refused/.test(e.message))
    })

    it('gives up on a server that does not answer, and refuses an oversized answer', async () => {
      const silent = await httpServer(() => {})
      const big = await httpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        const chunk = Buffer.alloc(64 * 1024, 0x20)
        let sent = 0
        const pump = (): void => {
          while (sent < 256 && res.write(chunk)) { sent++ }
          if (sent < 256) { res.once('drain', pump) } else { res.end('{}') }
        }
        res.on('error', () => {})
        pump()
      })
      try {
        await assert.rejects(new BitcoindRpcBackend(silent.url, { timeoutMs: 300 }).height(), (e: Error) => e instanceof ChainUnavailableError && /no answer within 300 ms/.test(e.message))
        await assert.rejects(new BitcoindRpcBackend(big.url, { maxResponseBytes: 1024 * 1024 }).height(), (e: Error) => e instanceof ChainUnavailableError && /byte limit/.test(e.message))
      } finally {
        await silent.close()
        await big.close()
      }
    })

    it('bounds the scantxoutset calls waiting their turn: one more fails at once', async () => {
      const silent = await httpServer(() => {})
      const backend = new BitcoindRpcBackend(silent.url, { scanTimeoutMs: 60_000, maxQueuedScans: 2 })
      const address = Address(backend.network).encode({ type: 'wpkh', hash: new Uint8Array(20) })
      try {
        const waiting = [backend.addresses([address]), backend.utxos([address])]
        for (const p of waiting) { p.catch(() => {}) }
        await assert.rejects(backend.addresses([address]), (e: Error) => e instanceof ChainUnavailableError && /2 scantxoutset calls already waiting/.test(e.message))
        await backend.close()
        for (const p of waiting) { await assert.rejects(p, ChainUnavailableError) }
        // the slots are given back: a closed backend says so, not "waiting"
        await assert.rejects(backend.addresses([address]), (e: Error) => e instanceof ChainUnavailableError && /closed/.test(e.message))
      } finally {
        await backend.close()
        await silent.close()
      }
    })

    it('converts BTC amounts to sats exactly, and maps bitcoind errors to rejection kinds', () => {
      assert.equal(btcToSats(0.00000001), 1n)
      assert.equal(btcToSats(12.5), 1_250_000_000n)
      assert.equal(btcToSats(0.1 + 0.2), 30_000_000n)
      assert.equal(btcToSats(20999999.99999999), 2_099_999_999_999_999n)
      // 2,000 amounts from a seeded generator: the same every run, another with DECLOUD_TEST_SEED
      const seed = Number(process.env.DECLOUD_TEST_SEED ?? 20_260_101) >>> 0
      const random = mulberry32(seed)
      for (let i = 0; i < 2000; i++) {
        const sats = BigInt(Math.floor(random() * 2.1e15))
        assert.equal(btcToSats(Number(sats) / 1e8), sats, `amount #${i} of seed ${seed} (DECLOUD_TEST_SEED=${seed} repeats it)`)
      }
      assert.throws(() => btcToSats(-1), RangeError)
      assert.throws(() => btcToSats(Number.NaN), RangeError)

      const cases: Array<[number, string, RejectKind]> = [
        [-26, 'txn-mempool-conflict', 'double-spend'],
        [-25, 'bad-txns-inputs-missingorspent', 'double-spend'],
        [-25, 'Missing inputs', 'double-spend'],
        [-26, 'missing-inputs', 'double-spend'],
        [-27, 'Transaction already in block chain', 'already-known'],
        [-27, 'Transaction outputs already in utxo set', 'already-known'],
        [-26, 'txn-already-in-mempool', 'already-known'],
        [-26, 'min relay fee not met, 110 < 141', 'fee'],
        [-26, 'mempool min fee not met', 'fee'],
        [-26, 'mandatory-script-verify-flag-failed (Signature must be zero for failed CHECK(MULTI)SIG operation)', 'invalid'],
        [-22, 'TX decode failed', 'invalid']
      ]
      for (const [code, message, kind] of cases) { assert.equal(rejectionOf(code, message).kind, kind, message) }
    })
  })

  describe('EsploraBackend on captured-format bodies from a local server', () => {
    let server: Awaited<ReturnType<typeof httpServer>>
    let esplora: EsploraBackend
    let facts: { address: string, script: string, counterparty: string, tip: number, txids: Record<'tx0' | 'tx1' | 'tx2' | 'tx3', string>, rawTx3: string }
    /** what POST /tx answers next: [status, fixture file] */
    let postReply: [number, string] = [200, 'post-tx-ok.txt']
    let hugeUtxo = false
    const seen: string[] = []

    const fixture = async (name: string): Promise<string> => readFile(new URL(name, FIXTURES), 'utf8')

    before(async () => {
      facts = JSON.parse(await fixture('fixture-facts.json'))
      const routes = (): Record<string, [number, string]> => ({
        'GET /api/blocks/tip/height': [200, 'blocks-tip-height.txt'],
        [`GET /api/address/${facts.address}/utxo`]: [200, 'address-utxo.json'],
        [`GET /api/address/${facts.counterparty}/utxo`]: [200, 'address-utxo-empty.json'],
        [`GET /api/address/${facts.address}/txs`]: [200, 'address-txs.json'],
        [`GET /api/tx/${facts.txids.tx2}/hex`]: [200, 'tx-confirmed-hex.txt'],
        [`GET /api/tx/${facts.txids.tx2}/status`]: [200, 'tx-confirmed-status.json'],
        [`GET /api/tx/${facts.txids.tx3}/hex`]: [200, 'tx-mempool-hex.txt'],
        [`GET /api/tx/${facts.txids.tx3}/status`]: [200, 'tx-mempool-status.json'],
        'GET /api/fee-estimates': [200, 'fee-estimates.json'],
        'POST /api/tx': postReply
      })
      server = await httpServer((req, res, body) => {
        const key = `${req.method ?? ''} ${req.url ?? ''}`
        seen.push(key + (body !== '' ? ` ${body}` : ''))
        if (hugeUtxo && key.endsWith('/utxo')) {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('[' + '{"txid":"00"},'.repeat(200_000) + '{}]')
          return
        }
        const route = routes()[key]
        if (route == null) {
          res.writeHead(404, { 'content-type': 'text/plain' })
          res.end('Transaction not found')
          return
        }
        void fixture(route[1]).then(text => {
          res.writeHead(route[0], { 'content-type': route[1].endsWith('.json') ? 'application/json' : 'text/plain' })
          res.end(text)
        })
      })
      esplora = await EsploraBackend.connect(server.url + 'api', { chain: 'signet' })
    })
    after(async () => {
      await esplora?.close()
      await server?.close()
    })

    it('reads the tip, balances, coins and age', async () => {
      assert.equal(esplora.chain, 'signet')
      assert.deepEqual(esplora.network, TESTNET)
      assert.equal(await esplora.height(), facts.tip)
      const [state, other] = await esplora.addresses([facts.address, facts.counterparty])
      assert.deepEqual(state, { address: facts.address, confirmed: 400_000n, unconfirmed: 379_000n, heldSince: 190_000 })
      assert.deepEqual(other, { address: facts.counterparty, confirmed: 0n, unconfirmed: 0n, heldSince: undefined })
      const utxos = await esplora.utxos([facts.address])
      assert.deepEqual(utxos, [
        { txid: facts.txids.tx1, vout: 0, value: 150_000n, script: facts.script, height: 190_000 },
        { txid: facts.txids.tx2, vout: 1, value: 250_000n, script: facts.script, height: 195_000 },
        { txid: facts.txids.tx3, vout: 1, value: 379_000n, script: facts.script, height: undefined }
      ])
      const before = seen.length
      await assert.rejects(esplora.addresses(['rb1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqce7sck']), TypeError)
      assert.equal(seen.length, before, 'a foreign address is refused before any request')
    })

    it('computes the history\'s net effect per transaction, newest first', async () => {
      assert.deepEqual(await esplora.history(facts.address), [
        { txid: facts.txids.tx3, height: undefined, delta: -121_000n },
        { txid: facts.txids.tx2, height: 195_000, delta: 250_000n },
        { txid: facts.txids.tx1, height: 190_000, delta: 150_000n },
        { txid: facts.txids.tx0, height: 180_000, delta: 500_000n }
      ])
      assert.equal((await esplora.history(facts.address, 2)).length, 2)
    })

    it('reads transaction status: confirmed, in the mempool, unknown', async () => {
      const confirmed = await esplora.transaction(facts.txids.tx2)
      assert.equal(confirmed?.height, 195_000)
      assert.equal(confirmed?.confirmations, facts.tip - 195_000 + 1)
      const pending = await esplora.transaction(facts.txids.tx3)
      assert.equal(pending?.confirmations, 0)
      assert.equal(Buffer.from(pending?.raw ?? []).toString('hex'), facts.rawTx3)
      assert.equal(await esplora.transaction('22'.repeat(32)), undefined)
    })

    it('rounds the 2-block fee estimate up to whole sat/vB', async () => {
      assert.equal(await esplora.feeRate(), 88n)
    })

    it('broadcasts hex and maps the relayed bitcoind errors to rejection kinds', async () => {
      const raw = Buffer.from(facts.rawTx3, 'hex')
      postReply = [200, 'post-tx-ok.txt']
      assert.equal(await esplora.broadcast(raw), facts.txids.tx3)
      assert.equal(seen.at(-1), `POST /api/tx ${facts.rawTx3}`)
      const cases: Array<[string, RejectKind]> = [
        ['post-tx-conflict.txt', 'double-spend'],
        ['post-tx-missing-inputs.txt', 'double-spend'],
        ['post-tx-already-in-chain.txt', 'already-known'],
        ['post-tx-min-relay-fee.txt', 'fee'],
        ['post-tx-bad-signature.txt', 'invalid'],
        ['post-tx-decode-failed.txt', 'invalid']
      ]
      for (const [file, kind] of cases) {
        postReply = [400, file]
        const e = await rejected(esplora.broadcast(raw), kind)
        assert.doesNotMatch(e.reason, /sendrawtransaction RPC error/)
      }
      postReply = [502, 'tx-not-found.txt']
      await assert.rejects(esplora.broadcast(raw), ChainUnavailableError)
      postReply = [200, 'fee-estimates.json']
      await assert.rejects(esplora.broadcast(raw), ChainUnavailableError, 'a body that is not a txid')
    })

    it('refuses an oversized body and a server that is gone', async () => {
      const small = new EsploraBackend(server.url + 'api', { chain: 'signet', maxResponseBytes: 64 * 1024 })
      hugeUtxo = true
      try {
        await assert.rejects(small.utxos([facts.address]), (e: Error) => e instanceof ChainUnavailableError && /byte limit/.test(e.message))
      } finally {
        hugeUtxo = false
      }
      const port = await freePort()
      await assert.rejects(EsploraBackend.connect(`http://127.0.0.1:${port}/api`, { chain: 'signet' }), ChainUnavailableError)
    })
  })

  describe('createChainBackend', () => {
    it('refuses option mistakes with a clear message, never picking an outside server', async () => {
      await assert.rejects(createChainBackend({ chain: 'mainnet' }), (e: Error) => e instanceof ChainConfigError && e.message === '--chain mainnet needs --esplora URL or --bitcoind-rpc URL')
      await assert.rejects(createChainBackend({ chain: 'signet' }), /--chain signet needs --esplora URL or --bitcoind-rpc URL/)
      await assert.rejects(createChainBackend({ chain: 'regtest', esplora: 'http://127.0.0.1:1/' }), ChainConfigError)
      await assert.rejects(createChainBackend({ bitcoindRpc: 'http://127.0.0.1:1/', esplora: 'http://127.0.0.1:1/' }), ChainConfigError)
      await assert.rejects(createChainBackend({ chain: 'moon' as any }), ChainConfigError)
      await assert.rejects(createChainBackend({ chain: 'testnet', esplora: 'ftp://127.0.0.1/' }), ChainConfigError)
      await assert.rejects(createChainBackend({ chain: 'regtest' }), ChainConfigError, 'the embedded chain needs a data dir or memory')
    })

    it('opens the embedded chain on disk under <dataDir>/chain, or in memory', async () => {
      const dataDir = await tempDir('decloud-chain-')
      const onDisk = await createChainBackend({ dataDir })
      try {
        assert.ok(onDisk instanceof EmbeddedChain)
        assert.ok(existsSync(join(dataDir, 'chain', 'regtest')))
      } finally {
        await onDisk.close()
      }
      const inMemory = await createChainBackend({ memory: true })
      await inMemory.close()
      assert.ok(inMemory instanceof EmbeddedChain)
    })

    it('connects to a bitcoind RPC URL (any chain) and to an Esplora URL', async () => {
      const served = await EmbeddedChain.start({ memory: true, segwit: false, http: { port: 0, apiKey: generateApiKey() } })
      const esploraServer = await httpServer((_req, res) => { res.end('195010') })
      let rpc: ChainBackend | undefined
      let esplora: ChainBackend | undefined
      try {
        rpc = await createChainBackend({ bitcoindRpc: served.rpcUrl })
        assert.ok(rpc instanceof BitcoindRpcBackend)
        assert.deepEqual(rpc.network, BCOIN_REGTEST)
        await assert.rejects(createChainBackend({ chain: 'testnet', bitcoindRpc: served.rpcUrl }), /not testnet/)
        esplora = await createChainBackend({ chain: 'testnet', esplora: esploraServer.url })
        assert.ok(esplora instanceof EsploraBackend)
        assert.equal(esplora.chain, 'testnet')
      } finally {
        await rpc?.close()
        await esplora?.close()
        await esploraServer.close()
        await served.close()
      }
    })
  })

  describe('decloud chain serve | mine | info (child processes)', () => {
    let serve: ChildProcess | undefined
    after(async () => {
      serve?.kill('SIGKILL')
      await killAll()
    })

    it('serves a regtest chain other processes mine on, and stops cleanly on SIGTERM', async () => {
      const dataDir = await tempDir('decloud-chain-cli-')
      const port = await freePort()
      const child = spawn(process.execPath, [BIN, 'chain', 'serve', '--port', String(port), '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
      serve = child
      let stderr = ''
      child.stderr?.on('data', (b: Buffer) => { stderr += b.toString('utf8') })
      const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
      const url = await new Promise<string>((resolve, reject) => {
        let stdout = ''
        const timer = setTimeout(() => { reject(new Error(`no URL printed; stderr: ${stderr}`)) }, 60_000)
        child.stdout?.on('data', (b: Buffer) => {
          stdout += b.toString('utf8')
          const m = /chain rpc: (\S+)\n/.exec(stdout)
          if (m != null) { clearTimeout(timer); resolve(m[1]) }
        })
        void exited.then(code => { clearTimeout(timer); reject(new Error(`serve exited (${code}); stderr: ${stderr}`)) })
      })
      assert.match(url, new RegExp(`^http://x:[0-9a-f]{48}@127\\.0\\.0\\.1:${port}/$`))
      const keyFile = join(dataDir, 'chain', 'api-key')
      assert.equal((await readFile(keyFile, 'utf8')).trim(), /x:([0-9a-f]+)@/.exec(url)?.[1])
      assert.equal((await stat(keyFile)).mode & 0o777, 0o600)

      const info = await runCli(['chain', 'info', '--chain-rpc', url])
      assert.equal(info.code, 0, info.stderr)
      assert.equal(info.stdout.toString(), `chain: regtest\nheight: ${SEGWIT_HEIGHT}\n`)
      const to = newKey().address
      const mined = await runCli(['chain', 'mine', '3', '--to', to, '--chain-rpc', url])
      assert.equal(mined.code, 0, mined.stderr)
      assert.equal(mined.stdout.toString(), `height ${SEGWIT_HEIGHT + 3}\n`)
      const rpc = await BitcoindRpcBackend.connect(url)
      try {
        assert.equal((await rpc.utxos([to])).length, 3, 'the rewards went to --to')
      } finally {
        await rpc.close()
      }
      const wrongKey = await runCli(['chain', 'mine', '1', '--chain-rpc', url.replace(/x:[0-9a-f]+@/, 'x:nopenopenope@')])
      assert.equal(wrongKey.code, 3)
      assert.match(wrongKey.stderr, /refused the credentials/)
      const usage = await runCli(['chain', 'mine', 'many', '--chain-rpc', url])
      assert.equal(usage.code, 2)

      // the URL from a file only its owner reads, or from the environment: not in the process list
      const urlFile = join(dataDir, 'rpc-url')
      await writeFile(urlFile, url + '\n', { mode: 0o600 })
      const fromFile = await runCli(['chain', 'mine', '1', '--chain-rpc-file', urlFile])
      assert.equal(fromFile.code, 0, fromFile.stderr)
      assert.equal(fromFile.stdout.toString(), `height ${SEGWIT_HEIGHT + 4}\n`)
      await chmod(urlFile, 0o644)
      const readable = await runCli(['chain', 'info', '--chain-rpc-file', urlFile])
      assert.equal(readable.code, 2)
      assert.match(readable.stderr, /can be read by other users .*chmod 600/)
      process.env.DECLOUD_CHAIN_RPC = url
      try {
        const fromEnv = await runCli(['chain', 'info'])
        assert.equal(fromEnv.code, 0, fromEnv.stderr)
        assert.equal(fromEnv.stdout.toString(), `chain: regtest\nheight: ${SEGWIT_HEIGHT + 4}\n`)
      } finally {
        delete process.env.DECLOUD_CHAIN_RPC
      }

      child.kill('SIGTERM')
      assert.equal(await exited, 0, stderr)
      assert.match(stderr, /stopped/)
      const gone = await runCli(['chain', 'info', '--chain-rpc', url])
      assert.equal(gone.code, 3)
    })

    it('serve takes its API key from a 0600 file or DECLOUD_CHAIN_API_KEY, never a readable file', async () => {
      const dir = await tempDir('decloud-chain-key-')
      const keyFile = join(dir, 'key')
      await writeFile(keyFile, 'from-a-file-0123456789\n', { mode: 0o644 })
      const refused = await runCli(['chain', 'serve', '--memory', '--port', '0', '--api-key-file', keyFile])
      assert.equal(refused.code, 2)
      assert.match(refused.stderr, /--api-key-file: .*chmod 600/)
      await chmod(keyFile, 0o600)
      for (const [args, key] of [[['--api-key-file', keyFile], 'from-a-file-0123456789'], [[], 'from-the-env-0123456789']] as const) {
        const child = spawn(process.execPath, [BIN, 'chain', 'serve', '--memory', '--port', '0', '--block-interval', '0', ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, DECLOUD_CHAIN_API_KEY: 'from-the-env-0123456789' }
        })
        serve = child
        const exited = new Promise<number | null>(resolve => child.once('exit', code => { resolve(code) }))
        const url = await new Promise<string>((resolve, reject) => {
          let stdout = ''
          const timer = setTimeout(() => { reject(new Error('no URL printed')) }, 60_000)
          child.stdout?.on('data', (b: Buffer) => {
            stdout += b.toString('utf8')
            const m = /chain rpc: (\S+)\n/.exec(stdout)
            if (m != null) { clearTimeout(timer); resolve(m[1]) }
          })
        })
        assert.match(url, new RegExp(`^http://x:${key}@127\\.0\\.0\\.1:[0-9]+/$`))
        child.kill('SIGTERM')
        assert.equal(await exited, 0)
      }
    })
  })
})
