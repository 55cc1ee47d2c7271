/**
 * Coin selection and transaction building for the wallet: size and dust
 * arithmetic, which coins pay, and the signed transaction.
 */
import { randomInt } from 'node:crypto'
import { Transaction } from '@scure/btc-signer'
import type { Utxo } from '../types.js'

/** Dust threshold of a P2WPKH output (3 sat/vB × (31 + 67) vbytes) */
export const DUST_P2WPKH = 294n
/** scriptPubKey length of a P2WPKH change output */
const CHANGE_SCRIPT_LENGTH = 22

/**
 * Estimated virtual size of a transaction spending `inputs` P2WPKH coins
 * into outputs of these scriptPubKey lengths: 10.5 vB of overhead, 68 vB per
 * input, 9 + script length per output (31 for P2WPKH), rounded up.
 */
export function estimateVsize (inputs: number, outputScriptLengths: number[]): bigint {
  // in half-vbytes to stay in integers
  const halves = 21 + 136 * inputs + outputScriptLengths.reduce((s, l) => s + 2 * (9 + l), 0)
  return BigInt(Math.ceil(halves / 2))
}

/** Dust threshold of an output script at the default dust relay fee (3 sat/vB) */
export function dustThreshold (script: Uint8Array): bigint {
  const witness = script.byteLength >= 4 && script.byteLength <= 42 && (script[0] === 0 || (script[0] >= 0x51 && script[0] <= 0x60)) && script[1] === script.byteLength - 2
  return 3n * BigInt(9 + script.byteLength + (witness ? 67 : 148))
}

/** The coins that pay, the fee, and the change (0: none, it went to the fee) */
export interface CoinPlan {
  selected: Utxo[]
  fee: bigint
  change: bigint
}

/**
 * Picks coins from `free` (sorted in place: confirmed first, then largest
 * first) to pay `amount` to a script of `scriptLength` bytes at `feeRate`;
 * undefined when they do not suffice
 */
export function selectCoins (free: Utxo[], amount: bigint, scriptLength: number, feeRate: bigint): CoinPlan | undefined {
  // confirmed first, then largest first
  free.sort((a, b) => {
    if ((a.height == null) !== (b.height == null)) { return a.height == null ? 1 : -1 }
    if (a.value === b.value) { return 0 }
    return a.value > b.value ? -1 : 1
  })
  const selected: Utxo[] = []
  let total = 0n
  for (const coin of free) {
    selected.push(coin)
    total += coin.value
    const feeNoChange = feeRate * estimateVsize(selected.length, [scriptLength])
    if (total < amount + feeNoChange) { continue }
    const feeWithChange = feeRate * estimateVsize(selected.length, [scriptLength, CHANGE_SCRIPT_LENGTH])
    const change = total - amount - feeWithChange
    // change below dust goes to the fee
    return change >= DUST_P2WPKH ? { selected, fee: feeWithChange, change } : { selected, fee: total - amount, change: 0n }
  }
  return undefined
}

/** A signed transaction, and where its change went (-1: no change) */
export interface BuiltTransaction {
  txid: string
  raw: Uint8Array
  outputs: Array<{ script: Uint8Array, amount: bigint }>
  changeIndex: number
}

/**
 * Spends `selected` to the payment output and the change output (if any),
 * each input signed with the key `keyOf` gives for its script
 */
export function buildTransaction (selected: Utxo[], payment: { script: Uint8Array, amount: bigint }, change: { script: Uint8Array, amount: bigint } | undefined, keyOf: (script: string) => Uint8Array): BuiltTransaction {
  const tx = new Transaction({ version: 2 })
  for (const u of selected) {
    tx.addInput({ txid: u.txid, index: u.vout, witnessUtxo: { script: Buffer.from(u.script, 'hex'), amount: u.value } })
  }
  const outputs: Array<{ script: Uint8Array, amount: bigint }> = [payment]
  if (change != null) {
    // change at a random position, so it cannot be told by its place
    outputs.splice(randomInt(2), 0, change)
  }
  for (const o of outputs) { tx.addOutput(o) }
  for (let i = 0; i < selected.length; i++) {
    tx.signIdx(keyOf(selected[i].script.toLowerCase()), i)
  }
  tx.finalize()
  const raw = tx.extract()
  const changeIndex = change != null ? outputs.findIndex(o => o.script !== payment.script) : -1
  return { txid: tx.id, raw, outputs, changeIndex }
}
