import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { secp256k1 } from '@noble/curves/secp256k1.js'
import { ripemd160 } from '@noble/hashes/legacy.js'
import { Address, NETWORK, p2pkh, p2tr, p2wpkh, WIF } from '@scure/btc-signer'
import { Signer as Bip322Signer, Verifier as Bip322Verifier } from 'bip322-js'
import { BCOIN_REGTEST, CORE_REGTEST, MAINNET, TESTNET } from '../src/payments/chain/networks.js'
import {
  AddressBindings, bip322MessageHash, bitcoinCredentialStage, BTC_PREFIX, btcSigner, btcVerifier, digestMessage, signP2wpkhMessage,
  verifyAddressSignature
} from '../src/payments/credentials.js'
import { openCloudId } from '../src/protocols/opencloud/api/signing.js'
import { PaymentType, Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { Store } from '../src/store/index.js'
import { startNode, tempDir } from './fixtures.js'
import { EmbeddedChain, fundAddress, startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { AddressNetwork } from '../src/payments/types.js'
import type { CallState } from '../src/protocols/opencloud/api/call.js'
import type { Signer } from '../src/protocols/opencloud/api/signing.js'
import type { BitcoinCredentialState } from '../src/protocols/opencloud/api/template.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'

const BTC = 100_000_000n
const enc = new TextEncoder()
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64')
const digestOf = (s: string): Uint8Array => createHash('sha256').update(s).digest()
const hash160 = (b: Uint8Array): Uint8Array => ripemd160(createHash('sha256').update(b).digest())

interface Key { priv: Uint8Array, pub: Uint8Array }
function newKey (): Key {
  const priv = secp256k1.utils.randomSecretKey()
  return { priv, pub: secp256k1.getPublicKey(priv, true) }
}
const wpkhAddress = (k: Key, net: AddressNetwork): string => p2wpkh(k.pub, net).address as string

/** A BIP-137 signature made with `@noble/curves`: header (27 + recovery, +4 if compressed) ‖ r ‖ s */
function bip137Sign (priv: Uint8Array, message: Uint8Array, compressed: boolean): Uint8Array {
  const envelope = Buffer.concat([Buffer.from('\x18Bitcoin Signed Message:\n'), Buffer.from([message.byteLength]), message])
  const hash = createHash('sha256').update(createHash('sha256').update(envelope).digest()).digest()
  const rec = secp256k1.sign(hash, priv, { prehash: false, format: 'recovered' })
  return Uint8Array.from([27 + rec[0] + (compressed ? 4 : 0), ...rec.subarray(1)])
}

describe('btc: credentials', () => {
  describe('BIP-322 simple (P2WPKH)', () => {
    // test vectors of BIP-322 itself
    const VECTOR_ADDRESS = 'bc1q9vza2e8x573nczrlzms0wvx3gsqjx7vavgkx0l'
    const VECTOR_KEY = 'L3VFeEujGtevx9w18HD1fhRbCH67Az2dpCymeRE1SoPK6XQtaN2k'
    const VECTORS = [
      { message: '', hash: 'c90c269c4f8fcbe6880f72a721ddfbf1914268a794cbb21cfafee13770ae19f1', sig: 'AkcwRAIgM2gBAQqvZX15ZiysmKmQpDrG83avLIT492QBzLnQIxYCIBaTpOaD20qRlEylyxFSeEA2ba9YOixpX8z46TSDtS40ASECx/EgAxlkQpQ9hYjgGu6EBCPMVPwVIVJqO4XCsMvViHI=' },
      { message: 'Hello World', hash: 'f0eb03b1a75ac6d9847f55c624a99169b5dccba2a31f5b23bea77ba270de0a7a', sig: 'AkcwRAIgZRfIY3p7/DoVTty6YZbWS71bc5Vct9p9Fia83eRmw2QCICK/ENGfwLtptFluMGs2KsqoNSk89pO7F29zJLUx9a/sASECx/EgAxlkQpQ9hYjgGu6EBCPMVPwVIVJqO4XCsMvViHI=' }
    ]

    it('matches the BIP-322 test vectors, and bip322-js agrees with its signatures', () => {
      const priv = WIF(NETWORK).decode(VECTOR_KEY)
      for (const v of VECTORS) {
        const m = enc.encode(v.message)
        assert.equal(bip322MessageHash(m).toString('hex'), v.hash)
        assert.equal(verifyAddressSignature(VECTOR_ADDRESS, m, Buffer.from(v.sig, 'base64'), MAINNET), true)
        const mine = signP2wpkhMessage(priv, m)
        assert.equal(verifyAddressSignature(VECTOR_ADDRESS, m, mine, MAINNET), true)
        assert.equal(Bip322Verifier.verifySignature(VECTOR_ADDRESS, v.message, b64(mine)), true)
      }
      // the vector for "" does not sign "Hello World"
      assert.equal(verifyAddressSignature(VECTOR_ADDRESS, enc.encode('Hello World'), Buffer.from(VECTORS[0].sig, 'base64'), MAINNET), false)
    })

    for (const [name, net] of [['rb1… (bcoin regtest)', BCOIN_REGTEST], ['bc1… (mainnet)', MAINNET], ['bcrt1… (Core regtest)', CORE_REGTEST]] as const) {
      it(`signs and verifies the request digest on ${name}`, async () => {
        const k = newKey()
        const address = wpkhAddress(k, net)
        const signer = btcSigner(k.priv, address, net)
        assert.equal(signer.credential, `${BTC_PREFIX}${address}`)
        const d = digestOf('a request')
        const sig = await signer.sign(d)
        const verifier = btcVerifier(net)
        assert.equal(verifier.prefix, 'btc:')
        assert.equal(await verifier.verify(signer.credential, d, sig), true)
        // the message is the lowercase hex of the digest
        assert.equal(digestMessage(d).toString('ascii'), Buffer.from(d).toString('hex'))
        // bip322-js (which knows bc1 and bcrt1) reads the same bytes
        if (net !== BCOIN_REGTEST) { assert.equal(Bip322Verifier.verifySignature(address, Buffer.from(d).toString('hex'), b64(sig)), true) }
        // and the same program as a mainnet address, as the verifier does for rb1
        const mainnet = Address(NETWORK).encode(Address(net).decode(address))
        assert.equal(Bip322Verifier.verifySignature(mainnet, Buffer.from(d).toString('hex'), b64(sig)), true)
      })
    }

    it('accepts signatures made by bip322-js', async () => {
      const k = newKey()
      const address = wpkhAddress(k, MAINNET)
      const d = digestOf('from bip322-js')
      const sig = Buffer.from(Bip322Signer.sign(WIF(NETWORK).encode(k.priv), address, Buffer.from(d).toString('hex')), 'base64')
      assert.equal(await btcVerifier(MAINNET).verify(`btc:${address}`, d, sig), true)
      // the same witness program on bcoin's regtest
      assert.equal(await btcVerifier(BCOIN_REGTEST).verify(`btc:${wpkhAddress(k, BCOIN_REGTEST)}`, d, sig), true)
    })

    it('refuses forged, tampered, misdirected and garbage signatures without throwing', async () => {
      const net = BCOIN_REGTEST
      const verifier = btcVerifier(net)
      const k = newKey()
      const other = newKey()
      const address = wpkhAddress(k, net)
      const credential = `btc:${address}`
      const d = digestOf('the request')
      const good = await btcSigner(k.priv, address, net).sign(d)
      assert.equal(await verifier.verify(credential, d, good), true)

      // another key signs and claims the address
      const forged = await btcSigner(other.priv, wpkhAddress(other, net), net).sign(d)
      assert.equal(await verifier.verify(credential, d, forged), false)
      // another key's signature with the right public key put in the witness
      const swapped = Uint8Array.from(forged)
      swapped.set(k.pub, swapped.byteLength - 33)
      assert.equal(await verifier.verify(credential, d, swapped), false)
      // tampered digest
      const d2 = Uint8Array.from(d)
      d2[31] ^= 1
      assert.equal(await verifier.verify(credential, d2, good), false)
      // a signature for another address
      assert.equal(await verifier.verify(`btc:${wpkhAddress(other, net)}`, d, good), false)
      // one bit flipped anywhere in the signature
      for (let i = 0; i < good.byteLength; i++) {
        const bad = Uint8Array.from(good)
        bad[i] ^= 0x10
        assert.equal(await verifier.verify(credential, d, bad), false, `bit flip at byte ${i}`)
      }
      // high-S twin of a valid signature (malleated): refused
      const derLen = good[1] - 1
      const parsed = secp256k1.Signature.fromBytes(good.subarray(2, 2 + derLen), 'der')
      const high = new secp256k1.Signature(parsed.r, secp256k1.Point.CURVE().n - parsed.s).toBytes('der')
      const malleated = Uint8Array.from([2, high.byteLength + 1, ...high, 1, 33, ...k.pub])
      assert.equal(await verifier.verify(credential, d, malleated), false)
      // garbage
      for (const sig of [new Uint8Array(), new Uint8Array(65), randomBytes(107), randomBytes(1024), good.subarray(0, 50), Uint8Array.from([...good, 0])]) {
        assert.equal(await verifier.verify(credential, d, sig), false)
      }
      assert.equal(await verifier.verify(credential, new Uint8Array(31), good), false)
      assert.equal(await verifier.verify(credential, 'x' as unknown as Uint8Array, good), false)
      assert.equal(await verifier.verify(credential, d, 'x' as unknown as Uint8Array), false)
      // garbage and foreign addresses
      const bc1 = wpkhAddress(k, MAINNET)
      for (const c of ['btc:', 'btc:xyz', `btc:${'q'.repeat(300)}`, `btc:${address.toUpperCase()}`, `btc:${address} `, `btc:${bc1}`,
        `btc:${wpkhAddress(k, TESTNET)}`, `oc:${address}`, address, `btc:${Address(net).encode({ type: 'wsh', hash: randomBytes(32) })}`, `btc:${Address(net).encode({ type: 'sh', hash: hash160(k.pub) })}`]) {
        assert.equal(await verifier.verify(c, d, good), false, c)
      }
      // a verifier of another network refuses this network's address, with its valid signature
      assert.equal(await btcVerifier(MAINNET).verify(credential, d, good), false)
      assert.equal(verifyAddressSignature(null as unknown as string, d, good, net), false)
    })

    it('a signer refuses a key that is not the address\'s', () => {
      const k = newKey()
      assert.throws(() => btcSigner(newKey().priv, wpkhAddress(k, BCOIN_REGTEST), BCOIN_REGTEST), TypeError)
      assert.throws(() => btcSigner(k.priv, wpkhAddress(k, MAINNET), BCOIN_REGTEST), TypeError)
    })
  })

  describe('BIP-137 (legacy P2PKH)', () => {
    it('verifies compressed and uncompressed key signatures on mainnet and bcoin regtest', async () => {
      for (const net of [MAINNET, BCOIN_REGTEST]) {
        const k = newKey()
        const d = digestOf('legacy')
        const m = digestMessage(d)
        const compressed = p2pkh(k.pub, net).address as string
        const uncompressedPub = secp256k1.getPublicKey(k.priv, false)
        const uncompressed = Address(net).encode({ type: 'pkh', hash: hash160(uncompressedPub) })
        const sigC = bip137Sign(k.priv, m, true)
        const sigU = bip137Sign(k.priv, m, false)
        const v = btcVerifier(net)
        assert.equal(await v.verify(`btc:${compressed}`, d, sigC), true)
        assert.equal(await v.verify(`btc:${uncompressed}`, d, sigU), true)
        // the header names the key form: the wrong form is another address
        assert.equal(await v.verify(`btc:${compressed}`, d, sigU), false)
        assert.equal(await v.verify(`btc:${uncompressed}`, d, sigC), false)
        // tampered digest, other key, garbage header
        assert.equal(await v.verify(`btc:${compressed}`, digestOf('other'), sigC), false)
        assert.equal(await v.verify(`btc:${compressed}`, d, bip137Sign(newKey().priv, m, true)), false)
        const badHeader = Uint8Array.from(sigC)
        badHeader[0] = 43
        assert.equal(await v.verify(`btc:${compressed}`, d, badHeader), false)
        assert.equal(await v.verify(`btc:${compressed}`, d, new Uint8Array(65)), false)
        if (net === MAINNET) {
          // bip322-js reads our BIP-137 signatures the same way
          assert.equal(Bip322Verifier.verifySignature(compressed, m.toString('ascii'), b64(sigC), true), true)
          const theirs = Buffer.from(Bip322Signer.sign(WIF(NETWORK).encode(k.priv), compressed, m.toString('ascii')), 'base64')
          assert.equal(await v.verify(`btc:${compressed}`, d, theirs), true)
        }
      }
    })
  })

  describe('BIP-322 simple (P2TR, through bip322-js)', () => {
    it('verifies single-key taproot signatures, also re-encoded for bcoin regtest', async () => {
      const priv = secp256k1.utils.randomSecretKey()
      const xonly = secp256k1.getPublicKey(priv, true).subarray(1)
      const address = p2tr(xonly, undefined, NETWORK).address as string
      const d = digestOf('taproot')
      const sig = Buffer.from(Bip322Signer.sign(WIF(NETWORK).encode(priv), address, Buffer.from(d).toString('hex')), 'base64')
      assert.equal(await btcVerifier(MAINNET).verify(`btc:${address}`, d, sig), true)
      const rb = Address(BCOIN_REGTEST).encode(Address(NETWORK).decode(address))
      assert.ok(rb.startsWith('rb1p'))
      assert.equal(await btcVerifier(BCOIN_REGTEST).verify(`btc:${rb}`, d, sig), true)
      assert.equal(await btcVerifier(MAINNET).verify(`btc:${address}`, digestOf('other'), sig), false)
      assert.equal(await btcVerifier(MAINNET).verify(`btc:${address}`, d, randomBytes(66)), false)
    })
  })

  describe('address bindings', () => {
    it('first come wins, persisted across a restart, concurrent claims get one winner', async () => {
      const dir = await tempDir()
      let store = new Store(join(dir, 'db'))
      await store.open()
      let bindings = new AddressBindings(store.sub('bindings'))
      assert.equal(await bindings.boundTo('rb1qaddr'), undefined)
      assert.deepEqual(await bindings.bind('rb1qaddr', 'oc:alice'), { ok: true })
      assert.deepEqual(await bindings.bind('rb1qaddr', 'oc:alice'), { ok: true })
      assert.deepEqual(await bindings.bind('rb1qaddr', 'oc:mallory'), { ok: false, boundTo: 'oc:alice' })
      await store.close()
      store = new Store(join(dir, 'db'))
      await store.open()
      bindings = new AddressBindings(store.sub('bindings'))
      assert.equal(await bindings.boundTo('rb1qaddr'), 'oc:alice')
      assert.deepEqual(await bindings.bind('rb1qaddr', 'oc:mallory'), { ok: false, boundTo: 'oc:alice' })
      const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => bindings.bind('rb1qother', `oc:${i}`)))
      assert.equal(results.filter(r => r.ok).length, 1)
      const owner = await bindings.boundTo('rb1qother')
      assert.ok(results.every(r => r.ok || r.boundTo === owner))
      await store.close()
    })
  })

  describe('on a regtest chain, with real nodes', function () {
    this.timeout(120_000)
    let chain: EmbeddedChain
    let store: Store
    let seller: TestNode
    let buyer: TestNode
    let mallory: TestNode
    /** the buyer's funded P2WPKH key */
    const k = newKey()
    let address: string
    let signer: Signer
    let fundedAt: number
    const seen: Array<BitcoinCredentialState[] | undefined> = []

    const probe: ServiceDefinition = {
      name: 'probe',
      version: '1.0.0',
      description: 'answers with the bitcoin credentials it saw',
      methods: {
        whoami: {
          description: 'the caller\'s checked btc: credentials',
          handler: (call) => {
            seen.push(call.bitcoin)
            return { body: enc.encode(JSON.stringify(call.bitcoin ?? null, (_k, v) => typeof v === 'bigint' ? v.toString() : v)) }
          }
        }
      }
    }

    before(async () => {
      chain = await startRegtest()
      address = wpkhAddress(k, chain.network)
      signer = btcSigner(k.priv, address, chain.network)
      fundedAt = (await fundAddress(chain, address, 2n * BTC)).height
      store = new Store(join(await tempDir(), 'db'))
      await store.open()
      const bindings = new AddressBindings(store.sub('bindings'))
      seller = await startNode({
        services: [probe],
        opencloud: { verifiers: [btcVerifier(chain.network)], access: bitcoinCredentialStage({ bindings, backend: chain }) }
      })
      buyer = await startNode()
      mallory = await startNode()
    })

    after(async () => {
      await buyer?.destroy()
      await mallory?.destroy()
      await seller?.destroy()
      await store?.close()
      await chain?.close()
    })

    it('a node that does not verify btc: credentials (no payments) serves the call on the OpenCloud ID alone, without counting the btc: one', async () => {
      const ids: string[][] = []
      const plain = await startNode({
        services: [{
          name: 'who',
          version: '1.0.0',
          description: 'the credentials the node counted',
          methods: { ids: { description: 'verified credentials', handler: (call) => { ids.push(call.credentials); return { body: new Uint8Array() } } } }
        }]
      })
      try {
        const res = await buyer.opencloud.call(plain.addr, { service: 'who', method: 'ids', signers: [signer] })
        assert.equal(res.status, Status.OK, res.detail)
        assert.equal(ids.length, 1)
        assert.ok(ids[0].every(id => !id.startsWith('btc:')), `counted ${ids[0].join(', ')}`)
        assert.ok(ids[0].some(id => id.startsWith('oc:')))
      } finally {
        await plain.destroy()
      }
    })

    it('serves a request with a valid btc: credential; the handler sees the live balance and age', async () => {
      await chain.mine(2, p2wpkh(newKey().pub, chain.network).address as string)
      const res = await buyer.opencloud.call(seller.addr, { service: 'probe', method: 'whoami', signers: [signer] })
      assert.equal(res.status, Status.OK, res.detail)
      const tip = await chain.height()
      const got = JSON.parse(new TextDecoder().decode(res.body))
      assert.deepEqual(got, [{ address, confirmed: String(2n * BTC), unconfirmed: '0', heldSince: fundedAt, age: tip - fundedAt + 1 }])
      assert.equal(seen.at(-1)?.[0].confirmed, 2n * BTC)
      assert.equal(seen.at(-1)?.[0].age, 3)
      // a request without a btc: credential is served too, without bitcoin state
      const plain = await buyer.opencloud.call(seller.addr, { service: 'probe', method: 'whoami' })
      assert.equal(plain.status, Status.OK)
      assert.equal(new TextDecoder().decode(plain.body), 'null')
    })

    it('refuses a forged btc: signature with invalid-signature', async () => {
      const other = newKey()
      const inner = btcSigner(other.priv, wpkhAddress(other, chain.network), chain.network)
      const forger: Signer = { credential: `btc:${address}`, sign: async (d) => inner.sign(d) }
      const res = await mallory.opencloud.call(seller.addr, { service: 'probe', method: 'whoami', signers: [forger] })
      assert.equal(res.status, Status.INVALID_SIGNATURE)
      assert.match(res.detail, /signature 1 does not verify/)
    })

    it('refuses the same address for a second OpenCloud ID with access-denied', async () => {
      // mallory holds the key too (say, the same person running a second identity)
      const res = await mallory.opencloud.call(seller.addr, { service: 'probe', method: 'whoami', signers: [signer] })
      assert.equal(res.status, Status.ACCESS_DENIED)
      assert.equal(res.detail, `address ${address} is bound to another OpenCloud ID`)
      // the first identity is still served
      const again = await buyer.opencloud.call(seller.addr, { service: 'probe', method: 'whoami', signers: [signer] })
      assert.equal(again.status, Status.OK)
    })

    describe('the stage', () => {
      const state = (credentials: string[]): CallState => ({
        peer: buyer.peerId,
        request: { id: credentials, sig: [], nonce: new Uint8Array(), service: 'probe', method: 'whoami', args: [], paymentType: PaymentType.PAYMENT_NONE, body: new Uint8Array() } as any,
        digest: new Uint8Array(32),
        credentials,
        signal: new AbortController().signal
      })

      it('requires the oc: credential a btc: one is bound to', async () => {
        const bindings = new AddressBindings(store.sub('stage-1'))
        const stage = bitcoinCredentialStage({ bindings, backend: chain })
        const reply = await stage(state([`btc:${address}`]))
        assert.equal(reply?.status, Status.ACCESS_DENIED)
        assert.equal(reply?.detail, 'a btc: credential must come with the oc: credential it is bound to')
        assert.equal(await stage(state([openCloudId(buyer.peerId)])), undefined)
      })

      it('does not bind an empty address (no cost to make one), binds once coins arrive', async () => {
        const bindings = new AddressBindings(store.sub('stage-2'))
        const stage = bitcoinCredentialStage({ bindings, backend: chain, cacheTtlMs: 0 })
        const empty = newKey()
        const emptyAddress = wpkhAddress(empty, chain.network)
        const s = state([openCloudId(mallory.peerId), `btc:${emptyAddress}`])
        assert.equal(await stage(s), undefined)
        assert.deepEqual(s.bitcoin, [{ address: emptyAddress, confirmed: 0n, unconfirmed: 0n, heldSince: undefined, age: 0 }])
        assert.equal(await bindings.boundTo(emptyAddress), undefined)
        await fundAddress(chain, emptyAddress, BTC)
        const s2 = state([openCloudId(buyer.peerId), `btc:${emptyAddress}`])
        assert.equal(await stage(s2), undefined)
        assert.equal(s2.bitcoin?.[0].confirmed, BTC)
        assert.equal(s2.bitcoin?.[0].age, 1)
        assert.equal(await bindings.boundTo(emptyAddress), openCloudId(buyer.peerId))
        assert.equal((await stage(state([openCloudId(mallory.peerId), `btc:${emptyAddress}`])))?.status, Status.ACCESS_DENIED)
      })

      it('refuses below minBalance / minAge, saying what would be accepted', async () => {
        const bindings = new AddressBindings(store.sub('stage-3'))
        const rich = bitcoinCredentialStage({ bindings, backend: chain, minBalance: 5n * BTC, minAge: 1 })
        const reply = await rich(state([openCloudId(buyer.peerId), `btc:${address}`]))
        assert.equal(reply?.status, Status.ACCESS_DENIED)
        assert.match(reply?.detail ?? '', new RegExp(`at least ${5n * BTC} sat confirmed for at least 1 blocks; the best offered holds ${2n * BTC} sat`))
        const none = await rich(state([openCloudId(buyer.peerId)]))
        assert.equal(none?.status, Status.ACCESS_DENIED)
        assert.match(none?.detail ?? '', /requires a btc: credential holding at least/)
        const old = bitcoinCredentialStage({ bindings, backend: chain, minBalance: BTC, minAge: 1000 })
        assert.match((await old(state([openCloudId(buyer.peerId), `btc:${address}`])))?.detail ?? '', /for at least 1000 blocks/)
        const ok = bitcoinCredentialStage({ bindings, backend: chain, minBalance: 2n * BTC, minAge: 3 })
        assert.equal(await ok(state([openCloudId(buyer.peerId), `btc:${address}`])), undefined)
      })

      it('caches chain state for the TTL and answers server-error when the backend is down', async () => {
        const down = await EmbeddedChain.start({ segwit: false })
        await down.close()
        const bindings = new AddressBindings(store.sub('stage-4'))
        const broken = bitcoinCredentialStage({ bindings, backend: down })
        const reply = await broken(state([openCloudId(buyer.peerId), `btc:${address}`]))
        assert.deepEqual(reply, { status: Status.SERVER_ERROR, detail: 'chain backend unavailable' })

        let clock = 0
        // the real chain, counting the address lookups the stage makes
        let rounds = 0
        const counted = new Proxy(chain, {
          get (target, prop) {
            if (prop === 'addresses') { return async (addresses: string[]) => { rounds++; return target.addresses(addresses) } }
            const value = Reflect.get(target, prop, target)
            return typeof value === 'function' ? value.bind(target) : value
          }
        })
        const cached = bitcoinCredentialStage({ bindings, backend: counted, cacheTtlMs: 30_000, now: () => clock })
        const s1 = state([openCloudId(buyer.peerId), `btc:${address}`])
        assert.equal(await cached(s1), undefined)
        await fundAddress(chain, address, BTC)
        const s2 = state([openCloudId(buyer.peerId), `btc:${address}`])
        assert.equal(await cached(s2), undefined)
        assert.deepEqual(s2.bitcoin, s1.bitcoin, 'within the TTL')
        assert.equal(rounds, 1, 'the second request was answered from the cache')
        clock = 30_000
        const s3 = state([openCloudId(buyer.peerId), `btc:${address}`])
        assert.equal(await cached(s3), undefined)
        assert.equal(s3.bitcoin?.[0].confirmed, 3n * BTC)
        assert.equal(rounds, 2)
        // concurrent requests share one backend round
        clock = 60_000
        const many = Array.from({ length: 20 }, () => state([openCloudId(buyer.peerId), `btc:${address}`]))
        assert.deepEqual(await Promise.all(many.map(async s => cached(s))), many.map(() => undefined))
        assert.ok(many.every(s => s.bitcoin?.[0].confirmed === 3n * BTC))
        assert.equal(rounds, 3, 'the 20 concurrent requests took one backend round')
      })
    })
  })
})
