/**
 * The embedded chain's bcoin node: its options, its setup, the locks every
 * read and every mine takes, and helpers the other parts share. Nothing here
 * touches bcoin until a node is made (see ./bcoin.ts).
 */
import { randomBytes } from 'node:crypto'
import { ChainUnavailableError } from '../types.js'
import { bcoin } from './bcoin.js'

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
export const OPEN_TIMEOUT_MS = 120_000
export const CLOSE_TIMEOUT_MS = 30_000
/** connections still open this long after close() starts are cut */
export const HTTP_CLOSE_GRACE_MS = 1000
/** 21M BTC */
export const MAX_MONEY = 2_100_000_000_000_000n

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

/**
 * The bcoin node and its locks; the embedded chain is built on it
 * (./embedded-faucet.ts, then ./embedded.ts)
 */
export abstract class EmbeddedNode {
  protected readonly node: bcoin.FullNode
  protected readonly apiKey?: string
  protected queue: Promise<unknown> = Promise.resolve()
  protected closed = false

  protected constructor (node: bcoin.FullNode, apiKey?: string) {
    this.node = node
    this.apiKey = apiKey
  }

  protected checkOpen (): void {
    if (this.closed) { throw new ChainUnavailableError('the embedded chain is closed') }
  }

  /**
   * Runs a read of the chain's indexes under the chain's own lock, the one
   * connecting a block holds: read while a block is connected (mined here,
   * or through the RPC's generatetoaddress), the address index can name a
   * coin the block just spent, and bcoin's `getCoinsByAddress` fails
   * `assert(coin)`.
   */
  protected async read<T> (fn: () => Promise<T>): Promise<T> {
    const unlock = await this.node.chain.locker.lock()
    try {
      return await fn()
    } finally {
      unlock()
    }
  }

  /** runs fn after every earlier mine/fund, one at a time */
  protected async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  protected async mineOne (addr: bcoin.Address): Promise<void> {
    const node = this.node
    const block = await node.miner.mineBlock(node.chain.tip, addr)
    const entry = await node.chain.add(block)
    if (entry == null) { throw new FaucetError('mined block was not connected') }
  }
}

/** The embedded chain's own faucet or miner failed (a regtest development aid, not a payment) */
export class FaucetError extends Error {
  static override name = 'FaucetError'
  override name = 'FaucetError'
}

const API_KEY = /^[A-Za-z0-9._~-]{8,255}$/

export function checkHttpOptions (http: EmbeddedChainHttpOptions): void {
  if (!Number.isInteger(http.port) || http.port < 0 || http.port > 65535) { throw new RangeError(`EmbeddedChain: bad HTTP port ${String(http.port)}`) }
  if (http.host != null && http.host !== '127.0.0.1') { throw new TypeError('EmbeddedChain: the HTTP server binds 127.0.0.1 only') }
  if (typeof http.apiKey !== 'string' || !API_KEY.test(http.apiKey)) { throw new TypeError('EmbeddedChain: the API key must be 8 to 255 characters among A-Z a-z 0-9 . _ ~ -') }
}

export function createNode (memory: boolean, dir: string | undefined, http: EmbeddedChainHttpOptions | undefined): bcoin.FullNode {
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
export const TXID = /^[0-9a-fA-F]{64}$/

/** A fresh API key for the HTTP server (URL-safe) */
export function generateApiKey (): string {
  return randomBytes(24).toString('hex')
}

export function parseAddress (address: string): { addr: bcoin.Address, script: string } {
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
export function matching (coins: bcoin.Coin[], script: string): bcoin.Coin[] {
  return coins.filter(c => c.script.toRaw().toString('hex') === script)
}

export function checkCount (addresses: string[]): void {
  if (!Array.isArray(addresses)) { throw new TypeError('addresses must be an array') }
  if (addresses.length > MAX_ADDRESSES) { throw new RangeError(`at most ${MAX_ADDRESSES} addresses per call`) }
}

export function checkAmount (amount: bigint): void {
  if (typeof amount !== 'bigint' || amount <= 0n || amount > MAX_MONEY) { throw new RangeError(`fund: amount must be 1..${MAX_MONEY} sats`) }
}

export function reverseHex (hex: string): string {
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
export async function bounded<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
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
