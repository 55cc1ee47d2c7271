/**
 * The node's bitcoin wallet: BIP84 (P2WPKH) keys from the data dir's BIP39
 * mnemonic, coins as the chain backend reports them, coin selection, change,
 * and reservations so two payments never spend the same coin.
 *
 * Keys: m/84'/coin'/account'/0/i (receive) and m/84'/coin'/account'/1/i
 * (change), coin = 0 on mainnet and 1 elsewhere. Receive index 0 is the
 * wallet's identity address (its `btc:` credential): it is never handed out
 * for payments and its coins are never spent by `createPayment`, since
 * moving them would reset the identity's age.
 *
 * Persisted in the wallet sublevel, under a prefix naming the seed's
 * fingerprint, the address encoding and the account (so another seed or
 * chain in the same data dir never mixes with this one):
 * - `next/<chain>`: next unused index of the receive (0) / change (1) chain
 * - `addr/<chain>/<index>`: derived address (saves re-deriving at start)
 * - `label/<label>`: receive index handed out for a label
 * - `res/<txid>`: outpoints reserved by a payment not yet seen by the chain
 * - `sent/<time>/<txid>`: the local ledger of payments made
 * - `senttx/<txid>`: its ledger key
 */
import { inspect } from 'node:util'
import { HDKey } from '@scure/bip32'
import { mnemonicToSeed } from '@scure/bip39'
import { OutScript } from '@scure/btc-signer'
import { Mutex } from '../../util/locks.js'
import { Lru } from '../../util/lru.js'
import { btcSigner, decodeAddress } from '../credentials.js'
import { ChainUnsupportedError, InsufficientFundsError, TxRejectedError } from '../types.js'
import { outpoint, Reservations } from './coins.js'
import { indexedHistory, ledgerEntries, QUERY_CHUNK, unindexedHistory } from './history.js'
import { CHANGE, IDENTITY_INDEX, Keychain, pad, RECEIVE, text } from './keys.js'
import { loadOrCreateMnemonic } from './mnemonic.js'
import { buildTransaction, dustThreshold, estimateVsize, selectCoins } from './selection.js'
import type { CoinView, Reservation } from './coins.js'
import type { HistorySource, LedgerEntry } from './history.js'
import type { Signer } from '../../protocols/opencloud/api/signing.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { AddressNetwork, AddressState, AddressTx, ChainBackend, ChainName, PaymentWallet, SignedPayment, Utxo, WalletBalance } from '../types.js'

export { DUST_P2WPKH, dustThreshold, estimateVsize } from './selection.js'
export type { LedgerEntry } from './history.js'

/** Unused addresses looked at past the last used one when restoring */
const GAP_LIMIT = 20
/** Longest label accepted by `addressFor` */
const MAX_LABEL_LENGTH = 512
/** Labels whose address is kept in memory (`addressFor`) */
const LABEL_CACHE_SIZE = 10_000

export interface WalletOpenOptions {
  /** the node's data dir, holding `wallet.json` */
  dataDir: string
  /** the wallet's sublevel of the node's store (`store.sub('wallet')`) */
  db: SubDb
  backend: ChainBackend
  /** passphrase of an encrypted seed file, or to encrypt a new one */
  passphrase?: string
  /** BIP44 account @default 0 */
  account?: number
  /**
   * How long `createPayment` waits, when the coins it needs are out in
   * payments built but not yet seen by the chain (handed to a seller that
   * has not broadcast them yet), for their change to come back (ms; 0: no
   * wait) @default IN_FLIGHT_WAIT_MS
   */
  inFlightWait?: number
}

/** Default of `WalletOpenOptions.inFlightWait` */
export const IN_FLIGHT_WAIT_MS = 20_000
/** How often a payment waiting for in-flight coins looks again (ms) */
const IN_FLIGHT_POLL_MS = 200

const dec = new TextDecoder()

export class Wallet implements PaymentWallet {
  readonly chain: ChainName
  readonly network: AddressNetwork
  readonly account: number
  /** receive index 0: the address of the wallet's `btc:` credential */
  readonly identityAddress: string
  private readonly db: SubDb
  private readonly backend: ChainBackend
  private readonly prefix: string
  readonly #mnemonic: string
  private readonly keys: Keychain
  /** coins held by payments not yet seen by the chain */
  private readonly coins: Reservations
  private readonly inFlightWait: number
  /** label → address handed out for it (labels never change address) */
  private readonly labels = new Lru<string>(LABEL_CACHE_SIZE)
  private readonly mutex = new Mutex()

