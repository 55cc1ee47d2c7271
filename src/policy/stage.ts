/**
 * The policy in the server pipeline (spec "Request processing": access
 * controls, then payment).
 *
 * - `access` (the pipeline's access position): refuses with access-denied
 * (and what would be accepted), or rate-limited (with the wait) for rate
 * limits and max-concurrent.
 * It also writes the policy's terms for the call into `state.policy` (may
 * it be deferred, the tab limit, the least payment): the payment gate reads
 * them there.
 * - `payment` (before the payment gate; it only refuses): too-low with an
 * acceptable-payment when the request offers less than the policy's
 * min-payment for its units of service (`state.usage`, computed once by the
 * pipeline before access).
 *
 * Refusals carry a typed reason beside the detail (docs/protocol.md
 * "Reasons"). The engine is read once per call (hot reload swaps it between
 * calls; a call in progress keeps the terms it started with), so reloading
 * never touches a connection.
 */
import { logger } from '@libp2p/logger'
import { costOf, usageOfState } from '../protocols/opencloud/api/call.js'
import { PaymentType, Reason, Status } from '../protocols/opencloud/pb/opencloud.js'
import { minimumPayment } from './engine.js'
import { ConcurrencyLimiter, RateLimiter } from './rate-limit.js'
import { describeMinPayment } from './schema.js'
import type { Decision, Denial, PolicyContext, PolicyEngine, TrustProvider } from './engine.js'
import type { RateLimiterInit } from './rate-limit.js'
import type { CallState, PolicyTerms, Reply, Stage } from '../protocols/opencloud/api/call.js'
import type { Logger } from '@libp2p/interface'

export interface PolicyStagesOptions {
  /** the trust of a peer (0–1), consulted only when the policy has trust bands */
  trust?: TrustProvider
  /** shared buckets, e.g. to keep them across a rebuild of the stages */
  limiter?: RateLimiter
  /** used when `limiter` is not given */
  rateLimiter?: RateLimiterInit
  concurrency?: ConcurrencyLimiter
  log?: Logger
}

export interface PolicyStages {
  /** for `OpenCloudInit.access`, after the bitcoin credential check; writes `state.policy` */
  access: Stage
  /** for the payment position, before the payment gate (see `chainStages`) */
  payment: Stage
  readonly limiter: RateLimiter
  readonly concurrency: ConcurrencyLimiter
}

/** Runs stages in order as one stage: the first that answers ends it */
export function chainStages (...stages: Array<Stage | undefined>): Stage {
  const list = stages.filter((s): s is Stage => s != null)
  return async (state) => {
    for (const s of list) {
      const reply = await s(state)
      if (reply != null) { return reply }
    }
    return undefined
  }
}

function paymentTypeName (t: PaymentType): 'none' | 'attached' | 'defer' {
  if (t === PaymentType.PAYMENT_ATTACHED) { return 'attached' }
  return t === PaymentType.PAYMENT_DEFER ? 'defer' : 'none'
}

/** The wire reason of an access denial */
const DENIALS: Record<Denial, Reason> = {
  rule: Reason.REASON_POLICY_DENIED,
  credential: Reason.REASON_CREDENTIAL_REQUIRED,
  balance: Reason.REASON_MIN_BALANCE
}

function waitText (ms: number): string {
  return ms >= 10_000 ? `${Math.ceil(ms / 1000)} s` : `${ms} ms`
}

/**
 * The pipeline stages of a policy.
 *
 * @param source - the engine, or a function returning the current one (hot reload)
 * @example
 * ```ts
 * const reloader = new PolicyReloader({ file: 'policy.yaml' })
 * await reloader.start()
 * const policy = policyStages(() => reloader.engine, { trust: (peer) => reputation.trust(peer) })
 * openCloud({ services, access: policy.access, payment: chainStages(policy.payment, gate) })
 * ```
 */
