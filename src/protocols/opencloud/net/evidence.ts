/**
 * Checking a response kept as evidence (docs/protocol.md §4, "Which
 * responses are signed"): the client does not verify its server's signature
 * as the response arrives (the noise channel authenticates the server), so
 * whoever keeps or shows the response checks it here first
 */
import { openCloudId, openCloudVerifier, responseDigest, verifyAll } from '../api/signing.js'
import type { CallResult } from './call-types.js'
import type { CredentialVerifier } from '../api/signing.js'

/**
 * Checks the server's signatures on a call's response: true when every
 * credential in `response.id` signed it and the first one is the OpenCloud ID
 * of the peer that answered. Use it before keeping a response as evidence
 * (a quote, a receipt) or showing it to a third party.
 */
export async function verifyResponse (result: Pick<CallResult, 'response' | 'peer'>, verifiers: readonly CredentialVerifier[] = [openCloudVerifier]): Promise<boolean> {
  const { response, peer } = result
  // an unsigned response is no evidence (the channel authenticated it to its client only)
  if (response.id.length === 0 || response.sig.length === 0 || response.id[0] !== openCloudId(peer)) { return false }
  return (await verifyAll(verifiers, response.id, response.sig, responseDigest(response))) < 0
}
