import { InvalidParametersError, serviceCapabilities } from '@libp2p/interface'
import { MAX_BODY_SIZE, FRAME_OVERHEAD, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, PROTOCOL } from '../api/constants.js'
import { openCloudId, openCloudSigner, openCloudVerifier } from '../api/signing.js'
import { validateService } from '../api/template.js'
import { OpenCloudClient } from './client.js'
import { BufferBudget } from './framing.js'
import { NonceStore } from './nonce.js'
import { FairScheduler } from './scheduler.js'
import { OpenCloudServer } from './server.js'
import type { CallRequest, CallResult, CallTarget } from './client.js'
import type { NonceStoreInit } from './nonce.js'
import type { FairSchedulerInit } from './scheduler.js'
import type { ServerStats } from './server.js'
import type { Stage } from '../api/call.js'
import type { CredentialVerifier, Signer } from '../api/signing.js'
import type { ServiceDefinition } from '../api/template.js'
import type { AbortOptions, ComponentLogger, Logger, PeerId, PrivateKey, Startable } from '@libp2p/interface'
import type { AddressManager, ConnectionManager, Registrar } from '@libp2p/interface-internal'

/**
 * Options of `openCloud()`. All are optional: the defaults serve the given
 * services with the limits the spec suggests and accept calls from any peer
 * that signs its requests.
 */
export interface OpenCloudInit {
  /** Services this node sells. The core `info` service is added unless one named `info` is given. */
  services?: ServiceDefinition[]
  /** Largest request/response body @default 4 MiB */
  maxBodySize?: number
  /** Time to receive one message or process one request (ms) @default 30_000 */
  messageTimeout?: number
  /** An inbound stream with no request for this long is closed (ms) @default 60_000 */
  idleTimeout?: number
  /**
   * Bytes one peer's inbound streams may hold before they are read (frames
   * in transit); the stream that exceeds it is reset
   *
   * @default 16 × the frame size (about 65 MiB)
   */
  maxBufferedBytesPerPeer?: number
  /** The same for all peers together @default 64 × the frame size (about 260 MiB) */
  maxBufferedBytes?: number
  /** Client side: close a pooled stream unused for this long (ms) @default 20_000 */
  clientIdleTimeout?: number
  /**
   * Fair sharing of the server between peers: per-peer in-flight bound,
   * round-robin (weighted) service, optional per-peer request rate; all
   * checked before a request is decoded or verified (docs/protocol.md
   * "Fairness and admission"). `false` serves every stream as it comes.
   *
   * @default the FairScheduler defaults
   */
  fairness?: FairSchedulerInit | false
  /** @default 256 */
  maxInboundStreams?: number
  /** @default 256 */
  maxOutboundStreams?: number
  /** Client side: concurrent streams per remote peer @default 8 */
  maxStreamsPerPeer?: number
  /** Refuse requests without a signed credential @default true */
  requireCredentials?: boolean
  /** Verify server signatures on every response as it arrives (see `verifyResponse()`) @default false */
  verifyResponses?: boolean
  /** Replay protection: how many request nonces are remembered, and for how long */
  nonces?: NonceStoreInit
  /** Extra credentials to present with every request (the node's OpenCloud ID is always first) */
  signers?: Signer[]
  /** Extra credential verifiers (OpenCloud IDs are always understood) */
  verifiers?: CredentialVerifier[]
  /** Pipeline hook run before the method: refuse or rate-limit callers (docs/protocol.md "Server pipeline") */
  access?: Stage
  /** Pipeline hook after access: refuse callers by reputation */
  reputation?: Stage
  /**
   * Pipeline hook that decides whether a priced call is paid; the default
   * answers every priced call `too-low` with its price (docs/payments.md)
   */
  payment?: Stage
  /** The node's software version reported by `info.info` */
  version?: string
}

/** What `openCloud()` takes from libp2p; libp2p passes them */
export interface OpenCloudComponents {
  registrar: Registrar
  connectionManager: ConnectionManager
  addressManager: AddressManager
  peerId: PeerId
  privateKey: PrivateKey
  logger: ComponentLogger
}

/**
 * The OpenCloud protocol as a libp2p service: serves the configured services
 * on `/opencloud/1.1.0` and calls other peers' services.
 */
export interface OpenCloud {
  /** This node's OpenCloud ID, `oc:<peer id>` */
  readonly id: string
  /** Names of the services served */
  readonly services: ReadonlyMap<string, ServiceDefinition>
  /** Call a remote service; returns whatever status the server answered */
  call(target: CallTarget, call: CallRequest, options?: AbortOptions): Promise<CallResult>
  /** Call a remote service; throws OpenCloudStatusError unless ok; returns the body */
  callOk(target: CallTarget, call: CallRequest, options?: AbortOptions): Promise<Uint8Array>
  /** Serve one more service (its name must be free) */
  addService(service: ServiceDefinition): void
  /** Request counters */
  stats(): ServerStats
}

const VERSION = '0.1.0'

export class OpenCloudService implements OpenCloud, Startable {
  readonly id: string
  readonly services = new Map<string, ServiceDefinition>()
  private readonly components: OpenCloudComponents
  private readonly init: OpenCloudInit
  private readonly log: Logger
  private readonly nonces: NonceStore
  private readonly budget: BufferBudget
  private readonly server: OpenCloudServer
  private readonly scheduler?: FairScheduler
  private readonly client: OpenCloudClient
  private started = false
  private sweep?: ReturnType<typeof setInterval>

