/**
 * Reputation's pure parts and its model: the beta score, EigenTrust on
 * small hand-computed graphs (and against an independent dense
 * computation), opinion trust, Sybil cliques, and records that outlive a
 * restart (real LevelDB in a temp dir).
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { eigenTrust, TrustGraph } from '../src/reputation/eigentrust.js'
import { Reputation } from '../src/reputation/model.js'
import { combinedTrust, opinionTrust } from '../src/reputation/opinion.js'
import { betaTrust, EMPTY_STATE, foldFact, validateScoreParams } from '../src/reputation/score.js'
import { Store } from '../src/store/index.js'
import { tempDir } from './fixtures.js'
import type { BetaState } from '../src/reputation/score.js'

const close = (a: number, b: number, eps = 1e-6): boolean => Math.abs(a - b) < eps

async function peerIds (n: number): Promise<string[]> {
  return Promise.all(Array.from({ length: n }, async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()))
}

/** A dense power iteration written out on its own, as the second computation */
function denseEigenTrust (m: number[][], p: number[], a: number, steps = 2000): number[] {
  const n = p.length
  const c = m.map((row, i) => {
    const r = row.map((v, j) => (i === j ? 0 : v))
    const s = r.reduce((x, y) => x + y, 0)
    return s > 0 ? r.map(v => v / s) : p.slice()
  })
  let t = p.slice()
  for (let k = 0; k < steps; k++) {
    const next = new Array(n).fill(0)
    for (let i = 0; i < n; i++) { for (let j = 0; j < n; j++) { next[j] += (1 - a) * c[i][j] * t[i] } }
    for (let j = 0; j < n; j++) { next[j] += a * p[j] }
    t = next
  }
  return t
}

describe('reputation: local trust (beta score with decay)', () => {
  it('a newcomer has trust 0; kept promises raise it, one broken promise pulls it below half at once', () => {
    assert.equal(betaTrust(EMPTY_STATE), 0)
    let s: BetaState = EMPTY_STATE
    for (let i = 0; i < 3; i++) { s = foldFact(s, 1, 1) }
    // α = 0.95² + 0.95 + 1 = 2.8525; trust = α / (α + 0 + 2)
    assert.ok(close(betaTrust(s), 2.8525 / 4.8525), `trust ${betaTrust(s)}`)
    assert.ok(betaTrust(s) > 0.5)
    s = foldFact(s, -1, 5)
    assert.ok(betaTrust(s) < 0.5, `after a broken promise: ${betaTrust(s)}`)
    assert.equal(s.bad, 1)
    assert.equal(s.facts, 4)
  })

  it('old facts decay: a long run of kept promises after a broken one earns trust back', () => {
    let s = foldFact(EMPTY_STATE, -1, 5)
    for (let i = 0; i < 60; i++) { s = foldFact(s, 1, 1) }
    assert.ok(betaTrust(s) > 0.8, `trust ${betaTrust(s)}`)
  })

  it('parameters are validated', () => {
    assert.throws(() => validateScoreParams({ lambda: 0 }), /lambda/)
    assert.throws(() => validateScoreParams({ lambda: 1.5 }), /lambda/)
    assert.throws(() => validateScoreParams({ prior: -1 }), /prior/)
    assert.throws(() => foldFact(EMPTY_STATE, 2, 1), /value/)
    assert.throws(() => foldFact(EMPTY_STATE, 1, 0), /weight/)
  })
})

