import '../../../util/uint64.js'
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { Request, Response } from '../pb/opencloud.js'
import { REQUEST_DOMAIN, RESPONSE_DOMAIN } from './constants.js'
import type { PrivateKey, PeerId, PublicKey } from '@libp2p/interface'
import type { KeyObject } from 'node:crypto'

/** Credential prefix of an OpenCloud ID */
export const OPENCLOUD_ID_PREFIX = 'oc:'

/** SHA-256 (node:crypto: the hot path hashes whole bodies) */
export function sha256 (data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest()
}

function digest (domain: string, encoded: Uint8Array): Uint8Array {
  return createHash('sha256').update(domain).update(new Uint8Array([0])).update(encoded).digest()
}

/**
 * The 32 bytes every request signature covers: SHA-256 of the domain string,
 * a zero byte, and the protobuf encoding of the request with `sig` empty and
 * `body` replaced by SHA-256(body). Hashing the body separately lets a signer
 * stream it and keeps the re-encoding small.
 */
export function requestDigest (req: Request, bodyHash: Uint8Array = sha256(req.body)): Uint8Array {
  return digest(REQUEST_DOMAIN, Request.encode({ ...req, sig: [], body: bodyHash as Uint8Array<ArrayBuffer> }))
}

/** The same for responses, with the response domain string */
export function responseDigest (res: Response, bodyHash: Uint8Array = sha256(res.body)): Uint8Array {
  return digest(RESPONSE_DOMAIN, Response.encode({ ...res, sig: [], body: bodyHash as Uint8Array<ArrayBuffer> }))
}

/** Something that holds the key of one credential and can sign a digest with it */
export interface Signer {
  /** The credential string, e.g. `oc:12D3Koo…` or `btc:bc1q…` */
  readonly credential: string
  sign(digest: Uint8Array): Promise<Uint8Array>
}

/** Checks signatures of one kind of credential */
export interface CredentialVerifier {
  /** Credential prefix this verifier handles, e.g. `oc:` */
  readonly prefix: string
  /** Resolves true only when `sig` is a valid signature of `digest` by `credential` */
  verify(credential: string, digest: Uint8Array, sig: Uint8Array): Promise<boolean>
}

/** The OpenCloud ID of a peer: its libp2p peer id (Ed25519 by default) */
export function openCloudId (peerId: PeerId | string): string {
  return `${OPENCLOUD_ID_PREFIX}${peerId.toString()}`
}

const b64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url')

/**
 * Ed25519 signing and verification through a cached node KeyObject. libp2p's
 * keys build a KeyObject from JWK on every call, which costs more than the
 * signature itself; the signatures are the same bytes (RFC 8032, node:crypto
 * in both cases).
 */
function ed25519PrivateKeyObject (key: PrivateKey): KeyObject | undefined {
  if (key.type !== 'Ed25519' || key.raw.byteLength !== 64) { return undefined }
  return createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: b64url(key.raw.subarray(0, 32)), x: b64url(key.raw.subarray(32)) } })
}

function ed25519PublicKeyObject (key: PublicKey): KeyObject | undefined {
  if (key.type !== 'Ed25519' || key.raw.byteLength !== 32) { return undefined }
  return createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: b64url(key.raw) } })
}

/** A signer for the OpenCloud ID of a libp2p private key */
export function openCloudSigner (key: PrivateKey, peerId: PeerId): Signer {
  let keyObject: KeyObject | undefined
  try {
    keyObject = ed25519PrivateKeyObject(key)
  } catch {
    keyObject = undefined
  }
  return {
    credential: openCloudId(peerId),
    async sign (d) {
      if (keyObject != null) { return nodeSign(null, d, keyObject) }
      return key.sign(d)
    }
  }
}

/** Parses an OpenCloud ID credential to the public key it names, or undefined */
export function openCloudPublicKey (credential: string): PublicKey | undefined {
  if (!credential.startsWith(OPENCLOUD_ID_PREFIX)) { return undefined }
  try {
    const peerId = peerIdFromString(credential.slice(OPENCLOUD_ID_PREFIX.length))
    if (peerId.publicKey != null) { return peerId.publicKey }
    return undefined
  } catch {
    return undefined
  }
}

interface CachedKey {
  key: PublicKey
  keyObject?: KeyObject
}

/** Parsed credentials, oldest first; bounded so a flood of made-up ids only evicts */
const KEY_CACHE_SIZE = 4096
const keyCache = new Map<string, CachedKey>()

function cachedKey (credential: string): CachedKey | undefined {
  const hit = keyCache.get(credential)
  if (hit != null) { return hit }
  const key = openCloudPublicKey(credential)
  if (key == null) { return undefined }
  let keyObject: KeyObject | undefined
  try {
    keyObject = ed25519PublicKeyObject(key)
  } catch {
    keyObject = undefined
  }
  const entry = { key, keyObject }
  keyCache.set(credential, entry)
  if (keyCache.size > KEY_CACHE_SIZE) { keyCache.delete(keyCache.keys().next().value as string) }
  return entry
}

/** Verifies OpenCloud ID signatures (keys embedded in the peer id: Ed25519, secp256k1) */
export const openCloudVerifier: CredentialVerifier = {
  prefix: OPENCLOUD_ID_PREFIX,
  async verify (credential, d, sig) {
    const entry = cachedKey(credential)
    if (entry == null) { return false }
    try {
      if (entry.keyObject != null) { return sig.byteLength === 64 && nodeVerify(null, d, entry.keyObject, sig) }
      return await entry.key.verify(d, sig)
    } catch {
      return false
    }
  }
}

export { publicKeyFromProtobuf }

/**
 * Verifies that `ids[i]` signed `d` with `sigs[i]` for every i. Returns the
 * index of the first failing credential, or -1 when all verify.
 */
export async function verifyAll (verifiers: readonly CredentialVerifier[], ids: string[], sigs: Uint8Array[], d: Uint8Array): Promise<number> {
  if (ids.length !== sigs.length) { return Math.min(ids.length, sigs.length) }
  for (let i = 0; i < ids.length; i++) {
    const v = verifiers.find(v => ids[i].startsWith(v.prefix))
    if (v == null || !(await v.verify(ids[i], d, sigs[i]))) { return i }
  }
  return -1
}
