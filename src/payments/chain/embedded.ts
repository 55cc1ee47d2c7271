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
 *
 * Its parts: ./embedded-node.ts (the bcoin node, its options and locks),
 * ./embedded-faucet.ts (faucet and mining), ./embedded-rpc.ts (the served
 * RPC calls); this file is the `ChainBackend` itself.
 */
import { ChainUnavailableError, TxRejectedError } from '../types.js'
import { bcoin } from './bcoin.js'
import { EmbeddedMiner } from './embedded-faucet.js'
import { bounded, checkCount, checkHttpOptions, CLOSE_TIMEOUT_MS, createNode, HTTP_CLOSE_GRACE_MS, matching, MAX_HISTORY, MAX_TX_BYTES, OPEN_TIMEOUT_MS, parseAddress, reverseHex, SEGWIT_HEIGHT, TXID } from './embedded-node.js'
import { registerBitcoindRpc } from './embedded-rpc.js'
import { BCOIN_REGTEST } from './networks.js'
import type { EmbeddedChainOptions } from './embedded-node.js'
import type { AddressState, AddressTx, MiningBackend, TxStatus, Utxo } from '../types.js'

export { COINBASE_MATURITY, DEFAULT_FUND_SATS, generateApiKey, MAX_ADDRESSES, MAX_FUND_OUTPUTS, MAX_HISTORY, MAX_MINE_BLOCKS, MAX_TX_BYTES, SEGWIT_HEIGHT } from './embedded-node.js'
export type { EmbeddedChainHttpOptions, EmbeddedChainOptions, Funding } from './embedded-node.js'

export class EmbeddedChain extends EmbeddedMiner implements MiningBackend {
  readonly chain = 'regtest' as const
  readonly network = BCOIN_REGTEST
  readonly description: string

  private closing?: Promise<void>

  private constructor (node: bcoin.FullNode, description: string, apiKey?: string) {
    super(node, apiKey)
    this.description = description
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

  /** The coins of each address (index-aligned), read under the chain lock */
  private async coinsOf (addresses: string[]): Promise<bcoin.Coin[][]> {
    this.checkOpen()
    checkCount(addresses)
    const parsed = addresses.map(parseAddress)
    return this.read(async () => {
      const lists: bcoin.Coin[][] = []
      for (const { addr, script } of parsed) { lists.push(matching(await this.node.getCoinsByAddress([addr]), script)) }
      return lists
    })
  }

  async addresses (addresses: string[]): Promise<AddressState[]> {
    const lists = await this.coinsOf(addresses)
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
    const lists = await this.coinsOf(addresses)
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

  private async paysOutMoreThanItHas (tx: bcoin.TX): Promise<boolean> {
    let inputs = 0n
    for (const { prevout } of tx.inputs) {
      const coin = await this.node.getCoin(prevout.hash, prevout.index)
      if (coin == null) { return false }
      inputs += BigInt(coin.value)
    }
    return tx.outputs.reduce((s, o) => s + BigInt(o.value), 0n) > inputs
  }

  /** bitcoind-compatible `sendrawtransaction`, `sendtoaddress` and `scantxoutset` on bcoin's RPC server */
  private registerRpc (): void {
    registerBitcoindRpc(this.node, {
      broadcast: async raw => this.broadcast(raw),
      isClosed: () => this.closed,
      faucetPay: async (addr, amount) => this.exclusive(async () => this.faucetPay([{ addr, amount }])),
      read: async fn => this.read(fn)
    })
  }
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
