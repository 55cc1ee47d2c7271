/**
 * bcoin's JSON-RPC server made to answer like Bitcoin Core where decloud's
 * `BitcoindRpcBackend` needs it: `sendrawtransaction` (bcoin's own swallows
 * rejections), `sendtoaddress` (paid from the regtest faucet) and
 * `scantxoutset` (bcoin has none; answered from the address index).
 */
import { TxRejectedError } from '../types.js'
import { MAX_ADDRESSES, MAX_MONEY, MAX_TX_BYTES, matching, parseAddress, reverseHex } from './embedded-node.js'
import type { bcoin } from './bcoin.js'

const HEX = /^(?:[0-9a-fA-F]{2})+$/
const ADDR_DESCRIPTOR = /^addr\(([A-Za-z0-9]{1,100})\)(?:#[a-z0-9]{8})?$/

/** What the served RPC calls use of the embedded chain */
export interface RpcHost {
  /** `ChainBackend.broadcast` */
  broadcast(raw: Uint8Array): Promise<string>
  isClosed(): boolean
  /** pays amount to addr from the faucet (after every earlier mine/fund), into the mempool */
  faucetPay(addr: bcoin.Address, amount: bigint): Promise<bcoin.TX>
  /** runs fn under the chain's lock */
  read<T>(fn: () => Promise<T>): Promise<T>
}

/** bitcoind-compatible `sendrawtransaction`, `sendtoaddress` and `scantxoutset` on bcoin's RPC server */
export function registerBitcoindRpc (node: bcoin.FullNode, host: RpcHost): void {
  const rpc = node.rpc

  delete rpc.calls.sendrawtransaction
  rpc.add('sendrawtransaction', async (args) => {
    if (args.length < 1 || args.length > 2 || typeof args[0] !== 'string') { throw rpcError(-1, 'sendrawtransaction "hexstring" ( maxfeerate )') }
    const hex = args[0]
    if (hex.length === 0 || hex.length > MAX_TX_BYTES * 2 || !HEX.test(hex)) { throw rpcError(-22, 'TX decode failed') }
    try {
      return await host.broadcast(Buffer.from(hex, 'hex'))
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
    if (host.isClosed()) { throw rpcError(-1, 'shutting down') }
    try {
      const tx = await host.faucetPay(parsed.addr, amount)
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
    const { unspents, total, height, tip } = await host.read(async () => {
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

/** An error bcoin's JSON-RPC server answers with its code (bweb reads `type` and `code`) */
class RpcError extends Error {
  static override name = 'RpcError'
  override name = 'RpcError'
  readonly type = 'RPCError'
  constructor (readonly code: number, message: string) { super(message) }
}

function rpcError (code: number, message: string): Error {
  return new RpcError(code, message)
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
