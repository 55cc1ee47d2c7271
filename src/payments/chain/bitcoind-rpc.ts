/**
 * A chain backend over bitcoind-compatible JSON-RPC: Bitcoin Core, or the
 * server `decloud chain serve` runs (bcoin's RPC with `scantxoutset` and a
 * Core-like `sendrawtransaction` added).
 *
 * Balances and coins come from `scantxoutset` (the UTXO set: confirmed
 * coins only, no address index needed); address history needs an index
 * plain bitcoind does not have, so `history()` is unsupported. BTC amounts
 * arrive as JSON numbers and are turned into sats through their 8-decimal
 * text, never with float arithmetic.
 */
import { Address, OutScript, Transaction } from '@scure/btc-signer'
import { ChainUnavailableError, ChainUnsupportedError, TxRejectedError } from '../types.js'
import { readBoundedText, describeFetchError } from './http.js'
import { BCOIN_REGTEST, CORE_REGTEST, networkOf } from './networks.js'
import { maskUrl } from './secrets.js'
import type { AddressNetwork, AddressState, AddressTx, ChainName, MiningBackend, TxStatus, Utxo } from '../types.js'

/** default per-request timeout */
export const RPC_TIMEOUT_MS = 30_000
/** default `scantxoutset` timeout: Core reads its whole UTXO set, minutes on mainnet */
export const SCAN_TIMEOUT_MS = 300_000
/** default bound on a response body */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024
/** the most blocks one `mine()` call asks for */
export const MAX_MINE_BLOCKS = 10_000
/** the most addresses one `fundEach()` pays */
export const MAX_FUND_OUTPUTS = 100
/** the most addresses per `scantxoutset` */
export const MAX_ADDRESSES = 1000
/** the largest raw transaction sent */
export const MAX_TX_BYTES = 4_000_000
/**
 * `scantxoutset` calls waiting their turn at most: the `btc:` credentials of
 * incoming requests ask for scans, so the queue must not grow with them
 */
export const MAX_QUEUED_SCANS = 32

/** The chain names `getblockchaininfo` reports for each chain */
const CHAIN_NAMES: Record<ChainName, readonly string[]> = {
  mainnet: ['main'],
  testnet: ['test', 'testnet', 'testnet4'],
  signet: ['signet'],
  regtest: ['regtest']
}

/** A valid bcoin regtest address (P2WPKH of 20 zero bytes): Core says it is not valid */
const BCOIN_PROBE = Address(BCOIN_REGTEST).encode({ type: 'wpkh', hash: new Uint8Array(20) })

export interface BitcoindRpcOptions {
  /**
   * the chain the server must be on
   *
   * @default 'regtest'
   */
  chain?: ChainName
  /**
   * per request
   *
   * @default RPC_TIMEOUT_MS
   */
  timeoutMs?: number
  /**
   * per `scantxoutset`
   *
   * @default SCAN_TIMEOUT_MS
   */
  scanTimeoutMs?: number
  /**
   * largest response body read
   *
   * @default MAX_RESPONSE_BYTES
   */
  maxResponseBytes?: number
  /**
   * address encoding; detected by `connect()` (bcoin or Core on regtest),
   * else the chain's usual one
   */
  network?: AddressNetwork
  /**
   * scans running or waiting at once; more fail at once with ChainUnavailableError
   *
   * @default MAX_QUEUED_SCANS
   */
  maxQueuedScans?: number
}

/** An error the RPC server answered with */
export class BitcoindRpcError extends Error {
  static override name = 'BitcoindRpcError'
  override name = 'BitcoindRpcError'
  constructor (readonly code: number, readonly rpcMessage: string, readonly method: string) {
    super(`${method}: ${rpcMessage} (code ${code})`)
  }
}

export class BitcoindRpcBackend implements MiningBackend {
  readonly chain: ChainName
  readonly network: AddressNetwork
  readonly description: string

  private readonly endpoint: string
  private readonly authorization?: string
  private readonly timeoutMs: number
  private readonly scanTimeoutMs: number
  private readonly maxResponseBytes: number
  private readonly maxQueuedScans: number
  private readonly shutdown = new AbortController()
  private nextId = 1
  /** Core runs one scantxoutset at a time */
  private scans: Promise<unknown> = Promise.resolve()
  /** scans running or waiting */
  private queuedScans = 0

