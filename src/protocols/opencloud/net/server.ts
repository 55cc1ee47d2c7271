import '../../../util/uint64.js'
import { AbortError } from '@libp2p/interface'
import { IDLE_TIMEOUT, MAX_CREDENTIALS, MAX_ARGS, MESSAGE_TIMEOUT, NONCE_LENGTH } from '../api/constants.js'
import { openCloudId, requestDigest, responseDigest, sha256 } from '../api/signing.js'
import { isReason, isStatus } from '../api/status.js'
import { TEMPLATE_METHODS } from '../api/template.js'
import { PaymentType, Reason, Request, Response, Status } from '../pb/opencloud.js'
import { encodeResponse } from './encode.js'
import { FrameReader } from './framing.js'
import { createPipeline, runPipeline } from './pipeline.js'
import type { BufferBudget } from './framing.js'
import type { NonceStore } from './nonce.js'
import type { PipelineInit } from './pipeline.js'
import type { Admission, FairScheduler, SchedulerStats } from './scheduler.js'
import type { CallState, Reply, Stage } from '../api/call.js'
import type { Signer } from '../api/signing.js'
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface'

export interface ServerInit extends PipelineInit {
  signers: Signer[]
  nonces: NonceStore
  maxFrameSize: number
  /** time to receive one frame once its first byte arrived, to process one request, to write one response @default 30_000 */
  messageTimeout?: number
  /** a stream with no request for this long is reset @default 60_000 */
  idleTimeout?: number
  /** bytes buffered from inbound streams, per peer and in total */
  budget?: BufferBudget
  /** shares the pipeline between peers; every frame takes a slot before it is decoded (scheduler.ts) */
  scheduler?: FairScheduler
  log: Logger
}

/** Counters exposed for tests, benchmarks and the control API */
export interface ServerStats {
  /** inbound streams handled since start */
  streams: number
  /** responses sent, by status name */
  requests: number
  byStatus: Record<string, number>
  /** responses by `service method status` (the node's own services and methods; any other is counted as `other`) */
  byCall?: Record<string, number>
  /** requests answered with server-error because something failed unexpectedly */
  errors: number
  /** streams ended because of a malformed, oversized, truncated or slow frame */
  badFrames: number
  /** streams reset because their peer held more unread bytes than its budget */
  overBudget: number
  /** bytes inbound streams hold unread right now (filled in by `OpenCloud.stats()`) */
  bufferedBytes?: number
  /** peers with outstanding nonces (filled in by `OpenCloud.stats()`) */
  noncePeers?: number
  /** the fair scheduler's queue and refusals (filled in by `OpenCloud.stats()`) */
  scheduler?: SchedulerStats
}

const CLOSE_TIMEOUT = 2_000

/** protons types bytes fields as Uint8Array<ArrayBuffer> */
type Bytes = Uint8Array<ArrayBuffer>

/** Why a stage's reply cannot be sent as it is, or undefined when it can */
function checkReply (reply: Reply, maxBodySize: number): string | undefined {
  if (reply == null || typeof reply !== 'object') { return 'no reply' }
  if (!isStatus(reply.status)) { return 'unknown status' }
  if (reply.body != null && !(reply.body instanceof Uint8Array)) { return 'body is not bytes' }
  if ((reply.body?.byteLength ?? 0) > maxBodySize) { return 'body over the limit' }
  if (reply.detail != null && typeof reply.detail !== 'string') { return 'detail is not a string' }
  if (reply.reason != null && !isReason(reply.reason)) { return 'unknown reason' }
  return undefined
}

/** The processing deadline passed */
class ProcessingTimeoutError extends Error {
  static override name = 'ProcessingTimeoutError'
  override name = 'ProcessingTimeoutError'
}

/** The stream closed while its request was being processed */
class StreamGoneError extends Error {
  static override name = 'StreamGoneError'
  override name = 'StreamGoneError'
}

/**
 * Serves OpenCloud on inbound streams: reads length-prefixed Requests,
 * runs each through the pipeline and writes one signed Response per Request
 * (lockstep), until the client closes its end or the stream stays idle too
 * long. Nothing a peer sends can make it throw: every failure is answered
 * with a status or ends that one stream.
 */
