/**
 * libp2p protocol id of OpenCloud. Only this version is served: 1.0.0
 * requests name no audience, so a signed 1.0.0 request could be relayed to
 * another server (docs/protocol.md "Versions")
 */
export const PROTOCOL = '/opencloud/1.1.0'

/** Domain separation prefixes for signatures (docs/protocol.md, "Signatures") */
export const REQUEST_DOMAIN = 'opencloud/1.1.0 request'
export const RESPONSE_DOMAIN = 'opencloud/1.1.0 response'

/** Largest body a request or response may carry: 4 MiB */
export const MAX_BODY_SIZE = 4 * 1024 * 1024
/** Room for everything in a frame that is not the body */
export const FRAME_OVERHEAD = 64 * 1024
/** Largest frame (length-prefixed protobuf message) accepted */
export const MAX_FRAME_SIZE = MAX_BODY_SIZE + FRAME_OVERHEAD

/** Time allowed to receive one whole message, or to process one request */
export const MESSAGE_TIMEOUT = 30_000
/** A stream with no request for this long is closed by the server */
export const IDLE_TIMEOUT = 60_000

export const MAX_INBOUND_STREAMS = 256
export const MAX_OUTBOUND_STREAMS = 256
/** Client side: streams kept open to one peer for concurrent calls */
export const MAX_STREAMS_PER_PEER = 8

/** Nonces */
export const NONCE_LENGTH = 16
export const NONCE_TTL = 5 * 60_000
/** Outstanding nonces kept per peer; the oldest is forgotten first */
export const MAX_NONCES_PER_PEER = 64
/** Peers for which nonces are kept at once */
export const MAX_NONCE_PEERS = 10_000

/** Decoder limits on repeated fields */
export const MAX_CREDENTIALS = 8
/**
 * `btc:` credentials per request: their signatures cost 1–15 ms each to
 * verify (BIP-322/BIP-137, against ~0.2 ms for an `oc:` one), and they are
 * verified before the rate limits apply, so a request may not bring many
 */
export const MAX_BTC_CREDENTIALS = 2
export const MAX_ARGS = 32
export const MAX_ARG_LENGTH = 1024
export const MAX_NAME_LENGTH = 64
/** Longest credential string (an `oc:` id is about 55 characters) */
export const MAX_CREDENTIAL_LENGTH = 256
/** Longest signature (Ed25519: 64 bytes; BIP-322 witnesses are a few hundred) */
export const MAX_SIGNATURE_LENGTH = 1024
/** Longest payment currency, defer id or defer threshold */
export const MAX_PAYMENT_FIELD_LENGTH = 256

/** How often the client retries after refresh-nonce */
export const MAX_NONCE_RETRIES = 2
