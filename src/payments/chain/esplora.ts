/**
 * A chain backend over the Esplora REST API (Blockstream's electrs,
 * mempool.space): signet, testnet or mainnet without running a node.
 * Formats follow Blockstream/esplora API.md and electrs `src/rest.rs`:
 * amounts are integer satoshis in JSON; errors are text bodies, a rejected
 * broadcast reads `sendrawtransaction RPC error: {"code":-26,"message":"…"}`.
 */
import { Address, OutScript } from '@scure/btc-signer'
import { ChainUnavailableError, TxRejectedError } from '../types.js'
import { rejectionOf } from './bitcoind-rpc.js'
import { describeFetchError, readBoundedText } from './http.js'
import { networkOf } from './networks.js'
import { maskUrl } from './secrets.js'
import type { AddressNetwork, AddressState, AddressTx, ChainName, ChainBackend, TxStatus, Utxo } from '../types.js'

/** default per-request timeout */
export const ESPLORA_TIMEOUT_MS = 30_000
/** default bound on a response body */
export const ESPLORA_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
/** the most addresses per `addresses()`/`utxos()` call (one request each) */
export const MAX_ADDRESSES = 200
/** the most entries `history()` returns (25 per page after the first) */
export const MAX_HISTORY = 1000
/** the largest raw transaction sent */
export const MAX_TX_BYTES = 4_000_000
/** requests in flight at once for one call */
const CONCURRENCY = 4
/** esplora's page of confirmed transactions */
const CHAIN_PAGE = 25

export interface EsploraOptions {
  /**
   * the chain the server is on
   *
   * @default 'mainnet'
   */
  chain?: ChainName
  /**
   * per request
   *
   * @default ESPLORA_TIMEOUT_MS
   */
  timeoutMs?: number
  /**
   * largest response body read
   *
   * @default ESPLORA_MAX_RESPONSE_BYTES
   */
  maxResponseBytes?: number
  /** address encoding; by default the chain's usual one */
  network?: AddressNetwork
}

interface Reply { status: number, text: string }

export class EsploraBackend implements ChainBackend {
  readonly chain: ChainName
  readonly network: AddressNetwork
  readonly description: string

  private readonly base: string
  private readonly query: URLSearchParams
  private readonly timeoutMs: number
  private readonly maxResponseBytes: number
  private readonly shutdown = new AbortController()

  /**
   * @param url - the API root, e.g. `https://mempool.space/signet/api`
   */
  constructor (url: string, opts: EsploraOptions = {}) {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw new TypeError('Esplora URL is not a URL')
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') { throw new TypeError(`Esplora URL must be http: or https:, not ${u.protocol}`) }
    if (u.username !== '' || u.password !== '') { throw new TypeError('Esplora URL must not carry credentials') }
    // a provider's key may be in the query (`?token=…`): it goes with every request
    this.query = new URLSearchParams(u.search)
    u.search = ''
    u.hash = ''
    if (!u.pathname.endsWith('/')) { u.pathname += '/' }
    this.base = u.toString()
    this.chain = opts.chain ?? 'mainnet'
    this.network = opts.network ?? networkOf(this.chain)
    this.timeoutMs = opts.timeoutMs ?? ESPLORA_TIMEOUT_MS
    this.maxResponseBytes = opts.maxResponseBytes ?? ESPLORA_MAX_RESPONSE_BYTES
    const shown = new URL(this.base)
    shown.search = this.query.toString()
    this.description = `Esplora ${maskUrl(shown.toString())} (${this.chain})`
  }

  /** Checks that the server answers (tip height) before handing it out */
  static async connect (url: string, opts: EsploraOptions = {}): Promise<EsploraBackend> {
    const backend = new EsploraBackend(url, opts)
    await backend.height()
    return backend
  }

  async height (): Promise<number> {
    const { text } = await this.get('blocks/tip/height')
    const t = text.trim()
    if (!/^[0-9]{1,10}$/.test(t)) { throw this.garbage('blocks/tip/height') }
    return Number(t)
  }

