/**
 * The shared regtest fixture: a real bcoin chain in this process.
 *
 * ```ts
 * const chain = await startRegtest()           // in memory, SegWit active (height 432)
 * await fundAddress(chain, wallet address)     // 10 BTC confirmed, spendable now
 * await chain.mine(1, someAddress)             // confirm what is in the mempool
 * await chain.close()
 * ```
 * Addresses use bcoin's regtest encoding: `chain.network` (bech32 `rb`).
 */
import { EmbeddedChain } from '../src/payments/chain/embedded.js'
import type { Funding } from '../src/payments/chain/embedded.js'

export { EmbeddedChain }
export type { Funding }

/** An in-memory regtest chain at height 432 (SegWit active), no HTTP server */
export async function startRegtest (): Promise<EmbeddedChain> {
  return EmbeddedChain.start({ memory: true })
}

/**
 * Pays `amount` sats (default 10 BTC) to address from the chain's faucet and
 * mines one block: when it resolves the coins are confirmed and spendable.
 */
export async function fundAddress (chain: EmbeddedChain, address: string, amount?: bigint): Promise<Funding> {
  return chain.fund(address, amount)
}
