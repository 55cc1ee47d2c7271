/* eslint-disable no-console */
/**
 * EigenTrust at scale (docs/reputation.md): a 10,000-peer, 1,000,000-edge
 * trust graph, a cold computation, then updates after a change of the
 * matrix (new rows for 1% of the peers) warm-started from the last vector.
 * Each update's time includes the change of the matrix (the new rows
 * normalised into the kept sparse graph), not only the iterations. Prints numbers; asserts nothing about speed.
 *
 * `node dist/bench/eigentrust.js [--peers N] [--edges M] [--updates K]`
 */
import { parseArgs } from 'node:util'
import { TrustGraph } from '../src/reputation/eigentrust.js'
import type { TrustRow } from '../src/reputation/eigentrust.js'

const { values } = parseArgs({ options: { peers: { type: 'string' }, edges: { type: 'string' }, updates: { type: 'string' } } })
const peers = Number(values.peers ?? 10_000)
const edges = Number(values.edges ?? 1_000_000)
const updates = Number(values.updates ?? 10)

// a deterministic pseudo-random generator: the same graph every run
let seed = 42
const random = (): number => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

const ids = Array.from({ length: peers }, (_, i) => `p${i}`)
const perRow = Math.floor(edges / peers)
const rowOf = (i: number): TrustRow => {
  const trust = new Map<string, number>()
  while (trust.size < perRow) { trust.set(ids[Math.floor(random() * peers)], random()) }
  return { from: ids[i], trust, weight: 0.5 + random() / 2 }
}
const rows = ids.map((_, i) => rowOf(i))

const pretrusted = ids.slice(0, 3)

let t0 = performance.now()
const graph = new TrustGraph()
for (const r of rows) { graph.setRow(r) }
let result = graph.compute(pretrusted)
console.log(`cold: ${peers} peers, ${rows.reduce((n, r) => n + r.trust.size, 0)} edges: ${(performance.now() - t0).toFixed(1)} ms, ${result.iterations} iterations, converged ${String(result.converged)}`)

const times: number[] = []
for (let u = 0; u < updates; u++) {
  // 1% of the peers publish a new report
  const changed = Array.from({ length: peers / 100 }, () => rowOf(Math.floor(random() * peers)))
  t0 = performance.now()
  for (const r of changed) { graph.setRow(r) }
  result = graph.compute(pretrusted, { epsilon: 1e-6 })
  times.push(performance.now() - t0)
  console.log(`update ${u + 1}: ${times[u].toFixed(1)} ms, ${result.iterations} iterations`)
}
times.sort((a, b) => a - b)
console.log(`warm update (matrix change + iterations): median ${times[Math.floor(times.length / 2)].toFixed(1)} ms, max ${times[times.length - 1].toFixed(1)} ms`)
