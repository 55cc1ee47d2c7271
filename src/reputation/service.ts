/**
 * The reputation libp2p service: publishes this node's signed report on
 * the gossipsub topic `/decloud/reputation/1` (every `reportInterval`, and
 * when the audience grows), validates the reports of others (size, entry
 * count, signature, issue time, sequence) into the node's `Reputation`,
 * and serves the core OpenCloud service `reputation` (spec "Core
 * services": "reputation: share my reputation data").
 */
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { InvalidMessageError, serviceCapabilities, serviceDependencies } from '@libp2p/interface'
import { ServiceError } from '../protocols/opencloud/api/template.js'
import { Status } from '../protocols/opencloud/pb/opencloud.js'
import { MAX_REPORT_ENTRIES, MAX_REPORT_SIZE, REPUTATION_TOPIC, signReport, verifyReport } from './report.js'
import type { Reputation } from './model.js'
import type { Report } from './report.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'
import type { OpenCloud } from '../protocols/opencloud/net/opencloud.js'
import type { GossipSub, Message, SubscriptionChangeData } from '@libp2p/gossipsub'
import type { AbortOptions, ComponentLogger, Logger, PeerId, PrivateKey, Startable } from '@libp2p/interface'

export interface ReputationComponents {
  peerId: PeerId
  privateKey: PrivateKey
  logger: ComponentLogger
  pubsub: GossipSub
  opencloud: OpenCloud
}

export interface ReputationServiceInit {
  /** the node's reputation knowledge (opened before libp2p: the policy reads it) */
  reputation: Reputation
}

export interface PublishResult {
  entries: number
  recipients: number
}

/** What the validator did with each report, for tests and logs */
export type ReportListener = (event: { from: string, accepted: boolean, action?: 'reject' | 'ignore', reason?: string, report?: Report }) => void

export class ReputationService implements Startable {
  readonly [serviceCapabilities]: string[] = ['@decloud/reputation']
  readonly [serviceDependencies]: string[] = ['@libp2p/pubsub', '@decloud/opencloud']
  readonly [Symbol.toStringTag] = '@decloud/reputation'
  readonly reputation: Reputation
  private readonly components: ReputationComponents
  private readonly log: Logger
  private readonly listeners = new Set<ReportListener>()
  private running = false
  private interval?: ReturnType<typeof setInterval>
  private lastSeq = 0n
  private latest?: Uint8Array
  private audienceAtLastReport = 0

  constructor (components: ReputationComponents, init: ReputationServiceInit) {
    this.components = components
    this.reputation = init.reputation
    this.log = components.logger.forComponent('decloud:reputation')
  }

  private readonly validator = async (from: PeerId, msg: Message): Promise<TopicValidatorResult> => {
    const verdict = await verifyReport(msg.data, { from: msg.type === 'signed' ? msg.from : undefined })
    if (!verdict.ok) {
      this.log('%s report relayed by %p: %s', verdict.action, from, verdict.reason)
      this.tell({ from: from.toString(), accepted: false, action: verdict.action, reason: verdict.reason })
      return verdict.action === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore
    }
    const accepted = this.reputation.accept(verdict.report)
    this.tell({ from: from.toString(), accepted, report: verdict.report, ...(accepted ? {} : { action: 'ignore', reason: 'stale or own' }) })
    return accepted ? TopicValidatorResult.Accept : TopicValidatorResult.Ignore
  }

  private readonly onSubscriptionChange = (evt: CustomEvent<SubscriptionChangeData>): void => {
    if (!evt.detail.subscriptions.some(s => s.topic === REPUTATION_TOPIC && s.subscribe)) { return }
    // the audience doubled since the last report: tell the newcomers (log2(N) times at most)
    const audience = this.components.pubsub.getSubscribers(REPUTATION_TOPIC).length
    if (audience >= 2 * this.audienceAtLastReport || this.audienceAtLastReport === 0) { this.publishSoon() }
  }

  private tell (event: Parameters<ReportListener>[0]): void {
    for (const fn of this.listeners) {
      try {
        fn(event)
      } catch {}
    }
  }

  /** Calls `fn` for every report the topic validator judged */
  onReport (fn: ReportListener): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  isStarted (): boolean {
    return this.running
  }

