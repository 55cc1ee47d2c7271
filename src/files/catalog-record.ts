/**
 * The DHT record that points at a user's file catalog (docs/files.md#restore):
 * key `/decloud-files/<hex Ed25519 public key>`, the key pair derived from the
 * wallet seed, so the seed words alone find it again. Value:
 * `DCF1` ‖ seq (u64 BE) ‖ Ed25519 signature (64 bytes) ‖ payload, the
 * signature over `decloud files catalog v1\n` ‖ key ‖ seq ‖ payload. The
 * payload is encrypted (only the seed's owner reads it); every DHT node checks
 * the signature (`validateCatalogRecord`) and keeps the highest seq
 * (`selectCatalogRecord`), so nobody but the seed's owner can replace it.
 */
import { publicKeyFromRaw } from '@libp2p/crypto/keys'
import { InvalidParametersError } from '@libp2p/interface'
import type { PrivateKey } from '@libp2p/interface'

export const CATALOG_NAMESPACE = 'decloud-files'
const MAGIC = 'DCF1'
const HEAD = 4 + 8 + 64
/** Largest payload a record carries: a pointer to the catalog's pieces, not the catalog */
export const MAX_CATALOG_PAYLOAD = 16 * 1024
const enc = new TextEncoder()
const dec = new TextDecoder()
const DOMAIN = enc.encode('decloud files catalog v1\n')

export function catalogRecordKey (publicKey: Uint8Array): Uint8Array {
  return enc.encode(`/${CATALOG_NAMESPACE}/${Buffer.from(publicKey).toString('hex')}`)
}

function signed (key: Uint8Array, seq: bigint, payload: Uint8Array): Uint8Array {
  const s = Buffer.alloc(8)
  s.writeBigUInt64BE(seq)
  return Buffer.concat([DOMAIN, key, s, payload])
}

export async function encodeCatalogRecord (signer: PrivateKey, seq: bigint, payload: Uint8Array): Promise<{ key: Uint8Array, value: Uint8Array }> {
  if (payload.byteLength > MAX_CATALOG_PAYLOAD) { throw new RangeError(`a catalog record carries at most ${MAX_CATALOG_PAYLOAD} bytes`) }
  const key = catalogRecordKey(signer.publicKey.raw)
  const sig = await signer.sign(signed(key, seq, payload))
  const head = Buffer.alloc(12)
  head.write(MAGIC, 0, 'latin1')
  head.writeBigUInt64BE(seq, 4)
  return { key, value: Buffer.concat([head, sig, payload]) }
}

export interface CatalogRecord {
  seq: bigint
  payload: Uint8Array
}

/** The record's parts, unchecked; undefined when it is not one */
export function parseCatalogRecord (value: Uint8Array): (CatalogRecord & { sig: Uint8Array }) | undefined {
  if (value.byteLength < HEAD || value.byteLength > HEAD + MAX_CATALOG_PAYLOAD) { return undefined }
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (b.toString('latin1', 0, 4) !== MAGIC) { return undefined }
  return { seq: b.readBigUInt64BE(4), sig: value.subarray(12, HEAD), payload: value.subarray(HEAD) }
}

/** The DHT validator of `/decloud-files/…` records: throws unless the key's owner signed it */
export async function validateCatalogRecord (key: Uint8Array, value: Uint8Array): Promise<void> {
  const m = /^\/decloud-files\/([0-9a-f]{64})$/.exec(dec.decode(key))
  if (m == null) { throw new InvalidParametersError('not a decloud-files record key') }
  const r = parseCatalogRecord(value)
  if (r == null) { throw new InvalidParametersError('not a decloud-files record') }
  let ok = false
  try {
    ok = await publicKeyFromRaw(Buffer.from(m[1], 'hex')).verify(signed(key, r.seq, r.payload), r.sig)
  } catch {
    ok = false
  }
  if (!ok) { throw new InvalidParametersError('decloud-files record: bad signature') }
}

/** The DHT selector: the record with the highest seq */
export function selectCatalogRecord (_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0
  let bestSeq = -1n
  records.forEach((v, i) => {
    const seq = parseCatalogRecord(v)?.seq ?? -1n
    if (seq > bestSeq) {
      best = i
      bestSeq = seq
    }
  })
  return best
}
