/**
 * The embedded regtest chain: a bcoin full node in this process, in memory
 * or on disk. Real consensus, real mempool, real blocks, so payments and
 * address credentials are tested against the same rules a real node applies.
 *
 * It can also serve bcoin's HTTP/JSON-RPC on 127.0.0.1 (`decloud chain
 * serve`), so several decloud processes share one regtest chain through
 * `BitcoindRpcBackend`. Two bcoin RPC methods are replaced or added to make
 * that server answer like Bitcoin Core: `sendrawtransaction` (bcoin's own
 * swallows rejections) and `scantxoutset` (bcoin has none; answered from the
 * address index).
 */
import { randomBytes } from 'node:crypto'
import { sha256 } from '@noble/hashes/sha2.js'
import { ChainUnavailableError, TxRejectedError } from '../types.js'
import { bcoin } from './bcoin.js'
import { BCOIN_REGTEST } from './networks.js'
import type { AddressState, AddressTx, MiningBackend, TxStatus, Utxo } from '../types.js'

/** SegWit activates on bcoin's regtest at this height */
export const SEGWIT_HEIGHT = 432
/** coinbase outputs are spendable after this many blocks */
export const COINBASE_MATURITY = 100
/** what `fund()` sends when no amount is given: 10 BTC */
export const DEFAULT_FUND_SATS = 1_000_000_000n
/** the most blocks one `mine()` call makes */
export const MAX_MINE_BLOCKS = 10_000
/** the most addresses one `addresses()`/`utxos()` call (or one `scantxoutset`) takes */
export const MAX_ADDRESSES = 1000
/** the most outputs one `fundEach()` pays */
export const MAX_FUND_OUTPUTS = 100
/** the most entries `history()` returns */
export const MAX_HISTORY = 1000
/** the largest raw transaction `broadcast()` decodes (the block weight limit) */
export const MAX_TX_BYTES = 4_000_000
/** bound on opening and closing the node */
const OPEN_TIMEOUT_MS = 120_000
const CLOSE_TIMEOUT_MS = 30_000
/** connections still open this long after close() starts are cut */
const HTTP_CLOSE_GRACE_MS = 1000
/** sat/kvB the faucet pays */
const FAUCET_RATE = 2000
/** 21M BTC */
const MAX_MONEY = 2_100_000_000_000_000n

/**
 * The faucet: a key everyone can derive (this is regtest), so an on-disk
 * chain keeps its faucet across restarts. The coinbase of every block mined
 * at start goes to it; `fund()` pays from it. Funding from matured coins
 * instead of fresh coinbases matters because regtest halves the block reward
 * every 150 blocks: after a few hundred blocks a coinbase is worth little.
 */
const FAUCET_KEY = Buffer.from(sha256(new TextEncoder().encode('decloud regtest faucet')))

export interface EmbeddedChainHttpOptions {
  /** TCP port on 127.0.0.1; 0 picks a free one (read it from `rpcUrl`) */
  port: number
  /** only loopback is ever bound */
  host?: '127.0.0.1'
  /** the RPC password (any user name); letters, digits and `._~-`, 8 to 255 characters */
  apiKey: string
}

export interface EmbeddedChainOptions {
  /** directory for the chain database (`<dir>/regtest/…`); omitted means in memory */
  dir?: string
  /** keep everything in memory; by default true when `dir` is not given */
  memory?: boolean
  /** serve bcoin's HTTP/JSON-RPC on 127.0.0.1 */
  http?: EmbeddedChainHttpOptions
  /**
   * mine to height 432 at start (to the faucet) so SegWit is active and
   * P2WPKH spends are valid
   *
   * @default true
   */
  segwit?: boolean
}

/** What `fund()` made */
export interface Funding {
  txid: string
  vout: number
  value: bigint
  /** the block that confirmed it */
  height: number
}

export class EmbeddedChain implements MiningBackend {
  readonly chain = 'regtest' as const
  readonly network = BCOIN_REGTEST
  readonly description: string

