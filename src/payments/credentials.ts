/**
 * Bitcoin-address credentials, `btc:<address>`: a request signed by the key
 * of a bitcoin address, so the server can ask the chain what the address
 * holds and for how long (see docs/identity.md).
 *
 * The signed message is the lowercase hex of the 32-byte request digest (64
 * ASCII characters). The wire `sig` carries the signature bytes. For P2WPKH
 * (and P2TR) it is a BIP-322 "simple" signature, i.e. the serialized witness
 * stack of the virtual `to_sign` transaction (what BIP-322 tools show in
 * base64). For legacy P2PKH it is a BIP-137 signature, 65 bytes (header byte,
 * r, s).
 *
 * P2WPKH, the wallet's own kind, is signed and verified here with
 * node:crypto and `@noble/curves`: bip322-js gives the same bytes but costs
 * 7 times as much to verify and 15 times as much to sign (see
 * docs/identity.md). bip322-js still verifies the rarer P2TR signatures,
 * and the tests check both implementations against each other and against
 * the BIP-322 test vectors.
 */
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto'
import { InvalidMessageError, NotFoundError } from '@libp2p/interface'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { ripemd160 } from '@noble/hashes/legacy.js'
import { Address, NETWORK } from '@scure/btc-signer'
import { Verifier as Bip322Verifier } from 'bip322-js'
import { OPENCLOUD_ID_PREFIX } from '../protocols/opencloud/api/signing.js'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { KeyedMutex } from '../util/locks.js'
import { Lru } from '../util/lru.js'
import type { AddressNetwork, AddressState, ChainBackend } from './types.js'
import type { Stage } from '../protocols/opencloud/api/call.js'
import type { CredentialVerifier, Signer } from '../protocols/opencloud/api/signing.js'
import type { BitcoinCredentialState } from '../protocols/opencloud/api/template.js'
import type { SubDb } from '../store/index.js'
import type { KeyObject } from 'node:crypto'

/** Credential prefix of a bitcoin address */
export const BTC_PREFIX = 'btc:'

/** Longest address accepted (bech32 addresses are at most 90 characters) */
const MAX_ADDRESS_LENGTH = 90

const TAG = 'BIP0322-signed-message'
const SIGHASH_ALL = 0x01

function sha256 (...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256')
  for (const p of parts) { h.update(p) }
  return h.digest()
}

const TAG_HASH = sha256(Buffer.from(TAG))

/** BIP-340 tagged hash of the message, as BIP-322 defines message_hash */
export function bip322MessageHash (message: Uint8Array): Buffer {
  return sha256(TAG_HASH, TAG_HASH, message)
}

/** The BIP-322 message of a request digest: its lowercase hex, as ASCII bytes */
export function digestMessage (digest: Uint8Array): Buffer {
  return Buffer.from(Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex'), 'ascii')
}

function hash160 (data: Uint8Array): Uint8Array {
  return ripemd160(sha256(data))
}

function u32le (n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}

/** txid (internal byte order) of BIP-322's virtual `to_spend` transaction */
function toSpendTxid (message: Uint8Array, scriptPubKey: Uint8Array): Buffer {
  const raw = Buffer.concat([
    u32le(0), // nVersion
    Buffer.from([1]), // one input
    Buffer.alloc(32), u32le(0xffffffff), // prevout 000…000:0xFFFFFFFF
    Buffer.from([0x22, 0x00, 0x20]), bip322MessageHash(message), // scriptSig: OP_0 PUSH32[message_hash]
    u32le(0), // nSequence
    Buffer.from([1]), // one output
    Buffer.alloc(8), // value 0
    Buffer.from([scriptPubKey.byteLength]), scriptPubKey,
    u32le(0) // nLockTime
  ])
  return sha256(sha256(raw))
}

/**
 * The first SHA-256 of the BIP-143 preimage of `to_sign` for a P2WPKH
 * address (its double SHA-256 is the sighash). `to_sign` spends output 0 of
 * `to_spend` (value 0, sequence 0) into one OP_RETURN output of value 0,
 * version 0, locktime 0, SIGHASH_ALL.
 */
function p2wpkhPreimageHash (message: Uint8Array, pubKeyHash: Uint8Array): Buffer {
  const scriptPubKey = Buffer.concat([Buffer.from([0x00, 0x14]), pubKeyHash])
  const outpoint = Buffer.concat([toSpendTxid(message, scriptPubKey), u32le(0)])
  const preimage = Buffer.concat([
    u32le(0), // nVersion
    sha256(sha256(outpoint)), // hashPrevouts
    sha256(sha256(u32le(0))), // hashSequence
    outpoint,
    Buffer.from([0x19, 0x76, 0xa9, 0x14]), pubKeyHash, Buffer.from([0x88, 0xac]), // scriptCode
    Buffer.alloc(8), // amount 0
    u32le(0), // nSequence
    sha256(sha256(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x6a]))), // hashOutputs: 0 sat to OP_RETURN
    u32le(0), // nLockTime
    u32le(SIGHASH_ALL)
  ])
  return sha256(preimage)
}

