import { request } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { CHEAPEST_ATTEMPTS } from '../market/select.js'
import { API_PREFIX } from './api.js'
import { CONTROL_HOST, readControlFiles } from './files.js'
import type { CallJson, CallRequestJson, ErrorJson, SentJson, WalletJson, WalletTxJson } from './api.js'
import type { ControlFile } from './files.js'
import type { FileStatus, FileSummary } from '../files/index.js'
import type { ReachabilityStatus } from '../node/nat.js'
import type { MarketJson, SellersJson } from '../node/reports.js'
import type { ReputationJson } from '../reputation/json.js'
import type { IncomingMessage } from 'node:http'
import type { Writable } from 'node:stream'

/** The control API answered with an error (or not at all) */
export class ControlApiError extends Error {
  static override name = 'ControlApiError'
  override name = 'ControlApiError'
  /** HTTP status, 0 when there was no answer */
  readonly status: number
  /** the error type of docs/control-api.md, or `unreachable` */
  readonly type: string

  constructor (status: number, type: string, message: string) {
    super(message)
    this.status = status
    this.type = type
  }
}

/** GET /v1/node */
export interface NodeJson {
  version: string
  pid: number
  startedAt: string
  peerId: string
  openCloudId: string
  addresses: string[]
  /** where the node listens, loopback included (absent from older nodes) */
  listening?: string[]
  /** whether peers can dial the node (docs/nat.md); absent from nodes before it was added */
  reachability?: ReachabilityStatus
  services: Array<{ name: string, version: string, description: string }>
  stats: Record<string, unknown>
}

/** GET /v1/peers */
export interface PeersJson {
  peers: Array<{
    peerId: string
    openCloudId: string
    protocols: string[]
    connections: Array<{ remoteAddr: string, direction: string, status: string, opened: number, streams: number, rtt?: number }>
  }>
}

/** POST /v1/files/put query */
export interface PutFileRequest {
  /** K/N */
  redundancy?: string
  /** lease length, seconds */
  duration?: number
  /** most paid or promised per piece, sats */
  maxPrice?: bigint
  name?: string
}

/** The answer of POST /v1/files/put (sats as a decimal string) */
export interface PutFileJson {
  id: string
  size: number
  k: number
  n: number
  segments: number
  sellers: string[]
  cost: string
  expiry?: string
}

/** GET /v1/sellers query */
export interface SellersRequest {
  service: string
  /** rank by this method's price */
  method?: string
  /** units of service the price is for */
  units?: bigint
  /** deadline of the DHT lookup (ms, at most 120000) @default 10000 */
  timeout?: number
  /** at most this many sellers (1–20) */
  limit?: number
}

/** GET /v1/market query */
export interface MarketRequest {
  service?: string
  method?: string
  /** units of service the price column is for */
  units?: bigint
}

export interface ControlClientInit {
  port: number
  token: string
  /** @default 127.0.0.1 */
  host?: string
  /** Largest answer read (bytes) @default 16 MiB */
  maxResponseSize?: number
}

export interface RequestOptions {
  /** ms @default 10_000 */
  timeout?: number
}

/** Talks to a running node's control API */
export class ControlClient {
  readonly port: number
  readonly host: string
  private readonly token: string
  private readonly maxResponseSize: number

  constructor (init: ControlClientInit) {
    this.port = init.port
    this.host = init.host ?? CONTROL_HOST
    this.token = init.token
    this.maxResponseSize = init.maxResponseSize ?? 16 * 1024 * 1024
  }

  async node (options: RequestOptions = {}): Promise<NodeJson> {
    return this.request('GET', '/node', undefined, options) as Promise<NodeJson>
  }

  async peers (options: RequestOptions = {}): Promise<PeersJson> {
    return this.request('GET', '/peers', undefined, options) as Promise<PeersJson>
  }

  /** The sellers of a service the node finds (DHT and price book), cheapest first */
  async sellers (q: SellersRequest): Promise<SellersJson> {
    const p = new URLSearchParams({ service: q.service })
    if (q.method != null) { p.set('method', q.method) }
    if (q.units != null) { p.set('units', q.units.toString()) }
    if (q.timeout != null) { p.set('timeout', String(q.timeout)) }
    if (q.limit != null) { p.set('limit', String(q.limit)) }
    // the node bounds the lookup by q.timeout; allow a little more for HTTP
    return this.request('GET', `/sellers?${p.toString()}`, undefined, { timeout: (q.timeout ?? 10_000) + 5_000 }) as Promise<SellersJson>
  }