  constructor (url: string, opts: BitcoindRpcOptions = {}) {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw new TypeError('bitcoind RPC URL is not a URL')
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') { throw new TypeError(`bitcoind RPC URL must be http: or https:, not ${u.protocol}`) }
    if (u.username !== '' || u.password !== '') {
      const user = decodeURIComponent(u.username)
      const pass = decodeURIComponent(u.password)
      this.authorization = 'Basic ' + Buffer.from(`${user}:${pass}`, 'utf8').toString('base64')
      u.username = ''
      u.password = ''
    }
    this.endpoint = u.toString()
    this.chain = opts.chain ?? 'regtest'
    this.network = opts.network ?? networkOf(this.chain)
    this.timeoutMs = opts.timeoutMs ?? RPC_TIMEOUT_MS
    this.scanTimeoutMs = opts.scanTimeoutMs ?? SCAN_TIMEOUT_MS
    this.maxResponseBytes = opts.maxResponseBytes ?? MAX_RESPONSE_BYTES
    this.maxQueuedScans = opts.maxQueuedScans ?? MAX_QUEUED_SCANS
    const shown = new URL(this.endpoint)
    if (this.authorization != null) { shown.username = 'user'; shown.password = 'x' }
    this.description = `bitcoind RPC ${maskUrl(shown.toString())} (${this.chain}${this.network === BCOIN_REGTEST ? ', bcoin' : ''})`
  }

  /**
   * Connects to a server, checks it answers and is on the expected chain,
   * and on regtest tells bcoin (address prefix `rb`) from Bitcoin Core
   * (`bcrt`).
   *
   * @example
   * ```ts
   * const chain = await BitcoindRpcBackend.connect('http://x:KEY@127.0.0.1:48443/')
   * ```
   */
  static async connect (url: string, opts: BitcoindRpcOptions = {}): Promise<BitcoindRpcBackend> {
    const probe = new BitcoindRpcBackend(url, opts)
    const chain = probe.chain
    const info = await probe.call('getblockchaininfo', [])
    const name = (info as { chain?: unknown } | null)?.chain
    if (typeof name !== 'string') { throw new ChainUnavailableError(`${probe.description}: getblockchaininfo has no chain name`) }
    if (!CHAIN_NAMES[chain].includes(name)) { throw new ChainUnavailableError(`${probe.description}: the server is on chain "${name.slice(0, 40)}", not ${chain}`) }
    if (opts.network != null || chain !== 'regtest') { return probe }
    const v = await probe.call('validateaddress', [BCOIN_PROBE])
    const network = (v as { isvalid?: unknown } | null)?.isvalid === true ? BCOIN_REGTEST : CORE_REGTEST
    return new BitcoindRpcBackend(url, { ...opts, network })
  }

  async height (): Promise<number> {
    const h = await this.call('getblockcount', [])
    if (!Number.isSafeInteger(h) || (h as number) < 0) { throw this.garbage('getblockcount') }
    return h as number
  }

  /**
   * Confirmed balance and age from the UTXO set; `unconfirmed` is always 0
   * (scantxoutset does not see the mempool).
   */
  async addresses (addresses: string[]): Promise<AddressState[]> {
    const coins = await this.scan(addresses)
    return addresses.map((address, i) => {
      let confirmed = 0n
      let heldSince: number | undefined
      for (const c of coins[i]) {
        confirmed += c.value
        if (c.height != null) { heldSince = heldSince == null ? c.height : Math.min(heldSince, c.height) }
      }
      return { address, confirmed, unconfirmed: 0n, heldSince }
    })
  }

  /** Confirmed unspent outputs (scantxoutset does not see the mempool) */
  async utxos (addresses: string[]): Promise<Utxo[]> {
    const coins = await this.scan(addresses)
    const seen = new Set<string>()
    const out: Utxo[] = []
    for (const list of coins) {
      for (const c of list) {
        const key = `${c.txid}:${c.vout}`
        if (seen.has(key)) { continue }
        seen.add(key)
        out.push(c)
      }
    }
    return out
  }

  async history (_address: string, _limit?: number): Promise<AddressTx[]> {
    throw new ChainUnsupportedError('address history needs an address index; bitcoind JSON-RPC has none (use --esplora)')
  }

  async broadcast (raw: Uint8Array): Promise<string> {
    if (!(raw instanceof Uint8Array) || raw.byteLength === 0) { throw new TxRejectedError('invalid', 'TX decode failed: empty') }
    if (raw.byteLength > MAX_TX_BYTES) { throw new TxRejectedError('invalid', 'TX decode failed: too large') }
    let txid: unknown
    try {
      txid = await this.call('sendrawtransaction', [Buffer.from(raw).toString('hex')])
    } catch (err) {
      if (err instanceof BitcoindRpcError) { throw rejectionOf(err.code, err.rpcMessage) }
      throw err
    }
    if (typeof txid !== 'string' || !TXID.test(txid)) { throw this.garbage('sendrawtransaction') }
    return txid.toLowerCase()
  }