  private constructor (init: { db: SubDb, backend: ChainBackend, mnemonic: string, root: HDKey, account: number, inFlightWait?: number }) {
    this.db = init.db
    this.backend = init.backend
    this.chain = init.backend.chain
    this.network = init.backend.network
    this.account = init.account
    this.#mnemonic = init.mnemonic
    this.keys = new Keychain(init.root, this.chain, this.network, init.account)
    this.prefix = this.keys.prefix
    this.coins = new Reservations(this.db, this.backend, this.prefix)
    this.identityAddress = this.keys.derive(RECEIVE, IDENTITY_INDEX)
    this.inFlightWait = init.inFlightWait ?? IN_FLIGHT_WAIT_MS
  }

  /**
   * Opens the wallet of a data dir: reads (or creates, on first start) the
   * seed file, then the wallet's state from the store. A seed restored into
   * a data dir with no wallet state is scanned for funded addresses.
   */
  static async open (options: WalletOpenOptions): Promise<Wallet> {
    const account = options.account ?? 0
    if (!Number.isSafeInteger(account) || account < 0 || account >= 0x80000000) { throw new RangeError('account must be an integer in [0, 2^31)') }
    const { mnemonic, created } = await loadOrCreateMnemonic(options.dataDir, { passphrase: options.passphrase })
    const root = HDKey.fromMasterSeed(await mnemonicToSeed(mnemonic))
    const inFlightWait = options.inFlightWait ?? IN_FLIGHT_WAIT_MS
    if (!Number.isSafeInteger(inFlightWait) || inFlightWait < 0 || inFlightWait > 600_000) { throw new RangeError('inFlightWait must be 0–600000 ms') }
    const wallet = new Wallet({ db: options.db, backend: options.backend, mnemonic, root, account, inFlightWait })
    const fresh = await wallet.load()
    if (fresh && !created) {
      try {
        await wallet.rescan()
      } catch {
        // the backend may be down at start; `rescan()` can run later
      }
    }
    if (fresh) { await wallet.saveCounters() }
    return wallet
  }

  /** Reads counters, addresses and reservations; true when nothing was stored yet */
  private async load (): Promise<boolean> {
    const fresh = await this.keys.load(this.db)
    await this.coins.load()
    return fresh
  }

  private async saveCounters (): Promise<void> {
    await this.db.batch(this.keys.counterOps())
  }

  async addressFor (label: string): Promise<string> {
    if (typeof label !== 'string' || label.length === 0 || label.length > MAX_LABEL_LENGTH) { throw new RangeError(`a label is 1–${MAX_LABEL_LENGTH} characters`) }
    // the payment gate asks on every attached payment: known labels need
    // neither the store nor the mutex (which a payment being built may hold)
    const known = this.labels.get(label)
    if (known != null) { return known }
    return this.mutex.run(async () => {
      const key = `${this.prefix}label/${label}`
      const v = await this.db.get(key)
      let address: string
      if (v != null) {
        address = this.keys.derive(RECEIVE, Number(dec.decode(v)))
      } else {
        const ops: BatchOp[] = []
        address = this.keys.allocate(RECEIVE, ops)
        ops.push({ type: 'put', key, value: text(String(this.keys.nextIndex(RECEIVE) - 1)) })
        await this.db.batch(ops)
      }
      this.labels.set(label, address)
      return address
    })
  }

  async newAddress (): Promise<string> {
    return this.mutex.run(async () => {
      const ops: BatchOp[] = []
      const address = this.keys.allocate(RECEIVE, ops)
      await this.db.batch(ops)
      return address
    })
  }

  isMine (address: string): boolean {
    return this.keys.isMine(address)
  }

  /** The coins the backend lists for these of our addresses */
  private async listed (addresses: string[]): Promise<Utxo[]> {
    const out: Utxo[] = []
    for (let i = 0; i < addresses.length; i += QUERY_CHUNK) {
      out.push(...await this.backend.utxos(addresses.slice(i, i + QUERY_CHUNK)))
    }
    // only coins of scripts this wallet derived (a backend's answer is input
    // like any other), and never the identity address's
    return out.filter(u => typeof u.script === 'string' && this.keys.spendsFrom(u.script.toLowerCase()) && typeof u.vout === 'number' && typeof u.value === 'bigint' && u.value > 0n)
  }

