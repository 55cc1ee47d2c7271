/**
 * The wallet's keys and addresses: BIP84 (P2WPKH) account
 * m/84'/coin'/account', its receive (0) and change (1) chains, the
 * addresses handed out so far and the scripts they pay to.
 *
 * Persisted in the wallet sublevel under the keychain's `prefix`:
 * - `next/<chain>`: next unused index of the receive (0) / change (1) chain
 * - `addr/<chain>/<index>`: derived address (saves re-deriving at start)
 */
import { OutScript, p2wpkh } from '@scure/btc-signer'
import { decodeAddress } from '../credentials.js'
import { coinType } from '../types.js'
import type { BatchOp, SubDb } from '../../store/index.js'
import type { AddressNetwork, ChainBackend, ChainName } from '../types.js'
import type { HDKey } from '@scure/bip32'

/** Receive and change chains of a BIP44 account */
export const RECEIVE = 0
export const CHANGE = 1
export type ChainIndex = typeof RECEIVE | typeof CHANGE

/** The identity address: receive index 0 */
export const IDENTITY_INDEX = 0

interface Owned {
  chain: ChainIndex
  index: number
  address: string
}

const enc = new TextEncoder()
const dec = new TextDecoder()

export function text (s: string): Uint8Array {
  return enc.encode(s)
}

export function pad (n: number, width: number): string {
  return String(n).padStart(width, '0')
}

export class Keychain {
  /** names the seed's fingerprint, the address encoding and the account: the wallet's keys in its sublevel */
  readonly prefix: string
  private readonly network: AddressNetwork
  readonly #chains: [HDKey, HDKey]
  private readonly next: [number, number]
  /** every derived address the wallet handed out (or uses), by address and by script */
  private readonly byAddress = new Map<string, Owned>()
  private readonly byScript = new Map<string, Owned>()
  private readonly byIndex: [Map<number, string>, Map<number, string>] = [new Map(), new Map()]

  constructor (root: HDKey, chain: ChainName, network: AddressNetwork, account: number) {
    this.network = network
    const accountKey = root.derive(`m/84'/${coinType(chain)}'/${account}'`)
    this.#chains = [accountKey.deriveChild(RECEIVE), accountKey.deriveChild(CHANGE)]
    this.prefix = `${root.fingerprint.toString(16).padStart(8, '0')}/${network.bech32}/${account}/`
    this.next = [IDENTITY_INDEX + 1, 0]
  }

  /** Reads counters and addresses; true when nothing was stored yet */
  async load (db: SubDb): Promise<boolean> {
    const p = this.prefix
    let fresh = true
    for (const chain of [RECEIVE, CHANGE] as const) {
      const v = await db.get(`${p}next/${chain}`)
      if (v != null) {
        fresh = false
        const n = Number(dec.decode(v))
        if (Number.isSafeInteger(n) && n >= this.next[chain]) { this.next[chain] = n }
      }
      for await (const [key, value] of db.iterator({ gte: `${p}addr/${chain}/`, lt: `${p}addr/${chain}/~` })) {
        const index = Number(key.slice(`${p}addr/${chain}/`.length))
        this.remember({ chain, index, address: dec.decode(value) })
      }
      for (let i = chain === RECEIVE ? IDENTITY_INDEX : 0; i < this.next[chain]; i++) { this.derive(chain, i) }
    }
    return fresh
  }

