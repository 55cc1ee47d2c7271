/**
 * bcoin, loaded on first use.
 *
 * bcoin is an optional dependency: only the embedded regtest chain needs it,
 * and its database layer pins leveldown 4, which does not build on current
 * Node. An app that embeds decloud (or a node on signet/testnet/mainnet
 * through bitcoind or Esplora) must install and start without it, so nothing
 * here is loaded until the embedded chain touches `bcoin.…`. The first touch
 * loads it synchronously (bcoin is CommonJS) or throws
 * `EmbeddedChainUnavailableError` with what to do.
 *
 * `bcoin` is both a value (a proxy to the module) and a namespace of its types,
 * so `import { bcoin } from './bcoin.js'` reads exactly like
 * `import bcoin from 'bcoin'` in the embedded chain's code.
 */
import { createRequire } from 'node:module'
import { ChainUnavailableError } from '../types.js'
import type Bcoin from 'bcoin'

/** The embedded chain cannot run: bcoin is not installed or does not load */
export class EmbeddedChainUnavailableError extends ChainUnavailableError {
  static override name = 'EmbeddedChainUnavailableError'
  override name = 'EmbeddedChainUnavailableError'
}

/** what to tell a user who lacks bcoin (also in docs/chain.md) */
export const BCOIN_INSTALL_HINT = 'the embedded regtest chain needs the optional package bcoin: ' +
  'add "overrides": { "leveldown": "^6.1.1" } to your package.json and run npm install bcoin@1.0.2, ' +
  'or use --bitcoind-rpc URL / --esplora URL (docs/chain.md)'

let loaded: typeof Bcoin | undefined

/** loads bcoin once; throws `EmbeddedChainUnavailableError` when it is missing or broken */
export function loadBcoin (): typeof Bcoin {
  if (loaded == null) {
    const require = createRequire(import.meta.url)
    try {
      loaded = require('bcoin') as typeof Bcoin
    } catch (err) {
      throw new EmbeddedChainUnavailableError(`${BCOIN_INSTALL_HINT} (${(err as Error).message.split('\n')[0]})`, { cause: err })
    }
  }
  return loaded
}

/** bcoin's module, loaded on first property access */
export const bcoin: typeof Bcoin = new Proxy({}, {
  get: (_target, key) => (loadBcoin() as unknown as Record<string | symbol, unknown>)[key]
}) as typeof Bcoin

// a type-only namespace merged with the value of the same name (as bcoin's own typings do)
// eslint-disable-next-line @typescript-eslint/no-redeclare
export declare namespace bcoin {
  type NetworkType = Bcoin.NetworkType
  type Network = Bcoin.Network
  type Address = Bcoin.Address
  type Script = Bcoin.Script
  type Output = Bcoin.Output
  type Outpoint = Bcoin.Outpoint
  type Input = Bcoin.Input
  type TX = Bcoin.TX
  type MTX = Bcoin.MTX
  type Coin = Bcoin.Coin
  type KeyRing = Bcoin.KeyRing
  type TXMeta = Bcoin.TXMeta
  type CoinView = Bcoin.CoinView
  type ChainEntry = Bcoin.ChainEntry
  type Block = Bcoin.Block
  type VerifyError = Bcoin.VerifyError
  type ChainState = Bcoin.ChainState
  type LevelBackend = Bcoin.LevelBackend
  type ChainDB = Bcoin.ChainDB
  type Chain = Bcoin.Chain
  type Mempool = Bcoin.Mempool
  type Miner = Bcoin.Miner
  type Fees = Bcoin.Fees
  type RpcHandler = Bcoin.RpcHandler
  type RPC = Bcoin.RPC
  type HTTPServer = Bcoin.HTTPServer
  type FullNodeOptions = Bcoin.FullNodeOptions
  type FullNode = Bcoin.FullNode
}
