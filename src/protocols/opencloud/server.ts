import { lpStream } from '@libp2p/utils'
import { IDLE_TIMEOUT, MAX_CREDENTIALS, MAX_ARGS, MESSAGE_TIMEOUT } from './constants.js'
import { Request, Response, Status } from './pb/opencloud.js'
import { createPipeline, runPipeline } from './pipeline.js'
import { requestDigest, responseDigest } from './signing.js'
import type { NonceStore } from './nonce.js'
import type { PipelineInit, Reply, Stage } from './pipeline.js'
import type { Signer } from './signing.js'
import type { Connection, Logger, Stream } from '@libp2p/interface'

export interface ServerInit extends PipelineInit {
  signers: Signer[]
  nonces: NonceStore
  maxFrameSize: number
  messageTimeout?: number
  idleTimeout?: number
  log: Logger
}

/** Counters exposed for tests, benchmarks and the control API */
export interface ServerStats {
  streams: number
  requests: number
  byStatus: Record<string, number>
  errors: number
}

const CLOSE_TIMEOUT = 2_000

/** protons types bytes fields as Uint8Array<ArrayBuffer> */
type Bytes = Uint8Array<ArrayBuffer>

/**
 * Serves OpenCloud on inbound streams: reads length-prefixed Requests,
 * runs each through the pipeline and writes one signed Response per Request,
 * until the client closes the stream or it stays idle too long.
 */
export class OpenCloudServer {
  private readonly init: ServerInit
  private readonly stages: Stage[]
  private readonly messageTimeout: number
  private readonly idleTimeout: number
  readonly stats: ServerStats = { streams: 0, requests: 0, byStatus: {}, errors: 0 }

  constructor (init: ServerInit) {
    this.init = init
    this.stages = createPipeline(init)
    this.messageTimeout = init.messageTimeout ?? MESSAGE_TIMEOUT
    this.idleTimeout = init.idleTimeout ?? IDLE_TIMEOUT
  }

  async handle (stream: Stream, connection: Connection): Promise<void> {
    const { log } = this.init
    const peer = connection.remotePeer
    const lp = lpStream(stream, { maxDataLength: this.init.maxFrameSize, maxBufferSize: this.init.maxFrameSize + 16 })
    this.stats.streams++
    try {
      while (true) {
        let frame
        try {
          frame = await lp.read({ signal: AbortSignal.timeout(this.idleTimeout) })
        } catch (err: any) {
          if (err.name === 'UnexpectedEOFError' || stream.readStatus !== 'readable') {
            // the client finished (or vanished mid-frame: a truncated frame is dropped)
            break
          }
          if (err.name === 'InvalidDataLengthError' || err.name === 'InvalidMessageLengthError' || err.name === 'InvalidDataLengthLengthError') {
            log('oversized or malformed length prefix from %p', peer)
            await this.writeReply(lp, { status: Status.TOO_LARGE, detail: `frame exceeds the limit of ${this.init.maxFrameSize} bytes; the stream is closed` }, undefined, undefined, peer.toString())
            await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) }).catch(() => {})
            stream.abort(err)
            return
          }
          if (err.name === 'TimeoutError' || err.name === 'AbortError') {
            log.trace('idle stream from %p closed', peer)
            stream.abort(err)
            return
          }
          throw err
        }

        let request: Request | undefined
        let digest: Uint8Array | undefined
        let reply: Reply
        const signal = AbortSignal.timeout(this.messageTimeout)
        try {
          request = Request.decode(frame, { limits: { id: MAX_CREDENTIALS + 1, sig: MAX_CREDENTIALS + 1, args: MAX_ARGS + 1 } })
        } catch {
          request = undefined
        }
        if (request == null) {
          reply = { status: Status.BAD_REQUEST, detail: 'frame is not a valid OpenCloud request' }
        } else {
          try {
            digest = requestDigest(request)
            reply = await runPipeline(this.stages, {
              peer,
              request,
              digest,
              credentials: [],
              signal
            })
          } catch (err: any) {
            // never leak internals: log it, answer server-error
            this.stats.errors++
            log.error('request %s.%s from %p failed - %e', request.service, request.method, peer, err)
            reply = { status: Status.SERVER_ERROR, detail: 'internal error' }
          }
        }
        this.stats.requests++
        const path = String(reply.status)
        this.stats.byStatus[path] = (this.stats.byStatus[path] ?? 0) + 1
        await this.writeReply(lp, reply, request, digest, peer.toString())
      }
      await stream.close({ signal: AbortSignal.timeout(CLOSE_TIMEOUT) })
    } catch (err: any) {
      log('stream from %p ended with error - %e', peer, err)
      stream.abort(err)
    }
  }

  /** Signs and writes a response; every response carries a fresh nonce */
  private async writeReply (lp: ReturnType<typeof lpStream>, reply: Reply, request: Request | undefined, digest: Uint8Array | undefined, peer: string): Promise<void> {
    const response = await this.sign(reply, request, digest, peer)
    await lp.write(Response.encode(response), { signal: AbortSignal.timeout(this.messageTimeout) })
  }

  async sign (reply: Reply, request: Request | undefined, digest: Uint8Array | undefined, peer: string): Promise<Response> {
    const response: Response = {
      id: this.init.signers.map(s => s.credential),
      sig: [],
      nonce: request?.nonce ?? new Uint8Array(),
      status: reply.status,
      detail: reply.detail ?? '',
      body: (reply.body ?? new Uint8Array()) as Bytes,
      nextNonce: this.init.nonces.issue(peer) as Bytes,
      acceptablePayment: reply.acceptablePayment,
      requestDigest: (digest ?? new Uint8Array()) as Bytes
    }
    const d = responseDigest(response)
    response.sig = await Promise.all(this.init.signers.map(async s => s.sign(d) as Promise<Bytes>))
    return response
  }
}