export class OpenCloudServer {
  private readonly init: ServerInit
  private readonly stages: Stage[]
  private readonly messageTimeout: number
  private readonly idleTimeout: number
  /** the credentials every response names, the server's OpenCloud ID first */
  private readonly credentials: string[]
  readonly stats: ServerStats = { streams: 0, requests: 0, byStatus: {}, errors: 0, badFrames: 0, overBudget: 0 }

  constructor (init: ServerInit) {
    this.init = init
    this.stages = createPipeline(init)
    this.messageTimeout = init.messageTimeout ?? MESSAGE_TIMEOUT
    this.idleTimeout = init.idleTimeout ?? IDLE_TIMEOUT
    this.credentials = init.signers.map(s => s.credential)
  }

  async handle (stream: Stream, connection: Connection): Promise<void> {
    const { log } = this.init
    const peer = connection.remotePeer
    // nonces are bound to this peer; every response on this stream is addressed to it
    const peerKey = peer.toString()
    const client = openCloudId(peerKey)
    const reader = new FrameReader(stream, { maxFrameSize: this.init.maxFrameSize, budget: this.init.budget, peer: peer.toString() })
    this.stats.streams++
    // one listener for the stream's life (not one per request): a close ends
    // a wait for the scheduler's slot and aborts the call in progress
    const closed = new AbortController()
    let current: CallAbort | undefined
    const onClosed = (): void => {
      closed.abort()
      current?.abort(new StreamGoneError('stream closed'))
    }
    stream.addEventListener('close', onClosed, { once: true })
    let slot: Admission | undefined
    try {
      while (true) {
        let frame
        try {
          frame = await reader.read({ idleTimeout: this.idleTimeout, messageTimeout: this.messageTimeout })
        } catch (err: any) {
          await this.endOnReadError(stream, reader, err, peer)
          return
        }
        if (frame == null) {
          // the client closed its end between requests: done
          await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) })
          return
        }