  /** The wallet's coins once its own payments are counted (`Reservations.view`) */
  private async coinView (): Promise<CoinView> {
    return this.coins.view(await this.listed(this.keys.spendableAddresses()))
  }

  /**
   * Spendable coins (the identity address's excluded), confirmed and
   * unconfirmed: the free coins, and those of payments not yet seen by the
   * chain (they leave the wallet when the payment is broadcast)
   */
  async balance (): Promise<WalletBalance> {
    let confirmed = 0n
    let unconfirmed = 0n
    const view = await this.coinView()
    for (const u of [...view.free, ...view.inFlight]) {
      if (u.height != null) { confirmed += u.value } else { unconfirmed += u.value }
    }
    return { confirmed, unconfirmed }
  }

  /** Balance and age of the identity address, as a server sees them */
  async identityState (): Promise<AddressState> {
    const [s] = await this.backend.addresses([this.identityAddress])
    return s
  }

  /** A signer for the identity address's `btc:` credential */
  identitySigner (): Signer {
    return btcSigner(this.keys.privateKey(RECEIVE, IDENTITY_INDEX), this.identityAddress, this.network)
  }

  /** The wallet's 24 words, for a user who asks to back them up. Never logged. */
  exportMnemonic (): string {
    return this.#mnemonic
  }

  /** Outpoints reserved by payments not yet seen by the chain */
  reservedOutpoints (): string[] {
    return this.coins.outpoints()
  }

  async createPayment (address: string, amount: bigint, options: { feeRate?: bigint } = {}): Promise<SignedPayment> {
    const decoded = decodeAddress(address, this.network)
    if (decoded == null) { throw new TypeError(`${address.slice(0, 100)} is not a ${this.chain} address (${this.network.bech32}1…)`) }
    const script = OutScript.encode(decoded)
    if (typeof amount !== 'bigint' || amount < dustThreshold(script)) { throw new RangeError(`amount must be at least ${dustThreshold(script)} sat (dust limit)`) }
    const feeRate = options.feeRate ?? await this.backend.feeRate()
    if (typeof feeRate !== 'bigint' || feeRate < 1n || feeRate > 100_000n) { throw new RangeError('fee rate must be 1–100000 sat/vB') }
    const deadline = Date.now() + this.inFlightWait
    for (;;) {
      try {
        return await this.mutex.run(async () => this.build(address, script, amount, feeRate))
      } catch (err) {
        // the coins that would pay are out in payments the chain has not seen
        // yet (a seller about to broadcast them): their change is back as
        // soon as it does, so wait for that rather than refuse
        if (!(err instanceof InsufficientFundsError) || err.available + err.inFlight < err.needed || Date.now() + IN_FLIGHT_POLL_MS > deadline) { throw err }
        await new Promise(resolve => setTimeout(resolve, IN_FLIGHT_POLL_MS))
      }
    }
  }