  /** The node's price book summary */
  async market (q: MarketRequest = {}, options: RequestOptions = {}): Promise<MarketJson> {
    const p = new URLSearchParams()
    if (q.service != null) { p.set('service', q.service) }
    if (q.method != null) { p.set('method', q.method) }
    if (q.units != null) { p.set('units', q.units.toString()) }
    return this.request('GET', `/market${p.size > 0 ? `?${p.toString()}` : ''}`, undefined, options) as Promise<MarketJson>
  }

  /** `GET /v1/reputation`: one peer's trust and why, or every peer known */
  async reputation (peer?: string, options: RequestOptions = {}): Promise<ReputationJson> {
    return this.request('GET', `/reputation${peer != null ? `?peer=${encodeURIComponent(peer)}` : ''}`, undefined, options) as Promise<ReputationJson>
  }

  /**
   * Makes an OpenCloud call through the node (its identity, its connections).
   * Resolves with the response whatever its status; rejects with
   * ControlApiError when the node could not get an answer (`transport`,
   * `timeout`) or refused the request.
   */
  async call (call: CallRequestJson): Promise<CallJson> {
    // the node bounds the call by call.timeout (with cheapest: the lookup, then each seller tried); allow a little more for HTTP
    const timeout = call.cheapest === true
      ? (call.lookupTimeout ?? 10_000) + CHEAPEST_ATTEMPTS * (call.timeout ?? 30_000)
      : call.timeout ?? 30_000
    return this.request('POST', '/call', call, { timeout: timeout + 5_000 }) as Promise<CallJson>
  }

  /** GET /v1/wallet: chain, identity address, balances (sats as decimal strings) */
  async wallet (options: RequestOptions = {}): Promise<WalletJson> {
    return this.request('GET', '/wallet', undefined, options) as Promise<WalletJson>
  }

  /** POST /v1/wallet/address: a new receive address */
  async walletAddress (): Promise<{ address: string }> {
    return this.request('POST', '/wallet/address', {}) as Promise<{ address: string }>
  }

  /** POST /v1/wallet/send */
  async walletSend (address: string, amount: bigint, feeRate?: bigint): Promise<SentJson> {
    return this.request('POST', '/wallet/send', { address, amount: amount.toString(), ...(feeRate != null ? { feeRate: feeRate.toString() } : {}) }, { timeout: 60_000 }) as Promise<SentJson>
  }

  /** GET /v1/wallet/history */
  async walletHistory (limit?: number): Promise<{ transactions: WalletTxJson[] }> {
    return this.request('GET', `/wallet/history${limit != null ? `?limit=${limit}` : ''}`, undefined, { timeout: 60_000 }) as Promise<{ transactions: WalletTxJson[] }>
  }

  /** POST /v1/chain/mine (regtest) */
  async mine (blocks: number, address?: string): Promise<{ height: number, address: string }> {
    return this.request('POST', '/chain/mine', { blocks, ...(address != null ? { address } : {}) }, { timeout: 120_000 }) as Promise<{ height: number, address: string }>
  }

  /** GET /v1/files: the files the node keeps */
  async files (): Promise<{ files: FileSummary[] }> {
    return this.request('GET', '/files') as Promise<{ files: FileSummary[] }>
  }

  /** GET /v1/files/status: per segment, pieces held of n (with `check`, asked of the sellers now) */
  async fileStatus (id: string, check = true): Promise<FileStatus> {
    return this.request('GET', `/files/status?id=${encodeURIComponent(id)}&check=${String(check)}`, undefined, { timeout: 120_000 }) as Promise<FileStatus>
  }

  /** POST /v1/files/rm */
  /** POST /v1/files/restore: the files the seed's catalog on the network lists, written back to this node */
  async restoreFiles (): Promise<{ files: number, restored: string[] }> {
    return this.request('POST', '/files/restore', {}, { timeout: 180_000 }) as Promise<{ files: number, restored: string[] }>
  }

  async removeFile (id: string): Promise<{ id: string, deleted: number, failed: number }> {
    return this.request('POST', '/files/rm', { id }, { timeout: 300_000 }) as Promise<{ id: string, deleted: number, failed: number }>
  }

