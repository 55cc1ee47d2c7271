/** The fair scheduler's options, counters and answers (scheduler.ts) */
export interface FairSchedulerInit {
  /**
   * requests in the pipeline at once, all peers together (requests waiting
   * on I/O, such as a store, hold theirs)
   *
   * @default 32
   */
  maxActive?: number
  /**
   * requests of one peer in the pipeline at once while other peers wait
   * (a lone peer may use every slot)
   *
   * @default 8
   */
  maxActivePerPeer?: number
  /**
   * requests of one peer in flight (waiting or in the pipeline), across its streams
   *
   * @default 32
   */
  maxInFlightPerPeer?: number
  /**
   * requests waiting for a slot, all peers together
   *
   * @default 1024
   */
  maxQueued?: number
  /**
   * request bytes waiting for a slot, all peers together
   *
   * @default 256 MiB
   */
  maxQueuedBytes?: number
  /**
   * request bytes of one peer waiting for a slot
   *
   * @default 64 MiB
   */
  maxQueuedBytesPerPeer?: number
  /**
   * requests per second one peer is served; undefined: no metering
   *
   * @default undefined
   */
  requestsPerSecond?: number
  /**
   * the bucket's size
   *
   * @default max(1, requestsPerSecond)
   */
  requestBurst?: number
  /**
   * longest wait for a slot (ms); then the request is refused
   *
   * @default 30_000
   */
  queueTimeout?: number
  /**
   * longest wait before a refused request is answered when none of its
   * peer's requests finishes first (ms)
   *
   * @default 1_000
   */
  refusalDelay?: number
  /**
   * Turns per round of a peer (clamped to 1–64; e.g. from trust). Called
   * when the peer's first request of a burst is queued.
   *
   * @default () => 1
   */
  weight?(peer: string): number
  /**
   * the clock, ms, monotonic
   *
   * @default performance.now
   */
  now?(): number
}

export interface SchedulerStats {
  /** requests in the pipeline now */
  active: number
  /** requests waiting for a slot now */
  queued: number
  /** requests refused because their peer had too many in flight */
  refusedPeer: number
  /** requests refused because the whole queue was full */
  refusedQueue: number
  /** requests refused because they waited longer than queueTimeout */
  refusedTimeout: number
  /** peers with requests in flight now */
  peers: number
}

/** A slot in the pipeline; `release()` is idempotent */
export interface Admitted { ok: true, release(): void }

/** Why a request was not admitted; `detail` is for the peer */
export interface Refused {
  ok: false
  why: 'in-flight' | 'queue-full' | 'timeout' | 'aborted'
  detail: string
}

export type Admission = Admitted | Refused
