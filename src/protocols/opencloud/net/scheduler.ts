/**
 * Fair sharing of the server's work between peers (docs/protocol.md
 * "Fairness and admission").
 *
 * Every request frame the server reads asks for a slot here before it is
 * decoded. The scheduler
 *
 * - bounds the requests one peer has in flight (read and not yet through the
 * pipeline) across all its streams, and the requests waiting in total;
 * a frame over either bound is refused (`rate-limited`) without being
 * decoded or verified: it is dropped at once, and its stream is answered
 * when one of the peer's requests is done (or after `refusalDelay`), so
 * refusals come no faster than the peer is served and a flooding client
 * cannot spin the server on them;
 * - runs at most `maxActive` requests through the pipeline at once and,
 * when a slot frees, picks the next peer round-robin, each peer taking
 * `weight(peer)` turns per round; a peer that had nothing queued is served
 * before peers that stay backlogged (as fq_codel does for sparse flows), so
 * a lockstep caller waits only for the requests already started, whatever
 * the others' stream counts; and a peer starts at most `weight` requests
 * per turn of the event loop (see dispatch);
 * - optionally meters each peer's requests per second (a token bucket keyed
 * by the connection's peer id, which noise authenticated): requests over
 * the rate wait in the queue, which holds the peer's lockstep streams back.
 *
 * Why not per stream: a peer opens as many streams as libp2p lets it, so
 * per-stream fairness hands the server to whoever opens most. Why wait
 * rather than refuse within the bounds: a refusal is answered at once and a
 * flooding client sends the next request at once, so refusals alone spend
 * the server on refusals; a queued request holds its stream, and a lockstep
 * stream sends nothing more until it is answered.
 */
import type { Admission, FairSchedulerInit, Refused, SchedulerStats } from './scheduler-types.js'
import type { AbortOptions } from '@libp2p/interface'

export type { FairSchedulerInit, SchedulerStats, Admitted, Refused, Admission } from './scheduler-types.js'

interface Waiter {
  bytes: number
  resolve(a: Admission): void
  /** drops the timeout and the abort listener */
  clear(): void
}

interface PeerQueue {
  key: string
  waiting: Waiter[]
  /** refused requests whose answers wait for one of the peer's requests to finish */
  parked: Array<() => void>
  /** bytes of the waiting requests */
  waitingBytes: number
  /** requests in the pipeline */
  running: number
  weight: number
  /** turns left in the current round */
  credit: number
  /** 'fresh': queued after being idle; 'old': backlogged; undefined: nothing queued */
  list?: 'fresh' | 'old'
  /** the dispatch turn of the event loop in which `started` was counted */
  turn: number
  /** requests started in that turn */
  started: number
}

interface Bucket {
  tokens: number
  /** when the tokens were counted (ms) */
  last: number
}

/** Token buckets kept at most; the least recently used goes first (it may have refilled anyway) */
const MAX_BUCKETS = 10_000

const MAX_WEIGHT = 64

export const DEFAULT_MAX_ACTIVE = 32
export const DEFAULT_MAX_ACTIVE_PER_PEER = 8
export const DEFAULT_MAX_IN_FLIGHT_PER_PEER = 32
export const DEFAULT_MAX_QUEUED = 1024

export class FairScheduler {
  private readonly maxActive: number
  private readonly maxActivePerPeer: number
  private readonly maxInFlightPerPeer: number
  private readonly maxQueued: number
  private readonly maxQueuedBytes: number
  private readonly maxQueuedBytesPerPeer: number
  private readonly rate?: number
  private readonly burst: number
  private readonly queueTimeout: number
  private readonly refusalDelay: number
  private readonly weightOf: (peer: string) => number
  private readonly now: () => number
  private readonly peers = new Map<string, PeerQueue>()
  /** per-peer token buckets when metering, least recently used first */
  private readonly buckets = new Map<string, Bucket>()
  /** peers whose queue was empty when their waiting request came: served first */
  private readonly fresh: PeerQueue[] = []
  /** backlogged peers, round-robin */
  private readonly old: PeerQueue[] = []
  private active = 0
  private queued = 0
  private queuedBytes = 0
  private timer?: ReturnType<typeof setTimeout>
  private dispatchScheduled = false
  /** turns of the event loop in which the dispatcher ran (see dispatchLater) */
  private turn = 0
  private readonly counters = { refusedPeer: 0, refusedQueue: 0, refusedTimeout: 0 }

