/**
 * First-hand records: append-only facts per peer, in both roles (what a
 * peer did as a payer of ours, what it delivered as a seller to us), each
 * with its evidence where there is one, and the beta state (score.ts)
 * folded from them. The state lives in LevelDB next to the facts and is
 * never reset: a peer that disconnects and comes back finds its score as
 * it left it.
 *
 * Layout (keys in the reputation SubDb):
 * - `f/<peer>/<seq>`   one fact (JSON), seq 10 digits, per peer
 * - `s/<peer>`         the peer's beta state and next seq (JSON)
 * - `k/<dedupe key>`   a fact recorded once only (e.g. a tab's settlement)
 */
import { InvalidParametersError } from '@libp2p/interface'
import { json as encodeJson } from '../util/json.js'
import { KeyedMutex } from '../util/locks.js'
import { checkFact, EMPTY_STATE, foldFact } from './score.js'
import type { BetaState, ScoreParams } from './score.js'
import type { SubDb } from '../store/index.js'

/** The role the peer was in when it made the promise */
export type FactRole =
  /** it bought from us (a payer: deferred promises) */
  | 'buyer'
  /** it sold to us (a seller: calls, receipts, audits) */
  | 'seller'
  /** it gave us opinions */
  | 'reporter'

/** What a fact records: anything matching NAME; these are the kinds recorded today */
export type FactKind = 'promise-kept' | 'promise-broken' | 'call-served' | 'call-failed' | (string & {})

/** What `record` takes */
export interface FactInput {
  /** the peer's id (libp2p peer id string, no `oc:`) */
  peer: string
  role: FactRole
  kind: FactKind
  /** −1 (promise broken) … 1 (kept as promised); partial delivery in between */
  value: number
  /** how much the fact counts, > 0 (see FACT_WEIGHTS) */
  weight: number
  /** the signed promise, receipt or audit, and anything that explains the fact (JSON-able, ≤ 8 KiB encoded) */
  evidence?: Record<string, unknown>
  /** records a fact once per key: a second call with the same key is a no-op */
  dedupe?: string
  /** ms since the epoch @default now */
  at?: number
}

export interface Fact extends Omit<FactInput, 'dedupe'> {
  seq: number
  at: number
}

export interface PeerState extends BetaState {
  /** the peer */
  peer: string
  /** time of the last fact */
  updatedAt: number
}

const PEER = /^[A-Za-z0-9]{1,128}$/
const KIND = /^[a-z][a-z0-9-]{0,31}$/
const DEDUPE = /^[A-Za-z0-9._:/-]{1,300}$/
const MAX_EVIDENCE = 8 * 1024
const ROLES = new Set(['buyer', 'seller', 'reporter'])
const END = '\uffff'
const dec = new TextDecoder()

export class RecordStore {
  private readonly db: SubDb
  private readonly params: ScoreParams
  private readonly locks = new KeyedMutex()
  /** every peer's state: the trust provider reads it synchronously */
  readonly states = new Map<string, PeerState>()
  private readonly listeners = new Set<(fact: Fact, state: PeerState) => void>()

  constructor (init: { db: SubDb, params: ScoreParams }) {
    this.db = init.db
    this.params = init.params
  }

  /** Loads every peer's state */
  async load (): Promise<void> {
    for await (const [key, v] of this.db.iterator({ gte: 's/', lt: 's/' + END })) {
      const o = JSON.parse(dec.decode(v))
      this.states.set(key.slice(2), { peer: key.slice(2), alpha: o.alpha, beta: o.beta, facts: o.facts, bad: o.bad, updatedAt: o.updatedAt })
    }
  }

  /** Calls `fn` after every fact recorded */
  onFact (fn: (fact: Fact, state: PeerState) => void): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /**
   * Appends a fact and folds it into the peer's state. Returns the fact, or
   * undefined when `dedupe` was recorded before.
   *
   * @throws {InvalidParametersError} on a malformed peer, role, kind, value, weight or evidence
   */
  async record (input: FactInput): Promise<Fact | undefined> {
    if (typeof input.peer !== 'string' || !PEER.test(input.peer)) { throw new InvalidParametersError('peer must be a peer id') }
    if (!ROLES.has(input.role)) { throw new InvalidParametersError(`role must be buyer, seller or reporter, not ${String(input.role)}`) }
    if (typeof input.kind !== 'string' || !KIND.test(input.kind)) { throw new InvalidParametersError('kind must be a lowercase name') }
    checkFact(input.value, input.weight)
    if (input.dedupe != null && !DEDUPE.test(input.dedupe)) { throw new InvalidParametersError('dedupe key malformed') }
    const at = input.at ?? Date.now()
    const evidence = input.evidence != null ? encodeJson(input.evidence) : undefined
    if (evidence != null && evidence.byteLength > MAX_EVIDENCE) { throw new InvalidParametersError(`evidence over ${MAX_EVIDENCE} bytes`) }
    return this.locks.run(input.peer, async () => {
      if (input.dedupe != null && await this.db.get('k/' + input.dedupe) != null) { return undefined }
      const prev = this.states.get(input.peer) ?? { ...EMPTY_STATE, peer: input.peer, updatedAt: 0 }
      const seq = prev.facts + 1
      const state: PeerState = { ...foldFact(prev, input.value, input.weight, this.params), peer: input.peer, updatedAt: at }
      const fact: Fact = { peer: input.peer, role: input.role, kind: input.kind, value: input.value, weight: input.weight, seq, at, ...(input.evidence != null ? { evidence: input.evidence } : {}) }
      const ops = [
        { type: 'put' as const, key: `f/${input.peer}/${seq.toString().padStart(10, '0')}`, value: encodeJson(fact) },
        { type: 'put' as const, key: `s/${input.peer}`, value: encodeJson({ alpha: state.alpha, beta: state.beta, facts: state.facts, bad: state.bad, updatedAt: at }) }
      ]
      if (input.dedupe != null) { ops.push({ type: 'put', key: 'k/' + input.dedupe, value: encodeJson({ peer: input.peer, seq }) }) }
      await this.db.batch(ops)
      this.states.set(input.peer, state)
      for (const fn of this.listeners) {
        try {
          fn(fact, state)
        } catch {}
      }
      return fact
    })
  }

  /** A peer's facts, newest first (at most `limit`) */
  async facts (peer: string, limit = 50): Promise<Fact[]> {
    if (!PEER.test(peer)) { return [] }
    const out: Fact[] = []
    const prefix = `f/${peer}/`
    for await (const [, v] of this.db.iterator({ gte: prefix, lt: prefix + END, reverse: true, limit })) {
      out.push(JSON.parse(dec.decode(v)))
    }
    return out
  }

  state (peer: string): PeerState | undefined {
    return this.states.get(peer)
  }
}

export { InvalidParametersError }
