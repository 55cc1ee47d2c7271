/**
 * Keys and authenticated encryption of file segments (docs/files.md "Keys").
 *
 * One secret, the wallet's BIP39 seed, is the root of every file key, so the
 * seed words alone give access again after a restore:
 * filesRoot = HKDF-SHA256(ikm = BIP39 seed, salt = "decloud/files/v1", info = "root");
 * fileKey = HKDF-SHA256(ikm = filesRoot, salt = the file's random 32-byte salt, info = "file-key").
 * The salt is kept in the manifest (it is not secret). Segments are sealed with
 * AES-256-GCM (node:crypto, hardware accelerated): the nonce is the segment's
 * index (a key seals one file only, so a nonce never repeats under a key) and
 * the additional data binds the segment to its file and index, so segments
 * cannot be swapped between files or positions without failing the tag.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

export const KEY_BYTES = 32
export const SALT_BYTES = 32
export const TAG_BYTES = 16
const enc = new TextEncoder()

/** A segment failed authentication: wrong key (seed), or bytes changed */
export class DecryptionFailedError extends Error {
  static override name = 'DecryptionFailedError'
  override name = 'DecryptionFailedError'
}

function hkdf (ikm: Uint8Array, salt: Uint8Array, info: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', ikm, salt, enc.encode(info), KEY_BYTES))
}

/** The root of every file key, from the wallet's seed (the 64 bytes BIP39 makes of the words) */
export function filesRootKey (seed: Uint8Array): Uint8Array {
  if (seed.byteLength < 16) { throw new RangeError('the seed must be at least 16 bytes') }
  return hkdf(seed, enc.encode('decloud/files/v1'), 'root')
}

/** The key of one file */
export function fileKey (root: Uint8Array, salt: Uint8Array): Uint8Array {
  if (salt.byteLength !== SALT_BYTES) { throw new RangeError(`a file salt is ${SALT_BYTES} bytes`) }
  return hkdf(root, salt, 'file-key')
}

export function newSalt (): Uint8Array {
  return new Uint8Array(randomBytes(SALT_BYTES))
}

function nonce (index: number): Buffer {
  const iv = Buffer.alloc(12)
  iv.writeUInt32BE(index >>> 0, 8)
  iv.writeUInt32BE(Math.floor(index / 2 ** 32), 4)
  return iv
}

function aad (salt: Uint8Array, index: number): Buffer {
  const a = Buffer.alloc(SALT_BYTES + 8)
  a.set(salt, 0)
  a.writeBigUInt64BE(BigInt(index), SALT_BYTES)
  return a
}

/**
 * Seals segment `index` into `out` (plain.length + TAG_BYTES bytes), so the
 * erasure coder can work on the buffer in place
 */
export function sealSegment (key: Uint8Array, salt: Uint8Array, index: number, plain: Uint8Array, out: Uint8Array): void {
  const c = createCipheriv('aes-256-gcm', key, nonce(index))
  c.setAAD(aad(salt, index))
  let at = 0
  const a = c.update(plain)
  out.set(a, at)
  at += a.byteLength
  const b = c.final()
  out.set(b, at)
  at += b.byteLength
  out.set(c.getAuthTag(), at)
}

/** Opens a sealed segment; DecryptionFailedError when the key is wrong or a byte changed */
export function openSegment (key: Uint8Array, salt: Uint8Array, index: number, sealed: Uint8Array): Uint8Array {
  if (sealed.byteLength < TAG_BYTES) { throw new DecryptionFailedError(`segment ${index} is shorter than its tag`) }
  const d = createDecipheriv('aes-256-gcm', key, nonce(index))
  d.setAAD(aad(salt, index))
  d.setAuthTag(sealed.subarray(sealed.byteLength - TAG_BYTES))
  const body = d.update(sealed.subarray(0, sealed.byteLength - TAG_BYTES))
  try {
    const tail = d.final()
    return tail.byteLength === 0 ? body : Buffer.concat([body, tail])
  } catch {
    throw new DecryptionFailedError(`segment ${index} failed authentication: wrong seed, or its bytes were changed`)
  }
}
