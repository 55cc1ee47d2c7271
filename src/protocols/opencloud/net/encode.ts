/**
 * Encoding of requests and responses for the wire without copying a large
 * body. protons writes a message into one new buffer, so a 4 MiB body would
 * be allocated and copied once more on each side of every bulk call. Here a
 * message whose body is large is written as three small protobuf pieces
 * around the caller's own body buffer: the fields before `body`, the body's
 * tag and length, the fields after it. Their concatenation is byte for byte
 * the canonical encoding (fields in field-number order, docs/protocol.md §3),
 * and the framing layer sends the pieces as one frame without joining them.
 */
import { Uint8ArrayList } from 'uint8arraylist'
import { PaymentType, Reason, Request, Response, Status } from '../pb/opencloud.js'
import { encodeVarint } from './framing.js'

/** Bodies at least this large are sent without a copy; a smaller one is cheaper to copy than to split around */
export const SPLIT_BODY_SIZE = 16 * 1024

/** protons types bytes fields as Uint8Array<ArrayBuffer> */
type Bytes = Uint8Array<ArrayBuffer>

const EMPTY = new Uint8Array(0) as Bytes
/** tag of `Request.body` (field 9, length-delimited) */
const REQUEST_BODY_TAG = (9 << 3) | 2
/** tag of `Response.body` (field 6, length-delimited) */
const RESPONSE_BODY_TAG = (6 << 3) | 2

/** `head`, then field `tag` holding `body` (the buffer itself), then `tail` */
function around (head: Uint8Array, tag: number, body: Uint8Array, tail: Uint8Array): Uint8ArrayList {
  const list = new Uint8ArrayList(head, encodeVarint(tag), encodeVarint(body.byteLength), body)
  if (tail.byteLength > 0) { list.append(tail) }
  return list
}

/**
 * The canonical encoding of `request`: one buffer when the body is small,
 * otherwise pieces that reference the body rather than copy it
 */
export function encodeRequest (request: Request): Uint8Array | Uint8ArrayList {
  if (request.body.byteLength < SPLIT_BODY_SIZE) { return Request.encode(request) }
  // fields 1–8, then body (9), then audience (10) and sign_response (11)
  const head = Request.encode({ ...request, body: EMPTY, audience: '', signResponse: false })
  const tail = Request.encode({ id: [], sig: [], nonce: EMPTY, service: '', method: '', args: [], paymentType: PaymentType.PAYMENT_NONE, body: EMPTY, audience: request.audience, signResponse: request.signResponse })
  return around(head, REQUEST_BODY_TAG, request.body, tail)
}

/** The same for a response (body is field 6) */
export function encodeResponse (response: Response): Uint8Array | Uint8ArrayList {
  if (response.body.byteLength < SPLIT_BODY_SIZE) { return Response.encode(response) }
  // fields 1–5, then body (6), then next_nonce … audience (7–11)
  const head = Response.encode({ ...response, body: EMPTY, nextNonce: EMPTY, acceptablePayment: undefined, requestDigest: EMPTY, reason: Reason.REASON_UNSPECIFIED, audience: '' })
  const tail = Response.encode({
    id: [],
    sig: [],
    nonce: EMPTY,
    status: Status.OK,
    detail: '',
    body: EMPTY,
    nextNonce: response.nextNonce,
    acceptablePayment: response.acceptablePayment,
    requestDigest: response.requestDigest,
    reason: response.reason,
    audience: response.audience
  })
  return around(head, RESPONSE_BODY_TAG, response.body, tail)
}