  /** Loads the records when the node did not (an embedder's `decloudDefaults`) */
  async start (): Promise<void> {
    await this.reputation.open()
  }

  /** Serves the core `reputation` service (unless OpenCloud already has one) */
  beforeStart (): void {
    if (!this.components.opencloud.services.has('reputation')) { this.components.opencloud.addService(this.service()) }
  }

  afterStart (): void {
    if (this.running) { return }
    this.running = true
    const pubsub = this.components.pubsub
    pubsub.topicValidators.set(REPUTATION_TOPIC, this.validator)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.subscribe(REPUTATION_TOPIC)
    this.interval = setInterval(() => { this.publishSoon() }, this.reputation.reportInterval)
    this.interval.unref?.()
  }

  beforeStop (): void {
    if (!this.running) { return }
    this.running = false
    clearInterval(this.interval)
    const pubsub = this.components.pubsub
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    pubsub.topicValidators.delete(REPUTATION_TOPIC)
    try {
      pubsub.unsubscribe(REPUTATION_TOPIC)
    } catch {}
  }

  stop (): void {
    this.beforeStop()
  }

  private publishSoon (): void {
    if (!this.running) { return }
    this.publish().catch(err => { this.log('report failed - %e', err) })
  }

  private nextSeq (): bigint {
    const now = BigInt(Date.now())
    this.lastSeq = now > this.lastSeq ? now : this.lastSeq + 1n
    return this.lastSeq
  }

  /** Signs this node's current report (its first-hand trust, ≤ 256 peers) */
  async sign (): Promise<Uint8Array> {
    const bytes = await signReport(this.components.privateKey, this.components.peerId, { issued: Date.now(), seq: this.nextSeq(), claims: this.reputation.ownClaims() })
    this.latest = bytes
    return bytes
  }

  /** Signs and publishes this node's report; with no first-hand facts there is nothing to say */
  async publish (): Promise<PublishResult> {
    const claims = this.reputation.ownClaims()
    if (!this.running || claims.length === 0) { return { entries: 0, recipients: 0 } }
    this.audienceAtLastReport = this.components.pubsub.getSubscribers(REPUTATION_TOPIC).length
    const bytes = await this.sign()
    const res = await this.components.pubsub.publish(REPUTATION_TOPIC, bytes)
    return { entries: Math.min(claims.length, MAX_REPORT_ENTRIES), recipients: res.recipients.length }
  }

  /**
   * Asks `peer` for its latest report (`reputation.report`) and takes it
   * when it verifies. Returns whether it was taken.
   */
  async fetchFrom (peer: PeerId, options: AbortOptions = {}): Promise<boolean> {
    const body = await this.components.opencloud.callOk(peer, { service: 'reputation', method: 'report' }, { signal: options.signal ?? AbortSignal.timeout(10_000) })
    if (body.byteLength === 0) { return false }
    const verdict = await verifyReport(body)
    if (!verdict.ok) { throw new InvalidMessageError(`the report of ${peer.toString()} was refused: ${verdict.reason}`) }
    if (verdict.report.reporter !== peer.toString()) { throw new InvalidMessageError('the report is not the answering peer\'s own') }
    return this.reputation.accept(verdict.report)
  }

  /** The core `reputation` service */
  service (): ServiceDefinition {
    return {
      name: 'reputation',
      version: '1.0.0',
      description: 'this node\'s reputation data: its signed report of the peers it dealt with',
      describe: () => ({ topic: REPUTATION_TOPIC, maxEntries: MAX_REPORT_ENTRIES, maxSize: MAX_REPORT_SIZE }),
      methods: {
        report: {
          description: 'this node\'s latest signed reputation report (protobuf SignedReputationReport; empty: no first-hand facts yet)',
          handler: async (call) => {
            if (call.args.length > 0) { throw new ServiceError(Status.BAD_REQUEST, 'usage: report') }
            if (this.reputation.ownClaims().length === 0) { return { body: new Uint8Array(0) } }
            return { body: this.latest ?? await this.sign() }
          }
        }
      }
    }
  }
}

/**
 * The reputation service; needs gossipsub as `pubsub` and OpenCloud as
 * `opencloud` among the node's services.
 */
export function reputationService (init: ReputationServiceInit): (components: ReputationComponents) => ReputationService {
  return (components) => new ReputationService(components, init)
}