  /** Coin selection, signing and reservation; runs under the mutex */
  private async build (address: string, script: Uint8Array, amount: bigint, feeRate: bigint): Promise<SignedPayment> {
    const view = await this.coinView()
    await this.coins.forget(view.ended)
    const free = view.free
    const plan = selectCoins(free, amount, script.byteLength, feeRate)
    if (plan == null) {
      const confirmed = free.reduce((s, u) => s + (u.height != null ? u.value : 0n), 0n)
      const unconfirmed = free.reduce((s, u) => s + (u.height == null ? u.value : 0n), 0n)
      const inFlight = view.inFlight.reduce((s, u) => s + u.value, 0n)
      const needed = amount + feeRate * estimateVsize(Math.max(1, free.length), [script.byteLength])
      throw new InsufficientFundsError(needed, confirmed + unconfirmed, { confirmed, unconfirmed, inFlight, inFlightPayments: new Set(view.inFlight.map(u => this.coins.holder(outpoint(u)))).size })
    }
    const { selected } = plan

    const ops: BatchOp[] = []
    const change = plan.change > 0n ? { script: this.keys.scriptOf(this.keys.allocate(CHANGE, ops)), amount: plan.change } : undefined
    const { txid, raw, outputs, changeIndex } = buildTransaction(selected, { script, amount }, change, s => this.keys.keyOf(s))

    const time = Date.now()
    const reservation: Reservation = {
      outpoints: selected.map(outpoint),
      time,
      seq: this.coins.nextSeq(),
      ...(changeIndex >= 0 ? { change: { vout: changeIndex, value: plan.change.toString(), script: Buffer.from(outputs[changeIndex].script).toString('hex') } } : {})
    }
    const ledgerKey = `${this.prefix}sent/${pad(time, 15)}/${txid}`
    // the coins spent, so the history can show where they came from on a backend without an address index
    const inputs = selected.map(u => ({ txid: u.txid, vout: u.vout, value: u.value.toString(), ...(u.height != null ? { height: u.height } : {}) }))
    const entry = { txid, to: address, amount: amount.toString(), fee: plan.fee.toString(), time, inputs }
    ops.push(
      { type: 'put', key: `${this.prefix}res/${txid}`, value: text(JSON.stringify(reservation)) },
      { type: 'put', key: ledgerKey, value: text(JSON.stringify(entry)) },
      { type: 'put', key: `${this.prefix}senttx/${txid}`, value: text(ledgerKey) }
    )
    await this.db.batch(ops)
    this.coins.add(txid, reservation)
    return { txid, raw, amount, fee: plan.fee }
  }

  async release (txid: string): Promise<void> {
    await this.mutex.run(async () => {
      const ops: BatchOp[] = [{ type: 'del', key: `${this.prefix}res/${txid}` }]
      const ledgerKey = await this.db.get(`${this.prefix}senttx/${txid}`)
      if (ledgerKey != null) {
        ops.push({ type: 'del', key: dec.decode(ledgerKey) }, { type: 'del', key: `${this.prefix}senttx/${txid}` })
      }
      await this.db.batch(ops)
      this.coins.unreserve(txid)
    })
  }

  async send (address: string, amount: bigint, options: { feeRate?: bigint } = {}): Promise<SignedPayment> {
    const payment = await this.createPayment(address, amount, options)
    try {
      await this.backend.broadcast(payment.raw)
    } catch (err) {
      if (err instanceof TxRejectedError && err.kind === 'already-known') { return payment }
      // a refused transaction gives its coins back; if the backend could not
      // be reached, the coins stay reserved until they are seen spent or
      // `release(txid)` is called, so no second payment races the first
      if (err instanceof TxRejectedError) { await this.release(payment.txid) }
      throw err
    }
    return payment
  }

  /** The local ledger of payments made, newest first */
  async ledger (limit = 100): Promise<LedgerEntry[]> {
    return (await ledgerEntries(this.db, this.prefix, limit)).map(({ txid, to, amount, fee, time }) => ({ txid, to, amount, fee, time }))
  }

  /**
   * The wallet's transactions, newest first (unconfirmed first), both
   * directions, each with its net effect on the wallet and its
   * confirmations. From the backend's address history when it has one;
   * over bitcoind JSON-RPC (no address index) from the local ledger, the
   * coins the wallet holds and the coins its payments spent.
   */
  async history (limit = 100): Promise<AddressTx[]> {
    let rows: AddressTx[]
    try {
      rows = await indexedHistory(this.historySource(), limit)
    } catch (err) {
      if (!(err instanceof ChainUnsupportedError)) { throw err }
      rows = await unindexedHistory(this.historySource(), limit)
    }
    const tip = await this.backend.height()
    return rows.map(t => ({ ...t, confirmations: t.height != null ? Math.max(1, tip - t.height + 1) : 0 }))
  }

  private historySource (): HistorySource {
    return {
      db: this.db,
      prefix: this.prefix,
      backend: this.backend,
      addresses: () => this.keys.usedAddresses(),
      ownsScript: script => this.keys.ownsScript(script),
      isMine: address => this.isMine(address)
    }
  }

  /**
   * Looks past the last used index of both chains for funded addresses (a
   * seed restored in a new data dir) and extends the wallet to the last
   * funded one.
   */
  async rescan (gap = GAP_LIMIT): Promise<void> {
    await this.mutex.run(async () => {
      await this.db.batch(await this.keys.rescan(this.backend, gap))
    })
  }

  [inspect.custom] (): string {
    return `Wallet(${this.chain}, account ${this.account}, identity ${this.identityAddress})`
  }
}
