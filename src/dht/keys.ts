import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import type { KadDHT } from '@libp2p/kad-dht'

/**
 * The CID type the DHT takes. The package's `multiformats` (13) and the one
 * libp2p 3 bundles (14) differ only in typing (`Uint8Array<ArrayBuffer>`);
 * at run time the DHT reads `multihash.bytes`, which both provide.
 */
export type DhtKey = Parameters<KadDHT['provide']>[0]

/** multicodec `raw` */
const RAW = 0x55
/** multihash `sha2-256` */
const SHA2_256 = 0x12

/** The major version of a semver string (`'1.4.2'` → 1); throws on garbage */
export function majorVersion (version: string | number): number {
  if (typeof version === 'number') {
    if (!Number.isSafeInteger(version) || version < 0) { throw new TypeError(`invalid major version ${version}`) }
    return version
  }
  const m = /^v?(\d{1,9})(\.|$)/.exec(version)
  if (m == null) { throw new TypeError(`invalid service version "${version}"`) }
  return Number(m[1])
}

/** The text a service's DHT key is derived from: `decloud/service/<name>/<major>` */
export function serviceKeyText (name: string, version: string | number = 1): string {
  return `decloud/service/${name}/${majorVersion(version)}`
}

/**
 * The well-known DHT key under which sellers of a service advertise:
 * CIDv1(raw, sha2-256(`decloud/service/<name>/<major version>`)).
 * Every seller of the same major version of a service provides the same key,
 * so `findProviders(serviceKey('storage'))` finds them all.
 */
export function serviceKey (name: string, version: string | number = 1): DhtKey {
  const digest = createHash('sha256').update(serviceKeyText(name, version)).digest()
  return CID.createV1(RAW, createDigest(SHA2_256, new Uint8Array(digest))) as unknown as DhtKey
}

/** Appends /p2p/<peerId> unless the address already names a peer */
export function withPeer (addr: string, peerId: string): string {
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${peerId}`
}