  /**
   * Status of a transaction. Bitcoin Core finds confirmed transactions only
   * with `-txindex` (or in its wallet); without it they are unknown here.
   */
  async transaction (txid: string): Promise<TxStatus | undefined> {
    if (typeof txid !== 'string' || !TXID.test(txid)) { return undefined }
    let r: unknown
    try {
      r = await this.call('getrawtransaction', [txid.toLowerCase(), true])
    } catch (err) {
      // Core: -5 "No such mempool or blockchain transaction"; bcoin: -1 "Transaction not found."
      if (err instanceof BitcoindRpcError && (err.code === -5 || /not found/i.test(err.rpcMessage))) { return undefined }
      throw err
    }
    const tx = parseVerboseTx(r, txid)
    if (tx == null) { throw this.garbage('getrawtransaction') }
    let height: number | undefined
    if (tx.confirmations > 0 && tx.blockhash != null) {
      const header = await this.call('getblockheader', [tx.blockhash, true]) as { height?: unknown } | null
      if (!Number.isSafeInteger(header?.height)) { throw this.garbage('getblockheader') }
      height = header?.height as number
    }
    return { txid: tx.txid, confirmations: tx.confirmations, height, raw: tx.raw }
  }

  /** estimatesmartfee for 2 blocks (BTC/kvB → sat/vB, rounded up); 1 when the node has no estimate (regtest) */
  async feeRate (): Promise<bigint> {
    let r: unknown
    try {
      r = await this.call('estimatesmartfee', [2])
    } catch (err) {
      if (err instanceof BitcoindRpcError) { return 1n }
      throw err
    }
    // Core: { feerate } or { errors }; bcoin: { fee } with -1 for none
    const o = r as { feerate?: unknown, fee?: unknown } | null
    const btcPerKvB = o?.feerate ?? o?.fee
    if (typeof btcPerKvB !== 'number' || !(btcPerKvB > 0)) { return 1n }
    const satPerKvB = btcToSats(btcPerKvB)
    const rate = (satPerKvB + 999n) / 1000n
    return rate < 1n ? 1n : rate
  }

