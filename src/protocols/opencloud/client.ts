import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { lpStream } from '@libp2p/utils'
import { MAX_FRAME_SIZE, MAX_NONCE_RETRIES, MAX_STREAMS_PER_PEER, MESSAGE_TIMEOUT, MAX_CREDENTIALS, PROTOCOL } from './constants.js'
import { InvalidResponseSignatureError, OpenCloudStatusError, ProtocolViolationError } from './errors.js'
import { PaymentType, Request, Response, Status } from './pb/opencloud.js'
import { openCloudId, openCloudVerifier, requestDigest, responseDigest, verifyAll } from './signing.js'
import { statusPath } from './status.js'
import type { Payment, AcceptablePayment } from './pb/opencloud.js'
import type { CredentialVerifier, Signer } from './signing.js'
import type { AbortOptions, Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Where to send a call: a peer id (dialled through the peer store) or a multiaddr */
export type CallTarget = PeerId | Multiaddr | string

export interface CallRequest {
  service: string
  method: string
  args?: string[]
  body?: Uint8Array
  paymentType?: PaymentType
  payment?: Payment
}

export interface CallResult {
  ok: boolean
  status: Status
  /** the spec's status path, e.g. `client-error/service-unsupported` */
  path: string
  detail: string
  body: Uint8Array
  acceptablePayment?: AcceptablePayment
  /** the server's OpenCloud ID (checked against the connection's peer) */
  signer: string
  peer: PeerId
  /** the whole signed response: evidence that can be shown to third parties */
  response: Response
}

export interface ClientInit {
  connectionManager: ConnectionManager
  signers: Signer[]
  log: Logger
  maxFrameSize?: number
  messageTimeout?: number
  maxStreamsPerPeer?: number
  /** verify the server's signature on every response @default true */
  verifyResponses?: boolean
  /** close a pooled stream unused for this long @default 20_000 */
  idleStreamTimeout?: number
}

interface Session {
  stream: Stream
  lp: ReturnType<typeof lpStream>
  idleTimer?: ReturnType<typeof setTimeout>
}

interface PeerState {
  idle: Session[]
  open: number
  nonces: Uint8Array[]
  waiters: Array<() => void>
}

const MAX_POOLED_NONCES = 32

/** protons types bytes fields as Uint8Array<ArrayBuffer> */
type Bytes = Uint8Array<ArrayBuffer>

/**
 * Sends OpenCloud requests: signs them, keeps a small pool of streams per
 * peer (several exchanges per stream), keeps the nonces servers hand out and
 * retries transparently on refresh-nonce.
 */
export class OpenCloudClient {
  private readonly init: ClientInit
  private readonly peers = new Map<string, PeerState>()
  private readonly maxFrameSize: number
  private readonly messageTimeout: number
  private readonly maxStreamsPerPeer: number
  private readonly verifyResponses: boolean
  private readonly idleStreamTimeout: number
  private readonly verifiers: CredentialVerifier[] = [openCloudVerifier]

  constructor (init: ClientInit) {
    this.init = init
    this.maxFrameSize = init.maxFrameSize ?? MAX_FRAME_SIZE
    this.messageTimeout = init.messageTimeout ?? MESSAGE_TIMEOUT
    this.maxStreamsPerPeer = init.maxStreamsPerPeer ?? MAX_STREAMS_PER_PEER
    this.verifyResponses = init.verifyResponses ?? true
    this.idleStreamTimeout = init.idleStreamTimeout ?? 20_000
  }

  /**
   * Calls `service.method` on `target` and returns the server's answer,
   * whatever its status. Throws only when no valid answer could be had
   * (dial failure, timeout, protocol violation).
   *
   * @example
   * ```ts
   * const res = await client.call('/ip4/127.0.0.1/tcp/4001/p2p/12D3…', { service: 'sha256', method: 'hash', body })
   * if (res.ok) console.log(Buffer.from(res.body).toString('hex'))
   * ```
   */
  async call (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<CallResult> {
    const connection = await this.connect(target, options)
    const peer = connection.remotePeer
    const key = peer.toString()
    const state = this.peerState(key)
    let session = await this.acquire(connection, state, options)
    try {
      for (let attempt = 0; ; attempt++) {
        const nonce = state.nonces.pop() ?? new Uint8Array()
        const request = await this.buildRequest(call, nonce)
        let response: Response
        try {
          response = await this.exchange(session, request, options)
        } catch (err) {
          this.discard(session, state, err)
          session = undefined as unknown as Session
          throw err
        }
        if (response.nextNonce.byteLength > 0) {
          state.nonces.push(response.nextNonce)
          if (state.nonces.length > MAX_POOLED_NONCES) state.nonces.shift()
        }
        await this.checkResponse(response, peer)
        if (response.status === Status.REFRESH_NONCE && attempt < MAX_NONCE_RETRIES) continue
        return {
          ok: response.status === Status.OK,
          status: response.status,
          path: statusPath(response.status),
          detail: response.detail,
          body: response.body,
          acceptablePayment: response.acceptablePayment,
          signer: response.id[0] ?? '',
          peer,
          response
        }
      }
    } finally {
      if (session != null) this.release(session, state)
    }
  }

  /** Like `call`, but throws OpenCloudStatusError unless the status is ok, and returns the body */
  async callOk (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<Uint8Array> {
    const res = await this.call(target, call, options)
    if (!res.ok) throw new OpenCloudStatusError(res.response)
    return res.body
  }

  /** Closes every pooled stream */
  async close (): Promise<void> {
    const all: Session[] = []
    for (const state of this.peers.values()) {
      all.push(...state.idle)
      state.idle = []
      for (const w of state.waiters.splice(0)) w()
    }
    this.peers.clear()
    await Promise.all(all.map(async s => {
      clearTimeout(s.idleTimer)
      await s.stream.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { s.stream.abort(new Error('client closed')) })
    }))
  }

  private async buildRequest (call: CallRequest, nonce: Uint8Array): Promise<Request> {
    const request: Request = {
      id: this.init.signers.map(s => s.credential),
      sig: [],
      nonce: nonce as Bytes,
      service: call.service,
      method: call.method,
      args: call.args ?? [],
      paymentType: call.paymentType ?? PaymentType.PAYMENT_NONE,
      payment: call.payment,
      body: (call.body ?? new Uint8Array()) as Bytes
    }
    const d = requestDigest(request)
    request.sig = await Promise.all(this.init.signers.map(async s => s.sign(d) as Promise<Bytes>))
    return request
  }

  private async exchange (session: Session, request: Request, options: AbortOptions): Promise<Response> {
    const signal = options.signal != null
      ? AbortSignal.any([options.signal, AbortSignal.timeout(this.messageTimeout)])
      : AbortSignal.timeout(this.messageTimeout)
    await session.lp.write(Request.encode(request), { signal })
    const frame = await session.lp.read({ signal })
    try {
      return Response.decode(frame, { limits: { id: MAX_CREDENTIALS, sig: MAX_CREDENTIALS } })
    } catch (err: any) {
      throw new ProtocolViolationError(`malformed response: ${err.message}`)
    }
  }

  /** The response must come from the peer we are connected to and, unless disabled, verify */
  private async checkResponse (response: Response, peer: PeerId): Promise<void> {
    const expected = openCloudId(peer)
    if (response.id[0] !== expected) {
      throw new InvalidResponseSignatureError(`response is not signed by ${expected}`)
    }
    if (this.verifyResponses) {
      const bad = await verifyAll(this.verifiers, response.id, response.sig, responseDigest(response))
      if (bad >= 0) throw new InvalidResponseSignatureError(`response signature ${bad} does not verify`)
    }
  }

  private async connect (target: CallTarget, options: AbortOptions): Promise<Connection> {
    let t: PeerId | Multiaddr
    if (typeof target === 'string') {
      t = multiaddr(target)
    } else {
      t = target
    }
    if (!isMultiaddr(t) && typeof (t as PeerId).toMultihash !== 'function') {
      throw new TypeError('target must be a PeerId, a Multiaddr or a multiaddr string')
    }
    return this.init.connectionManager.openConnection(t, options)
  }

  private peerState (key: string): PeerState {
    let state = this.peers.get(key)
    if (state == null) {
      state = { idle: [], open: 0, nonces: [], waiters: [] }
      this.peers.set(key, state)
    }
    return state
  }

  private async acquire (connection: Connection, state: PeerState, options: AbortOptions): Promise<Session> {
    while (true) {
      options.signal?.throwIfAborted()
      const idle = state.idle.pop()
      if (idle != null) {
        clearTimeout(idle.idleTimer)
        if (idle.stream.status === 'open' && idle.stream.writeStatus === 'writable' && idle.stream.readStatus === 'readable') return idle
        state.open--
        idle.stream.abort(new Error('stale stream'))
        continue
      }
      if (state.open < this.maxStreamsPerPeer) {
        state.open++
        try {
          const stream = await connection.newStream(PROTOCOL, options)
          return { stream, lp: lpStream(stream, { maxDataLength: this.maxFrameSize, maxBufferSize: this.maxFrameSize + 16 }) }
        } catch (err) {
          state.open--
          throw err
        }
      }
      // all streams busy: wait for one to be released (bounded by the caller's signal)
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => { reject(options.signal?.reason) }
        state.waiters.push(() => {
          options.signal?.removeEventListener('abort', onAbort)
          resolve()
        })
        options.signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  }

  private release (session: Session, state: PeerState): void {
    if (session.stream.status !== 'open') {
      state.open--
    } else {
      session.idleTimer = setTimeout(() => {
        const i = state.idle.indexOf(session)
        if (i >= 0) {
          state.idle.splice(i, 1)
          state.open--
          session.stream.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { session.stream.abort(new Error('idle')) })
        }
      }, this.idleStreamTimeout)
      session.idleTimer.unref?.()
      state.idle.push(session)
    }
    state.waiters.shift()?.()
  }

  private discard (session: Session, state: PeerState, err: unknown): void {
    state.open--
    session.stream.abort(err instanceof Error ? err : new Error(String(err)))
    state.waiters.shift()?.()
  }
}