  private readonly node: bcoin.FullNode
  private readonly faucet: bcoin.KeyRing
  private readonly faucetAddress: bcoin.Address
  private readonly apiKey?: string
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false
  private closing?: Promise<void>

  private constructor (node: bcoin.FullNode, description: string, apiKey?: string) {
    this.node = node
    this.description = description
    this.apiKey = apiKey
    this.faucet = bcoin.KeyRing.fromPrivate(FAUCET_KEY, true)
    this.faucetAddress = this.faucet.getAddress()
  }

  /**
   * Opens the node (and its HTTP server when `http` is given) and, unless
   * `segwit: false`, mines to height 432.
   *
   * @example
   * ```ts
   * const chain = await EmbeddedChain.start()            // in memory
   * await chain.fund(address)                           // 10 BTC, confirmed
   * await chain.close()
   * ```
   */
  static async start (opts: EmbeddedChainOptions = {}): Promise<EmbeddedChain> {
    const memory = opts.memory ?? opts.dir == null
    if (!memory && opts.dir == null) { throw new TypeError('EmbeddedChain: an on-disk chain needs dir') }
    const http = opts.http
    if (http != null) { checkHttpOptions(http) }
    const node = createNode(memory, opts.dir, http)

    const where = memory ? 'in memory' : `in ${opts.dir ?? ''}`
    const self = new EmbeddedChain(node, `embedded bcoin regtest ${where}`, http?.apiKey)
    if (http != null) { self.registerRpc() }

    try {
      // makes the prefix directory (bcoin's own CLI does this before open)
      await node.ensure()
      await bounded(node.open(), OPEN_TIMEOUT_MS, 'opening the embedded chain')
    } catch (err: any) {
      // the HTTP server did not open (e.g. port in use): close the rest
      node.http.close = async () => {}
      await node.close().catch(() => {})
      throw new ChainUnavailableError(`cannot start the embedded chain ${where}: ${String(err?.message ?? err)}`)
    }

    try {
      if (opts.segwit !== false && node.chain.height < SEGWIT_HEIGHT) {
        await self.exclusive(async () => {
          while (node.chain.height < SEGWIT_HEIGHT) { await self.mineOne(self.faucetAddress) }
        })
      }
    } catch (err) {
      await self.close().catch(() => {})
      throw err
    }
    return self
  }

  /** `http://x:<key>@127.0.0.1:<port>/` when the HTTP server runs */
  get rpcUrl (): string | undefined {
    if (this.apiKey == null) { return undefined }
    const addr = this.node.http.http.address()
    if (addr == null || typeof addr === 'string') { return undefined }
    return `http://x:${this.apiKey}@127.0.0.1:${addr.port}/`
  }

  async height (): Promise<number> {
    this.checkOpen()
    return this.node.chain.height
  }

  async addresses (addresses: string[]): Promise<AddressState[]> {
    this.checkOpen()
    checkCount(addresses)
    const parsed = addresses.map(parseAddress)
    const lists = await this.read(async () => {
      const lists: bcoin.Coin[][] = []
      for (const { addr, script } of parsed) { lists.push(matching(await this.node.getCoinsByAddress([addr]), script)) }
      return lists
    })
    const out: AddressState[] = []
    for (const [i, address] of addresses.entries()) {
      const coins = lists[i]
      let confirmed = 0n
      let unconfirmed = 0n
      let heldSince: number | undefined
      for (const c of coins) {
        if (c.height >= 0) {
          confirmed += BigInt(c.value)
          heldSince = heldSince == null ? c.height : Math.min(heldSince, c.height)
        } else {
          unconfirmed += BigInt(c.value)
        }
      }
      out.push({ address, confirmed, unconfirmed, heldSince })
    }
    return out
  }

