/**
 * The house rules of docs/architecture (README "Layout"): no import cycles;
 * the OpenCloud API leaf imports nothing but itself, the generated messages
 * and util/; money, policy and services never import the network part.
 */
import { strict as assert } from 'node:assert'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SRC, cycles, importGraph } from './import-graph.js'

const graph = importGraph()
const offending = (from: (f: string) => boolean, bad: (to: string) => boolean): string[] =>
  [...graph].filter(([f]) => from(f)).flatMap(([f, edges]) => edges.filter(e => bad(e.to)).map(e => `${f} -> ${e.to}`))

describe('layering of src/', () => {
  it('reads the whole tree', () => {
    assert.ok(graph.size > 50, `only ${graph.size} files read from ${SRC}`)
    assert.ok(graph.has('protocols/opencloud/api/template.ts'))
  })

  it('has no import cycle, type imports included', () => {
    assert.deepEqual(cycles(graph), [])
  })

  it('the OpenCloud API leaf imports only itself, the generated messages and util/', () => {
    const leaf = (f: string): boolean => f.startsWith('protocols/opencloud/api/')
    const allowed = (to: string): boolean => leaf(to) || to.startsWith('protocols/opencloud/pb/') || to.startsWith('util/')
    assert.deepEqual(offending(leaf, to => !allowed(to)), [])
  })

  it('util/ imports nothing else of decloud', () => {
    assert.deepEqual(offending(f => f.startsWith('util/'), to => !to.startsWith('util/')), [])
  })

  it('the seller side of payments, the chain, the wallet, policy and services never import the network part, the node, the CLI or the control API', () => {
    const sellerSide = (f: string): boolean => ['payments/seller/', 'payments/chain/', 'payments/wallet/', 'policy/', 'services/'].some(p => f.startsWith(p))
    const upper = (to: string): boolean => ['protocols/opencloud/net/', 'node/', 'cli/', 'control/'].some(p => to.startsWith(p))
    assert.deepEqual(offending(sellerSide, upper), [])
  })

  it('no library part imports the CLI or the control API', () => {
    const lib = (f: string): boolean => !['cli/', 'control/', 'index.ts'].some(p => f.startsWith(p))
    assert.deepEqual(offending(lib, to => to.startsWith('cli/')), [])
  })

  it('finds a cycle and a leaf breach when there is one (the checks can fail)', () => {
    const g = new Map([['a.ts', [{ to: 'b.ts', typeOnly: true }]], ['b.ts', [{ to: 'a.ts', typeOnly: false }]]])
    assert.deepEqual(cycles(g), [['a.ts', 'b.ts']])
  })

  it('no bare `new Error(` in src/: errors are libp2p\'s classes or named ones of decloud', () => {
    const bare = [...graph.keys()].flatMap(f => readFileSync(join(SRC, f), 'utf8').split('\n')
      .flatMap((line, i) => /\bnew Error\(/.test(line) ? [`${f}:${i + 1}`] : []))
    assert.deepEqual(bare, [])
  })

  it('no hand-written file in src/ is over 500 lines', () => {
    const long = [...graph.keys()]
      .filter(f => !f.includes('/pb/'))
      .map(f => ({ f, n: readFileSync(join(SRC, f), 'utf8').split('\n').length }))
      .filter(({ n }) => n > 500)
      .map(({ f, n }) => `${f}: ${n} lines`)
    assert.deepEqual(long, [])
  })
})