  /** generatetoaddress (regtest only); returns the new height */
  async mine (n: number, address: string): Promise<number> {
    if (this.chain !== 'regtest') { throw new ChainUnsupportedError(`mining is for regtest, not ${this.chain}`) }
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_MINE_BLOCKS) { throw new RangeError(`mine: block count must be 0..${MAX_MINE_BLOCKS}, not ${String(n)}`) }
    this.scriptOf(address)
    // about 2 ms a block on bcoin's regtest; allow a lot more
    const hashes = await this.call('generatetoaddress', [n, address], this.timeoutMs + n * 100)
    if (!Array.isArray(hashes) || hashes.length !== n) { throw this.garbage('generatetoaddress') }
    return this.height()
  }

  /**
   * Regtest only: pays amount (default 10 BTC) to address with
   * `sendtoaddress` (on `decloud chain serve`, from its faucet; on Bitcoin
   * Core, from its loaded wallet) and mines one block, so the coins are
   * confirmed and spendable when it returns.
   */
  async fund (address: string, amount: bigint = 1_000_000_000n): Promise<{ txid: string, vout: number, value: bigint, height: number }> {
    const [funding] = await this.fundEach([address], amount)
    return funding
  }

  /**
   * Regtest only: pays `amount` to each address (one `sendtoaddress` each,
   * an address may be named several times) and mines one block.
   */
  async fundEach (addresses: string[], amount: bigint = 1_000_000_000n): Promise<Array<{ txid: string, vout: number, value: bigint, height: number }>> {
    if (this.chain !== 'regtest') { throw new ChainUnsupportedError(`funding from a faucet is for regtest, not ${this.chain}`) }
    if (typeof amount !== 'bigint' || amount <= 0n || amount > 2_100_000_000_000_000n) { throw new RangeError('fund: amount must be a positive number of sats') }
    if (!Array.isArray(addresses) || addresses.length === 0 || addresses.length > MAX_FUND_OUTPUTS) { throw new RangeError(`fund: 1..${MAX_FUND_OUTPUTS} addresses`) }
    const scripts = addresses.map(a => this.scriptOf(a))
    // a decimal string: exact, and both Core and bcoin accept it
    const btc = `${amount / 100_000_000n}.${(amount % 100_000_000n).toString().padStart(8, '0')}`
    const txids: string[] = []
    for (const address of addresses) {
      const txid = await this.call('sendtoaddress', [address, btc])
      if (typeof txid !== 'string' || !TXID.test(txid)) { throw this.garbage('sendtoaddress') }
      txids.push(txid.toLowerCase())
    }
    await this.mine(1, Address(this.network).encode({ type: 'wpkh', hash: new Uint8Array(20) }))
    const out: Array<{ txid: string, vout: number, value: bigint, height: number }> = []
    for (const [i, txid] of txids.entries()) {
      const status = await this.transaction(txid)
      if (status?.height == null || status.raw == null) { throw new ChainUnavailableError(`${this.description}: the funding transaction ${txid} was not mined`) }
      const tx = Transaction.fromRaw(status.raw, { allowUnknownOutputs: true })
      let vout = -1
      for (let v = 0; v < tx.outputsLength && vout < 0; v++) {
        const o = tx.getOutput(v)
        if (o.script != null && Buffer.from(o.script).toString('hex') === scripts[i] && o.amount === amount) { vout = v }
      }
      if (vout < 0) { throw new ChainUnavailableError(`${this.description}: the funding transaction ${txid} does not pay ${addresses[i]}`) }
      out.push({ txid, vout, value: amount, height: status.height })
    }
    return out
  }

  /** Aborts requests in flight; later calls throw ChainUnavailableError */
  async close (): Promise<void> {
    this.shutdown.abort()
  }

  /** One JSON-RPC 1.0 call */
  async call (method: string, params: unknown[], timeoutMs: number = this.timeoutMs): Promise<unknown> {
    if (this.shutdown.signal.aborted) { throw new ChainUnavailableError(`${this.description}: closed`) }
    const id = this.nextId++
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (this.authorization != null) { headers.authorization = this.authorization }
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(timeoutMs)])
    let status: number
    let text: string
    try {
      const res = await fetch(this.endpoint, {
        method: 'POST',
        headers,
        body: JSON.stringify({ jsonrpc: '1.0', id, method, params }),
        signal,
        redirect: 'error'
      })
      status = res.status
      if (status === 401 || status === 403) {
        await res.body?.cancel().catch(() => {})
        throw new ChainUnavailableError(`${this.description}: the server refused the credentials (HTTP ${status}); put the right user:password (bcoin: any user, the API key as password) in the URL`)
      }
      text = await readBoundedText(res, this.maxResponseBytes)
    } catch (err: any) {
      if (err instanceof ChainUnavailableError) { throw err }
      throw new ChainUnavailableError(`${this.description}: ${method} failed: ${describeFetchError(err, timeoutMs)}`)
    }
    let body: { result?: unknown, error?: { code?: unknown, message?: unknown } | null, id?: unknown }
    try {
      body = JSON.parse(text)
    } catch {
      throw new ChainUnavailableError(`${this.description}: ${method} answered HTTP ${status} with a body that is not JSON`)
    }
    if (body == null || typeof body !== 'object') { throw this.garbage(method) }
    if (body.error != null) {
      const code = typeof body.error.code === 'number' ? body.error.code : -1
      const message = typeof body.error.message === 'string' ? body.error.message.slice(0, 500) : 'error'
      throw new BitcoindRpcError(code, message, method)
    }
    if (status !== 200) { throw new ChainUnavailableError(`${this.description}: ${method} answered HTTP ${status}`) }
    if (body.id !== id) { throw this.garbage(method) }
    return body.result
  }

  private garbage (method: string): ChainUnavailableError {
    return new ChainUnavailableError(`${this.description}: ${method} answered something unexpected`)
  }

  private scriptOf (address: string): string {
    if (typeof address !== 'string' || address.length === 0 || address.length > 100) { throw new TypeError('not a bitcoin address') }
    try {
      return Buffer.from(OutScript.encode(Address(this.network).decode(address))).toString('hex')
    } catch {
      throw new TypeError(`not a ${this.chain}${this.network === BCOIN_REGTEST ? ' (bcoin)' : ''} address: ${address}`)
    }
  }

  /** the confirmed coins of each address, in order, from one scantxoutset */
  private async scan (addresses: string[]): Promise<Utxo[][]> {
    if (!Array.isArray(addresses)) { throw new TypeError('addresses must be an array') }
    if (addresses.length > MAX_ADDRESSES) { throw new RangeError(`at most ${MAX_ADDRESSES} addresses per call`) }
    if (addresses.length === 0) { return [] }
    const scripts = addresses.map(a => this.scriptOf(a))
    const descriptors = [...new Set(addresses)].map(a => `addr(${a})`)
    if (this.queuedScans >= this.maxQueuedScans) { throw new ChainUnavailableError(`${this.description}: ${this.queuedScans} scantxoutset calls already waiting`) }
    this.queuedScans++
    const run = this.scans.then(async () => this.call('scantxoutset', ['start', descriptors], this.scanTimeoutMs))
    this.scans = run.catch(() => {})
    let r: { success?: unknown, unspents?: unknown } | null
    try {
      r = await run as { success?: unknown, unspents?: unknown } | null
    } finally {
      this.queuedScans--
    }
    if (r == null || typeof r !== 'object' || !Array.isArray(r.unspents)) { throw this.garbage('scantxoutset') }
    if (r.success === false) { throw new ChainUnavailableError(`${this.description}: scantxoutset did not complete`) }
    const byScript = new Map<string, Utxo[]>()
    for (const u of r.unspents as unknown[]) {
      const coin = parseUnspent(u)
      if (coin == null) { throw this.garbage('scantxoutset') }
      const list = byScript.get(coin.script) ?? []
      list.push(coin)
      byScript.set(coin.script, list)
    }
    return scripts.map(s => byScript.get(s) ?? [])
  }
}