/** Decodes an address of this network; undefined for anything else, or a non-canonical spelling */
export function decodeAddress (address: string, network: AddressNetwork): ReturnType<ReturnType<typeof Address>['decode']> | undefined {
  if (typeof address !== 'string' || address.length > MAX_ADDRESS_LENGTH) { return undefined }
  try {
    const coder = Address(network)
    const decoded = coder.decode(address)
    // one spelling per address: bindings are keyed by the string, so an
    // upper-case bech32 variant must not count as a second address
    if (coder.encode(decoded) !== address) { return undefined }
    return decoded
  } catch {
    return undefined
  }
}

/**
 * A signer for the `btc:` credential of a P2WPKH address: BIP-322 simple
 * signatures of the request digest with the address's key.
 */
export function btcSigner (privateKey: Uint8Array, address: string, network: AddressNetwork): Signer {
  const decoded = decodeAddress(address, network)
  if (decoded?.type !== 'wpkh') { throw new TypeError(`${address} is not a P2WPKH address of this network`) }
  const publicKey = secp256k1.getPublicKey(privateKey, true)
  const pubKeyHash = hash160(publicKey)
  if (!Buffer.from(pubKeyHash).equals(Buffer.from(decoded.hash))) { throw new TypeError(`the key does not belong to ${address}`) }
  const key = Uint8Array.from(privateKey)
  return {
    credential: `${BTC_PREFIX}${address}`,
    async sign (digest) {
      return signP2wpkhMessage(key, digestMessage(digest), publicKey)
    }
  }
}

/**
 * A BIP-322 simple signature of `message` by the P2WPKH address of
 * `privateKey`: the serialized witness [DER signature ‖ SIGHASH_ALL,
 * compressed public key] of `to_sign`.
 */
export function signP2wpkhMessage (privateKey: Uint8Array, message: Uint8Array, publicKey: Uint8Array = secp256k1.getPublicKey(privateKey, true)): Uint8Array {
  const sighash = sha256(p2wpkhPreimageHash(message, hash160(publicKey)))
  const der = secp256k1.sign(sighash, privateKey, { prehash: false, lowS: true, format: 'der' })
  return Uint8Array.from([2, der.byteLength + 1, ...der, SIGHASH_ALL, publicKey.byteLength, ...publicKey])
}

// secp256k1 public keys as node KeyObjects: OpenSSL verifies several times
// faster than JavaScript. SubjectPublicKeyInfo of a compressed point.
const SPKI_PREFIX = Buffer.from('3036301006072a8648ce3d020106052b8104000a032200', 'hex')
const KEY_CACHE_SIZE = 4096
const keyCache = new Lru<KeyObject>(KEY_CACHE_SIZE)
const NODE_SECP256K1 = (() => {
  try {
    createPublicKey({ key: Buffer.concat([SPKI_PREFIX, secp256k1.getPublicKey(new Uint8Array(32).fill(1), true)]), format: 'der', type: 'spki' })
    return true
  } catch {
    return false
  }
})()

function keyObject (publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey).toString('hex')
  let k = keyCache.get(id)
  if (k == null) {
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    keyCache.set(id, k)
  }
  return k
}