  async addresses (addresses: string[]): Promise<AddressState[]> {
    const lists = await this.utxoLists(addresses)
    return addresses.map((address, i) => {
      let confirmed = 0n
      let unconfirmed = 0n
      let heldSince: number | undefined
      for (const u of lists[i]) {
        if (u.height != null) {
          confirmed += u.value
          heldSince = heldSince == null ? u.height : Math.min(heldSince, u.height)
        } else {
          unconfirmed += u.value
        }
      }
      return { address, confirmed, unconfirmed, heldSince }
    })
  }

  async utxos (addresses: string[]): Promise<Utxo[]> {
    const lists = await this.utxoLists(addresses)
    const seen = new Set<string>()
    const out: Utxo[] = []
    for (const list of lists) {
      for (const u of list) {
        const key = `${u.txid}:${u.vout}`
        if (seen.has(key)) { continue }
        seen.add(key)
        out.push(u)
      }
    }
    return out
  }

  /**
   * Newest first: the mempool transactions (up to 50), then confirmed ones,
   * 25 a page, until `limit`.
   */
  async history (address: string, limit: number = 100): Promise<AddressTx[]> {
    const max = Math.max(0, Math.min(Math.floor(limit), MAX_HISTORY))
    const script = this.scriptOf(address)
    const path = `address/${encodeURIComponent(address)}/txs`
    const out: AddressTx[] = []
    const seen = new Set<string>()
    let page = parseTxList(await this.getJson(path), script)
    if (page == null) { throw this.garbage(path) }
    for (;;) {
      let confirmedInPage = 0
      let lastConfirmed: string | undefined
      for (const t of page) {
        if (seen.has(t.txid)) { continue }
        seen.add(t.txid)
        out.push(t)
        if (t.height != null) { confirmedInPage++; lastConfirmed = t.txid }
      }
      if (out.length >= max || confirmedInPage < CHAIN_PAGE || lastConfirmed == null) { break }
      const next = `address/${encodeURIComponent(address)}/txs/chain/${lastConfirmed}`
      page = parseTxList(await this.getJson(next), script)
      if (page == null) { throw this.garbage(next) }
      if (page.length === 0) { break }
    }
    return out.slice(0, max)
  }

  async broadcast (raw: Uint8Array): Promise<string> {
    if (!(raw instanceof Uint8Array) || raw.byteLength === 0) { throw new TxRejectedError('invalid', 'TX decode failed: empty') }
    if (raw.byteLength > MAX_TX_BYTES) { throw new TxRejectedError('invalid', 'TX decode failed: too large') }
    const { status, text } = await this.request('tx', { method: 'POST', body: Buffer.from(raw).toString('hex'), headers: { 'content-type': 'text/plain' } })
    if (status === 200) {
      const txid = text.trim()
      if (!TXID.test(txid)) { throw this.garbage('POST tx') }
      return txid.toLowerCase()
    }
    if (status === 400) { throw broadcastRejection(text) }
    throw this.failed('POST tx', status, text)
  }

  /**
   * Status of a transaction: its hex (404 → unknown), its status and, when
   * confirmed, the tip for the confirmation count.
   */
  async transaction (txid: string): Promise<TxStatus | undefined> {
    if (typeof txid !== 'string' || !TXID.test(txid)) { return undefined }
    const id = txid.toLowerCase()
    const hex = await this.request(`tx/${id}/hex`)
    if (hex.status === 404) { return undefined }
    if (hex.status !== 200) { throw this.failed('tx hex', hex.status, hex.text) }
    const rawHex = hex.text.trim()
    if (!HEX.test(rawHex)) { throw this.garbage('tx hex') }
    const s = parseStatus(await this.getJson(`tx/${id}/status`))
    if (s === undefined) { throw this.garbage('tx status') }
    const raw = new Uint8Array(Buffer.from(rawHex, 'hex'))
    if (s == null) { return { txid: id, confirmations: 0, raw } }
    const tip = await this.height()
    return { txid: id, confirmations: Math.max(1, tip - s + 1), height: s, raw }
  }