const TXID = /^[0-9a-fA-F]{64}$/
const HEX = /^(?:[0-9a-fA-F]{2})*$/

/** the fields of a verbose getrawtransaction answer decloud reads; undefined when malformed */
function parseVerboseTx (r: unknown, txid: string): { txid: string, confirmations: number, blockhash?: string, raw?: Uint8Array } | undefined {
  const tx = r as { txid?: unknown, hex?: unknown, confirmations?: unknown, blockhash?: unknown } | null
  if (tx == null || typeof tx !== 'object' || typeof tx.txid !== 'string' || tx.txid.toLowerCase() !== txid.toLowerCase()) { return undefined }
  // Core leaves confirmations out while the transaction is in the mempool
  const confirmations = tx.confirmations ?? 0
  if (typeof confirmations !== 'number' || !Number.isSafeInteger(confirmations) || confirmations < 0) { return undefined }
  return {
    txid: tx.txid.toLowerCase(),
    confirmations,
    blockhash: typeof tx.blockhash === 'string' && TXID.test(tx.blockhash) ? tx.blockhash : undefined,
    raw: typeof tx.hex === 'string' && HEX.test(tx.hex) ? new Uint8Array(Buffer.from(tx.hex, 'hex')) : undefined
  }
}

function parseUnspent (u: unknown): Utxo | undefined {
  const o = u as { txid?: unknown, vout?: unknown, scriptPubKey?: unknown, amount?: unknown, height?: unknown } | null
  if (o == null || typeof o !== 'object') { return undefined }
  if (typeof o.txid !== 'string' || !TXID.test(o.txid)) { return undefined }
  if (!Number.isSafeInteger(o.vout) || (o.vout as number) < 0) { return undefined }
  if (typeof o.scriptPubKey !== 'string' || !HEX.test(o.scriptPubKey)) { return undefined }
  if (typeof o.amount !== 'number') { return undefined }
  let value: bigint
  try {
    value = btcToSats(o.amount)
  } catch {
    return undefined
  }
  const height = Number.isSafeInteger(o.height) && (o.height as number) >= 0 ? o.height as number : undefined
  return { txid: o.txid.toLowerCase(), vout: o.vout as number, value, script: o.scriptPubKey.toLowerCase(), height }
}

/**
 * A BTC amount as JSON gives it (a number with at most 8 decimals) to sats,
 * exactly: through its 8-decimal text, no float arithmetic.
 */
export function btcToSats (btc: number): bigint {
  if (typeof btc !== 'number' || !Number.isFinite(btc) || btc < 0 || btc > 21_000_000) { throw new RangeError(`not a BTC amount: ${String(btc)}`) }
  return BigInt(btc.toFixed(8).replace('.', ''))
}

/**
 * Maps a bitcoind `sendrawtransaction` error to a rejection kind:
 * conflicts and missing or spent inputs are double spends, "already" is a
 * transaction the node has, fee complaints are `fee`, the rest invalid.
 */
export function rejectionOf (code: number, message: string): TxRejectedError {
  const m = message.toLowerCase()
  const reason = message.slice(0, 200)
  if (code === -25 || m.includes('txn-mempool-conflict') || m.includes('missingorspent') || m.includes('missing-inputs') || m.includes('missing inputs') || m.includes('inputs-spent')) {
    return new TxRejectedError('double-spend', reason)
  }
  if (code === -27 || m.includes('already')) { return new TxRejectedError('already-known', reason) }
  if (m.includes('fee')) { return new TxRejectedError('fee', reason) }
  return new TxRejectedError('invalid', reason)
}