  async utxos (addresses: string[]): Promise<Utxo[]> {
    this.checkOpen()
    checkCount(addresses)
    const parsed = addresses.map(parseAddress)
    const lists = await this.read(async () => {
      const lists: bcoin.Coin[][] = []
      for (const { addr, script } of parsed) { lists.push(matching(await this.node.getCoinsByAddress([addr]), script)) }
      return lists
    })
    const out: Utxo[] = []
    const seen = new Set<string>()
    for (const list of lists) {
      for (const c of list) {
        const key = `${c.hash}:${c.index}`
        if (seen.has(key)) { continue }
        seen.add(key)
        out.push({
          txid: c.txid(),
          vout: c.index,
          value: BigInt(c.value),
          script: c.script.toRaw().toString('hex'),
          height: c.height >= 0 ? c.height : undefined
        })
      }
    }
    return out
  }

  async history (address: string, limit: number = 100): Promise<AddressTx[]> {
    this.checkOpen()
    const max = Math.max(0, Math.min(Math.floor(limit), MAX_HISTORY))
    const { addr, script } = parseAddress(address)
    const metas = await this.read(async () => this.node.getMetaByAddress([addr]))
    const rows: Array<AddressTx & { order: number, index: number }> = []
    for (const meta of metas) {
      let received = 0n
      let spent = 0n
      let touched = false
      for (const o of meta.tx.outputs) {
        if (o.script.toRaw().toString('hex') === script) { received += BigInt(o.value); touched = true }
      }
      if (!meta.tx.isCoinbase()) {
        // takes the chain lock itself (bcoin's getSpentView)
        const view = await this.node.getMetaView(meta)
        for (const input of meta.tx.inputs) {
          const prev = view.getOutputFor(input)
          if (prev != null && prev.script.toRaw().toString('hex') === script) { spent += BigInt(prev.value); touched = true }
        }
      }
      // the index is keyed by hash only: a P2PKH and a P2WPKH of the same key share it
      if (!touched) { continue }
      const height = meta.height >= 0 ? meta.height : undefined
      rows.push({ txid: meta.tx.txid(), height, delta: received - spent, order: height ?? Number.MAX_SAFE_INTEGER, index: meta.index })
    }
    rows.sort((a, b) => b.order - a.order || b.index - a.index)
    return rows.slice(0, max).map(({ txid, height, delta }) => ({ txid, height, delta }))
  }

  async broadcast (raw: Uint8Array): Promise<string> {
    this.checkOpen()
    if (!(raw instanceof Uint8Array) || raw.byteLength === 0) { throw new TxRejectedError('invalid', 'TX decode failed: empty') }
    if (raw.byteLength > MAX_TX_BYTES) { throw new TxRejectedError('invalid', 'TX decode failed: too large') }
    let tx: bcoin.TX
    try {
      tx = bcoin.TX.fromRaw(Buffer.from(raw))
    } catch {
      throw new TxRejectedError('invalid', 'TX decode failed')
    }
    if (tx.toRaw().length !== raw.byteLength) { throw new TxRejectedError('invalid', 'TX decode failed: trailing bytes') }
    const hash = tx.hash('hex')
    if (this.node.mempool.hasEntry(hash)) { throw new TxRejectedError('already-known', 'txn-already-in-mempool') }
    if (await this.node.chain.hasTX(hash)) { throw new TxRejectedError('already-known', 'transaction already in block chain') }

    let missing: string[] | null
    try {
      missing = await bounded(this.node.mempool.addTX(tx), OPEN_TIMEOUT_MS, 'the mempool')
    } catch (err: any) {
      if (err?.type === 'VerifyError') {
        // bcoin checks the fee before the amounts: a transaction paying out
        // more than its inputs hold is invalid, not merely cheap
        if (err.code === 'insufficientfee' && await this.paysOutMoreThanItHas(tx)) { throw new TxRejectedError('invalid', 'bad-txns-in-belowout') }
        throw rejection(err as bcoin.VerifyError)
      }
      if (err instanceof ChainUnavailableError) { throw err }
      throw new TxRejectedError('other', String(err?.message ?? err))
    }
    if (missing != null) {
      // bcoin keeps a transaction with unknown inputs as an orphan; a
      // payment must spend coins that exist now, so it is refused
      this.node.mempool.removeOrphan(hash)
      throw new TxRejectedError('double-spend', 'bad-txns-inputs-missingorspent')
    }
    return tx.txid()
  }