  constructor (components: OpenCloudComponents, init: OpenCloudInit = {}) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('decloud:opencloud')
    this.id = openCloudId(components.peerId)
    this.nonces = new NonceStore(init.nonces)
    const maxBodySize = init.maxBodySize ?? MAX_BODY_SIZE
    const maxFrameSize = maxBodySize + FRAME_OVERHEAD
    this.budget = new BufferBudget({
      perPeer: init.maxBufferedBytesPerPeer ?? 16 * maxFrameSize,
      total: init.maxBufferedBytes ?? 64 * maxFrameSize
    })
    const signers = [openCloudSigner(components.privateKey, components.peerId), ...(init.signers ?? [])]
    if (init.fairness !== false) { this.scheduler = new FairScheduler({ queueTimeout: init.messageTimeout, ...init.fairness }) }
    for (const s of init.services ?? []) { this.addService(s) }
    if (!this.services.has('info')) { this.addService(this.infoService()) }
    this.server = new OpenCloudServer({
      self: this.id,
      services: this.services,
      nonces: this.nonces,
      verifiers: [openCloudVerifier, ...(init.verifiers ?? [])],
      maxBodySize,
      maxFrameSize,
      budget: this.budget,
      scheduler: this.scheduler,
      requireCredentials: init.requireCredentials ?? true,
      access: init.access,
      reputation: init.reputation,
      payment: init.payment,
      signers,
      messageTimeout: init.messageTimeout,
      idleTimeout: init.idleTimeout,
      log: this.log
    })
    this.client = new OpenCloudClient({
      connectionManager: components.connectionManager,
      signers,
      log: this.log,
      maxFrameSize,
      messageTimeout: init.messageTimeout,
      idleStreamTimeout: init.clientIdleTimeout,
      maxStreamsPerPeer: init.maxStreamsPerPeer,
      verifyResponses: init.verifyResponses
    })
  }

  readonly [Symbol.toStringTag] = 'decloud:opencloud'
  readonly [serviceCapabilities]: string[] = ['@decloud/opencloud']

  addService (service: ServiceDefinition): void {
    validateService(service)
    if (this.services.has(service.name)) { throw new InvalidParametersError(`service "${service.name}" is already registered`) }
    this.services.set(service.name, service)
  }

  async start (): Promise<void> {
    if (this.started) { return }
    this.client.reopen()
    for (const s of this.services.values()) { await s.start?.() }
    await this.components.registrar.handle(PROTOCOL, (stream, connection) => {
      this.server.handle(stream, connection).catch(err => { this.log.error('handler failed - %e', err) })
    }, {
      maxInboundStreams: this.init.maxInboundStreams ?? MAX_INBOUND_STREAMS,
      maxOutboundStreams: this.init.maxOutboundStreams ?? MAX_OUTBOUND_STREAMS,
      // a seller behind a router is reached over a relay; the relay bounds what such a connection carries
      runOnLimitedConnection: true
    })
    this.sweep = setInterval(() => { this.nonces.sweep() }, 60_000)
    this.sweep.unref?.()
    this.started = true
  }

  async stop (): Promise<void> {
    if (!this.started) { return }
    clearInterval(this.sweep)
    this.scheduler?.close()
    await this.components.registrar.unhandle(PROTOCOL)
    await this.client.close()
    for (const s of this.services.values()) { await s.stop?.() }
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  async call (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<CallResult> {
    return this.client.call(target, call, options)
  }

  async callOk (target: CallTarget, call: CallRequest, options: AbortOptions = {}): Promise<Uint8Array> {
    return this.client.callOk(target, call, options)
  }

  stats (): ServerStats {
    return { ...this.server.stats, byStatus: { ...this.server.stats.byStatus }, bufferedBytes: this.budget.usage(), noncePeers: this.nonces.size, scheduler: this.scheduler?.stats() }
  }

  /** The core `info` service: describes this node */
  private infoService (): ServiceDefinition {
    return {
      name: 'info',
      version: '1.0.0',
      description: 'basic information about this node',
      methods: {},
      describe: () => ({
        node: {
          software: 'decloud',
          version: this.init.version ?? VERSION,
          protocol: PROTOCOL,
          peerId: this.components.peerId.toString(),
          openCloudId: this.id,
          services: [...this.services.values()].map(s => ({ name: s.name, version: s.version })),
          addresses: this.components.addressManager.getAddresses().map(a => a.toString()),
          maxBodySize: this.init.maxBodySize ?? MAX_BODY_SIZE
        }
      })
    }
  }
}

/**
 * A libp2p service factory for OpenCloud.
 *
 * @example
 * ```ts
 * import { createLibp2p } from 'libp2p'
 * import { openCloud, sha256Service } from 'decloud'
 *
 * const node = await createLibp2p({
 *   // transports, encrypters, muxers…
 *   services: { opencloud: openCloud({ services: [sha256Service()] }) }
 * })
 * const res = await node.services.opencloud.call(addr, { service: 'sha256', method: 'hash', body })
 * ```
 */
export function openCloud (init: OpenCloudInit = {}): (components: OpenCloudComponents) => OpenCloud & Startable {
  return (components) => new OpenCloudService(components, init)
}
