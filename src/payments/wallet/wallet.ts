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
import { randomInt } from 'node:crypto'
import { inspect } from 'node:util'
import { HDKey } from '@scure/bip32'
import { mnemonicToSeed } from '@scure/bip39'
import { OutScript, p2wpkh, Transaction } from '@scure/btc-signer'
import { Mutex } from '../../util/locks.js'
import { Lru } from '../../util/lru.js'
import { btcSigner, decodeAddress } from '../credentials.js'
import { ChainUnsupportedError, coinType, InsufficientFundsError, TxRejectedError } from '../types.js'
import { loadOrCreateMnemonic } from './mnemonic.js'
import type { Signer } from '../../protocols/opencloud/api/signing.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { AddressNetwork, AddressState, AddressTx, ChainBackend, ChainName, PaymentWallet, SignedPayment, Utxo, WalletBalance } from '../types.js'

/** Receive and change chains of a BIP44 account */
const RECEIVE = 0
const CHANGE = 1
type ChainIndex = typeof RECEIVE | typeof CHANGE

/** The identity address: receive index 0 */
const IDENTITY_INDEX = 0
/** Unused addresses looked at past the last used one when restoring */
const GAP_LIMIT = 20
/** Longest label accepted by `addressFor` */
const MAX_LABEL_LENGTH = 512
/** Addresses per backend query */
const QUERY_CHUNK = 200
/** Backend history queries in flight at once */
const HISTORY_CONCURRENCY = 8
/** Ledger entries a history without address index looks at */
const MAX_LEDGER_SCAN = 10_000
/** Labels whose address is kept in memory (`addressFor`) */
const LABEL_CACHE_SIZE = 10_000
/** Dust threshold of a P2WPKH output (3 sat/vB × (31 + 67) vbytes) */
export const DUST_P2WPKH = 294n

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

/** One payment in the local ledger */
export interface LedgerEntry {
  txid: string
  to: string
  amount: bigint
  fee: bigint
  /** ms since the epoch */
  time: number
}

interface Reservation {
  outpoints: string[]
  time: number
  /** creation order among reservations of the same ms (a payment may spend an earlier one's change) */
  seq?: number
  /** the payment's change output, spendable as soon as the backend knows the payment */
  change?: { vout: number, value: string, script: string }
}

interface Owned {
  chain: ChainIndex
  index: number
  address: string
}

const enc = new TextEncoder()
const dec = new TextDecoder()

function text (s: string): Uint8Array {
  return enc.encode(s)
}

function pad (n: number, width: number): string {
  return String(n).padStart(width, '0')
}

/** The wallet's coins once its own payments are counted (`Wallet.coinView`) */
interface CoinView {
  /** coins free to spend */
  free: Utxo[]
  /** coins of payments built but not yet seen by the backend */
  inFlight: Utxo[]
  /** payments whose reservation has ended */
  ended: string[]
  /** change of our mempool payments the backend does not list (in `free`) */
  pendingChange: bigint
}

function outpoint (u: { txid: string, vout: number }): string {
  return `${u.txid}:${u.vout}`
}

/**
 * Estimated virtual size of a transaction spending `inputs` P2WPKH coins
 * into outputs of these scriptPubKey lengths: 10.5 vB of overhead, 68 vB per
 * input, 9 + script length per output (31 for P2WPKH), rounded up.
 */
export function estimateVsize (inputs: number, outputScriptLengths: number[]): bigint {
  // in half-vbytes to stay in integers
  const halves = 21 + 136 * inputs + outputScriptLengths.reduce((s, l) => s + 2 * (9 + l), 0)
  return BigInt(Math.ceil(halves / 2))
}

/** Dust threshold of an output script at the default dust relay fee (3 sat/vB) */
export function dustThreshold (script: Uint8Array): bigint {
  const witness = script.byteLength >= 4 && script.byteLength <= 42 && (script[0] === 0 || (script[0] >= 0x51 && script[0] <= 0x60)) && script[1] === script.byteLength - 2
  return 3n * BigInt(9 + script.byteLength + (witness ? 67 : 148))
}

