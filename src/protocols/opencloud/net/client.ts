import '../../../util/uint64.js'
import { AbortError, NotStartedError, TimeoutError } from '@libp2p/interface'
import { isMultiaddr, multiaddr } from '@multiformats/multiaddr'
import { MAX_FRAME_SIZE, MAX_NONCE_RETRIES, MAX_STREAMS_PER_PEER, MESSAGE_TIMEOUT, MAX_CREDENTIALS, PROTOCOL } from '../api/constants.js'
import { InvalidResponseSignatureError, OpenCloudStatusError, ProtocolViolationError, StreamNotUsableError, StreamPoolTimeoutError } from '../api/errors.js'
import { openCloudId, openCloudVerifier, requestDigest, responseDigest, verifyAll } from '../api/signing.js'
import { statusPath } from '../api/status.js'
import { PaymentType, Reason, Request, Response, Status } from '../pb/opencloud.js'
import { encodeRequest } from './encode.js'
import { deadline, FrameReader } from './framing.js'
import { checkLimits } from './limited.js'
import type { CallRequest, CallResult, CallTarget } from './call-types.js'
import type { CredentialVerifier, Signer } from '../api/signing.js'
import type { AbortOptions, Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { ConnectionManager } from '@libp2p/interface-internal'
import type { Multiaddr } from '@multiformats/multiaddr'

export type { CallRequest, CallResult, CallTarget } from './call-types.js'
export { verifyResponse } from './evidence.js'

export interface ClientInit {
  connectionManager: ConnectionManager
  signers: Signer[]
  log: Logger
  maxFrameSize?: number
  /**
   * Time to write one request, and the longest wait for a free stream; the
   * response must arrive within twice this (the server may take up to one
   * message timeout to process the request and one to send the answer)
   *
   * @default 30_000
   */
  messageTimeout?: number
  maxStreamsPerPeer?: number
  /**
   * Verify the server's signature on every response as it arrives. The
   * transport (noise) already authenticates the server, so the signature is
   * only needed as evidence for third parties: by default it is kept on the
   * result and checked with `verifyResponse()` when it is used as evidence.
   *
   * @default false
   */
  verifyResponses?: boolean
  /** close a pooled stream unused for this long; keep it below the server's idle timeout @default 20_000 */
  idleStreamTimeout?: number
}

interface Session {
  stream: Stream
  frames: FrameReader
  idleTimer?: ReturnType<typeof setTimeout>
  /** times out exchanges of calls without a signal (one for all: a stream that timed out is discarded) */
  timeouts?: AbortController
  /** removes the listeners that evict the session while it is idle */
  unwatch?(): void
}

interface PeerState {
  idle: Session[]
  /** streams open to the peer: idle ones plus those in use */
  open: number
  /** calls in progress */
  active: number
  /** nonces the peer handed out, newest last */
  nonces: Uint8Array[]
  /** the peer's OpenCloud ID: the audience of requests to it */
  audience: string
  /** calls waiting for a stream, oldest first */
  waiters: Array<() => void>
}

/** Nonces kept per peer (servers keep 64 outstanding per peer) */
const MAX_POOLED_NONCES = 32
/** Peers whose nonces are remembered; an unused peer is forgotten first */
const MAX_PEER_STATES = 1024
/** Times a request is resent on a fresh stream because the pooled one was found closed before sending */
const MAX_STALE_RETRIES = 2

/** protons types bytes fields as Uint8Array<ArrayBuffer> */
type Bytes = Uint8Array<ArrayBuffer>

const EMPTY = new Uint8Array(0)

function usable (stream: Stream): boolean {
  return stream.status === 'open' &&
    stream.writeStatus === 'writable' &&
    stream.readStatus === 'readable' &&
    stream.remoteWriteStatus === 'writable' &&
    stream.remoteReadStatus === 'readable'
}

/**
 * Sends OpenCloud requests: signs them, keeps a small pool of streams per
 * peer (several exchanges per stream), keeps the nonces servers hand out and
 * retries transparently on refresh-nonce.
 *
 * A request is sent again on a fresh stream only when the pooled stream was
 * found closed before any byte of it was written; once written, a failure is
 * reported, because the server may have served it.
 */
export { LimitedConnectionError } from './limited.js'

export class OpenCloudClient {
  private readonly init: ClientInit
  private readonly peers = new Map<string, PeerState>()
  /** multiaddr strings already dialled → the peer they reached (bounded) */
  private readonly targets = new Map<string, PeerId>()
  private readonly maxFrameSize: number
  private readonly messageTimeout: number
  private readonly maxStreamsPerPeer: number
  private readonly verifyResponses: boolean
  private readonly idleStreamTimeout: number
  private readonly verifiers: CredentialVerifier[] = [openCloudVerifier]
  /** this node's OpenCloud ID: the credential of unsigned requests, the audience of responses */
  private readonly ownCredential: string
  private closed = false

  constructor (init: ClientInit) {
    this.init = init
    this.maxFrameSize = init.maxFrameSize ?? MAX_FRAME_SIZE
    this.messageTimeout = init.messageTimeout ?? MESSAGE_TIMEOUT
    this.maxStreamsPerPeer = init.maxStreamsPerPeer ?? MAX_STREAMS_PER_PEER
    this.verifyResponses = init.verifyResponses ?? false
    this.idleStreamTimeout = init.idleStreamTimeout ?? 20_000
    this.ownCredential = init.signers[0]?.credential ?? ''
  }

  /**
   * Calls `service.method` on `target` and returns the server's answer,
   * whatever its status. Throws only when no valid answer could be had
   * (dial failure, timeout, protocol violation, invalid server signature).
   *
   * @example
   * ```ts
   * const res = await client.call('/ip4/127.0.0.1/tcp/4001/p2p/12D3…', { service: 'sha256', method: 'hash', body })
   * if (res.ok) console.log(Buffer.from(res.body).toString('hex'))
   * ```
   */
  async call (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<CallResult> {
    if (this.closed) { throw new NotStartedError('the OpenCloud client is closed') }
    const connection = await this.connect(target, options)
    // a relayed connection carries little: say so before sending what cannot fit
    checkLimits(connection, call.body?.byteLength ?? 0)
    const peer = connection.remotePeer
    const key = peer.toString()
    const state = this.peerState(key)
    state.active++
    const held: { session?: Session } = {}
    try {
      held.session = await this.acquire(connection, state, options)
      // the nonce is taken once a stream is ready, so it is fresh when it is
      // sent (the server keeps only the newest nonces of a peer)
      let sign = this.mustSign(call)
      const signResponse = call.signResponse ?? this.verifyResponses
      let request = await this.buildRequest(call, state.nonces.pop(), state.audience, sign, signResponse)
      for (let nonceRetries = 0; ;) {
        const response = await this.send(target, connection, state, held, request, options)
        await this.checkResponse(response, state.audience, signResponse)
        if (response.status === Status.REFRESH_NONCE && nonceRetries < MAX_NONCE_RETRIES && response.nextNonce.byteLength > 0) {
          // retry at once, on the same stream, with the nonce just issued
          nonceRetries++
          request = await this.buildRequest(call, response.nextNonce, state.audience, sign, signResponse)
          continue
        }
        if (!sign && response.status === Status.ACCESS_DENIED && response.reason === Reason.REASON_SIGNATURE_REQUIRED && response.nextNonce.byteLength > 0) {
          // this server's policy wants this call signed: once more, signed
          sign = true
          request = await this.buildRequest(call, response.nextNonce, state.audience, sign, signResponse)
          continue
        }
        if (response.nextNonce.byteLength > 0) {
          state.nonces.push(response.nextNonce)
          if (state.nonces.length > MAX_POOLED_NONCES) { state.nonces.shift() }
        }
        return {
          ok: response.status === Status.OK,
          status: response.status,
          path: statusPath(response.status),
          detail: response.detail,
          reason: response.reason,
          body: response.body,
          acceptablePayment: response.acceptablePayment,
          signer: response.id[0] ?? '',
          signed: response.sig.length > 0,
          peer,
          response
        }
      }
    } finally {
      if (held.session != null) { this.release(held.session, state) }
      state.active--
    }
  }

  /**
   * One exchange on the held stream. When that stream turns out closed
   * before any byte was written, the same request (same nonce) goes on a
   * fresh stream; any other failure drops the stream and is thrown.
   */
  private async send (target: CallTarget, connection: Connection, state: PeerState, held: { session?: Session }, request: Request, options: AbortOptions): Promise<Response> {
    for (let staleRetries = 0; ; staleRetries++) {
      if (held.session == null) {
        if (connection.status !== 'open') { connection = await this.connect(target, options) }
        held.session = await this.acquire(connection, state, options)
      }
      const session = held.session
      try {
        return await this.exchange(session, request, options)
      } catch (err: any) {
        held.session = undefined
        this.discard(session, state, err)
        if (err.name !== StreamNotUsableError.name || staleRetries >= MAX_STALE_RETRIES) { throw err }
      }
    }
  }

  /** Like `call`, but throws OpenCloudStatusError unless the status is ok, and returns the body */
  async callOk (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<Uint8Array> {
    const res = await this.call(target, call, options)
    if (!res.ok) { throw new OpenCloudStatusError(res.response) }
    return res.body
  }

  /** Accepts calls again after `close()` (the libp2p node was restarted) */
  reopen (): void {
    this.closed = false
  }

  /** Closes every pooled stream; calls in progress finish, new calls are refused */
  async close (): Promise<void> {
    this.closed = true
    const all: Session[] = []
    for (const state of this.peers.values()) {
      for (const s of state.idle) {
        clearTimeout(s.idleTimer)
        s.unwatch?.()
      }
      all.push(...state.idle)
      state.idle = []
      for (const w of state.waiters.splice(0)) { w() }
    }
    this.peers.clear()
    await Promise.all(all.map(async s => {
      await s.stream.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { s.stream.abort(new AbortError('client closed')) })
    }))
  }

  /**
   * Whether a call must be signed (docs/protocol.md "Signatures"): a payment
   * or promise, or any credential beyond the node's own OpenCloud ID, is
   * evidence and is signed; otherwise the noise channel authenticates the
   * caller and the signature is left out unless asked for
   */
  private mustSign (call: CallRequest): boolean {
    return call.sign === true ||
      (call.paymentType ?? PaymentType.PAYMENT_NONE) !== PaymentType.PAYMENT_NONE ||
      (call.signers != null && call.signers.length > 0) ||
      this.init.signers.length !== 1
  }

  private async buildRequest (call: CallRequest, nonce: Uint8Array | undefined, audience: string, sign: boolean, signResponse: boolean): Promise<Request> {
    const signers = call.signers == null || call.signers.length === 0 ? this.init.signers : [...this.init.signers, ...call.signers]
    const request: Request = {
      id: sign ? signers.map(s => s.credential) : [this.ownCredential],
      sig: [],
      nonce: (nonce ?? EMPTY) as Bytes,
      service: call.service,
      method: call.method,
      args: call.args ?? [],
      paymentType: call.paymentType ?? PaymentType.PAYMENT_NONE,
      payment: call.payment,
      body: (call.body ?? EMPTY) as Bytes,
      audience,
      signResponse
    }
    if (sign) {
      // the caller's hash of the body (its content id) serves the signature: a 4 MiB body is hashed once
      const d = requestDigest(request, call.bodyHash?.byteLength === 32 ? call.bodyHash : undefined)
      request.sig = await Promise.all(signers.map(async s => s.sign(d) as Promise<Bytes>))
    }
    return request
  }

  /** One request/response exchange; StreamNotUsableError means nothing was written */
  private async exchange (session: Session, request: Request, options: AbortOptions): Promise<Response> {
    // a large body is framed as it is, not copied into an encoding buffer
    const encoded = encodeRequest(request)
    if (encoded.byteLength > this.maxFrameSize) { throw new RangeError(`request of ${encoded.byteLength} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`) }
    if (!usable(session.stream)) { throw new StreamNotUsableError('pooled stream closed before the request was sent') }
    // one timer for the whole exchange: writing the request, the server's work, reading the response
    const limit = options.signal != null ? deadline(2 * this.messageTimeout, () => new TimeoutError('no response in time'), options.signal) : this.sessionDeadline(session)
    let frame
    try {
      try {
        await session.frames.write(encoded, { signal: limit.signal })
      } catch (err: any) {
        // send() refuses synchronously, before queueing any byte, when the stream is no longer writable
        if (err.name === 'StreamStateError') { throw new StreamNotUsableError('stream closed before the request was sent') }
        throw err
      }
      frame = await session.frames.read({ signal: limit.signal })
    } finally {
      limit.clear()
    }
    if (frame == null) { throw new ProtocolViolationError('stream closed without a response') }
    try {
      return Response.decode(frame, { limits: { id: MAX_CREDENTIALS, sig: MAX_CREDENTIALS } })
    } catch (err: any) {
      throw new ProtocolViolationError(`malformed response: ${err.message}`)
    }
  }

  /** A deadline for one exchange on `session` that costs a timer, not a controller and its signal */
  private sessionDeadline (session: Session): { signal: AbortSignal, clear(): void } {
    const controller = session.timeouts ??= new AbortController()
    const timer = setTimeout(() => { controller.abort(new TimeoutError('no response in time')) }, 2 * this.messageTimeout)
    return { signal: controller.signal, clear: () => { clearTimeout(timer) } }
  }

  /**
   * The response must come from the peer we are connected to, be addressed
   * to this node, carry the signature asked for and, with verifyResponses,
   * verify
   */
  private async checkResponse (response: Response, expected: string, signResponse: boolean): Promise<void> {
    if (response.id[0] !== expected) {
      throw new InvalidResponseSignatureError(`response is not signed by ${expected}`)
    }
    if (response.audience !== this.ownCredential) {
      throw new InvalidResponseSignatureError(`response is addressed to ${response.audience.slice(0, 80)}, not to ${this.ownCredential}`)
    }
    if (signResponse && response.sig.length === 0) {
      throw new InvalidResponseSignatureError('the response is not signed, though a signature was asked for')
    }
    if (this.verifyResponses && response.sig.length > 0) {
      const bad = await verifyAll(this.verifiers, response.id, response.sig, responseDigest(response))
      if (bad >= 0) { throw new InvalidResponseSignatureError(`response signature ${bad} does not verify`) }
    }
  }

  private async connect (target: CallTarget, options: AbortOptions): Promise<Connection> {
    const known = typeof target === 'string' ? this.targets.get(target) : undefined
    const t: PeerId | Multiaddr = known ?? (typeof target === 'string' ? multiaddr(target) : target)
    if (!isMultiaddr(t) && typeof (t as PeerId).toMultihash !== 'function') {
      throw new TypeError('target must be a PeerId, a Multiaddr or a multiaddr string')
    }
    // fast path: an open connection to the peer the target names (the
    // connection manager parses a multiaddr's peer id on every call)
    const key = typeof target === 'string' ? target : isMultiaddr(t) ? t.toString() : undefined
    const peer = known ?? (isMultiaddr(t) ? (key == null ? undefined : this.targets.get(key)) : t as PeerId)
    if (peer != null) {
      const open = this.init.connectionManager.getConnections(peer).find(c => c.status === 'open' && c.limits == null)
      if (open != null) { return open }
    }
    const connection = await this.init.connectionManager.openConnection(known != null ? multiaddr(target as string) : t, options)
    if (key?.includes('/p2p/') === true) {
      this.targets.set(key, connection.remotePeer)
      if (this.targets.size > MAX_PEER_STATES) { this.targets.delete(this.targets.keys().next().value as string) }
    }
    return connection
  }

  private peerState (key: string): PeerState {
    let state = this.peers.get(key)
    if (state == null) {
      state = { idle: [], open: 0, active: 0, nonces: [], waiters: [], audience: openCloudId(key) }
      this.peers.set(key, state)
      if (this.peers.size > MAX_PEER_STATES) {
        // forget the oldest peer with nothing in flight (its nonces only cost a refresh-nonce)
        for (const [k, s] of this.peers) {
          if (s.open === 0 && s.active === 0 && k !== key) {
            this.peers.delete(k)
            break
          }
        }
      }
    }
    return state
  }

  /**
   * A stream for one exchange: an idle pooled one, a new one while fewer
   * than maxStreamsPerPeer are open, or the next one released. The wait is
   * bounded by the caller's signal and by the message timeout.
   */
  private async acquire (connection: Connection, state: PeerState, options: AbortOptions): Promise<Session> {
    // the usual case, an idle pooled stream: no wait, so no deadline
    const ready = this.closed || options.signal?.aborted === true ? undefined : state.idle.at(-1)
    if (ready != null && usable(ready.stream)) {
      // its eviction listeners and idle timer stay: they ignore a session in use
      state.idle.pop()
      return ready
    }
    const wait = deadline(this.messageTimeout, () => new StreamPoolTimeoutError(`no stream to ${connection.remotePeer.toString()} became free in time`), options.signal)
    try {
      while (true) {
        if (this.closed) { throw new NotStartedError('the OpenCloud client is closed') }
        wait.signal?.throwIfAborted()
        const idle = state.idle.pop()
        if (idle != null) {
          if (usable(idle.stream)) { return idle }
          clearTimeout(idle.idleTimer)
          idle.unwatch?.()
          state.open--
          idle.stream.abort(new AbortError('stale stream'))
          continue
        }
        if (state.open < this.maxStreamsPerPeer) {
          state.open++
          try {
            // calls run over relayed (limited) connections too, within the relay's limits
            const stream = await connection.newStream(PROTOCOL, { signal: wait.signal, runOnLimitedConnection: true })
            return { stream, frames: new FrameReader(stream, { maxFrameSize: this.maxFrameSize }) }
          } catch (err) {
            state.open--
            this.wake(state)
            throw err
          }
        }
        await this.waitForStream(state, wait.signal)
      }
    } finally {
      wait.clear()
    }
  }

  /** Resolves when a stream is released; an aborted wait leaves the queue */
  private async waitForStream (state: PeerState, signal?: AbortSignal): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      const onAbort = (): void => {
        const i = state.waiters.indexOf(waiter)
        if (i >= 0) { state.waiters.splice(i, 1) }
        reject(signal?.reason)
      }
      state.waiters.push(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private wake (state: PeerState): void {
    state.waiters.shift()?.()
  }

  /** Returns a stream to the pool after a complete exchange */
  private release (session: Session, state: PeerState): void {
    if (this.closed || !usable(session.stream)) {
      clearTimeout(session.idleTimer)
      session.unwatch?.()
      state.open--
      session.stream.abort(new AbortError('stream not reusable'))
      this.wake(state)
      return
    }
    if (session.unwatch != null) { // watched since its first release: the idle timer restarts from now
      session.idleTimer?.refresh()
      state.idle.push(session)
      this.wake(state)
      return
    }
    // once per stream, not per call: evicts it when idle and closed by the server or unused too long
    const evict = (): void => {
      const i = state.idle.indexOf(session)
      if (i < 0) { return }
      state.idle.splice(i, 1)
      clearTimeout(session.idleTimer)
      session.unwatch?.()
      state.open--
      if (session.stream.status === 'open') {
        session.stream.close({ signal: AbortSignal.timeout(1_000) }).catch(() => { session.stream.abort(new AbortError('idle')) })
      }
      this.wake(state)
    }
    // the server closed or reset it while idle: drop it at once
    session.stream.addEventListener('close', evict)
    session.stream.addEventListener('remoteCloseWrite', evict)
    session.unwatch = () => {
      session.stream.removeEventListener('close', evict)
      session.stream.removeEventListener('remoteCloseWrite', evict)
      session.unwatch = undefined
    }
    session.idleTimer = setTimeout(evict, this.idleStreamTimeout)
    session.idleTimer.unref?.()
    state.idle.push(session)
    this.wake(state)
  }

  /** Drops a stream after a failed exchange */
  private discard (session: Session, state: PeerState, err: unknown): void {
    clearTimeout(session.idleTimer)
    session.unwatch?.()
    state.open--
    session.stream.abort(err instanceof Error ? err : new AbortError(String(err)))
    this.wake(state)
  }
}