  async transaction (txid: string): Promise<TxStatus | undefined> {
    this.checkOpen()
    if (typeof txid !== 'string' || !TXID.test(txid)) { return undefined }
    return this.read(async () => {
      const meta = await this.node.getMeta(reverseHex(txid.toLowerCase()))
      if (meta == null) { return undefined }
      const height = meta.height >= 0 ? meta.height : undefined
      return {
        txid: meta.tx.txid(),
        confirmations: height == null ? 0 : this.node.chain.height - height + 1,
        height,
        raw: new Uint8Array(meta.tx.toRaw())
      }
    })
  }

  async feeRate (): Promise<bigint> {
    this.checkOpen()
    const perKvB = this.node.fees.estimateFee(2, true)
    if (!Number.isFinite(perKvB) || perKvB <= 0) { return 1n }
    const rate = (BigInt(Math.ceil(perKvB)) + 999n) / 1000n
    return rate < 1n ? 1n : rate
  }

  /**
   * Mines n blocks paying their reward to address; every transaction in the
   * mempool goes into the first one (bcoin's block template takes the whole
   * mempool, within the block weight). Returns the new height.
   */
  async mine (n: number, address: string): Promise<number> {
    this.checkOpen()
    if (!Number.isSafeInteger(n) || n < 0 || n > MAX_MINE_BLOCKS) { throw new RangeError(`mine: block count must be 0..${MAX_MINE_BLOCKS}, not ${String(n)}`) }
    const { addr } = parseAddress(address)
    return this.exclusive(async () => {
      for (let i = 0; i < n; i++) { await this.mineOne(addr) }
      return this.node.chain.height
    })
  }

  /**
   * Pays `amount` (default 10 BTC) to address from the faucet and mines one
   * block: when it returns, the coins are confirmed and spendable (not a
   * coinbase, so no maturity wait).
   */
  async fund (address: string, amount: bigint = DEFAULT_FUND_SATS): Promise<Funding> {
    const [funding] = await this.fundEach([address], amount)
    return funding
  }

  /**
   * Pays `amount` to each address (an address may be named several times:
   * one coin each) in one faucet transaction, output i to addresses[i], and
   * mines one block. A wallet given several coins can make several payments
   * at once without chaining them.
   */
  async fundEach (addresses: string[], amount: bigint = DEFAULT_FUND_SATS): Promise<Funding[]> {
    this.checkOpen()
    checkAmount(amount)
    if (!Array.isArray(addresses) || addresses.length === 0 || addresses.length > MAX_FUND_OUTPUTS) { throw new RangeError(`fund: 1..${MAX_FUND_OUTPUTS} addresses`) }
    checkAmount(amount * BigInt(addresses.length))
    const addrs = addresses.map(a => parseAddress(a).addr)
    return this.exclusive(async () => {
      const tx = await this.faucetPay(addrs.map(addr => ({ addr, amount })))
      await this.mineOne(this.faucetAddress)
      const meta = await this.read(async () => this.node.getMeta(tx.hash('hex')))
      if (meta == null || meta.height < 0) { throw new Error('fund: the faucet transaction was not mined') }
      return addrs.map((_, vout) => ({ txid: tx.txid(), vout, value: amount, height: meta.height }))
    })
  }