  /** the estimate for 2 blocks (sat/vB, rounded up), else the nearest target; 1 when there is none */
  async feeRate (): Promise<bigint> {
    const est = await this.getJson('fee-estimates')
    if (est == null || typeof est !== 'object' || Array.isArray(est)) { throw this.garbage('fee-estimates') }
    const targets = Object.entries(est as Record<string, unknown>)
      .filter(([k, v]) => /^[0-9]{1,4}$/.test(k) && typeof v === 'number' && Number.isFinite(v) && v > 0)
      .map(([k, v]) => [Number(k), v as number] as const)
      .sort((a, b) => a[0] - b[0])
    if (targets.length === 0) { return 1n }
    const pick = targets.find(([k]) => k >= 2) ?? targets[targets.length - 1]
    const rate = BigInt(Math.ceil(Math.min(pick[1], 1e9)))
    return rate < 1n ? 1n : rate
  }

  /** Aborts requests in flight; later calls throw ChainUnavailableError */
  async close (): Promise<void> {
    this.shutdown.abort()
  }

  private scriptOf (address: string): string {
    if (typeof address !== 'string' || address.length === 0 || address.length > 100) { throw new TypeError('not a bitcoin address') }
    try {
      return Buffer.from(OutScript.encode(Address(this.network).decode(address))).toString('hex')
    } catch {
      throw new TypeError(`not a ${this.chain} address: ${address}`)
    }
  }

  private async utxoLists (addresses: string[]): Promise<Utxo[][]> {
    if (!Array.isArray(addresses)) { throw new TypeError('addresses must be an array') }
    if (addresses.length > MAX_ADDRESSES) { throw new RangeError(`at most ${MAX_ADDRESSES} addresses per call`) }
    const scripts = addresses.map(a => this.scriptOf(a))
    return mapLimit(addresses, CONCURRENCY, async (address, i) => {
      const path = `address/${encodeURIComponent(address)}/utxo`
      const list = await this.getJson(path)
      if (!Array.isArray(list)) { throw this.garbage(path) }
      return list.map(u => {
        const utxo = parseUtxo(u, scripts[i])
        if (utxo == null) { throw this.garbage(path) }
        return utxo
      })
    })
  }

  private async getJson (path: string): Promise<unknown> {
    const { text } = await this.get(path)
    try {
      return JSON.parse(text)
    } catch {
      throw this.garbage(path)
    }
  }

  /** GET that must answer 200 */
  private async get (path: string): Promise<Reply> {
    const r = await this.request(path)
    if (r.status !== 200) { throw this.failed(path, r.status, r.text) }
    return r
  }

  private async request (path: string, init: { method?: string, body?: string, headers?: Record<string, string> } = {}): Promise<Reply> {
    if (this.shutdown.signal.aborted) { throw new ChainUnavailableError(`${this.description}: closed`) }
    const u = new URL(path, this.base)
    for (const [k, v] of this.query) { u.searchParams.append(k, v) }
    const url = u.toString()
    try {
      const res = await fetch(url, {
        method: init.method ?? 'GET',
        body: init.body,
        headers: init.headers,
        signal: AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.timeoutMs)]),
        redirect: 'error'
      })
      return { status: res.status, text: await readBoundedText(res, this.maxResponseBytes) }
    } catch (err: any) {
      if (err instanceof ChainUnavailableError) { throw new ChainUnavailableError(`${this.description}: ${path}: ${err.message}`) }
      throw new ChainUnavailableError(`${this.description}: ${path} failed: ${describeFetchError(err, this.timeoutMs)}`)
    }
  }

  private failed (what: string, status: number, text: string): ChainUnavailableError {
    return new ChainUnavailableError(`${this.description}: ${what} answered HTTP ${status}: ${printable(text)}`)
  }

  private garbage (what: string): ChainUnavailableError {
    return new ChainUnavailableError(`${this.description}: ${what} answered something unexpected`)
  }
}