  constructor (init: FairSchedulerInit = {}) {
    this.maxActive = Math.max(1, init.maxActive ?? DEFAULT_MAX_ACTIVE)
    this.maxActivePerPeer = Math.max(1, init.maxActivePerPeer ?? DEFAULT_MAX_ACTIVE_PER_PEER)
    this.maxInFlightPerPeer = Math.max(1, init.maxInFlightPerPeer ?? DEFAULT_MAX_IN_FLIGHT_PER_PEER)
    this.maxQueued = Math.max(0, init.maxQueued ?? DEFAULT_MAX_QUEUED)
    this.maxQueuedBytes = init.maxQueuedBytes ?? 256 * 1024 * 1024
    this.maxQueuedBytesPerPeer = init.maxQueuedBytesPerPeer ?? 64 * 1024 * 1024
    if (init.requestsPerSecond != null && init.requestsPerSecond > 0) {
      this.rate = init.requestsPerSecond
    }
    this.burst = Math.max(1, init.requestBurst ?? this.rate ?? 1)
    this.queueTimeout = init.queueTimeout ?? 30_000
    this.refusalDelay = init.refusalDelay ?? 1_000
    this.weightOf = init.weight ?? (() => 1)
    this.now = init.now ?? (() => performance.now())
  }

  stats (): SchedulerStats {
    return { active: this.active, queued: this.queued, peers: this.peers.size, ...this.counters }
  }

  /** Requests of `peer` in flight (waiting or in the pipeline) */
  inFlight (peer: string): number {
    const p = this.peers.get(peer)
    return p == null ? 0 : p.waiting.length + p.running
  }

  /** The peer's state, created on first use */
  private peer (key: string): PeerQueue {
    let p = this.peers.get(key)
    if (p == null) {
      p = { key, waiting: [], parked: [], waitingBytes: 0, running: 0, weight: 1, credit: 0, turn: -1, started: 0 }
      this.peers.set(key, p)
    }
    return p
  }