export function policyStages (source: PolicyEngine | (() => PolicyEngine), options: PolicyStagesOptions = {}): PolicyStages {
  const current = typeof source === 'function' ? source : () => source
  const limiter = options.limiter ?? new RateLimiter(options.rateLimiter)
  const concurrency = options.concurrency ?? new ConcurrencyLimiter()
  const log = options.log ?? logger('decloud:policy')

  const trustOf = (peer: string): number | undefined => {
    if (options.trust == null) { return undefined }
    try {
      const t = options.trust(peer)
      return typeof t === 'number' && Number.isFinite(t) ? t : undefined
    } catch (err: any) {
      log.error('trust provider failed for %s - %e', peer, err)
      return undefined
    }
  }

  const contextOf = (engine: PolicyEngine, state: CallState): PolicyContext => {
    const peer = state.peer.toString()
    return {
      peer,
      credentials: state.credentials,
      bitcoin: state.bitcoin,
      trust: engine.usesTrust ? trustOf(peer) : undefined,
      service: state.request.service,
      method: state.request.method,
      paymentType: paymentTypeName(state.request.paymentType),
      amount: state.request.payment?.amount,
      usage: state.usage
    }
  }

  const decide = (state: CallState): Decision => {
    const engine = current()
    return engine.decide(contextOf(engine, state))
  }

  /** What the payment stages need of a decision: kept in the call state */
  const termsOf = (d: Decision, state: CallState): PolicyTerms => {
    const what = `${state.request.service}.${state.request.method}`
    let defer: true | string = true
    if (!d.defer.allowed) {
      defer = d.defer.reason
    } else if (d.maxTab.amount === 0n) {
      defer = `deferred payment for ${what} is not accepted: no tab is allowed (max-tab 0); pay attached`
    }
    // the template methods (info, methods, quote) are always free
    const min = state.method != null && d.minPayment != null ? d.minPayment : undefined
    return {
      defer,
      maxTab: d.defer.allowed ? d.maxTab.amount : 0n,
      // the engine priced it from state.usage; without usage (a pipeline without its usage stage) this throws
      minPayment: min == null ? 0n : min.amount ?? minimumPayment(min.pricing, usageOfState(state)),
      minPaymentText: min?.pricing.map(describeMinPayment).join(' / ')
    }
  }

  /** Bytes a call moves for bytes/s limits: its body, or the bytes a read asks for */
  const bytesOf = (state: CallState): number => {
    let bytes = state.request.body.byteLength
    const m = state.method
    if (m?.units?.[0] === 'byte' && m.usage != null) {
      const u = state.usage?.[0]
      if (u != null && u > BigInt(bytes)) { bytes = u > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(u) }
    }
    return bytes
  }

  const access: Stage = (state) => {
    const d = decide(state)
    state.policy = termsOf(d, state)
    if (d.action === 'deny') {
      return { status: Status.ACCESS_DENIED, reason: DENIALS[d.denial ?? 'rule'], detail: d.detail ?? `access to ${state.request.service}.${state.request.method} is denied by this node's policy` }
    }
    const peer = state.peer.toString()
    let release: (() => void) | undefined
    if (d.maxConcurrent != null) {
      const { rule, limit } = d.maxConcurrent
      release = concurrency.acquire(`${rule.key}\u0000${peer}`, limit)
      if (release == null) {
        return { status: Status.RATE_LIMITED, reason: Reason.REASON_MAX_CONCURRENT, detail: `too many calls at once: at most ${limit} in progress per peer for ${rule.scope}; retry when one finishes` }
      }
      // released when the call is over: runPipeline runs state.cleanup whatever the outcome
      state.cleanup ??= []
      state.cleanup.push(release)
    }
    if (d.rateLimits.length > 0) {
      const bytes = d.rateLimits.some(x => x.limit.bytes !== undefined) ? bytesOf(state) : 0
      const res = limiter.take(d.rateLimits.map(x => ({ key: `${x.rule.key}\u0000${peer}`, limit: x.limit })), bytes)
      if (!res.ok) {
        release?.()
        const { rule, limit } = d.rateLimits[res.index]
        const rate = res.dimension === 'requests'
          ? `${limit.requests} requests/s (burst ${limit.requestBurst ?? Math.max(1, limit.requests ?? 1)})`
          : `${limit.bytes} bytes/s (burst ${limit.byteBurst ?? limit.bytes})`
        return { status: Status.RATE_LIMITED, reason: Reason.REASON_RATE_LIMIT, detail: `rate limit of ${rate} per peer for ${rule.scope} reached; retry after ${waitText(res.retryAfterMs)} (retry-after-ms=${res.retryAfterMs})` }
      }
    }
    return undefined
  }

  const payment: Stage = (state): Reply | undefined => {
    // the terms the access stage wrote; made here when the access stage is not wired
    const terms = state.policy ?? (state.policy = termsOf(decide(state), state))
    const min = terms.minPayment
    if (min === 0n) { return undefined }
    const r = state.request
    const paid = r.paymentType === PaymentType.PAYMENT_NONE ? 0n : r.payment?.amount ?? 0n
    if (paid >= min) { return undefined }
    let cost: bigint | undefined
    try {
      cost = costOf(state)
    } catch {
      cost = undefined
    }
    const amount = cost != null && cost > min ? cost : min
    const what = `${r.service}.${r.method}`
    // a promise costs the payer no fee and no dust-sized output: offered to whoever may make one
    // (a bid without payment is how a buyer asks what the seller takes)
    const defer = r.paymentType !== PaymentType.PAYMENT_ATTACHED && state.credentials.length > 0 && terms.defer === true
    return {
      status: Status.TOO_LOW,
      reason: Reason.REASON_MIN_PAYMENT,
      detail: `${what} needs at least ${amount} sat for this call (this node's minimum: ${terms.minPaymentText ?? `${min} sat`}); offered ${paid} sat`,
      acceptablePayment: { paymentType: defer ? PaymentType.PAYMENT_DEFER : PaymentType.PAYMENT_ATTACHED, currency: 'BTC', amount }
    }
  }

  return { access, payment, limiter, concurrency }
}