  /**
   * POST /v1/files/put: streams `source` to the node (never held whole) and
   * resolves with the stored file once the node has placed every segment.
   * `onSent` is told of the bytes handed to the node so far; the node reads
   * them as fast as it places them, so this is the upload's progress.
   */
  async putFile (source: AsyncIterable<Uint8Array>, q: PutFileRequest = {}, o: { onSent?(bytes: number): void, idleTimeout?: number } = {}): Promise<PutFileJson> {
    const p = new URLSearchParams()
    if (q.redundancy != null) { p.set('redundancy', q.redundancy) }
    if (q.duration != null) { p.set('duration', String(q.duration)) }
    if (q.maxPrice != null) { p.set('maxPrice', q.maxPrice.toString()) }
    if (q.name != null) { p.set('name', q.name) }
    const path = `/files/put${p.size > 0 ? `?${p.toString()}` : ''}`
    return new Promise((resolve, reject) => {
      let answered = false
      // a refusal (409…) comes before the whole file is sent, and the node then closes: a write
      // error may come just before its answer. Give the answer a moment to arrive first.
      const failed = (err: unknown): void => {
        if (answered) { return }
        setTimeout(() => { if (!answered) { reject(err) } }, 1_000).unref()
      }
      const req = this.open('POST', path, { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, o.idleTimeout ?? 300_000, failed, (res) => {
        answered = true
        this.readJson(res, reject, (v) => { resolve(v as PutFileJson) })
        // answered: stop sending (after the answer was read, so it settles the call first)
        res.once('end', () => { req.destroy() })
      })
      let sent = 0
      async function * counted (): AsyncGenerator<Uint8Array> {
        for await (const c of source) {
          sent += c.byteLength
          o.onSent?.(sent)
          yield c
        }
      }
      // a refusal may come before the whole body is sent: the answer's handler reports it
      pipeline(counted(), req).catch(() => {})
    })
  }

  /**
   * GET /v1/files/get: writes the file's bytes to `sink` as they come.
   * `onReceived` is told of the bytes so far and the file's size.
   */
  async getFile (id: string, sink: Writable, o: { onReceived?(bytes: number, size: number): void, maxPrice?: bigint, idleTimeout?: number } = {}): Promise<{ size: number }> {
    const path = `/files/get?id=${encodeURIComponent(id)}${o.maxPrice != null ? `&maxPrice=${o.maxPrice.toString()}` : ''}`
    return new Promise((resolve, reject) => {
      const req = this.open('GET', path, {}, o.idleTimeout ?? 300_000, reject, (res) => {
        if (res.statusCode !== 200) {
          this.readJson(res, reject, () => { reject(new ControlApiError(res.statusCode ?? 0, 'bad-answer', 'unexpected answer')) })
          return
        }
        const size = Number(res.headers['content-length'] ?? -1)
        let got = 0
        res.on('data', (c: Buffer) => {
          got += c.byteLength
          o.onReceived?.(got, size)
        })
        pipeline(res, sink, { end: false }).then(() => {
          if (got !== size) {
            reject(new ControlApiError(0, 'truncated', `the node sent ${got} of the file's ${size} bytes: a segment could not be fetched or decrypted (see the node's log)`))
            return
          }
          resolve({ size })
        }, (err: any) => { reject(new ControlApiError(0, 'truncated', `the download broke off after ${got} of ${size} bytes: ${String(err?.message ?? err)}`)) })
      })
      req.end()
    })
  }

  /** Opens a request whose body and answer the caller streams */
  private open (method: string, path: string, headers: Record<string, string>, idle: number, reject: (err: unknown) => void, onResponse: (res: IncomingMessage) => void): ReturnType<typeof request> {
    const req = request({
      host: this.host,
      port: this.port,
      method,
      path: `${API_PREFIX}${path}`,
      agent: false,
      headers: { authorization: `Bearer ${this.token}`, ...headers }
    }, onResponse)
    req.setTimeout(idle, () => {
      req.destroy(new ControlApiError(0, 'timeout', `the control API on port ${this.port} was silent for ${idle} ms`))
    })
    req.on('error', (err: any) => {
      reject(err instanceof ControlApiError ? err : new ControlApiError(0, 'unreachable', `cannot reach the control API on ${this.host}:${this.port}: ${err.code ?? err.message}`))
    })
    return req
  }

  /** Reads a JSON answer (bounded): `ok` with a 200's value, else rejects with its error */
  private readJson (res: IncomingMessage, reject: (err: unknown) => void, ok: (v: unknown) => void): void {
    const chunks: Buffer[] = []
    let size = 0
    res.on('data', (c: Buffer) => {
      size += c.byteLength
      if (size > this.maxResponseSize) {
        res.destroy()
        reject(new ControlApiError(0, 'too-large', `control API answer exceeds ${this.maxResponseSize} bytes`))
        return
      }
      chunks.push(c)
    })
    res.on('error', reject)
    res.on('end', () => {
      let value: any
      try {
        value = JSON.parse(Buffer.concat(chunks, size).toString('utf8'))
      } catch {
        reject(new ControlApiError(res.statusCode ?? 0, 'bad-answer', `the control API on port ${this.port} answered ${res.statusCode ?? '?'} with no JSON`))
        return
      }
      if (res.statusCode === 200) {
        ok(value)
      } else {
        const e = (value as ErrorJson)?.error
        reject(new ControlApiError(res.statusCode ?? 0, String(e?.type ?? 'unknown'), String(e?.message ?? `HTTP ${res.statusCode ?? '?'}`)))
      }
    })
  }

  /** One request; resolves with the parsed JSON of a 200 answer */
  /** A new one-time login URL of the node's dashboard */
  async dashboardLogin (): Promise<{ url: string }> {
    return await this.request('POST', '/dashboard/login', {}) as { url: string }
  }

  async request (method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<unknown> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
    const timeout = options.timeout ?? 10_000
    return new Promise((resolve, reject) => {
      const req = request({
        host: this.host,
        port: this.port,
        method,
        path: `${API_PREFIX}${path}`,
        agent: false,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(payload != null ? { 'content-type': 'application/json', 'content-length': payload.byteLength } : {})
        }
      }, (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          size += c.byteLength
          if (size > this.maxResponseSize) {
            req.destroy(new ControlApiError(0, 'too-large', `control API answer exceeds ${this.maxResponseSize} bytes`))
            return
          }
          chunks.push(c)
        })
        res.on('error', reject)
        res.on('end', () => {
          let value: any
          try {
            value = JSON.parse(Buffer.concat(chunks, size).toString('utf8'))
          } catch {
            reject(new ControlApiError(res.statusCode ?? 0, 'bad-answer', `the control API on port ${this.port} answered ${res.statusCode ?? '?'} with no JSON`))
            return
          }
          if (res.statusCode === 200) {
            resolve(value)
          } else {
            const e = (value as ErrorJson)?.error
            reject(new ControlApiError(res.statusCode ?? 0, String(e?.type ?? 'unknown'), String(e?.message ?? `HTTP ${res.statusCode ?? '?'}`)))
          }
        })
      })
      req.setTimeout(timeout, () => {
        req.destroy(new ControlApiError(0, 'timeout', `the control API on port ${this.port} did not answer within ${timeout} ms`))
      })
      req.on('error', (err: any) => {
        if (err instanceof ControlApiError) {
          reject(err)
        } else {
          reject(new ControlApiError(0, 'unreachable', `cannot reach the control API on ${this.host}:${this.port}: ${err.code ?? err.message}`))
        }
      })
      req.end(payload)
    })
  }
}

export type { WalletJson } from './api.js'

export interface RunningNode {
  client: ControlClient
  info: ControlFile
  node: NodeJson
}

function processAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err: any) {
    return err.code === 'EPERM'
  }
}

/**
 * Finds the node running for a data dir: reads control.json and the token and
 * asks the node who it is. Returns undefined when no node runs there (no
 * files, or stale files left by a process that is gone or a port that
 * refuses). Throws ControlApiError when something answers but refuses the
 * token or answers garbage.
 */
export async function findRunningNode (dataDir: string, options: RequestOptions = {}): Promise<RunningNode | undefined> {
  const files = await readControlFiles(dataDir)
  if (files == null) { return undefined }
  if (!processAlive(files.info.pid)) { return undefined }
  const client = new ControlClient({ port: files.info.port, token: files.token })
  try {
    const node = await client.node({ timeout: options.timeout ?? 5_000 })
    return { client, info: files.info, node }
  } catch (err) {
    if (err instanceof ControlApiError && err.type === 'unreachable') { return undefined }
    throw err
  }
}