        // fair share: a slot in the pipeline before any decode or signature check
        const admission = await this.admit(peerKey, frame.byteLength, closed.signal)
        if (!admission.ok) {
          if (admission.why === 'aborted') {
            stream.abort(new StreamGoneError('stream closed while its request waited'))
            return
          }
          await this.writeReply(reader, { status: Status.RATE_LIMITED, reason: admission.why === 'in-flight' ? Reason.REASON_MAX_CONCURRENT : Reason.REASON_RATE_LIMIT, detail: admission.detail }, undefined, peerKey, client)
          continue
        }
        let request: Request | undefined
        let state: CallState | undefined
        let reply: Reply | undefined
        slot = admission
        try {
          request = Request.decode(frame, { limits: { id: MAX_CREDENTIALS + 1, sig: MAX_CREDENTIALS + 1, args: MAX_ARGS + 1 } })
        } catch {
          request = undefined
        }
        if (request == null) {
          reply = { status: Status.BAD_REQUEST, detail: 'frame is not a valid OpenCloud request' }
        } else {
          const abort = current = new CallAbort()
          state = callState(peer, request, abort)
          reply = await this.process(state, abort)
          current = undefined
          if (reply == null) {
            // the stream went away while the request was processed
            stream.abort(new StreamGoneError('stream closed during processing'))
            return
          }
        }
        // writing the response waits on the peer: it holds no slot
        admission.release()
        await this.writeReply(reader, reply, state, peerKey, client)
      }
    } catch (err: any) {
      log('stream from %p ended with error - %e', peer, err)
      stream.abort(err)
    } finally {
      if (slot?.ok === true) { slot.release() }
      stream.removeEventListener('close', onClosed)
      reader.release()
    }
  }

  /** Waits for the scheduler's slot; everything is admitted when there is none */
  private async admit (peer: string, bytes: number, signal: AbortSignal): Promise<Admission> {
    if (this.init.scheduler == null) { return { ok: true, release: () => {} } }
    return this.init.scheduler.acquire(peer, bytes, { signal })
  }

  /**
   * Runs the pipeline under the processing deadline. Resolves undefined when
   * the stream closed meanwhile (nobody to answer). A stage that throws, or
   * a deadline that passes, is a server-error; the details go to the log,
   * never to the peer.
   */
  private async process (state: CallState, abort: CallAbort): Promise<Reply | undefined> {
    const { log } = this.init
    const timer = setTimeout(() => { abort.abort(new ProcessingTimeoutError('request took too long')) }, this.messageTimeout)
    const what = `${state.request.service.slice(0, 64)}.${state.request.method.slice(0, 64)}`
    const work = runPipeline(this.stages, state)
    try {
      return await new Promise<Reply | undefined>((resolve) => {
        abort.listen((reason: Error): void => {
          if (reason instanceof StreamGoneError) {
            resolve(undefined)
            return
          }
          this.stats.errors++
          log.error('request %s from %p timed out', what, state.peer)
          resolve({ status: Status.SERVER_ERROR, detail: 'request took too long to process' })
        })
        work.then((reply) => {
          const problem = checkReply(reply, this.init.maxBodySize)
          if (problem != null) {
            this.stats.errors++
            log.error('request %s from %p produced an invalid reply - %s', what, state.peer, problem)
            resolve({ status: Status.SERVER_ERROR, detail: 'internal error' })
            return
          }
          resolve(reply)
        }, (err: any) => {
          this.stats.errors++
          log.error('request %s from %p failed - %e', what, state.peer, err)
          resolve({ status: Status.SERVER_ERROR, detail: 'internal error' })
        })
      })
    } finally {
      // a handler still running at this point was already told through the
      // aborted signal (timeout or closed stream)
      clearTimeout(timer)
    }
  }

  /** What to do when reading the next frame failed */
  private async endOnReadError (stream: Stream, reader: FrameReader, err: any, peer: PeerId): Promise<void> {
    const { log } = this.init
    switch (err?.name) {
      case 'FrameTooLargeError':
        // answer, then stop reading: the rest of the stream is the oversized
        // frame, which is never buffered
        this.stats.badFrames++
        log('oversized frame from %p - %s', peer, err.message)
        try {
          await this.writeReply(reader, { status: Status.TOO_LARGE, detail: `frame exceeds the limit of ${this.init.maxFrameSize} bytes; the stream is closed` }, undefined, peer.toString(), openCloudId(peer))
          await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) })
        } catch {
          // the peer may already be gone; the stream is reset below either way
        }
        stream.abort(err)
        return
      case 'TruncatedFrameError':
        // the client closed its end inside a frame; it can still read
        this.stats.badFrames++
        try {
          await this.writeReply(reader, { status: Status.BAD_REQUEST, detail: 'stream ended inside a frame' }, undefined, peer.toString(), openCloudId(peer))
          await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) })
        } catch {
          stream.abort(err)
        }
        return
      case 'IdleTimeoutError':
        // nothing was received: a request arriving after this is never processed
        log.trace('idle stream from %p reset', peer)
        stream.abort(err)
        return
      case 'FrameTimeoutError':
        // a frame started but did not finish in time: a slow or stalled client
        this.stats.badFrames++
        log('frame from %p did not arrive in time', peer)
        stream.abort(err)
        return
      case 'BufferBudgetExceededError':
      case 'StreamBufferError':
        // the stream is already reset
        this.stats.overBudget++
        log('stream from %p held too many unread bytes - %s', peer, err.message)
        return
      default:
        // reset by the peer, …
        log.trace('stream from %p ended - %e', peer, err)
        stream.abort(err instanceof Error ? err : new AbortError(String(err)))
    }
  }

  /** Writes the response (signed when it is evidence or was asked for); every response carries a fresh nonce */
  private async writeReply (reader: FrameReader, reply: Reply, state: CallState | undefined, peerKey: string, client: string): Promise<void> {
    this.stats.requests++
    const name = String(reply.status)
    this.stats.byStatus[name] = (this.stats.byStatus[name] ?? 0) + 1
    this.countCall(state?.request, name)
    const response = await this.respond(reply, state, peerKey, client)
    await reader.write(encodeResponse(response), { timeout: this.messageTimeout })
  }

  /** Counts a response by service, method and status; names the node does not serve are `other`, so a peer cannot grow the map */
  private countCall (request: Request | undefined, status: string): void {
    const service = request != null ? this.init.services.get(request.service) : undefined
    const method = service != null && request != null && (Object.hasOwn(service.methods, request.method) || (TEMPLATE_METHODS as readonly string[]).includes(request.method)) ? request.method : 'other'
    const key = `${service?.name ?? 'other'} ${service != null ? method : 'other'} ${status}`
    const byCall = this.stats.byCall ?? (this.stats.byCall = {})
    byCall[key] = (byCall[key] ?? 0) + 1
  }

  /**
   * The response to `reply`, addressed to `client` (`oc:<peer id>` of the
   * connection). It is signed when it is evidence: the client asked
   * (`sign_response`), the request carried a payment or promise, the reply
   * names a price (`acceptable_payment`) or the method marked it (a quote,
   * a receipt). Otherwise the noise channel authenticates it, and neither
   * the request digest nor a signature is computed.
   */
  async respond (reply: Reply, state: CallState | undefined, peerKey: string, client: string): Promise<Response> {
    const request = state?.request
    const nonce = request?.nonce
    const signed = state != null && request != null && (
      request.signResponse ||
      request.paymentType !== PaymentType.PAYMENT_NONE ||
      reply.acceptablePayment != null ||
      reply.evidence === true
    )
    const response: Response = {
      id: this.credentials,
      sig: [],
      // echo only what can be a nonce: never reflect arbitrary bytes
      nonce: (nonce?.byteLength === NONCE_LENGTH ? nonce : EMPTY) as Bytes,
      status: reply.status,
      detail: reply.detail ?? '',
      reason: reply.reason ?? Reason.REASON_UNSPECIFIED,
      body: (reply.body ?? EMPTY) as Bytes,
      nextNonce: this.init.nonces.issue(peerKey) as Bytes,
      acceptablePayment: reply.acceptablePayment,
      requestDigest: (signed ? state.digest : EMPTY) as Bytes,
      audience: client
    }
    if (signed) {
      const d = responseDigest(response, reply.bodyHash)
      response.sig = await Promise.all(this.init.signers.map(async s => s.sign(d) as Promise<Bytes>))
    }
    return response
  }
}

