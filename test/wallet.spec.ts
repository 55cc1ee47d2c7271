import assert from 'node:assert/strict'
import { chmod, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { inspect } from 'node:util'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { validateMnemonic } from '@scure/bip39'
import { wordlist } from '@scure/bip39/wordlists/english.js'
import { p2wpkh, Transaction } from '@scure/btc-signer'
import bcoin from 'bcoin'
import {
  InvalidMnemonicError, loadOrCreateMnemonic, PassphraseRequiredError, readWalletFile, restoreMnemonic, walletFilePath,
  WalletFileError, writeWalletFile, WrongPassphraseError, newMnemonic
} from '../src/payments/wallet/mnemonic.js'
import { estimateVsize, Wallet } from '../src/payments/wallet/wallet.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'
import { fundAddress, startRegtest } from './regtest.js'
import type { EmbeddedChain } from './regtest.js'

const BTC = 100_000_000n
const ABANDON = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about'

describe('wallet seed file', () => {
  it('is created on first start with mode 0600 and 24 valid words, and read back the same', async () => {
    const dir = await tempDir()
    const first = await loadOrCreateMnemonic(dir)
    assert.equal(first.created, true)
    assert.equal(first.mnemonic.split(' ').length, 24)
    assert.ok(validateMnemonic(first.mnemonic, wordlist))
    const st = await stat(walletFilePath(dir))
    assert.equal(st.mode & 0o777, 0o600)
    const again = await loadOrCreateMnemonic(dir)
    assert.deepEqual(again, { mnemonic: first.mnemonic, created: false })
  })

  it('encrypts with a passphrase: round trip, wrong passphrase is an error, no words on disk', async () => {
    const dir = await tempDir()
    const words = newMnemonic()
    await writeWalletFile(dir, words, { passphrase: 'correct horse' })
    const raw = await readFile(walletFilePath(dir), 'utf8')
    for (const w of words.split(' ')) { assert.ok(!raw.includes(` ${w} `)) }
    assert.ok(!raw.includes(words))
    assert.equal(await readWalletFile(dir, { passphrase: 'correct horse' }), words)
    await assert.rejects(readWalletFile(dir, { passphrase: 'wrong horse' }), (err: any) => err.name === WrongPassphraseError.name && /wrong passphrase/.test(err.message))
    await assert.rejects(readWalletFile(dir), (err: any) => err.name === PassphraseRequiredError.name)
    // a flipped bit in the ciphertext is not garbage keys either
    const file = JSON.parse(raw)
    const data = Buffer.from(file.cipher.data, 'base64')
    data[0] ^= 1
    file.cipher.data = data.toString('base64')
    const dir2 = await tempDir()
    const { writeFile } = await import('node:fs/promises')
    await writeFile(walletFilePath(dir2), JSON.stringify(file), { mode: 0o600 })
    await assert.rejects(readWalletFile(dir2, { passphrase: 'correct horse' }), (err: any) => err.name === WrongPassphraseError.name)
  })

  it('refuses a damaged file whose scrypt parameters would need gigabytes of memory', async () => {
    const dir = await tempDir()
    await writeWalletFile(dir, newMnemonic(), { passphrase: 'correct horse' })
    const file = JSON.parse(await readFile(walletFilePath(dir), 'utf8'))
    file.kdf.N = 2 ** 20
    file.kdf.r = 32
    const dir2 = await tempDir()
    const { writeFile } = await import('node:fs/promises')
    await writeFile(walletFilePath(dir2), JSON.stringify(file), { mode: 0o600 })
    await assert.rejects(readWalletFile(dir2, { passphrase: 'correct horse' }), (err: any) => err.name === WalletFileError.name && /unknown encryption parameters/.test(err.message))
  })

  it('refuses a file that group or others can read, saying to chmod 600', async () => {
    const dir = await tempDir()
    await loadOrCreateMnemonic(dir)
    await chmod(walletFilePath(dir), 0o640)
    await assert.rejects(readWalletFile(dir), (err: any) => err.name === WalletFileError.name && err.message.includes(`chmod 600 ${walletFilePath(dir)}`))
    await assert.rejects(loadOrCreateMnemonic(dir), (err: any) => err.name === WalletFileError.name)
    await chmod(walletFilePath(dir), 0o600)
    assert.equal((await loadOrCreateMnemonic(dir)).created, false)
  })

  it('restores from valid words only, never over an existing seed', async () => {
    const dir = await tempDir()
    await assert.rejects(restoreMnemonic(dir, 'abandon '.repeat(24).trim()), (err: any) => err.name === InvalidMnemonicError.name && !err.message.includes('abandon'))
    await assert.rejects(restoreMnemonic(dir, 'not words at all'), (err: any) => err.name === InvalidMnemonicError.name)
    assert.equal(await restoreMnemonic(dir, `  ${ABANDON.toUpperCase().replace(/ /g, '\n ')} `), ABANDON)
    assert.equal(await readWalletFile(dir), ABANDON)
    await assert.rejects(restoreMnemonic(dir, newMnemonic()), (err: any) => err.name === WalletFileError.name && /already exists/.test(err.message))
    assert.equal(await readWalletFile(dir), ABANDON)
  })
})

describe('wallet on a regtest chain', function () {
  this.timeout(120_000)
  let chain: EmbeddedChain
  const stores: Store[] = []
  /** an address no wallet here owns, to mine to */
  let elsewhere: string

  async function openWallet (dataDir: string, options: { passphrase?: string, inFlightWait?: number } = {}): Promise<{ wallet: Wallet, store: Store }> {
    const store = new Store(join(dataDir, 'db'))
    await store.open()
    stores.push(store)
    const wallet = await Wallet.open({ dataDir, db: store.sub('wallet'), backend: chain, ...options })
    return { wallet, store }
  }

  async function closeStore (store: Store): Promise<void> {
    stores.splice(stores.indexOf(store), 1)
    await store.close()
  }

  before(async () => {
    chain = await startRegtest()
    elsewhere = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), chain.network).address as string
  })

  after(async () => {
    for (const s of stores.splice(0)) { await s.close() }
    await chain?.close()
  })

  it('derives BIP84 keys as another implementation does (bcoin), identity at receive index 0', async () => {
    const dir = await tempDir()
    await restoreMnemonic(dir, ABANDON)
    const { wallet, store } = await openWallet(dir)
    // bcoin's own BIP32/BIP39 code (not in its typings)
    const hd = bcoin as unknown as { HDPrivateKey: any, Mnemonic: any }
    const master = hd.HDPrivateKey.fromMnemonic(hd.Mnemonic.fromPhrase(ABANDON))
    const expected = (path: string): string => {
      const ring = bcoin.KeyRing.fromPrivate(master.derivePath(path).privateKey, true)
      ring.witness = true
      return ring.getAddress(undefined, 'regtest').toString('regtest')
    }
    assert.equal(wallet.identityAddress, expected("m/84'/1'/0'/0/0"))
    assert.equal(await wallet.newAddress(), expected("m/84'/1'/0'/0/1"))
    assert.equal(await wallet.addressFor('peer-x'), expected("m/84'/1'/0'/0/2"))
    assert.ok(wallet.identityAddress.startsWith('rb1q'))
    await closeStore(store)
  })

  it('keeps its addresses across a restart; same label → same address, different labels → different', async () => {
    const dir = await tempDir()
    let { wallet, store } = await openWallet(dir, { passphrase: 'pw' })
    const identity = wallet.identityAddress
    const a = await wallet.addressFor('oc:peer-a')
    const b = await wallet.addressFor('oc:peer-b')
    const fresh = await wallet.newAddress()
    assert.equal(await wallet.addressFor('oc:peer-a'), a)
    assert.equal(new Set([identity, a, b, fresh]).size, 4)
    for (const x of [identity, a, b, fresh]) { assert.ok(wallet.isMine(x)) }
    assert.equal(wallet.isMine(elsewhere), false)
    assert.equal(wallet.isMine('garbage'), false)
    await closeStore(store);
    ({ wallet, store } = await openWallet(dir, { passphrase: 'pw' }))
    assert.equal(wallet.identityAddress, identity)
    assert.equal(await wallet.addressFor('oc:peer-a'), a)
    assert.equal(await wallet.addressFor('oc:peer-b'), b)
    for (const x of [identity, a, b, fresh]) { assert.ok(wallet.isMine(x), 'isMine after restart') }
    const next = await wallet.newAddress()
    assert.ok(![identity, a, b, fresh].includes(next), 'a new address is never one handed out before')
    // concurrent labels get distinct indexes
    const many = await Promise.all(Array.from({ length: 20 }, async (_, i) => wallet.addressFor(`label-${i % 10}`)))
    assert.equal(new Set(many).size, 10)
    await assert.rejects(Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: chain, passphrase: 'nope' }), (err: any) => err.name === 'WrongPassphraseError')
    assert.doesNotMatch(inspect(wallet), /abandon|[a-z]+ [a-z]+ [a-z]+ [a-z]+/)
    assert.equal(wallet.exportMnemonic().split(' ').length, 24)
    await closeStore(store)
  })

  it('is funded, pays a second wallet, and both balances are exact after a block', async () => {
    const { wallet: alice } = await openWallet(await tempDir())
    const { wallet: bob } = await openWallet(await tempDir())
    const funded = await fundAddress(chain, await alice.newAddress(), 10n * BTC)
    assert.deepEqual(await alice.balance(), { confirmed: 10n * BTC, unconfirmed: 0n })
    assert.deepEqual(await bob.balance(), { confirmed: 0n, unconfirmed: 0n })

    const to = await bob.addressFor(alice.identityAddress)
    const rate = await chain.feeRate()
    const paid = await alice.send(to, 150_000_000n)
    // one input, payment + change, both P2WPKH
    assert.equal(paid.fee, rate * estimateVsize(1, [22, 22]))
    assert.equal(paid.amount, 150_000_000n)
    const status = await chain.transaction(paid.txid)
    assert.equal(status?.confirmations, 0)
    const tx = Transaction.fromRaw(paid.raw)
    assert.equal(tx.inputsLength, 1)
    assert.equal(tx.getInput(0).index, funded.vout)
    assert.ok(tx.vsize <= Number(estimateVsize(1, [22, 22])), 'the estimate never undershoots')
    assert.deepEqual(await bob.balance(), { confirmed: 0n, unconfirmed: 150_000_000n })

    await chain.mine(1, elsewhere)
    assert.deepEqual(await alice.balance(), { confirmed: 10n * BTC - 150_000_000n - paid.fee, unconfirmed: 0n })
    assert.deepEqual(await bob.balance(), { confirmed: 150_000_000n, unconfirmed: 0n })

    const aliceHistory = await alice.history()
    assert.deepEqual(aliceHistory[0], { txid: paid.txid, height: await chain.height(), confirmations: 1, delta: -(150_000_000n + paid.fee) })
    assert.deepEqual(aliceHistory[1], { txid: funded.txid, height: funded.height, confirmations: await chain.height() - funded.height + 1, delta: 10n * BTC })
    assert.deepEqual((await bob.history())[0], { txid: paid.txid, height: await chain.height(), confirmations: 1, delta: 150_000_000n })
    assert.deepEqual((await alice.ledger()).map(e => e.txid), [paid.txid])

    // bob pays everything but a little back: no change below dust, it goes to the fee
    const back = await bob.createPayment(await alice.newAddress(), 150_000_000n - 110n - 200n, { feeRate: 1n })
    assert.equal(Transaction.fromRaw(back.raw).outputsLength, 1)
    assert.equal(back.fee, 310n)
    await bob.release(back.txid)
  })

  it('refuses to pay more than it holds with InsufficientFundsError (needed, available)', async () => {
    const { wallet } = await openWallet(await tempDir())
    await fundAddress(chain, await wallet.newAddress(), 2n * BTC)
    await assert.rejects(wallet.createPayment(elsewhere, 5n * BTC, { feeRate: 2n }), (err: any) => {
      assert.equal(err.name, 'InsufficientFundsError')
      assert.equal(err.available, 2n * BTC)
      assert.equal(err.needed, 5n * BTC + 2n * estimateVsize(1, [22]))
      return true
    })
    // exactly the balance cannot pay its own fee
    await assert.rejects(wallet.createPayment(elsewhere, 2n * BTC), { name: 'InsufficientFundsError' })
    // the identity address's coins are not spent for payments
    await fundAddress(chain, wallet.identityAddress, 3n * BTC)
    assert.deepEqual(await wallet.balance(), { confirmed: 2n * BTC, unconfirmed: 0n })
    assert.equal((await wallet.identityState()).confirmed, 3n * BTC)
    await assert.rejects(wallet.createPayment(elsewhere, 3n * BTC), { name: 'InsufficientFundsError' })
    // hostile amounts and addresses
    await assert.rejects(wallet.createPayment(elsewhere, 100n), RangeError)
    await assert.rejects(wallet.createPayment(elsewhere, -1n), RangeError)
    await assert.rejects(wallet.createPayment('bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu', BTC), TypeError)
  })

  it('reserves coins: concurrent payments use different coins, reservations survive a restart, release gives them back', async () => {
    const dir = await tempDir()
    // no wait for payments in flight: the third payment is refused at once
    let { wallet, store } = await openWallet(dir, { inFlightWait: 0 })
    const c1 = await fundAddress(chain, await wallet.newAddress(), BTC)
    const c2 = await fundAddress(chain, await wallet.newAddress(), BTC)
    const coin = (tx: Uint8Array): string => {
      const t = Transaction.fromRaw(tx)
      assert.equal(t.inputsLength, 1)
      const i = t.getInput(0)
      return `${Buffer.from(i.txid as Uint8Array).toString('hex')}:${String(i.index)}`
    }
    const [p1, p2] = await Promise.all([
      wallet.createPayment(elsewhere, 60_000_000n),
      wallet.createPayment(elsewhere, 60_000_000n)
    ])
    const used = [coin(p1.raw), coin(p2.raw)]
    assert.notEqual(used[0], used[1])
    assert.deepEqual(new Set(used), new Set([`${c1.txid}:${c1.vout}`, `${c2.txid}:${c2.vout}`]))
    assert.deepEqual(new Set(wallet.reservedOutpoints()), new Set(used))
    await assert.rejects(wallet.createPayment(elsewhere, 10_000_000n), (err: any) => err.name === 'InsufficientFundsError' && err.available === 0n)

    await closeStore(store);
    ({ wallet, store } = await openWallet(dir, { inFlightWait: 0 }))
    assert.deepEqual(new Set(wallet.reservedOutpoints()), new Set(used))
    await assert.rejects(wallet.createPayment(elsewhere, 10_000_000n), { name: 'InsufficientFundsError' })

    await wallet.release(p1.txid)
    const p3 = await wallet.createPayment(elsewhere, 10_000_000n)
    assert.equal(coin(p3.raw), used[0])
    assert.deepEqual((await wallet.ledger()).map(e => e.txid).sort(), [p2.txid, p3.txid].sort())

    // p2 reaches the mempool: its coin is spent, its reservation ends, its change pays the next one
    assert.equal(await chain.broadcast(p2.raw), p2.txid)
    const p4 = await wallet.createPayment(elsewhere, 10_000_000n)
    assert.equal(coin(p4.raw), `${p2.txid}:${Transaction.fromRaw(p2.raw).getOutput(0).amount === 60_000_000n ? 1 : 0}`)
    assert.deepEqual(new Set(wallet.reservedOutpoints()), new Set([used[0], coin(p4.raw)]))

    // a payment the chain refuses gives its coins back: p3's coin double-spent by p5
    await wallet.release(p3.txid)
    const p5 = await wallet.send(elsewhere, 20_000_000n)
    assert.equal(coin(p5.raw), used[0])
    await assert.rejects(chain.broadcast(p3.raw), { name: 'TxRejectedError' })
    await closeStore(store)
  })

  it('send gives the coins back when the chain refuses the transaction', async () => {
    const { wallet } = await openWallet(await tempDir())
    await fundAddress(chain, await wallet.newAddress(), BTC)
    // each payment spends the previous one's unconfirmed change: the mempool
    // takes chains of at most 25 transactions, so the 26th is refused
    const sent: string[] = []
    for (let i = 0; i < 25; i++) { sent.push((await wallet.send(elsewhere, 10_000n)).txid) }
    await assert.rejects(wallet.send(elsewhere, 10_000n), (err: any) => err.name === 'TxRejectedError' && /too-long-mempool-chain/.test(err.reason))
    assert.deepEqual((await wallet.ledger(100)).map(e => e.txid).sort(), [...sent].sort(), 'the refused payment left no ledger entry')
    assert.deepEqual(wallet.reservedOutpoints(), [], 'the refused payment holds no coin')
    await chain.mine(1, elsewhere)
    await wallet.send(elsewhere, 10_000n)
    const b = await wallet.balance()
    assert.equal(b.confirmed + b.unconfirmed, BTC - 26n * 10_000n - (await wallet.ledger(100)).reduce((s, e) => s + e.fee, 0n))
  })

  it('restored into an empty data dir, finds its funded addresses again', async () => {
    const dir = await tempDir()
    const { wallet, store } = await openWallet(dir)
    const words = wallet.exportMnemonic()
    for (let i = 0; i < 3; i++) { await wallet.newAddress() }
    const last = await wallet.newAddress()
    await fundAddress(chain, last, BTC)
    await closeStore(store)
    const dir2 = await tempDir()
    await restoreMnemonic(dir2, words)
    const { wallet: restored, store: store2 } = await openWallet(dir2)
    assert.ok(restored.isMine(last))
    assert.deepEqual(await restored.balance(), { confirmed: BTC, unconfirmed: 0n })
    assert.notEqual(await restored.newAddress(), last)
    await closeStore(store2)
  })
})