  /**
   * Puts a faucet payment into the mempool, output i paying outputs[i];
   * call inside `exclusive`
   */
  private async faucetPay (outputs: Array<{ addr: bcoin.Address, amount: bigint }>): Promise<bcoin.TX> {
    const node = this.node
    const need = outputs.reduce((s, o) => s + o.amount, 0n) + 1_000_000n
    let coins = await this.faucetCoins()
    // the faucet runs dry only on a fresh chain started with segwit: false
    // (or after paying out thousands of BTC): mine it some mature coins
    for (let round = 0; sum(coins) < need && round < 3; round++) {
      for (let i = 0; i < COINBASE_MATURITY + 1; i++) { await this.mineOne(this.faucetAddress) }
      coins = await this.faucetCoins()
    }
    if (sum(coins) < need) { throw new Error(`fund: the regtest faucet cannot pay ${need - 1_000_000n} sats`) }

    const mtx = new bcoin.MTX()
    for (const o of outputs) { mtx.addOutput(o.addr, Number(o.amount)) }
    await mtx.fund(coins, { changeAddress: this.faucetAddress, rate: FAUCET_RATE, height: node.chain.height })
    mtx.sign(this.faucet)
    const tx = mtx.toTX()
    let missing: string[] | null
    try {
      missing = await node.mempool.addTX(tx)
    } catch (err: any) {
      throw new Error(`fund: the faucet transaction was refused: ${String(err?.reason ?? err?.message ?? err)}`)
    }
    if (missing != null) { throw new Error('fund: the faucet transaction has missing inputs') }
    return tx
  }

  /**
   * A development chain that behaves like a live one: every `interval` ms, a
   * block is mined (to the faucet) when transactions wait in the mempool, so
   * payments confirm and their change becomes spendable without anyone
   * running `decloud chain mine`. Returns a function that stops it.
   */
  autoMine (interval: number): () => void {
    if (!Number.isSafeInteger(interval) || interval < 100) { throw new RangeError('autoMine: interval must be at least 100 ms') }
    // one timer at a time: a second call replaces the first
    this.stopAutoMine?.()
    const timer = setInterval(() => {
      if (this.closed || this.node.mempool.map.size === 0) { return }
      this.exclusive(async () => { if (!this.closed) { await this.mineOne(this.faucetAddress) } })
        .catch(() => {})
    }, interval)
    timer.unref()
    this.stopAutoMine = () => { clearInterval(timer) }
    return this.stopAutoMine
  }

  private stopAutoMine?: () => void

  /** Closes the HTTP server and the node; idempotent */
  async close (): Promise<void> {
    this.stopAutoMine?.()
    this.closing ??= this.doClose()
    await this.closing
  }

  private async doClose (): Promise<void> {
    this.closed = true
    // let a running mine/fund finish (bounded) so the database closes cleanly
    await bounded(this.queue.catch(() => {}), CLOSE_TIMEOUT_MS, 'waiting for mining to stop').catch(() => {})
    const server = this.apiKey != null ? this.node.http.http : undefined
    const cut = server != null
      ? setTimeout(() => { server.closeAllConnections() }, HTTP_CLOSE_GRACE_MS)
      : undefined
    try {
      server?.closeIdleConnections()
      await bounded(this.node.close(), CLOSE_TIMEOUT_MS, 'closing the embedded chain')
    } finally {
      clearTimeout(cut)
    }
  }

  private checkOpen (): void {
    if (this.closed) { throw new ChainUnavailableError('the embedded chain is closed') }
  }

  /**
   * Runs a read of the chain's indexes under the chain's own lock, the one
   * connecting a block holds: read while a block is connected (mined here,
   * or through the RPC's generatetoaddress), the address index can name a
   * coin the block just spent, and bcoin's `getCoinsByAddress` fails
   * `assert(coin)`.
   */
  private async read<T> (fn: () => Promise<T>): Promise<T> {
    const unlock = await this.node.chain.locker.lock()
    try {
      return await fn()
    } finally {
      unlock()
    }
  }

  /** runs fn after every earlier mine/fund, one at a time */
  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  private async mineOne (addr: bcoin.Address): Promise<void> {
    const node = this.node
    const block = await node.miner.mineBlock(node.chain.tip, addr)
    const entry = await node.chain.add(block)
    if (entry == null) { throw new Error('mined block was not connected') }
  }