const EMPTY = new Uint8Array(0)

/**
 * Aborts one call: on its processing deadline or when its stream closes.
 * The AbortSignal handlers see is only made when one asks for it (most never
 * do, and a controller with its signal is a good part of a small call's
 * bookkeeping); it is aborted at once when the call already was.
 */
class CallAbort {
  private controller?: AbortController
  private reason?: Error
  /** the server's own reaction (answer server-error, or drop the reply) */
  private onAbort?: (reason: Error) => void

  get signal (): AbortSignal {
    if (this.controller == null) {
      this.controller = new AbortController()
      if (this.reason != null) { this.controller.abort(this.reason) }
    }
    return this.controller.signal
  }

  /** Calls `fn` on abort, or now when the call was aborted already */
  listen (fn: (reason: Error) => void): void {
    this.onAbort = fn
    if (this.reason != null) { fn(this.reason) }
  }

  abort (reason: Error): void {
    if (this.reason != null) { return }
    this.reason = reason
    this.controller?.abort(reason)
    this.onAbort?.(reason)
  }
}

/**
 * The state of one call. The request digest (and the body hash in it) is
 * computed on first use: an unsigned request that gets an unsigned response
 * never needs it, and hashing plus re-encoding is a good part of a small
 * call's cost.
 */
function callState (peer: PeerId, request: Request, abort: CallAbort): CallState {
  let digest: Uint8Array | undefined
  const state: CallState = {
    peer,
    request,
    credentials: [],
    get signal (): AbortSignal {
      return abort.signal
    },
    bodyHash: undefined,
    get digest (): Uint8Array {
      if (digest == null) {
        state.bodyHash ??= sha256(request.body)
        digest = requestDigest(request, state.bodyHash)
      }
      return digest
    }
  }
  return state
}
