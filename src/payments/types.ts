/**
 * The interfaces the payment modules share: a chain backend (what decloud
 * needs from a bitcoin node or indexer), the bitcoin network parameters of
 * addresses, and the wallet.
 *
 * Amounts are integer satoshis (bigint) everywhere; fee rates are integer
 * sat/vB (bigint). Transactions travel as raw bytes.
 */

import type { Signer } from '../protocols/opencloud/api/signing.js'

export type ChainName = 'regtest' | 'signet' | 'testnet' | 'mainnet'

/**
 * Address encoding of one bitcoin network, in the shape `@scure/btc-signer`
 * takes (`NETWORK`, `TEST_NETWORK`). bcoin's regtest differs from Bitcoin
 * Core's (bech32 `rb`, P2PKH 0x3c), so a backend says which one it speaks.
 */
export interface AddressNetwork {
  bech32: string
  pubKeyHash: number
  scriptHash: number
  wif: number
}

/** BIP44 coin type: 0 on mainnet, 1 on every test network */
export function coinType (chain: ChainName): 0 | 1 {
  return chain === 'mainnet' ? 0 : 1
}

/** An unspent output of an address */
export interface Utxo {
  txid: string
  vout: number
  value: bigint
  /** hex scriptPubKey */
  script: string
  /** block height, undefined while unconfirmed */
  height?: number
}

/** The balance and age of one address, as a credential check needs them */
export interface AddressState {
  address: string
  /** sum of confirmed unspent outputs */
  confirmed: bigint
  /** sum of unconfirmed (mempool) unspent outputs, may be 0 */
  unconfirmed: bigint
  /**
   * height of the oldest confirmed output still unspent (how long the coins
   * have been held), undefined when nothing confirmed is held
   */
  heldSince?: number
}

/** One transaction touching an address */
export interface AddressTx {
  txid: string
  /** undefined while unconfirmed */
  height?: number
  /** net effect on the address: received minus spent (sats, may be negative) */
  delta: bigint
  /** blocks since it was mined, 0 while unconfirmed (the wallet's history fills it in) */
  confirmations?: number
}

export interface TxStatus {
  txid: string
  /** 0 while in the mempool */
  confirmations: number
  height?: number
  raw?: Uint8Array
}

/** Why a backend refused a transaction */
export type RejectKind = 'double-spend' | 'already-known' | 'invalid' | 'fee' | 'other'

export class TxRejectedError extends Error {
  static override name = 'TxRejectedError'
  override name = 'TxRejectedError'
  constructor (readonly kind: RejectKind, readonly reason: string) {
    super(`transaction rejected: ${reason}`)
  }
}

/** The backend cannot answer this (e.g. address history over plain JSON-RPC) */
export class ChainUnsupportedError extends Error {
  static override name = 'ChainUnsupportedError'
  override name = 'ChainUnsupportedError'
}

/** The backend could not be reached or answered garbage */
export class ChainUnavailableError extends Error {
  static override name = 'ChainUnavailableError'
  override name = 'ChainUnavailableError'
}

/**
 * What decloud needs from a bitcoin node or indexer. Implementations: the
 * embedded bcoin regtest chain, a bitcoind-compatible JSON-RPC client, an
 * Esplora REST client. Every call has a bounded wait and throws
 * `ChainUnavailableError` when the backend does not answer in time.
 */
export interface ChainBackend {
  readonly chain: ChainName
  /** address encoding this backend's chain uses */
  readonly network: AddressNetwork
  /** a short description for logs and `decloud node` output */
  readonly description: string
  /** height of the best block */
  height(): Promise<number>
  /** balances and age of these addresses (one entry each, same order) */
  addresses(addresses: string[]): Promise<AddressState[]>
  /** unspent outputs of these addresses, confirmed and unconfirmed */
  utxos(addresses: string[]): Promise<Utxo[]>
  /** transactions touching an address, newest first (may throw ChainUnsupportedError) */
  history(address: string, limit?: number): Promise<AddressTx[]>
  /**
   * Accepts a raw transaction into the mempool and relays it; returns its
   * txid. Throws `TxRejectedError` (kind `double-spend`, `invalid`, …); a
   * transaction already in the mempool or chain is `already-known`.
   */
  broadcast(raw: Uint8Array): Promise<string>
  /** status of a transaction, undefined when the backend does not know it */
  transaction(txid: string): Promise<TxStatus | undefined>
  /** fee rate for confirmation within a few blocks, sat/vB, at least 1 */
  feeRate(): Promise<bigint>
  close(): Promise<void>
}

