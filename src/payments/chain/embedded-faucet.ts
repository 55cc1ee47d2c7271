/**
 * The embedded chain's faucet and mining: blocks on demand, coins for any
 * address from a faucet key, and a development chain that mines by itself.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { bcoin } from './bcoin.js'
import { checkAmount, COINBASE_MATURITY, DEFAULT_FUND_SATS, EmbeddedNode, FaucetError, MAX_FUND_OUTPUTS, MAX_MINE_BLOCKS, parseAddress } from './embedded-node.js'
import type { Funding } from './embedded-node.js'

/** sat/kvB the faucet pays */
const FAUCET_RATE = 2000
/**
 * The faucet: a key everyone can derive (this is regtest), so an on-disk
 * chain keeps its faucet across restarts. The coinbase of every block mined
 * at start goes to it; `fund()` pays from it. Funding from matured coins
 * instead of fresh coinbases matters because regtest halves the block reward
 * every 150 blocks: after a few hundred blocks a coinbase is worth little.
 */
const FAUCET_KEY = Buffer.from(sha256(new TextEncoder().encode('decloud regtest faucet')))

/** The bcoin node with its faucet and mining (./embedded.ts adds the rest) */
export abstract class EmbeddedMiner extends EmbeddedNode {
  protected readonly faucet: bcoin.KeyRing
  protected readonly faucetAddress: bcoin.Address

  protected constructor (node: bcoin.FullNode, apiKey?: string) {
    super(node, apiKey)
    this.faucet = bcoin.KeyRing.fromPrivate(FAUCET_KEY, true)
    this.faucetAddress = this.faucet.getAddress()
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
      if (meta == null || meta.height < 0) { throw new FaucetError('fund: the faucet transaction was not mined') }
      return addrs.map((_, vout) => ({ txid: tx.txid(), vout, value: amount, height: meta.height }))
    })
  }

  /**
   * Puts a faucet payment into the mempool, output i paying outputs[i];
   * call inside `exclusive`
   */
  protected async faucetPay (outputs: Array<{ addr: bcoin.Address, amount: bigint }>): Promise<bcoin.TX> {
    const node = this.node
    const need = outputs.reduce((s, o) => s + o.amount, 0n) + 1_000_000n
    let coins = await this.faucetCoins()
    // the faucet runs dry only on a fresh chain started with segwit: false
    // (or after paying out thousands of BTC): mine it some mature coins
    for (let round = 0; sum(coins) < need && round < 3; round++) {
      for (let i = 0; i < COINBASE_MATURITY + 1; i++) { await this.mineOne(this.faucetAddress) }
      coins = await this.faucetCoins()
    }
    if (sum(coins) < need) { throw new FaucetError(`fund: the regtest faucet cannot pay ${need - 1_000_000n} sats`) }

    const mtx = new bcoin.MTX()
    for (const o of outputs) { mtx.addOutput(o.addr, Number(o.amount)) }
    await mtx.fund(coins, { changeAddress: this.faucetAddress, rate: FAUCET_RATE, height: node.chain.height })
    mtx.sign(this.faucet)
    const tx = mtx.toTX()
    let missing: string[] | null
    try {
      missing = await node.mempool.addTX(tx)
    } catch (err: any) {
      throw new FaucetError(`fund: the faucet transaction was refused: ${String(err?.reason ?? err?.message ?? err)}`)
    }
    if (missing != null) { throw new FaucetError('fund: the faucet transaction has missing inputs') }
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

  protected stopAutoMine?: () => void

  /** the faucet's coins spendable in the next block */
  private async faucetCoins (): Promise<bcoin.Coin[]> {
    const next = this.node.chain.height + 1
    return (await this.read(async () => this.node.getCoinsByAddress([this.faucetAddress])))
      .filter(c => c.height >= 0 && (!c.coinbase || next - c.height >= COINBASE_MATURITY))
  }
}

function sum (coins: bcoin.Coin[]): bigint {
  return coins.reduce((s, c) => s + BigInt(c.value), 0n)
}