/** Checks a strict-DER, low-S ECDSA signature of `hash1` (whose SHA-256 is the signed hash) */
function ecdsaVerify (der: Uint8Array, hash1: Uint8Array, publicKey: Uint8Array): boolean {
  // strict DER (BIP-66) and low S (BIP-146), as standard scripts require
  const sig = secp256k1.Signature.fromBytes(der, 'der')
  if (sig.hasHighS() || !Buffer.from(sig.toBytes('der')).equals(Buffer.from(der))) { return false }
  if (NODE_SECP256K1) { return nodeVerify('sha256', hash1, keyObject(publicKey), der) }
  return secp256k1.verify(der, sha256(hash1), publicKey, { prehash: false, lowS: true, format: 'der' })
}

/** BIP-322 simple, P2WPKH: the witness must be exactly [DER sig ‖ SIGHASH_ALL, compressed key] */
function verifyP2wpkh (pubKeyHash: Uint8Array, message: Uint8Array, witness: Uint8Array): boolean {
  if (witness.byteLength < 2 || witness[0] !== 2) { return false }
  const sigLen = witness[1]
  if (sigLen < 9 || sigLen > 73 || witness.byteLength !== 2 + sigLen + 1 + 33 || witness[2 + sigLen] !== 33) { return false }
  const der = witness.subarray(2, 2 + sigLen - 1)
  if (witness[2 + sigLen - 1] !== SIGHASH_ALL) { return false }
  const publicKey = witness.subarray(2 + sigLen + 1)
  if (publicKey[0] !== 2 && publicKey[0] !== 3) { return false }
  if (!Buffer.from(hash160(publicKey)).equals(Buffer.from(pubKeyHash))) { return false }
  return ecdsaVerify(der, p2wpkhPreimageHash(message, pubKeyHash), publicKey)
}

/** BIP-137 message hash: double SHA-256 of the "Bitcoin Signed Message" envelope */
function bip137Hash (message: Uint8Array): Buffer {
  if (message.byteLength >= 0xfd) { throw new RangeError('message too long') }
  return sha256(sha256(Buffer.from('\x18Bitcoin Signed Message:\n', 'ascii'), Buffer.from([message.byteLength]), message))
}

/** BIP-137 for a P2PKH address: header 27–30 (uncompressed key) or 31–34 (compressed) */
function verifyP2pkh (pubKeyHash: Uint8Array, message: Uint8Array, sig: Uint8Array): boolean {
  if (sig.byteLength !== 65) { return false }
  const header = sig[0]
  if (header < 27 || header > 34) { return false }
  const compressed = header >= 31
  const recovery = (header - 27) & 3
  const recovered = Uint8Array.from([recovery, ...sig.subarray(1)])
  const hash = bip137Hash(message)
  const point = secp256k1.recoverPublicKey(recovered, hash, { prehash: false })
  const publicKey = compressed ? point : secp256k1.Point.fromBytes(point).toBytes(false)
  return Buffer.from(hash160(publicKey)).equals(Buffer.from(pubKeyHash))
}

/**
 * Verifies `btc:` credentials of one network: BIP-322 simple for P2WPKH and
 * P2TR addresses, BIP-137 for legacy P2PKH addresses. Anything else (another
 * network's address, P2SH, P2WSH, a malformed signature) is false; it never
 * throws.
 */
export function btcVerifier (network: AddressNetwork): CredentialVerifier {
  return {
    prefix: BTC_PREFIX,
    async verify (credential, digest, sig) {
      if (typeof credential !== 'string' || !credential.startsWith(BTC_PREFIX)) { return false }
      if (!(digest instanceof Uint8Array) || digest.byteLength !== 32) { return false }
      return verifyAddressSignature(credential.slice(BTC_PREFIX.length), digestMessage(digest), sig, network)
    }
  }
}

/**
 * True when `sig` is a valid signature of `message` by `address` of this
 * network: BIP-322 simple for P2WPKH and P2TR, BIP-137 for P2PKH. False for
 * anything else; never throws.
 */
