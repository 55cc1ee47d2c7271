/**
 * Minimal typings for the parts of bcoin 1.0.2 (CommonJS, no bundled types)
 * that `src/payments/chain/embedded.ts` uses. Hashes are internal byte order
 * hex strings in bcoin 1.0 (`txid()` is the reversed, displayed form);
 * amounts are satoshis as JS numbers (exact: below 2^53).
 */
declare module 'bcoin' {
  namespace bcoin {
    type NetworkType = 'main' | 'testnet' | 'regtest' | 'simnet'

    interface Network {
      type: NetworkType
    }

    class Address {
      static fromString (str: string, network?: NetworkType | Network): Address
      static fromScript (script: Script): Address | null
      static fromPubkeyhash (hash: Buffer, network?: NetworkType | Network): Address
      toString (network?: NetworkType | Network): string
      hash: Buffer
      type: number
    }

    class Script {
      static fromAddress (addr: Address | string): Script
      static fromRaw (raw: Buffer): Script
      toRaw (): Buffer
    }

    interface Output {
      value: number
      script: Script
    }

    interface Outpoint {
      /** internal order hex */
      hash: string
      index: number
      txid (): string
    }

    interface Input {
      prevout: Outpoint
    }

    class TX {
      static fromRaw (data: Buffer): TX
      hash (enc: 'hex'): string
      hash (): Buffer
      txid (): string
      toRaw (): Buffer
      isCoinbase (): boolean
      hasWitness (): boolean
      inputs: Input[]
      outputs: Output[]
    }

    class MTX extends TX {
      addOutput (address: Address | Script, value: number): Output
      fund (coins: Coin[], options: { changeAddress: Address, rate?: number, subtractFee?: boolean, height?: number }): Promise<unknown>
      sign (ring: KeyRing | KeyRing[]): number
      toTX (): TX
    }

    class Coin {
      /** internal order hex */
      hash: string
      index: number
      value: number
      /** -1 while unconfirmed */
      height: number
      coinbase: boolean
      script: Script
      txid (): string
      getAddress (): Address | null
    }

    class KeyRing {
      static fromPrivate (key: Buffer, compress?: boolean): KeyRing
      witness: boolean
      getAddress (enc?: undefined, network?: NetworkType | Network): Address
    }

    interface TXMeta {
      tx: TX
      /** -1 while in the mempool */
      height: number
      /** position in its block, -1 in the mempool */
      index: number
      /** internal order hex of the block, null in the mempool */
      block: string | null
      mtime: number
    }

    interface CoinView {
      getOutputFor (input: Input): Output | null
    }

    interface ChainEntry {
      hash: string
      height: number
    }

    interface Block {
      txs: TX[]
    }

    class VerifyError extends Error {
      type: 'VerifyError'
      /** e.g. 'invalid', 'duplicate', 'alreadyknown', 'insufficientfee', 'nonstandard', 'highfee' */
      code: string
      /** bitcoind-style reason, e.g. 'bad-txns-inputs-spent' */
      reason: string
      score: number
    }

    interface ChainState {
      hasWitness (): boolean
    }

    interface LevelBackend {
      iterator?(options?: Record<string, unknown>): unknown
    }

    interface ChainDB {
      /** bdb's DB; `binding` is the leveldown instance when on disk */
      db: { binding?: LevelBackend }
    }

    interface Chain {
      db: ChainDB
      height: number
      tip: ChainEntry
      state: ChainState
      /** bmutex Lock: `chain.add` holds it while a block is connected; `lock()` resolves to the unlock function */
      locker: { lock (): Promise<() => void> }
      add (block: Block): Promise<ChainEntry | null>
      getCoinsByAddress (addrs: Address[]): Promise<Coin[]>
      hasTX (hash: string): Promise<boolean>
    }

    interface Mempool {
      tip: string
      map: Map<string, unknown>
      addTX (tx: TX): Promise<string[] | null>
      removeOrphan (hash: string): boolean
      hasEntry (hash: string): boolean
      getCoinsByAddress (addrs: Address[]): Coin[]
    }

    interface Miner {
      mineBlock (tip: ChainEntry, address: Address): Promise<Block>
    }

    interface Fees {
      /** sat/kvB, 0 when it knows nothing */
      estimateFee (blocks: number, smart: boolean): number
    }

    type RpcHandler = (args: unknown[], help: boolean) => Promise<unknown>

    interface RPC {
      calls: Record<string, RpcHandler | undefined>
      add (name: string, func: RpcHandler): void
    }

    interface HTTPServer {
      open (): Promise<void>
      close (): Promise<void>
      /** node's http.Server under bweb */
      http: import('node:http').Server
    }

    interface FullNodeOptions {
      network: NetworkType
      memory?: boolean
      prefix?: string
      workers?: boolean
      indexTX?: boolean
      indexAddress?: boolean
      listen?: boolean
      logLevel?: string
      logFile?: boolean
      logConsole?: boolean
      persistentMempool?: boolean
      httpHost?: string
      httpPort?: number
      apiKey?: string
      noAuth?: boolean
      coinbaseAddress?: string[]
    }

    class FullNode {
      constructor (options: FullNodeOptions)
      network: Network
      chain: Chain
      mempool: Mempool
      miner: Miner
      fees: Fees
      rpc: RPC
      http: HTTPServer
      /** creates the prefix directory of an on-disk node */
      ensure (): Promise<void>
      open (): Promise<void>
      close (): Promise<void>
      getCoinsByAddress (addrs: Address[]): Promise<Coin[]>
      /** a coin from the mempool or the chain, null when spent or unknown */
      getCoin (hash: string, index: number): Promise<Coin | null>
      getMetaByAddress (addrs: Address[]): Promise<TXMeta[]>
      getMeta (hash: string): Promise<TXMeta | null>
      getMetaView (meta: TXMeta): Promise<CoinView>
      hasTX (hash: string): Promise<boolean>
      on (event: 'error', listener: (err: Error) => void): this
    }
  }

  export default bcoin
}
