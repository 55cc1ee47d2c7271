/**
 * Calls over a limited connection: a circuit relay v2 connection carries a
 * bounded number of bytes for a bounded time (the relay operator's limits).
 * Small calls go through; one whose request alone would exceed the limit is
 * refused before a byte is sent, with a message that says why, instead of
 * a stream reset half-way through the upload.
 */
import type { Connection } from '@libp2p/interface'

/** What a request costs on the wire besides its body (frame, header, signatures, credentials) */
export const REQUEST_OVERHEAD = 8192

/** Only a limited (relayed) connection to the peer is open and the call does not fit in its limits */
export class LimitedConnectionError extends Error {
  override name = 'LimitedConnectionError'
}

/** Throws LimitedConnectionError when `connection` is limited and a request of `bodyBytes` cannot fit */
export function checkLimits (connection: Connection, bodyBytes: number): void {
  const bytes = connection.limits?.bytes
  if (bytes == null || BigInt(bodyBytes + REQUEST_OVERHEAD) <= bytes) { return }
  const seconds = connection.limits?.seconds
  throw new LimitedConnectionError(`only a limited relayed connection to ${connection.remotePeer.toString()} is open (the relay carries at most ${bytes} bytes${seconds != null ? ` for ${seconds} s` : ''}): a request of ${bodyBytes} bytes needs a direct connection, which hole punching could not open (yet); retry later or use a seller that is directly reachable`)
}
