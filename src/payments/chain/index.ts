/**
 * Chain backends: the embedded bcoin regtest chain, a bitcoind-compatible
 * JSON-RPC client and an Esplora REST client, chosen with
 * `--chain regtest|signet|testnet|mainnet` plus `--bitcoind-rpc URL` /
 * `--esplora URL` (docs/chain.md). No outside server is ever picked by
 * default.
 *
 * bcoin is an optional dependency loaded on first use (./bcoin.ts): importing
 * this module loads none of it, and without bcoin only the embedded chain is
 * unavailable (`EmbeddedChainUnavailableError`).
 */
import { join } from 'node:path'
import { BitcoindRpcBackend } from './bitcoind-rpc.js'
import { EmbeddedChain } from './embedded.js'
import { EsploraBackend } from './esplora.js'
import { isChainName } from './networks.js'
import type { ChainBackend, ChainName } from '../types.js'

export { EmbeddedChain, generateApiKey, SEGWIT_HEIGHT, DEFAULT_FUND_SATS } from './embedded.js'
export { EmbeddedChainUnavailableError, loadBcoin } from './bcoin.js'
export type { EmbeddedChainOptions, EmbeddedChainHttpOptions, Funding } from './embedded.js'
export { BitcoindRpcBackend, BitcoindRpcError, btcToSats, rejectionOf } from './bitcoind-rpc.js'
export type { BitcoindRpcOptions } from './bitcoind-rpc.js'
export { EsploraBackend, broadcastRejection } from './esplora.js'
export type { EsploraOptions } from './esplora.js'
export { maskUrl, readSecretFile, secretFrom, SecretFileError } from './secrets.js'

export interface ChainBackendOptions {
  /**
   * which bitcoin network
   *
   * @default 'regtest'
   */
  chain?: ChainName
  /** a bitcoind-compatible JSON-RPC URL, `http://user:password@host:port/` */
  bitcoindRpc?: string
  /** an Esplora API root, e.g. `https://mempool.space/signet/api` */
  esplora?: string
  /** the node's data dir: the embedded chain lives in `<dataDir>/chain` */
  dataDir?: string
  /** keep the embedded chain in memory */
  memory?: boolean
}

/** A usage mistake in the chain options (the CLI prints the message) */
export class ChainConfigError extends Error {
  static override name = 'ChainConfigError'
  override name = 'ChainConfigError'
}

/**
 * Picks and opens the backend:
 * - any chain with `bitcoindRpc` → `BitcoindRpcBackend` (checked: answers, right chain)
 * - signet/testnet/mainnet with `esplora` → `EsploraBackend` (checked: answers)
 * - regtest with neither → `EmbeddedChain` in `<dataDir>/chain` (or in memory)
 * - signet/testnet/mainnet with neither → `ChainConfigError`
 *
 * @example
 * ```ts
 * const chain = await createChainBackend({ dataDir })                       // embedded regtest
 * const chain = await createChainBackend({ chain: 'signet', esplora: url })
 * ```
 */
export async function createChainBackend (opts: ChainBackendOptions = {}): Promise<ChainBackend> {
  const chain = opts.chain ?? 'regtest'
  if (!isChainName(chain)) { throw new ChainConfigError(`--chain must be regtest, signet, testnet or mainnet, not "${String(chain)}"`) }
  if (opts.bitcoindRpc != null && opts.esplora != null) { throw new ChainConfigError('give --bitcoind-rpc or --esplora, not both') }
  if (opts.bitcoindRpc != null) {
    checkUrl('--bitcoind-rpc', opts.bitcoindRpc)
    return BitcoindRpcBackend.connect(opts.bitcoindRpc, { chain })
  }
  if (opts.esplora != null) {
    if (chain === 'regtest') { throw new ChainConfigError('--esplora is for signet, testnet and mainnet; on regtest use the embedded chain or --bitcoind-rpc URL') }
    checkUrl('--esplora', opts.esplora)
    return EsploraBackend.connect(opts.esplora, { chain })
  }
  if (chain !== 'regtest') { throw new ChainConfigError(`--chain ${chain} needs --esplora URL or --bitcoind-rpc URL`) }
  if (opts.memory === true) { return EmbeddedChain.start({ memory: true }) }
  if (opts.dataDir == null) { throw new ChainConfigError('the embedded regtest chain needs a data dir (or memory)') }
  return EmbeddedChain.start({ dir: join(opts.dataDir, 'chain'), memory: false })
}

function checkUrl (flag: string, url: string): void {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new ChainConfigError(`${flag} is not a URL`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') { throw new ChainConfigError(`${flag} must be an http: or https: URL`) }
}