/** Unconfirmed first, then the newest block first */
function newestFirst (a: AddressTx, b: AddressTx): number {
  if (a.height == null) { return b.height == null ? 0 : -1 }
  if (b.height == null) { return 1 }
  return b.height - a.height
}

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
  readonly #chains: [HDKey, HDKey]
  private readonly next: [number, number]
  /** every derived address the wallet handed out (or uses), by address and by script */
  private readonly byAddress = new Map<string, Owned>()
  private readonly byScript = new Map<string, Owned>()
  private readonly byIndex: [Map<number, string>, Map<number, string>] = [new Map(), new Map()]
  /** reserved outpoint → txid of the payment holding it */
  private readonly reserved = new Map<string, string>()
  private readonly reservations = new Map<string, Reservation>()
  /** payments the backend showed it knows (their change may be spent) */
  private readonly knownPayments = new Set<string>()
  private seq = 0
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
    const accountKey = init.root.derive(`m/84'/${coinType(this.chain)}'/${init.account}'`)
    this.#chains = [accountKey.deriveChild(RECEIVE), accountKey.deriveChild(CHANGE)]
    this.prefix = `${init.root.fingerprint.toString(16).padStart(8, '0')}/${this.network.bech32}/${init.account}/`
    this.next = [IDENTITY_INDEX + 1, 0]
    this.identityAddress = this.derive(RECEIVE, IDENTITY_INDEX)
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
    const p = this.prefix
    let fresh = true
    for (const chain of [RECEIVE, CHANGE] as const) {
      const v = await this.db.get(`${p}next/${chain}`)
      if (v != null) {
        fresh = false
        const n = Number(dec.decode(v))
        if (Number.isSafeInteger(n) && n >= this.next[chain]) { this.next[chain] = n }
      }
      for await (const [key, value] of this.db.iterator({ gte: `${p}addr/${chain}/`, lt: `${p}addr/${chain}/~` })) {
        const index = Number(key.slice(`${p}addr/${chain}/`.length))
        this.remember({ chain, index, address: dec.decode(value) })
      }
      for (let i = chain === RECEIVE ? IDENTITY_INDEX : 0; i < this.next[chain]; i++) { this.derive(chain, i) }
    }
    for await (const [key, value] of this.db.iterator({ gte: `${p}res/`, lt: `${p}res/~` })) {
      const txid = key.slice(`${p}res/`.length)
      const r = JSON.parse(dec.decode(value)) as Reservation
      this.reservations.set(txid, r)
      for (const o of r.outpoints) { this.reserved.set(o, txid) }
      if (typeof r.seq === 'number' && r.seq > this.seq) { this.seq = r.seq }
    }
    return fresh
  }

  private async saveCounters (): Promise<void> {
    await this.db.batch(([RECEIVE, CHANGE] as const).map(chain => ({ type: 'put' as const, key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) })))
  }

  /** scriptPubKey of one of this wallet's own addresses */
  private scriptOf (address: string): Uint8Array {
    return OutScript.encode(decodeAddress(address, this.network) as NonNullable<ReturnType<typeof decodeAddress>>)
  }

  private remember (o: Owned): void {
    this.byAddress.set(o.address, o)
    this.byIndex[o.chain].set(o.index, o.address)
    this.byScript.set(Buffer.from(this.scriptOf(o.address)).toString('hex'), o)
  }

  /** The address of chain/index (derived once, then remembered) */
  private derive (chain: ChainIndex, index: number): string {
    const known = this.byIndex[chain].get(index)
    if (known != null) { return known }
    const key = this.#chains[chain].deriveChild(index)
    const address = p2wpkh(key.publicKey as Uint8Array, this.network).address as string
    this.remember({ chain, index, address })
    return address
  }

  private privateKey (chain: ChainIndex, index: number): Uint8Array {
    return this.#chains[chain].deriveChild(index).privateKey as Uint8Array
  }

  /** Hands out the next index of a chain; the caller writes `ops` in one batch */
  private allocate (chain: ChainIndex, ops: BatchOp[]): string {
    const index = this.next[chain]
    this.next[chain] = index + 1
    const address = this.derive(chain, index)
    ops.push(
      { type: 'put', key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) },
      { type: 'put', key: `${this.prefix}addr/${chain}/${pad(index, 10)}`, value: text(address) }
    )
    return address
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
        address = this.derive(RECEIVE, Number(dec.decode(v)))
      } else {
        const ops: BatchOp[] = []
        address = this.allocate(RECEIVE, ops)
        ops.push({ type: 'put', key, value: text(String(this.next[RECEIVE] - 1)) })
        await this.db.batch(ops)
      }
      this.labels.set(label, address)
      return address
    })
  }

  async newAddress (): Promise<string> {
    return this.mutex.run(async () => {
      const ops: BatchOp[] = []
      const address = this.allocate(RECEIVE, ops)
      await this.db.batch(ops)
      return address
    })
  }

  isMine (address: string): boolean {
    return this.byAddress.has(address)
  }

  /** Addresses whose coins pay for things: every handed-out receive address but the identity, and every change address */
  private spendableAddresses (): string[] {
    const out: string[] = []
    for (let i = IDENTITY_INDEX + 1; i < this.next[RECEIVE]; i++) { out.push(this.derive(RECEIVE, i)) }
    for (let i = 0; i < this.next[CHANGE]; i++) { out.push(this.derive(CHANGE, i)) }
    return out
  }

  private usedAddresses (): string[] {
    return [this.identityAddress, ...this.spendableAddresses()]
  }

  /** The coins the backend lists for these of our addresses */
  private async listed (addresses: string[]): Promise<Utxo[]> {
    const out: Utxo[] = []
    for (let i = 0; i < addresses.length; i += QUERY_CHUNK) {
      out.push(...await this.backend.utxos(addresses.slice(i, i + QUERY_CHUNK)))
    }
    // only coins of scripts this wallet derived (a backend's answer is input
    // like any other), and never the identity address's
    return out.filter(u => {
      const o = typeof u.script === 'string' ? this.byScript.get(u.script.toLowerCase()) : undefined
      return o != null && !(o.chain === RECEIVE && o.index === IDENTITY_INDEX) && typeof u.vout === 'number' && typeof u.value === 'bigint' && u.value > 0n
    })
  }

  /** Reservations oldest first: a payment comes after the one whose change it spends */
  private ordered (): Array<[string, Reservation]> {
    return [...this.reservations].sort(([, a], [, b]) => a.time - b.time || (a.seq ?? 0) - (b.seq ?? 0))
  }

  /** True when the backend knows the payment (mempool or chain); remembered until its reservation ends */
  private async isKnown (txid: string): Promise<boolean> {
    if (this.knownPayments.has(txid)) { return true }
    // an unreachable backend is an error, not "unknown": guessing wrong
    // would free the coins of a payment that is out
    if (await this.backend.transaction(txid) == null) { return false }
    this.knownPayments.add(txid)
    return true
  }

  /**
   * The wallet's coins as they are once its own payments are counted, on
   * every backend alike: the backend's list (confirmed coins only over
   * bitcoind's `scantxoutset`; confirmed and mempool on the others), then
   * each payment of ours in the order it was made. All its coins still
   * there: it is not in the backend's list yet, so its coins are taken out;
   * once the backend knows the transaction (mempool), its change is in (like
   * Bitcoin Core's wallet, the wallet spends its own unconfirmed change, so a
   * payment need not wait for a block). A payment the backend does not know
   * yet is in flight: its coins are neither free nor gone. A coin gone: the
   * backend shows the payment (or a conflicting one), so the reservation has
   * ended.
   * A payment spending an earlier one's change comes after it, so that
   * change is there when it is looked at: a chain of unconfirmed payments is
   * followed to its end, and no coin an unconfirmed payment spent is free.
   */
  private async coinView (): Promise<CoinView> {
    const listed = await this.listed(this.spendableAddresses())
    const free = new Map(listed.map(u => [outpoint(u), u]))
    const view: CoinView = { free: [], inFlight: [], ended: [], pendingChange: 0n }
    for (const [txid, r] of this.ordered()) {
      const coins = r.outpoints.map(o => free.get(o))
      if (!coins.every(u => u != null)) {
        view.ended.push(txid)
        continue
      }
      for (const o of r.outpoints) { free.delete(o) }
      if (!await this.isKnown(txid)) {
        view.inFlight.push(...coins as Utxo[])
        continue
      }
      if (r.change == null) { continue }
      const o = `${txid}:${r.change.vout}`
      if (!free.has(o)) {
        free.set(o, { txid, vout: r.change.vout, value: BigInt(r.change.value), script: r.change.script })
        view.pendingChange += BigInt(r.change.value)
      }
    }
    view.free = [...free.values()]
    return view
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
    return btcSigner(this.privateKey(RECEIVE, IDENTITY_INDEX), this.identityAddress, this.network)
  }

  /** The wallet's 24 words, for a user who asks to back them up. Never logged. */
  exportMnemonic (): string {
    return this.#mnemonic
  }

  /** Outpoints reserved by payments not yet seen by the chain */
  reservedOutpoints (): string[] {
    return [...this.reserved.keys()]
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
    await this.forget(view.ended)
    const free = view.free
    // confirmed first, then largest first
    free.sort((a, b) => {
      if ((a.height == null) !== (b.height == null)) { return a.height == null ? 1 : -1 }
      if (a.value === b.value) { return 0 }
      return a.value > b.value ? -1 : 1
    })
    const changeScriptLength = 22
    const selected: Utxo[] = []
    let total = 0n
    let plan: { fee: bigint, change: bigint } | undefined
    for (const coin of free) {
      selected.push(coin)
      total += coin.value
      const feeNoChange = feeRate * estimateVsize(selected.length, [script.byteLength])
      if (total < amount + feeNoChange) { continue }
      const feeWithChange = feeRate * estimateVsize(selected.length, [script.byteLength, changeScriptLength])
      const change = total - amount - feeWithChange
      // change below dust goes to the fee
      plan = change >= DUST_P2WPKH ? { fee: feeWithChange, change } : { fee: total - amount, change: 0n }
      break
    }
    if (plan == null) {
      const confirmed = free.reduce((s, u) => s + (u.height != null ? u.value : 0n), 0n)
      const unconfirmed = free.reduce((s, u) => s + (u.height == null ? u.value : 0n), 0n)
      const inFlight = view.inFlight.reduce((s, u) => s + u.value, 0n)
      const needed = amount + feeRate * estimateVsize(Math.max(1, free.length), [script.byteLength])
      throw new InsufficientFundsError(needed, confirmed + unconfirmed, { confirmed, unconfirmed, inFlight, inFlightPayments: new Set(view.inFlight.map(u => this.reserved.get(outpoint(u)))).size })
    }

    const ops: BatchOp[] = []
    const tx = new Transaction({ version: 2 })
    for (const u of selected) {
      tx.addInput({ txid: u.txid, index: u.vout, witnessUtxo: { script: Buffer.from(u.script, 'hex'), amount: u.value } })
    }
    const outputs: Array<{ script: Uint8Array, amount: bigint }> = [{ script, amount }]
    if (plan.change > 0n) {
      const changeAddress = this.allocate(CHANGE, ops)
      const change = { script: this.scriptOf(changeAddress), amount: plan.change }
      // change at a random position, so it cannot be told by its place
      outputs.splice(randomInt(2), 0, change)
    }
    for (const o of outputs) { tx.addOutput(o) }
    for (let i = 0; i < selected.length; i++) {
      const owner = this.byScript.get(selected[i].script.toLowerCase()) as Owned
      tx.signIdx(this.privateKey(owner.chain, owner.index), i)
    }
    tx.finalize()
    const raw = tx.extract()
    const txid = tx.id

    const time = Date.now()
    const changeIndex = plan.change > 0n ? outputs.findIndex(o => o.script !== script) : -1
    const reservation: Reservation = {
      outpoints: selected.map(outpoint),
      time,
      seq: ++this.seq,
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
    this.reservations.set(txid, reservation)
    for (const o of reservation.outpoints) { this.reserved.set(o, txid) }
    return { txid, raw, amount, fee: plan.fee }
  }

  /** Ends the reservations of payments the backend shows (see `coinView`) */
  private async forget (ended: string[]): Promise<void> {
    if (ended.length === 0) { return }
    await this.db.batch(ended.map(txid => ({ type: 'del' as const, key: `${this.prefix}res/${txid}` })))
    for (const txid of ended) { this.unreserve(txid) }
  }

  private unreserve (txid: string): void {
    const r = this.reservations.get(txid)
    this.knownPayments.delete(txid)
    if (r == null) { return }
    for (const o of r.outpoints) {
      if (this.reserved.get(o) === txid) { this.reserved.delete(o) }
    }
    this.reservations.delete(txid)
  }

  async release (txid: string): Promise<void> {
    await this.mutex.run(async () => {
      const ops: BatchOp[] = [{ type: 'del', key: `${this.prefix}res/${txid}` }]
      const ledgerKey = await this.db.get(`${this.prefix}senttx/${txid}`)
      if (ledgerKey != null) {
        ops.push({ type: 'del', key: dec.decode(ledgerKey) }, { type: 'del', key: `${this.prefix}senttx/${txid}` })
      }
      await this.db.batch(ops)
      this.unreserve(txid)
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
    return (await this.ledgerEntries(limit)).map(({ txid, to, amount, fee, time }) => ({ txid, to, amount, fee, time }))
  }

  /** Ledger entries with the coins they spent (entries written before these were kept have none) */
  private async ledgerEntries (limit: number): Promise<Array<LedgerEntry & { inputs: Array<{ txid: string, vout: number, value: bigint, height?: number }> }>> {
    const out: Array<LedgerEntry & { inputs: Array<{ txid: string, vout: number, value: bigint, height?: number }> }> = []
    for await (const [, value] of this.db.iterator({ gte: `${this.prefix}sent/`, lt: `${this.prefix}sent/~`, reverse: true, limit })) {
      const e = JSON.parse(dec.decode(value))
      const inputs = Array.isArray(e.inputs)
        ? (e.inputs as Array<{ txid: string, vout: number, value: string, height?: number }>).map(i => ({ txid: i.txid, vout: i.vout, value: BigInt(i.value), height: i.height }))
        : []
      out.push({ txid: e.txid, to: e.to, amount: BigInt(e.amount), fee: BigInt(e.fee), time: e.time, inputs })
    }
    return out
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
      rows = await this.indexedHistory(limit)
    } catch (err) {
      if (!(err instanceof ChainUnsupportedError)) { throw err }
      rows = await this.unindexedHistory(limit)
    }
    const tip = await this.backend.height()
    return rows.map(t => ({ ...t, confirmations: t.height != null ? Math.max(1, tip - t.height + 1) : 0 }))
  }

  private async indexedHistory (limit: number): Promise<AddressTx[]> {
    const addresses = this.usedAddresses()
    const merged = new Map<string, AddressTx>()
    const add = (t: AddressTx): void => {
      const m = merged.get(t.txid)
      if (m == null) {
        merged.set(t.txid, { txid: t.txid, height: t.height, delta: t.delta })
      } else {
        // a transaction touching several of our addresses: its net effect on the wallet
        m.delta += t.delta
        m.height ??= t.height
      }
    }
    for (let i = 0; i < addresses.length; i += HISTORY_CONCURRENCY) {
      const lists = await Promise.all(addresses.slice(i, i + HISTORY_CONCURRENCY).map(async a => this.backend.history(a, limit)))
      lists.flat().forEach(add)
    }
    return [...merged.values()].sort(newestFirst).slice(0, limit)
  }

  /**
   * History without an address index: sent payments from the ledger (their
   * block from the backend, else from their change), received ones from
   * the coins held now and the coins the payments spent
   */
  private async unindexedHistory (limit: number): Promise<AddressTx[]> {
    const sent = await this.ledgerEntries(MAX_LEDGER_SCAN)
    const ours = new Set(sent.map(e => e.txid))
    const held: Utxo[] = []
    const addresses = this.usedAddresses()
    for (let i = 0; i < addresses.length; i += QUERY_CHUNK) {
      held.push(...await this.backend.utxos(addresses.slice(i, i + QUERY_CHUNK)))
    }
    const rows = new Map<string, AddressTx>()
    const seen = new Set<string>()
    const receive = (u: { txid: string, vout: number, value: bigint, height?: number }): void => {
      if (ours.has(u.txid) || seen.has(outpoint(u))) { return }
      seen.add(outpoint(u))
      const r = rows.get(u.txid)
      if (r == null) {
        rows.set(u.txid, { txid: u.txid, height: u.height, delta: u.value })
      } else {
        r.delta += u.value
        r.height ??= u.height
      }
    }
    const changeHeight = new Map<string, number>()
    for (const u of held) {
      if (typeof u.script !== 'string' || !this.byScript.has(u.script.toLowerCase())) { continue }
      if (ours.has(u.txid) && u.height != null) { changeHeight.set(u.txid, u.height) }
      receive(u)
    }
    for (const e of sent) {
      for (const i of e.inputs) { receive(i) }
    }
    // newest payments first, so the lookups below go to the rows most likely shown
    const out: AddressTx[] = sent.map(e => ({ txid: e.txid, height: changeHeight.get(e.txid), delta: this.isMine(e.to) ? -e.fee : -(e.amount + e.fee) }))
    out.push(...rows.values())
    // blocks of the rest from the backend (spent coins kept no height; a
    // payment whose change is spent or that had none), bounded
    const unknown = out.filter(t => t.height == null).slice(0, 4 * limit)
    for (let i = 0; i < unknown.length; i += HISTORY_CONCURRENCY) {
      await Promise.all(unknown.slice(i, i + HISTORY_CONCURRENCY).map(async t => {
        t.height = (await this.backend.transaction(t.txid))?.height
      }))
    }
    return out.sort(newestFirst).slice(0, limit)
  }

  /**
   * Looks past the last used index of both chains for funded addresses (a
   * seed restored in a new data dir) and extends the wallet to the last
   * funded one.
   */
  async rescan (gap = GAP_LIMIT): Promise<void> {
    await this.mutex.run(async () => {
      const ops: BatchOp[] = []
      for (const chain of [RECEIVE, CHANGE] as const) {
        let last = -1
        for (let start = this.next[chain]; ; start += gap) {
          const used = await this.fundedIndexes(chain, start, gap)
          if (used.length === 0) { break }
          last = used[used.length - 1]
        }
        if (last >= this.next[chain]) {
          for (let i = this.next[chain]; i <= last; i++) {
            ops.push({ type: 'put', key: `${this.prefix}addr/${chain}/${pad(i, 10)}`, value: text(this.derive(chain, i)) })
          }
          this.next[chain] = last + 1
        }
        ops.push({ type: 'put', key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) })
      }
      // lookahead addresses that are not in use stay unknown to isMine
      for (const [address, o] of this.byAddress) {
        if (o.index >= this.next[o.chain] && !(o.chain === RECEIVE && o.index === IDENTITY_INDEX)) {
          this.byAddress.delete(address)
          this.byIndex[o.chain].delete(o.index)
          this.byScript.delete(Buffer.from(this.scriptOf(address)).toString('hex'))
        }
      }
      await this.db.batch(ops)
    })
  }

  /** Indexes in [start, start + count) of a chain whose address holds coins */
  private async fundedIndexes (chain: ChainIndex, start: number, count: number): Promise<number[]> {
    const batch = Array.from({ length: count }, (_, k) => start + k)
    const states = await this.backend.addresses(batch.map(i => this.derive(chain, i)))
    return batch.filter((_, k) => states[k] != null && states[k].confirmed + states[k].unconfirmed > 0n)
  }

  [inspect.custom] (): string {
    return `Wallet(${this.chain}, account ${this.account}, identity ${this.identityAddress})`
  }
}
