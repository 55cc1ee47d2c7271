/**
 * What a call takes and what it answers: the types of `OpenCloud.call()`
 * (docs/protocol.md)
 */
import type { Signer } from '../api/signing.js'
import type { AcceptablePayment, Payment, PaymentType, Reason, Response, Status } from '../pb/opencloud.js'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Where to send a call: a peer id (dialled through the peer store) or a multiaddr */
export type CallTarget = PeerId | Multiaddr | string

/** One call to a remote service, as `OpenCloud.call()` and `callOk()` take it */
export interface CallRequest {
  /** the service's name, e.g. `sha256` */
  service: string
  /** the method's name, e.g. `hash`, or a template method: `info`, `methods`, `quote` */
  method: string
  /** string arguments (at most `MAX_ARGS`, each at most `MAX_ARG_LENGTH` bytes) */
  args?: string[]
  /** the request body (at most the seller's body limit, 4 MiB by default) */
  body?: Uint8Array
  /**
   * SHA-256 of `body`, when the caller has it already (e.g. as the content
   * id of a piece): a signed request's digest uses it instead of hashing the
   * body again. A wrong hash only makes the signature fail to verify
   * (invalid-signature); it is never sent.
   */
  bodyHash?: Uint8Array
  /** how this call is paid, when it is (docs/payments.md); none by default */
  paymentType?: PaymentType
  /** the payment itself, for `paymentType` other than none */
  payment?: Payment
  /** more credentials for this call, after the node's own (e.g. a `btc:` address) */
  signers?: Signer[]
  /**
   * Sign the request even when the protocol does not require it (a payment,
   * a promise or another credential than the node's own always is): a signed
   * request is evidence a third party can check @default false
   */
  sign?: boolean
  /**
   * Ask the server to sign its response, to keep it as evidence (quotes,
   * responses to payments and receipts are signed anyway)
   *
   * @default the client's `verifyResponses`
   */
  signResponse?: boolean
}

/**
 * The answer to a call, whatever its status: `call()` resolves with it for
 * every status the server sends (and rejects only when there is no valid
 * answer: a dial, stream, timeout or signature failure)
 */
export interface CallResult {
  /** `status === Status.OK` */
  ok: boolean
  /** the status the server answered (docs/protocol.md "Statuses") */
  status: Status
  /** the spec's status path, e.g. `client-error/service-unsupported` */
  path: string
  /** the server's explanation of the status, may be empty: for people, never parsed */
  detail: string
  /** why the server refused, to branch on (docs/protocol.md "Reasons"); unspecified on ok */
  reason: Reason
  /** the response body (empty unless the method returned one) */
  body: Uint8Array
  /** with `request-declined/payment-declined/…`: what the seller would accept */
  acceptablePayment?: AcceptablePayment
  /** the server's OpenCloud ID (checked against the connection's peer) */
  signer: string
  /** the server signed the response (`response.sig`): check it with `verifyResponse()` before using it as evidence */
  signed: boolean
  peer: PeerId
  /** the whole signed response: evidence that can be shown to third parties */
  response: Response
}
