/**
 * Shapes exchanged on the local control API (docs/control-api.md), shared by
 * the server, the client and `decloud call --json`.
 */
import { statusCode } from '../protocols/opencloud/api/status.js'
import type { AddressState, AddressTx, ChainBackend, SignedPayment, WalletBalance } from '../payments/types.js'
import type { CallResult } from '../protocols/opencloud/net/client.js'

/** Prefix of every endpoint */
export const API_PREFIX = '/v1'

/** One OpenCloud response, as `POST /v1/call` and `decloud call --json` print it */
export interface CallJson {
  /** the spec's status path, e.g. `ok` or `client-error/service-unsupported` */
  status: string
  /** the status's numeric code on the wire (0 = ok) */
  code: number
  /** the server's human readable detail ('' when none) */
  detail: string
  /** the response body, base64 */
  body: string
  /** the response body, hex, when it is at most 64 bytes (digests, ids) */
  bodyHex?: string
  /** present on payment-declined: what the server would accept (amount in satoshis, decimal) */
  acceptablePayment?: {
    paymentType: string
    currency: string
    amount: string
  }
  /** the OpenCloud ID that signed the response */
  signer: string
  /** the peer id the response came from */
  peer: string
  /** present when the call was paid through the node's wallet */
  payment?: PaymentJson
  /** with `cheapest`: the seller called, and its price for the call (sat) when it announced one */
  seller?: { peerId: string, addresses: string[], price?: string }
  /** with `cheapest`: the sellers tried before it, with why they did not answer */
  skipped?: Array<{ peerId: string, error: string }>
}

/** `POST /v1/call` request body */
export interface CallRequestJson {
  /**
   * a multiaddr (`/ip4/…/tcp/…/p2p/…`) or a peer id the node already knows
   * addresses for; the node itself is called from a throw-away identity, as a
   * stranger would call it. None with `cheapest`.
   */
  target?: string
  /**
   * call the cheapest seller of `service` that answers instead of a target:
   * the node ranks the sellers (price book and DHT) by the price of this call
   * and tries them in order, each within `timeout`
   */
  cheapest?: boolean
  /** with `cheapest`: units of service to rank by @default the body's length when there is a body */
  units?: string
  /** with `cheapest`: deadline of the seller lookup (ms, at most 120000) @default 10000 */
  lookupTimeout?: number
  service: string
  method: string
  args?: string[]
  /** request body, base64 */
  body?: string
  /** milliseconds for the whole call, dial included (with `cheapest`: per seller tried) @default 30000 */
  timeout?: number
  /**
   * pay for the call with the node's wallet: `attached:SATS`,
   * `defer:SATS[:THRESHOLD]` or `auto`; needs `max`
   */
  pay?: string
  /** the most to pay or promise, sats (decimal string) */
  max?: string
}

/** How a paid call was paid (`POST /v1/call` with `pay`) */
export interface PaymentJson {
  kind: 'none' | 'attached' | 'defer'
  /** sats sent in an attached transaction (decimal) */
  paid: string
  /** sats promised under deferId (decimal) */
  promised: string
  txid?: string
  deferId?: string
  /** what the attached payment cost (decimal sats): the bid, the dust minimum, paid to the seller, fee, total */
  cost?: { price: string, dustMinimum: string, amount: string, fee: string, total: string }
  attempts: Array<{ kind: string, amount: string, status: string }>
}

/** Every error answer of the control API */
export interface ErrorJson {
  error: {
    /** `unauthorized`, `bad-request`, `not-found`, `method-not-allowed`, `too-large`, `busy`, `transport`, `timeout`, `internal` */
    type: string
    message: string
  }
}

/** Largest body the hex rendering is given for */
export const BODY_HEX_LIMIT = 64

/** The JSON form of a call result */
export function callResultJson (res: CallResult): CallJson {
  const body = Buffer.from(res.body.buffer, res.body.byteOffset, res.body.byteLength)
  const out: CallJson = {
    status: res.path,
    code: statusCode(res.status),
    detail: res.detail,
    body: body.toString('base64'),
    ...(res.body.byteLength <= BODY_HEX_LIMIT ? { bodyHex: body.toString('hex') } : {}),
    signer: res.signer,
    peer: res.peer.toString()
  }
  if (res.acceptablePayment != null) {
    out.acceptablePayment = {
      paymentType: String(res.acceptablePayment.paymentType),
      currency: res.acceptablePayment.currency,
      amount: res.acceptablePayment.amount.toString()
    }
  }
  return out
}

/** `GET /v1/wallet` and `decloud wallet balance --json`: sats as decimal strings */
export interface WalletJson {
  chain: string
  backend: string
  height: number
  identityAddress: string
  balance: { confirmed: string, unconfirmed: string }
  identity: { confirmed: string, unconfirmed: string, heldSince?: number }
}

/** One transaction of `GET /v1/wallet/history`: `delta` in sats, negative for spends */
export interface WalletTxJson {
  txid: string
  height?: number
  /** blocks since it was mined, 0 while unconfirmed */
  confirmations?: number
  delta: string
}

/** The answer of `POST /v1/wallet/send` */
export interface SentJson {
  txid: string
  amount: string
  fee: string
}

/** The wallet's chain, balances and identity coins, as the API and `decloud wallet` print them */
export async function walletJson (
  wallet: { readonly identityAddress: string, balance(): Promise<WalletBalance>, identityState(): Promise<AddressState> },
  backend: Pick<ChainBackend, 'chain' | 'description' | 'height'>
): Promise<WalletJson> {
  const [balance, identity, height] = await Promise.all([wallet.balance(), wallet.identityState(), backend.height()])
  return {
    chain: backend.chain,
    backend: backend.description,
    height,
    identityAddress: wallet.identityAddress,
    balance: { confirmed: balance.confirmed.toString(), unconfirmed: balance.unconfirmed.toString() },
    identity: {
      confirmed: identity.confirmed.toString(),
      unconfirmed: identity.unconfirmed.toString(),
      ...(identity.heldSince != null ? { heldSince: identity.heldSince } : {})
    }
  }
}

export function walletTxJson (t: AddressTx): WalletTxJson {
  return { txid: t.txid, ...(t.height != null ? { height: t.height } : {}), ...(t.confirmations != null ? { confirmations: t.confirmations } : {}), delta: t.delta.toString() }
}

export function sentJson (s: SignedPayment): SentJson {
  return { txid: s.txid, amount: s.amount.toString(), fee: s.fee.toString() }
}