/** A backend that can make blocks (regtest) */
export interface MiningBackend extends ChainBackend {
  /** mines n blocks paying their reward to address; returns the new height */
  mine(n: number, address: string): Promise<number>
}

export function canMine (b: ChainBackend): b is MiningBackend {
  return typeof (b as Partial<MiningBackend>).mine === 'function'
}

/** A transaction the wallet built and signed, not yet broadcast */
export interface SignedPayment {
  txid: string
  raw: Uint8Array
  /** sats paid to the recipients */
  amount: bigint
  fee: bigint
}

export interface WalletBalance {
  confirmed: bigint
  unconfirmed: bigint
}

/**
 * A BIP84 (P2WPKH) wallet. `ChainBackend` tells it which coins it holds;
 * its keys never leave it. Implemented by `Wallet` in `wallet.ts`.
 */
export interface PaymentWallet {
  readonly chain: ChainName
  readonly network: AddressNetwork
  /** the address of the wallet's `btc:` identity credential (never handed out for payments) */
  readonly identityAddress: string
  /** signs requests as the identity address (`btc:<identityAddress>`) */
  identitySigner(): Signer
  /**
   * The receive address for one counterparty (e.g. a paying peer's id): a
   * fresh address the first time, the same one afterwards, so every
   * payment can be told apart by who it came from.
   */
  addressFor(label: string): Promise<string>
  /** a new receive address, never handed out before */
  newAddress(): Promise<string>
  /** true when the address belongs to this wallet (receive or change) */
  isMine(address: string): boolean
  balance(): Promise<WalletBalance>
  /**
   * Builds and signs a transaction paying `amount` to `address` (coin
   * selection, fee from the backend, change to a new change address). Its
   * inputs are reserved until `release(txid)` or until the backend shows the
   * transaction, so two payments never spend the same coin. Throws
   * `InsufficientFundsError` when the wallet cannot pay amount + fee.
   */
  createPayment(address: string, amount: bigint, options?: { feeRate?: bigint }): Promise<SignedPayment>
  /** gives back the inputs of a payment that was not broadcast */
  release(txid: string): Promise<void>
  /** createPayment + broadcast through the backend */
  send(address: string, amount: bigint, options?: { feeRate?: bigint }): Promise<SignedPayment>
  /** the wallet's transactions, newest first */
  history(limit?: number): Promise<AddressTx[]>
}

/** Where the coins of a wallet that cannot pay are */
export interface FundsBreakdown {
  /** free confirmed coins */
  confirmed: bigint
  /** free unconfirmed coins (incoming, or change of our own payments in the mempool) */
  unconfirmed: bigint
  /** coins held by payments built but not yet seen by the chain */
  inFlight: bigint
  /** how many such payments */
  inFlightPayments: number
}

export class InsufficientFundsError extends Error {
  static override name = 'InsufficientFundsError'
  override name = 'InsufficientFundsError'
  /** coins held by payments built but not yet seen by the chain (their change comes back once they are) */
  readonly inFlight: bigint
  constructor (readonly needed: bigint, readonly available: bigint, readonly breakdown?: FundsBreakdown) {
    super(`insufficient funds: need ${needed} sat (fee included), have ${available} sat spendable` + (breakdown != null
      ? ` (${breakdown.confirmed} confirmed, ${breakdown.unconfirmed} unconfirmed)` +
        (breakdown.inFlight > 0n ? `; ${breakdown.inFlight} sat more are reserved by ${breakdown.inFlightPayments} payment${breakdown.inFlightPayments === 1 ? '' : 's'} the chain has not seen yet` : '')
      : ''))
    this.inFlight = breakdown?.inFlight ?? 0n
  }
}