describe('reputation: EigenTrust', () => {
  it('a cycle with one pre-trusted peer: the hand-computed vector', () => {
    // t_B = 0.9 t_A, t_C = 0.9 t_B, t_A = 0.9 t_C + 0.1 → t_A = 0.1 / (1 − 0.729)
    const { trust, converged } = eigenTrust({
      rows: [{ from: 'A', trust: new Map([['B', 1]]) }, { from: 'B', trust: new Map([['C', 1]]) }, { from: 'C', trust: new Map([['A', 1]]) }],
      pretrusted: ['A']
    })
    assert.ok(converged)
    const tA = 0.1 / 0.271
    assert.ok(close(trust.get('A') ?? 0, tA), `A ${trust.get('A')}`)
    assert.ok(close(trust.get('B') ?? 0, 0.9 * tA))
    assert.ok(close(trust.get('C') ?? 0, 0.81 * tA))
  })

  it('a peer with no outgoing trust sends its mass to the pre-trusted peers', () => {
    // A → B, B dangling: t_A = 0.9 t_B + 0.1, t_B = 0.9 t_A → t_A = 0.1 / 0.19
    const { trust } = eigenTrust({ rows: [{ from: 'A', trust: new Map([['B', 1]]) }], pretrusted: ['A'] })
    assert.ok(close(trust.get('A') ?? 0, 0.1 / 0.19))
    assert.ok(close(trust.get('B') ?? 0, 0.09 / 0.19))
  })

  it('self-trust is removed', () => {
    const withSelf = eigenTrust({ rows: [{ from: 'A', trust: new Map([['A', 100], ['B', 1]]) }], pretrusted: ['A'] }).trust
    assert.ok(close(withSelf.get('B') ?? 0, 0.09 / 0.19))
  })

  it('matches an independent dense computation on a 5-peer graph with pre-trust', () => {
    const names = ['A', 'B', 'C', 'D', 'E']
    const m = [
      [0, 3, 1, 0, 0],
      [1, 0, 2, 0, 1],
      [0, 0, 0, 4, 1],
      [2, 1, 0, 0, 0],
      [0, 0, 0, 0, 0] // E trusts nobody
    ]
    const rows = names.map((from, i) => ({ from, trust: new Map(names.map((to, j) => [to, m[i][j]] as [string, number]).filter(([, v]) => v > 0)) }))
    const { trust } = eigenTrust({ rows, pretrusted: ['A', 'D'], params: { a: 0.15, epsilon: 1e-12, maxIterations: 1000 } })
    const dense = denseEigenTrust(m, [0.5, 0, 0, 0.5, 0], 0.15)
    names.forEach((n, i) => { assert.ok(close(trust.get(n) ?? 0, dense[i], 1e-8), `${n}: ${trust.get(n)} vs ${dense[i]}`) })
  })

  it('a Sybil clique that trusts only itself gets nothing without a path from the pre-trusted peers', () => {
    const rows = [
      { from: 'A', trust: new Map([['B', 1]]) },
      { from: 'B', trust: new Map([['A', 1]]) },
      { from: 'S1', trust: new Map([['S2', 1], ['S3', 1], ['S1', 1]]) },
      { from: 'S2', trust: new Map([['S1', 1], ['S3', 1]]) },
      { from: 'S3', trust: new Map([['S1', 1], ['S2', 1], ['A', 0.01]]) }
    ]
    const { trust } = eigenTrust({ rows, pretrusted: ['A'] })
    for (const s of ['S1', 'S2', 'S3']) { assert.equal(trust.get(s), 0, `${s} has ${trust.get(s)}`) }
    assert.ok(close((trust.get('A') ?? 0) + (trust.get('B') ?? 0), 1))
  })

  it('a warm start from the last vector converges in fewer iterations after a small change', () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ from: `p${i}`, trust: new Map([[`p${(i + 1) % 50}`, 1], [`p${(i * 7) % 50}`, 0.5]]) }))
    const cold = eigenTrust({ rows, pretrusted: ['p0'], params: { epsilon: 1e-10 } })
    rows[3].trust.set('p9', 0.1)
    const warm = eigenTrust({ rows, pretrusted: ['p0'], previous: cold.trust, params: { epsilon: 1e-10 } })
    const again = eigenTrust({ rows, pretrusted: ['p0'], params: { epsilon: 1e-10 } })
    assert.ok(warm.converged && again.converged)
    assert.ok(warm.iterations < again.iterations, `warm ${warm.iterations} vs cold ${again.iterations}`)
    for (const [k, v] of again.trust) { assert.ok(close(warm.trust.get(k) ?? 0, v, 1e-8)) }
  })

  it('a kept graph updated row by row gives the vector of a fresh computation', () => {
    const rows = Array.from({ length: 30 }, (_, i) => ({ from: `p${i}`, trust: new Map([[`p${(i + 1) % 30}`, 1], [`p${(i * 7) % 30}`, 0.5]]) }))
    const g = new TrustGraph()
    for (const r of rows) { g.setRow(r) }
    g.compute(['p0'], { epsilon: 1e-12, maxIterations: 1000 })
    rows[4] = { from: 'p4', trust: new Map([['p20', 1]]) }
    g.setRow(rows[4])
    g.deleteRow('p7')
    const kept = g.compute(['p0'], { epsilon: 1e-12, maxIterations: 1000 })
    const fresh = eigenTrust({ rows: rows.filter(r => r.from !== 'p7'), pretrusted: ['p0'], params: { epsilon: 1e-12, maxIterations: 1000 } })
    for (const [k, v] of fresh.trust) { assert.ok(close(kept.trust.get(k) ?? 0, v, 1e-9), `${k}: ${kept.trust.get(k)} vs ${v}`) }
    assert.ok(kept.iterations < fresh.iterations, 'warm from the kept vector')
  })

  it('a row weight (opinion trust) sends the unfollowed share to the pre-trusted peers', () => {
    // A pre-trusted, A → R, R → X with weight w: t_X = 0.9·w·t_R
    const full = eigenTrust({ rows: [{ from: 'A', trust: new Map([['R', 1]]) }, { from: 'R', trust: new Map([['X', 1]]) }], pretrusted: ['A'] }).trust
    const half = eigenTrust({ rows: [{ from: 'A', trust: new Map([['R', 1]]) }, { from: 'R', trust: new Map([['X', 1]]), weight: 0.5 }], pretrusted: ['A'] }).trust
    assert.ok((half.get('X') ?? 0) < (full.get('X') ?? 0))
    assert.ok(close(half.get('X') ?? 0, 0.9 * 0.5 * (half.get('R') ?? 0)))
  })
})