export function verifyAddressSignature (address: string, message: Uint8Array, sig: Uint8Array, network: AddressNetwork): boolean {
  try {
    if (!(message instanceof Uint8Array) || !(sig instanceof Uint8Array)) { return false }
    const decoded = decodeAddress(address, network)
    if (decoded == null) { return false }
    switch (decoded.type) {
      case 'wpkh':
        return verifyP2wpkh(decoded.hash, message, sig)
      case 'pkh':
        return verifyP2pkh(decoded.hash, message, sig)
      case 'tr': {
        // bip322-js only knows the mainnet, testnet and Core regtest
        // prefixes (not bcoin's `rb`). A BIP-322 signature commits to the
        // scriptPubKey alone (to_spend's output), never to the address
        // string, so the same witness program re-encoded as a mainnet
        // address verifies the same signature.
        if (sig.byteLength !== 66 && sig.byteLength !== 67) { return false }
        const mainnet = Address(NETWORK).encode(decoded)
        return Bip322Verifier.verifySignature(mainnet, Buffer.from(message), Buffer.from(sig).toString('base64')) === true
      }
      default:
        return false
    }
  } catch {
    return false
  }
}

export type BindResult = { ok: true } | { ok: false, boundTo: string }

const enc = new TextEncoder()
const dec = new TextDecoder()

/**
 * Which OpenCloud ID each bitcoin address belongs to, on this server: the
 * first ID that presents the address (with coins) keeps it; another ID
 * presenting it later is refused. Persisted in the node's LevelDB.
 */
export class AddressBindings {
  private readonly db: SubDb
  /** one bind per address at a time: read-then-write must not interleave */
  private readonly locks = new KeyedMutex()
  private readonly cache: Lru<string>

  constructor (db: SubDb, options: { maxCacheEntries?: number } = {}) {
    this.db = db
    this.cache = new Lru(options.maxCacheEntries ?? 10_000)
  }

  /** The OpenCloud ID this address is bound to, if any */
  async boundTo (address: string): Promise<string | undefined> {
    const hit = this.cache.get(address)
    if (hit != null) { return hit }
    const v = await this.db.get(`b/${address}`)
    if (v == null) { return undefined }
    const id = dec.decode(v)
    this.cache.set(address, id)
    return id
  }

  /** Binds the address to `ocId` unless it is bound to another ID already (first come wins) */
  async bind (address: string, ocId: string): Promise<BindResult> {
    return this.locks.run(address, async () => {
      const current = await this.boundTo(address)
      if (current != null) { return current === ocId ? { ok: true as const } : { ok: false as const, boundTo: current } }
      await this.db.put(`b/${address}`, enc.encode(ocId))
      this.cache.set(address, ocId)
      return { ok: true as const }
    })
  }
}

export interface BitcoinCredentialStageInit {
  bindings: AddressBindings
  backend: ChainBackend
  /** how long an address's chain state is reused (ms) @default 30_000 */
  cacheTtlMs?: number
  /** addresses whose state is cached at once @default 10_000 */
  maxCacheEntries?: number
  /**
   * When set (with or without minAge), a request must carry a btc:
   * credential holding at least this many confirmed sats
   */
  minBalance?: bigint
  /** When set, that credential's coins must be at least this many blocks old */
  minAge?: number
  /** clock, for tests @default Date.now */
  now?(): number
}

interface Cached {
  state: AddressState
  tip: number
  expires: number
}

/**
 * The access-position stage for `btc:` credentials: every verified `btc:`
 * credential must come with an `oc:` credential, is bound to it (first come
 * wins), and gets its live chain state into `state.bitcoin`. The optional
 * `minBalance`/`minAge` refuse requests whose credentials hold too little
 * for too short; fuller policies read `state.bitcoin` in a later stage.
 */
