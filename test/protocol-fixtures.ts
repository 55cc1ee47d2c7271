/**
 * Helpers for protocol tests that speak OpenCloud by hand: build and sign
 * requests with any key, write raw bytes on a stream, read raw frames.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { MAX_FRAME_SIZE, PROTOCOL } from '../src/protocols/opencloud/api/constants.js'
import { openCloudId, requestDigest } from '../src/protocols/opencloud/api/signing.js'
import { FrameReader, encodeVarint } from '../src/protocols/opencloud/net/framing.js'
import { openCloud } from '../src/protocols/opencloud/net/opencloud.js'
import { PaymentType, Request, Response } from '../src/protocols/opencloud/pb/opencloud.js'
import { startNode } from './fixtures.js'
import type { TestNode } from './fixtures.js'
import type { DecloudNodeOptions } from '../src/node/index.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { OpenCloud, OpenCloudInit } from '../src/protocols/opencloud/net/opencloud.js'
import type { PeerId, PrivateKey, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'

/** A test node whose private key the test holds (to sign raw requests) */
export interface KeyedNode extends TestNode {
  key: PrivateKey
}

export async function startKeyedNode (options: DecloudNodeOptions = {}): Promise<KeyedNode> {
  const key = await generateKeyPair('Ed25519')
  const node = await startNode({ ...options, privateKey: key })
  return Object.assign(node, { key })
}

/**
 * A bare libp2p node with OpenCloud only (no DHT, market or storage): the
 * embedding path, and a peer whose traffic is exactly what the test sends.
 */
export interface BareNode {
  libp2p: Libp2p<{ opencloud: OpenCloud }>
  opencloud: OpenCloud
  key: PrivateKey
  peerId: PeerId
  openCloudId: string
  addr: string
  destroy(): Promise<void>
}

export async function startBareNode (init: OpenCloudInit = {}): Promise<BareNode> {
  const key = await generateKeyPair('Ed25519')
  const libp2p = await createLibp2p({
    privateKey: key,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { opencloud: openCloud(init) }
  })
  return {
    libp2p,
    opencloud: libp2p.services.opencloud,
    key,
    peerId: libp2p.peerId,
    openCloudId: openCloudId(libp2p.peerId),
    addr: libp2p.getMultiaddrs()[0].toString(),
    destroy: async () => { await libp2p.stop() }
  }
}

/** A fresh Ed25519 key and its OpenCloud ID */
export async function newIdentity (): Promise<{ key: PrivateKey, id: string }> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: openCloudId(peerIdFromPrivateKey(key)) }
}

export interface RawRequestFields {
  service: string
  method: string
  args?: string[]
  body?: Uint8Array
  nonce?: Uint8Array
  paymentType?: PaymentType
  /** the server the request is meant for, `oc:<peer id>` (signed with it) */
  audience?: string
  /** ask the server to sign its response */
  signResponse?: boolean
}

type Bytes = Uint8Array<ArrayBuffer>

/**
 * A request signed by `signer` under the credential `credential` (by default
 * the signer's own OpenCloud ID; pass another to forge).
 */
export async function signedRequest (signer: PrivateKey, fields: RawRequestFields, credential?: string): Promise<Request> {
  const request: Request = {
    id: [credential ?? openCloudId(peerIdFromPrivateKey(signer))],
    sig: [],
    nonce: (fields.nonce ?? new Uint8Array()) as Bytes,
    service: fields.service,
    method: fields.method,
    args: fields.args ?? [],
    paymentType: fields.paymentType ?? PaymentType.PAYMENT_NONE,
    body: (fields.body ?? new Uint8Array()) as Bytes,
    audience: fields.audience ?? '',
    signResponse: fields.signResponse ?? false
  }
  request.sig = [await signer.sign(requestDigest(request)) as Bytes]
  return request
}

/** The length-prefixed frame of `payload` */
export function frame (payload: Uint8Array): Uint8Array {
  const prefix = encodeVarint(payload.byteLength)
  const out = new Uint8Array(prefix.byteLength + payload.byteLength)
  out.set(prefix, 0)
  out.set(payload, prefix.byteLength)
  return out
}

/** A raw OpenCloud stream from `from` to `to`: write any bytes, read whole frames */
export class RawStream {
  readonly stream: Stream
  private readonly frames: FrameReader

  constructor (stream: Stream) {
    this.stream = stream
    this.frames = new FrameReader(stream, { maxFrameSize: MAX_FRAME_SIZE })
  }

  static async open (from: { libp2p: Libp2p<any> }, to: { addr: string }): Promise<RawStream> {
    const stream = await from.libp2p.dialProtocol(multiaddr(to.addr), PROTOCOL)
    return new RawStream(stream)
  }

  /** Writes bytes as they are (no framing), waiting for the stream to drain */
  async sendRaw (bytes: Uint8Array): Promise<void> {
    if (!this.stream.send(bytes)) { await this.stream.onDrain({ signal: AbortSignal.timeout(10_000) }) }
  }

  async sendRequest (request: Request): Promise<void> {
    await this.sendRaw(frame(Request.encode(request)))
  }

  /** The next response, or null when the server closed the stream without one */
  async readResponse (): Promise<Response | null> {
    try {
      const f = await this.frames.read({ signal: AbortSignal.timeout(15_000) })
      return f == null ? null : Response.decode(f)
    } catch (err: any) {
      if (err.name === 'StreamResetError' || err.name === 'StreamAbortedError' || err.name === 'TruncatedFrameError') { return null }
      throw err
    }
  }

  async exchange (request: Request): Promise<Response> {
    await this.sendRequest(request)
    const res = await this.readResponse()
    if (res == null) { throw new Error('no response') }
    return res
  }

  /** Resolves true when the server ended the stream (closed or reset) */
  async ended (): Promise<boolean> {
    const res = await this.readResponse()
    return res == null
  }

  async close (): Promise<void> {
    await this.stream.close().catch(() => { this.stream.abort(new Error('test done')) })
  }
}

/** A service that counts how often its handler ran, per method */
export function countingService (name = 'counter'): ServiceDefinition & { counts: Map<string, number> } {
  const counts = new Map<string, number>()
  const bump = (m: string): number => {
    const n = (counts.get(m) ?? 0) + 1
    counts.set(m, n)
    return n
  }
  return {
    name,
    version: '1.0.0',
    description: 'counts calls (tests)',
    counts,
    methods: {
      hit: {
        description: 'counts one call',
        handler: () => ({ body: new TextEncoder().encode(String(bump('hit'))) })
      },
      boom: {
        description: 'throws an internal error',
        handler: () => {
          bump('boom')
          throw new Error('secret internal detail /etc/passwd')
        }
      },
      bogus: {
        description: 'returns a status that does not exist',
        handler: () => {
          bump('bogus')
          return { status: 'NOT_A_STATUS' as any }
        }
      },
      slow: {
        description: 'answers after the signal aborts or 60 s',
        handler: async (call) => {
          bump('slow')
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 60_000)
            call.signal.addEventListener('abort', () => {
              bump('slow-aborted')
              clearTimeout(t)
              resolve()
            }, { once: true })
          })
          return {}
        }
      }
    }
  }
}

/** Records unhandled rejections and uncaught exceptions while installed */
export class CrashWatch {
  readonly events: unknown[] = []
  private readonly onEvent = (err: unknown): void => { this.events.push(err) }

  install (): void {
    process.on('unhandledRejection', this.onEvent)
    process.on('uncaughtException', this.onEvent)
  }

  uninstall (): void {
    process.off('unhandledRejection', this.onEvent)
    process.off('uncaughtException', this.onEvent)
  }
}