const TXID = /^[0-9a-fA-F]{64}$/
const HEX = /^(?:[0-9a-fA-F]{2})+$/

/**
 * A 400 answer to POST /tx: electrs passes bitcoind's error on as
 * `sendrawtransaction RPC error: {"code":-26,"message":"txn-mempool-conflict"}`
 * (older servers and proxies: just the text).
 */
export function broadcastRejection (text: string): TxRejectedError {
  const body = text.slice(0, 2000)
  const at = body.indexOf('{')
  if (at >= 0) {
    try {
      const e = JSON.parse(body.slice(at)) as { code?: unknown, message?: unknown }
      if (typeof e.message === 'string') { return rejectionOf(typeof e.code === 'number' ? e.code : 0, e.message) }
    } catch {
      // not JSON after all: use the text
    }
  }
  const message = body.replace(/^sendrawtransaction RPC error:\s*/, '').trim()
  return rejectionOf(0, message === '' ? 'rejected' : message)
}

function parseUtxo (u: unknown, script: string): Utxo | undefined {
  const o = u as { txid?: unknown, vout?: unknown, value?: unknown, status?: unknown } | null
  if (o == null || typeof o !== 'object') { return undefined }
  if (typeof o.txid !== 'string' || !TXID.test(o.txid)) { return undefined }
  if (!Number.isSafeInteger(o.vout) || (o.vout as number) < 0) { return undefined }
  if (!Number.isSafeInteger(o.value) || (o.value as number) < 0) { return undefined }
  const height = parseStatus(o.status)
  if (height === undefined) { return undefined }
  return { txid: o.txid.toLowerCase(), vout: o.vout as number, value: BigInt(o.value as number), script, height: height ?? undefined }
}

/** a status object: its block height, null while unconfirmed, undefined when malformed */
function parseStatus (s: unknown): number | null | undefined {
  const o = s as { confirmed?: unknown, block_height?: unknown } | null
  if (o == null || typeof o !== 'object' || typeof o.confirmed !== 'boolean') { return undefined }
  if (!o.confirmed) { return null }
  if (!Number.isSafeInteger(o.block_height) || (o.block_height as number) < 0) { return undefined }
  return o.block_height as number
}

interface EsploraOut { scriptpubkey?: unknown, value?: unknown }

/** a page of /address/:a/txs as AddressTx, undefined when malformed */
function parseTxList (list: unknown, script: string): AddressTx[] | undefined {
  if (!Array.isArray(list)) { return undefined }
  const out: AddressTx[] = []
  for (const t of list) {
    const tx = t as { txid?: unknown, vin?: unknown, vout?: unknown, status?: unknown } | null
    if (tx == null || typeof tx !== 'object' || typeof tx.txid !== 'string' || !TXID.test(tx.txid)) { return undefined }
    if (!Array.isArray(tx.vin) || !Array.isArray(tx.vout)) { return undefined }
    const height = parseStatus(tx.status)
    if (height === undefined) { return undefined }
    let delta = 0n
    for (const o of tx.vout as EsploraOut[]) {
      if (o?.scriptpubkey === script) {
        if (!Number.isSafeInteger(o.value)) { return undefined }
        delta += BigInt(o.value as number)
      }
    }
    for (const i of tx.vin as Array<{ prevout?: EsploraOut | null }>) {
      const p = i?.prevout
      if (p != null && p.scriptpubkey === script) {
        if (!Number.isSafeInteger(p.value)) { return undefined }
        delta -= BigInt(p.value as number)
      }
    }
    out.push({ txid: tx.txid.toLowerCase(), height: height ?? undefined, delta })
  }
  return out
}

function printable (text: string): string {
  return text.slice(0, 200).replace(/[^\x20-\x7e]/g, '?')
}

async function mapLimit<T, R> (items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}