describe('wallet on a backend that lists confirmed coins only (bitcoind JSON-RPC)', function () {
  this.timeout(60_000)
  let served: EmbeddedChain
  let rpc: import('../src/payments/chain/bitcoind-rpc.js').BitcoindRpcBackend
  const stores: Store[] = []

  before(async () => {
    const { EmbeddedChain } = await import('./regtest.js')
    const { generateApiKey } = await import('../src/payments/chain/embedded.js')
    const { BitcoindRpcBackend } = await import('../src/payments/chain/bitcoind-rpc.js')
    served = await EmbeddedChain.start({ memory: true, http: { port: 0, apiKey: generateApiKey() } })
    rpc = await BitcoindRpcBackend.connect(served.rpcUrl as string, { chain: 'regtest' })
  })

  after(async () => {
    for (const s of stores) { await s.close().catch(() => {}) }
    await rpc?.close()
    await served?.close()
  })

  it('spends its own unconfirmed change: two payments in a row from one coin, no block between', async () => {
    const dir = await tempDir()
    const store = new Store(join(dir, 'db'))
    await store.open()
    stores.push(store)
    const wallet = await Wallet.open({ dataDir: dir, db: store.sub('wallet'), backend: rpc })
    await served.fund(await wallet.newAddress(), BTC)
    assert.equal((await wallet.balance()).confirmed, BTC)
    const to = p2wpkh(secp256k1.getPublicKey(secp256k1.utils.randomSecretKey(), true), rpc.network).address as string
    const first = await wallet.send(to, 10_000n)
    // scantxoutset still lists the spent coin and not the change: the wallet adds its own change
    const between = await wallet.balance()
    assert.equal(between.confirmed + between.unconfirmed, BTC - 10_000n - first.fee)
    const second = await wallet.send(to, 20_000n)
    assert.notEqual(second.txid, first.txid)
    await served.mine(1, to)
    const after = await wallet.balance()
    assert.equal(after.unconfirmed, 0n)
    assert.equal(after.confirmed, BTC - 30_000n - first.fee - second.fee, 'both payments confirmed, nothing counted twice')
  })
})