  /**
   * A refusal, answered when one of the peer's requests finishes, after
   * `refusalDelay`, or at once when the stream closes. The frame is not
   * kept: a parked refusal holds a closure and a timer. Parked refusals of a
   * peer are bounded by its streams (each stream parks at most one).
   */
  private async park (p: PeerQueue, refusal: Refused, signal?: AbortSignal): Promise<Refused> {
    return new Promise<Refused>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        const i = p.parked.indexOf(done)
        if (i >= 0) { p.parked.splice(i, 1) }
        this.tidy(p)
        resolve(signal?.aborted === true ? { ok: false, why: 'aborted', detail: 'the stream closed' } : refusal)
      }
      const timer = setTimeout(done, this.refusalDelay)
      p.parked.push(done)
      if (signal?.aborted === true) { done() } else { signal?.addEventListener('abort', done, { once: true }) }
    })
  }

  /**
   * A slot in the pipeline for one request of `bytes` from `peer`. Resolves
   * at once with a refusal when a bound is reached; otherwise when the
   * request's turn comes, or with a refusal when it waited `queueTimeout` or
   * the signal aborted (the stream closed).
   */
  async acquire (peer: string, bytes: number, options: AbortOptions = {}): Promise<Admission> {
    const q = this.peer(peer)
    if (q.waiting.length + q.running >= this.maxInFlightPerPeer) {
      this.counters.refusedPeer++
      return this.park(q, { ok: false, why: 'in-flight', detail: `too many requests in flight: at most ${this.maxInFlightPerPeer} per peer across its streams; retry when one is answered` }, options.signal)
    }
    if (this.queued >= this.maxQueued || this.queuedBytes + bytes > this.maxQueuedBytes || q.waitingBytes + bytes > this.maxQueuedBytesPerPeer) {
      // a request that could start at once needs no room in the queue
      if (!(this.active < this.maxActive && this.fresh.length === 0 && this.old.length === 0)) {
        this.counters.refusedQueue++
        return this.park(q, { ok: false, why: 'queue-full', detail: 'the server is busy: too many requests waiting; retry later' }, options.signal)
      }
    }
    return new Promise<Admission>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined
      const signal = options.signal
      const waiter: Waiter = {
        bytes,
        resolve,
        clear: () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
        }
      }
      const leave = (refusal: Refused): void => {
        const i = q.waiting.indexOf(waiter)
        if (i < 0) { return }
        q.waiting.splice(i, 1)
        q.waitingBytes -= bytes
        this.queued--
        this.queuedBytes -= bytes
        waiter.clear()
        this.tidy(q)
        resolve(refusal)
      }
      const onAbort = (): void => { leave({ ok: false, why: 'aborted', detail: 'the stream closed' }) }
      this.enqueue(q, waiter)
      if (q.waiting.includes(waiter)) {
        if (signal?.aborted === true) {
          onAbort()
          return
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        timer = setTimeout(() => {
          this.counters.refusedTimeout++
          leave({ ok: false, why: 'timeout', detail: `the server is busy: no turn within ${this.queueTimeout} ms; retry later` })
        }, this.queueTimeout)
      }
    })
  }

  private enqueue (p: PeerQueue, w: Waiter): void {
    p.waiting.push(w)
    p.waitingBytes += w.bytes
    this.queued++
    this.queuedBytes += w.bytes
    if (p.list == null) {
      // idle until now: its first request goes ahead of the backlogged peers
      const weight = Number(this.weightOf(p.key))
      p.weight = Number.isFinite(weight) ? Math.min(MAX_WEIGHT, Math.max(1, Math.round(weight))) : 1
      p.credit = p.weight
      p.list = p.running === 0 ? 'fresh' : 'old'
      if (p.list === 'fresh') { this.fresh.push(p) } else { this.old.push(p) }
    }
    this.dispatch()
  }

  /** The peer's bucket, refilled to `now` */
  private bucket (key: string, now: number): Bucket {
    const rate = this.rate as number
    let b = this.buckets.get(key)
    if (b == null) {
      b = { tokens: this.burst, last: now }
    } else {
      b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.last) / 1000 * rate)
      b.last = now
      this.buckets.delete(key)
    }
    // most recently used last: the map's order is the eviction order
    this.buckets.set(key, b)
    while (this.buckets.size > MAX_BUCKETS) {
      this.buckets.delete(this.buckets.keys().next().value as string)
    }
    return b
  }

  /** True when the peer may be served now (it holds a token, or nothing is metered) */
  private hasToken (p: PeerQueue, now: number): boolean {
    if (this.rate == null) { return true }
    return this.bucket(p.key, now).tokens >= 1
  }

  /**
   * Dispatches after the event loop has polled for I/O. A request's work
   * (decode, verification, signing) runs in microtasks: were the next
   * waiting request started straight from the previous one's release, a
   * peer whose frames arrived together would be served back to back before
   * any other peer's frame could even be read, and the order chosen here
   * would not matter.
   */
  private dispatchLater (): void {
    if (this.dispatchScheduled) { return }
    this.dispatchScheduled = true
    setImmediate(() => {
      this.dispatchScheduled = false
      this.turn++
      this.dispatch()
    })
  }

  /**
   * Starts waiting requests while slots are free, fresh peers first, then
   * round-robin. A peer starts at most `weight` requests per turn of the
   * event loop: work that needs no I/O (decode, verification, signing,
   * hashing) is done within the turn it starts in, so this bounds the CPU
   * one peer takes before other peers' frames are read again, however many
   * slots it could fill; requests waiting on I/O keep their slots across
   * turns, so a lone peer still reaches `maxActive` in a few turns.
   */
  private dispatch (): void {
    const now = this.now()
    let held = false
    while (this.active < this.maxActive && this.queued > 0) {
      const p = this.pick(now, true) ?? this.pick(now, false)
      if (p == null) {
        held = this.fresh.some(q => this.spent(q)) || this.old.some(q => this.spent(q))
        break
      }
      this.start(p)
    }
    // requests held back only by the per-turn allowance go in the next turn
    if (held) { this.dispatchLater() }
    this.arm()
  }

  /** The peer started its allowance of requests in this turn */
  private spent (p: PeerQueue): boolean {
    return p.waiting.length > 0 && p.turn === this.turn && p.started >= p.weight
  }

  /**
   * The next peer to serve: the first eligible fresh peer, else the first
   * eligible backlogged one. `capped`: respect maxActivePerPeer (the second
   * pass lifts it so that a lone peer may use every slot).
   */
  private pick (now: number, capped: boolean): PeerQueue | undefined {
    const ok = (p: PeerQueue): boolean => p.waiting.length > 0 && !this.spent(p) && (!capped || p.running < this.maxActivePerPeer) && this.hasToken(p, now)
    for (const p of this.fresh) {
      if (ok(p)) { return p }
    }
    for (const p of this.old) {
      if (ok(p)) { return p }
    }
    return undefined
  }

  private start (p: PeerQueue): void {
    const w = p.waiting.shift() as Waiter
    p.waitingBytes -= w.bytes
    this.queued--
    this.queuedBytes -= w.bytes
    if (this.rate != null) { this.bucket(p.key, this.now()).tokens -= 1 }
    if (p.turn !== this.turn) {
      p.turn = this.turn
      p.started = 0
    }
    p.started++
    p.running++
    this.active++
    // where the peer goes next: a fresh peer had its turn and joins the
    // backlog; a backlogged one keeps its place until its credit is spent
    if (p.list === 'fresh') {
      remove(this.fresh, p)
      p.list = undefined
      if (p.waiting.length > 0) {
        p.list = 'old'
        p.credit = p.weight
        this.old.push(p)
      }
    } else if (p.list === 'old') {
      p.credit--
      if (p.waiting.length === 0 || p.credit <= 0) {
        remove(this.old, p)
        p.list = undefined
        if (p.waiting.length > 0) {
          p.list = 'old'
          p.credit = p.weight
          this.old.push(p)
        }
      }
    }
    w.clear()
    let released = false
    w.resolve({
      ok: true,
      release: () => {
        if (released) { return }
        released = true
        p.running--
        this.active--
        // one parked refusal of this peer may be answered now
        p.parked[0]?.()
        this.tidy(p)
        this.dispatchLater()
      }
    })
  }

  /** Forgets a peer with nothing in flight (its bucket, if any, stays in the bounded table) */
  private tidy (p: PeerQueue): void {
    if (p.waiting.length === 0 && p.list != null) {
      remove(p.list === 'fresh' ? this.fresh : this.old, p)
      p.list = undefined
    }
    if (p.waiting.length === 0 && p.running === 0 && p.parked.length === 0 && this.peers.get(p.key) === p) {
      this.peers.delete(p.key)
    }
  }

  /** When requests wait only for tokens, wakes the dispatcher when the first token is due */
  private arm (): void {
    if (this.rate == null || this.timer != null || this.queued === 0 || this.active >= this.maxActive) { return }
    let soonest = Infinity
    for (const list of [this.fresh, this.old]) {
      for (const p of list) {
        const tokens = this.buckets.get(p.key)?.tokens ?? this.burst
        if (p.waiting.length > 0 && tokens < 1) { soonest = Math.min(soonest, (1 - tokens) / this.rate * 1000) }
      }
    }
    if (!Number.isFinite(soonest)) { return }
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.dispatch()
    }, Math.max(1, Math.ceil(soonest)))
    this.timer.unref?.()
  }

  /** Stops the token timer (waiting requests stay until their timeout or abort) */
  close (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}

function remove<T> (list: T[], item: T): void {
  const i = list.indexOf(item)
  if (i >= 0) { list.splice(i, 1) }
}