describe('reputation: opinion trust', () => {
  const own = new Map<string, BetaState>()
  let good: BetaState = EMPTY_STATE
  for (let i = 0; i < 6; i++) { good = foldFact(good, 1, 1) }
  const bad = foldFact(foldFact(EMPTY_STATE, -1, 5), -1, 5)
  own.set('X', good)
  own.set('Y', good)
  own.set('Z', bad)

  it('a reporter agreeing with our experience gains opinion trust, a liar loses it', () => {
    const honest = opinionTrust(new Map([['X', betaTrust(good)], ['Y', 0.7], ['Z', 0.05]]), own)
    const liar = opinionTrust(new Map([['X', 0], ['Y', 0.05], ['Z', 1]]), own)
    const stranger = opinionTrust(new Map([['W', 1]]), own)
    assert.equal(honest.compared, 3)
    assert.equal(stranger.compared, 0)
    assert.equal(stranger.trust, 0.5, 'no overlap: the neutral prior')
    assert.ok(honest.trust > 0.75, `honest ${honest.trust}`)
    assert.ok(liar.trust < 0.25, `liar ${liar.trust}`)
  })

  it('claims move trust by their weight; a claim with no weight moves nothing', () => {
    assert.equal(combinedTrust(undefined, [{ reporter: 'S', value: 1, weight: 0 }]), undefined)
    const heard = combinedTrust(undefined, [{ reporter: 'R', value: 1, weight: 1 }]) ?? 0
    const weak = combinedTrust(undefined, [{ reporter: 'R', value: 1, weight: 0.2 }]) ?? 0
    assert.ok(heard > weak && weak > 0)
    // hearsay is worth at most hearsayMass facts: it cannot outvote a broken promise we saw
    assert.ok((combinedTrust(bad, [{ reporter: 'R', value: 1, weight: 1 }]) ?? 1) < 0.5)
  })
})