  /** Writes of both chains' counters */
  counterOps (): BatchOp[] {
    return ([RECEIVE, CHANGE] as const).map(chain => ({ type: 'put' as const, key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) }))
  }

  /** scriptPubKey of one of this wallet's own addresses */
  scriptOf (address: string): Uint8Array {
    return OutScript.encode(decodeAddress(address, this.network) as NonNullable<ReturnType<typeof decodeAddress>>)
  }

  private remember (o: Owned): void {
    this.byAddress.set(o.address, o)
    this.byIndex[o.chain].set(o.index, o.address)
    this.byScript.set(Buffer.from(this.scriptOf(o.address)).toString('hex'), o)
  }

  /** The address of chain/index (derived once, then remembered) */
  derive (chain: ChainIndex, index: number): string {
    const known = this.byIndex[chain].get(index)
    if (known != null) { return known }
    const key = this.#chains[chain].deriveChild(index)
    const address = p2wpkh(key.publicKey as Uint8Array, this.network).address as string
    this.remember({ chain, index, address })
    return address
  }

  privateKey (chain: ChainIndex, index: number): Uint8Array {
    return this.#chains[chain].deriveChild(index).privateKey as Uint8Array
  }

  /** The private key of an input paying one of our scripts (lowercase hex) */
  keyOf (script: string): Uint8Array {
    const owner = this.byScript.get(script) as Owned
    return this.privateKey(owner.chain, owner.index)
  }

  /** Hands out the next index of a chain; the caller writes `ops` in one batch */
  allocate (chain: ChainIndex, ops: BatchOp[]): string {
    const index = this.next[chain]
    this.next[chain] = index + 1
    const address = this.derive(chain, index)
    ops.push(
      { type: 'put', key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) },
      { type: 'put', key: `${this.prefix}addr/${chain}/${pad(index, 10)}`, value: text(address) }
    )
    return address
  }

  /** The index the next `allocate` of a chain hands out */
  nextIndex (chain: ChainIndex): number {
    return this.next[chain]
  }

  isMine (address: string): boolean {
    return this.byAddress.has(address)
  }

  /** True for a script (lowercase hex) this wallet derived */
  ownsScript (script: string): boolean {
    return this.byScript.has(script)
  }

  /** True for a script (lowercase hex) this wallet derived whose coins pay for things (not the identity's) */
  spendsFrom (script: string): boolean {
    const o = this.byScript.get(script)
    return o != null && !(o.chain === RECEIVE && o.index === IDENTITY_INDEX)
  }

  /** Addresses whose coins pay for things: every handed-out receive address but the identity, and every change address */
  spendableAddresses (): string[] {
    const out: string[] = []
    for (let i = IDENTITY_INDEX + 1; i < this.next[RECEIVE]; i++) { out.push(this.derive(RECEIVE, i)) }
    for (let i = 0; i < this.next[CHANGE]; i++) { out.push(this.derive(CHANGE, i)) }
    return out
  }

  usedAddresses (): string[] {
    return [this.derive(RECEIVE, IDENTITY_INDEX), ...this.spendableAddresses()]
  }

  /**
   * Looks past the last used index of both chains for funded addresses and
   * extends both chains to the last funded one; returns the writes
   */
  async rescan (backend: ChainBackend, gap: number): Promise<BatchOp[]> {
    const ops: BatchOp[] = []
    for (const chain of [RECEIVE, CHANGE] as const) {
      let last = -1
      for (let start = this.next[chain]; ; start += gap) {
        const used = await this.fundedIndexes(backend, chain, start, gap)
        if (used.length === 0) { break }
        last = used[used.length - 1]
      }
      if (last >= this.next[chain]) {
        for (let i = this.next[chain]; i <= last; i++) {
          ops.push({ type: 'put', key: `${this.prefix}addr/${chain}/${pad(i, 10)}`, value: text(this.derive(chain, i)) })
        }
        this.next[chain] = last + 1
      }
      ops.push({ type: 'put', key: `${this.prefix}next/${chain}`, value: text(String(this.next[chain])) })
    }
    // lookahead addresses that are not in use stay unknown to isMine
    for (const [address, o] of this.byAddress) {
      if (o.index >= this.next[o.chain] && !(o.chain === RECEIVE && o.index === IDENTITY_INDEX)) {
        this.byAddress.delete(address)
        this.byIndex[o.chain].delete(o.index)
        this.byScript.delete(Buffer.from(this.scriptOf(address)).toString('hex'))
      }
    }
    return ops
  }

  /** Indexes in [start, start + count) of a chain whose address holds coins */
  private async fundedIndexes (backend: ChainBackend, chain: ChainIndex, start: number, count: number): Promise<number[]> {
    const batch = Array.from({ length: count }, (_, k) => start + k)
    const states = await backend.addresses(batch.map(i => this.derive(chain, i)))
    return batch.filter((_, k) => states[k] != null && states[k].confirmed + states[k].unconfirmed > 0n)
  }
}