  private async paysOutMoreThanItHas (tx: bcoin.TX): Promise<boolean> {
    let inputs = 0n
    for (const { prevout } of tx.inputs) {
      const coin = await this.node.getCoin(prevout.hash, prevout.index)
      if (coin == null) { return false }
      inputs += BigInt(coin.value)
    }
    return tx.outputs.reduce((s, o) => s + BigInt(o.value), 0n) > inputs
  }

  /** the faucet's coins spendable in the next block */
  private async faucetCoins (): Promise<bcoin.Coin[]> {
    const next = this.node.chain.height + 1
    return (await this.read(async () => this.node.getCoinsByAddress([this.faucetAddress])))
      .filter(c => c.height >= 0 && (!c.coinbase || next - c.height >= COINBASE_MATURITY))
  }

  /** bitcoind-compatible `sendrawtransaction`, `sendtoaddress` and `scantxoutset` on bcoin's RPC server */
  private registerRpc (): void {
    const rpc = this.node.rpc
    const node = this.node

    delete rpc.calls.sendrawtransaction
    rpc.add('sendrawtransaction', async (args) => {
      if (args.length < 1 || args.length > 2 || typeof args[0] !== 'string') { throw rpcError(-1, 'sendrawtransaction "hexstring" ( maxfeerate )') }
      const hex = args[0]
      if (hex.length === 0 || hex.length > MAX_TX_BYTES * 2 || !HEX.test(hex)) { throw rpcError(-22, 'TX decode failed') }
      try {
        return await this.broadcast(Buffer.from(hex, 'hex'))
      } catch (err: any) {
        if (!(err instanceof TxRejectedError)) { throw rpcError(-1, String(err?.message ?? err)) }
        switch (err.kind) {
          case 'double-spend':
            throw err.reason.includes('missingorspent') ? rpcError(-25, err.reason) : rpcError(-26, err.reason)
          case 'already-known':
            throw err.reason.includes('block chain') ? rpcError(-27, 'Transaction already in block chain') : rpcError(-26, err.reason)
          case 'invalid':
            throw err.reason.startsWith('TX decode failed') ? rpcError(-22, 'TX decode failed') : rpcError(-26, err.reason)
          default:
            throw rpcError(-26, err.reason)
        }
      }
    })

    // Bitcoin Core's wallet call, paid here from the faucet (this is
    // regtest): lets every process sharing the chain fund its wallet with
    // mature coins instead of ever smaller coinbase rewards
    delete rpc.calls.sendtoaddress
    rpc.add('sendtoaddress', async (args) => {
      if (args.length < 2 || typeof args[0] !== 'string') { throw rpcError(-1, 'sendtoaddress "address" amount') }
      let parsed
      try {
        parsed = parseAddress(args[0])
      } catch {
        throw rpcError(-5, 'Invalid address')
      }
      const amount = parseBtcAmount(args[1])
      if (amount == null || amount <= 0n || amount > MAX_MONEY) { throw rpcError(-3, 'Invalid amount') }
      if (this.closed) { throw rpcError(-1, 'shutting down') }
      try {
        const tx = await this.exclusive(async () => this.faucetPay([{ addr: parsed.addr, amount }]))
        return tx.txid()
      } catch (err: any) {
        throw rpcError(-6, String(err?.message ?? err))
      }
    })

    rpc.add('scantxoutset', async (args) => {
      const action = args[0]
      if (action === 'abort') { return false }
      if (action === 'status') { return null }
      if (action !== 'start') { throw rpcError(-8, 'Invalid action') }
      const objects = args[1]
      if (!Array.isArray(objects)) { throw rpcError(-8, 'scanobjects argument is required for the start action') }
      if (objects.length > MAX_ADDRESSES) { throw rpcError(-8, `at most ${MAX_ADDRESSES} scan objects`) }
      const wanted = new Map<string, { addr: bcoin.Address, script: string }>()
      for (const o of objects) {
        const desc: unknown = typeof o === 'string' ? o : (o as { desc?: unknown } | null)?.desc
        const m = typeof desc === 'string' ? ADDR_DESCRIPTOR.exec(desc) : null
        if (m == null) { throw rpcError(-5, 'only addr(<address>) descriptors are supported') }
        let parsed
        try {
          parsed = parseAddress(m[1])
        } catch {
          throw rpcError(-5, `Invalid address: ${m[1].slice(0, 100)}`)
        }
        wanted.set(m[1], parsed)
      }
      // one lock for the whole scan: the coins and the height are of one tip
      const { unspents, total, height, tip } = await this.read(async () => {
        const unspents: unknown[] = []
        let total = 0n
        for (const [address, { addr, script }] of wanted) {
          // confirmed coins only, as Bitcoin Core scans its UTXO set (no mempool)
          for (const c of matching(await node.chain.getCoinsByAddress([addr]), script)) {
            total += BigInt(c.value)
            unspents.push({
              txid: c.txid(),
              vout: c.index,
              scriptPubKey: c.script.toRaw().toString('hex'),
              desc: `addr(${address})`,
              amount: satsToBtcNumber(BigInt(c.value)),
              coinbase: c.coinbase,
              height: c.height
            })
          }
        }
        return { unspents, total, height: node.chain.height, tip: node.chain.tip.hash }
      })
      return {
        success: true,
        txouts: unspents.length,
        height,
        bestblock: reverseHex(tip),
        unspents,
        total_amount: satsToBtcNumber(total)
      }
    })
  }
}