export function bitcoinCredentialStage (init: BitcoinCredentialStageInit): Stage {
  const { bindings, backend } = init
  const ttl = init.cacheTtlMs ?? 30_000
  const maxEntries = init.maxCacheEntries ?? 10_000
  const now = init.now ?? Date.now
  const cache = new Lru<Cached>(maxEntries)
  const inflight = new Map<string, Promise<Cached>>()
  const policy = init.minBalance != null || init.minAge != null
  const minBalance = init.minBalance ?? 0n
  const minAge = init.minAge ?? 0

  async function fetchStates (addresses: string[]): Promise<Map<string, Cached>> {
    const [tip, states] = await Promise.all([backend.height(), backend.addresses(addresses)])
    if (!Number.isSafeInteger(tip) || !Array.isArray(states) || states.length !== addresses.length) { throw new InvalidMessageError('backend answered garbage') }
    const expires = now() + ttl
    const got = new Map<string, Cached>()
    for (let i = 0; i < addresses.length; i++) {
      const s = states[i]
      if (s == null || typeof s.confirmed !== 'bigint' || typeof s.unconfirmed !== 'bigint') { throw new InvalidMessageError('backend answered garbage') }
      got.set(addresses[i], { state: s, tip, expires })
    }
    for (const [a, c] of got) { cache.set(a, c) }
    return got
  }

  /** States of these addresses: from the cache, else one backend round for all missing (shared with concurrent calls) */
  async function statesOf (addresses: string[]): Promise<Cached[]> {
    const t = now()
    const fresh = new Map<string, Cached>()
    const missing: string[] = []
    for (const a of addresses) {
      const c = cache.get(a)
      if (c != null && c.expires > t) { fresh.set(a, c) } else if (!inflight.has(a)) { missing.push(a) }
    }
    if (missing.length > 0) {
      const round = fetchStates(missing)
      for (const a of missing) {
        const p = round.then(got => got.get(a) as Cached)
        p.catch(() => {})
        inflight.set(a, p)
      }
      round.finally(() => { for (const a of missing) { inflight.delete(a) } }).catch(() => {})
    }
    return Promise.all(addresses.map(async a => fresh.get(a) ?? inflight.get(a) ?? Promise.reject(new NotFoundError('no state'))))
  }

  return async (state) => {
    const addresses = [...new Set(state.credentials.filter(c => c.startsWith(BTC_PREFIX)).map(c => c.slice(BTC_PREFIX.length)))]
    if (addresses.length === 0) {
      if (policy) { return { status: Status.ACCESS_DENIED, detail: `this node requires a btc: credential holding at least ${minBalance} sat confirmed for at least ${minAge} blocks` } }
      return undefined
    }
    // the binding is to the request's (first) OpenCloud ID
    const ocId = state.credentials.find(c => c.startsWith(OPENCLOUD_ID_PREFIX))
    if (ocId == null) { return { status: Status.ACCESS_DENIED, detail: 'a btc: credential must come with the oc: credential it is bound to' } }
    for (const a of addresses) {
      const owner = await bindings.boundTo(a)
      if (owner != null && owner !== ocId) { return { status: Status.ACCESS_DENIED, detail: `address ${a} is bound to another OpenCloud ID` } }
    }
    let cached: Cached[]
    try {
      cached = await statesOf(addresses)
    } catch {
      return { status: Status.SERVER_ERROR, detail: 'chain backend unavailable' }
    }
    const out: BitcoinCredentialState[] = []
    for (let i = 0; i < addresses.length; i++) {
      const { state: s, tip } = cached[i]
      // an empty address proves nothing and is not bound: otherwise anyone
      // could fill the table with fresh keys at no cost
      if (s.confirmed + s.unconfirmed > 0n) {
        const r = await bindings.bind(addresses[i], ocId)
        if (!r.ok) { return { status: Status.ACCESS_DENIED, detail: `address ${addresses[i]} is bound to another OpenCloud ID` } }
      }
      const age = s.heldSince != null && s.heldSince <= tip ? tip - s.heldSince + 1 : 0
      out.push({ address: addresses[i], confirmed: s.confirmed, unconfirmed: s.unconfirmed, heldSince: s.heldSince, age })
    }
    state.bitcoin = out
    if (policy && !out.some(b => b.confirmed >= minBalance && b.age >= minAge)) {
      const best = out.reduce((a, b) => (b.confirmed > a.confirmed ? b : a))
      return {
        status: Status.ACCESS_DENIED,
        detail: `this node accepts a btc: credential holding at least ${minBalance} sat confirmed for at least ${minAge} blocks; the best offered holds ${best.confirmed} sat for ${best.age} blocks`
      }
    }
    return undefined
  }
}