describe('reputation: the model', () => {
  it('a colluding clique of fresh identities gains nothing; a pre-trusted reporter’s claims count', async () => {
    const [self, r, s1, s2, s3, w] = await peerIds(6)
    const store = Store.memory()
    await store.open()
    const rep = new Reputation({ db: store.sub('reputation'), self, pretrusted: [r] })
    await rep.open()
    const now = Date.now()
    assert.ok(rep.accept({ reporter: s1, issued: now, seq: 1n, claims: [{ peer: s2, trust: 1, facts: 99, bad: 0 }, { peer: s3, trust: 1, facts: 99, bad: 0 }] }))
    assert.ok(rep.accept({ reporter: s2, issued: now, seq: 1n, claims: [{ peer: s1, trust: 1, facts: 99, bad: 0 }, { peer: s3, trust: 1, facts: 99, bad: 0 }] }))
    assert.ok(rep.accept({ reporter: s3, issued: now, seq: 1n, claims: [{ peer: s1, trust: 1, facts: 99, bad: 0 }, { peer: s2, trust: 1, facts: 99, bad: 0 }, { peer: w, trust: 0, facts: 99, bad: 99 }] }))
    assert.ok(rep.accept({ reporter: r, issued: now, seq: 1n, claims: [{ peer: w, trust: 0.9, facts: 10, bad: 0 }] }))
    for (const s of [s1, s2, s3]) {
      assert.equal(rep.trust(s), undefined, `clique member has trust ${rep.trust(s)}`)
      assert.equal(rep.globalTrust(s), 0)
    }
    // the clique's slander of W weighs nothing; the pre-trusted reporter's praise does
    // one pre-trusted reporter we cannot yet compare with our experience (opinion trust 0.5): 0.9 claimed → 0.3
    assert.ok((rep.trust(w) ?? 0) > 0.25, `W ${rep.trust(w)}`)
    assert.ok(rep.globalTrust(w) > 0)
    assert.equal(rep.accept({ reporter: r, issued: now, seq: 1n, claims: [] }), false, 'a replayed seq is stale')
    await store.close()
  })

  it('a reporter whose opinions disagree with our first-hand experience loses opinion trust and weight', async () => {
    const [self, honest, liar, x, y, w] = await peerIds(6)
    const store = Store.memory()
    await store.open()
    const rep = new Reputation({ db: store.sub('reputation'), self, pretrusted: [honest, liar] })
    await rep.open()
    for (let i = 0; i < 4; i++) { await rep.record({ peer: x, role: 'seller', kind: 'call-served', value: 1, weight: 1 }) }
    await rep.record({ peer: y, role: 'buyer', kind: 'promise-broken', value: -1, weight: 5 })
    const now = Date.now()
    rep.accept({ reporter: honest, issued: now, seq: 1n, claims: [{ peer: x, trust: 0.7, facts: 3, bad: 0 }, { peer: y, trust: 0.05, facts: 2, bad: 2 }, { peer: w, trust: 0.1, facts: 5, bad: 5 }] })
    rep.accept({ reporter: liar, issued: now, seq: 1n, claims: [{ peer: x, trust: 0, facts: 3, bad: 3 }, { peer: y, trust: 1, facts: 9, bad: 0 }, { peer: w, trust: 1, facts: 9, bad: 0 }] })
    const o = { honest: rep.opinionTrust(honest) ?? 0, liar: rep.opinionTrust(liar) ?? 1 }
    assert.ok(o.honest > 0.6 && o.liar < 0.3, `opinion trust ${JSON.stringify(o)}`)
    const why = await rep.explain(w)
    const weightOf = (r: string): number => why.claims.find(c => c.reporter === r)?.weight ?? -1
    assert.ok(weightOf(honest) > 2 * weightOf(liar), `weights ${JSON.stringify(why.claims)}`)
    assert.ok((rep.trust(w) ?? 1) < 0.5, `the liar's praise does not carry W: ${rep.trust(w)}`)
    // and the peers only the liar praises get less of the global vector through it
    assert.ok(rep.globalTrust(y) < rep.globalTrust(x))
    await store.close()
  })

  it('records outlive a restart: a peer that comes back finds its bad score (LevelDB)', async () => {
    const dir = await tempDir()
    const [self, bad] = await peerIds(2)
    let store = new Store(join(dir, 'db'))
    await store.open()
    let rep = new Reputation({ db: store.sub('reputation'), self })
    await rep.open()
    await rep.record({ peer: bad, role: 'buyer', kind: 'promise-broken', value: -1, weight: 5, evidence: { deferId: 't1' }, dedupe: 'tab/broken/x/t1' })
    assert.equal(await rep.record({ peer: bad, role: 'buyer', kind: 'promise-broken', value: -1, weight: 5, dedupe: 'tab/broken/x/t1' }), undefined, 'deduped')
    const before = rep.trust(bad)
    await store.close()
    store = new Store(join(dir, 'db'))
    await store.open()
    rep = new Reputation({ db: store.sub('reputation'), self })
    await rep.open()
    assert.equal(rep.trust(bad), before)
    assert.equal(rep.records.state(bad)?.facts, 1)
    const facts = await rep.records.facts(bad)
    assert.deepEqual(facts.map(f => [f.kind, f.evidence?.deferId]), [['promise-broken', 't1']])
    await assert.rejects(rep.record({ peer: 'not a peer!', role: 'buyer', kind: 'x', value: 0, weight: 1 }), /peer/)
    await assert.rejects(rep.record({ peer: bad, role: 'buyer', kind: 'x', value: 3, weight: 1 }), /value/)
    await store.close()
  })
})