const API_KEY = /^[A-Za-z0-9._~-]{8,255}$/

function checkHttpOptions (http: EmbeddedChainHttpOptions): void {
  if (!Number.isInteger(http.port) || http.port < 0 || http.port > 65535) { throw new RangeError(`EmbeddedChain: bad HTTP port ${String(http.port)}`) }
  if (http.host != null && http.host !== '127.0.0.1') { throw new TypeError('EmbeddedChain: the HTTP server binds 127.0.0.1 only') }
  if (typeof http.apiKey !== 'string' || !API_KEY.test(http.apiKey)) { throw new TypeError('EmbeddedChain: the API key must be 8 to 255 characters among A-Z a-z 0-9 . _ ~ -') }
}

function createNode (memory: boolean, dir: string | undefined, http: EmbeddedChainHttpOptions | undefined): bcoin.FullNode {
  const node = new bcoin.FullNode({
    network: 'regtest',
    memory,
    prefix: dir,
    workers: false,
    indexTX: true,
    indexAddress: true,
    listen: false,
    logLevel: 'none',
    logFile: false,
    logConsole: false,
    persistentMempool: false,
    ...(http != null
      ? { httpHost: '127.0.0.1', httpPort: http.port, apiKey: http.apiKey, noAuth: false }
      : {})
  })
  // errors are reported to the caller of each method; bcoin's own event
  // would otherwise be an unhandled 'error'
  node.on('error', () => {})
  if (!memory) { fixLeveldownIterators(node) }
  if (http == null) {
    // bcoin always builds an HTTP server and would listen on 48443
    node.http.open = async () => {}
    node.http.close = async () => {}
  }
  return node
}
const TXID = /^[0-9a-fA-F]{64}$/
const HEX = /^(?:[0-9a-fA-F]{2})+$/
const ADDR_DESCRIPTOR = /^addr\(([A-Za-z0-9]{1,100})\)(?:#[a-z0-9]{8})?$/

/** A fresh API key for the HTTP server (URL-safe) */
export function generateApiKey (): string {
  return randomBytes(24).toString('hex')
}

function parseAddress (address: string): { addr: bcoin.Address, script: string } {
  if (typeof address !== 'string' || address.length === 0 || address.length > 100) { throw new TypeError('not a bitcoin address') }
  let addr: bcoin.Address
  try {
    addr = bcoin.Address.fromString(address, 'regtest')
  } catch {
    throw new TypeError(`not a bcoin regtest address: ${address}`)
  }
  return { addr, script: bcoin.Script.fromAddress(addr).toRaw().toString('hex') }
}

/** the coins paying exactly this script (bcoin's index is keyed by hash only) */
function matching (coins: bcoin.Coin[], script: string): bcoin.Coin[] {
  return coins.filter(c => c.script.toRaw().toString('hex') === script)
}

function checkCount (addresses: string[]): void {
  if (!Array.isArray(addresses)) { throw new TypeError('addresses must be an array') }
  if (addresses.length > MAX_ADDRESSES) { throw new RangeError(`at most ${MAX_ADDRESSES} addresses per call`) }
}

function checkAmount (amount: bigint): void {
  if (typeof amount !== 'bigint' || amount <= 0n || amount > MAX_MONEY) { throw new RangeError(`fund: amount must be 1..${MAX_MONEY} sats`) }
}

function sum (coins: bcoin.Coin[]): bigint {
  return coins.reduce((s, c) => s + BigInt(c.value), 0n)
}

function rejection (err: bcoin.VerifyError): TxRejectedError {
  const reason = String(err.reason ?? err.message)
  switch (err.code) {
    case 'alreadyknown':
      return new TxRejectedError('already-known', reason)
    case 'duplicate':
      // bcoin's name for "spends an output a mempool transaction spends"
      return new TxRejectedError('double-spend', 'txn-mempool-conflict')
    case 'insufficientfee':
    case 'highfee':
      return new TxRejectedError('fee', reason)
    default:
      if (reason.includes('inputs-missingorspent')) { return new TxRejectedError('double-spend', reason) }
      return new TxRejectedError('invalid', reason)
  }
}

/** an error bcoin's JSON-RPC server answers with its code (bweb reads `type` and `code`) */
function rpcError (code: number, message: string): Error {
  return Object.assign(new Error(message), { type: 'RPCError', code })
}

/**
 * sats as the JSON number bitcoind writes: the double nearest to the exact
 * decimal, which `toFixed(8)` turns back into the same sats
 */
function satsToBtcNumber (sats: bigint): number {
  return Number(sats) / 1e8
}

/** a BTC amount as a JSON number or decimal string, in sats; undefined when not one */
function parseBtcAmount (v: unknown): bigint | undefined {
  const text = typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v.toFixed(8) : v
  if (typeof text !== 'string') { return undefined }
  const m = /^([0-9]{1,8})(?:\.([0-9]{1,8}))?$/.exec(text)
  if (m == null) { return undefined }
  return BigInt(m[1]) * 100_000_000n + BigInt((m[2] ?? '').padEnd(8, '0'))
}

function reverseHex (hex: string): string {
  return Buffer.from(hex, 'hex').reverse().toString('hex')
}

/**
 * bcoin's database layer (bdb 0.2) hands leveldown iterator options with
 * `gt: null, lt: null` (and `gte`/`lte` null when unused); leveldown 6 (the
 * version that builds on Node 20, see package.json overrides) reads a null
 * as a range bound, so every iteration on disk came back empty: no coins by
 * address, no transactions by address. Dropping the null options restores
 * them. (In memory bcoin uses its own tree, which is not affected.)
 */
function fixLeveldownIterators (node: bcoin.FullNode): void {
  const backend = node.chain.db.db.binding
  if (typeof backend?.iterator !== 'function') { return }
  const iterator = backend.iterator.bind(backend)
  backend.iterator = (options: Record<string, unknown> = {}) => {
    const clean: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(options)) {
      if (v != null) { clean[k] = v }
    }
    return iterator(clean)
  }
}

/** resolves or rejects like p, or rejects with ChainUnavailableError after ms */
async function bounded<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new ChainUnavailableError(`${what}: no answer within ${ms} ms`)) }, ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
